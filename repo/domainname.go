package repo

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Domain name limits (RFC 1035).
const (
	maxDomainLen = 253
	maxLabelLen  = 63
)

var domainProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.StrictDomainName(true),
	idna.Transitional(false),
)

// NormalizeDomain turns what a user typed — "HTTPS://www.Example.COM:443/path?q",
// "bücher.de." — into the canonical name stored in domains.domain:
//
//   - surrounding spaces, the scheme, user info, port, path, query,
//     fragment and a trailing dot ("." or the ideographic, fullwidth or
//     halfwidth "。", "．", "｡") are removed, and letters lower-cased;
//   - leading "www." labels are removed while two labels remain
//     ("www.example.com" and "example.com" are the same site to a scraper;
//     "www.com" stays as it is);
//   - internationalised names become their ASCII (punycode) form
//     ("bücher.de" → "xn--bcher-kva.de") by IDNA 2008 lookup rules;
//   - the result must have at least two labels, each 1–63 letters, digits
//     or hyphens not starting or ending with a hyphen, 253 characters in
//     all, and must not be an IP address.
//
// An error says why the name was rejected; it matches
// sqladapter.ErrInvalidInput.
func NormalizeDomain(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", invalid("domain", "is empty")
	}
	if !utf8.ValidString(s) {
		return "", invalid("domain", "%s is not valid UTF-8", quote(raw))
	}
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	} else {
		s = strings.TrimPrefix(s, "//")
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if strings.HasPrefix(s, "[") {
		return "", invalid("domain", "%s is an IP address, not a domain name", quote(raw))
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	s = trimTrailingDot(s)
	if s == "" {
		return "", invalid("domain", "%s has no host name", quote(raw))
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return "", invalid("domain", "%s is an IP address, not a domain name", quote(raw))
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" {
			return "", invalid("domain", "%s has an empty label", quote(raw))
		}
	}
	ascii, err := domainProfile.ToASCII(s)
	if err != nil {
		return "", invalid("domain", "%s is not a valid domain name: %s", quote(raw), idnaReason(err))
	}
	ascii = strings.ToLower(ascii)
	labels := strings.Split(ascii, ".")
	if len(labels) < 2 {
		return "", invalid("domain", "%s needs at least two labels (like example.com)", quote(raw))
	}
	for labels[0] == "www" && len(labels) > 2 {
		labels = labels[1:]
		ascii = strings.Join(labels, ".")
	}
	for _, l := range labels {
		switch {
		case l == "":
			return "", invalid("domain", "%s has an empty label", quote(raw))
		case len(l) > maxLabelLen:
			return "", invalid("domain", "%s has a label longer than %d characters", quote(raw), maxLabelLen)
		case strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-"):
			return "", invalid("domain", "%s has a label that starts or ends with a hyphen", quote(raw))
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", invalid("domain", "%s contains the character %q", quote(raw), c)
			}
		}
	}
	if len(ascii) > maxDomainLen {
		return "", invalid("domain", "%s is longer than %d characters", quote(raw), maxDomainLen)
	}
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		return "", invalid("domain", "%s has an all-numeric top-level label", quote(raw))
	}
	if back, err := domainProfile.ToASCII(ascii); err != nil || back != ascii {
		return "", invalid("domain", "%s is not a valid domain name: its ASCII form does not round-trip", quote(raw))
	}
	return ascii, nil
}

// trimTrailingDot removes one trailing full stop: "." or one of the forms
// IDNA lookup maps to it (U+3002 ideographic, U+FF0E fullwidth, U+FF61
// halfwidth ideographic), so that "bücher.de。" is "bücher.de." is
// "bücher.de".
func trimTrailingDot(s string) string {
	for _, dot := range []string{".", "\u3002", "\uff0e", "\uff61"} {
		if t, ok := strings.CutSuffix(s, dot); ok {
			return t
		}
	}
	return s
}

// idnaReason shortens an idna error to its reason. The package's
// "invalid label" error quotes the whole label, which may be as long as the
// input: it is quoted again with quote.
func idnaReason(err error) string {
	msg := strings.TrimPrefix(err.Error(), "idna: ")
	if q, ok := strings.CutPrefix(msg, "invalid label "); ok {
		if label, err := strconv.Unquote(q); err == nil {
			return "invalid label " + quote(label)
		}
		return "invalid label"
	}
	if len(msg) > maxQuoted {
		return quote(msg)
	}
	return msg
}
