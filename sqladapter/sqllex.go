package sqladapter

import (
	"database/sql/driver"
	"strings"
)

// preparable reports whether lib/pq can describe query with PREPARE: any
// statement except the utility commands PREPARE does not accept (DDL,
// transaction control, SET, COPY, …). An unknown first word counts as
// preparable, so a misspelt keyword fails at Prepare time as it would
// with a server-side Prepare.
func preparable(query string) bool {
	q := strings.TrimLeft(skipComments(query), " \t\r\n(")
	end := strings.IndexFunc(q, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
	if end < 0 {
		end = len(q)
	}
	if end == 0 {
		return false
	}
	return !utilityCommands[strings.ToUpper(q[:end])]
}

var utilityCommands = map[string]bool{
	"ABORT": true, "ALTER": true, "ANALYZE": true, "ANALYSE": true, "BEGIN": true, "CALL": true,
	"CHECKPOINT": true, "CLOSE": true, "CLUSTER": true, "COMMENT": true, "COMMIT": true, "COPY": true,
	"CREATE": true, "DEALLOCATE": true, "DECLARE": true, "DISCARD": true, "DO": true, "DROP": true,
	"END": true, "EXECUTE": true, "EXPLAIN": true, "FETCH": true, "GRANT": true, "IMPORT": true,
	"LISTEN": true, "LOAD": true, "LOCK": true, "MOVE": true, "NOTIFY": true, "PREPARE": true,
	"REASSIGN": true, "REFRESH": true, "REINDEX": true, "RELEASE": true, "RESET": true, "REVOKE": true,
	"ROLLBACK": true, "SAVEPOINT": true, "SECURITY": true, "SET": true, "SHOW": true, "START": true,
	"TRUNCATE": true, "UNLISTEN": true, "VACUUM": true,
}

// singleStatement reports whether query is one SQL statement (an optional
// trailing semicolon, whitespace and comments allowed after it). It knows
// PostgreSQL's quoting: '…' (with ” and, for E'…', backslash escapes),
// "…", $tag$…$tag$, -- comments and nested /* */ comments. Anything it
// cannot follow to the end counts as not single.
func singleStatement(query string) bool {
	q := query
	sawEnd := false // a top-level ';' has been seen
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				return true // a trailing comment: describe adds a newline after it
			}
			i += j + 1
			continue
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			depth, j := 1, i+2
			for j < len(q) && depth > 0 {
				switch {
				case strings.HasPrefix(q[j:], "/*"):
					depth, j = depth+1, j+2
				case strings.HasPrefix(q[j:], "*/"):
					depth, j = depth-1, j+2
				default:
					j++
				}
			}
			if depth > 0 {
				return false
			}
			i = j
			continue
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
			continue
		}
		if sawEnd {
			return false // something after the first statement
		}
		switch {
		case c == ';':
			sawEnd = true
			i++
		case c == '\'':
			escapes := i > 0 && (q[i-1] == 'E' || q[i-1] == 'e') && (i < 2 || !isIdentByte(q[i-2]))
			j := i + 1
			for ; j < len(q); j++ {
				if escapes && q[j] == '\\' {
					j++
					continue
				}
				if q[j] == '\'' {
					if j+1 < len(q) && q[j+1] == '\'' {
						j++
						continue
					}
					break
				}
			}
			if j >= len(q) {
				return false
			}
			i = j + 1
		case c == '"':
			j := strings.IndexByte(q[i+1:], '"')
			if j < 0 {
				return false
			}
			i += j + 2
		case c == '$' && (i == 0 || !isIdentByte(q[i-1])):
			// $tag$ opens a dollar quote; $1 is a parameter.
			j := i + 1
			for j < len(q) && isIdentByte(q[j]) && !(j == i+1 && q[j] >= '0' && q[j] <= '9') {
				j++
			}
			if j < len(q) && q[j] == '$' && !(j > i+1 && q[i+1] >= '0' && q[i+1] <= '9') {
				tag := q[i : j+1]
				end := strings.Index(q[j+1:], tag)
				if end < 0 {
					return false
				}
				i = j + 1 + end + len(tag)
			} else {
				i = j
			}
		default:
			i++
		}
	}
	return true
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// skipComments drops leading whitespace and SQL comments. It runs on every
// query: a byte loop, without strings.TrimLeft's cutset set-up.
func skipComments(q string) string {
	for {
		q = trimLeftSpace(q)
		switch {
		case len(q) >= 2 && q[0] == '-' && q[1] == '-':
			i := strings.IndexByte(q, '\n')
			if i < 0 {
				return ""
			}
			q = q[i+1:]
		case len(q) >= 2 && q[0] == '/' && q[1] == '*':
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

// trimLeftSpace is strings.TrimLeft(q, " \t\r\n").
func trimLeftSpace(q string) string {
	i := 0
	for i < len(q) && (q[i] == ' ' || q[i] == '\t' || q[i] == '\r' || q[i] == '\n') {
		i++
	}
	return q[i:]
}

// leadingWord returns the first word of query — its leading ASCII letters
// and underscores, as written — after leading comments and opening
// parentheses (strings.TrimLeft(skipComments(query), " \t\r\n(")). It
// allocates nothing: it runs on every query.
func leadingWord(query string) string {
	q := query
	if q == "" || !wordByte[q[0]] { // else the common case: no comment, space or parenthesis first
		q = skipComments(q)
		i := 0
		for i < len(q) && (q[i] == ' ' || q[i] == '\t' || q[i] == '\r' || q[i] == '\n' || q[i] == '(') {
			i++
		}
		q = q[i:]
	}
	end := 0
	for end < len(q) && wordByte[q[end]] {
		end++
	}
	return q[:end]
}

// wordByte holds the bytes of a leadingWord: ASCII letters and '_'.
var wordByte = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
	}
	return t
}()

// firstWords returns the first n words of query (upper case), after
// leading comments and opening parentheses.
func firstWords(query string, n int) []string {
	q := strings.TrimLeft(skipComments(query), " \t\r\n(")
	var out []string
	for len(out) < n {
		q = strings.TrimLeft(q, " \t\r\n")
		end := strings.IndexFunc(q, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_')
		})
		if end < 0 {
			end = len(q)
		}
		if end == 0 {
			break
		}
		out = append(out, strings.ToUpper(q[:end]))
		q = q[end:]
	}
	return out
}

// transactional reports whether a statement may be wrapped in a
// transaction of its own: not transaction control, none of the commands
// PostgreSQL refuses inside a transaction block, and not CALL or DO, whose
// procedure or block may COMMIT, which it refuses there too.
func transactional(query string) bool {
	w := firstWords(query, 3)
	if len(w) == 0 {
		return false
	}
	switch w[0] {
	case "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE",
		"PREPARE", "VACUUM", "CLUSTER", "DISCARD", "CHECKPOINT", "REINDEX", "CALL", "DO":
		return false
	case "CREATE", "DROP", "ALTER":
		if len(w) > 1 {
			switch w[1] {
			case "DATABASE", "TABLESPACE", "SYSTEM", "SUBSCRIPTION":
				return false
			}
		}
		if strings.Contains(strings.ToUpper(query), "CONCURRENTLY") {
			return false
		}
	}
	return true
}

// firstWordIs reports whether the first word of query, after leading
// comments and opening parentheses, is word (given in upper case), in any
// case. Unlike firstWords it allocates nothing.
func firstWordIs(query, word string) bool {
	return strings.EqualFold(leadingWord(query), word)
}

// isCopyFromStdin reports a COPY … FROM STDIN statement.
func isCopyFromStdin(query string) bool {
	return copyFromStdin(query, leadingWord(query))
}

// copyFromStdin is isCopyFromStdin given query's leadingWord.
func copyFromStdin(query, word string) bool {
	if len(word) != 4 || word[0]|0x20 != 'c' || !strings.EqualFold(word, "COPY") {
		return false
	}
	u := strings.ToUpper(query)
	i := strings.Index(u, "FROM")
	return i >= 0 && strings.HasPrefix(strings.TrimLeft(u[i+4:], " \t\r\n"), "STDIN")
}

// changesTypes reports statements after which the same SQL text may have
// other parameter types: DDL, and anything that sets search_path (in its
// text, or as an argument of set_config).
func changesTypes(query string, args []driver.NamedValue) bool {
	return changesTypesWord(query, leadingWord(query), args)
}

// changesTypesWord is changesTypes given query's leadingWord.
func changesTypesWord(query, word string, args []driver.NamedValue) bool {
	if isDDL(word) || mentionsSearchPath(query) {
		return true
	}
	for _, a := range args {
		if s, ok := a.Value.(string); ok && strings.EqualFold(s, "search_path") {
			return true
		}
	}
	return false
}

// isDDL reports whether word, a leadingWord, is ALTER, CREATE, DROP or
// COMMENT, in any case. (word is ASCII letters and underscores: |0x20
// lowers a letter's case.)
func isDDL(word string) bool {
	if word == "" {
		return false
	}
	switch c := word[0] | 0x20; {
	case c == 'a':
		return strings.EqualFold(word, "ALTER")
	case c == 'c':
		return strings.EqualFold(word, "CREATE") || strings.EqualFold(word, "COMMENT")
	case c == 'd':
		return strings.EqualFold(word, "DROP")
	}
	return false
}

// mentionsSearchPath reports whether query contains "search_path" or
// "SEARCH_PATH" (strings.Contains of each), in one pass over its
// underscores.
func mentionsSearchPath(query string) bool {
	const n = len("search")
	for i := n; i < len(query); {
		j := strings.IndexByte(query[i:], '_')
		if j < 0 {
			return false
		}
		i += j
		if i+5 <= len(query) {
			if w := query[i-n : i+5]; w == "search_path" || w == "SEARCH_PATH" {
				return true
			}
		}
		i++
	}
	return false
}
