package sqladapter

import (
	"bytes"
	"testing"
)

func TestDecodeTextBytea(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want []byte
		bad  bool
	}{
		{in: `\x5c7800ff6162630108`, want: []byte("\x5c\x78\x00\xff\x61\x62\x63\x01\x08")},
		{in: `\x`, want: []byte{}},
		{in: `\\x\000\377abc\001\010`, want: []byte("\x5c\x78\x00\xff\x61\x62\x63\x01\x08")}, // bytea_output = escape
		{in: ``, want: []byte{}},
		{in: `plain text`, want: []byte("plain text")},
		{in: `\\\\`, want: []byte(`\\`)},
		{in: `\x5g`, bad: true},
		{in: `\400`, bad: true},
		{in: `\12`, bad: true},
		{in: `a\`, bad: true},
	} {
		got, err := decodeTextBytea([]byte(c.in))
		if c.bad {
			if err == nil {
				t.Errorf("decodeTextBytea(%q) = %q, want an error", c.in, got)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("decodeTextBytea(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
