package sqladapter

import (
	"context"
	"database/sql"
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
// returns an error, panics (the panic is re-raised) or ctx ends. A
// serialization failure or deadlock — and a connection failure before
// COMMIT was sent, when nothing can have been applied — runs fn again in
// a new transaction after a jittered exponential backoff, up to the
// attempt limit. A failure during COMMIT is never retried: the server may
// have committed. Errors are classified (see [Classify]).
//
// Settings from [WithTxSettings] and [WithSetting] are applied at the start
// of the transaction in one round trip.
func (db *DB) InTx(ctx context.Context, fn func(tx *Tx) error, opts ...TxOption) error {
	cfg := txConfig{isolation: db.opts.isolation, maxAttempts: db.opts.maxAttempts}
	cfg.settings = append(cfg.settings, db.opts.settings...)
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxAttempts < 1 {
		cfg.maxAttempts = 1
	}
	for attempt := 1; ; attempt++ {
		err := db.runTx(ctx, &cfg, fn)
		if err == nil {
			return nil
		}
		var ce *commitError
		committing := errors.As(err, &ce)
		if committing {
			err = ce.err
		}
		err = ClassifyContext(ctx, err)
		if attempt >= cfg.maxAttempts || ctx.Err() != nil || !retryable(err, committing) {
			if attempt > 1 {
				return fmt.Errorf("sqladapter: transaction failed after %d attempts: %w", attempt, err)
			}
			return err
		}
		db.opts.metrics.countRetry()
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return ClassifyContext(ctx, err)
		}
	}
}

// commitError marks a failure of COMMIT itself.
type commitError struct{ err error }

func (e *commitError) Error() string { return e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

func retryable(err error, committing bool) bool {
	switch KindOf(err) {
	case KindSerialization, KindDeadlock:
		return true // the server rolled the transaction back, even at COMMIT
	case KindConnection:
		// Before COMMIT nothing can have been applied. A FATAL server error
		// that is not about the connection (a wrong password) will not go
		// away by trying again.
		var e *Error
		if committing || !errors.As(err, &e) {
			return false
		}
		st := e.SQLState
		return st == "" || strings.HasPrefix(st, "08") || st == "57P01" || st == "57P02" || st == "57P03"
	}
	return false
}

func (db *DB) runTx(ctx context.Context, cfg *txConfig, fn func(tx *Tx) error) (err error) {
	stx, err := db.BeginTxx(ctx, &sql.TxOptions{Isolation: cfg.isolation, ReadOnly: cfg.readOnly})
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
		q, args := SetConfigSQL(cfg.settings)
		if _, err := stx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("sqladapter: apply transaction settings: %w", ClassifyContext(ctx, err))
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	done = true
	if err := stx.Commit(); err != nil {
		if errors.Is(err, sql.ErrTxDone) && ctx.Err() != nil {
			return ctx.Err() // database/sql rolled back when ctx ended
		}
		return &commitError{err: err}
	}
	return nil
}

// SetConfigSQL builds the one statement that applies settings for the
// current transaction: SELECT set_config($1, $2, true), set_config($3, $4, true), …
func SetConfigSQL(settings []Setting) (string, []any) {
	var b strings.Builder
	args := make([]any, 0, 2*len(settings))
	b.WriteString("SELECT ")
	for i, s := range settings {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "set_config($%d, $%d, true)", 2*i+1, 2*i+2)
		args = append(args, s.Name, s.Value)
	}
	return b.String(), args
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
