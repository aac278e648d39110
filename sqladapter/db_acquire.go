package sqladapter

import (
	"context"
	"database/sql"

	"github.com/jmoiron/sqlx"
)

// The methods below shadow *sqlx.DB's so that every call that takes a
// connection from the pool honours the acquire timeout (see
// [WithAcquireTimeout]). Without one they call sqlx directly.

// acq returns ctx bounded by the acquire timeout and the release func to
// call when the call is over (nil when there is no timeout).
func (db *DB) acq(ctx context.Context) (context.Context, *acquireCtx) {
	if db.opts.acquireTimeout <= 0 {
		return ctx, nil
	}
	a := withAcquireTimeout(ctx, db.opts.acquireTimeout)
	return a, a
}

// doneWith releases a on error, or always when keep is false (the result
// holds no reference to the context).
func doneWith(a *acquireCtx, err error, keep bool) {
	if a != nil && (err != nil || !keep) {
		a.release()
	}
}

// ctxErr classifies an error that database/sql returned without asking the
// driver — it gave up waiting for a connection because ctx ended — so that
// it matches ErrTimeout or ErrCanceled like a driver's. Other errors pass
// unchanged (the connection classified them; sql.ErrNoRows stays itself).
func ctxErr(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	return ClassifyContext(ctx, err)
}

// ExecContext is sql.DB.ExecContext with the acquire timeout.
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	c, a := db.acq(ctx)
	r, err := db.DB.ExecContext(c, query, args...)
	doneWith(a, err, false)
	return r, ctxErr(ctx, err)
}

// Exec is ExecContext with context.Background.
func (db *DB) Exec(query string, args ...any) (sql.Result, error) {
	return db.ExecContext(context.Background(), query, args...)
}

// QueryContext is sql.DB.QueryContext with the acquire timeout.
func (db *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	c, a := db.acq(ctx)
	r, err := db.DB.QueryContext(c, query, args...)
	doneWith(a, err, true)
	return r, ctxErr(ctx, err)
}

// Query is QueryContext with context.Background.
func (db *DB) Query(query string, args ...any) (*sql.Rows, error) {
	return db.QueryContext(context.Background(), query, args...)
}

// QueryRowContext is sql.DB.QueryRowContext with the acquire timeout.
func (db *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	c, a := db.acq(ctx)
	r := db.DB.QueryRowContext(c, query, args...)
	doneWith(a, r.Err(), true)
	return r
}

// QueryRow is QueryRowContext with context.Background.
func (db *DB) QueryRow(query string, args ...any) *sql.Row {
	return db.QueryRowContext(context.Background(), query, args...)
}

// QueryxContext is sqlx.DB.QueryxContext with the acquire timeout.
func (db *DB) QueryxContext(ctx context.Context, query string, args ...any) (*sqlx.Rows, error) {
	c, a := db.acq(ctx)
	r, err := db.DB.QueryxContext(c, query, args...)
	doneWith(a, err, true)
	return r, ctxErr(ctx, err)
}

// Queryx is QueryxContext with context.Background.
func (db *DB) Queryx(query string, args ...any) (*sqlx.Rows, error) {
	return db.QueryxContext(context.Background(), query, args...)
}

// QueryRowxContext is sqlx.DB.QueryRowxContext with the acquire timeout.
func (db *DB) QueryRowxContext(ctx context.Context, query string, args ...any) *sqlx.Row {
	c, a := db.acq(ctx)
	r := db.DB.QueryRowxContext(c, query, args...)
	doneWith(a, r.Err(), true)
	return r
}

// QueryRowx is QueryRowxContext with context.Background.
func (db *DB) QueryRowx(query string, args ...any) *sqlx.Row {
	return db.QueryRowxContext(context.Background(), query, args...)
}

// GetContext is sqlx.DB.GetContext with the acquire timeout.
func (db *DB) GetContext(ctx context.Context, dest any, query string, args ...any) error {
	return ctxErr(ctx, sqlx.GetContext(ctx, db, dest, query, args...))
}

// Get is GetContext with context.Background.
func (db *DB) Get(dest any, query string, args ...any) error {
	return db.GetContext(context.Background(), dest, query, args...)
}

// SelectContext is sqlx.DB.SelectContext with the acquire timeout.
func (db *DB) SelectContext(ctx context.Context, dest any, query string, args ...any) error {
	return ctxErr(ctx, sqlx.SelectContext(ctx, db, dest, query, args...))
}

// Select is SelectContext with context.Background.
func (db *DB) Select(dest any, query string, args ...any) error {
	return db.SelectContext(context.Background(), dest, query, args...)
}

// NamedExecContext is sqlx.DB.NamedExecContext with the acquire timeout.
func (db *DB) NamedExecContext(ctx context.Context, query string, arg any) (sql.Result, error) {
	r, err := sqlx.NamedExecContext(ctx, db, query, arg)
	return r, ctxErr(ctx, err)
}

// NamedExec is NamedExecContext with context.Background.
func (db *DB) NamedExec(query string, arg any) (sql.Result, error) {
	return db.NamedExecContext(context.Background(), query, arg)
}

// NamedQueryContext is sqlx.DB.NamedQueryContext with the acquire timeout.
func (db *DB) NamedQueryContext(ctx context.Context, query string, arg any) (*sqlx.Rows, error) {
	r, err := sqlx.NamedQueryContext(ctx, db, query, arg)
	return r, ctxErr(ctx, err)
}

// NamedQuery is NamedQueryContext with context.Background.
func (db *DB) NamedQuery(query string, arg any) (*sqlx.Rows, error) {
	return db.NamedQueryContext(context.Background(), query, arg)
}

// MustExecContext is ExecContext that panics on error, as sqlx's.
func (db *DB) MustExecContext(ctx context.Context, query string, args ...any) sql.Result {
	r, err := db.ExecContext(ctx, query, args...)
	if err != nil {
		panic(err)
	}
	return r
}

// MustExec is MustExecContext with context.Background.
func (db *DB) MustExec(query string, args ...any) sql.Result {
	return db.MustExecContext(context.Background(), query, args...)
}

// PrepareContext is sql.DB.PrepareContext with the acquire timeout.
func (db *DB) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	c, a := db.acq(ctx)
	s, err := db.DB.PrepareContext(c, query)
	doneWith(a, err, false)
	return s, ctxErr(ctx, err)
}

// Prepare is PrepareContext with context.Background.
func (db *DB) Prepare(query string) (*sql.Stmt, error) {
	return db.PrepareContext(context.Background(), query)
}

// PreparexContext is sqlx.DB.PreparexContext with the acquire timeout.
func (db *DB) PreparexContext(ctx context.Context, query string) (*sqlx.Stmt, error) {
	c, a := db.acq(ctx)
	s, err := db.DB.PreparexContext(c, query)
	doneWith(a, err, false)
	return s, ctxErr(ctx, err)
}

// Preparex is PreparexContext with context.Background.
func (db *DB) Preparex(query string) (*sqlx.Stmt, error) {
	return db.PreparexContext(context.Background(), query)
}

// PrepareNamedContext is sqlx.DB.PrepareNamedContext with the acquire timeout.
func (db *DB) PrepareNamedContext(ctx context.Context, query string) (*sqlx.NamedStmt, error) {
	c, a := db.acq(ctx)
	s, err := db.DB.PrepareNamedContext(c, query)
	doneWith(a, err, false)
	return s, ctxErr(ctx, err)
}

// PrepareNamed is PrepareNamedContext with context.Background.
func (db *DB) PrepareNamed(query string) (*sqlx.NamedStmt, error) {
	return db.PrepareNamedContext(context.Background(), query)
}

// BeginTx is sql.DB.BeginTx with the acquire timeout.
func (db *DB) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	c, a := db.acq(ctx)
	tx, err := db.DB.BeginTx(c, opts)
	doneWith(a, err, true)
	return tx, ctxErr(ctx, err)
}

// Begin is BeginTx with context.Background.
func (db *DB) Begin() (*sql.Tx, error) { return db.BeginTx(context.Background(), nil) }

// BeginTxx is sqlx.DB.BeginTxx with the acquire timeout.
func (db *DB) BeginTxx(ctx context.Context, opts *sql.TxOptions) (*sqlx.Tx, error) {
	c, a := db.acq(ctx)
	tx, err := db.DB.BeginTxx(c, opts)
	doneWith(a, err, true)
	return tx, ctxErr(ctx, err)
}

// Beginx is BeginTxx with context.Background.
func (db *DB) Beginx() (*sqlx.Tx, error) { return db.BeginTxx(context.Background(), nil) }

// MustBeginTx is BeginTxx that panics on error, as sqlx's.
func (db *DB) MustBeginTx(ctx context.Context, opts *sql.TxOptions) *sqlx.Tx {
	tx, err := db.BeginTxx(ctx, opts)
	if err != nil {
		panic(err)
	}
	return tx
}

// MustBegin is MustBeginTx with context.Background.
func (db *DB) MustBegin() *sqlx.Tx { return db.MustBeginTx(context.Background(), nil) }

// Conn is sql.DB.Conn with the acquire timeout.
func (db *DB) Conn(ctx context.Context) (*sql.Conn, error) {
	c, a := db.acq(ctx)
	conn, err := db.DB.Conn(c)
	doneWith(a, err, false)
	return conn, ctxErr(ctx, err)
}

// Connx is sqlx.DB.Connx with the acquire timeout.
func (db *DB) Connx(ctx context.Context) (*sqlx.Conn, error) {
	c, a := db.acq(ctx)
	conn, err := db.DB.Connx(c)
	doneWith(a, err, false)
	return conn, ctxErr(ctx, err)
}

// PingContext is sql.DB.PingContext with the acquire timeout.
func (db *DB) PingContext(ctx context.Context) error {
	c, a := db.acq(ctx)
	err := db.DB.PingContext(c)
	doneWith(a, err, false)
	return ctxErr(ctx, err)
}

// Ping is PingContext with context.Background.
func (db *DB) Ping() error { return db.PingContext(context.Background()) }
