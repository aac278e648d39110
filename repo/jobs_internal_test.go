package repo

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/scrapersky/poolsafe/sqladapter"
)

var jobCols = []string{"id", "tenant_id", "batch_id", "domain_id", "kind", "payload", "state", "priority", "run_at",
	"attempts", "max_attempts", "locked_by", "lease_expires_at", "progress", "result", "last_error", "finished_at",
	"created_at", "updated_at"}

// transitionCols are the columns the job-to-final statements add to the
// job's (see sqlJobTallyResult).
var transitionCols = append(append([]string{}, jobCols...), "batch", "b_just_finished")

var jobTestTime = time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC)

// jobValues is j as the database sends it.
func jobValues(j Job) []driver.Value {
	return []driver.Value{j.ID.String(), j.TenantID.String(), nullable(j.BatchID), nullable(j.DomainID), j.Kind,
		[]byte(j.Payload), string(j.State), int64(j.Priority), j.RunAt, int64(j.Attempts), int64(j.MaxAttempts),
		nullable(j.LockedBy), nullable(j.LeaseExpiresAt), j.Progress, []byte(j.Result), nullable(j.LastError),
		nullable(j.FinishedAt), j.CreatedAt, j.UpdatedAt}
}

func jobRows(js ...Job) *sqlmock.Rows {
	rows := sqlmock.NewRows(jobCols)
	for _, j := range js {
		rows.AddRow(jobValues(j)...)
	}
	return rows
}

// transitionRows is a job with its batch (nil: not counted) as
// sqlJobTallyResult returns them: the batch as to_jsonb writes its row.
func transitionRows(j Job, b *Batch, justFinished bool) *sqlmock.Rows {
	var batch driver.Value
	if b != nil {
		batch = batchJSON(b)
	}
	return sqlmock.NewRows(transitionCols).AddRow(append(jobValues(j), batch, justFinished)...)
}

// batchJSON is b as to_jsonb writes a row of batches: every column (those
// Batch has no field for too), times with the session's offset.
func batchJSON(b *Batch) []byte {
	zone := time.FixedZone("", 2*3600)
	at := func(t *time.Time) any {
		if t == nil {
			return nil
		}
		return t.In(zone).Format("2006-01-02T15:04:05.999999-07:00")
	}
	raw, err := json.Marshal(map[string]any{
		"id": b.ID, "tenant_id": b.TenantID, "name": b.Name, "status": b.Status, "total": b.Total,
		"succeeded": b.Succeeded, "failed": b.Failed, "cancelled": b.Cancelled, "finished_at": at(b.FinishedAt),
		"created_at": at(&b.CreatedAt), "updated_at": at(&b.UpdatedAt), "finish_claimed_at": nil, "finish_claimed_by": nil,
		"b_just_finished": true,
	})
	if err != nil {
		panic(err)
	}
	return raw
}

func sampleJob(tenant uuid.UUID) Job {
	return Job{
		ID: uuid.New(), TenantID: tenant, Kind: "scan", Payload: json.RawMessage(`{}`), State: JobStateQueued,
		RunAt: jobTestTime, MaxAttempts: 3, Result: json.RawMessage(`null`), CreatedAt: jobTestTime, UpdatedAt: jobTestTime,
	}
}

func runningJob(tenant uuid.UUID, worker string) Job {
	j := sampleJob(tenant)
	lease := jobTestTime.Add(time.Minute)
	j.State, j.LockedBy, j.LeaseExpiresAt, j.Attempts = JobStateRunning, &worker, &lease, 1
	return j
}

func TestJobsEnqueueSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	want := sampleJob(tenant)
	mock.ExpectQuery(render(DefaultSchema, sqlJobEnqueueFresh)).
		WithArgs(tenant, `{"scan"}`, `{"{}"}`, `{"0"}`, `{""}`, `{"3"}`, `{""}`, `{""}`, `{}`).
		WillReturnRows(jobRows(want))
	got, err := r.Jobs.Enqueue(context.Background(), tenant, NewJob{Kind: "scan"})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != want.ID || got.TenantID != tenant || got.State != JobStateQueued || got.BatchID != nil ||
		string(got.Payload) != "{}" || !got.RunAt.Equal(jobTestTime) || got.MaxAttempts != 3 {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// TestJobsEnqueueRepeatSQL: jobs with chosen IDs that the statement did
// not write are looked up; a repeat gets the stored jobs, anything else a
// conflict naming the job.
func TestJobsEnqueueRepeatSQL(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	batch := uuid.New()
	a, b := sampleJob(tenant), sampleJob(tenant)
	b.BatchID = &batch
	in := []NewJob{{Kind: "scan", ID: a.ID}, {Kind: "scan", BatchID: &batch, ID: b.ID}}
	ids := `{"` + a.ID.String() + `","` + b.ID.String() + `"}`
	other := b
	other.TenantID = uuid.New()
	moved := b
	moved.BatchID = nil
	cases := []struct {
		name    string
		written []Job // what the statement returns
		stored  []Job // what the lookup finds
		wantErr string
		missing bool
	}{
		{name: "repeat", stored: []Job{b, a}},
		{name: "none stored", missing: true},
		{name: "some stored", stored: []Job{a}, wantErr: "1 of the 2 jobs exist (jobs[1].id " + b.ID.String() + " does not)"},
		{name: "other tenant", stored: []Job{a, other}, wantErr: "jobs[1].id " + b.ID.String() + " is taken by a job of another tenant"},
		{name: "other batch", stored: []Job{a, moved}, wantErr: "jobs[1].id " + b.ID.String() + ` is taken by another job (kind "scan", batch none, domain none)`},
		{name: "written in part", written: []Job{a}, stored: []Job{a, b}, wantErr: "1 of the 2 jobs were written by another call"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, mock := mockRepos(t)
			mock.ExpectQuery(render(DefaultSchema, sqlJobEnqueue)).
				WithArgs(tenant, `{"scan","scan"}`, `{"{}","{}"}`, `{"0","0"}`, `{"",""}`, `{"3","3"}`,
					`{"","`+batch.String()+`"}`, `{"",""}`, ids).
				WillReturnRows(jobRows(c.written...))
			mock.ExpectQuery(render(DefaultSchema, sqlJobsByID)).WithArgs(ids).WillReturnRows(jobRows(c.stored...))
			got, err := r.Jobs.EnqueueMany(context.Background(), tenant, in)
			switch {
			case c.missing:
				if !errors.Is(err, sqladapter.ErrNotFound) {
					t.Fatalf("err = %v, want ErrNotFound (the batch is not open)", err)
				}
			case c.wantErr == "":
				if err != nil || len(got) != 2 || got[0].ID != a.ID || got[1].ID != b.ID {
					t.Fatalf("EnqueueMany = %+v, %v; want the stored jobs in input order", got, err)
				}
			case !errors.Is(err, sqladapter.ErrConflict) || !strings.Contains(err.Error(), c.wantErr):
				t.Fatalf("err = %v, want ErrConflict saying %q", err, c.wantErr)
			}
			if err := mock.ExpectationsWereMet(); err != nil {
				t.Fatal(err)
			}
		})
	}
	// IDs on some jobs only, or twice in one call, are refused unsent.
	r, _ := mockRepos(t)
	_, err := r.Jobs.EnqueueMany(context.Background(), tenant, []NewJob{{Kind: "scan", ID: a.ID}, {Kind: "scan"}})
	expectInvalid(t, err, "jobs[1].id")
	_, err = r.Jobs.EnqueueMany(context.Background(), tenant, []NewJob{{Kind: "scan"}, {Kind: "scan", ID: a.ID}})
	expectInvalid(t, err, "jobs[1].id")
	_, err = r.Jobs.EnqueueMany(context.Background(), tenant, []NewJob{{Kind: "scan", ID: a.ID}, {Kind: "scan", ID: a.ID}})
	expectInvalid(t, err, "jobs[1].id")
	if !strings.Contains(err.Error(), "repeats jobs[0].id") {
		t.Fatalf("err = %v", err)
	}
}

func TestJobsEnqueueManySQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant, batch, domain := uuid.New(), uuid.New(), uuid.New()
	runAt := time.Date(2030, 1, 2, 3, 4, 5, 600000000, time.FixedZone("x", 3600))
	a, b := sampleJob(tenant), sampleJob(tenant)
	b.BatchID, b.DomainID, b.Kind, b.Priority = &batch, &domain, `k"\`, -7
	mock.ExpectQuery(render(DefaultSchema, sqlJobEnqueueFresh)).
		WithArgs(tenant,
			`{"scan","k\"\\"}`,
			`{"{}","{\"a\": [1]}"}`,
			`{"0","-7"}`,
			`{"","2030-01-02T02:04:05.6Z"}`,
			`{"3","9"}`,
			`{"","`+batch.String()+`"}`,
			`{"","`+domain.String()+`"}`,
			`{}`).
		WillReturnRows(jobRows(a, b))
	got, err := r.Jobs.EnqueueMany(context.Background(), tenant, []NewJob{
		{Kind: "scan"},
		{Kind: `k"\`, Payload: json.RawMessage(` {"a": [1]} `), Priority: -7, RunAt: runAt, MaxAttempts: 9, BatchID: &batch, DomainID: &domain},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != a.ID || got[1].ID != b.ID || *got[1].BatchID != batch || *got[1].DomainID != domain ||
		got[1].Priority != -7 {
		t.Fatalf("got %+v", got)
	}
}

func TestJobsEnqueueManyEmptySendsNothing(t *testing.T) {
	t.Parallel()
	r, _ := mockRepos(t)
	got, err := r.Jobs.EnqueueMany(context.Background(), uuid.New(), nil)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("got %v, %v; want an empty slice", got, err)
	}
}

func TestJobsEnqueueIntoClosedBatch(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant, batch := uuid.New(), uuid.New()
	mock.ExpectQuery(render(DefaultSchema, sqlJobEnqueueFresh)).
		WithArgs(tenant, `{"scan"}`, `{"{}"}`, `{"0"}`, `{""}`, `{"3"}`, `{"`+batch.String()+`"}`, `{""}`, `{}`).
		WillReturnRows(sqlmock.NewRows(jobCols))
	_, err := r.Jobs.Enqueue(context.Background(), tenant, NewJob{Kind: "scan", BatchID: &batch})
	if !errors.Is(err, sqladapter.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestJobsEnqueueInvalid(t *testing.T) {
	t.Parallel()
	r, _ := mockRepos(t)
	ctx, tenant := context.Background(), uuid.New()
	nilID := uuid.Nil
	cases := []struct {
		field string
		job   NewJob
	}{
		{"kind", NewJob{}},
		{"kind", NewJob{Kind: strings.Repeat("k", MaxJobKindLen+1)}},
		{"kind", NewJob{Kind: "a\x00b"}},
		{"kind", NewJob{Kind: "\xff"}},
		{"payload", NewJob{Kind: "k", Payload: json.RawMessage(`{`)}},
		{"payload", NewJob{Kind: "k", Payload: json.RawMessage(`"text"`)}},
		{"priority", NewJob{Kind: "k", Priority: math.MinInt32 - 1}},
		{"max_attempts", NewJob{Kind: "k", MaxAttempts: -1}},
		{"max_attempts", NewJob{Kind: "k", MaxAttempts: math.MaxInt32 + 1}},
		{"batch_id", NewJob{Kind: "k", BatchID: &nilID}},
		{"domain_id", NewJob{Kind: "k", DomainID: &nilID}},
	}
	for _, c := range cases {
		_, err := r.Jobs.Enqueue(ctx, tenant, c.job)
		expectInvalid(t, err, c.field)
		_, err = r.Jobs.EnqueueMany(ctx, tenant, []NewJob{{Kind: "fine"}, c.job})
		expectInvalid(t, err, "jobs[1]."+c.field)
	}
	_, err := r.Jobs.Enqueue(ctx, uuid.Nil, NewJob{Kind: "k"})
	expectInvalid(t, err, "tenant")
	_, err = r.Jobs.EnqueueMany(ctx, tenant, make([]NewJob, MaxEnqueueJobs+1))
	expectInvalid(t, err, "jobs")
}

func TestJobsClaimSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	a, b := runningJob(tenant, "w1"), runningJob(uuid.New(), "w1")
	mock.ExpectQuery(render(DefaultSchema, sqlJobClaim)).
		WithArgs(5, "w1", int64(90000)).
		WillReturnRows(jobRows(a, b))
	mock.ExpectQuery(render(DefaultSchema, sqlJobClaimTenant)).
		WithArgs(1, "w1", int64(1500), tenant).
		WillReturnRows(jobRows(a))
	mock.ExpectQuery(render(DefaultSchema, sqlJobClaimTenant)).
		WithArgs(1, "w1", int64(1500), tenant).
		WillReturnRows(sqlmock.NewRows(jobCols))
	ctx := context.Background()
	got, err := r.Jobs.Claim(ctx, nil, "w1", 5, 90*time.Second)
	if err != nil || len(got) != 2 || got[0].ID != a.ID || *got[0].LockedBy != "w1" || got[0].State != JobStateRunning {
		t.Fatalf("Claim any = %+v, %v", got, err)
	}
	got, err = r.Jobs.Claim(ctx, &tenant, "w1", 1, 1500*time.Millisecond)
	if err != nil || len(got) != 1 || got[0].TenantID != tenant {
		t.Fatalf("Claim tenant = %+v, %v", got, err)
	}
	got, err = r.Jobs.Claim(ctx, &tenant, "w1", 1, 1500*time.Millisecond)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Claim of nothing = %v, %v; want an empty slice", got, err)
	}
}

func TestJobsClaimStatementShape(t *testing.T) {
	t.Parallel()
	// The statement the design requires: one UPDATE … WHERE id IN (SELECT
	// … FOR UPDATE SKIP LOCKED) in priority, then run_at order.
	for _, stmt := range []string{sqlJobClaim, sqlJobClaimTenant} {
		for _, part := range []string{"UPDATE {schema}.jobs SET", "WHERE id IN (", "state = 'queued' AND run_at <= now()",
			"ORDER BY priority DESC, run_at, id", "LIMIT $1", "FOR UPDATE SKIP LOCKED", "attempts = attempts + 1",
			"SET status = 'running'"} {
			if !strings.Contains(stmt, part) {
				t.Errorf("claim statement lacks %q", part)
			}
		}
	}
	if !strings.Contains(sqlJobClaimTenant, "tenant_id = $4") || strings.Contains(sqlJobClaim, "tenant_id = $") {
		t.Error("only the tenant claim filters by tenant")
	}
}

func TestJobsClaimInvalid(t *testing.T) {
	t.Parallel()
	r, _ := mockRepos(t)
	ctx, tenant, nilTenant := context.Background(), uuid.New(), uuid.Nil
	_, err := r.Jobs.Claim(ctx, &tenant, "w", 0, time.Second)
	expectInvalid(t, err, "n")
	_, err = r.Jobs.Claim(ctx, &tenant, "w", MaxClaimJobs+1, time.Second)
	expectInvalid(t, err, "n")
	_, err = r.Jobs.Claim(ctx, &tenant, "", 1, time.Second)
	expectInvalid(t, err, "worker")
	_, err = r.Jobs.Claim(ctx, &tenant, strings.Repeat("w", MaxWorkerLen+1), 1, time.Second)
	expectInvalid(t, err, "worker")
	_, err = r.Jobs.Claim(ctx, &tenant, "w", 1, time.Microsecond)
	expectInvalid(t, err, "lease")
	_, err = r.Jobs.Claim(ctx, &tenant, "w", 1, -time.Second)
	expectInvalid(t, err, "lease")
	_, err = r.Jobs.Claim(ctx, &nilTenant, "w", 1, time.Second)
	expectInvalid(t, err, "tenant")
}

func TestJobsHeartbeatSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	id := uuid.New()
	until := jobTestTime.Add(time.Minute)
	mock.ExpectQuery(render(DefaultSchema, sqlJobHeartbeat)).
		WithArgs(id, "w", int64(60000)).
		WillReturnRows(sqlmock.NewRows([]string{"lease_expires_at"}).AddRow(until))
	mock.ExpectQuery(render(DefaultSchema, sqlJobHeartbeat)).
		WithArgs(id, "other", int64(60000)).
		WillReturnRows(sqlmock.NewRows([]string{"lease_expires_at"}))
	ctx := context.Background()
	got, err := r.Jobs.Heartbeat(ctx, id, "w", time.Minute)
	if err != nil || !got.Equal(until) {
		t.Fatalf("Heartbeat = %v, %v", got, err)
	}
	if _, err := r.Jobs.Heartbeat(ctx, id, "other", time.Minute); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Heartbeat by non-owner: %v, want ErrLeaseLost", err)
	}
	_, err = r.Jobs.Heartbeat(ctx, id, "", time.Minute)
	expectInvalid(t, err, "worker")
	_, err = r.Jobs.Heartbeat(ctx, id, "w", 0)
	expectInvalid(t, err, "lease")
}

func TestJobsSetProgressSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	id := uuid.New()
	mock.ExpectExec(render(DefaultSchema, sqlJobSetProgress)).WithArgs(id, "w", 0.5).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectExec(render(DefaultSchema, sqlJobSetProgress)).WithArgs(id, "w", 1.0).WillReturnResult(sqlmock.NewResult(0, 0))
	ctx := context.Background()
	if err := r.Jobs.SetProgress(ctx, id, "w", 0.5); err != nil {
		t.Fatal(err)
	}
	if err := r.Jobs.SetProgress(ctx, id, "w", 1); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("SetProgress of a lost job: %v, want ErrLeaseLost", err)
	}
	for _, p := range []float64{-0.001, 1.001, math.NaN(), math.Inf(-1)} {
		expectInvalid(t, r.Jobs.SetProgress(ctx, id, "w", p), "progress")
	}
	expectInvalid(t, r.Jobs.SetProgress(ctx, id, "", 0.5), "worker")
}

func TestJobsSetResultSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	id := uuid.New()
	mock.ExpectExec(render(DefaultSchema, sqlJobSetResult)).WithArgs(id, "w", `{"n": 1}`).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectExec(render(DefaultSchema, sqlJobSetResult)).WithArgs(id, "w", `[]`).WillReturnResult(sqlmock.NewResult(0, 0))
	ctx := context.Background()
	if err := r.Jobs.SetResult(ctx, id, "w", json.RawMessage(" {\"n\": 1}\n")); err != nil {
		t.Fatal(err)
	}
	if err := r.Jobs.SetResult(ctx, id, "w", json.RawMessage(`[]`)); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("SetResult of a lost job: %v, want ErrLeaseLost", err)
	}
	expectInvalid(t, r.Jobs.SetResult(ctx, id, "w", json.RawMessage(`{`)), "result")
	expectInvalid(t, r.Jobs.SetResult(ctx, id, "w", nil), "result")
	expectInvalid(t, r.Jobs.SetResult(ctx, id, "", json.RawMessage(`{}`)), "worker")
}

func sampleBatch(tenant uuid.UUID) Batch {
	return Batch{ID: uuid.New(), TenantID: tenant, Name: "b", Status: BatchStatusRunning, Total: 2, Succeeded: 1,
		CreatedAt: jobTestTime, UpdatedAt: jobTestTime}
}

func TestJobsCompleteSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	done := runningJob(tenant, "w")
	done.State, done.LockedBy, done.LeaseExpiresAt, done.FinishedAt, done.Result = JobStateSucceeded, nil, nil, &jobTestTime, json.RawMessage(`{"ok": true}`)
	batch := sampleBatch(tenant)
	batch.Succeeded, batch.Status, batch.FinishedAt = 2, BatchStatusCompleted, &jobTestTime
	done.BatchID = &batch.ID
	mock.ExpectQuery(render(DefaultSchema, sqlJobComplete)).
		WithArgs(done.ID, "w", `{"ok": true}`).
		WillReturnRows(transitionRows(done, &batch, true))
	mock.ExpectQuery(render(DefaultSchema, sqlJobComplete)).
		WithArgs(done.ID, "w", nil).
		WillReturnRows(transitionRows(done, nil, false))
	mock.ExpectQuery(render(DefaultSchema, sqlJobComplete)).
		WithArgs(done.ID, "late", nil).
		WillReturnRows(sqlmock.NewRows(transitionCols))
	ctx := context.Background()
	tr, err := r.Jobs.Complete(ctx, done.ID, "w", json.RawMessage(`{"ok": true}`))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Job.State != JobStateSucceeded || !tr.BatchFinished || tr.Batch == nil || !sameBatch(*tr.Batch, batch) {
		t.Fatalf("Complete = %+v (batch %+v), want batch %+v finished", tr, tr.Batch, batch)
	}
	tr, err = r.Jobs.Complete(ctx, done.ID, "w", nil)
	if err != nil || tr.Batch != nil || tr.BatchFinished {
		t.Fatalf("Complete without batch count = %+v, %v", tr, err)
	}
	if _, err := r.Jobs.Complete(ctx, done.ID, "late", nil); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Complete by a lost worker: %v, want ErrLeaseLost", err)
	}
	_, err = r.Jobs.Complete(ctx, done.ID, "w", json.RawMessage(`{"ok":`))
	expectInvalid(t, err, "result")
	_, err = r.Jobs.Complete(ctx, done.ID, "", nil)
	expectInvalid(t, err, "worker")
}

func TestJobsFailSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	requeued := sampleJob(tenant)
	msg := "timeout \x00 \xff"
	clean := "timeout \uFFFD \uFFFD"
	requeued.LastError, requeued.Attempts = &clean, 1
	mock.ExpectQuery(render(DefaultSchema, sqlJobFail)).
		WithArgs(requeued.ID, "w", clean, int64(2000), int64(3600000)).
		WillReturnRows(transitionRows(requeued, nil, false))
	mock.ExpectQuery(render(DefaultSchema, sqlJobFail)).
		WithArgs(requeued.ID, "w", strings.Repeat("é", MaxJobErrorLen/2), int64(2000), int64(3600000)).
		WillReturnRows(sqlmock.NewRows(transitionCols))
	ctx := context.Background()
	tr, err := r.Jobs.Fail(ctx, requeued.ID, "w", msg)
	if err != nil || tr.Job.State != JobStateQueued || *tr.Job.LastError != clean || tr.Batch != nil {
		t.Fatalf("Fail = %+v, %v", tr, err)
	}
	// A long message is cut on a character boundary.
	long := strings.Repeat("é", MaxJobErrorLen/2) + "xyz"
	if _, err := r.Jobs.Fail(ctx, requeued.ID, "w", long); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Fail of a lost job: %v, want ErrLeaseLost", err)
	}
	_, err = r.Jobs.Fail(ctx, requeued.ID, "", "x")
	expectInvalid(t, err, "worker")
}

func TestCleanJobError(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain":                               "plain",
		"a\x00b":                              "a\uFFFDb",
		"bad \xff\xfe":                        "bad \uFFFD",
		strings.Repeat("x", MaxJobErrorLen+5): strings.Repeat("x", MaxJobErrorLen),
		strings.Repeat("x", MaxJobErrorLen-1) + "é": strings.Repeat("x", MaxJobErrorLen-1),
	} {
		if got := cleanJobError(in); got != want || !utf8Valid(got) {
			t.Errorf("cleanJobError(%.20q…) = %.20q… (len %d), want len %d", in, got, len(got), len(want))
		}
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }

func TestJobsCancelSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	ctx, tenant := context.Background(), uuid.New()
	cancelled := sampleJob(tenant)
	cancelled.State, cancelled.FinishedAt = JobStateCancelled, &jobTestTime
	batch := sampleBatch(tenant)
	batch.Cancelled, batch.Status, batch.FinishedAt = 1, BatchStatusCompletedWithErrors, &jobTestTime
	cancelled.BatchID = &batch.ID
	noRows := sqlmock.NewRows(transitionCols)

	mock.ExpectQuery(render(DefaultSchema, sqlJobCancel)).WithArgs(tenant, cancelled.ID).
		WillReturnRows(transitionRows(cancelled, &batch, true))
	tr, err := r.Jobs.Cancel(ctx, tenant, cancelled.ID)
	if err != nil || tr.Job.State != JobStateCancelled || !tr.BatchFinished || tr.Batch.Cancelled != 1 {
		t.Fatalf("Cancel = %+v, %v", tr, err)
	}

	// Already cancelled: unchanged, no error.
	mock.ExpectQuery(render(DefaultSchema, sqlJobCancel)).WithArgs(tenant, cancelled.ID).WillReturnRows(noRows)
	mock.ExpectQuery(render(DefaultSchema, sqlJobGet)).WithArgs(tenant, cancelled.ID).WillReturnRows(jobRows(cancelled))
	tr, err = r.Jobs.Cancel(ctx, tenant, cancelled.ID)
	if err != nil || tr.Job.ID != cancelled.ID || tr.Batch != nil || tr.BatchFinished {
		t.Fatalf("Cancel again = %+v, %v", tr, err)
	}

	// Succeeded: conflict.
	succeeded := cancelled
	succeeded.State = JobStateSucceeded
	mock.ExpectQuery(render(DefaultSchema, sqlJobCancel)).WithArgs(tenant, succeeded.ID).
		WillReturnRows(sqlmock.NewRows(transitionCols))
	mock.ExpectQuery(render(DefaultSchema, sqlJobGet)).WithArgs(tenant, succeeded.ID).WillReturnRows(jobRows(succeeded))
	if _, err := r.Jobs.Cancel(ctx, tenant, succeeded.ID); !errors.Is(err, sqladapter.ErrConflict) {
		t.Fatalf("Cancel succeeded job: %v, want ErrConflict", err)
	}

	// Missing.
	missing := uuid.New()
	mock.ExpectQuery(render(DefaultSchema, sqlJobCancel)).WithArgs(tenant, missing).
		WillReturnRows(sqlmock.NewRows(transitionCols))
	mock.ExpectQuery(render(DefaultSchema, sqlJobGet)).WithArgs(tenant, missing).WillReturnRows(sqlmock.NewRows(jobCols))
	expectMissing(t, r.Jobs.Cancel, tenant, missing)
}

func TestJobsRescueExpiredSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	requeued, failed, batch := uuid.New(), uuid.New(), uuid.New()
	mock.ExpectQuery(render(DefaultSchema, sqlJobRescue)).WithArgs().
		WillReturnRows(sqlmock.NewRows([]string{"id", "state", "batch"}).
			AddRow(requeued.String(), "queued", false).
			AddRow(failed.String(), "failed", false).
			AddRow(batch.String(), "failed", true))
	mock.ExpectQuery(render(DefaultSchema, sqlJobRescue)).WithArgs().
		WillReturnRows(sqlmock.NewRows([]string{"id", "state", "batch"}))
	res, err := r.Jobs.RescueExpired(context.Background())
	if err != nil || len(res.Requeued) != 1 || res.Requeued[0] != requeued || len(res.Failed) != 1 || res.Failed[0] != failed ||
		len(res.FinishedBatches) != 1 || res.FinishedBatches[0] != batch {
		t.Fatalf("RescueExpired = %+v, %v", res, err)
	}
	res, err = r.Jobs.RescueExpired(context.Background())
	if err != nil || res.Requeued == nil || len(res.Requeued)+len(res.Failed)+len(res.FinishedBatches) != 0 {
		t.Fatalf("idle RescueExpired = %+v, %v", res, err)
	}
}

func TestJobsGetSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	tenant := uuid.New()
	want := runningJob(tenant, "w")
	last := "boom"
	want.LastError, want.Progress = &last, 0.25
	mock.ExpectQuery(render(DefaultSchema, sqlJobGet)).WithArgs(tenant, want.ID).WillReturnRows(jobRows(want))
	mock.ExpectQuery(render(DefaultSchema, sqlJobGet)).WithArgs(tenant, want.ID).WillReturnError(sql.ErrNoRows)
	ctx := context.Background()
	got, err := r.Jobs.Get(ctx, tenant, want.ID)
	if err != nil || got.ID != want.ID || *got.LockedBy != "w" || !got.LeaseExpiresAt.Equal(*want.LeaseExpiresAt) ||
		*got.LastError != "boom" || got.Progress != 0.25 || string(got.Result) != "null" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	expectMissing(t, r.Jobs.Get, tenant, want.ID)
}

func TestJobsListSQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	ctx, tenant, batch := context.Background(), uuid.New(), uuid.New()
	a, b := sampleJob(tenant), sampleJob(tenant)
	first := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	mock.ExpectQuery(render(DefaultSchema, sqlJobList)).
		WithArgs(tenant, "", nil, "", first, uuid.Nil, 3, 0).
		WillReturnRows(jobRows(a, b, sampleJob(tenant)))
	page, err := r.Jobs.List(ctx, tenant, JobFilter{}, Page{Limit: 2})
	if err != nil || len(page.Items) != 2 || page.NextCursor == "" {
		t.Fatalf("List = %+v, %v", page, err)
	}
	mock.ExpectQuery(render(DefaultSchema, sqlJobList)).
		WithArgs(tenant, "failed", batch, "scan", b.CreatedAt, b.ID, 3, 0).
		WillReturnRows(jobRows(a))
	page, err = r.Jobs.List(ctx, tenant, JobFilter{State: JobStateFailed, BatchID: &batch, Kind: "scan"}, Page{Limit: 2, Cursor: page.NextCursor})
	if err != nil || len(page.Items) != 1 || page.NextCursor != "" {
		t.Fatalf("List page 2 = %+v, %v", page, err)
	}
	mock.ExpectQuery(render(DefaultSchema, sqlJobList)).
		WithArgs(tenant, "", nil, "", first, uuid.Nil, DefaultLimit+1, 10).
		WillReturnRows(sqlmock.NewRows(jobCols))
	page, err = r.Jobs.List(ctx, tenant, JobFilter{}, Page{Offset: 10})
	if err != nil || page.Items == nil || len(page.Items) != 0 {
		t.Fatalf("List empty = %+v, %v", page, err)
	}
	_, err = r.Jobs.List(ctx, tenant, JobFilter{State: "done"}, Page{})
	expectInvalid(t, err, "state")
	_, err = r.Jobs.List(ctx, tenant, JobFilter{}, Page{Limit: MaxLimit + 1})
	expectInvalid(t, err, "limit")
	_, err = r.Jobs.List(ctx, tenant, JobFilter{}, Page{Cursor: "nope"})
	expectInvalid(t, err, "cursor")
	_, err = r.Jobs.List(ctx, uuid.Nil, JobFilter{}, Page{})
	expectInvalid(t, err, "tenant")
}

// TestJobsErrorsClassified: driver errors come back classified, whatever
// the method.
func TestJobsErrorsClassified(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	ctx, tenant, domain := context.Background(), uuid.New(), uuid.New()
	mock.ExpectQuery(render(DefaultSchema, sqlJobEnqueueFresh)).
		WithArgs(tenant, `{"k"}`, `{"{}"}`, `{"0"}`, `{""}`, `{"3"}`, `{""}`, `{"`+domain.String()+`"}`, `{}`).
		WillReturnError(&pgconn.PgError{Code: "23503", ConstraintName: "jobs_domain_fkey", Message: "violates foreign key"})
	_, err := r.Jobs.Enqueue(ctx, tenant, NewJob{Kind: "k", DomainID: &domain})
	var e *sqladapter.Error
	if !errors.Is(err, sqladapter.ErrForeignKey) || !errors.As(err, &e) || e.Constraint != "jobs_domain_fkey" {
		t.Fatalf("Enqueue with a missing domain: %v, want ErrForeignKey", err)
	}
	mock.ExpectQuery(render(DefaultSchema, sqlJobClaim)).WithArgs(1, "w", int64(1000)).
		WillReturnError(&pgconn.PgError{Code: "40P01", Message: "deadlock detected"})
	if _, err := r.Jobs.Claim(ctx, nil, "w", 1, time.Second); !errors.Is(err, sqladapter.ErrDeadlock) {
		t.Fatalf("Claim: %v, want ErrDeadlock", err)
	}
	id := uuid.New()
	mock.ExpectQuery(render(DefaultSchema, sqlJobComplete)).WithArgs(id, "w", nil).
		WillReturnError(&pgconn.PgError{Code: "23514", ConstraintName: "batches_counts_check"})
	if _, err := r.Jobs.Complete(ctx, id, "w", nil); !errors.Is(err, sqladapter.ErrCheck) || errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Complete: %v, want ErrCheck", err)
	}
	mock.ExpectQuery(render(DefaultSchema, sqlJobHeartbeat)).WithArgs(id, "w", int64(1000)).
		WillReturnError(context.DeadlineExceeded)
	if _, err := r.Jobs.Heartbeat(ctx, id, "w", time.Second); !errors.Is(err, sqladapter.ErrTimeout) {
		t.Fatalf("Heartbeat: %v, want ErrTimeout", err)
	}
	mock.ExpectExec(render(DefaultSchema, sqlJobSetProgress)).WithArgs(id, "w", 0.5).
		WillReturnError(&pgconn.PgError{Code: "08006", Message: "connection failure"})
	if err := r.Jobs.SetProgress(ctx, id, "w", 0.5); !errors.Is(err, sqladapter.ErrConnection) {
		t.Fatalf("SetProgress: %v, want ErrConnection", err)
	}
	mock.ExpectQuery(render(DefaultSchema, sqlJobRescue)).WithArgs().
		WillReturnError(&pgconn.PgError{Code: "57014", Message: "canceling statement due to statement timeout"})
	if _, err := r.Jobs.RescueExpired(ctx); !errors.Is(err, sqladapter.ErrTimeout) {
		t.Fatalf("RescueExpired: %v, want ErrTimeout", err)
	}
}

// TestJobsSchema: statements name the configured schema, quoted when it
// needs quoting.
func TestJobsSchema(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t, WithSchema("Queue"))
	tenant := uuid.New()
	stmt := render("Queue", sqlJobGet)
	if !strings.Contains(stmt, `FROM "Queue".jobs`) {
		t.Fatalf("rendered: %s", stmt)
	}
	mock.ExpectQuery(stmt).WithArgs(tenant, tenant).WillReturnRows(jobRows(sampleJob(tenant)))
	if _, err := r.Jobs.Get(context.Background(), tenant, tenant); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sqlJobEnqueueFresh, "ON CONFLICT") || !strings.Contains(sqlJobEnqueue, "ON CONFLICT (id) DO NOTHING") {
		t.Errorf("the enqueue without chosen IDs must be the one with them, less ON CONFLICT:\n%s", sqlJobEnqueueFresh)
	}
	for _, s := range []string{sqlJobEnqueue, sqlJobEnqueueFresh, sqlJobClaim, sqlJobComplete, sqlJobFail, sqlJobCancel, sqlJobRescue} {
		if r := render("Queue", s); strings.Contains(r, "{schema}") || strings.Contains(r, " jobs") || strings.Contains(r, " batches") {
			t.Errorf("statement names an unqualified table: %s", r)
		}
	}
}

func TestJobsCompleteManySQL(t *testing.T) {
	t.Parallel()
	r, mock := mockRepos(t)
	ctx, tenant := context.Background(), uuid.New()
	a, b, c := runningJob(tenant, "w"), runningJob(tenant, "w"), runningJob(tenant, "w")
	batch := sampleBatch(tenant)
	batch.Succeeded, batch.Status, batch.FinishedAt = 2, BatchStatusCompleted, &jobTestTime
	for _, j := range []*Job{&a, &c} {
		j.State, j.LockedBy, j.LeaseExpiresAt, j.FinishedAt, j.BatchID = JobStateSucceeded, nil, nil, &jobTestTime, &batch.ID
	}
	rows := sqlmock.NewRows(append(append([]string{}, transitionCols...), "ord")).
		AddRow(append(jobValues(a), batchJSON(&batch), false, int64(1))...).
		AddRow(append(jobValues(c), batchJSON(&batch), true, int64(3))...)
	// b's lease was lost: no row for it.
	mock.ExpectQuery(render(DefaultSchema, sqlJobCompleteMany)).
		WithArgs("w", `{"`+a.ID.String()+`","`+b.ID.String()+`","`+c.ID.String()+`"}`, `{"{\"n\": 1}","",""}`).
		WillReturnRows(rows)
	got, err := r.Jobs.CompleteMany(ctx, "w", []Completion{{ID: a.ID, Result: json.RawMessage(` {"n": 1} `)}, {ID: b.ID}, {ID: c.ID}})
	if err != nil || len(got) != 2 || got[0].Job.ID != a.ID || got[1].Job.ID != c.ID {
		t.Fatalf("CompleteMany = %+v, %v", got, err)
	}
	if got[0].BatchFinished || !got[1].BatchFinished || got[0].Batch == nil || !sameBatch(*got[1].Batch, batch) {
		t.Fatalf("batch reported as %+v / %+v", got[0], got[1])
	}

	if got, err := r.Jobs.CompleteMany(ctx, "w", nil); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("CompleteMany of nothing = %v, %v; want an empty slice, no statement", got, err)
	}
	_, err = r.Jobs.CompleteMany(ctx, "", []Completion{{ID: a.ID}})
	expectInvalid(t, err, "worker")
	_, err = r.Jobs.CompleteMany(ctx, "w", []Completion{{ID: a.ID}, {}})
	expectInvalid(t, err, "jobs[1].id")
	_, err = r.Jobs.CompleteMany(ctx, "w", []Completion{{ID: a.ID}, {ID: b.ID}, {ID: a.ID}})
	expectInvalid(t, err, "jobs[2].id")
	_, err = r.Jobs.CompleteMany(ctx, "w", []Completion{{ID: a.ID, Result: json.RawMessage(`{`)}})
	expectInvalid(t, err, "jobs[0].result")
	_, err = r.Jobs.CompleteMany(ctx, "w", make([]Completion, MaxClaimJobs+1))
	expectInvalid(t, err, "jobs")
}

// TestJobsCompleteManyStatementShape pins what CompleteMany's correctness
// rests on.
func TestJobsCompleteManyStatementShape(t *testing.T) {
	t.Parallel()
	for _, part := range []string{
		// its jobs, locked in id order, only while running under the worker
		"j.state = 'running' AND j.locked_by = $1\n\tORDER BY j.id\n\tFOR UPDATE",
		// one tally for all of them, and the finish reported once per batch
		sqlJobTally,
		"bat.b_just_finished AND fin.ord = max(fin.ord) OVER (PARTITION BY fin.batch_id)",
		"LEFT JOIN bat ON bat.id = fin.batch_id",
	} {
		if !strings.Contains(sqlJobCompleteMany, part) {
			t.Errorf("CompleteMany statement lacks %q", part)
		}
	}
	// Batches.Cancel locks jobs in the same order.
	if !strings.Contains(sqlBatchCancel, "state IN ('queued', 'running')\n\t\tORDER BY id\n\t\tFOR UPDATE") {
		t.Error("Batches.Cancel does not lock jobs in id order")
	}
	// Only jobs of a batch are tallied.
	if !strings.Contains(sqlJobTally, "WHERE batch_id IS NOT NULL") {
		t.Error("the tally counts jobs without a batch")
	}
}
