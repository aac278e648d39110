package repo

import (
	"errors"
	"fmt"

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
// matches sqladapter.ErrInvalidInput with errors.Is.
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

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Problem: fmt.Sprintf(format, args...)}
}
