package faultproxy

import (
	"bufio"
	"encoding/binary"
	"strings"
)

// Request is what a client sent up to a Sync, a simple Query or a
// FunctionCall: the unit the server answers with one ReadyForQuery.
type Request struct {
	// Conn numbers the proxied connection (from 1), Seq the request on it
	// (from 1).
	Conn, Seq int
	// SQL holds the text of each Parse and Query message of the request.
	SQL []string
	// Prev is the answer to the previous request on the same connection,
	// nil for the first one.
	Prev *Answer

	startup bool // the StartupMessage, answered by the first ReadyForQuery
}

// IsCommit reports whether the request is a simple COMMIT (or END), the
// way both pgx and lib/pq commit a transaction.
func (r *Request) IsCommit() bool {
	if len(r.SQL) != 1 {
		return false
	}
	q := strings.ToLower(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(r.SQL[0]), ";")))
	first, _, _ := strings.Cut(q, " ")
	return first == "commit" || first == "end"
}

// Contains reports whether any statement text of the request contains
// substr, ignoring case.
func (r *Request) Contains(substr string) bool {
	substr = strings.ToLower(substr)
	for _, q := range r.SQL {
		if strings.Contains(strings.ToLower(q), substr) {
			return true
		}
	}
	return false
}

// Answer summarises what the server sent back for one request.
type Answer struct {
	// Results holds one entry per statement that returned rows or a
	// command tag, in order.
	Results []Result
	// Errors holds the SQLSTATE of each ErrorResponse.
	Errors []string
}

// Result is one statement's result. Rows keeps at most the first
// maxAnswerRows rows.
type Result struct {
	Columns []string
	Rows    [][][]byte
	Tag     string
}

const maxAnswerRows = 8

// Value returns the value of column in the first row that has it, and
// whether there was one (a NULL is a nil value with true).
func (a *Answer) Value(column string) ([]byte, bool) {
	if a == nil {
		return nil, false
	}
	for _, res := range a.Results {
		for i, c := range res.Columns {
			if c != column {
				continue
			}
			for _, row := range res.Rows {
				if i < len(row) {
					return row[i], true
				}
			}
		}
	}
	return nil, false
}

// Bool reports whether column holds true in the first row that has it,
// in the text ("t") or the binary (1) format.
func (a *Answer) Bool(column string) bool {
	v, ok := a.Value(column)
	if !ok || len(v) == 0 {
		return false
	}
	s := string(v)
	return s == "t" || s == "true" || (len(v) == 1 && v[0] == 1)
}

// frameReady reports whether r already holds a whole message, so reading
// it will not block.
func frameReady(r *bufio.Reader, typed bool) bool {
	head := 4
	if typed {
		head = 5
	}
	if r.Buffered() < head {
		return false
	}
	hdr, err := r.Peek(head)
	if err != nil {
		return false
	}
	return r.Buffered() >= head-4+int(binary.BigEndian.Uint32(hdr[head-4:]))
}
