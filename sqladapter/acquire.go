package sqladapter

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
)

// The acquire timeout (WithAcquireTimeout) bounds how long a call on a *DB
// waits for a free connection, without bounding the call itself.
//
// database/sql waits for a connection on ctx.Done() and tells nobody when it
// has one, so each *DB method below passes database/sql an acquireCtx: its
// Done fires when the timeout expires, until the connection wrapper first sees
// the context (connection made, session reset, statement, transaction or
// ping: the one call acquired). From then on it is the caller's context.

// acquireKey finds an *acquireCtx in a context chain.
type acquireKey struct{}

type acquireCtx struct {
	context.Context // the caller's

	mu    sync.Mutex
	armed bool
	done  chan struct{} // closed when err is set while armed
	err   error
	timer *time.Timer
	stop  func() bool // unregisters from the caller's context
}

func (db *DB) acquire(ctx context.Context) context.Context {
	if db.replicas != nil {
		markPrimaryUse(ctx) // see ReadYourWrites
	}
	if db.acquireTimeout <= 0 {
		return ctx
	}
	a := &acquireCtx{Context: ctx, armed: true, done: make(chan struct{})}
	a.mu.Lock()
	defer a.mu.Unlock()
	d := db.acquireTimeout
	a.timer = time.AfterFunc(d, func() { a.fire(&acquireTimeoutError{timeout: d}) })
	a.stop = context.AfterFunc(ctx, func() { a.fire(context.Cause(ctx)) })
	return a
}

func (a *acquireCtx) fire(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.armed || a.err != nil {
		return
	}
	a.err = err
	close(a.done)
	a.timer.Stop()
	a.stop()
}

// acquireTimeouts is set once a *DB with an acquire timeout exists: until
// then no context can carry an *acquireCtx, and acquired need not look.
var acquireTimeouts atomic.Bool

// acquired disarms the acquire timeout of the call ctx belongs to, if any:
// the connection wrapper calls it wherever a call reaches the driver.
func acquired(ctx context.Context) {
	if acquireTimeouts.Load() {
		disarm(ctx)
	}
}

func disarm(ctx context.Context) {
	a, ok := ctx.Value(acquireKey{}).(*acquireCtx)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.armed && a.err == nil {
		a.timer.Stop()
		a.stop()
	}
	a.armed = false
}

func (a *acquireCtx) Done() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.armed || a.err != nil {
		return a.done
	}
	return a.Context.Done()
}

func (a *acquireCtx) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	if a.armed {
		return nil
	}
	return a.Context.Err()
}

func (a *acquireCtx) Value(key any) any {
	if key == (acquireKey{}) {
		return a
	}
	return a.Context.Value(key)
}

// acquireTimeoutError is what database/sql sees when the wait for a
// connection outlasts the acquire timeout.
type acquireTimeoutError struct{ timeout time.Duration }

func (e *acquireTimeoutError) Error() string {
	return "sqladapter: no free connection within the acquire timeout of " + e.timeout.String() +
		"; raise MaxOpenConns or AcquireTimeout, or hold connections for less time"
}

// Is makes the error match ErrTimeout and context.DeadlineExceeded.
func (e *acquireTimeoutError) Is(target error) bool {
	return target == ErrTimeout || target == context.DeadlineExceeded
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

// The methods below shadow *sqlx.DB's, each one passing its call through
// acquire. sqlx's helpers (Get, Select, Named…) reach them through db.

// ExecContext is sql.DB.ExecContext with the acquire timeout.
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	r, err := db.DB.ExecContext(db.acquire(ctx), query, args...)
	return r, ctxErr(ctx, err)
}

// QueryContext is sql.DB.QueryContext with the acquire timeout.
func (db *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	r, err := db.DB.QueryContext(db.acquire(ctx), query, args...)
	return r, ctxErr(ctx, err)
}

// QueryRowContext is sql.DB.QueryRowContext with the acquire timeout.
func (db *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return db.DB.QueryRowContext(db.acquire(ctx), query, args...)
}

// QueryxContext is sqlx.DB.QueryxContext with the acquire timeout.
func (db *DB) QueryxContext(ctx context.Context, query string, args ...any) (*sqlx.Rows, error) {
	r, err := db.DB.QueryxContext(db.acquire(ctx), query, args...)
	return r, ctxErr(ctx, err)
}

// QueryRowxContext is sqlx.DB.QueryRowxContext with the acquire timeout.
func (db *DB) QueryRowxContext(ctx context.Context, query string, args ...any) *sqlx.Row {
	return db.DB.QueryRowxContext(db.acquire(ctx), query, args...)
}

// GetContext is sqlx.DB.GetContext with the acquire timeout.
func (db *DB) GetContext(ctx context.Context, dest any, query string, args ...any) error {
	return ctxErr(ctx, sqlx.GetContext(ctx, db, dest, query, args...))
}

// SelectContext is sqlx.DB.SelectContext with the acquire timeout.
func (db *DB) SelectContext(ctx context.Context, dest any, query string, args ...any) error {
	return ctxErr(ctx, sqlx.SelectContext(ctx, db, dest, query, args...))
}

// NamedExecContext is sqlx.DB.NamedExecContext with the acquire timeout.
func (db *DB) NamedExecContext(ctx context.Context, query string, arg any) (sql.Result, error) {
	r, err := sqlx.NamedExecContext(ctx, db, query, arg)
	return r, ctxErr(ctx, err)
}

// NamedQueryContext is sqlx.DB.NamedQueryContext with the acquire timeout.
func (db *DB) NamedQueryContext(ctx context.Context, query string, arg any) (*sqlx.Rows, error) {
	r, err := sqlx.NamedQueryContext(ctx, db, query, arg)
	return r, ctxErr(ctx, err)
}

// MustExecContext is ExecContext that panics on error, as sqlx's.
func (db *DB) MustExecContext(ctx context.Context, query string, args ...any) sql.Result {
	return must(db.ExecContext(ctx, query, args...))
}

// PrepareContext is sql.DB.PrepareContext with the acquire timeout.
func (db *DB) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	s, err := db.DB.PrepareContext(db.acquire(ctx), query)
	return s, ctxErr(ctx, err)
}

// PreparexContext is sqlx.DB.PreparexContext with the acquire timeout.
func (db *DB) PreparexContext(ctx context.Context, query string) (*sqlx.Stmt, error) {
	s, err := db.DB.PreparexContext(db.acquire(ctx), query)
	return s, ctxErr(ctx, err)
}

// PrepareNamedContext is sqlx.DB.PrepareNamedContext with the acquire timeout.
func (db *DB) PrepareNamedContext(ctx context.Context, query string) (*sqlx.NamedStmt, error) {
	s, err := db.DB.PrepareNamedContext(db.acquire(ctx), query)
	return s, ctxErr(ctx, err)
}

// BeginTx is sql.DB.BeginTx with the acquire timeout.
func (db *DB) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	tx, err := db.DB.BeginTx(db.acquire(ctx), opts)
	return tx, ctxErr(ctx, err)
}

// BeginTxx is sqlx.DB.BeginTxx with the acquire timeout.
func (db *DB) BeginTxx(ctx context.Context, opts *sql.TxOptions) (*sqlx.Tx, error) {
	tx, err := db.DB.BeginTxx(db.acquire(ctx), opts)
	return tx, ctxErr(ctx, err)
}

// MustBeginTx is BeginTxx that panics on error, as sqlx's.
func (db *DB) MustBeginTx(ctx context.Context, opts *sql.TxOptions) *sqlx.Tx {
	return must(db.BeginTxx(ctx, opts))
}

// Conn is sql.DB.Conn with the acquire timeout.
func (db *DB) Conn(ctx context.Context) (*sql.Conn, error) {
	c, err := db.DB.Conn(db.acquire(ctx))
	return c, ctxErr(ctx, err)
}

// Connx is sqlx.DB.Connx with the acquire timeout.
func (db *DB) Connx(ctx context.Context) (*sqlx.Conn, error) {
	c, err := db.DB.Connx(db.acquire(ctx))
	return c, ctxErr(ctx, err)
}

// PingContext is sql.DB.PingContext with the acquire timeout.
func (db *DB) PingContext(ctx context.Context) error {
	return ctxErr(ctx, db.DB.PingContext(db.acquire(ctx)))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// The methods without a context call the ones above with context.Background.

// Exec is ExecContext with context.Background.
func (db *DB) Exec(query string, args ...any) (sql.Result, error) {
	return db.ExecContext(context.Background(), query, args...)
}

// Query is QueryContext with context.Background.
func (db *DB) Query(query string, args ...any) (*sql.Rows, error) {
	return db.QueryContext(context.Background(), query, args...)
}

// QueryRow is QueryRowContext with context.Background.
func (db *DB) QueryRow(query string, args ...any) *sql.Row {
	return db.QueryRowContext(context.Background(), query, args...)
}

// Queryx is QueryxContext with context.Background.
func (db *DB) Queryx(query string, args ...any) (*sqlx.Rows, error) {
	return db.QueryxContext(context.Background(), query, args...)
}

// QueryRowx is QueryRowxContext with context.Background.
func (db *DB) QueryRowx(query string, args ...any) *sqlx.Row {
	return db.QueryRowxContext(context.Background(), query, args...)
}

// Get is GetContext with context.Background.
func (db *DB) Get(dest any, query string, args ...any) error {
	return db.GetContext(context.Background(), dest, query, args...)
}

// Select is SelectContext with context.Background.
func (db *DB) Select(dest any, query string, args ...any) error {
	return db.SelectContext(context.Background(), dest, query, args...)
}

// NamedExec is NamedExecContext with context.Background.
func (db *DB) NamedExec(query string, arg any) (sql.Result, error) {
	return db.NamedExecContext(context.Background(), query, arg)
}

// NamedQuery is NamedQueryContext with context.Background.
func (db *DB) NamedQuery(query string, arg any) (*sqlx.Rows, error) {
	return db.NamedQueryContext(context.Background(), query, arg)
}

// MustExec is MustExecContext with context.Background.
func (db *DB) MustExec(query string, args ...any) sql.Result {
	return db.MustExecContext(context.Background(), query, args...)
}

// Prepare is PrepareContext with context.Background.
func (db *DB) Prepare(query string) (*sql.Stmt, error) {
	return db.PrepareContext(context.Background(), query)
}

// Preparex is PreparexContext with context.Background.
func (db *DB) Preparex(query string) (*sqlx.Stmt, error) {
	return db.PreparexContext(context.Background(), query)
}

// PrepareNamed is PrepareNamedContext with context.Background.
func (db *DB) PrepareNamed(query string) (*sqlx.NamedStmt, error) {
	return db.PrepareNamedContext(context.Background(), query)
}

// Begin is BeginTx with context.Background.
func (db *DB) Begin() (*sql.Tx, error) { return db.BeginTx(context.Background(), nil) }

// Beginx is BeginTxx with context.Background.
func (db *DB) Beginx() (*sqlx.Tx, error) { return db.BeginTxx(context.Background(), nil) }

// MustBegin is MustBeginTx with context.Background.
func (db *DB) MustBegin() *sqlx.Tx { return db.MustBeginTx(context.Background(), nil) }

// Ping is PingContext with context.Background.
func (db *DB) Ping() error { return db.PingContext(context.Background()) }
