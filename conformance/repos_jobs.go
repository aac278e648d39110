package conformance

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// jobTests: enqueue and list, validation that writes nothing, the claim
// order and claim races, leases lost and rescued, retries with backoff,
// cancellation, progress and results.
func jobTests(t *testing.T, r *run) {
	r.test(t, "Jobs/EnqueueGetList", func(t *testing.T) {
		e := r.repoEnv(t)
		jobs := e.repos.Jobs
		before := e.dbNow(t)
		one, err := jobs.Enqueue(e.ctx, e.tenant, repo.NewJob{Kind: "scan"})
		if err != nil {
			t.Fatal(err)
		}
		if one.State != repo.JobStateQueued || one.MaxAttempts != repo.DefaultJobMaxAttempts || string(one.Payload) != "{}" ||
			one.Attempts != 0 || one.TenantID != e.tenant || one.BatchID != nil || one.LockedBy != nil || one.RunAt.Before(before) {
			t.Fatalf("Enqueue defaults: %+v", one)
		}
		runAt := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.FixedZone("x", 3600))
		many := e.enqueue(t,
			repo.NewJob{Kind: "a", Payload: json.RawMessage(`{"n": 1}`), Priority: -3, MaxAttempts: 7},
			repo.NewJob{Kind: "b", RunAt: runAt},
			repo.NewJob{Kind: "a", Payload: json.RawMessage(`{"quote": "x\"y\\z"}`)},
			repo.NewJob{Kind: "c,d {e}"},
		)
		if len(many) != 4 {
			t.Fatalf("EnqueueMany returned %d jobs", len(many))
		}
		for i, kind := range []string{"a", "b", "a", "c,d {e}"} {
			if many[i].Kind != kind {
				t.Fatalf("job %d has kind %q, want %q (input order)", i, many[i].Kind, kind)
			}
		}
		if many[0].Priority != -3 || many[0].MaxAttempts != 7 || string(many[0].Payload) != `{"n": 1}` {
			t.Fatalf("job 0: %+v", many[0])
		}
		if !many[1].RunAt.Equal(runAt) {
			t.Fatalf("run_at = %v, want %v", many[1].RunAt, runAt)
		}
		var p map[string]string
		if err := json.Unmarshal(many[2].Payload, &p); err != nil || p["quote"] != `x"y\z` {
			t.Fatalf("payload %s: %v", many[2].Payload, err)
		}
		if got := e.job(t, many[3].ID); got.Kind != "c,d {e}" || !got.CreatedAt.Equal(many[3].CreatedAt) {
			t.Fatalf("Get = %+v", got)
		}
		if _, err := jobs.Get(e.ctx, uuid.New(), many[0].ID); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("Get from another tenant: %v, want ErrNotFound", err)
		}

		// Keyset pages of 2 over 5 jobs, in creation order.
		var listed []uuid.UUID
		page := repo.Page{Limit: 2}
		for {
			got, err := jobs.List(e.ctx, e.tenant, repo.JobFilter{}, page)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range got.Items {
				listed = append(listed, j.ID)
			}
			if got.NextCursor == "" {
				break
			}
			page.Cursor = got.NextCursor
		}
		if len(listed) != 5 {
			t.Fatalf("listed %d jobs, want 5", len(listed))
		}
		seen := map[uuid.UUID]bool{}
		for _, id := range listed {
			if seen[id] {
				t.Fatalf("job %s listed twice", id)
			}
			seen[id] = true
		}
		got, err := jobs.List(e.ctx, e.tenant, repo.JobFilter{Kind: "a", State: repo.JobStateQueued}, repo.Page{})
		if err != nil || len(got.Items) != 2 {
			t.Fatalf("List kind a: %d items, %v", len(got.Items), err)
		}
		got, err = jobs.List(e.ctx, e.tenant, repo.JobFilter{Kind: "a"}, repo.Page{Offset: 1})
		if err != nil || len(got.Items) != 1 {
			t.Fatalf("List kind a offset 1: %d items, %v", len(got.Items), err)
		}
		got, err = jobs.List(e.ctx, e.tenant, repo.JobFilter{State: repo.JobStateRunning}, repo.Page{})
		if err != nil || len(got.Items) != 0 {
			t.Fatalf("List running: %d items, %v", len(got.Items), err)
		}
	})
	r.test(t, "Jobs/EnqueueInvalidWritesNothing", func(t *testing.T) {
		e := r.repoEnv(t)
		jobs := e.repos.Jobs
		cases := []struct {
			field string
			jobs  []repo.NewJob
		}{
			{"jobs[1].kind", []repo.NewJob{{Kind: "ok"}, {Kind: ""}}},
			{"jobs[0].payload", []repo.NewJob{{Kind: "ok", Payload: json.RawMessage(`{"a":`)}}},
			{"jobs[0].payload", []repo.NewJob{{Kind: "ok", Payload: json.RawMessage(`[1]`)}}},
			{"jobs[0].priority", []repo.NewJob{{Kind: "ok", Priority: math.MaxInt32 + 1}}},
			{"jobs[0].max_attempts", []repo.NewJob{{Kind: "ok", MaxAttempts: -1}}},
			{"jobs[0].batch_id", []repo.NewJob{{Kind: "ok", BatchID: &uuid.Nil}}},
		}
		for _, c := range cases {
			_, err := jobs.EnqueueMany(e.ctx, e.tenant, c.jobs)
			var ve *repo.ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field || !errors.Is(err, sqladapter.ErrInvalidInput) {
				t.Errorf("%s: err = %v", c.field, err)
			}
		}
		if _, err := jobs.Enqueue(e.ctx, uuid.Nil, repo.NewJob{Kind: "ok"}); !errors.Is(err, sqladapter.ErrInvalidInput) {
			t.Errorf("nil tenant: %v", err)
		}
		// A domain of no tenant: the foreign key refuses, nothing is written.
		missing := uuid.New()
		_, err := jobs.EnqueueMany(e.ctx, e.tenant, []repo.NewJob{{Kind: "ok"}, {Kind: "ok", DomainID: &missing}})
		if !errors.Is(err, sqladapter.ErrForeignKey) {
			t.Errorf("missing domain: %v, want ErrForeignKey", err)
		}
		// A missing batch, or another tenant's: not found, nothing written.
		_, err = jobs.EnqueueMany(e.ctx, e.tenant, []repo.NewJob{{Kind: "ok"}, {Kind: "ok", BatchID: &missing}})
		if !errors.Is(err, sqladapter.ErrNotFound) {
			t.Errorf("missing batch: %v, want ErrNotFound", err)
		}
		theirs, err := e.repos.Batches.Create(e.ctx, uuid.New(), []string{"theirs.example.com"}, repo.BatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = jobs.Enqueue(e.ctx, e.tenant, repo.NewJob{Kind: "ok", BatchID: &theirs.ID})
		if k := sqladapter.KindOf(err); !errors.Is(err, sqladapter.ErrNotFound) || k != sqladapter.KindNotFound && k != sqladapter.KindUnknown {
			t.Errorf("another tenant's batch: %v (kind %v), want ErrNotFound", err, k)
		}
		var total int
		if err := e.db.GetContext(e.ctx, &total, "SELECT total FROM "+e.schema+".batches WHERE id = $1", theirs.ID); err != nil || total != 1 {
			t.Errorf("their batch's total = %d, %v; want 1", total, err)
		}
		if n := e.count(t, "jobs"); n != 0 {
			t.Fatalf("%d jobs written, want 0", n)
		}
	})
	// Jobs/EnqueueRepeated: jobs with chosen IDs can be enqueued again —
	// after the first call committed, and while it is still in flight in
	// a transaction (the repeat waits for it) — and each is written once;
	// the batch they join grows once. A repeat that finds only part of
	// its jobs, or IDs of another tenant, writes nothing.
	r.test(t, "Jobs/EnqueueRepeated", func(t *testing.T) {
		e := r.repoEnv(t)
		batch := e.createBatch(t, []string{"a.example.com"}, repo.BatchOptions{})
		newJobs := func() []repo.NewJob {
			return []repo.NewJob{
				{Kind: "scan", ID: uuid.New()},
				{Kind: "crawl", BatchID: &batch.ID, ID: uuid.New()},
			}
		}
		enqueue := func(q sqladapter.Querier, jobs []repo.NewJob) ([]repo.Job, error) {
			return repo.New(q, repo.WithSchema(e.schema)).Jobs.EnqueueMany(e.ctx, e.tenant, jobs)
		}
		check := func(got []repo.Job, err error, want []repo.NewJob) {
			t.Helper()
			if err != nil || len(got) != len(want) {
				t.Fatalf("EnqueueMany = %d jobs, %v; want %d", len(got), err, len(want))
			}
			for i := range want {
				if got[i].ID != want[i].ID || got[i].Kind != want[i].Kind {
					t.Fatalf("job %d = %+v, want id %v kind %s", i, got[i], want[i].ID, want[i].Kind)
				}
			}
		}
		expect := func(jobs, total int) {
			t.Helper()
			if n := e.count(t, "jobs"); n != jobs {
				t.Fatalf("%d jobs, want %d", n, jobs)
			}
			if b := e.batch(t, batch.ID); b.Total != total {
				t.Fatalf("batch total %d, want %d", b.Total, total)
			}
		}
		first := newJobs()
		got, err := enqueue(e.db, first)
		check(got, err, first)
		got, err = enqueue(e.db, first)
		check(got, err, first)
		one, err := e.repos.Jobs.Enqueue(e.ctx, e.tenant, first[1])
		if err != nil || one.ID != first[1].ID {
			t.Fatalf("Enqueue repeated = %+v, %v", one, err)
		}
		expect(3, 2)

		for i, commit := range []bool{true, false} {
			jobs := newJobs()
			err := e.whileInFlight(t, commit, func(tx *sqladapter.Tx) error {
				_, err := enqueue(tx, jobs)
				return err
			}, func() (err error) {
				got, err = enqueue(e.db, jobs)
				return err
			})
			check(got, err, jobs)
			expect(5+2*i, 3+i)
		}

		// Part of the jobs stored, or another tenant's ID: nothing written.
		mixed := []repo.NewJob{first[0], {Kind: "scan", ID: uuid.New()}}
		if _, err := enqueue(e.db, mixed); !errors.Is(err, sqladapter.ErrConflict) || !strings.Contains(err.Error(), "jobs[1].id") {
			t.Errorf("EnqueueMany with one stored job of two: err = %v, want ErrConflict naming jobs[1].id", err)
		}
		if _, err := e.repos.Jobs.Enqueue(e.ctx, uuid.New(), first[0]); !errors.Is(err, sqladapter.ErrConflict) ||
			!strings.Contains(err.Error(), "another tenant") {
			t.Errorf("Enqueue with another tenant's id: err = %v, want ErrConflict", err)
		}
		expect(7, 4)
	})
	r.test(t, "Jobs/ClaimOrder", func(t *testing.T) {
		e := r.repoEnv(t)
		now := e.dbNow(t)
		ago := func(m int) time.Time { return now.Add(-time.Duration(m) * time.Minute) }
		js := e.enqueue(t,
			repo.NewJob{Kind: "A", Priority: 0, RunAt: ago(3)},
			repo.NewJob{Kind: "B", Priority: 5, RunAt: ago(1)},
			repo.NewJob{Kind: "C", Priority: 5, RunAt: ago(2)},
			repo.NewJob{Kind: "D", Priority: 10, RunAt: now.Add(time.Hour)}, // not yet
			repo.NewJob{Kind: "E", Priority: 0, RunAt: ago(4)},
		)
		// Another tenant's job, runnable and urgent.
		other := uuid.New()
		if _, err := e.repos.Jobs.Enqueue(e.ctx, other, repo.NewJob{Kind: "X", Priority: 100}); err != nil {
			t.Fatal(err)
		}

		first := e.claim(t, "w1", 1, time.Minute)
		if len(first) != 1 || first[0].Kind != "C" {
			t.Fatalf("first claim = %v, want C", kinds(first))
		}
		rest := e.claim(t, "w2", 10, time.Minute)
		if got := strings.Join(kinds(rest), ""); got != "BEA" {
			t.Fatalf("claim order = %s, want BEA (priority, then run_at; D not due, X another tenant's)", got)
		}
		if more := e.claim(t, "w3", 10, time.Minute); len(more) != 0 {
			t.Fatalf("third claim got %v", kinds(more))
		}
		c := first[0]
		if c.State != repo.JobStateRunning || c.LockedBy == nil || *c.LockedBy != "w1" || c.Attempts != 1 ||
			c.LeaseExpiresAt == nil || c.LeaseExpiresAt.Sub(e.dbNow(t)) < 50*time.Second {
			t.Fatalf("claimed job: %+v", c)
		}
		if d := e.job(t, js[3].ID); d.State != repo.JobStateQueued {
			t.Fatalf("future job is %s", d.State)
		}

		// A nil tenant claims across tenants.
		all, err := e.repos.Jobs.Claim(e.ctx, nil, "w4", 10, time.Minute)
		if err != nil || len(all) != 1 || all[0].Kind != "X" || all[0].TenantID != other {
			t.Fatalf("claim any tenant = %v, %v", kinds(all), err)
		}
		// Once due, D is claimed.
		e.exec(t, "UPDATE {s}.jobs SET run_at = now() - interval '1 second' WHERE id = $1", js[3].ID)
		if d := e.claim(t, "w5", 10, time.Minute); len(d) != 1 || d[0].Kind != "D" {
			t.Fatalf("claim after due = %v", kinds(d))
		}
	})
	// Jobs/ConcurrentClaim: 8 claimers drain 500 jobs through the URL
	// under test; every job is claimed exactly once.
	r.test(t, "Jobs/ConcurrentClaim", func(t *testing.T) {
		e := r.repoEnv(t)
		const total, workers = 500, 8
		in := make([]repo.NewJob, total)
		for i := range in {
			in[i] = repo.NewJob{Kind: "scan", Priority: i % 7}
		}
		e.enqueue(t, in...)
		var (
			mu     sync.Mutex
			owner  = map[uuid.UUID]string{}
			errs   []error
			wg     sync.WaitGroup
			claims = make([]int, workers)
		)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("worker-%d", w)
				for {
					jobs, err := e.repos.Jobs.Claim(e.ctx, &e.tenant, name, 7, time.Minute)
					if err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
						return
					}
					if len(jobs) == 0 {
						return
					}
					mu.Lock()
					for _, j := range jobs {
						if prev, ok := owner[j.ID]; ok {
							errs = append(errs, fmt.Errorf("job %s claimed by %s and %s", j.ID, prev, name))
						}
						owner[j.ID] = name
						if j.LockedBy == nil || *j.LockedBy != name || j.Attempts != 1 {
							errs = append(errs, fmt.Errorf("job %s claimed as %+v", j.ID, j))
						}
					}
					claims[w] += len(jobs)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			t.Error(err)
		}
		if len(owner) != total {
			t.Fatalf("%d distinct jobs claimed, want %d", len(owner), total)
		}
		var queued int
		if err := e.db.GetContext(e.ctx, &queued, "SELECT count(*) FROM "+e.schema+".jobs WHERE state <> 'running'"); err != nil || queued != 0 {
			t.Fatalf("%d jobs not running (%v)", queued, err)
		}
		t.Logf("claims per worker: %v", claims)
	})
	r.test(t, "Jobs/LeaseLostAndRescue", func(t *testing.T) {
		e := r.repoEnv(t)
		jobs := e.repos.Jobs
		js := e.enqueue(t, repo.NewJob{Kind: "retry"}, repo.NewJob{Kind: "last", MaxAttempts: 1})
		claimed := e.claim(t, "old", 2, time.Minute)
		if len(claimed) != 2 {
			t.Fatalf("claimed %d", len(claimed))
		}
		// Before expiry, nothing is rescued.
		if res, err := jobs.RescueExpired(e.ctx); err != nil || len(res.Requeued)+len(res.Failed) != 0 {
			t.Fatalf("early rescue = %+v, %v", res, err)
		}
		// The worker stops renewing: its lease runs out (Batches/Lifecycle
		// waits for a real one).
		e.exec(t, "UPDATE {s}.jobs SET lease_expires_at = now() - interval '1 millisecond' WHERE state = 'running'")
		res, err := jobs.RescueExpired(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Requeued) != 1 || res.Requeued[0] != js[0].ID || len(res.Failed) != 1 || res.Failed[0] != js[1].ID ||
			len(res.FinishedBatches) != 0 {
			t.Fatalf("rescue = %+v", res)
		}
		requeued := e.job(t, js[0].ID)
		if requeued.State != repo.JobStateQueued || requeued.LockedBy != nil || requeued.Attempts != 1 ||
			requeued.LastError == nil || !strings.Contains(*requeued.LastError, "old") {
			t.Fatalf("requeued job: %+v", requeued)
		}
		failed := e.job(t, js[1].ID)
		if failed.State != repo.JobStateFailed || failed.FinishedAt == nil {
			t.Fatalf("job out of attempts: %+v", failed)
		}
		// The old worker has lost both.
		for _, id := range []uuid.UUID{js[0].ID, js[1].ID} {
			if _, err := jobs.Complete(e.ctx, id, "old", nil); !errors.Is(err, repo.ErrLeaseLost) {
				t.Fatalf("Complete after rescue: %v, want ErrLeaseLost", err)
			}
			if _, err := jobs.Fail(e.ctx, id, "old", "x"); !errors.Is(err, repo.ErrLeaseLost) {
				t.Fatalf("Fail after rescue: %v, want ErrLeaseLost", err)
			}
			if _, err := jobs.Heartbeat(e.ctx, id, "old", time.Minute); !errors.Is(err, repo.ErrLeaseLost) {
				t.Fatalf("Heartbeat after rescue: %v, want ErrLeaseLost", err)
			}
			if err := jobs.SetProgress(e.ctx, id, "old", 0.5); !errors.Is(err, repo.ErrLeaseLost) {
				t.Fatalf("SetProgress after rescue: %v, want ErrLeaseLost", err)
			}
		}
		// A new worker takes the job; heartbeats are for the owner only.
		again := e.claim(t, "new", 5, time.Minute)
		if len(again) != 1 || again[0].ID != js[0].ID || again[0].Attempts != 2 {
			t.Fatalf("reclaim = %+v", again)
		}
		if _, err := jobs.Heartbeat(e.ctx, js[0].ID, "old", time.Hour); !errors.Is(err, repo.ErrLeaseLost) {
			t.Fatalf("Heartbeat by non-owner: %v, want ErrLeaseLost", err)
		}
		until, err := jobs.Heartbeat(e.ctx, js[0].ID, "new", time.Hour)
		if err != nil || until.Sub(e.dbNow(t)) < 50*time.Minute {
			t.Fatalf("Heartbeat by owner = %v, %v", until, err)
		}
		if got := e.job(t, js[0].ID); got.LeaseExpiresAt == nil || !got.LeaseExpiresAt.Equal(until) {
			t.Fatalf("lease = %v, want %v", got.LeaseExpiresAt, until)
		}
		if _, err := jobs.Complete(e.ctx, js[0].ID, "old", nil); !errors.Is(err, repo.ErrLeaseLost) {
			t.Fatalf("Complete by non-owner: %v", err)
		}
		tr, err := jobs.Complete(e.ctx, js[0].ID, "new", json.RawMessage(`{"ok": true}`))
		if err != nil || tr.Job.State != repo.JobStateSucceeded || tr.Job.FinishedAt == nil || tr.Batch != nil || tr.BatchFinished {
			t.Fatalf("Complete by owner = %+v, %v", tr, err)
		}
		// A rescue of nothing is empty, not an error.
		if res, err := jobs.RescueExpired(e.ctx); err != nil || len(res.Requeued)+len(res.Failed)+len(res.FinishedBatches) != 0 {
			t.Fatalf("idle rescue = %+v, %v", res, err)
		}
	})
	r.test(t, "Jobs/FailBackoff", func(t *testing.T) {
		e := r.repoEnv(t)
		jobs := e.repos.Jobs
		job := e.enqueue(t, repo.NewJob{Kind: "flaky", MaxAttempts: 3})[0]
		for attempt := 1; attempt <= 3; attempt++ {
			e.exec(t, "UPDATE {s}.jobs SET run_at = now() WHERE id = $1", job.ID) // skip the backoff
			c := e.claim(t, "w", 1, time.Minute)
			if len(c) != 1 || c[0].Attempts != attempt {
				t.Fatalf("attempt %d: claimed %+v", attempt, c)
			}
			if err := jobs.SetProgress(e.ctx, job.ID, "w", 0.25); err != nil {
				t.Fatal(err)
			}
			msg := fmt.Sprintf("boom %d \x00\xff", attempt)
			before := e.dbNow(t)
			tr, err := jobs.Fail(e.ctx, job.ID, "w", msg)
			if err != nil {
				t.Fatalf("attempt %d: Fail: %v", attempt, err)
			}
			j := tr.Job
			if j.LastError == nil || *j.LastError != fmt.Sprintf("boom %d \uFFFD\uFFFD", attempt) || j.LockedBy != nil {
				t.Fatalf("attempt %d: %+v", attempt, j)
			}
			if attempt < 3 {
				// Backoff: RetryBackoffBase·2^(a−1), jittered into [½, 1) of it.
				full := repo.RetryBackoffBase << (attempt - 1)
				delay := j.RunAt.Sub(before)
				if j.State != repo.JobStateQueued || j.FinishedAt != nil || j.Progress != 0 ||
					delay < full/2-time.Second || delay > full+time.Second {
					t.Fatalf("attempt %d: requeued as %+v (delay %v, want %v..%v)", attempt, j, delay, full/2, full)
				}
				if c := e.claim(t, "w", 1, time.Minute); len(c) != 0 {
					t.Fatalf("attempt %d: claimed during backoff", attempt)
				}
			} else if j.State != repo.JobStateFailed || j.FinishedAt == nil || j.Progress != 0.25 || tr.Batch != nil {
				t.Fatalf("last attempt: %+v", j)
			}
		}
		if _, err := jobs.Fail(e.ctx, job.ID, "w", "again"); !errors.Is(err, repo.ErrLeaseLost) {
			t.Fatalf("Fail of a failed job: %v, want ErrLeaseLost", err)
		}
	})
	r.test(t, "Jobs/Cancel", func(t *testing.T) {
		e := r.repoEnv(t)
		jobs := e.repos.Jobs
		js := e.enqueue(t, repo.NewJob{Kind: "q"}, repo.NewJob{Kind: "r", Priority: 9}, repo.NewJob{Kind: "s", Priority: 8})
		// Queued.
		tr, err := jobs.Cancel(e.ctx, e.tenant, js[0].ID)
		if err != nil || tr.Job.State != repo.JobStateCancelled || tr.Job.FinishedAt == nil {
			t.Fatalf("Cancel queued = %+v, %v", tr, err)
		}
		// Again: unchanged, no error.
		if tr, err := jobs.Cancel(e.ctx, e.tenant, js[0].ID); err != nil || tr.Job.State != repo.JobStateCancelled {
			t.Fatalf("Cancel again = %+v, %v", tr, err)
		}
		// Running: the worker loses it.
		c := e.claim(t, "w", 2, time.Minute)
		if len(c) != 2 || c[0].ID != js[1].ID {
			t.Fatalf("claim = %v", kinds(c))
		}
		if tr, err := jobs.Cancel(e.ctx, e.tenant, js[1].ID); err != nil || tr.Job.State != repo.JobStateCancelled || tr.Job.LockedBy != nil {
			t.Fatalf("Cancel running = %+v, %v", tr, err)
		}
		if _, err := jobs.Complete(e.ctx, js[1].ID, "w", nil); !errors.Is(err, repo.ErrLeaseLost) {
			t.Fatalf("Complete of cancelled job: %v, want ErrLeaseLost", err)
		}
		// Succeeded: conflict.
		if _, err := jobs.Complete(e.ctx, js[2].ID, "w", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := jobs.Cancel(e.ctx, e.tenant, js[2].ID); !errors.Is(err, sqladapter.ErrConflict) {
			t.Fatalf("Cancel succeeded job: %v, want ErrConflict", err)
		}
		if _, err := jobs.Cancel(e.ctx, e.tenant, uuid.New()); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("Cancel missing job: %v, want ErrNotFound", err)
		}
		if _, err := jobs.Cancel(e.ctx, uuid.New(), js[2].ID); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("Cancel another tenant's job: %v, want ErrNotFound", err)
		}
	})
	r.test(t, "Jobs/ProgressAndResult", func(t *testing.T) {
		e := r.repoEnv(t)
		jobs := e.repos.Jobs
		job := e.enqueue(t, repo.NewJob{Kind: "p"})[0]
		if err := jobs.SetProgress(e.ctx, job.ID, "w", 0.5); !errors.Is(err, repo.ErrLeaseLost) {
			t.Fatalf("SetProgress of a queued job: %v, want ErrLeaseLost", err)
		}
		e.claim(t, "w", 1, time.Minute)
		for _, p := range []float64{-0.01, 1.01, math.NaN(), math.Inf(1)} {
			if err := jobs.SetProgress(e.ctx, job.ID, "w", p); !errors.Is(err, sqladapter.ErrInvalidInput) {
				t.Fatalf("SetProgress(%v): %v, want invalid input", p, err)
			}
		}
		for _, p := range []float64{0, 1, 0.375} {
			if err := jobs.SetProgress(e.ctx, job.ID, "w", p); err != nil {
				t.Fatalf("SetProgress(%v): %v", p, err)
			}
		}
		if got := e.job(t, job.ID); got.Progress != 0.375 {
			t.Fatalf("progress = %v", got.Progress)
		}
		if err := jobs.SetProgress(e.ctx, job.ID, "intruder", 0.9); !errors.Is(err, repo.ErrLeaseLost) {
			t.Fatalf("SetProgress by non-owner: %v", err)
		}
		if err := jobs.SetResult(e.ctx, job.ID, "w", json.RawMessage(`{"pages": 3}`)); err != nil {
			t.Fatal(err)
		}
		if err := jobs.SetResult(e.ctx, job.ID, "w", json.RawMessage(`{"pages":`)); !errors.Is(err, sqladapter.ErrInvalidInput) {
			t.Fatalf("SetResult of bad JSON: %v", err)
		}
		if err := jobs.SetResult(e.ctx, job.ID, "intruder", json.RawMessage(`{}`)); !errors.Is(err, repo.ErrLeaseLost) {
			t.Fatalf("SetResult by non-owner: %v", err)
		}
		// An empty result keeps the stored one.
		tr, err := jobs.Complete(e.ctx, job.ID, "w", nil)
		if err != nil || tr.Job.Progress != 1 || string(tr.Job.Result) != `{"pages": 3}` {
			t.Fatalf("Complete = %+v, %v", tr.Job, err)
		}
		if err := jobs.SetProgress(e.ctx, job.ID, "w", 0.5); !errors.Is(err, repo.ErrLeaseLost) {
			t.Fatalf("SetProgress after Complete: %v", err)
		}
	})
}

func (e *repoEnv) enqueue(t *testing.T, jobs ...repo.NewJob) []repo.Job {
	t.Helper()
	out, err := e.repos.Jobs.EnqueueMany(e.ctx, e.tenant, jobs)
	if err != nil {
		t.Fatalf("EnqueueMany: %v", err)
	}
	return out
}

func (e *repoEnv) job(t *testing.T, id uuid.UUID) repo.Job {
	t.Helper()
	j, err := e.repos.Jobs.Get(e.ctx, e.tenant, id)
	if err != nil {
		t.Fatalf("Get job: %v", err)
	}
	return j
}

func (e *repoEnv) claim(t *testing.T, worker string, n int, lease time.Duration) []repo.Job {
	t.Helper()
	jobs, err := e.repos.Jobs.Claim(e.ctx, &e.tenant, worker, n, lease)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return jobs
}

func kinds(jobs []repo.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.Kind
	}
	return out
}
