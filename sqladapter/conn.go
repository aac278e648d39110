package sqladapter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/scrapersky/poolsafe/internal/pgdial"
)

// conn wraps a driver connection. It always implements ExecerContext,
// QueryerContext, ConnPrepareContext, ConnBeginTx, NamedValueChecker,
// SessionResetter and Validator (falling back exactly as database/sql
// would when the driver lacks one); Pinger only when the driver does.
type conn struct {
	base driver.Conn
	c    *connector
	wire *pgdial.Conn // the socket, when the wrapper dialed it; else nil
	inTx bool         // between BeginTx and the end of that transaction

	// base's interfaces, asserted once (every query uses them).
	execer    driver.ExecerContext
	queryer   driver.QueryerContext
	checker   driver.NamedValueChecker // nil when base has none
	resetter  driver.SessionResetter   // nil when base has none
	validator driver.Validator         // nil when base has none

	// Where base's transaction status is read (see txStatus): pgx's
	// connection, or lib/pq's unexported txnStatus field; nil when neither.
	pgx  *stdlib.Conn
	pqTx *byte

	spare *rows // the rows of the last query, reused once closed (see newRows)
}

// newConn wraps dc, which implements driver.ExecerContext and
// driver.QueryerContext (Connect checks).
func newConn(dc driver.Conn, c *connector, wire *pgdial.Conn) *conn {
	cn := &conn{base: dc, c: c, wire: wire, execer: dc.(driver.ExecerContext), queryer: dc.(driver.QueryerContext)}
	cn.checker, _ = dc.(driver.NamedValueChecker)
	cn.resetter, _ = dc.(driver.SessionResetter)
	cn.validator, _ = dc.(driver.Validator)
	switch c.opts.Driver {
	case driverPGX:
		cn.pgx, _ = dc.(*stdlib.Conn)
	case driverPQ:
		cn.pqTx = pqTxStatusField(dc)
	}
	return cn
}

// txStatus returns the connection's transaction status (txIdle, txActive
// or txFailed), and false when the driver's connection does not say.
func (c *conn) txStatus() (byte, bool) {
	switch {
	case c.pgx != nil:
		return c.pgx.Conn().PgConn().TxStatus(), true
	case c.pqTx != nil:
		return *c.pqTx, true
	}
	return 0, false
}

func (c *conn) unwrapConn() driver.Conn { return c.base }

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	acquired(ctx)
	if isCopyFromStdin(query) {
		return c.prepareCopy(ctx, query)
	}
	if c.c.opts.ClientSidePrepare {
		return c.prepareClientSide(ctx, query)
	}
	var (
		s   driver.Stmt
		err error
	)
	if pc, ok := c.base.(driver.ConnPrepareContext); ok {
		s, err = pc.PrepareContext(ctx, query)
	} else {
		if err = ctx.Err(); err == nil {
			s, err = c.base.Prepare(query)
		}
	}
	if err != nil {
		return nil, c.fail(ctx, "prepare", query, nil, time.Time{}, err)
	}
	return &driverStmt{base: s, c: c, query: query}, nil
}

// prepareCopy hands COPY … FROM STDIN to lib/pq, whose statement streams
// rows inside a transaction (pq.CopyIn); lib/pq itself refuses it outside
// one. pgx has no such statement: its CopyFrom is reached through
// sql.Conn.Raw and [Unwrap].
func (c *conn) prepareCopy(ctx context.Context, query string) (driver.Stmt, error) {
	if c.c.opts.Driver != driverPQ {
		return nil, c.fail(ctx, "prepare", query, nil, time.Time{}, errCopyNeedsPQ)
	}
	pc, ok := c.base.(driver.ConnPrepareContext)
	if !ok {
		return nil, errCopyNeedsPQ
	}
	s, err := pc.PrepareContext(ctx, query)
	if err != nil {
		return nil, c.fail(ctx, "prepare", query, nil, time.Time{}, err)
	}
	return &driverStmt{base: s, c: c, query: query, copy: true}, nil
}

func (c *conn) Close() error { return c.base.Close() }

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	acquired(ctx)
	if opts.Isolation == driver.IsolationLevel(sql.LevelDefault) {
		opts.Isolation = driver.IsolationLevel(c.c.opts.Isolation)
	}
	opts.Isolation = postgresIsolation(opts.Isolation)
	tx, err := c.beginBase(ctx, opts)
	if err != nil {
		return nil, c.fail(ctx, "begin", "BEGIN", nil, time.Time{}, err)
	}
	if c.c.setSQL != "" {
		if _, err := c.execer.ExecContext(ctx, c.c.setSQL, c.c.setArgs); err != nil {
			_ = tx.Rollback()
			return nil, c.fail(ctx, "begin", c.c.setSQL, nil, time.Time{}, fmt.Errorf("apply settings: %w", err))
		}
	}
	c.inTx = true
	return &connTx{base: tx, c: c}, nil
}

func (c *conn) beginBase(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if bt, ok := c.base.(driver.ConnBeginTx); ok {
		if c.c.opts.Driver == driverPQ {
			return pqBeginTx(ctx, c.wire, bt, opts) // lib/pq's BEGIN ignores ctx
		}
		return bt.BeginTx(ctx, opts)
	}
	if opts.Isolation != driver.IsolationLevel(0) || opts.ReadOnly {
		return nil, errors.New("sqladapter: driver does not support non-default isolation or read-only transactions")
	}
	//lint:ignore SA1019 fallback for drivers without ConnBeginTx
	return c.base.Begin()
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	tx, args, err := c.begin(ctx, "exec", query, args)
	if err != nil {
		return nil, err
	}
	start, sent := c.now(), c.sent()
	res, err := c.execer.ExecContext(ctx, query, args)
	if err != nil {
		rollback(tx)
		return nil, c.fail(ctx, "exec", query, args, start, c.atMostOnce(sent, err))
	}
	if tx != nil {
		if err := tx.Commit(); err != nil {
			return nil, err
		}
	}
	c.done(ctx, "exec", query, args, start)
	return res, nil
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	tx, args, err := c.begin(ctx, "query", query, args)
	if err != nil {
		return nil, err
	}
	start, sent := c.now(), c.sent()
	rows, err := c.queryBase(ctx, query, args)
	if err != nil {
		rollback(tx)
		return nil, c.fail(ctx, "query", query, args, start, c.atMostOnce(sent, err))
	}
	c.done(ctx, "query", query, args, start)
	return c.newRows(rows, ctx, tx), nil // Close ends tx
}

// begin readies a statement: outside a transaction, with settings
// configured, it first begins a transaction of the statement's own (see
// ConnectorOptions.Settings), so that the arguments are described with the
// settings (search_path) in force. Then it refuses what the statement
// cannot do through this driver and sends []byte arguments the same way on
// both drivers (see typedArgs). tx is nil when no transaction was begun.
func (c *conn) begin(ctx context.Context, op, query string, args []driver.NamedValue) (driver.Tx, []driver.NamedValue, error) {
	acquired(ctx)
	var tx driver.Tx
	if c.ownTx(query) {
		var err error
		if tx, err = c.BeginTx(ctx, driver.TxOptions{}); err != nil {
			return nil, nil, err
		}
	}
	args, err := c.prepareArgs(ctx, query, args)
	if err != nil {
		rollback(tx)
		return nil, nil, c.fail(ctx, op, query, args, time.Time{}, err)
	}
	return tx, args, nil
}

func rollback(tx driver.Tx) {
	if tx != nil {
		_ = tx.Rollback()
	}
}

// prepareArgs refuses what a statement cannot do through this driver and
// sends []byte arguments the same way on both drivers (see typedArgs).
func (c *conn) prepareArgs(ctx context.Context, query string, args []driver.NamedValue) ([]driver.NamedValue, error) {
	word := leadingWord(query) // one pass for both keyword checks
	if copyFromStdin(query, word) {
		if c.c.opts.Driver == driverPQ {
			return nil, errCopyNeedsPrepare
		}
		return nil, errCopyNeedsPQ
	}
	c.c.desc.observe(query, word, args)
	return c.typedArgs(ctx, query, args)
}

// ownTx reports whether a statement outside a transaction must run in a
// transaction of its own to get the configured settings.
func (c *conn) ownTx(query string) bool {
	if c.c.setSQL == "" || c.inTx || !transactional(query) {
		return false
	}
	st, known := c.txStatus()
	return !known || st == txIdle
}

// now is the start of a statement, for the log records that give its
// duration: the zero time when there is no Logger (nothing reads it).
func (c *conn) now() time.Time {
	if c.c.opts.Logger == nil {
		return time.Time{}
	}
	return time.Now()
}

// sent returns how many bytes the connection has written so far, or -1
// when the wrapper cannot see its socket.
func (c *conn) sent() int64 {
	if c.wire == nil {
		return -1
	}
	return c.wire.Written()
}

// atMostOnce keeps database/sql from re-running a statement that may have
// run: lib/pq reports driver.ErrBadConn when the connection breaks after
// the statement was written, and database/sql would then send it again on
// another connection. pgx already returns ErrBadConn only when nothing was
// sent.
func (c *conn) atMostOnce(before int64, err error) error {
	if before < 0 || !errors.Is(err, driver.ErrBadConn) || c.wire.Written() == before {
		return err
	}
	if fatal := pqServerFatal(c.wire); fatal != nil {
		return fatal // the server's reason, as pgx reports it; not ErrBadConn
	}
	return &Error{
		Kind:    KindConnection,
		Message: "connection lost after the statement was sent; it may have run",
		Err:     errLostAfterSend,
		outcome: OutcomeUnknown,
	}
}

// errLostAfterSend stands in for lib/pq's driver.ErrBadConn once the
// statement was on the wire, so that database/sql does not retry it.
var errLostAfterSend = errors.New("driver: bad connection after the statement was sent")

// CheckNamedValue normalises an argument (see the package documentation),
// then lets the driver check it.
func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if err := normaliseArg(nv); err != nil {
		return err
	}
	if c.checker != nil {
		return c.checker.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// ResetSession runs when database/sql hands the connection to a new call:
// the call has its connection (so its acquire timeout stops), and a
// connection left inside a transaction is not reused.
func (c *conn) ResetSession(ctx context.Context) error {
	acquired(ctx)
	if st, ok := c.txStatus(); ok && st != txIdle {
		return driver.ErrBadConn
	}
	if c.resetter != nil {
		return c.resetter.ResetSession(ctx)
	}
	return nil
}

// IsValid runs when the connection goes back to the pool: one still inside
// a transaction (a raw BEGIN, an unfinished sql.Conn) is closed rather than
// kept, so it pins no pooler connection and leaks nothing to the next call.
func (c *conn) IsValid() bool {
	if c.validator != nil && !c.validator.IsValid() {
		return false
	}
	if c.pgx != nil && c.pgx.Conn().IsClosed() {
		// pgx closes the connection when a context ends a query
		// mid-flight, but its stdlib.Conn has no IsValid of its own, and
		// the transaction status still reads idle: without this check
		// database/sql would pool it, and hand it to a caller waiting for
		// a connection, who would get driver.ErrBadConn.
		return false
	}
	st, ok := c.txStatus()
	return !ok || st == txIdle
}

// fail classifies err, counts it and logs it. driver.ErrSkip passes
// through untouched: database/sql compares it by identity.
func (c *conn) fail(ctx context.Context, op, query string, args []driver.NamedValue, start time.Time, err error) error {
	if err == driver.ErrSkip || err == driver.ErrRemoveArgument {
		return err
	}
	err = driverError(ctx, err)
	kind := KindOf(err)
	if m := c.c.opts.Metrics; m != nil {
		m.countQuery()
		m.countError(kind)
	}
	if l := c.c.opts.Logger; l != nil {
		attrs := []slog.Attr{
			slog.String("op", op),
			slog.String("sql", query),
			slog.String("error_kind", kind.String()),
			c.errorAttr(err),
		}
		if !start.IsZero() {
			attrs = append(attrs, slog.Duration("duration", time.Since(start)))
		}
		attrs = append(attrs, c.argsAttr(args))
		l.LogAttrs(ctx, slog.LevelWarn, "poolsafe: query failed", attrs...)
	}
	return err
}

func (c *conn) done(ctx context.Context, op, query string, args []driver.NamedValue, start time.Time) {
	if m := c.c.opts.Metrics; m != nil {
		m.countQuery()
	}
	l, slow := c.c.opts.Logger, c.c.opts.SlowQuery
	if l == nil || slow <= 0 {
		return
	}
	if d := time.Since(start); d >= slow {
		l.LogAttrs(ctx, slog.LevelInfo, "poolsafe: slow query",
			slog.String("op", op), slog.String("sql", query), slog.Duration("duration", d), c.argsAttr(args))
	}
}

// errorAttr is the logged error. Without LogArgs, a message that can quote
// an argument's value is cut before the value: PostgreSQL's data
// exceptions (class 22: invalid input syntax for type integer: "…") and
// errors that did not come from the server (a driver's "unable to encode"
// prints the Go value).
func (c *conn) errorAttr(err error) slog.Attr {
	if c.c.opts.LogArgs {
		return slog.Any("error", err)
	}
	var e *Error
	if !errors.As(err, &e) {
		return slog.String("error", "unknown (message withheld: may quote an argument; set LogArgs to log it)")
	}
	switch {
	case e.SQLState == "" && (e.Kind == KindConnection || e.Kind == KindTimeout || e.Kind == KindCanceled):
		return slog.Any("error", err) // about the connection or the context, not the arguments
	case e.SQLState == "":
		return slog.String("error", e.Kind.String()+" (message withheld: may quote an argument; set LogArgs to log it)")
	case strings.HasPrefix(e.SQLState, "22"):
		msg, _, _ := strings.Cut(e.Message, ": ")
		return slog.String("error", msg+": … (SQLSTATE "+e.SQLState+"; value withheld, set LogArgs to log it)")
	}
	return slog.String("error", e.Message+" (SQLSTATE "+e.SQLState+")")
}

func (c *conn) argsAttr(args []driver.NamedValue) slog.Attr {
	if !c.c.opts.LogArgs {
		return slog.Int("args", len(args))
	}
	vals := make([]any, len(args))
	for i, a := range args {
		vals[i] = a.Value
	}
	return slog.Any("args", vals)
}

// connTx classifies commit and rollback errors.
type connTx struct {
	base driver.Tx
	c    *conn
}

func (t *connTx) Commit() error {
	t.c.inTx = false
	sent := t.c.sent()
	if err := t.base.Commit(); err != nil {
		return t.c.fail(context.Background(), "commit", "COMMIT", nil, time.Time{}, t.c.atMostOnce(sent, err))
	}
	return nil
}

func (t *connTx) Rollback() error {
	t.c.inTx = false
	if err := t.base.Rollback(); err != nil {
		return t.c.fail(context.Background(), "rollback", "ROLLBACK", nil, time.Time{}, err)
	}
	return nil
}

// pingerImpl is present only when the driver's connection is a Pinger.
type pingerImpl struct{ c *conn }

func (p pingerImpl) Ping(ctx context.Context) error {
	acquired(ctx)
	if err := p.c.base.(driver.Pinger).Ping(ctx); err != nil {
		if errors.Is(err, driver.ErrBadConn) {
			return err
		}
		return driverError(ctx, err)
	}
	return nil
}

// wrapConn returns c, with Ping exactly when its driver connection has it.
func wrapConn(c *conn) driver.Conn {
	if _, ok := c.base.(driver.Pinger); ok {
		return struct {
			*conn
			pingerImpl
		}{c, pingerImpl{c}}
	}
	return c
}
