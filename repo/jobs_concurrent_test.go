package repo_test

// Many workers finishing jobs of one batch at once, through the
// transaction pooler on both drivers: every job completes exactly once,
// the batch's counters are exact, and exactly one call reports the finish.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/internal/testdb"
	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// dbRepos migrates a fresh schema and opens the repositories over it
// through the transaction pooler with drv.
func dbRepos(t *testing.T, drv driverconf.Driver, conns int) (*repo.Repos, *sqladapter.DB, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("database test (-short)")
	}
	u := testdb.Get(t)
	ctx := context.Background()
	schema := "repo_test_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	cfg := driverconf.Config{URL: u.Tx, DirectURL: u.Direct, Driver: drv, PoolMode: driverconf.Transaction,
		MaxOpenConns: conns, MaxIdleConns: conns}
	if err := repo.Migrate(ctx, cfg, repo.WithSchema(schema)); err != nil {
		t.Fatal(err)
	}
	db, err := driverconf.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	direct, err := driverconf.Open(driverconf.Config{URL: u.Direct, PoolMode: driverconf.Direct, MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		if _, err := direct.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
		direct.Close()
	})
	// Retries after milliseconds, not seconds: the tests wait for them.
	return repo.New(db, repo.WithSchema(schema), repo.WithRetryBackoff(20*time.Millisecond, 200*time.Millisecond)), db, schema
}

func forDrivers(t *testing.T, fn func(t *testing.T, drv driverconf.Driver)) {
	for _, drv := range []driverconf.Driver{driverconf.PGX, driverconf.PQ} {
		t.Run(string(drv), func(t *testing.T) {
			t.Parallel()
			fn(t, drv)
		})
	}
}

// tracker records what the workers saw.
type tracker struct {
	mu        sync.Mutex
	completed map[uuid.UUID]int // job → completions recorded
	finished  []repo.Batch      // finishes reported
	errs      []error
}

func newTracker() *tracker { return &tracker{completed: map[uuid.UUID]int{}} }

func (tr *tracker) fail(err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.errs = append(tr.errs, err)
}

// concurrentBatch opens the repositories for 16 workers and submits a
// batch of n domains in a fresh tenant.
func concurrentBatch(t *testing.T, drv driverconf.Driver, n int) (context.Context, *repo.Repos, uuid.UUID, repo.Batch) {
	t.Helper()
	r, _, _ := dbRepos(t, drv, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	tenant := uuid.New()
	batch, err := r.Batches.Create(ctx, tenant, domains(n), repo.BatchOptions{Name: "concurrent"})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, r, tenant, batch
}

func domains(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("shop-%04d.example.com", i)
	}
	return out
}

// check verifies the end state: every job of the batch succeeded once,
// the counters match, and the finish was reported exactly once.
func (tr *tracker) check(ctx context.Context, t *testing.T, r *repo.Repos, tenant uuid.UUID, batch repo.Batch) {
	t.Helper()
	for _, err := range tr.errs {
		t.Error(err)
	}
	b, err := r.Batches.Get(ctx, tenant, batch.ID)
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != repo.BatchStatusCompleted || b.Succeeded != b.Total || b.Failed != 0 || b.FinishedAt == nil {
		t.Errorf("batch = %+v, want completed with every job succeeded", b)
	}
	if len(tr.finished) != 1 || tr.finished[0].ID != batch.ID || tr.finished[0].Status != repo.BatchStatusCompleted ||
		tr.finished[0].Succeeded != b.Total {
		t.Errorf("finish reported %d times: %+v; want once", len(tr.finished), tr.finished)
	}
	page := repo.Page{Limit: repo.MaxLimit}
	seen := 0
	for {
		jp, err := r.Jobs.List(ctx, tenant, repo.JobFilter{BatchID: &batch.ID}, page)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jp.Items {
			seen++
			if j.State != repo.JobStateSucceeded || tr.completed[j.ID] != 1 || j.LockedBy != nil || j.FinishedAt == nil {
				t.Errorf("job %s: %s, completed %d times", j.ID, j.State, tr.completed[j.ID])
			}
			if string(j.Result) != fmt.Sprintf(`{"job": %q}`, j.ID) {
				t.Errorf("job %s: result %s", j.ID, j.Result)
			}
		}
		if jp.NextCursor == "" {
			break
		}
		page.Cursor = jp.NextCursor
	}
	if seen != b.Total {
		t.Errorf("%d jobs listed, batch total %d", seen, b.Total)
	}
}

// TestJobsNextConcurrentBatch: 16 workers, each reporting its outcomes
// and claiming the next jobs with one Jobs.Next, finish one batch of 400
// jobs together through a pool of 2 server connections; one job in 8 fails
// its first attempt and is retried after the backoff (WithRetryBackoff:
// tens of milliseconds).
func TestJobsNextConcurrentBatch(t *testing.T) {
	forDrivers(t, func(t *testing.T, drv driverconf.Driver) {
		ctx, r, tenant, batch := concurrentBatch(t, drv, 400)
		// Jobs without a batch, of the same tenant, claimed alongside.
		loose := make([]repo.NewJob, 40)
		for i := range loose {
			loose[i] = repo.NewJob{Kind: "loose"}
		}
		_, err := r.Jobs.EnqueueMany(ctx, tenant, loose)
		if err != nil {
			t.Fatal(err)
		}
		tr := newTracker()
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				name := fmt.Sprintf("w%d", w)
				var outcomes []repo.Outcome
				for ctx.Err() == nil {
					n := 1 + w%7 // claim sizes 1 to 7
					res, err := r.Jobs.Next(ctx, &tenant, name, outcomes, n, time.Minute)
					if err != nil {
						tr.fail(fmt.Errorf("%s: %w", name, err))
						return
					}
					tr.mu.Lock()
					if len(res.Lost) > 0 {
						tr.errs = append(tr.errs, fmt.Errorf("%s: lost %v", name, res.Lost))
					}
					for _, o := range outcomes {
						if o.Err == "" {
							tr.completed[o.ID]++
						}
					}
					tr.finished = append(tr.finished, res.Finished...)
					done := len(tr.finished) > 0
					tr.mu.Unlock()
					outcomes = outcomes[:0]
					if len(res.Jobs) == 0 {
						if done {
							return
						}
						time.Sleep(20 * time.Millisecond) // retried jobs wait out their backoff
						continue
					}
					for _, j := range res.Jobs {
						if j.State != repo.JobStateRunning || *j.LockedBy != name || j.TenantID != tenant {
							tr.fail(fmt.Errorf("%s: claimed %+v", name, j))
						}
						o := repo.Outcome{ID: j.ID, Result: json.RawMessage(fmt.Sprintf(`{"job": %q}`, j.ID))}
						if j.Attempts == 1 && j.ID[0]%8 == 0 {
							o.Err = "flaky"
						}
						outcomes = append(outcomes, o)
					}
				}
				tr.fail(fmt.Errorf("%s: %w", name, ctx.Err()))
			})
		}
		wg.Wait()
		// The last loose jobs may still be queued when the batch finishes.
		for {
			res, err := r.Jobs.Next(ctx, &tenant, "sweeper", nil, 50, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Jobs) == 0 {
				break
			}
			var outs []repo.Outcome
			for _, j := range res.Jobs {
				if j.BatchID != nil {
					t.Fatalf("batch job %s left over", j.ID)
				}
				outs = append(outs, repo.Outcome{ID: j.ID})
			}
			if _, err := r.Jobs.Next(ctx, &tenant, "sweeper", outs, 0, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		tr.check(ctx, t, r, tenant, batch)
	})
}

// TestJobsCompleteManyConcurrentBatch: the same with Claim and
// CompleteMany, the two-statement loop.
func TestJobsCompleteManyConcurrentBatch(t *testing.T) {
	forDrivers(t, func(t *testing.T, drv driverconf.Driver) {
		ctx, r, tenant, batch := concurrentBatch(t, drv, 300)
		tr := newTracker()
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				name := fmt.Sprintf("w%d", w)
				for ctx.Err() == nil {
					jobs, err := r.Jobs.Claim(ctx, &tenant, name, 1+w%7, time.Minute)
					if err != nil {
						tr.fail(err)
						return
					}
					if len(jobs) == 0 {
						return
					}
					comps := make([]repo.Completion, len(jobs))
					for i, j := range jobs {
						comps[i] = repo.Completion{ID: j.ID, Result: json.RawMessage(fmt.Sprintf(`{"job": %q}`, j.ID))}
					}
					trs, err := r.Jobs.CompleteMany(ctx, name, comps)
					if err != nil {
						tr.fail(err)
						return
					}
					tr.mu.Lock()
					if len(trs) != len(comps) {
						tr.errs = append(tr.errs, fmt.Errorf("%s: %d of %d completed", name, len(trs), len(comps)))
					}
					for _, x := range trs {
						tr.completed[x.Job.ID]++
						if x.BatchFinished {
							tr.finished = append(tr.finished, *x.Batch)
						}
					}
					tr.mu.Unlock()
				}
			})
		}
		wg.Wait()
		tr.check(ctx, t, r, tenant, batch)
	})
}

// TestJobsNextLostAndCancelled: outcomes of jobs no longer running under
// the worker change nothing and come back as Lost; a batch finished by its
// last job's failure is reported once, as failed or with errors.
func TestJobsNextLostAndCancelled(t *testing.T) {
	forDrivers(t, func(t *testing.T, drv driverconf.Driver) {
		r, _, _ := dbRepos(t, drv, 4)
		ctx := context.Background()
		tenant := uuid.New()
		batch, err := r.Batches.Create(ctx, tenant, domains(3), repo.BatchOptions{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		res, err := r.Jobs.Next(ctx, &tenant, "w", nil, 10, time.Minute)
		if err != nil || len(res.Jobs) != 3 {
			t.Fatalf("claim: %+v, %v", res, err)
		}
		if b, _ := r.Batches.Get(ctx, tenant, batch.ID); b.Status != repo.BatchStatusRunning {
			t.Errorf("batch %s after its first claim, want running", b.Status)
		}
		a, b, c := res.Jobs[0], res.Jobs[1], res.Jobs[2]
		if _, err := r.Jobs.Cancel(ctx, tenant, a.ID); err != nil {
			t.Fatal(err)
		}
		// a was cancelled meanwhile: lost; b fails on its last attempt.
		res, err = r.Jobs.Next(ctx, &tenant, "w", []repo.Outcome{{ID: a.ID}, {ID: b.ID, Err: "boom"}}, 0, time.Minute)
		if err != nil || len(res.Lost) != 1 || res.Lost[0] != a.ID || len(res.Finished) != 0 || len(res.Jobs) != 0 {
			t.Fatalf("Next = %+v, %v; want a lost", res, err)
		}
		res, err = r.Jobs.Next(ctx, &tenant, "other", []repo.Outcome{{ID: c.ID}}, 0, time.Minute)
		if err != nil || len(res.Lost) != 1 || res.Lost[0] != c.ID {
			t.Fatalf("Next by another worker = %+v, %v; want c lost", res, err)
		}
		res, err = r.Jobs.Next(ctx, &tenant, "w", []repo.Outcome{{ID: c.ID}}, 0, time.Minute)
		if err != nil || len(res.Lost) != 0 || len(res.Finished) != 1 {
			t.Fatalf("Next = %+v, %v; want the batch finished", res, err)
		}
		got := res.Finished[0]
		if got.ID != batch.ID || got.Status != repo.BatchStatusCompletedWithErrors || got.Succeeded != 1 || got.Failed != 1 ||
			got.Cancelled != 1 || got.FinishedAt == nil {
			t.Errorf("finished batch = %+v", got)
		}
		jb, err := r.Jobs.Get(ctx, tenant, b.ID)
		if err != nil || jb.State != repo.JobStateFailed || jb.LastError == nil || *jb.LastError != "boom" || jb.FinishedAt == nil {
			t.Errorf("failed job = %+v, %v", jb, err)
		}
		if _, claimed, err := r.Batches.ClaimFinished(ctx, tenant, batch.ID, "w"); err != nil || !claimed {
			t.Errorf("ClaimFinished = %v, %v", claimed, err)
		}
	})
}

// TestJobsNextInvalid: bad input fails before anything is sent.
func TestJobsNextInvalid(t *testing.T) {
	t.Parallel()
	r := repo.New(sqladapter.Wrap(nil)).Jobs // no statement may reach it
	ctx, id := context.Background(), uuid.New()
	nilTenant := uuid.Nil
	for _, tc := range []struct {
		field string
		call  func() error
	}{
		{"tenant", func() error { _, err := r.Next(ctx, &nilTenant, "w", nil, 1, time.Second); return err }},
		{"worker", func() error { _, err := r.Next(ctx, nil, "", nil, 1, time.Second); return err }},
		{"n", func() error { _, err := r.Next(ctx, nil, "w", nil, -1, time.Second); return err }},
		{"n", func() error { _, err := r.Next(ctx, nil, "w", nil, repo.MaxClaimJobs+1, time.Second); return err }},
		{"lease", func() error { _, err := r.Next(ctx, nil, "w", nil, 1, 0); return err }},
		{"done", func() error {
			_, err := r.Next(ctx, nil, "w", make([]repo.Outcome, repo.MaxClaimJobs+1), 1, time.Second)
			return err
		}},
		{"done[0].id", func() error { _, err := r.Next(ctx, nil, "w", []repo.Outcome{{}}, 1, time.Second); return err }},
		{"done[1].id", func() error {
			_, err := r.Next(ctx, nil, "w", []repo.Outcome{{ID: id}, {ID: id}}, 1, time.Second)
			return err
		}},
		{"done[0].result", func() error {
			_, err := r.Next(ctx, nil, "w", []repo.Outcome{{ID: id, Result: json.RawMessage(`{`)}}, 1, time.Second)
			return err
		}},
	} {
		var ve *repo.ValidationError
		if err := tc.call(); !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%s: err = %v, want a ValidationError for it", tc.field, err)
		}
	}
	if res, err := r.Next(ctx, nil, "w", nil, 0, time.Second); err != nil || res.Jobs == nil || len(res.Jobs)+len(res.Lost)+len(res.Finished) != 0 {
		t.Errorf("Next of nothing = %+v, %v; want empty, no statement", res, err)
	}
}

// TestJobsNextRetryBackoff: a failed attempt with attempts left is queued
// again after the backoff WithRetryBackoff sets: base·2^(a−1), scaled into
// [0.5, 1).
func TestJobsNextRetryBackoff(t *testing.T) {
	forDrivers(t, func(t *testing.T, drv driverconf.Driver) {
		_, db, schema := dbRepos(t, drv, 2)
		r := repo.New(db, repo.WithSchema(schema), repo.WithRetryBackoff(400*time.Millisecond, time.Minute))
		ctx, tenant := context.Background(), uuid.New()
		if _, err := r.Jobs.Enqueue(ctx, tenant, repo.NewJob{Kind: "retry"}); err != nil {
			t.Fatal(err)
		}
		res, err := r.Jobs.Next(ctx, &tenant, "w", nil, 1, time.Minute)
		if err != nil || len(res.Jobs) != 1 {
			t.Fatalf("claim: %+v, %v", res, err)
		}
		id := res.Jobs[0].ID
		if res, err = r.Jobs.Next(ctx, &tenant, "w", []repo.Outcome{{ID: id, Err: "try again"}}, 1, time.Minute); err != nil || len(res.Jobs) != 0 {
			t.Fatalf("fail: %+v, %v; want nothing claimable", res, err)
		}
		j, err := r.Jobs.Get(ctx, tenant, id)
		if err != nil {
			t.Fatal(err)
		}
		// run_at and updated_at were set by the same statement.
		if d := j.RunAt.Sub(j.UpdatedAt); j.State != repo.JobStateQueued || d < 200*time.Millisecond || d > 400*time.Millisecond ||
			j.LastError == nil || *j.LastError != "try again" || j.Attempts != 1 || j.FinishedAt != nil {
			t.Fatalf("after a failed first attempt: %+v (retry in %v), want queued again in 200–400ms", j, d)
		}
	})
}
