package sqladapter

import (
	"context"
	"crypto/rand"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/lib/pq"
)

// pqDescribe checks query and reads its parameter types with one simple
// Query message — PREPARE, a look-up in pg_prepared_statements, DEALLOCATE —
// which a pooler runs on one server connection and which leaves nothing
// behind. lib/pq cannot send an unnamed Parse/Describe on its own, and its
// Prepare names statements "1", "2", … that collide through a pooler.
func pqDescribe(ctx context.Context, dc driver.Conn, query string) ([]string, error) {
	if !preparable(query) {
		return nil, errNotDescribable
	}
	if !singleStatement(query) {
		// Spliced into a simple Query message, a second statement would
		// run. A server-side Prepare refuses it too.
		return nil, errMultipleStatements
	}
	qc, ok := dc.(driver.QueryerContext)
	if !ok {
		return nil, errNotDescribable
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	name := "poolsafe_describe_" + hex.EncodeToString(rnd[:])
	prefix := "PREPARE " + name + " AS "
	// The newline ends a trailing -- comment in query.
	msg := prefix + query + "\n;SELECT array_to_string(parameter_types::text[], ',') FROM pg_prepared_statements WHERE name = '" +
		name + "';DEALLOCATE " + name
	rows, err := qc.QueryContext(ctx, msg, nil)
	if err != nil {
		return nil, shiftPosition(err, len(prefix))
	}
	defer rows.Close()
	dest := make([]driver.Value, 1)
	if err := rows.Next(dest); err != nil {
		if err == io.EOF {
			return nil, errors.New("sqladapter: describe returned no row")
		}
		return nil, err
	}
	var s string
	switch v := dest[0].(type) {
	case string:
		s = v
	case []byte:
		s = string(v)
	}
	if s == "" {
		return []string{}, nil
	}
	return strings.Split(s, ","), nil
}

// shiftPosition makes a lib/pq error's position point into the caller's
// SQL rather than into the PREPARE wrapped around it.
func shiftPosition(err error, by int) error {
	var pe *pq.Error
	if !errors.As(err, &pe) || pe.Position == "" {
		return err
	}
	p, convErr := strconv.Atoi(pe.Position)
	if convErr != nil || p <= by {
		return err
	}
	cp := *pe
	cp.Position = fmt.Sprint(p - by)
	return &cp
}
