package sqladapter

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// pgxFields copies the fields of the first *pgconn.PgError in err's chain.
func pgxFields(err error) (serverFields, bool) {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return serverFields{}, false
	}
	severity := pe.SeverityUnlocalized
	if severity == "" {
		severity = pe.Severity // PgBouncer sends only the localized one
	}
	return serverFields{
		severity:   severity,
		message:    pe.Message,
		detail:     pe.Detail,
		hint:       pe.Hint,
		constraint: pe.ConstraintName,
		table:      pe.TableName,
		column:     pe.ColumnName,
		schema:     pe.SchemaName,
	}, true
}

// pgxTimeout reports a pgconn timeout: a context deadline or a network
// timeout inside pgconn.
func pgxTimeout(err error) bool { return pgconn.Timeout(err) }

// pgxConnection reports pgx's own connection failures: a failed connection
// attempt, an operation on a closed connection, or an error pgconn reports
// as raised before anything was sent.
func pgxConnection(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || errors.Is(err, pgconn.ErrConnClosed) || pgconn.SafeToRetry(err)
}
