package sqladapter_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/scrapersky/poolsafe/sqladapter"
)

// errsSentinels lists every sentinel with its Kind.
var errsSentinels = []struct {
	kind sqladapter.Kind
	err  error
}{
	{sqladapter.KindNotFound, sqladapter.ErrNotFound},
	{sqladapter.KindConflict, sqladapter.ErrConflict},
	{sqladapter.KindForeignKey, sqladapter.ErrForeignKey},
	{sqladapter.KindNotNull, sqladapter.ErrNotNull},
	{sqladapter.KindCheck, sqladapter.ErrCheck},
	{sqladapter.KindInvalidInput, sqladapter.ErrInvalidInput},
	{sqladapter.KindSerialization, sqladapter.ErrSerialization},
	{sqladapter.KindDeadlock, sqladapter.ErrDeadlock},
	{sqladapter.KindCanceled, sqladapter.ErrCanceled},
	{sqladapter.KindTimeout, sqladapter.ErrTimeout},
	{sqladapter.KindConnection, sqladapter.ErrConnection},
	{sqladapter.KindPoolerIncompatible, sqladapter.ErrPoolerIncompatible},
}

// errsOnly fails unless err matches want (nil: none) and no other
// sentinel.
func errsOnly(t *testing.T, err, want error) {
	t.Helper()
	for _, s := range errsSentinels {
		if got := errors.Is(err, s.err); got != (s.err == want) {
			t.Errorf("errors.Is(%v, %v) = %t, want %t", err, s.err, got, !got)
		}
	}
}

// errsAs returns err's *sqladapter.Error or fails.
func errsAs(t *testing.T, err error) *sqladapter.Error {
	t.Helper()
	var e *sqladapter.Error
	if !errors.As(err, &e) {
		t.Fatalf("%T %v is not a *sqladapter.Error", err, err)
	}
	return e
}

// errsServerError builds one driver's server error with every field set.
type errsServerError struct {
	name string
	make func(code, msg, severity string) error
}

var errsServerErrors = []errsServerError{
	{"pgx", func(code, msg, severity string) error {
		return &pgconn.PgError{
			Severity: severity, SeverityUnlocalized: severity, Code: code, Message: msg,
			Detail: "the detail", Hint: "the hint", SchemaName: "app", TableName: "profiles",
			ColumnName: "email", ConstraintName: "profiles_email_key",
		}
	}},
	{"pq", func(code, msg, severity string) error {
		return &pq.Error{
			Severity: severity, Code: pqerror.Code(code), Message: msg,
			Detail: "the detail", Hint: "the hint", Schema: "app", Table: "profiles",
			Column: "email", Constraint: "profiles_email_key",
		}
	}},
}

func TestClassifyServerErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, code, msg, severity string
		want                      error // nil: KindUnknown
	}{
		{"unique violation", "23505", `duplicate key value violates unique constraint "profiles_email_key"`, "ERROR", sqladapter.ErrConflict},
		{"exclusion violation", "23P01", `conflicting key value violates exclusion constraint "no_overlap"`, "ERROR", sqladapter.ErrConflict},
		{"foreign key violation", "23503", `insert or update on table "profiles" violates foreign key constraint "profiles_domain_fk"`, "ERROR", sqladapter.ErrForeignKey},
		{"restrict violation", "23001", "restrict violation", "ERROR", sqladapter.ErrForeignKey},
		{"not null violation", "23502", `null value in column "email" of relation "profiles" violates not-null constraint`, "ERROR", sqladapter.ErrNotNull},
		{"check violation", "23514", `new row for relation "profiles" violates check constraint "profiles_age_check"`, "ERROR", sqladapter.ErrCheck},
		{"invalid text representation", "22P02", `invalid input syntax for type integer: "x"`, "ERROR", sqladapter.ErrInvalidInput},
		{"string too long", "22001", "value too long for type character varying(3)", "ERROR", sqladapter.ErrInvalidInput},
		{"numeric out of range", "22003", "integer out of range", "ERROR", sqladapter.ErrInvalidInput},
		{"invalid datetime", "22007", `invalid input syntax for type timestamp: "soon"`, "ERROR", sqladapter.ErrInvalidInput},
		{"division by zero", "22012", "division by zero", "ERROR", sqladapter.ErrInvalidInput},
		{"serialization failure", "40001", "could not serialize access due to concurrent update", "ERROR", sqladapter.ErrSerialization},
		{"deadlock", "40P01", "deadlock detected", "ERROR", sqladapter.ErrDeadlock},
		{"canceled by user", "57014", "canceling statement due to user request", "ERROR", sqladapter.ErrCanceled},
		{"statement timeout", "57014", "canceling statement due to statement timeout", "ERROR", sqladapter.ErrTimeout},
		{"lock timeout", "55P03", "canceling statement due to lock timeout", "ERROR", sqladapter.ErrTimeout},
		{"nowait", "55P03", `could not obtain lock on row in relation "jobs"`, "ERROR", sqladapter.ErrTimeout},
		{"idle in transaction timeout", "25P03", "terminating connection due to idle-in-transaction timeout", "FATAL", sqladapter.ErrTimeout},
		{"transaction timeout", "25P04", "terminating connection due to transaction timeout", "FATAL", sqladapter.ErrTimeout},
		{"idle session timeout", "57P05", "terminating connection due to idle-session timeout", "FATAL", sqladapter.ErrTimeout},
		{"admin shutdown", "57P01", "terminating connection due to administrator command", "FATAL", sqladapter.ErrConnection},
		{"crash shutdown", "57P02", "terminating connection because of crash of another server process", "FATAL", sqladapter.ErrConnection},
		{"cannot connect now", "57P03", "the database system is starting up", "FATAL", sqladapter.ErrConnection},
		{"database dropped", "57P04", "terminating connection because database was dropped", "FATAL", sqladapter.ErrConnection},
		{"too many connections", "53300", "sorry, too many clients already", "FATAL", sqladapter.ErrConnection},
		{"connection failure", "08006", "connection failure", "FATAL", sqladapter.ErrConnection},
		{"connection exception", "08000", "connection exception", "ERROR", sqladapter.ErrConnection},
		{"pooler protocol error", "08P01", "query_wait_timeout", "FATAL", sqladapter.ErrConnection},
		{"other fatal", "28P01", `password authentication failed for user "app"`, "FATAL", sqladapter.ErrConnection},
		{"duplicate prepared statement", "42P05", `prepared statement "stmtcache_1f2e" already exists`, "ERROR", sqladapter.ErrPoolerIncompatible},
		{"missing prepared statement", "26000", `prepared statement "1" does not exist`, "ERROR", sqladapter.ErrPoolerIncompatible},
		{"bind mismatch", "08P01", `bind message supplies 1 parameters, but prepared statement "" requires 2`, "ERROR", sqladapter.ErrPoolerIncompatible},
		{"pooler startup parameter", "08P01", "unsupported startup parameter: pgbouncer", "FATAL", sqladapter.ErrPoolerIncompatible},
		{"server startup parameter", "42704", `unrecognized configuration parameter "pgbouncer"`, "FATAL", sqladapter.ErrPoolerIncompatible},
		{"SET of unknown parameter", "42704", `unrecognized configuration parameter "foo"`, "ERROR", nil},
		{"undefined table", "42P01", `relation "nope" does not exist`, "ERROR", nil},
		{"syntax error", "42601", `syntax error at or near "SELEC"`, "ERROR", nil},
	}
	wraps := []struct {
		name string
		wrap func(error) error
	}{
		{"bare", func(err error) error { return err }},
		{"wrapped", func(err error) error { return fmt.Errorf("load profile 7: %w", err) }},
	}
	for _, tc := range cases {
		for _, se := range errsServerErrors {
			for _, w := range wraps {
				t.Run(se.name+"/"+tc.name+"/"+w.name, func(t *testing.T) {
					t.Parallel()
					orig := se.make(tc.code, tc.msg, tc.severity)
					in := w.wrap(orig)
					got := sqladapter.Classify(in)
					errsOnly(t, got, tc.want)

					e := errsAs(t, got)
					wantKind := sqladapter.KindUnknown
					for _, s := range errsSentinels {
						if s.err == tc.want {
							wantKind = s.kind
						}
					}
					if e.Kind != wantKind || sqladapter.KindOf(in) != wantKind {
						t.Errorf("Kind = %v, KindOf = %v, want %v", e.Kind, sqladapter.KindOf(in), wantKind)
					}
					if e.SQLState != tc.code || e.Message != tc.msg {
						t.Errorf("SQLState, Message = %q, %q, want %q, %q", e.SQLState, e.Message, tc.code, tc.msg)
					}
					if e.Detail != "the detail" || e.Hint != "the hint" || e.Schema != "app" ||
						e.Table != "profiles" || e.Column != "email" || e.Constraint != "profiles_email_key" {
						t.Errorf("fields not copied: %+v", e)
					}
					if e.Err != in {
						t.Errorf("Err = %v, want the original %v", e.Err, in)
					}
					if !errors.Is(got, orig) {
						t.Error("errors.Is(classified, original) = false")
					}
					switch orig := orig.(type) {
					case *pgconn.PgError:
						var pe *pgconn.PgError
						if !errors.As(got, &pe) || pe != orig {
							t.Error("errors.As to *pgconn.PgError lost the original")
						}
					case *pq.Error:
						var pe *pq.Error
						if !errors.As(got, &pe) || pe != orig {
							t.Error("errors.As to *pq.Error lost the original")
						}
					}
					if again := sqladapter.Classify(got); again != got {
						t.Errorf("Classify is not idempotent: %v became %v", got, again)
					}
					if msg := got.Error(); !strings.Contains(msg, tc.msg) || !strings.Contains(msg, "SQLSTATE "+tc.code) {
						t.Errorf("Error() = %q, want the message and SQLSTATE %s", msg, tc.code)
					}
					wantRetry := tc.want == sqladapter.ErrSerialization || tc.want == sqladapter.ErrDeadlock
					if sqladapter.Retryable(in) != wantRetry || sqladapter.Retryable(got) != wantRetry {
						t.Errorf("Retryable = %t, want %t", sqladapter.Retryable(got), wantRetry)
					}
				})
			}
		}
	}
}

func TestClassifyNilAndUnknown(t *testing.T) {
	t.Parallel()
	if got := sqladapter.Classify(nil); got != nil {
		t.Fatalf("Classify(nil) = %v", got)
	}
	if got := sqladapter.ClassifyContext(context.Background(), nil); got != nil {
		t.Fatalf("ClassifyContext(nil) = %v", got)
	}
	if k := sqladapter.KindOf(nil); k != sqladapter.KindUnknown {
		t.Fatalf("KindOf(nil) = %v", k)
	}
	mine := errors.New("profile name must not be empty")
	for _, err := range []error{mine, fmt.Errorf("save: %w", mine), sql.ErrTxDone} {
		if got := sqladapter.Classify(err); got != err {
			t.Errorf("Classify(%v) = %#v, want it unchanged", err, got)
		}
		if got := sqladapter.ClassifyContext(context.Background(), err); got != err {
			t.Errorf("ClassifyContext(%v) = %#v, want it unchanged", err, got)
		}
		if k := sqladapter.KindOf(err); k != sqladapter.KindUnknown {
			t.Errorf("KindOf(%v) = %v", err, k)
		}
	}
}

func TestClassifyNotFound(t *testing.T) {
	t.Parallel()
	for _, err := range []error{sql.ErrNoRows, fmt.Errorf("get profile: %w", sql.ErrNoRows)} {
		got := sqladapter.Classify(err)
		errsOnly(t, got, sqladapter.ErrNotFound)
		if !errors.Is(got, sql.ErrNoRows) {
			t.Errorf("%v no longer matches sql.ErrNoRows", got)
		}
		if e := errsAs(t, got); e.Kind != sqladapter.KindNotFound || e.SQLState != "" {
			t.Errorf("got %+v", e)
		}
		if got.Error() != "poolsafe: not found: "+err.Error() {
			t.Errorf("Error() = %q", got.Error())
		}
	}
}

func TestClassifyContextErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err      error
		want     error
		ctxErr   error
		notCtxEr error
	}{
		{context.Canceled, sqladapter.ErrCanceled, context.Canceled, context.DeadlineExceeded},
		{fmt.Errorf("query: %w", context.Canceled), sqladapter.ErrCanceled, context.Canceled, context.DeadlineExceeded},
		{context.DeadlineExceeded, sqladapter.ErrTimeout, context.DeadlineExceeded, context.Canceled},
		{fmt.Errorf("timeout: %w", context.DeadlineExceeded), sqladapter.ErrTimeout, context.DeadlineExceeded, context.Canceled},
	}
	for _, tc := range cases {
		got := sqladapter.Classify(tc.err)
		errsOnly(t, got, tc.want)
		if !errors.Is(got, tc.ctxErr) || errors.Is(got, tc.notCtxEr) {
			t.Errorf("%v: errors.Is(%v) = %t, errors.Is(%v) = %t", got,
				tc.ctxErr, errors.Is(got, tc.ctxErr), tc.notCtxEr, errors.Is(got, tc.notCtxEr))
		}
	}
}

func TestClassifyConnectionErrors(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, err := range []error{
		driver.ErrBadConn,
		fmt.Errorf("exec: %w", driver.ErrBadConn),
		io.EOF,
		io.ErrUnexpectedEOF,
		sql.ErrConnDone,
		refused,
		fmt.Errorf("dial: %w", refused),
		pgconn.ErrConnClosed,
	} {
		got := sqladapter.Classify(err)
		errsOnly(t, got, sqladapter.ErrConnection)
		if !errors.Is(got, err) {
			t.Errorf("%v no longer matches %v", got, err)
		}
		if !errors.Is(got, driver.ErrBadConn) && errors.Is(err, driver.ErrBadConn) {
			t.Errorf("%v hides driver.ErrBadConn from database/sql", got)
		}
	}
}

// TestClassifyRefusedConnection dials a closed local port with both
// drivers (no database needed).
func TestClassifyRefusedConnection(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	const password = "s3cret-Pa55word"
	url := "postgres://app:" + password + "@" + addr + "/app?sslmode=disable&connect_timeout=5"
	for _, name := range []string{"pgx", "postgres"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, err := sql.Open(name, url)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got := sqladapter.ClassifyContext(ctx, db.PingContext(ctx))
			errsOnly(t, got, sqladapter.ErrConnection)
			if strings.Contains(got.Error(), password) {
				t.Errorf("message contains the password: %v", got)
			}
		})
	}
}

func TestClassifyContextLibPQCancel(t *testing.T) {
	t.Parallel()
	// What lib/pq returns when the context ends during a query: it sends a
	// cancel request and reports the server's answer.
	userCancel := func() error {
		return &pq.Error{Severity: "ERROR", Code: "57014", Message: "canceling statement due to user request"}
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()

	cases := []struct {
		name       string
		ctx        context.Context
		err        error
		want       error
		wantCtx    error // matched by errors.Is; nil: neither context error
		wantCancel bool
	}{
		{"canceled", canceled, userCancel(), sqladapter.ErrCanceled, context.Canceled, true},
		{"canceled wrapped", canceled, fmt.Errorf("scan: %w", userCancel()), sqladapter.ErrCanceled, context.Canceled, true},
		{"deadline", expired, userCancel(), sqladapter.ErrTimeout, context.DeadlineExceeded, false},
		{"deadline wrapped", expired, fmt.Errorf("scan: %w", userCancel()), sqladapter.ErrTimeout, context.DeadlineExceeded, false},
		{"live context", context.Background(), userCancel(), sqladapter.ErrCanceled, nil, false},
		{"pgx deadline", expired, fmt.Errorf("timeout: %w", context.DeadlineExceeded), sqladapter.ErrTimeout, context.DeadlineExceeded, false},
		{"pgx cancel", canceled, context.Canceled, sqladapter.ErrCanceled, context.Canceled, true},
		{"bad conn after deadline", expired, driver.ErrBadConn, sqladapter.ErrTimeout, context.DeadlineExceeded, false},
		{"statement timeout, live context", context.Background(),
			&pq.Error{Severity: "ERROR", Code: "57014", Message: "canceling statement due to statement timeout"},
			sqladapter.ErrTimeout, nil, false},
		{"unique violation after deadline", expired,
			&pq.Error{Severity: "ERROR", Code: "23505", Message: "duplicate key value"}, sqladapter.ErrConflict, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := sqladapter.ClassifyContext(tc.ctx, tc.err)
			errsOnly(t, got, tc.want)
			for _, ce := range []error{context.Canceled, context.DeadlineExceeded} {
				if errors.Is(got, ce) != (ce == tc.wantCtx) {
					t.Errorf("errors.Is(%v, %v) = %t", got, ce, !(ce == tc.wantCtx))
				}
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("%v no longer matches the original %v", got, tc.err)
			}
			var pe *pq.Error
			if errors.As(tc.err, &pe) && !errors.As(got, &pe) {
				t.Error("errors.As to *pq.Error fails")
			}
			if again := sqladapter.ClassifyContext(tc.ctx, got); again != got {
				t.Errorf("ClassifyContext is not idempotent: %v became %v", got, again)
			}
			if tc.wantCtx != nil && !strings.Contains(got.Error(), tc.wantCtx.Error()) {
				t.Errorf("Error() = %q, want it to name %q", got.Error(), tc.wantCtx)
			}
		})
	}
}

func TestClassifyErrorMessage(t *testing.T) {
	t.Parallel()
	pgErr := &pgconn.PgError{
		Severity: "ERROR", Code: "23505",
		Message:        `duplicate key value violates unique constraint "profiles_email_key"`,
		Detail:         "Key (email)=(a@example.com) already exists.",
		ConstraintName: "profiles_email_key", TableName: "profiles",
	}
	got := sqladapter.Classify(pgErr).Error()
	want := `poolsafe: conflict: duplicate key value violates unique constraint "profiles_email_key" (SQLSTATE 23505, constraint profiles_email_key)`
	if got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
	unknown := sqladapter.Classify(&pq.Error{Severity: "ERROR", Code: "42601", Message: `syntax error at or near "SELEC"`})
	if want := `poolsafe: syntax error at or near "SELEC" (SQLSTATE 42601)`; unknown.Error() != want {
		t.Errorf("Error() = %q, want %q", unknown.Error(), want)
	}
}

func TestClassifyPoolerIncompatibleMessage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		code, msg, severity string
		wants               []string
	}{
		{"42P05", `prepared statement "stmtcache_9a" already exists`, "ERROR",
			[]string{"prepared statements", "driverconf", "PoolMode transaction", "default_query_exec_mode=exec", "binary_parameters=yes"}},
		{"26000", `prepared statement "1" does not exist`, "ERROR",
			[]string{"prepared statements", "default_query_exec_mode=exec", "binary_parameters=yes"}},
		{"08P01", `bind message supplies 1 parameters, but prepared statement "" requires 2`, "ERROR",
			[]string{"prepared statements", "default_query_exec_mode=exec", "binary_parameters=yes"}},
		{"08P01", "unsupported startup parameter: pgbouncer", "FATAL",
			[]string{`startup parameter "pgbouncer"`, "driverconf.Parse"}},
		{"42704", `unrecognized configuration parameter "statement_cache_size"`, "FATAL",
			[]string{`startup parameter "statement_cache_size"`, "driverconf.Parse"}},
	}
	for _, tc := range cases {
		for _, se := range errsServerErrors {
			err := sqladapter.Classify(se.make(tc.code, tc.msg, tc.severity))
			errsOnly(t, err, sqladapter.ErrPoolerIncompatible)
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: %q does not say %q", se.name, err.Error(), w)
				}
			}
		}
	}
}

func TestClassifyKindString(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{sqladapter.KindUnknown.String(): true}
	for _, s := range errsSentinels {
		name := s.kind.String()
		if seen[name] || strings.HasPrefix(name, "Kind(") {
			t.Errorf("Kind %d has name %q", int(s.kind), name)
		}
		seen[name] = true
		if s.err.Error() != "poolsafe: "+name {
			t.Errorf("sentinel %q does not match Kind %q", s.err, name)
		}
	}
	if got := sqladapter.Kind(99).String(); got != "Kind(99)" {
		t.Errorf("Kind(99).String() = %q", got)
	}
}

func FuzzClassify(f *testing.F) {
	f.Add("23505", "duplicate key value", "ERROR", true)
	f.Add("57014", "canceling statement due to statement timeout", "ERROR", false)
	f.Add("08P01", "unsupported startup parameter: ", "FATAL", true)
	f.Add("42704", `unrecognized configuration parameter "`, "FATAL", false)
	f.Add("", "", "", true)
	f.Fuzz(func(t *testing.T, code, msg, severity string, pgx bool) {
		var orig error = &pq.Error{Severity: severity, Code: pqerror.Code(code), Message: msg}
		if pgx {
			orig = &pgconn.PgError{Severity: severity, Code: code, Message: msg}
		}
		got := sqladapter.Classify(orig)
		if code == "" {
			if got != orig {
				t.Fatalf("error without SQLSTATE classified: %v", got)
			}
			return
		}
		e := errsAs(t, got)
		matched := 0
		for _, s := range errsSentinels {
			if errors.Is(got, s.err) {
				matched++
				if s.kind != e.Kind {
					t.Fatalf("Kind %v matches sentinel %v", e.Kind, s.err)
				}
			}
		}
		if want := min(int(e.Kind), 1); matched != want {
			t.Fatalf("%v matches %d sentinels, want %d", got, matched, want)
		}
		if !errors.Is(got, orig) || sqladapter.Classify(got) != got {
			t.Fatal("original lost or not idempotent")
		}
		if !strings.Contains(got.Error(), "SQLSTATE "+code) {
			t.Fatalf("Error() = %q lacks the SQLSTATE", got.Error())
		}
	})
}
