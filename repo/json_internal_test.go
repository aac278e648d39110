package repo

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf16"
)

// jsonCases are JSON texts json.Valid accepts, and what checkJSON must say
// of them: "" when PostgreSQL's jsonb stores them, else a word of the
// problem. (TestJSONRefusedLikeJSONB checks on the server that jsonb
// refuses such cases.)
var jsonCases = []struct{ raw, problem string }{
	{`{}`, ""},
	{`{"a":"b"}`, ""},
	{`{"a":"\u00e9\u4e2d"}`, ""},
	{`{"a":"\ud83d\ude00"}`, ""},             // a pair: 😀
	{`{"\ud83d\ude00":"\uD83D\uDE00x"}`, ""}, // in a key, upper case
	{`{"a":"\\u0000"}`, ""},                  // an escaped backslash, then text
	{`{"a":"\\ud800"}`, ""},
	{`{"a":"\"\u0000"}`, `\u0000`},
	{`{"a":"\u0000"}`, `\u0000`},
	{`{"\u0000":1}`, `\u0000`},
	{`["x\u0000y"]`, `\u0000`},
	{`{"a":"\ud800"}`, `unpaired surrogate escape (\ud800)`},
	{`{"a":"\udc00"}`, `unpaired surrogate escape (\udc00)`},
	{`{"\udc00":1}`, `unpaired surrogate escape (\udc00)`},
	{`{"a":"\ud800x"}`, `unpaired surrogate escape (\ud800)`},
	{`{"a":"\ud800\n"}`, `unpaired surrogate escape (\ud800)`},
	{`{"a":"\ud800\u0041"}`, `unpaired surrogate escape (\ud800)`},
	{`{"a":"\ud800\ud800\udc00"}`, `unpaired surrogate escape (\ud800)`},
	{`{"a":"\ude00\ud83d"}`, `unpaired surrogate escape (\ude00)`},
	{`"\ud83d"`, `unpaired surrogate escape (\ud83d)`},
	{`{"a":"ok","b":["\udfff"]}`, `unpaired surrogate escape (\udfff)`},
	{"{\"a\":\"\xff\"}", "UTF-8"},
}

func TestCheckJSON(t *testing.T) {
	t.Parallel()
	for _, c := range jsonCases {
		if !json.Valid([]byte(c.raw)) {
			t.Fatalf("%s: the case is not valid JSON", c.raw)
		}
		err := checkJSON("payload", []byte(c.raw))
		if c.problem == "" {
			if err != nil {
				t.Errorf("checkJSON(%s) = %v, want nil", c.raw, err)
			}
			continue
		}
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != "payload" || !strings.Contains(ve.Problem, c.problem) {
			t.Errorf("checkJSON(%s) = %v, want a *ValidationError for payload saying %q", c.raw, err, c.problem)
		}
	}
}

// Whatever json.Marshal makes of text without NUL passes; the same text
// with any code unit escaped as \uXXXX passes as long as it has no NUL and
// no lone surrogate.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{"", "a", "é😀", "\x00", "a\"b\\", "\ufffd"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, lone bool) {
		raw, _ := json.Marshal(map[string]string{s: s})
		err := checkJSON("f", raw)
		hasNUL := strings.ContainsRune(s, 0)
		if (err != nil) != hasNUL {
			t.Fatalf("checkJSON(%s) = %v; NUL in the text: %v", raw, err, hasNUL)
		}
		// Every code unit escaped; with lone, a high surrogate is left
		// without its low one.
		var b strings.Builder
		b.WriteString(`["`)
		units := utf16.Encode([]rune(strings.ToValidUTF8(s, "")))
		for _, u := range units {
			b.WriteString(`\u`)
			b.WriteString(strings.ToLower(hex4(u)))
		}
		if lone {
			b.WriteString(`\ud800`)
		}
		b.WriteString(`"]`)
		err = checkJSON("f", []byte(b.String()))
		bad := lone || strings.ContainsRune(strings.ToValidUTF8(s, ""), 0)
		if (err != nil) != bad {
			t.Fatalf("checkJSON(%s) = %v; want an error: %v", b.String(), err, bad)
		}
	})
}

func hex4(u uint16) string {
	const digits = "0123456789ABCDEF"
	return string([]byte{digits[u>>12], digits[u>>8&15], digits[u>>4&15], digits[u&15]})
}
