package sqladapter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
)

// Kind is the class of a database error, the same for both drivers.
type Kind int

// The error classes. Each but [KindUnknown] has a sentinel error that
// errors.Is matches on a classified error.
const (
	// KindUnknown is a server error outside every other class.
	KindUnknown Kind = iota
	// KindNotFound is sql.ErrNoRows ([ErrNotFound]).
	KindNotFound
	// KindConflict is a unique or exclusion violation ([ErrConflict]).
	KindConflict
	// KindForeignKey is a foreign key violation ([ErrForeignKey]).
	KindForeignKey
	// KindNotNull is a not-null violation ([ErrNotNull]).
	KindNotNull
	// KindCheck is a check constraint violation ([ErrCheck]).
	KindCheck
	// KindInvalidInput is a data exception, SQLSTATE class 22 ([ErrInvalidInput]).
	KindInvalidInput
	// KindSerialization is a serialization failure ([ErrSerialization]).
	KindSerialization
	// KindDeadlock is a detected deadlock ([ErrDeadlock]).
	KindDeadlock
	// KindCanceled is a canceled statement or context ([ErrCanceled]).
	KindCanceled
	// KindTimeout is a statement, lock or idle timeout, or a passed context
	// deadline ([ErrTimeout]).
	KindTimeout
	// KindConnection is a broken or refused connection ([ErrConnection]).
	KindConnection
	// KindPoolerIncompatible is an error caused by client settings a
	// transaction pooler cannot serve ([ErrPoolerIncompatible]).
	KindPoolerIncompatible
)

var kindNames = [...]string{
	KindUnknown:            "unknown",
	KindNotFound:           "not found",
	KindConflict:           "conflict",
	KindForeignKey:         "foreign key violation",
	KindNotNull:            "not null violation",
	KindCheck:              "check violation",
	KindInvalidInput:       "invalid input",
	KindSerialization:      "serialization failure",
	KindDeadlock:           "deadlock",
	KindCanceled:           "canceled",
	KindTimeout:            "timeout",
	KindConnection:         "connection failure",
	KindPoolerIncompatible: "pooler incompatible",
}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Sentinels matched by errors.Is on an error returned by [Classify] (and so
// on every error the adapter's connections return), whichever driver
// produced it.
var (
	// ErrNotFound: sql.ErrNoRows, once classified. database/sql returns
	// sql.ErrNoRows itself (Row.Scan, sqlx's Get), unchanged so that
	// err == sql.ErrNoRows keeps working: match it with
	// errors.Is(err, sql.ErrNoRows), [KindOf] or
	// errors.Is([Classify](err), ErrNotFound).
	ErrNotFound = errors.New("poolsafe: not found")
	// ErrConflict: 23505 unique_violation, 23P01 exclusion_violation.
	ErrConflict = errors.New("poolsafe: conflict")
	// ErrForeignKey: 23503 foreign_key_violation, 23001 restrict_violation.
	ErrForeignKey = errors.New("poolsafe: foreign key violation")
	// ErrNotNull: 23502 not_null_violation.
	ErrNotNull = errors.New("poolsafe: not null violation")
	// ErrCheck: 23514 check_violation.
	ErrCheck = errors.New("poolsafe: check violation")
	// ErrInvalidInput: SQLSTATE class 22 (data exception), such as 22P02
	// invalid_text_representation, 22001 string_data_right_truncation,
	// 22003 numeric_value_out_of_range, 22007 invalid_datetime_format and
	// 22012 division_by_zero.
	ErrInvalidInput = errors.New("poolsafe: invalid input")
	// ErrSerialization: 40001 serialization_failure. Retry the transaction.
	ErrSerialization = errors.New("poolsafe: serialization failure")
	// ErrDeadlock: 40P01 deadlock_detected. Retry the transaction.
	ErrDeadlock = errors.New("poolsafe: deadlock")
	// ErrCanceled: context.Canceled, and 57014 query_canceled that was not
	// a statement timeout (with [ClassifyContext]: whenever the call's
	// context was canceled).
	ErrCanceled = errors.New("poolsafe: canceled")
	// ErrTimeout: context.DeadlineExceeded, 57014 from statement_timeout,
	// 55P03 lock_not_available (lock_timeout, NOWAIT), 25P03
	// idle_in_transaction_session_timeout, 25P04 transaction_timeout,
	// 57P05 idle_session_timeout.
	ErrTimeout = errors.New("poolsafe: timeout")
	// ErrConnection: SQLSTATE class 08, 57P01–57P04 (server shutdown,
	// database dropped), 53300 too_many_connections, any other FATAL server
	// error, driver.ErrBadConn, io.EOF, io.ErrUnexpectedEOF, sql.ErrConnDone,
	// net.Error and the drivers' own connection failures.
	ErrConnection = errors.New("poolsafe: connection failure")
	// ErrPoolerIncompatible: 42P05 duplicate_prepared_statement, 26000
	// invalid_sql_statement_name, 08P01 "bind message …" and "unsupported
	// startup parameter", and a FATAL 42704 "unrecognized configuration
	// parameter" at startup. The error message says what to change.
	ErrPoolerIncompatible = errors.New("poolsafe: pooler incompatible")
)

var kindSentinels = [...]error{
	KindNotFound:           ErrNotFound,
	KindConflict:           ErrConflict,
	KindForeignKey:         ErrForeignKey,
	KindNotNull:            ErrNotNull,
	KindCheck:              ErrCheck,
	KindInvalidInput:       ErrInvalidInput,
	KindSerialization:      ErrSerialization,
	KindDeadlock:           ErrDeadlock,
	KindCanceled:           ErrCanceled,
	KindTimeout:            ErrTimeout,
	KindConnection:         ErrConnection,
	KindPoolerIncompatible: ErrPoolerIncompatible,
}

func (k Kind) sentinel() error {
	if k > 0 && int(k) < len(kindSentinels) {
		return kindSentinels[k]
	}
	return nil
}

// Error is a classified database error. It wraps the driver's error, so
// errors.As to *pgconn.PgError or *pq.Error still works, and errors.Is
// matches the sentinel of its Kind.
type Error struct {
	Kind       Kind
	SQLState   string // five-character SQLSTATE; "" when not a server error
	Message    string // the server's message, or the error's text
	Detail     string
	Hint       string
	Constraint string
	Table      string
	Column     string
	Schema     string
	Err        error // the original error

	// cause is the context error that caused this one, set by
	// ClassifyContext when the driver's error does not wrap it.
	cause error
	// outcome, when set, overrides what Outcome derives from the error.
	outcome Outcome
	// fromDriver: the error came from a driver call made through a
	// connection of [NewConnector] (InTx retries only such errors).
	fromDriver bool
}

// Outcome says what a failed call can have done on the server.
type Outcome int

const (
	// OutcomeUnknown: the statement may have run. The connection was lost,
	// or the call abandoned, after the statement was sent; with
	// autocommit its effects may be committed. Check before repeating a
	// write that is not idempotent — better, make the repeat itself safe
	// (a caller-chosen id with ON CONFLICT, a unique key): the statement
	// may still be running on the server, and a check made at once can
	// run before it commits.
	OutcomeUnknown Outcome = iota
	// OutcomeNotRun: the statement did not run, or the server rolled it
	// back: it failed with a server error, or nothing was sent.
	OutcomeNotRun
	// OutcomeRan: the statement ran ([KindNotFound]: it found no row).
	OutcomeRan
)

var outcomeNames = [...]string{
	OutcomeUnknown: "it may have run",
	OutcomeNotRun:  "the statement did not run",
	OutcomeRan:     "it ran",
}

func (o Outcome) String() string {
	if o >= 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Outcome says whether the statement can have taken effect, the same way
// for both drivers:
//
//   - [KindNotFound]: it ran;
//   - any other server error (a SQLSTATE outside the connection classes):
//     it did not run — the server rejected it or rolled it back;
//   - a connection failure or an ended context detected before anything
//     was sent (pgconn.SafeToRetry, a failed connect, driver.ErrBadConn,
//     an acquire timeout): it did not run;
//   - any other connection failure, FATAL server error, or a context that
//     ended while the statement was on the wire: it may have run.
//
// A failed COMMIT (see [DB.InTx]) follows the same rules: OutcomeUnknown
// means the transaction may have been committed.
func (e *Error) Outcome() Outcome {
	if e.outcome != OutcomeUnknown {
		return e.outcome
	}
	switch {
	case e.Kind == KindNotFound:
		return OutcomeRan
	case e.SQLState != "":
		if e.Kind == KindConnection {
			return OutcomeUnknown
		}
		return OutcomeNotRun
	case errors.Is(e.Err, driver.ErrBadConn) || pgxNotSent(e.Err):
		return OutcomeNotRun
	}
	var at *acquireTimeoutError
	if errors.As(e.Err, &at) {
		return OutcomeNotRun
	}
	return OutcomeUnknown
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("poolsafe: ")
	if e.Kind != KindUnknown {
		b.WriteString(e.Kind.String())
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.SQLState != "" {
		b.WriteString(" (SQLSTATE ")
		b.WriteString(e.SQLState)
		if e.Constraint != "" {
			b.WriteString(", constraint ")
			b.WriteString(e.Constraint)
		}
		b.WriteString(")")
	}
	if e.cause != nil {
		b.WriteString(": ")
		b.WriteString(e.cause.Error())
	}
	if e.Kind == KindPoolerIncompatible {
		b.WriteString(": ")
		b.WriteString(e.poolerFix())
	}
	return b.String()
}

// Unwrap returns the original error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e.Kind, or the context
// error that caused e (see [ClassifyContext]).
func (e *Error) Is(target error) bool {
	if s := e.Kind.sentinel(); s != nil && target == s {
		return true
	}
	return e.cause != nil && target == e.cause
}

// poolerFix says which setting to change for a KindPoolerIncompatible error.
func (e *Error) poolerFix() string {
	if p, ok := startupParam(e.SQLState, e.Message); ok {
		if p == "" {
			return "remove the unsupported URL key / startup parameter, or use driverconf.Parse which removes it"
		}
		return fmt.Sprintf("remove the URL key / startup parameter %q, or use driverconf.Parse which removes it", p)
	}
	return "a transaction pooler cannot keep prepared statements: open the database with driverconf (PoolMode transaction), " +
		"or set pgx default_query_exec_mode=exec / lib/pq binary_parameters=yes and do not use db.Prepare"
}

// startupParam reports whether a server error rejects a startup parameter,
// and which one when the message names it.
func startupParam(code, msg string) (string, bool) {
	switch {
	case code == "08P01" && strings.HasPrefix(msg, "unsupported startup parameter"):
		// PgBouncer: "unsupported startup parameter: NAME" (or
		// "… in options: NAME").
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			return strings.TrimSpace(msg[i+2:]), true
		}
		return "", true
	case code == "42704" && strings.HasPrefix(msg, "unrecognized configuration parameter"):
		// PostgreSQL: `unrecognized configuration parameter "NAME"`.
		if i := strings.IndexByte(msg, '"'); i >= 0 {
			if j := strings.LastIndexByte(msg, '"'); j > i {
				return msg[i+1 : j], true
			}
		}
		return "", true
	}
	return "", false
}

// serverFields are what the drivers' server errors carry.
type serverFields struct {
	severity   string // unlocalized when the driver has it: FATAL, ERROR, …
	message    string
	detail     string
	hint       string
	constraint string
	table      string
	column     string
	schema     string
}

// Classify returns err as an *[Error] when it recognises it: a server error
// (any SQLSTATE, with [KindUnknown] when it is in no class), sql.ErrNoRows,
// a context error or a connection failure. It returns nil for nil, an error
// that already wraps an *Error unchanged, and any other error unchanged, so
// callers' own errors pass through.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	if e := classify(err); e != nil {
		return e
	}
	return err
}

// ClassifyContext is [Classify] for an error returned by a call made with
// ctx. When ctx is done, an error the end of the call explains — 57014
// query_canceled (lib/pq cancels the statement on the server and reports
// "canceling statement due to user request"), a context error, or a
// connection broken off by the driver — is reported as ctx's error: Kind is
// [KindTimeout] and errors.Is(err, context.DeadlineExceeded) holds after a
// deadline, Kind is [KindCanceled] and errors.Is(err, context.Canceled)
// holds after a cancel, on both drivers. Such an error is returned as a new
// *Error around the driver's error, without any wrapping err had.
func ClassifyContext(ctx context.Context, err error) error {
	err = Classify(err)
	if err == nil || ctx == nil || ctx.Err() == nil {
		return err
	}
	var e *Error
	if !errors.As(err, &e) || e.cause != nil {
		return err
	}
	switch {
	case e.Kind == KindCanceled, e.Kind == KindTimeout && e.SQLState == "57014",
		e.Kind == KindTimeout && e.SQLState == "", e.Kind == KindConnection:
	default:
		return err
	}
	ctxErr := ctx.Err()
	kind := KindCanceled
	if errors.Is(ctxErr, context.DeadlineExceeded) {
		kind = KindTimeout
	}
	if e.Kind == kind && errors.Is(e.Err, ctxErr) {
		return err
	}
	out := *e
	out.Kind = kind
	if out.outcome == OutcomeUnknown && e.Outcome() == OutcomeNotRun {
		out.outcome = OutcomeNotRun
	}
	if !errors.Is(e.Err, ctxErr) {
		out.cause = ctxErr
	}
	return &out
}

// KindOf returns the class of err: the Kind of an *[Error] in its chain,
// else the class of the first sentinel errors.Is matches (so an error of
// the caller's own that matches [ErrInvalidInput] is [KindInvalidInput]),
// else what [Classify] makes of it; [KindUnknown] for nil and for errors
// none of these recognise.
func KindOf(err error) Kind {
	if err == nil {
		return KindUnknown
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	for k, s := range kindSentinels {
		if s != nil && errors.Is(err, s) {
			return Kind(k)
		}
	}
	if errors.As(Classify(err), &e) {
		return e.Kind
	}
	return KindUnknown
}

// driverError classifies an error a driver call returned, and marks it as
// the database's (see [DB.InTx]).
func driverError(ctx context.Context, err error) error {
	err = ClassifyContext(ctx, err)
	var e *Error
	if errors.As(err, &e) {
		e.fromDriver = true
	}
	return err
}

// connectError classifies an error from opening a connection as the
// driver's (see driverError: InTx may retry it). Nothing of the caller's
// was sent, so the outcome is [OutcomeNotRun] whatever the server said —
// a FATAL at startup (PgBouncer's server_login_retry, a wrong password)
// included, on both drivers.
func connectError(ctx context.Context, err error) error {
	err = driverError(ctx, err)
	var e *Error
	if errors.As(err, &e) {
		e.outcome = OutcomeNotRun
	}
	return err
}

// Retryable reports whether err is a serialization failure or a deadlock,
// after which the whole transaction can be run again.
func Retryable(err error) bool {
	switch KindOf(err) {
	case KindSerialization, KindDeadlock:
		return true
	}
	return false
}

// classify builds the *Error for err, or returns nil.
func classify(err error) *Error {
	if errors.Is(err, sql.ErrNoRows) {
		return &Error{Kind: KindNotFound, Message: err.Error(), Err: err}
	}
	var st interface{ SQLState() string }
	if errors.As(err, &st) && st.SQLState() != "" {
		f, ok := pgxFields(err)
		if !ok {
			f, ok = pqFields(err)
		}
		if !ok {
			f.message = err.Error()
		}
		code := st.SQLState()
		return &Error{
			Kind:       stateKind(code, f.message, f.severity),
			SQLState:   code,
			Message:    f.message,
			Detail:     f.detail,
			Hint:       f.hint,
			Constraint: f.constraint,
			Table:      f.table,
			Column:     f.column,
			Schema:     f.schema,
			Err:        err,
		}
	}
	var (
		kind Kind
		ne   net.Error
		at   *acquireTimeoutError
	)
	switch {
	case errors.As(err, &at):
		return &Error{Kind: KindTimeout, Message: at.Error(), Err: err, outcome: OutcomeNotRun}
	case errors.Is(err, context.Canceled):
		kind = KindCanceled
	case errors.Is(err, context.DeadlineExceeded), pgxTimeout(err), errors.As(err, &ne) && ne.Timeout():
		// A network timeout is a timeout on both drivers, whether it hit
		// while dialing (ConnectTimeout) or while waiting for an answer.
		kind = KindTimeout
	case connectionError(err):
		kind = KindConnection
	default:
		return nil
	}
	return &Error{Kind: kind, Message: err.Error(), Err: err}
}

func connectionError(err error) bool {
	var ne net.Error
	return errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, sql.ErrConnDone) ||
		errors.As(err, &ne) ||
		pgxConnection(err)
}

// stateKind maps a SQLSTATE (with the message and severity where the code
// alone is ambiguous) to a Kind.
func stateKind(code, msg, severity string) Kind {
	fatal := severity == "FATAL" || severity == "PANIC"
	switch code {
	case "23505", "23P01":
		return KindConflict
	case "23503", "23001":
		return KindForeignKey
	case "23502":
		return KindNotNull
	case "23514":
		return KindCheck
	case "40001":
		return KindSerialization
	case "40P01":
		return KindDeadlock
	case "57014":
		// The message is the only difference; it is English unless the
		// server's lc_messages says otherwise.
		if strings.Contains(msg, "statement timeout") {
			return KindTimeout
		}
		return KindCanceled
	case "55P03", "25P03", "25P04", "57P05":
		return KindTimeout
	case "57P01", "57P02", "57P03", "57P04", "53300":
		return KindConnection
	case "42P05", "26000":
		return KindPoolerIncompatible
	case "08P01":
		if _, ok := startupParam(code, msg); ok || strings.HasPrefix(msg, "bind message") {
			// A Bind that reached another client's statement through a
			// transaction pooler.
			return KindPoolerIncompatible
		}
	case "42704":
		if _, ok := startupParam(code, msg); ok && fatal {
			return KindPoolerIncompatible
		}
	}
	switch {
	case strings.HasPrefix(code, "22"):
		return KindInvalidInput
	case strings.HasPrefix(code, "08"):
		return KindConnection
	case fatal:
		// The server ends the session after any FATAL error.
		return KindConnection
	}
	return KindUnknown
}
