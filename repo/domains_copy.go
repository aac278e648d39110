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

// copier streams rows (id, tenant_id, domain) into the domains table on
// one driver.
type copier func(ctx context.Context, conn *sqlx.Conn, tx *sqlx.Tx, schema string, tenant uuid.UUID, ids []uuid.UUID, names []string) error

// bulkUpsertCopy stores names in a transaction of its own: it reads the
// names that exist, then COPYs the others straight into domains — with
// ids drawn here, in sorted order like the statement (see
// sqlDomainBulkUpsert) — under a savepoint. When a concurrent call stored
// one of them meanwhile, the COPY fails with a unique violation, is rolled
// back to the savepoint, and the statement stores those names instead,
// inside the same transaction. ok is false (and nothing was sent) when the
// querier is a transaction, or its connections are neither pgx's nor
// lib/pq's (sqlmock's): the caller then uses the statement.
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
	// In the call's own transaction no lock outlives the call: a plain read.
	if err := tx.SelectContext(ctx, &rows, r.sql(sqlDomainCopyExisting), tenant, textArray(names)); err != nil {
		return nil, true, err
	}
	missing := missingNames(names, rows)
	if len(missing) == 0 {
		return rows, true, tx.Commit()
	}
	ids := make([]uuid.UUID, len(missing))
	for i := range ids {
		ids[i] = uuid.New()
	}
	if _, err := tx.ExecContext(ctx, `SAVEPOINT poolsafe_bulk_copy`); err != nil {
		return nil, true, err
	}
	err = cp(ctx, conn, tx, r.schema, tenant, ids, missing)
	switch {
	case err == nil:
		for i, n := range missing {
			rows = append(rows, UpsertedDomain{ID: ids[i], Name: n, Inserted: true})
		}
	case errors.Is(sqladapter.Classify(err), sqladapter.ErrConflict):
		if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT poolsafe_bulk_copy`); err != nil {
			return nil, true, err
		}
		inTx := r.base
		inTx.q = tx
		more, err := (&Domains{inTx}).bulkUpsert(ctx, tenant, missing)
		if err != nil {
			return nil, true, err
		}
		rows = append(rows, more...)
	default:
		return nil, true, err
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

// copyPGX streams the rows with pgx's CopyFrom, on the connection the
// transaction runs on.
func copyPGX(ctx context.Context, conn *sqlx.Conn, _ *sqlx.Tx, schema string, tenant uuid.UUID, ids []uuid.UUID, names []string) error {
	return conn.Raw(func(dc any) error {
		pc, ok := sqladapter.Unwrap(dc).(*stdlib.Conn)
		if !ok {
			return errors.New("repo: COPY: the connection is not pgx's")
		}
		_, err := pc.Conn().CopyFrom(ctx, pgx.Identifier{schema, "domains"},
			[]string{"id", "tenant_id", "domain"},
			pgx.CopyFromSlice(len(names), func(i int) ([]any, error) { return []any{ids[i], tenant, names[i]}, nil }))
		return err
	})
}

// copyPQ streams the rows with lib/pq's COPY FROM STDIN statement, which
// the adapter hands to lib/pq inside a transaction.
func copyPQ(ctx context.Context, _ *sqlx.Conn, tx *sqlx.Tx, schema string, tenant uuid.UUID, ids []uuid.UUID, names []string) error {
	stmt, err := tx.PrepareContext(ctx, `COPY `+quoteIdent(schema)+`.domains (id, tenant_id, domain) FROM STDIN`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	t := tenant.String()
	for i, n := range names {
		if _, err := stmt.ExecContext(ctx, ids[i].String(), t, n); err != nil {
			return err
		}
	}
	_, err = stmt.ExecContext(ctx)
	return err
}
