package driverconf

import (
	"errors"
	"fmt"
)

// ErrInvalidConfig is matched (errors.Is) by every error [Parse], [FromEnv],
// [Config.Validate] and the Open functions return for bad configuration.
var ErrInvalidConfig = errors.New("driverconf: invalid configuration")

// FieldError reports one bad field, URL key or environment variable.
// Its message names the field and says what is wrong; it never contains a
// password.
type FieldError struct {
	// Field is the Config field, URL key or environment variable at fault.
	Field string
	// Problem says what is wrong and, where it can, how to fix it.
	Problem string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("driverconf: %s: %s", e.Field, e.Problem)
}

// Is reports whether target is [ErrInvalidConfig].
func (e *FieldError) Is(target error) bool { return target == ErrInvalidConfig }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}
