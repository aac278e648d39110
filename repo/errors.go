package repo

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/scrapersky/poolsafe/sqladapter"
)

var (
	// ErrLeaseLost is returned by Heartbeat, Complete, Fail and progress
	// updates when the job is no longer running under this worker's lease
	// (it expired and was rescued, or was cancelled).
	ErrLeaseLost = errors.New("repo: job lease lost")
	// ErrInvalidCursor is returned for a page cursor this package did not make.
	ErrInvalidCursor = errors.New("repo: invalid page cursor")
)

// ValidationError reports input rejected before anything was written. It
// matches sqladapter.ErrInvalidInput with errors.Is, through its Is method
// (which sqladapter.KindOf honours).
//
// The package's other errors of a class match its sentinel the same way:
// sqladapter.ErrNotFound for a missing row (a row of another tenant is
// missing too), sqladapter.ErrConflict for a change the row's state
// forbids, and the database's errors through *sqladapter.Error.
type ValidationError struct {
	Field   string // the input field, e.g. "email" or "domains[3]"
	Problem string
	Err     error // a more specific cause, such as ErrInvalidCursor; may be nil
}

// Unwrap returns the specific cause, if any.
func (e *ValidationError) Unwrap() error { return e.Err }

func (e *ValidationError) Error() string {
	return fmt.Sprintf("repo: invalid %s: %s", e.Field, e.Problem)
}

// Is reports whether target is sqladapter.ErrInvalidInput.
func (e *ValidationError) Is(target error) bool { return target == sqladapter.ErrInvalidInput }

// classError is an error of this package in one of sqladapter's classes,
// such as "not found" for a batch Enqueue cannot add to: errors.Is matches
// the class's sentinel through its Is method, as it does for an
// *sqladapter.Error, so sqladapter.KindOf can tell its class.
type classError struct {
	class error // a sentinel of sqladapter, such as sqladapter.ErrNotFound
	msg   string
}

func (e *classError) Error() string { return e.class.Error() + ": " + e.msg }

// Is reports whether target is the class's sentinel.
func (e *classError) Is(target error) bool { return target == e.class }

// classed returns an error of class (a sqladapter sentinel) for op.
func classed(op string, class error, format string, args ...any) error {
	return fmt.Errorf("%s: %w", op, &classError{class: class, msg: fmt.Sprintf(format, args...)})
}

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// maxQuoted is the most bytes of an input that an error message quotes.
const maxQuoted = 64

// quote is how an error message shows an input the caller gave: quoted as
// %q does, but an input longer than maxQuoted bytes shows only its first
// maxQuoted bytes or fewer (cut between characters), then "…" and its
// length — `"aaaa…aaaa"… (1048576 bytes)` — so that a huge input does not
// make a huge error. Every message that echoes input goes through it.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for i := 0; i < utf8.UTFMax-1 && !utf8.RuneStart(s[cut]); i++ {
		cut-- // back to the start of the character s[maxQuoted] is part of
	}
	return strconv.Quote(s[:cut]) + "… (" + strconv.Itoa(len(s)) + " bytes)"
}
