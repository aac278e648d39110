package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// The input checks. Each returns a *ValidationError naming the field, so
// that invalid input is refused before anything is sent.

// requireTenant rejects the nil UUID as a tenant.
func requireTenant(tenant uuid.UUID) error {
	if tenant == uuid.Nil {
		return invalid("tenant", "is required (got the nil UUID)")
	}
	return nil
}

// cleanEmail validates an email address and returns it trimmed.
func cleanEmail(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	switch {
	case s == "":
		return "", invalid("email", "is required")
	case !utf8.ValidString(s):
		return "", invalid("email", "is not valid UTF-8")
	case len(s) > MaxEmailLen:
		return "", invalid("email", "is longer than %d bytes", MaxEmailLen)
	}
	addr, err := mail.ParseAddress(s)
	if err != nil {
		// Some of net/mail's reasons end by quoting the input again.
		reason, _, _ := strings.Cut(strings.TrimPrefix(err.Error(), "mail: "), ", got ")
		return "", invalid("email", "%s is not an email address: %s", quote(s), reason)
	}
	if addr.Name != "" || addr.Address != s {
		return "", invalid("email", "%s must be a bare address like name@example.com, without a display name or brackets", quote(s))
	}
	at := strings.LastIndexByte(s, '@')
	local, domain := s[:at], s[at+1:]
	switch {
	case len(local) > 64:
		return "", invalid("email", "%s has a local part longer than 64 bytes", quote(s))
	case strings.IndexFunc(s, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) >= 0:
		return "", invalid("email", "%s contains a space or control character", quote(s))
	case strings.HasPrefix(domain, "["):
		return "", invalid("email", "%s has an address literal as its domain", quote(s))
	case !strings.Contains(strings.Trim(domain, "."), ".") || strings.Contains(domain, ".."):
		return "", invalid("email", "%s needs a domain like example.com", quote(s))
	}
	return s, nil
}

// cleanDisplayName validates a display name and returns it trimmed.
func cleanDisplayName(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if err := checkText("display_name", s, MaxDisplayNameLen); err != nil {
		return "", err
	}
	return s, nil
}

// cleanAttributes checks attributes are a JSON object, "{}" when empty.
func cleanAttributes(raw json.RawMessage) (json.RawMessage, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return json.RawMessage(`{}`), nil
	}
	if err := checkJSON("attributes", trimmed); err != nil {
		return nil, err
	}
	if trimmed[0] != '{' {
		return nil, invalid("attributes", "must be a JSON object")
	}
	return trimmed, nil
}

// normalizeField is NormalizeDomain with its error reported for field.
func normalizeField(field, raw string) (string, error) {
	norm, err := NormalizeDomain(raw)
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			return "", &ValidationError{Field: field, Problem: ve.Problem}
		}
		return "", err
	}
	return norm, nil
}

// checkText checks s is text a column stores: valid UTF-8, no NUL, at
// most max characters.
func checkText(field, s string, max int) error {
	switch {
	case !utf8.ValidString(s):
		return invalid(field, "is not valid UTF-8")
	case strings.ContainsRune(s, 0):
		return invalid(field, "contains a NUL character")
	case utf8.RuneCountInString(s) > max:
		return invalid(field, "is longer than %d characters", max)
	}
	return nil
}

// checkRequiredText is checkText for a field that must not be empty.
func checkRequiredText(field, s string, max int) error {
	if s == "" {
		return invalid(field, "is required")
	}
	return checkText(field, s, max)
}

func checkJobKind(field, kind string) error { return checkRequiredText(field, kind, MaxJobKindLen) }

func checkWorker(worker string) error { return checkName("worker", worker) }

// checkName checks the name of a worker or claimer.
func checkName(field, name string) error { return checkRequiredText(field, name, MaxWorkerLen) }

func checkLease(lease time.Duration) error {
	if lease < time.Millisecond {
		return invalid("lease", "must be at least 1ms, got %v", lease)
	}
	return nil
}

func checkInt32(field string, v int) error {
	if v < math.MinInt32 || v > math.MaxInt32 {
		return invalid(field, "%d does not fit in 32 bits", v)
	}
	return nil
}

func jobMaxAttempts(field string, n int) (int, error) {
	switch {
	case n == 0:
		return DefaultJobMaxAttempts, nil
	case n < 0 || n > math.MaxInt32:
		return 0, invalid(field, "must be between 1 and %d, got %d", math.MaxInt32, n)
	}
	return n, nil
}

func optionalID(field string, id *uuid.UUID) (string, error) {
	switch {
	case id == nil:
		return "", nil
	case *id == uuid.Nil:
		return "", invalid(field, "is the nil UUID")
	}
	return id.String(), nil
}

// jobObject checks raw is a JSON object and returns it as text, "{}" when
// empty.
func jobObject(field string, raw json.RawMessage) (string, error) {
	s, err := jobJSON(field, raw)
	if err != nil {
		return "", err
	}
	if s == nil {
		return "{}", nil
	}
	if str := s.(string); str[0] != '{' {
		return "", invalid(field, "must be a JSON object")
	}
	return s.(string), nil
}

// jobJSON checks raw is JSON and returns it as text for a $n::jsonb
// parameter (a string travels alike through both drivers and sqlmock), or
// nil (SQL NULL) when raw is empty.
func jobJSON(field string, raw json.RawMessage) (any, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return nil, nil
	}
	if err := checkJSON(field, trimmed); err != nil {
		return nil, err
	}
	return string(trimmed), nil
}

// checkJSON checks raw is JSON that PostgreSQL's jsonb stores: valid JSON
// (json.Valid), valid UTF-8 (json.Valid does not check it), and no string
// — key or value — with a \u0000 escape or a UTF-16 surrogate escape that
// is not part of a pair, which json.Valid accepts and jsonb refuses.
func checkJSON(field string, raw []byte) error {
	switch {
	case !json.Valid(raw):
		return invalid(field, "is not valid JSON")
	case !utf8.Valid(raw):
		return invalid(field, "is not valid UTF-8")
	}
	if problem := jsonbEscapeProblem(raw); problem != "" {
		return invalid(field, "%s", problem)
	}
	return nil
}

// jsonbEscapeProblem returns what jsonb would refuse in the \u escapes of
// raw, valid JSON, or "" when nothing: \u0000, a high surrogate escape
// (\ud800-\udbff) not followed at once by a low one (\udc00-\udfff), or a
// low one without a high one before it.
func jsonbEscapeProblem(raw []byte) string {
	unpaired := func(esc []byte) string {
		return fmt.Sprintf("has an unpaired surrogate escape (\\u%s), which PostgreSQL's jsonb cannot store", esc)
	}
	inString := false
	var high []byte // the hex digits of a high surrogate escape awaiting its low one
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !inString {
			inString = c == '"'
			continue
		}
		isU := c == '\\' && raw[i+1] == 'u'
		if high != nil && !isU {
			return unpaired(high)
		}
		switch {
		case c == '"':
			inString = false
		case isU:
			hex := raw[i+2 : i+6]
			i += 5
			u, _ := strconv.ParseUint(string(hex), 16, 16) // json.Valid checked the 4 hex digits
			switch {
			case u == 0:
				return "contains \\u0000, which PostgreSQL's jsonb cannot store"
			case u >= 0xd800 && u <= 0xdbff:
				if high != nil {
					return unpaired(high)
				}
				high = hex
			case u >= 0xdc00 && u <= 0xdfff:
				if high == nil {
					return unpaired(hex)
				}
				high = nil
			case high != nil:
				return unpaired(high)
			}
		case c == '\\':
			i++ // a one-character escape: \" \\ \/ \b \f \n \r \t
		}
	}
	return ""
}

// cleanJobError makes an error message storable in a text column.
func cleanJobError(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	msg = strings.ReplaceAll(msg, "\x00", "\uFFFD")
	if len(msg) > MaxJobErrorLen {
		cut := MaxJobErrorLen
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	return msg
}
