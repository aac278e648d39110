package sqladapter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Retry policy of [DB.InTx].
const (
	// DefaultMaxAttempts is how many times InTx runs a transaction that
	// keeps failing with a retryable error.
	DefaultMaxAttempts = 5
	// RetryBaseDelay and RetryMaxDelay bound the jittered exponential
	// backoff between attempts.
	RetryBaseDelay = 10 * time.Millisecond
	RetryMaxDelay  = time.Second
)

// Tx is a transaction started by [DB.InTx].
type Tx struct {
	*sqlx.Tx
}

// TxOption configures one [DB.InTx] call.
type TxOption func(*txConfig)

type txConfig struct {
	isolation   sql.IsolationLevel
	readOnly    bool
	onReplica   bool
	beginBound  time.Duration // > 0: BEGIN must complete within it (a replica's)
	settings    []Setting
	maxAttempts int
}

// WithIsolation sets the transaction's isolation level.
func WithIsolation(level sql.IsolationLevel) TxOption {
	return func(c *txConfig) { c.isolation = level }
}

// ReadOnly starts a read-only transaction.
func ReadOnly() TxOption {
	return func(c *txConfig) { c.readOnly = true }
}

// WithSetting applies a server setting for this transaction only, with
// set_config(name, value, true) — for example WithSetting("app.tenant_id",
// id) for row-level security. It never outlives the transaction, so it is
// safe behind a transaction pooler.
func WithSetting(name, value string) TxOption {
	return func(c *txConfig) { c.settings = append(c.settings, Setting{name, value}) }
}

// WithAttempts overrides how many times this transaction may run.
func WithAttempts(n int) TxOption {
	return func(c *txConfig) { c.maxAttempts = n }
}

// InTx runs fn in a transaction and commits it, or rolls it back when fn
// returns an error, panics (the panic is re-raised) or ctx ends. The
// transaction uses the connector's isolation level and settings (see
// [ConnectorOptions]) unless opts say otherwise.
//
// fn runs again, in a new transaction after a jittered exponential
// backoff and up to the attempt limit, only when the database failed the
// transaction in a way that undid it: a serialization failure, a deadlock,
// or a connection lost before COMMIT was sent. Nothing else is retried: an
// error of fn's own (a failed HTTP call, a decode error) comes back
// unchanged, as fn returned it, and a failure during COMMIT is never
// retried, because the server may have committed (its [Error.Outcome] is
// [OutcomeUnknown]).
func (db *DB) InTx(ctx context.Context, fn func(tx *Tx) error, opts ...TxOption) error {
	cfg := txConfig{maxAttempts: DefaultMaxAttempts}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxAttempts < 1 {
		cfg.maxAttempts = 1
	}
	failovers := 0 // replicas that failed this transaction
	for attempt := 1; ; attempt++ {
		target, replica := db, -1
		if cfg.onReplica {
			target, replica = db.reader(ctx)
		}
		rc := cfg
		if replica >= 0 {
			rc.beginBound = db.replicas.beginBound()
		}
		err := target.runTx(ctx, &rc, fn)
		if err == nil {
			return nil
		}
		retry := retryable(err)
		var late *replicaBeginTimeout
		replicaFailed := errors.As(err, &late) || (isDatabaseError(err) && KindOf(err) == KindConnection)
		if replica >= 0 && replicaFailed && ctx.Err() == nil && failovers < len(db.replicas.list) {
			// The replica went away: it leaves the rotation, and the
			// read-only transaction runs again at once on the next pick,
			// without using up an attempt.
			db.replicas.markDown(replica, err)
			failovers++
			attempt--
			continue
		}
		var ce *commitError
		if errors.As(err, &ce) {
			err = ce.err
		}
		if !retry || attempt >= cfg.maxAttempts || ctx.Err() != nil {
			if !isDatabaseError(err) {
				if ctx.Err() != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
					// database/sql's own "context deadline exceeded" from a
					// statement in fn: classified as the adapter's are
					// (ErrTimeout, ErrCanceled), still matching the context's.
					return ClassifyContext(ctx, err)
				}
				return err // fn's own error, unchanged
			}
			err = ClassifyContext(ctx, err)
			if attempt > 1 {
				return fmt.Errorf("sqladapter: transaction failed after %d attempts: %w", attempt, err)
			}
			return err
		}
		db.metrics.countRetry()
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return ClassifyContext(ctx, err)
		}
	}
}

// commitError marks a failure of COMMIT itself.
type commitError struct{ err error }

func (e *commitError) Error() string { return e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

// isDatabaseError reports an error the database reported: a server error
// (one with a SQLSTATE, from either driver), or any error a driver returned
// through a connection of [NewConnector].
func isDatabaseError(err error) bool {
	var e *Error
	if errors.As(err, &e) && e.fromDriver {
		return true
	}
	var st interface{ SQLState() string }
	return errors.As(err, &st) && st.SQLState() != ""
}

// retryable reports whether the database undid the whole transaction, so
// that running it again cannot apply anything twice.
func retryable(err error) bool {
	if !isDatabaseError(err) {
		return false // fn's own error: an HTTP call, a decode, a check
	}
	e, ok := Classify(err).(*Error)
	if !ok {
		if !errors.As(Classify(err), &e) {
			return false
		}
	}
	switch e.Kind {
	case KindSerialization, KindDeadlock:
		return true // the server rolled the transaction back, even at COMMIT
	case KindConnection:
		if !e.fromDriver {
			return false // only a connection of ours says when it was lost
		}
		// Before COMMIT nothing can have been applied. A FATAL server error
		// that is not about the connection (a wrong password) will not go
		// away by trying again.
		var ce *commitError
		if errors.As(err, &ce) {
			return false
		}
		st := e.SQLState
		return st == "" || strings.HasPrefix(st, "08") || st == "57P01" || st == "57P02" || st == "57P03"
	}
	return false
}

func (db *DB) runTx(ctx context.Context, cfg *txConfig, fn func(tx *Tx) error) (err error) {
	bctx := ctx
	var b *beginCtx
	if cfg.beginBound > 0 {
		b = boundBegin(ctx, cfg.beginBound)
		defer b.release()
		bctx = b
		defer func() {
			if err != nil && b.timedOut() {
				err = &replicaBeginTimeout{bound: cfg.beginBound, err: err}
			}
		}()
	}
	stx, err := db.BeginTxx(bctx, &sql.TxOptions{Isolation: cfg.isolation, ReadOnly: cfg.readOnly})
	if b != nil {
		b.began() // from now on only ctx ends the transaction
	}
	if err != nil {
		return fmt.Errorf("sqladapter: begin: %w", ClassifyContext(ctx, err))
	}
	tx := &Tx{Tx: stx}
	done := false
	defer func() {
		if !done {
			_ = stx.Rollback() // on panic, or on error below
		}
	}()
	if len(cfg.settings) > 0 {
		q, args := setConfigSQL(cfg.settings, true)
		if _, err := stx.ExecContext(ctx, q, plainArgs(args)...); err != nil {
			return fmt.Errorf("sqladapter: apply transaction settings: %w", ClassifyContext(ctx, err))
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	done = true
	if err := stx.Commit(); err != nil {
		if errors.Is(err, sql.ErrTxDone) && ctx.Err() != nil {
			return ClassifyContext(ctx, ctx.Err()) // database/sql rolled back when ctx ended
		}
		return &commitError{err: err}
	}
	return nil
}

// setConfigSQL builds the one statement that applies settings with
// set_config: SELECT set_config($1, $2, local), set_config($3, $4, local), …
// ("" when there are none).
func setConfigSQL(settings []Setting, local bool) (string, []driver.NamedValue) {
	if len(settings) == 0 {
		return "", nil
	}
	var b strings.Builder
	args := make([]driver.NamedValue, 0, 2*len(settings))
	b.WriteString("SELECT ")
	for i, s := range settings {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "set_config($%d, $%d, %t)", 2*i+1, 2*i+2, local)
		args = append(args, driver.NamedValue{Ordinal: 2*i + 1, Value: s.Name}, driver.NamedValue{Ordinal: 2*i + 2, Value: s.Value})
	}
	return b.String(), args
}

func plainArgs(args []driver.NamedValue) []any {
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = a.Value
	}
	return out
}

// backoff returns a full-jitter delay for the given attempt (1-based).
func backoff(attempt int) time.Duration {
	ceil := RetryBaseDelay << min(attempt, 16)
	if ceil > RetryMaxDelay || ceil <= 0 {
		ceil = RetryMaxDelay
	}
	return time.Duration(rand.Int64N(int64(ceil))) + time.Millisecond
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// postgresIsolation maps the isolation levels database/sql names onto
// PostgreSQL's: sql.LevelSnapshot is REPEATABLE READ, which in PostgreSQL
// is snapshot isolation. pgx maps it so; lib/pq refuses it ("isolation
// level not supported: 5"), and the same call must begin the same
// transaction on both drivers.
func postgresIsolation(l driver.IsolationLevel) driver.IsolationLevel {
	if l == driver.IsolationLevel(sql.LevelSnapshot) {
		return driver.IsolationLevel(sql.LevelRepeatableRead)
	}
	return l
}
