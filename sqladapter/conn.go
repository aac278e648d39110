package sqladapter

import (
	"context"
	"database/sql/driver"
	"errors"
	"log/slog"
	"time"
)

// conn wraps a driver connection. It always implements ExecerContext,
// QueryerContext, ConnPrepareContext, ConnBeginTx and NamedValueChecker
// (falling back exactly as database/sql would when the driver lacks one);
// Pinger, SessionResetter and Validator only when the driver does (see
// wrapConn).
type conn struct {
	base driver.Conn
	c    *connector
}

func (c *conn) unwrapConn() driver.Conn { return c.base }

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	disarmAcquire(ctx)
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

func (c *conn) Close() error { return c.base.Close() }

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	disarmAcquire(ctx)
	var (
		tx  driver.Tx
		err error
	)
	if bt, ok := c.base.(driver.ConnBeginTx); ok {
		tx, err = bt.BeginTx(ctx, opts)
	} else {
		if opts.Isolation != driver.IsolationLevel(0) || opts.ReadOnly {
			return nil, errors.New("sqladapter: driver does not support non-default isolation or read-only transactions")
		}
		//lint:ignore SA1019 fallback for drivers without ConnBeginTx
		tx, err = c.base.Begin()
	}
	if err != nil {
		return nil, c.fail(ctx, "begin", "BEGIN", nil, time.Time{}, err)
	}
	return &connTx{base: tx, c: c, ctx: ctx}, nil
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	disarmAcquire(ctx)
	args = c.bytesArgs(ctx, query, args)
	start := time.Now()
	res, err := c.base.(driver.ExecerContext).ExecContext(ctx, query, args)
	if err != nil {
		return nil, c.fail(ctx, "exec", query, args, start, err)
	}
	c.done(ctx, "exec", query, args, start)
	return res, nil
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	disarmAcquire(ctx)
	args = c.bytesArgs(ctx, query, args)
	start := time.Now()
	rows, err := c.base.(driver.QueryerContext).QueryContext(ctx, query, args)
	if err != nil {
		return nil, c.fail(ctx, "query", query, args, start, err)
	}
	c.done(ctx, "query", query, args, start)
	return newRows(rows, ctx), nil
}

// CheckNamedValue normalises an argument (see the package documentation),
// then lets the driver check it.
func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	normaliseArg(nv)
	if ch, ok := c.base.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// fail classifies err, counts it and logs it. driver.ErrSkip passes
// through untouched: database/sql compares it by identity.
func (c *conn) fail(ctx context.Context, op, query string, args []driver.NamedValue, start time.Time, err error) error {
	if err == driver.ErrSkip || err == driver.ErrRemoveArgument {
		return err
	}
	err = ClassifyContext(ctx, err)
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
			slog.Any("error", err),
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
	ctx  context.Context // BeginTx's, for the acquire timeout
}

func (t *connTx) Commit() error {
	defer releaseAcquire(t.ctx)
	if err := t.base.Commit(); err != nil {
		return t.c.fail(context.Background(), "commit", "COMMIT", nil, time.Time{}, err)
	}
	return nil
}

func (t *connTx) Rollback() error {
	defer releaseAcquire(t.ctx)
	if err := t.base.Rollback(); err != nil {
		return t.c.fail(context.Background(), "rollback", "ROLLBACK", nil, time.Time{}, err)
	}
	return nil
}

// Optional interfaces, present only when the driver's connection has them.

type pingerImpl struct{ c *conn }

func (p pingerImpl) Ping(ctx context.Context) error {
	disarmAcquire(ctx)
	if err := p.c.base.(driver.Pinger).Ping(ctx); err != nil {
		if errors.Is(err, driver.ErrBadConn) {
			return err
		}
		return ClassifyContext(ctx, err)
	}
	return nil
}

type resetterImpl struct{ c *conn }

func (r resetterImpl) ResetSession(ctx context.Context) error {
	disarmAcquire(ctx)
	return r.c.base.(driver.SessionResetter).ResetSession(ctx)
}

type validatorImpl struct{ c *conn }

func (v validatorImpl) IsValid() bool { return v.c.base.(driver.Validator).IsValid() }

// wrapConn returns c with exactly the optional interfaces its driver
// connection implements among Pinger, SessionResetter and Validator.
func wrapConn(c *conn) driver.Conn {
	_, p := c.base.(driver.Pinger)
	_, r := c.base.(driver.SessionResetter)
	_, v := c.base.(driver.Validator)
	pi, ri, vi := pingerImpl{c}, resetterImpl{c}, validatorImpl{c}
	switch {
	case p && r && v:
		return struct {
			*conn
			pingerImpl
			resetterImpl
			validatorImpl
		}{c, pi, ri, vi}
	case p && r:
		return struct {
			*conn
			pingerImpl
			resetterImpl
		}{c, pi, ri}
	case p && v:
		return struct {
			*conn
			pingerImpl
			validatorImpl
		}{c, pi, vi}
	case r && v:
		return struct {
			*conn
			resetterImpl
			validatorImpl
		}{c, ri, vi}
	case p:
		return struct {
			*conn
			pingerImpl
		}{c, pi}
	case r:
		return struct {
			*conn
			resetterImpl
		}{c, ri}
	case v:
		return struct {
			*conn
			validatorImpl
		}{c, vi}
	}
	return c
}
