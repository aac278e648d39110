package repo

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/scrapersky/poolsafe/sqladapter"
	"github.com/scrapersky/poolsafe/sqladapter/mocktest"
)

var batchCols = []string{"id", "tenant_id", "name", "status", "total", "succeeded", "failed", "cancelled",
	"finished_at", "created_at", "updated_at"}

func batchValues(b Batch) []driver.Value {
	return []driver.Value{b.ID.String(), b.TenantID.String(), b.Name, string(b.Status), int64(b.Total),
		int64(b.Succeeded), int64(b.Failed), int64(b.Cancelled), nullable(b.FinishedAt), b.CreatedAt, b.UpdatedAt}
}

func batchRows(bs ...Batch) *sqlmock.Rows {
	rows := sqlmock.NewRows(batchCols)
	for _, b := range bs {
		rows.AddRow(batchValues(b)...)
	}
	return rows
}

// batchRowsWith is b followed by extra columns.
func batchRowsWith(b Batch, extra map[string]driver.Value, order ...string) *sqlmock.Rows {
	cols := append([]string{}, batchCols...)
	vals := batchValues(b)
	for _, c := range order {
		cols = append(cols, c)
		vals = append(vals, extra[c])
	}
	return sqlmock.NewRows(cols).AddRow(vals...)
}

// sameBatch compares batches, times by instant.
func sameBatch(a, b Batch) bool {
	sameTime := func(x, y *time.Time) bool { return x == nil && y == nil || x != nil && y != nil && x.Equal(*y) }
	return a.ID == b.ID && a.TenantID == b.TenantID && a.Name == b.Name && a.Status == b.Status && a.Total == b.Total &&
		a.Succeeded == b.Succeeded && a.Failed == b.Failed && a.Cancelled == b.Cancelled &&
		sameTime(a.FinishedAt, b.FinishedAt) && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func TestBatchesCreateSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	want := Batch{ID: uuid.New(), TenantID: tenant, Name: "nightly", Status: BatchStatusPending, Total: 3,
		CreatedAt: jobTestTime, UpdatedAt: jobTestTime}
	mock.ExpectQuery(render(DefaultSchema, sqlBatchCreate)).
		WithArgs(tenant, `{"a.example.com","b.example.com","xn--bcher-kva.de"}`, "nightly", "scan", "{}", 0, nil, 3, nil).
		WillReturnRows(batchRows(want))
	got, err := r.Batches.Create(context.Background(), tenant,
		[]string{"B.example.com", "https://a.example.com/x", "b.example.com", "www.bücher.de", "a.example.com."},
		BatchOptions{Name: "nightly"})
	if err != nil {
		t.Fatal(err)
	}
	if !sameBatch(got, want) || got.Progress() != 0 || got.Finished() {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestBatchesCreateOptionsSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	runAt := time.Date(2031, 6, 7, 8, 9, 10, 0, time.FixedZone("y", -7200))
	want := Batch{ID: uuid.New(), TenantID: tenant, Status: BatchStatusPending, Total: 1, CreatedAt: jobTestTime, UpdatedAt: jobTestTime}
	mock.ExpectQuery(render(DefaultSchema, sqlBatchCreate)).
		WithArgs(tenant, `{"example.org"}`, "", "crawl", `{"depth": 3}`, -2, runAt.UTC(), 5, nil).
		WillReturnRows(batchRows(want))
	_, err := r.Batches.Create(context.Background(), tenant, []string{"example.org"}, BatchOptions{
		Kind: "crawl", Priority: -2, MaxAttempts: 5, Payload: json.RawMessage(` {"depth": 3} `), RunAt: runAt,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBatchesCreateInvalid(t *testing.T) {
	t.Parallel()
	r, _ := mockRepos(t)
	ctx, tenant := context.Background(), uuid.New()
	ok := []string{"example.com"}
	many := make([]string, MaxBatchDomains+1)
	for i := range many {
		many[i] = fmt.Sprintf("d%d.example.com", i)
	}
	cases := []struct {
		field   string
		domains []string
		opts    BatchOptions
	}{
		{"domains", nil, BatchOptions{}},
		{"domains", many, BatchOptions{}},
		{"domains[0]", []string{""}, BatchOptions{}},
		{"domains[2]", []string{"a.example.com", "b.example.com", "no_such host", "c.example.com"}, BatchOptions{}},
		{"domains[1]", []string{"a.example.com", strings.Repeat("x", 64) + ".com"}, BatchOptions{}},
		{"name", ok, BatchOptions{Name: strings.Repeat("n", MaxBatchNameLen+1)}},
		{"name", ok, BatchOptions{Name: "\xff"}},
		{"kind", ok, BatchOptions{Kind: strings.Repeat("k", MaxJobKindLen+1)}},
		{"priority", ok, BatchOptions{Priority: math.MaxInt32 + 1}},
		{"max_attempts", ok, BatchOptions{MaxAttempts: -1}},
		{"payload", ok, BatchOptions{Payload: json.RawMessage(`[]`)}},
		{"payload", ok, BatchOptions{Payload: json.RawMessage(`{"a"`)}},
	}
	for _, c := range cases {
		_, err := r.Batches.Create(ctx, tenant, c.domains, c.opts)
		expectInvalid(t, err, c.field)
	}
	_, err := r.Batches.Create(ctx, uuid.Nil, ok, BatchOptions{})
	expectInvalid(t, err, "tenant")
}

func TestBatchesCreateErrorsClassified(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	mock.ExpectQuery(render(DefaultSchema, sqlBatchCreate)).
		WithArgs(tenant, `{"example.com"}`, "", "scan", "{}", 0, nil, 3, nil).
		WillReturnError(&pgconn.PgError{Code: "40001", Message: "could not serialize access"})
	_, err := r.Batches.Create(context.Background(), tenant, []string{"example.com"}, BatchOptions{})
	if !errors.Is(err, sqladapter.ErrSerialization) || !sqladapter.Retryable(err) {
		t.Fatalf("err = %v, want ErrSerialization", err)
	}
}

// TestBatchesCreateRepeatSQL: with a chosen ID, a Create that finds the id
// taken reads the stored batch and checks it is the one asked for.
func TestBatchesCreateRepeatSQL(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	stored := sampleBatch(tenant)
	stored.Name, stored.Total = "nightly", 2
	domains := []string{"b.example.com", "A.example.com"}
	const names = `{"a.example.com","b.example.com"}`
	cases := []struct {
		name    string
		found   error // the Get's error
		batch   Batch
		has     int64
		wantErr string
	}{
		{name: "same batch", batch: stored, has: 2},
		{name: "other tenant", found: sql.ErrNoRows, wantErr: "is taken by a batch of another tenant"},
		{name: "other name", batch: func() Batch { b := stored; b.Name = "weekly"; return b }(),
			wantErr: `is taken by another batch (named "weekly"; this call names it "nightly")`},
		{name: "other domains", batch: stored, has: 1, wantErr: "it has jobs for 1 of this call's 2 domains"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, mock := mockRepos(t)
			mock.ExpectQuery(render(DefaultSchema, sqlBatchCreate)).
				WithArgs(tenant, names, "nightly", "scan", "{}", 0, nil, 3, stored.ID).
				WillReturnRows(sqlmock.NewRows(batchCols))
			get := mock.ExpectQuery(render(DefaultSchema, sqlBatchGet)).WithArgs(tenant, stored.ID)
			if c.found != nil {
				get.WillReturnError(c.found)
			} else {
				get.WillReturnRows(batchRows(c.batch))
				if c.batch.Name == stored.Name {
					mock.ExpectQuery(render(DefaultSchema, sqlBatchHasDomains)).WithArgs(tenant, stored.ID, names).
						WillReturnRows(sqlmock.NewRows([]string{"count"}).AddRow(c.has))
				}
			}
			got, err := r.Batches.Create(context.Background(), tenant, domains, BatchOptions{Name: "nightly", ID: stored.ID})
			if c.wantErr == "" {
				if err != nil || !sameBatch(got, stored) {
					t.Fatalf("Create = %+v, %v; want the stored batch", got, err)
				}
			} else if !errors.Is(err, sqladapter.ErrConflict) || !strings.Contains(err.Error(), c.wantErr) ||
				!strings.Contains(err.Error(), stored.ID.String()) {
				t.Fatalf("err = %v, want ErrConflict saying %q", err, c.wantErr)
			}
			if err := mock.ExpectationsWereMet(); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Without a chosen ID, no row is an error of its own, not a lookup.
	r, mock := mockRepos(t)
	mock.ExpectQuery(render(DefaultSchema, sqlBatchCreate)).
		WithArgs(tenant, names, "", "scan", "{}", 0, nil, 3, nil).
		WillReturnRows(sqlmock.NewRows(batchCols))
	if _, err := r.Batches.Create(context.Background(), tenant, domains, BatchOptions{}); !errors.Is(err, sqladapter.ErrNotFound) {
		t.Fatalf("err = %v, want the statement's own error", err)
	}
	if err := mock.ExpectationsWereMet(); err != nil {
		t.Fatal(err)
	}
}

func TestBatchesGetSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	want := sampleBatch(tenant)
	want.Total, want.Succeeded, want.Failed, want.Cancelled = 8, 3, 1, 2
	mock.ExpectQuery(render(DefaultSchema, sqlBatchGet)).WithArgs(tenant, want.ID).WillReturnRows(batchRows(want))
	mock.ExpectQuery(render(DefaultSchema, sqlBatchGet)).WithArgs(tenant, want.ID).WillReturnError(sql.ErrNoRows)
	ctx := context.Background()
	got, err := r.Batches.Get(ctx, tenant, want.ID)
	if err != nil || !sameBatch(got, want) || got.Done() != 6 || got.Progress() != 0.75 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	expectMissing(t, r.Batches.Get, tenant, want.ID)
}

func TestBatchProgress(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		b    Batch
		want float64
	}{
		{Batch{Total: 4}, 0},
		{Batch{Total: 4, Succeeded: 1, Failed: 1}, 0.5},
		{Batch{Total: 4, Succeeded: 2, Failed: 1, Cancelled: 1}, 1},
		{Batch{Total: 0}, 1},
		{Batch{Total: 1, Succeeded: 3}, 1}, // drifted counters never report more than done
	} {
		if got := c.b.Progress(); got != c.want {
			t.Errorf("%+v: Progress = %v, want %v", c.b, got, c.want)
		}
	}
	if !BatchStatusCancelled.Final() || BatchStatusRunning.Final() || BatchStatus("x").Final() || !BatchStatusPending.Valid() {
		t.Error("BatchStatus predicates")
	}
	if !JobStateFailed.Final() || JobStateQueued.Final() || JobState("x").Valid() {
		t.Error("JobState predicates")
	}
}

func TestBatchesListSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	ctx, tenant := context.Background(), uuid.New()
	a, b := sampleBatch(tenant), sampleBatch(tenant)
	first := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	mock.ExpectQuery(render(DefaultSchema, sqlBatchList)).
		WithArgs(tenant, "", first, uuid.Nil, 3, 0).
		WillReturnRows(batchRows(a, b, sampleBatch(tenant)))
	page, err := r.Batches.List(ctx, tenant, BatchFilter{}, Page{Limit: 2})
	if err != nil || len(page.Items) != 2 || page.NextCursor == "" {
		t.Fatalf("List = %+v, %v", page, err)
	}
	mock.ExpectQuery(render(DefaultSchema, sqlBatchList)).
		WithArgs(tenant, "running", b.CreatedAt, b.ID, 3, 0).
		WillReturnRows(batchRows())
	page, err = r.Batches.List(ctx, tenant, BatchFilter{Status: BatchStatusRunning}, Page{Limit: 2, Cursor: page.NextCursor})
	if err != nil || page.Items == nil || len(page.Items) != 0 || page.NextCursor != "" {
		t.Fatalf("List page 2 = %+v, %v", page, err)
	}
	_, err = r.Batches.List(ctx, tenant, BatchFilter{Status: "done"}, Page{})
	expectInvalid(t, err, "status")
	_, err = r.Batches.List(ctx, tenant, BatchFilter{}, Page{Offset: -1})
	expectInvalid(t, err, "offset")
	_, err = r.Batches.List(ctx, uuid.Nil, BatchFilter{}, Page{})
	expectInvalid(t, err, "tenant")
}

func TestBatchesCancelSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	ctx, tenant := context.Background(), uuid.New()
	cancelled := sampleBatch(tenant)
	cancelled.Status, cancelled.Cancelled, cancelled.FinishedAt = BatchStatusCancelled, 1, &jobTestTime
	row := func(b Batch, wasFinished bool, n int) *sqlmock.Rows {
		return batchRowsWith(b, map[string]driver.Value{"was_finished": wasFinished, "jobs_cancelled": int64(n)},
			"was_finished", "jobs_cancelled")
	}

	mock.ExpectQuery(render(DefaultSchema, sqlBatchCancel)).WithArgs(tenant, cancelled.ID).WillReturnRows(row(cancelled, false, 1))
	res, err := r.Batches.Cancel(ctx, tenant, cancelled.ID)
	if err != nil || !res.Finished || res.JobsCancelled != 1 || !sameBatch(res.Batch, cancelled) {
		t.Fatalf("Cancel = %+v, %v", res, err)
	}
	// Again: no change, no error.
	mock.ExpectQuery(render(DefaultSchema, sqlBatchCancel)).WithArgs(tenant, cancelled.ID).WillReturnRows(row(cancelled, true, 0))
	res, err = r.Batches.Cancel(ctx, tenant, cancelled.ID)
	if err != nil || res.Finished || res.JobsCancelled != 0 {
		t.Fatalf("Cancel again = %+v, %v", res, err)
	}
	// Completed: conflict.
	completed := cancelled
	completed.Status, completed.Cancelled, completed.Succeeded = BatchStatusCompleted, 0, 2
	mock.ExpectQuery(render(DefaultSchema, sqlBatchCancel)).WithArgs(tenant, completed.ID).WillReturnRows(row(completed, true, 0))
	res, err = r.Batches.Cancel(ctx, tenant, completed.ID)
	if !errors.Is(err, sqladapter.ErrConflict) || res.Batch.Status != BatchStatusCompleted {
		t.Fatalf("Cancel completed = %+v, %v; want ErrConflict", res, err)
	}
	// Missing.
	mock.ExpectQuery(render(DefaultSchema, sqlBatchCancel)).WithArgs(tenant, completed.ID).
		WillReturnRows(sqlmock.NewRows(append(append([]string{}, batchCols...), "was_finished", "jobs_cancelled")))
	expectMissing(t, r.Batches.Cancel, tenant, completed.ID)
}

func TestBatchesReconcileSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	ctx, tenant := context.Background(), uuid.New()
	fixed := sampleBatch(tenant)
	fixed.Total, fixed.Succeeded, fixed.Failed, fixed.Status, fixed.FinishedAt = 2, 1, 1, BatchStatusCompletedWithErrors, &jobTestTime
	lockRows := func(finished bool) *sqlmock.Rows {
		return sqlmock.NewRows([]string{"?column?"}).AddRow(finished)
	}

	// Finishes a straggler.
	mock.ExpectBegin()
	mock.ExpectQuery(render(DefaultSchema, sqlBatchLock)).WithArgs(tenant, fixed.ID).WillReturnRows(lockRows(false))
	mock.ExpectQuery(render(DefaultSchema, sqlBatchReconcile)).WithArgs(tenant, fixed.ID).WillReturnRows(batchRows(fixed))
	mock.ExpectCommit()
	res, err := r.Batches.Reconcile(ctx, tenant, fixed.ID)
	if err != nil || !res.Finished || !sameBatch(res.Batch, fixed) {
		t.Fatalf("Reconcile = %+v, %v", res, err)
	}
	// Already finished: counters fixed, not finished again.
	mock.ExpectBegin()
	mock.ExpectQuery(render(DefaultSchema, sqlBatchLock)).WithArgs(tenant, fixed.ID).WillReturnRows(lockRows(true))
	mock.ExpectQuery(render(DefaultSchema, sqlBatchReconcile)).WithArgs(tenant, fixed.ID).WillReturnRows(batchRows(fixed))
	mock.ExpectCommit()
	if res, err := r.Batches.Reconcile(ctx, tenant, fixed.ID); err != nil || res.Finished {
		t.Fatalf("Reconcile again = %+v, %v", res, err)
	}
	// Missing: rolled back.
	mock.ExpectBegin()
	mock.ExpectQuery(render(DefaultSchema, sqlBatchLock)).WithArgs(tenant, fixed.ID).WillReturnRows(sqlmock.NewRows([]string{"?column?"}))
	mock.ExpectRollback()
	expectMissing(t, r.Batches.Reconcile, tenant, fixed.ID)
}

// TestBatchesReconcileQueriers: Reconcile begins its transaction on a
// plain *sqlx.DB too, and joins a transaction it is given.
func TestBatchesReconcileQueriers(t *testing.T) {
	t.Parallel()
	db, mock := mocktest.New(t)
	ctx, tenant := context.Background(), uuid.New()
	b := sampleBatch(tenant)
	expect := func() {
		mock.ExpectQuery(render(DefaultSchema, sqlBatchLock)).WithArgs(tenant, b.ID).
			WillReturnRows(sqlmock.NewRows([]string{"?column?"}).AddRow(false))
		mock.ExpectQuery(render(DefaultSchema, sqlBatchReconcile)).WithArgs(tenant, b.ID).WillReturnRows(batchRows(b))
	}

	// *sqlx.DB: BeginTxx … Commit.
	mock.ExpectBegin()
	expect()
	mock.ExpectCommit()
	if _, err := New(db.DB).Batches.Reconcile(ctx, tenant, b.ID); err != nil {
		t.Fatalf("on *sqlx.DB: %v", err)
	}
	// *sqlx.DB, failing: rolled back.
	mock.ExpectBegin()
	mock.ExpectQuery(render(DefaultSchema, sqlBatchLock)).WithArgs(tenant, b.ID).
		WillReturnError(&pgconn.PgError{Code: "55P03", Message: "lock timeout"})
	mock.ExpectRollback()
	if _, err := New(db.DB).Batches.Reconcile(ctx, tenant, b.ID); !errors.Is(err, sqladapter.ErrTimeout) {
		t.Fatalf("on *sqlx.DB, lock timeout: %v, want ErrTimeout", err)
	}
	// Inside the caller's transaction: no BEGIN or COMMIT of its own.
	mock.ExpectBegin()
	expect()
	mock.ExpectCommit()
	err := db.InTx(ctx, func(tx *sqladapter.Tx) error {
		_, err := New(tx).Batches.Reconcile(ctx, tenant, b.ID)
		return err
	})
	if err != nil {
		t.Fatalf("in a transaction: %v", err)
	}
}

// countingRunner is a querier of the caller's own that says how to begin a
// transaction: it has InTx, like *sqladapter.DB.
type countingRunner struct {
	sqladapter.Querier
	db    *sqladapter.DB
	calls int
}

func (c *countingRunner) InTx(ctx context.Context, fn func(*sqladapter.Tx) error, opts ...sqladapter.TxOption) error {
	c.calls++
	return c.db.InTx(ctx, fn, opts...)
}

// plainQuerier can neither begin a transaction nor is one.
type plainQuerier struct{ sqladapter.Querier }

// TestBatchesReconcileNeedsATransaction: Reconcile's two statements run in
// a transaction the querier begins through its InTx method, and on a
// querier that is not a transaction and cannot begin one nothing is sent
// (the mock would fail any statement).
func TestBatchesReconcileNeedsATransaction(t *testing.T) {
	t.Parallel()
	db, mock := mocktest.New(t)
	ctx, tenant := context.Background(), uuid.New()
	b := sampleBatch(tenant)

	runner := &countingRunner{Querier: db, db: db}
	mock.ExpectBegin()
	mock.ExpectQuery(render(DefaultSchema, sqlBatchLock)).WithArgs(tenant, b.ID).
		WillReturnRows(sqlmock.NewRows([]string{"?column?"}).AddRow(false))
	mock.ExpectQuery(render(DefaultSchema, sqlBatchReconcile)).WithArgs(tenant, b.ID).WillReturnRows(batchRows(b))
	mock.ExpectCommit()
	if _, err := New(runner).Batches.Reconcile(ctx, tenant, b.ID); err != nil || runner.calls != 1 {
		t.Fatalf("with an InTx querier: %v (%d InTx calls)", err, runner.calls)
	}

	_, err := New(plainQuerier{db}).Batches.Reconcile(ctx, tenant, b.ID)
	if err == nil || !strings.Contains(err.Error(), "repo.plainQuerier is not a transaction and cannot begin one") {
		t.Fatalf("on a querier without transactions: %v", err)
	}
}

func TestJSONRow(t *testing.T) {
	t.Parallel()
	var r jsonRow[Batch]
	if err := r.Scan(nil); err != nil || r.v != nil {
		t.Fatalf("NULL: %+v, %v", r.v, err)
	}
	b := sampleBatch(uuid.New())
	b.FinishedAt = &jobTestTime
	for _, src := range []any{batchJSON(&b), string(batchJSON(&b))} {
		if err := r.Scan(src); err != nil || r.v == nil || !sameBatch(*r.v, b) {
			t.Fatalf("Scan(%T) = %+v, %v; want %+v", src, r.v, err, b)
		}
		if r.v.CreatedAt.Location() != time.UTC || r.v.FinishedAt.Location() != time.UTC {
			t.Fatalf("times not in UTC: %v, %v", r.v.CreatedAt, r.v.FinishedAt)
		}
	}
	b.FinishedAt = nil
	if err := r.Scan(batchJSON(&b)); err != nil || r.v.FinishedAt != nil {
		t.Fatalf("null finished_at: %+v, %v", r.v, err)
	}
	for _, bad := range []any{[]byte(`{"total": "x"}`), []byte(`[1]`), 42} {
		if err := r.Scan(bad); err == nil {
			t.Errorf("Scan(%v) succeeded", bad)
		}
	}
}
