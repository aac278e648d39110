package repo_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

func TestNormalizeDomain(t *testing.T) {
	t.Parallel()
	ok := []struct{ in, want string }{
		{"example.com", "example.com"},
		{"  Example.COM  ", "example.com"},
		{"https://www.example.com/path?q=1#frag", "example.com"},
		{"http://user:pw@shop.example.com:8080/x", "shop.example.com"},
		{"//cdn.example.com/a.js", "cdn.example.com"},
		{"example.com.", "example.com"},
		{"www.example.com", "example.com"},
		{"www.com", "www.com"},
		{"www.www.example.com", "example.com"},
		{"bücher.de", "xn--bcher-kva.de"},
		{"BÜCHER.de", "xn--bcher-kva.de"},
		{"xn--bcher-kva.de", "xn--bcher-kva.de"},
		{"例え.テスト", "xn--r8jz45g.xn--zckzah"},
		{"a-b.c-d.io", "a-b.c-d.io"},
		{"123.example.com", "123.example.com"},
		{strings.Repeat("a", 63) + ".com", strings.Repeat("a", 63) + ".com"},
	}
	for _, c := range ok {
		got, err := repo.NormalizeDomain(c.in)
		if err != nil || got != c.want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	bad := []struct{ in, reason string }{
		{"", "empty"},
		{"   ", "empty"},
		{"https://", "no host"},
		{"localhost", "two labels"},
		{"a..b.com", "empty label"},
		{".example.com", "empty label"},
		{strings.Repeat("a", 64) + ".com", "longer than 63"},
		{strings.Repeat("abcdefghi.", 26) + "com", "longer than 253"},
		{"exa mple.com", "not a valid domain"},
		{"exa_mple.com", "not a valid domain"},
		{"-example.com", "invalid label"},
		{"example-.com", "invalid label"},
		{"192.168.0.1", "IP address"},
		{"http://[::1]:80/", "IP address"},
		{"example.123", "all-numeric"},
	}
	for _, c := range bad {
		got, err := repo.NormalizeDomain(c.in)
		if err == nil {
			t.Errorf("NormalizeDomain(%q) = %q, want an error", c.in, got)
			continue
		}
		if !errors.Is(err, sqladapter.ErrInvalidInput) {
			t.Errorf("NormalizeDomain(%q): %v does not match ErrInvalidInput", c.in, err)
		}
		var ve *repo.ValidationError
		if !errors.As(err, &ve) || ve.Field != "domain" || !strings.Contains(ve.Problem, c.reason) {
			t.Errorf("NormalizeDomain(%q) = %v, want a domain error saying %q", c.in, err, c.reason)
		}
	}
}

func FuzzNormalizeDomain(f *testing.F) {
	for _, s := range []string{"example.com", "https://www.Bücher.de:443/x", "a..b", "[::1]", "xn--bcher-kva.de", "www.com", "例え.テスト"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := repo.NormalizeDomain(in)
		if err != nil {
			if !errors.Is(err, sqladapter.ErrInvalidInput) {
				t.Fatalf("error %v does not match ErrInvalidInput", err)
			}
			return
		}
		// The result is canonical: normalising it again changes nothing,
		// and it fits the column's constraints.
		again, err := repo.NormalizeDomain(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeDomain(%q) = %q, but NormalizeDomain(%q) = %q, %v", in, got, got, again, err)
		}
		if len(got) == 0 || len(got) > 253 || strings.ToLower(got) != got {
			t.Fatalf("NormalizeDomain(%q) = %q breaks the column's constraints", in, got)
		}
	})
}

// A trailing full stop in any of the forms IDNA maps to "." (U+3002
// ideographic, U+FF0E fullwidth, U+FF61 halfwidth ideographic) is removed
// like a trailing "."; only one, as with ".".
func TestNormalizeDomainTrailingFullStops(t *testing.T) {
	t.Parallel()
	for _, dot := range []string{".", "\u3002", "\uff0e", "\uff61"} {
		for _, c := range []struct{ in, want string }{
			{"example.com" + dot, "example.com"},
			{"bücher.de" + dot, "xn--bcher-kva.de"},
			{"例え" + dot + "テスト" + dot, "xn--r8jz45g.xn--zckzah"},
			{"https://www.example.com" + dot + ":443/x", "example.com"},
			{" example" + dot + "com" + dot + " ", "example.com"},
		} {
			if got, err := repo.NormalizeDomain(c.in); err != nil || got != c.want {
				t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
		}
		for _, in := range []string{"example.com" + dot + dot, "example.com." + dot, dot} {
			got, err := repo.NormalizeDomain(in)
			var ve *repo.ValidationError
			if !errors.As(err, &ve) || ve.Field != "domain" {
				t.Errorf("NormalizeDomain(%q) = %q, %v; want a domain error", in, got, err)
			}
		}
	}
}
