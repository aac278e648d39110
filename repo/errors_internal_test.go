package repo

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/sqladapter"
)

const mib = 1 << 20

func TestQuote(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"", `""`},
		{"example.com", `"example.com"`},
		{"a\x00\"b", `"a\x00\"b"`},
		{strings.Repeat("a", maxQuoted), `"` + strings.Repeat("a", maxQuoted) + `"`},
		{strings.Repeat("a", maxQuoted+1), `"` + strings.Repeat("a", maxQuoted) + `"… (65 bytes)`},
		// Cut between characters: "é" is two bytes, the 64th byte starts one.
		{strings.Repeat("a", maxQuoted-1) + "éz", `"` + strings.Repeat("a", maxQuoted-1) + `"… (66 bytes)`},
		{strings.Repeat("€", 30), `"` + strings.Repeat("€", 21) + `"… (90 bytes)`},
		// Invalid UTF-8 is escaped, as %q does.
		{strings.Repeat("\x80", 100), `"` + strings.Repeat(`\x80`, maxQuoted-3) + `"… (100 bytes)`},
	} {
		if got := quote(c.in); got != c.want {
			t.Errorf("quote(%.20q…) =\n %s\nwant\n %s", c.in, got, c.want)
		}
	}
	long := quote(strings.Repeat("ü", mib))
	if len(long) > 100 || !utf8.ValidString(long) || !strings.HasSuffix(long, `"… (2097152 bytes)`) {
		t.Errorf("quote of 1 MiB = %s", long)
	}
}

// TestLongInputsMakeShortErrors: a 1 MiB input that fails validation gives
// an error message of a few hundred bytes at most, whatever the check that
// rejects it and whichever method it goes through. No statement is sent:
// the mock fails any.
func TestLongInputsMakeShortErrors(t *testing.T) {
	t.Parallel()
	a := strings.Repeat("a", mib)
	domains := map[string]string{
		"not UTF-8":        "\xff" + a,
		"IP literal":       "[" + a,
		"no host":          "https://:" + a,
		"empty label":      a + "..com",
		"disallowed rune":  "exa mple" + a,
		"invalid label":    "-" + a + ".com",
		"long label":       a + ".com",
		"long name":        strings.Repeat("a.", mib/2) + "com",
		"numeric TLD":      strings.Repeat("a.", mib/2) + "123",
		"one label":        a,
		"underscore":       strings.Repeat("a_", mib/2) + ".com",
		"unicode label":    strings.Repeat("é", mib/2) + ".com",
		"bad character":    "a.b" + strings.Repeat("\u200d", mib/3),
		"leading hyphen 2": "x.-" + a,
	}
	// A message quotes at most two prefixes of maxQuoted input bytes, which
	// escaping makes up to four times longer.
	check := func(t *testing.T, what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", what)
			return
		}
		if msg := err.Error(); len(msg) > 1024 || !utf8.ValidString(msg) {
			t.Errorf("%s: %d-byte message: %.200s", what, len(msg), msg)
		}
	}
	for name, raw := range domains {
		_, err := NormalizeDomain(raw)
		check(t, "NormalizeDomain "+name, err)
	}
	r, _ := mockRepos(t)
	ctx, tenant := context.Background(), uuid.New()
	bad := domains["invalid label"]
	_, err := r.Domains.Upsert(ctx, tenant, bad)
	check(t, "Domains.Upsert", err)
	_, err = r.Domains.GetByName(ctx, tenant, bad)
	check(t, "Domains.GetByName", err)
	_, err = r.Domains.BulkUpsert(ctx, tenant, []string{"example.com", bad})
	check(t, "Domains.BulkUpsert", err)
	_, err = r.Batches.Create(ctx, tenant, []string{"example.com", bad}, BatchOptions{})
	check(t, "Batches.Create", err)
	_, err = r.Domains.List(ctx, tenant, DomainFilter{Status: DomainStatus(a)}, Page{})
	check(t, "Domains.List", err)
	_, err = r.Domains.SetStatus(ctx, tenant, uuid.New(), DomainStatus(a))
	check(t, "Domains.SetStatus", err)
	_, err = r.Jobs.List(ctx, tenant, JobFilter{State: JobState(a)}, Page{})
	check(t, "Jobs.List", err)
	_, err = r.Batches.List(ctx, tenant, BatchFilter{Status: BatchStatus(a)}, Page{})
	check(t, "Batches.List", err)
	_, err = r.Jobs.Enqueue(ctx, tenant, NewJob{Kind: a})
	check(t, "Jobs.Enqueue kind", err)
	_, err = r.Jobs.Enqueue(ctx, tenant, NewJob{Kind: "k", Payload: json.RawMessage(`{"a": "` + a)})
	check(t, "Jobs.Enqueue payload", err)
	_, err = r.Jobs.Claim(ctx, nil, a, 1, 1)
	check(t, "Jobs.Claim worker", err)
	_, _, err = r.Batches.ClaimFinished(ctx, tenant, uuid.New(), a)
	check(t, "Batches.ClaimFinished by", err)
	_, err = r.Profiles.Create(ctx, tenant, NewProfile{Email: a + "@example.com"})
	check(t, "Profiles.Create long email", err)
	_, err = r.Profiles.Create(ctx, tenant, NewProfile{Email: "a@example.com", DisplayName: a})
	check(t, "Profiles.Create display name", err)
	_, err = r.Profiles.List(ctx, tenant, Page{Cursor: a})
	check(t, "Profiles.List cursor", err)
	// Email addresses are capped at 254 bytes before anything quotes them;
	// the quote still keeps the message short.
	for _, email := range []string{
		strings.Repeat("a", 240) + "@b@c.com",
		`"` + strings.Repeat("a", 200) + `"@example.com, b@example.com`,
		strings.Repeat("a", 200) + "@" + strings.Repeat("b", 40),
	} {
		_, err = r.Profiles.Create(ctx, tenant, NewProfile{Email: email})
		check(t, "Profiles.Create "+email[:10], err)
	}
}

// wantClass checks that err matches sentinel with errors.Is, and that an
// error in its chain says so through an Is method — which is what
// sqladapter.KindOf and Classify honour — rather than by being the
// sentinel itself. kind is the sentinel's Kind: KindOf must report it, or
// (before sqladapter honours Is methods) KindUnknown, never another class.
func wantClass(t *testing.T, err error, sentinel error, kind sqladapter.Kind) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want it to match %v", err, sentinel)
	}
	found := false
	for e := err; e != nil && !found; e = errors.Unwrap(e) {
		if is, ok := e.(interface{ Is(error) bool }); ok && is.Is(sentinel) {
			found = true
		}
	}
	if !found {
		t.Fatalf("err = %v: no error in its chain has an Is method matching %v", err, sentinel)
	}
	if k := sqladapter.KindOf(err); k != kind && k != sqladapter.KindUnknown {
		t.Fatalf("KindOf(%v) = %v, want %v", err, k, kind)
	}
}

// TestErrorClasses: every error of the package that belongs to one of
// sqladapter's classes matches its sentinel (see wantClass).
func TestErrorClasses(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	ctx, tenant, id := context.Background(), uuid.New(), uuid.New()
	notFound, invalidInput, conflict := sqladapter.ErrNotFound, sqladapter.ErrInvalidInput, sqladapter.ErrConflict
	kNotFound, kInvalid, kConflict := sqladapter.KindNotFound, sqladapter.KindInvalidInput, sqladapter.KindConflict

	// Invalid input, before anything is sent.
	_, err := NormalizeDomain("not a domain")
	wantClass(t, err, invalidInput, kInvalid)
	_, err = r.Profiles.Create(ctx, tenant, NewProfile{Email: "nope"})
	wantClass(t, err, invalidInput, kInvalid)
	_, err = r.Profiles.List(ctx, tenant, Page{Cursor: "bm9wZQ"})
	wantClass(t, err, invalidInput, kInvalid)
	if !errors.Is(err, ErrInvalidCursor) {
		t.Fatalf("bad cursor: %v, want ErrInvalidCursor too", err)
	}
	_, err = r.Jobs.Claim(ctx, nil, "w", 0, time.Second)
	wantClass(t, err, invalidInput, kInvalid)

	// Enqueue into a batch that is missing, another tenant's or finished:
	// the statement writes nothing and returns no row.
	mock.ExpectQuery(render(DefaultSchema, sqlJobEnqueueFresh)).
		WithArgs(tenant, `{"scan"}`, `{"{}"}`, `{"0"}`, `{""}`, `{"3"}`, `{"`+id.String()+`"}`, `{""}`, `{}`).
		WillReturnRows(sqlmock.NewRows(jobCols))
	_, err = r.Jobs.Enqueue(ctx, tenant, NewJob{Kind: "scan", BatchID: &id})
	wantClass(t, err, notFound, kNotFound)

	// Missing rows.
	mock.ExpectQuery(render(DefaultSchema, sqlJobGet)).WithArgs(tenant, id).WillReturnRows(sqlmock.NewRows(jobCols))
	_, err = r.Jobs.Get(ctx, tenant, id)
	wantClass(t, err, notFound, kNotFound)
	mock.ExpectExec(render(DefaultSchema, sqlProfileDelete)).WithArgs(tenant, id).WillReturnResult(sqlmock.NewResult(0, 0))
	wantClass(t, r.Profiles.Delete(ctx, tenant, id), notFound, kNotFound)
	mock.ExpectQuery(render(DefaultSchema, sqlBatchClaimFinished)).WithArgs(tenant, id, "w").
		WillReturnRows(sqlmock.NewRows(append(append([]string{}, batchCols...), "claimed")))
	_, _, err = r.Batches.ClaimFinished(ctx, tenant, id, "w")
	wantClass(t, err, notFound, kNotFound)
	mock.ExpectBegin()
	mock.ExpectQuery(render(DefaultSchema, sqlBatchLock)).WithArgs(tenant, id).WillReturnRows(sqlmock.NewRows([]string{"?column?"}))
	mock.ExpectRollback()
	_, err = r.Batches.Reconcile(ctx, tenant, id)
	wantClass(t, err, notFound, kNotFound)

	// Cancelling what has ended otherwise.
	succeeded := sampleJob(tenant)
	succeeded.State = JobStateSucceeded
	mock.ExpectQuery(render(DefaultSchema, sqlJobCancel)).WithArgs(tenant, succeeded.ID).
		WillReturnRows(sqlmock.NewRows(transitionCols))
	mock.ExpectQuery(render(DefaultSchema, sqlJobGet)).WithArgs(tenant, succeeded.ID).WillReturnRows(jobRows(succeeded))
	_, err = r.Jobs.Cancel(ctx, tenant, succeeded.ID)
	wantClass(t, err, conflict, kConflict)
	completed := sampleBatch(tenant)
	completed.Status, completed.Succeeded, completed.FinishedAt = BatchStatusCompleted, 2, &jobTestTime
	mock.ExpectQuery(render(DefaultSchema, sqlBatchCancel)).WithArgs(tenant, completed.ID).
		WillReturnRows(batchRowsWith(completed, map[string]driver.Value{"was_finished": true, "jobs_cancelled": int64(0)},
			"was_finished", "jobs_cancelled"))
	_, err = r.Batches.Cancel(ctx, tenant, completed.ID)
	wantClass(t, err, conflict, kConflict)
	if err.Error() != "cancel batch: poolsafe: conflict: the batch has completed" {
		t.Fatalf("message = %q", err)
	}
}
