package sqladapter

import (
	"database/sql/driver"
	"strings"
	"testing"
)

// The per-query keyword checks, against the straightforward versions they
// replaced (strings.TrimLeft, one firstWordIs per keyword, two
// strings.Contains): the same answers on every input.

func refSkipComments(q string) string {
	for {
		q = strings.TrimLeft(q, " \t\r\n")
		switch {
		case strings.HasPrefix(q, "--"):
			i := strings.IndexByte(q, '\n')
			if i < 0 {
				return ""
			}
			q = q[i+1:]
		case strings.HasPrefix(q, "/*"):
			i := strings.Index(q, "*/")
			if i < 0 {
				return ""
			}
			q = q[i+2:]
		default:
			return q
		}
	}
}

func refFirstWordIs(query, word string) bool {
	q := strings.TrimLeft(refSkipComments(query), " \t\r\n(")
	if len(q) < len(word) || !strings.EqualFold(q[:len(word)], word) {
		return false
	}
	if len(q) == len(word) {
		return true
	}
	c := q[len(word)]
	return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_')
}

func refIsCopyFromStdin(query string) bool {
	if !refFirstWordIs(query, "COPY") {
		return false
	}
	u := strings.ToUpper(query)
	i := strings.Index(u, "FROM")
	return i >= 0 && strings.HasPrefix(strings.TrimLeft(u[i+4:], " \t\r\n"), "STDIN")
}

func refChangesTypes(query string, args []driver.NamedValue) bool {
	for _, kw := range [...]string{"ALTER", "CREATE", "DROP", "COMMENT"} {
		if refFirstWordIs(query, kw) {
			return true
		}
	}
	if strings.Contains(query, "search_path") || strings.Contains(query, "SEARCH_PATH") {
		return true
	}
	for _, a := range args {
		if s, ok := a.Value.(string); ok && strings.EqualFold(s, "search_path") {
			return true
		}
	}
	return false
}

var lexSamples = []string{
	"", " ", "SELECT 1", "select $1::int8", "  -- c\n  copy t FROM stdin", "/* x */ COPY t (a) FROM STDIN",
	"(COPY", "( /* c */ COPY t FROM STDIN", "COPY_X FROM STDIN", "COPY1 from  stdin", "COPYé FROM STDIN",
	"copy t to stdout", "alter table t", "ALTERx", "ALTER", "Create index", "drop", "DROPS", "comment on",
	"COMMENTS", "set search_path = x", "SET SEARCH_PATH TO x", "SET Search_Path TO x", "search_path",
	"_search_path", "xsearch_pat", "select set_config($1, $2, false)", "/* unterminated", "-- only",
	"\t\r\n(((  alter", "SELECT 'search_path'", "search_", "ſearch_path", "CREATE/*c*/TABLE",
}

func TestLexChecksMatchReference(t *testing.T) {
	args := [][]driver.NamedValue{nil, {{Ordinal: 1, Value: "search_path"}}, {{Ordinal: 1, Value: "SEARCH_PATH"}},
		{{Ordinal: 1, Value: "ſearch_path"}}, {{Ordinal: 1, Value: int64(1)}}, {{Ordinal: 1, Value: "search"}}}
	for _, q := range lexSamples {
		checkLex(t, q, args)
	}
}

func checkLex(t *testing.T, q string, args [][]driver.NamedValue) {
	t.Helper()
	if got, want := skipComments(q), refSkipComments(q); got != want {
		t.Errorf("skipComments(%q) = %q, want %q", q, got, want)
	}
	for _, w := range []string{"COPY", "ALTER", "CREATE", "DROP", "COMMENT"} {
		if got, want := firstWordIs(q, w), refFirstWordIs(q, w); got != want {
			t.Errorf("firstWordIs(%q, %q) = %v, want %v", q, w, got, want)
		}
	}
	if got, want := isCopyFromStdin(q), refIsCopyFromStdin(q); got != want {
		t.Errorf("isCopyFromStdin(%q) = %v, want %v", q, got, want)
	}
	for _, a := range args {
		if got, want := changesTypes(q, a), refChangesTypes(q, a); got != want {
			t.Errorf("changesTypes(%q, %v) = %v, want %v", q, a, got, want)
		}
	}
}

func FuzzLexChecksMatchReference(f *testing.F) {
	for _, q := range lexSamples {
		f.Add(q, "search_path")
	}
	f.Fuzz(func(t *testing.T, q, arg string) {
		checkLex(t, q, [][]driver.NamedValue{nil, {{Ordinal: 1, Value: arg}}})
	})
}
