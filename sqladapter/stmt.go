package sqladapter

import (
	"context"
	"database/sql/driver"
	"errors"
	"time"
)

// clientStmt is a client-side prepared statement: it remembers its SQL and
// runs it through the connection, so no named statement ever exists on the
// server. Its SQL was checked when it was prepared.
type clientStmt struct {
	c        *conn
	query    string
	numInput int
}

// prepareClientSide checks query with one self-contained round trip (an
// unnamed Parse/Describe/Sync on pgx; PREPARE and DEALLOCATE in one simple
// Query message on lib/pq) and returns a client-side statement.
func (c *conn) prepareClientSide(ctx context.Context, query string) (driver.Stmt, error) {
	numInput := -1
	// With settings, a statement outside a transaction runs in one of its
	// own (search_path may differ there): it is checked when it runs.
	if c.c.opts.Driver != "" && !c.ownTx(query) {
		start := c.now()
		types, err := c.describe(ctx, query)
		switch {
		case errors.Is(err, errNotDescribable):
		case err != nil:
			return nil, c.fail(ctx, "prepare", query, nil, start, err)
		default:
			numInput = len(types)
		}
	}
	return &clientStmt{c: c, query: query, numInput: numInput}, nil
}

func (s *clientStmt) Close() error  { return nil }
func (s *clientStmt) NumInput() int { return s.numInput }

func (s *clientStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), namedValues(args))
}

func (s *clientStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), namedValues(args))
}

func (s *clientStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.c.ExecContext(ctx, s.query, args)
}

func (s *clientStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.c.QueryContext(ctx, s.query, args)
}

// CheckNamedValue lets the connection normalise and check arguments.
func (s *clientStmt) CheckNamedValue(nv *driver.NamedValue) error { return s.c.CheckNamedValue(nv) }

// driverStmt wraps a statement the driver prepared (direct and session
// modes), normalising values and classifying errors like conn does.
type driverStmt struct {
	base  driver.Stmt
	c     *conn
	query string
	copy  bool // lib/pq's COPY FROM STDIN: arguments are rows, sent as they are
}

func (s *driverStmt) Close() error  { return s.base.Close() }
func (s *driverStmt) NumInput() int { return s.base.NumInput() }

func (s *driverStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), namedValues(args))
}

func (s *driverStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), namedValues(args))
}

func (s *driverStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	args, err := s.args(ctx, args)
	if err != nil {
		return nil, s.c.fail(ctx, "exec", s.query, args, time.Time{}, err)
	}
	start, sent := s.c.now(), s.c.sent()
	var res driver.Result
	if se, ok := s.base.(driver.StmtExecContext); ok {
		res, err = se.ExecContext(ctx, args)
	} else if err = ctx.Err(); err == nil {
		//lint:ignore SA1019 fallback for drivers without StmtExecContext
		res, err = s.base.Exec(plainValues(args))
	}
	if err != nil {
		return nil, s.c.fail(ctx, "exec", s.query, args, start, s.c.atMostOnce(sent, err))
	}
	s.c.done(ctx, "exec", s.query, args, start)
	return res, nil
}

func (s *driverStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	args, err := s.args(ctx, args)
	if err != nil {
		return nil, s.c.fail(ctx, "query", s.query, args, time.Time{}, err)
	}
	start, sent := s.c.now(), s.c.sent()
	var rows driver.Rows
	if sq, ok := s.base.(driver.StmtQueryContext); ok {
		rows, err = sq.QueryContext(ctx, args)
	} else if err = ctx.Err(); err == nil {
		//lint:ignore SA1019 fallback for drivers without StmtQueryContext
		rows, err = s.base.Query(plainValues(args))
	}
	if err != nil {
		return nil, s.c.fail(ctx, "query", s.query, args, start, s.c.atMostOnce(sent, err))
	}
	s.c.done(ctx, "query", s.query, args, start)
	return s.c.newRows(rows, ctx, nil), nil
}

func (s *driverStmt) args(ctx context.Context, args []driver.NamedValue) ([]driver.NamedValue, error) {
	acquired(ctx)
	if s.copy {
		// COPY's rows: no parameter types to ask for; a time goes in UTC.
		for i, a := range args {
			if hasOffset(a.Value) {
				args[i].Value = a.Value.(time.Time).UTC()
			}
		}
		return args, nil
	}
	return s.c.typedArgs(ctx, s.query, args)
}

// CheckNamedValue normalises the argument, then lets the statement or the
// connection check it.
func (s *driverStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if err := normaliseArg(nv); err != nil {
		return err
	}
	if ch, ok := s.base.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	if s.c.checker != nil {
		return s.c.checker.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func namedValues(args []driver.Value) []driver.NamedValue {
	nv := make([]driver.NamedValue, len(args))
	for i, v := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return nv
}

func plainValues(args []driver.NamedValue) []driver.Value {
	v := make([]driver.Value, len(args))
	for i, a := range args {
		v[i] = a.Value
	}
	return v
}
