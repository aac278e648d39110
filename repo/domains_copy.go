package repo

import (
	"context"
	"database/sql"
	"errors"
	"reflect"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// BulkCopyMin is the fewest distinct names for which [Domains.BulkUpsert]
// sends names by COPY when it can: below it, the one statement with the
// names as an array is quicker than a transaction of its own.
const BulkCopyMin = 1000

const bulkCopyMin = BulkCopyMin

// connOpener is a handle that hands out single connections: *sqlx.DB,
// and so *sqladapter.DB.
type connOpener interface {
	Connx(ctx context.Context) (*sqlx.Conn, error)
}

// copier streams names into the COPY table on one driver.
type copier func(ctx context.Context, conn *sqlx.Conn, tx *sqlx.Tx, names []string) error

// bulkUpsertCopy stores names through a transaction of its own: COPY into
// a transaction-scoped table, then one INSERT … ON CONFLICT DO NOTHING, then
// a read of the names that existed. ok is false (and nothing was sent)
// when the querier is a transaction, or its connections are neither pgx's
// nor lib/pq's (sqlmock's): the caller then uses the statement.
func (r *Domains) bulkUpsertCopy(ctx context.Context, tenant uuid.UUID, names []string) (rows []UpsertedDomain, ok bool, err error) {
	h, isHandle := r.q.(connOpener)
	if !isHandle {
		return nil, false, nil
	}
	conn, err := h.Connx(ctx)
	if err != nil {
		return nil, true, err
	}
	defer conn.Close()
	var cp copier
	if err := conn.Raw(func(dc any) error {
		cp = copierFor(sqladapter.Unwrap(dc))
		return nil
	}); err != nil {
		return nil, true, err
	}
	if cp == nil {
		return nil, false, nil
	}
	tx, err := conn.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, true, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	if _, err := tx.ExecContext(ctx, sqlDomainCopyTable); err != nil {
		return nil, true, err
	}
	if err := cp(ctx, conn, tx, names); err != nil {
		return nil, true, err
	}
	if err := tx.SelectContext(ctx, &rows, r.sql(sqlDomainCopyInsert), tenant); err != nil {
		return nil, true, err
	}
	if len(rows) < len(names) {
		// In the call's own transaction no lock outlives the call: a plain read.
		var existing []UpsertedDomain
		err := tx.SelectContext(ctx, &existing, r.sql(sqlDomainCopyExisting), tenant, textArray(missingNames(names, rows)))
		if err != nil {
			return nil, true, err
		}
		rows = append(rows, existing...)
	}
	return rows, true, tx.Commit()
}

// copierFor returns how to COPY on the driver's own connection dc, or nil.
func copierFor(dc any) copier {
	if _, ok := dc.(*stdlib.Conn); ok {
		return copyPGX
	}
	if t := reflect.TypeOf(dc); t != nil && t.Kind() == reflect.Pointer && strings.HasPrefix(t.Elem().PkgPath(), "github.com/lib/pq") {
		return copyPQ
	}
	return nil
}

// copyPGX streams the names with pgx's CopyFrom, on the connection the
// transaction runs on.
func copyPGX(ctx context.Context, conn *sqlx.Conn, _ *sqlx.Tx, names []string) error {
	return conn.Raw(func(dc any) error {
		pc, ok := sqladapter.Unwrap(dc).(*stdlib.Conn)
		if !ok {
			return errors.New("repo: COPY: the connection is not pgx's")
		}
		_, err := pc.Conn().CopyFrom(ctx, pgx.Identifier{"pg_temp", "poolsafe_domains_in"}, []string{"name"},
			pgx.CopyFromSlice(len(names), func(i int) ([]any, error) { return []any{names[i]}, nil }))
		return err
	})
}

// copyPQ streams the names with lib/pq's COPY FROM STDIN statement, which
// the adapter hands to lib/pq inside a transaction.
func copyPQ(ctx context.Context, _ *sqlx.Conn, tx *sqlx.Tx, names []string) error {
	stmt, err := tx.PrepareContext(ctx, `COPY pg_temp.poolsafe_domains_in (name) FROM STDIN`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, n := range names {
		if _, err := stmt.ExecContext(ctx, n); err != nil {
			return err
		}
	}
	_, err = stmt.ExecContext(ctx)
	return err
}
