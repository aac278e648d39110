package sqladapter

import (
	"errors"

	"github.com/lib/pq"
)

// pqFields copies the fields of the first *pq.Error in err's chain.
func pqFields(err error) (serverFields, bool) {
	var pe *pq.Error
	if !errors.As(err, &pe) {
		return serverFields{}, false
	}
	return serverFields{
		severity:   pe.Severity,
		message:    pe.Message,
		detail:     pe.Detail,
		hint:       pe.Hint,
		constraint: pe.Constraint,
		table:      pe.Table,
		column:     pe.Column,
		schema:     pe.Schema,
	}, true
}
