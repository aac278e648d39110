package conformance

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// batchTests: batches of domain jobs created in one statement, their
// lifecycle and counters, concurrent completion (on one driver and on
// both at once), reconciliation and cancellation.
func batchTests(t *testing.T, r *run) {
	// Batches/CreateLarge creates a batch of 2,000 domains (500 off a
	// transaction pooler, see run.size), plus other forms of some of them,
	// in one statement, and a second batch that reuses half of them.
	r.test(t, "Batches/CreateLarge", func(t *testing.T) {
		e := r.repoEnv(t)
		total := r.size(2000, 500)
		names := domainNames(total, "site-%d.example.com")
		input := append(names, "HTTPS://www.Site-1.example.com/path", "site-2.example.com.", "site-3.EXAMPLE.com:8080")
		before := e.db.Stats().Queries
		batch := e.createBatch(t, input, repo.BatchOptions{
			Name: "big", Kind: "crawl", Priority: 4, MaxAttempts: 2, Payload: json.RawMessage(`{"depth": 2}`),
		})
		if n := e.db.Stats().Queries - before; n != 1 {
			t.Fatalf("Create sent %d statements, want 1", n)
		}
		if batch.Total != total || batch.Status != repo.BatchStatusPending || batch.Name != "big" || batch.Done() != 0 ||
			batch.Progress() != 0 || batch.Finished() || batch.TenantID != e.tenant {
			t.Fatalf("batch = %+v", batch)
		}
		if got := e.count(t, "domains"); got != total {
			t.Fatalf("%d domains, want %d", got, total)
		}
		if got := e.count(t, "jobs"); got != total {
			t.Fatalf("%d jobs, want %d", got, total)
		}
		// Every job names its domain, in the payload and by id.
		var bad int
		err := e.db.GetContext(e.ctx, &bad, `SELECT count(*) FROM `+e.schema+`.jobs j JOIN `+e.schema+`.domains d ON d.id = j.domain_id
			WHERE j.batch_id = $1 AND (j.payload <> jsonb_build_object('depth', 2, 'domain', d.domain)
				OR j.kind <> 'crawl' OR j.priority <> 4 OR j.max_attempts <> 2 OR j.state <> 'queued')`, batch.ID)
		if err != nil || bad != 0 {
			t.Fatalf("%d jobs not as asked (%v)", bad, err)
		}
		if got := e.batch(t, batch.ID); got.Total != total || !got.CreatedAt.Equal(batch.CreatedAt) {
			t.Fatalf("Get = %+v", got)
		}
		// A second batch over half of the same domains reuses their rows.
		second := e.createBatch(t, append(names[:total/2], "new.example.org"), repo.BatchOptions{})
		if second.Total != total/2+1 {
			t.Fatalf("second total = %d", second.Total)
		}
		if got := e.count(t, "domains"); got != total+1 {
			t.Fatalf("%d domains after second batch, want %d", got, total+1)
		}
		var kind string
		if err := e.db.GetContext(e.ctx, &kind, "SELECT DISTINCT kind FROM "+e.schema+".jobs WHERE batch_id = $1", second.ID); err != nil || kind != repo.DefaultBatchJobKind {
			t.Fatalf("default kind = %q, %v", kind, err)
		}
		// List, newest last; filtered by status.
		page, err := e.repos.Batches.List(e.ctx, e.tenant, repo.BatchFilter{}, repo.Page{Limit: 1})
		if err != nil || len(page.Items) != 1 || page.Items[0].ID != batch.ID || page.NextCursor == "" {
			t.Fatalf("List page 1 = %+v, %v", page, err)
		}
		page, err = e.repos.Batches.List(e.ctx, e.tenant, repo.BatchFilter{}, repo.Page{Limit: 1, Cursor: page.NextCursor})
		if err != nil || len(page.Items) != 1 || page.Items[0].ID != second.ID {
			t.Fatalf("List page 2 = %+v, %v", page, err)
		}
		page, err = e.repos.Batches.List(e.ctx, e.tenant, repo.BatchFilter{Status: repo.BatchStatusRunning}, repo.Page{})
		if err != nil || len(page.Items) != 0 {
			t.Fatalf("List running = %+v, %v", page, err)
		}
	})
	r.test(t, "Batches/CreateInvalidWritesNothing", func(t *testing.T) {
		e := r.repoEnv(t)
		batches := e.repos.Batches
		cases := []struct {
			field   string
			domains []string
			opts    repo.BatchOptions
		}{
			{"domains[2]", []string{"a.example.com", "b.example.com", "bad..example.com", "c.example.com"}, repo.BatchOptions{}},
			{"domains[1]", []string{"a.example.com", "127.0.0.1"}, repo.BatchOptions{}},
			{"domains", nil, repo.BatchOptions{}},
			{"payload", []string{"a.example.com"}, repo.BatchOptions{Payload: json.RawMessage(`"x"`)}},
			{"max_attempts", []string{"a.example.com"}, repo.BatchOptions{MaxAttempts: -2}},
		}
		for _, c := range cases {
			_, err := batches.Create(e.ctx, e.tenant, c.domains, c.opts)
			var ve *repo.ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field || !errors.Is(err, sqladapter.ErrInvalidInput) {
				t.Errorf("%s: err = %v", c.field, err)
			}
		}
		for _, table := range []string{"domains", "batches", "jobs"} {
			if n := e.count(t, table); n != 0 {
				t.Errorf("%d rows in %s, want 0", n, table)
			}
		}
	})
	// Batches/CreateRepeated: a Create with a chosen ID can be repeated —
	// after it committed, and while it is still in flight (a transaction
	// holds the batch uncommitted: the state of a statement that goes on
	// running on the server after its connection broke) — and writes one
	// batch; the repeat returns the stored one. A rolled-back first
	// attempt leaves the repeat to write it; an ID reused for another
	// batch or taken in another tenant is a conflict that writes nothing.
	r.test(t, "Batches/CreateRepeated", func(t *testing.T) {
		e := r.repoEnv(t)
		domains := []string{"a.example.com", "b.example.com", "c.example.com"}
		opts := repo.BatchOptions{Name: "again", ID: uuid.New()}
		first := e.createBatch(t, domains, opts)
		if first.ID != opts.ID {
			t.Fatalf("batch id = %v, want the chosen %v", first.ID, opts.ID)
		}
		again := e.createBatch(t, append([]string{"C.example.com"}, domains[:2]...), opts)
		if !again.CreatedAt.Equal(first.CreatedAt) || again.ID != first.ID || again.Total != 3 {
			t.Fatalf("repeat = %+v, want %+v", again, first)
		}
		e.expectRows(t, 1, 3, 3)

		// In flight: the repeat waits for the first attempt's transaction.
		inflight := repo.BatchOptions{Name: "in flight", ID: uuid.New()}
		for i, commit := range []bool{true, false} {
			var got repo.Batch
			err := e.whileInFlight(t, commit, func(tx *sqladapter.Tx) error {
				if _, err := repo.New(tx, repo.WithSchema(e.schema)).Batches.Create(e.ctx, e.tenant, domains, inflight); err != nil {
					return err
				}
				// Why a lookup by name is no check: until the first attempt
				// commits, another connection does not see its batch.
				page, err := e.repos.Batches.List(e.ctx, e.tenant, repo.BatchFilter{}, repo.Page{Limit: 100})
				for _, b := range page.Items {
					if b.ID == inflight.ID {
						t.Errorf("List on another connection saw the uncommitted batch")
					}
				}
				return err
			}, func() (err error) {
				got, err = e.repos.Batches.Create(e.ctx, e.tenant, domains, inflight)
				return err
			})
			if err != nil || got.ID != inflight.ID || got.Total != 3 || got.Name != "in flight" {
				t.Fatalf("repeat after the first attempt ended (commit %v) = %+v, %v", commit, got, err)
			}
			// One batch more each time: committed by the first attempt, or
			// written by the repeat after the rollback.
			e.expectRows(t, 2+i, 3, 6+3*i)
			inflight.ID = uuid.New()
		}

		// An ID reused for another batch, or another tenant's, writes nothing.
		for _, c := range []struct {
			tenant  uuid.UUID
			domains []string
			opts    repo.BatchOptions
		}{
			{e.tenant, domains, repo.BatchOptions{Name: "other", ID: first.ID}},
			{e.tenant, []string{"a.example.com", "d.example.com", "c.example.com"}, opts},
			{uuid.New(), domains, opts},
		} {
			_, err := e.repos.Batches.Create(e.ctx, c.tenant, c.domains, c.opts)
			if !errors.Is(err, sqladapter.ErrConflict) || !strings.Contains(err.Error(), first.ID.String()) {
				t.Errorf("Create %v with a taken id: err = %v, want ErrConflict naming the id", c.domains, err)
			}
		}
		e.expectRows(t, 3, 3, 9)
	})
	r.test(t, "Batches/Lifecycle", func(t *testing.T) {
		e := r.repoEnv(t)
		domains := []string{"a.example.com", "b.example.com", "c.example.com"}
		// The first claimed job (any of the three) succeeds; the others fail
		// when in fail.
		cases := []struct {
			fail map[string]bool
		}{
			{nil},
			{map[string]bool{"b.example.com": true}},
			{map[string]bool{"a.example.com": true, "b.example.com": true, "c.example.com": true}},
		}
		for _, c := range cases {
			batch := e.createBatch(t, domains, repo.BatchOptions{MaxAttempts: 1})
			first := e.claim(t, "solo", 1, time.Minute)
			if got := e.batch(t, batch.ID); got.Status != repo.BatchStatusRunning {
				t.Fatalf("after the first claim the batch is %s, want running", got.Status)
			}
			if _, err := e.repos.Jobs.Complete(e.ctx, first[0].ID, "solo", nil); err != nil {
				t.Fatal(err)
			}
			if got := e.batch(t, batch.ID); got.Succeeded != 1 || got.Progress() < 0.33 || got.Progress() > 0.34 {
				t.Fatalf("after one job: %+v", got)
			}
			// The first job's domain always succeeds.
			var p struct{ Domain string }
			_ = json.Unmarshal(first[0].Payload, &p)
			delete(c.fail, p.Domain)
			finished, last := e.workBatch(t, c.fail)
			if finished != 1 {
				t.Fatalf("%d calls saw the batch finish, want 1", finished)
			}
			got := e.batch(t, batch.ID)
			want := repo.BatchStatusCompleted
			if len(c.fail) > 0 {
				want = repo.BatchStatusCompletedWithErrors
			}
			if got.Status != want || got.FinishedAt == nil || got.Done() != 3 || got.Progress() != 1 ||
				got.Failed != len(c.fail) || last.Batch == nil || last.Batch.Status != want || last.Batch.ID != batch.ID {
				t.Fatalf("finished batch = %+v (last transition %+v), want %s", got, last.Batch, want)
			}
		}
		// Every job fails: failed.
		batch := e.createBatch(t, domains, repo.BatchOptions{MaxAttempts: 1})
		finished, _ := e.workBatch(t, map[string]bool{"a.example.com": true, "b.example.com": true, "c.example.com": true})
		if got := e.batch(t, batch.ID); finished != 1 || got.Status != repo.BatchStatusFailed || got.Failed != 3 {
			t.Fatalf("all failed: %+v (finished %d)", got, finished)
		}
		// A job that fails with attempts left does not count yet.
		batch = e.createBatch(t, []string{"retry.example.com"}, repo.BatchOptions{MaxAttempts: 2})
		j := e.claim(t, "solo", 1, time.Minute)[0]
		tr, err := e.repos.Jobs.Fail(e.ctx, j.ID, "solo", "try again")
		if err != nil || tr.Batch != nil || tr.BatchFinished || tr.Job.State != repo.JobStateQueued {
			t.Fatalf("retryable Fail = %+v, %v", tr, err)
		}
		if got := e.batch(t, batch.ID); got.Done() != 0 || got.Finished() {
			t.Fatalf("batch after a retryable failure: %+v", got)
		}
		// Cancelling the last job finishes the batch.
		tr, err = e.repos.Jobs.Cancel(e.ctx, e.tenant, j.ID)
		if err != nil || !tr.BatchFinished || tr.Batch.Status != repo.BatchStatusCancelled || tr.Batch.Cancelled != 1 {
			t.Fatalf("Cancel last job = %+v, %v", tr, err)
		}
		// A rescue that fails the last job finishes its batch too.
		batch = e.createBatch(t, []string{"lost.example.com"}, repo.BatchOptions{MaxAttempts: 1})
		e.claim(t, "gone", 1, time.Millisecond)
		time.Sleep(20 * time.Millisecond)
		res, err := e.repos.Jobs.RescueExpired(e.ctx)
		if err != nil || len(res.Failed) != 1 || len(res.FinishedBatches) != 1 || res.FinishedBatches[0] != batch.ID {
			t.Fatalf("rescue = %+v, %v", res, err)
		}
		if got := e.batch(t, batch.ID); got.Status != repo.BatchStatusFailed || got.Failed != 1 {
			t.Fatalf("batch after rescue: %+v", got)
		}
	})
	// Batches/ConcurrentCompletion: 8 workers end a batch's jobs at once;
	// exactly one call learns that the batch finished.
	r.test(t, "Batches/ConcurrentCompletion", func(t *testing.T) {
		e := r.repoEnv(t)
		for round := range 3 {
			batch := e.createBatch(t, domainNames(60, fmt.Sprintf("r%d-%%d.example.net", round)), repo.BatchOptions{MaxAttempts: 1})
			var (
				finished, failed atomic.Int64
				wg               sync.WaitGroup
				mu               sync.Mutex
				errs             []error
			)
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					name := fmt.Sprintf("w%d", w)
					for n := 0; ; n++ {
						jobs, err := e.repos.Jobs.Claim(e.ctx, &e.tenant, name, 3, time.Minute)
						if err == nil && len(jobs) == 0 {
							return
						}
						for _, j := range jobs {
							if err != nil {
								break
							}
							var tr repo.Transition
							if (n+w)%5 == 0 {
								tr, err = e.repos.Jobs.Fail(e.ctx, j.ID, name, "no")
								failed.Add(1)
							} else {
								tr, err = e.repos.Jobs.Complete(e.ctx, j.ID, name, nil)
							}
							if tr.BatchFinished {
								finished.Add(1)
							}
						}
						if err != nil {
							mu.Lock()
							errs = append(errs, err)
							mu.Unlock()
							return
						}
					}
				}()
			}
			wg.Wait()
			for _, err := range errs {
				t.Fatal(err)
			}
			got := e.batch(t, batch.ID)
			if finished.Load() != 1 {
				t.Fatalf("round %d: %d calls saw the batch finish, want exactly 1", round, finished.Load())
			}
			if got.Succeeded+got.Failed != 60 || got.Failed != int(failed.Load()) || got.FinishedAt == nil ||
				(failed.Load() > 0 && got.Status != repo.BatchStatusCompletedWithErrors) {
				t.Fatalf("round %d: batch = %+v, %d failed", round, got, failed.Load())
			}
		}
	})
	// Batches/FinishNotices: finishes whose reports were lost (the
	// Transitions are dropped, as a cut connection would) are still claimed
	// later — each exactly once, by concurrent sweepers racing workers that
	// claim one batch each — and every claim can be repeated with its key.
	r.test(t, "Batches/FinishNotices", func(t *testing.T) {
		e := r.repoEnv(t)
		batches := e.repos.Batches
		nBatches := r.size(24, 8)
		ids := make([]uuid.UUID, nBatches)
		for i := range ids {
			ids[i] = e.createBatch(t, domainNames(3, fmt.Sprintf("n%d-%%d.example.net", i)), repo.BatchOptions{MaxAttempts: 1}).ID
		}
		open := e.createBatch(t, []string{"open.example.net"}, repo.BatchOptions{})
		// Finish every batch but open; every report is lost.
		for {
			jobs, err := e.repos.Jobs.Claim(e.ctx, &e.tenant, "lossy", 10, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if len(jobs) == 0 {
				break
			}
			for _, j := range jobs {
				if *j.BatchID == open.ID {
					continue
				}
				if _, err := e.repos.Jobs.Complete(e.ctx, j.ID, "lossy", nil); err != nil { // Transition dropped
					t.Fatal(err)
				}
			}
		}
		// Too young for a sweep that leaves workers a minute.
		if got, err := batches.ClaimFinishNotices(e.ctx, &e.tenant, "early", 100, time.Minute); err != nil || len(got) != 0 {
			t.Fatalf("sweep of young finishes = %d batches, %v", len(got), err)
		}
		// Unfinished: nothing to claim, and the open batch is never swept.
		if b, claimed, err := batches.ClaimFinished(e.ctx, e.tenant, open.ID, "w"); err != nil || claimed || b.ID != open.ID || b.Finished() {
			t.Fatalf("ClaimFinished of an open batch = %+v, %v, %v", b, claimed, err)
		}

		var (
			mu    sync.Mutex
			wins  = map[uuid.UUID][]string{} // batch → keys that got it
			keyOf = map[string][]uuid.UUID{} // sweep key → batches it got
			errs  []error
			wg    sync.WaitGroup
		)
		record := func(key string, got []repo.Batch, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			for _, b := range got {
				if !b.Finished() || b.TenantID != e.tenant {
					errs = append(errs, fmt.Errorf("%s got %+v", key, b))
				}
				wins[b.ID] = append(wins[b.ID], key)
				keyOf[key] = append(keyOf[key], b.ID)
			}
		}
		for s := range 4 { // sweepers, two per batch at a time, fresh key per sweep
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					key := fmt.Sprintf("sweeper-%d:%d", s, n)
					got, err := batches.ClaimFinishNotices(e.ctx, &e.tenant, key, 2, 0)
					record(key, got, err)
					if err != nil || len(got) == 0 {
						return
					}
				}
			}()
		}
		for w := range 4 { // workers, each trying every batch
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprintf("worker-%d", w)
				for i := range ids {
					b, claimed, err := batches.ClaimFinished(e.ctx, e.tenant, ids[(i+w*5)%len(ids)], key)
					if claimed {
						record(key, []repo.Batch{b}, err)
					} else if err != nil {
						record(key, nil, err)
					}
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			t.Fatal(err)
		}
		for _, id := range ids {
			if len(wins[id]) != 1 {
				t.Fatalf("batch %s claimed by %v, want exactly one claimer", id, wins[id])
			}
			var by string
			if err := e.db.GetContext(e.ctx, &by, "SELECT finish_claimed_by FROM "+e.schema+".batches WHERE id = $1", id); err != nil || by != wins[id][0] {
				t.Fatalf("batch %s stored as claimed by %q (%v), want %q", id, by, err, wins[id][0])
			}
		}
		if len(wins) != nBatches {
			t.Fatalf("%d batches claimed, want %d", len(wins), nBatches)
		}
		// Every claim can be repeated with its key, and only with its key.
		for _, id := range ids {
			key := wins[id][0]
			if !strings.HasPrefix(key, "worker-") {
				continue
			}
			if _, claimed, err := batches.ClaimFinished(e.ctx, e.tenant, id, key); err != nil || !claimed {
				t.Fatalf("repeated ClaimFinished by %s = %v, %v; want claimed", key, claimed, err)
			}
			if _, claimed, err := batches.ClaimFinished(e.ctx, e.tenant, id, "latecomer"); err != nil || claimed {
				t.Fatalf("ClaimFinished of %s's notice by another = %v, %v", key, claimed, err)
			}
		}
		for key, got := range keyOf {
			if !strings.HasPrefix(key, "sweeper-") || len(got) == 0 {
				continue
			}
			again, err := batches.ClaimFinishNotices(e.ctx, &e.tenant, key, 2, 0)
			if err != nil || len(again) != len(got) {
				t.Fatalf("repeated sweep %s = %d batches, %v; want its %d again", key, len(again), err, len(got))
			}
			for _, b := range again {
				if !slices.Contains(got, b.ID) {
					t.Fatalf("repeated sweep %s returned %s, which it did not hold", key, b.ID)
				}
			}
		}
		if got, err := batches.ClaimFinishNotices(e.ctx, nil, "last-sweep", 100, 0); err != nil || len(got) != 0 {
			t.Fatalf("final sweep = %d batches, %v; want none left", len(got), err)
		}

		// One lost report, claimed later by a sweep over every tenant.
		lost := e.createBatch(t, []string{"lost.example.net"}, repo.BatchOptions{})
		j := e.claim(t, "lossy", 10, time.Minute)
		for _, job := range j {
			if *job.BatchID == lost.ID {
				_, _ = e.repos.Jobs.Complete(e.ctx, job.ID, "lossy", nil)
			}
		}
		got, err := batches.ClaimFinishNotices(e.ctx, nil, "sweep-after-loss", 10, 0)
		if err != nil || len(got) != 1 || got[0].ID != lost.ID || got[0].Status != repo.BatchStatusCompleted {
			t.Fatalf("sweep after a lost report = %+v, %v", got, err)
		}

		// Errors.
		if _, _, err := batches.ClaimFinished(e.ctx, e.tenant, uuid.New(), "w"); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("ClaimFinished missing: %v, want ErrNotFound", err)
		}
		if _, _, err := batches.ClaimFinished(e.ctx, uuid.New(), lost.ID, "w"); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("ClaimFinished of another tenant's batch: %v, want ErrNotFound", err)
		}
		if _, err := batches.ClaimFinishNotices(e.ctx, nil, "", 1, 0); !errors.Is(err, sqladapter.ErrInvalidInput) {
			t.Fatalf("ClaimFinishNotices without a key: %v, want ErrInvalidInput", err)
		}
	})
	// Batches/CompleteMany: 8 workers end jobs in chunks with one
	// CompleteMany per claim (and Fail for some), over batches and jobs
	// without a batch, while one batch is cancelled under them. Every job
	// ends once, each batch's counters equal its jobs' states, and each
	// batch is reported finished exactly once.
	r.test(t, "Batches/CompleteMany", func(t *testing.T) {
		e := r.repoEnv(t)
		nBatches, perBatch, loose := r.size(10, 4), r.size(60, 30), r.size(100, 40)
		ids := map[uuid.UUID]bool{}
		var victim uuid.UUID
		for i := range nBatches {
			b := e.createBatch(t, domainNames(perBatch, fmt.Sprintf("m%d-%%d.example.org", i)), repo.BatchOptions{MaxAttempts: 1})
			ids[b.ID] = true
			if i == 1 { // claimed second (oldest first): cancelled while it is worked
				victim = b.ID
			}
		}
		in := make([]repo.NewJob, loose)
		for i := range in {
			in[i] = repo.NewJob{Kind: "loose", MaxAttempts: 1}
		}
		e.enqueue(t, in...)

		var (
			mu        sync.Mutex
			ended     = map[uuid.UUID]int{} // job → final transitions seen
			finished  = map[uuid.UUID]int{} // batch → finishes reported
			omitted   int                   // jobs CompleteMany left out
			errs      []error
			wg        sync.WaitGroup
			completed atomic.Int64
		)
		fail := func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		see := func(trs ...repo.Transition) {
			mu.Lock()
			defer mu.Unlock()
			for _, tr := range trs {
				if tr.Job.State == repo.JobStateSucceeded || tr.Job.State == repo.JobStateFailed {
					ended[tr.Job.ID]++
				}
				if tr.BatchFinished {
					finished[tr.Batch.ID]++
				}
				if tr.Job.BatchID != nil && (tr.Batch == nil || tr.Batch.ID != *tr.Job.BatchID) {
					errs = append(errs, fmt.Errorf("job %s of batch %s reported with batch %+v", tr.Job.ID, *tr.Job.BatchID, tr.Batch))
				}
				if tr.Job.BatchID == nil && tr.Batch != nil {
					errs = append(errs, fmt.Errorf("job %s without a batch reported with batch %s", tr.Job.ID, tr.Batch.ID))
				}
			}
		}
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("w%d", w)
				for n := 0; ; n++ {
					jobs, err := e.repos.Jobs.Claim(e.ctx, &e.tenant, name, 2+w%9, time.Minute)
					if err != nil {
						fail(err)
						return
					}
					if len(jobs) == 0 {
						return
					}
					var batch []repo.Completion
					for i, j := range jobs {
						if (n+i+w)%11 == 0 {
							tr, err := e.repos.Jobs.Fail(e.ctx, j.ID, name, "refused")
							if errors.Is(err, repo.ErrLeaseLost) {
								continue // cancelled with its batch
							} else if err != nil {
								fail(err)
								return
							}
							see(tr)
							continue
						}
						batch = append(batch, repo.Completion{ID: j.ID, Result: json.RawMessage(`{"by":"` + name + `"}`)})
					}
					if n%4 == 0 { // a job this worker does not hold: left out
						batch = append(batch, repo.Completion{ID: uuid.New()})
					}
					trs, err := e.repos.Jobs.CompleteMany(e.ctx, name, batch)
					if err != nil {
						fail(err)
						return
					}
					for i, tr := range trs {
						if tr.Job.State != repo.JobStateSucceeded || tr.Job.LockedBy != nil ||
							(i > 0 && slices.IndexFunc(batch, func(c repo.Completion) bool { return c.ID == tr.Job.ID }) <
								slices.IndexFunc(batch, func(c repo.Completion) bool { return c.ID == trs[i-1].Job.ID })) {
							fail(fmt.Errorf("CompleteMany returned %+v out of order or unfinished", tr.Job))
						}
					}
					see(trs...)
					mu.Lock()
					omitted += len(batch) - len(trs)
					mu.Unlock()
					completed.Add(int64(len(trs)))
				}
			}()
		}
		// Cancel one batch while the workers are at it.
		workersDone := make(chan struct{})
		go func() { wg.Wait(); close(workersDone) }()
		var cancelDone sync.WaitGroup
		cancelDone.Add(1)
		go func() {
			defer cancelDone.Done()
			for completed.Load() < int64(perBatch+perBatch/4) {
				select {
				case <-workersDone:
				case <-time.After(time.Millisecond):
					continue
				}
				break
			}
			res, err := e.repos.Batches.Cancel(e.ctx, e.tenant, victim)
			switch {
			case errors.Is(err, sqladapter.ErrConflict): // it finished first
			case err != nil:
				fail(err)
			case res.Finished:
				mu.Lock()
				finished[victim]++
				mu.Unlock()
			}
			t.Logf("Cancel after %d completions: %d jobs cancelled, finished %v, %v", completed.Load(), res.JobsCancelled, res.Finished, err)
		}()
		<-workersDone
		cancelDone.Wait()
		for _, err := range errs {
			t.Error(err)
		}
		for id, n := range ended {
			if n != 1 {
				t.Fatalf("job %s ended %d times", id, n)
			}
		}
		var truth []struct {
			Batch     *uuid.UUID `db:"batch_id"`
			Total     int        `db:"total"`
			Succeeded int        `db:"succeeded"`
			Failed    int        `db:"failed"`
			Cancelled int        `db:"cancelled"`
			Open      int        `db:"open"`
		}
		err := e.db.SelectContext(e.ctx, &truth, `SELECT batch_id, count(*) AS total,
			count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
			count(*) FILTER (WHERE state = 'failed') AS failed,
			count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
			count(*) FILTER (WHERE state NOT IN ('succeeded', 'failed', 'cancelled')) AS open
			FROM `+e.schema+`.jobs WHERE tenant_id = $1 GROUP BY batch_id`, e.tenant)
		if err != nil {
			t.Fatal(err)
		}
		finals := 0
		for _, c := range truth {
			finals += c.Succeeded + c.Failed
			if c.Open != 0 {
				t.Errorf("batch %v: %d jobs not final", c.Batch, c.Open)
			}
			if c.Batch == nil {
				if c.Total != loose || c.Cancelled != 0 {
					t.Errorf("jobs without a batch: %+v", c)
				}
				continue
			}
			b := e.batch(t, *c.Batch)
			if b.Total != c.Total || b.Succeeded != c.Succeeded || b.Failed != c.Failed || b.Cancelled != c.Cancelled ||
				!b.Finished() || finished[b.ID] != 1 {
				t.Errorf("batch %s = %+v, jobs %+v, reported finished %d times", b.ID, b, c, finished[b.ID])
			}
		}
		if finals != len(ended) {
			t.Errorf("%d jobs succeeded or failed, %d reported", finals, len(ended))
		}
		if omitted == 0 {
			t.Error("no CompleteMany call left a job out")
		}
		t.Logf("%d jobs completed by CompleteMany, %d left out", completed.Load(), omitted)
		var res json.RawMessage
		if err := e.db.GetContext(e.ctx, &res, "SELECT result FROM "+e.schema+".jobs WHERE tenant_id = $1 AND state = 'succeeded' LIMIT 1", e.tenant); err != nil ||
			!strings.HasPrefix(string(res), `{"by": "w`) {
			t.Errorf("stored result %s, %v", res, err)
		}
	})
	r.test(t, "Batches/Reconcile", func(t *testing.T) {
		e := r.repoEnv(t)
		batches := e.repos.Batches
		batch := e.createBatch(t, []string{"a.example.com", "b.example.com", "c.example.com"}, repo.BatchOptions{MaxAttempts: 1})
		jobs := e.claim(t, "w", 2, time.Minute)
		if _, err := e.repos.Jobs.Complete(e.ctx, jobs[0].ID, "w", nil); err != nil {
			t.Fatal(err)
		}
		// Drifted counters and total.
		e.exec(t, "UPDATE {s}.batches SET succeeded = 0, failed = 2, total = 5, status = 'pending' WHERE id = $1", batch.ID)
		res, err := batches.Reconcile(e.ctx, e.tenant, batch.ID)
		if err != nil {
			t.Fatal(err)
		}
		got := res.Batch
		if res.Finished || got.Total != 3 || got.Succeeded != 1 || got.Failed != 0 || got.Cancelled != 0 ||
			got.Status != repo.BatchStatusRunning || got.Finished() {
			t.Fatalf("Reconcile = %+v", res)
		}
		if stored := e.batch(t, batch.ID); stored.Total != got.Total || stored.Succeeded != got.Succeeded ||
			stored.Status != got.Status || !stored.UpdatedAt.Equal(got.UpdatedAt) {
			t.Fatalf("stored %+v, returned %+v", stored, got)
		}
		// A straggler: every job is final but the batch never heard.
		if _, err := e.repos.Jobs.Fail(e.ctx, jobs[1].ID, "w", "x"); err != nil {
			t.Fatal(err)
		}
		e.exec(t, "UPDATE {s}.jobs SET state = 'succeeded', finished_at = now() WHERE batch_id = $1 AND state = 'queued'", batch.ID)
		res, err = batches.Reconcile(e.ctx, e.tenant, batch.ID)
		if err != nil || !res.Finished || res.Batch.Status != repo.BatchStatusCompletedWithErrors ||
			res.Batch.Succeeded != 2 || res.Batch.Failed != 1 || !res.Batch.Finished() {
			t.Fatalf("Reconcile straggler = %+v, %v", res, err)
		}
		// Only once.
		res, err = batches.Reconcile(e.ctx, e.tenant, batch.ID)
		if err != nil || res.Finished || res.Batch.Status != repo.BatchStatusCompletedWithErrors {
			t.Fatalf("Reconcile again = %+v, %v", res, err)
		}
		if _, err := batches.Reconcile(e.ctx, e.tenant, uuid.New()); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("Reconcile missing: %v, want ErrNotFound", err)
		}
		if _, err := batches.Reconcile(e.ctx, uuid.New(), batch.ID); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("Reconcile another tenant's batch: %v, want ErrNotFound", err)
		}
		// Inside a caller's transaction too.
		err = e.db.InTx(e.ctx, func(tx *sqladapter.Tx) error {
			_, err := repo.New(tx, repo.WithSchema(e.schema)).Batches.Reconcile(e.ctx, e.tenant, batch.ID)
			return err
		})
		if err != nil {
			t.Fatalf("Reconcile in a transaction: %v", err)
		}
	})
	r.test(t, "Batches/Cancel", func(t *testing.T) {
		e := r.repoEnv(t)
		batches := e.repos.Batches
		batch := e.createBatch(t, domainNames(5, "c%d.example.com"), repo.BatchOptions{})
		running := e.claim(t, "w", 2, time.Minute)
		if _, err := e.repos.Jobs.Complete(e.ctx, running[0].ID, "w", nil); err != nil {
			t.Fatal(err)
		}
		res, err := batches.Cancel(e.ctx, e.tenant, batch.ID)
		if err != nil {
			t.Fatal(err)
		}
		got := res.Batch
		if !res.Finished || res.JobsCancelled != 4 || got.Status != repo.BatchStatusCancelled || got.Succeeded != 1 ||
			got.Cancelled != 4 || got.FinishedAt == nil || got.Progress() != 1 {
			t.Fatalf("Cancel = %+v", res)
		}
		if _, err := e.repos.Jobs.Complete(e.ctx, running[1].ID, "w", nil); !errors.Is(err, repo.ErrLeaseLost) {
			t.Fatalf("Complete of a job of a cancelled batch: %v, want ErrLeaseLost", err)
		}
		list, err := e.repos.Jobs.List(e.ctx, e.tenant, repo.JobFilter{BatchID: &batch.ID, State: repo.JobStateCancelled}, repo.Page{})
		if err != nil || len(list.Items) != 4 {
			t.Fatalf("cancelled jobs listed: %d, %v", len(list.Items), err)
		}
		if c := e.claim(t, "w", 10, time.Minute); len(c) != 0 {
			t.Fatalf("claimed %d jobs of a cancelled batch", len(c))
		}
		// Again: nothing changes, no error.
		res, err = batches.Cancel(e.ctx, e.tenant, batch.ID)
		if err != nil || res.Finished || res.JobsCancelled != 0 || res.Batch.Cancelled != 4 {
			t.Fatalf("Cancel again = %+v, %v", res, err)
		}
		// A completed batch cannot be cancelled.
		done := e.createBatch(t, []string{"done.example.com"}, repo.BatchOptions{})
		if finished, _ := e.workBatch(t, nil); finished != 1 {
			t.Fatal("batch did not finish")
		}
		res, err = batches.Cancel(e.ctx, e.tenant, done.ID)
		if !errors.Is(err, sqladapter.ErrConflict) || res.Batch.Status != repo.BatchStatusCompleted {
			t.Fatalf("Cancel completed batch = %+v, %v; want ErrConflict", res, err)
		}
		if _, err := batches.Cancel(e.ctx, e.tenant, uuid.New()); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("Cancel missing batch: %v, want ErrNotFound", err)
		}
		if _, err := batches.Cancel(e.ctx, uuid.New(), batch.ID); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("Cancel another tenant's batch: %v, want ErrNotFound", err)
		}
		// Jobs added to an open batch grow its total; a finished batch takes none.
		open := e.createBatch(t, []string{"open.example.com"}, repo.BatchOptions{})
		if _, err := e.repos.Jobs.Enqueue(e.ctx, e.tenant, repo.NewJob{Kind: "extra", BatchID: &open.ID}); err != nil {
			t.Fatal(err)
		}
		if got := e.batch(t, open.ID); got.Total != 2 {
			t.Fatalf("total after Enqueue = %d, want 2", got.Total)
		}
		before := e.count(t, "jobs")
		if _, err := e.repos.Jobs.Enqueue(e.ctx, e.tenant, repo.NewJob{Kind: "late", BatchID: &batch.ID}); !errors.Is(err, sqladapter.ErrNotFound) {
			t.Fatalf("Enqueue into a finished batch: %v, want ErrNotFound", err)
		}
		if after := e.count(t, "jobs"); after != before {
			t.Fatalf("%d jobs written into a finished batch", after-before)
		}
	})

	// Batches/MixedDrivers is the concurrency scenario: 20 batches
	// × 100 domains (5 × 40 off a transaction pooler, see run.size), 16
	// workers — 8 on the target's handle, 8 on a handle of the other driver
	// on the same URL and pool mode — claim in chunks, complete most jobs
	// and fail some. At the end every job is final exactly once, no job was
	// worked by two workers at once, each batch's counters equal its jobs'
	// states, and each batch finished exactly once.
	r.test(t, "Batches/MixedDrivers", func(t *testing.T) {
		e := r.repoEnv(t)
		ocfg := otherDriver(e.cfg)
		if err := ocfg.Validate(); err != nil {
			t.Skipf("capability: the URL under test cannot be opened with the other driver: %v", err)
		}
		odb := openDB(t, ocfg)
		handles := []*repo.Repos{e.repos, repo.New(odb, repo.WithSchema(e.schema))}
		drivers := []string{string(e.cfg.WithDefaults().Driver), string(ocfg.Driver)}

		nBatches, perBatch := r.size(20, 5), r.size(100, 40)
		ids := map[uuid.UUID]bool{}
		for i := range nBatches {
			batch := e.createBatch(t, domainNames(perBatch, fmt.Sprintf("b%d-%%d.example.org", i)), repo.BatchOptions{MaxAttempts: 1})
			ids[batch.ID] = true
		}
		var (
			mu       sync.Mutex
			working  = map[uuid.UUID]string{} // job → worker now
			ended    = map[uuid.UUID]int{}    // job → final transitions seen
			finished = map[uuid.UUID]int{}    // batch → BatchFinished seen
			errs     []error
			wg       sync.WaitGroup
		)
		fail := func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rp := handles[w%2]
				name := fmt.Sprintf("w%d-%s", w, drivers[w%2])
				for n := 0; ; n++ {
					jobs, err := rp.Jobs.Claim(e.ctx, &e.tenant, name, 1+w%5, time.Minute)
					if err != nil {
						fail(err)
						return
					}
					if len(jobs) == 0 {
						return
					}
					mu.Lock()
					for _, j := range jobs {
						if other, ok := working[j.ID]; ok {
							errs = append(errs, fmt.Errorf("job %s claimed by %s while %s works it", j.ID, name, other))
						}
						working[j.ID] = name
					}
					mu.Unlock()
					for i, j := range jobs {
						var tr repo.Transition
						if (n+i)%9 == 0 {
							tr, err = rp.Jobs.Fail(e.ctx, j.ID, name, "refused")
						} else {
							tr, err = rp.Jobs.Complete(e.ctx, j.ID, name, json.RawMessage(`{"ok":1}`))
						}
						if err != nil {
							fail(err)
							return
						}
						mu.Lock()
						delete(working, j.ID)
						ended[j.ID]++
						if tr.BatchFinished {
							finished[tr.Batch.ID]++
						}
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			t.Error(err)
		}
		if len(ended) != nBatches*perBatch {
			t.Fatalf("%d jobs ended, want %d", len(ended), nBatches*perBatch)
		}
		for id, n := range ended {
			if n != 1 {
				t.Fatalf("job %s ended %d times", id, n)
			}
		}
		for id := range ids {
			if finished[id] != 1 {
				t.Errorf("batch %s finished %d times, want 1", id, finished[id])
			}
			batch := e.batch(t, id)
			var c struct {
				Total     int `db:"total"`
				Succeeded int `db:"succeeded"`
				Failed    int `db:"failed"`
			}
			err := e.db.GetContext(e.ctx, &c, `SELECT count(*) AS total,
				count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
				count(*) FILTER (WHERE state = 'failed') AS failed
				FROM `+e.schema+`.jobs WHERE batch_id = $1`, id)
			if err != nil {
				t.Fatal(err)
			}
			if batch.Total != c.Total || batch.Succeeded != c.Succeeded || batch.Failed != c.Failed || batch.Cancelled != 0 ||
				c.Succeeded+c.Failed != perBatch || !batch.Finished() {
				t.Errorf("batch %s = %+v, jobs %+v", id, batch, c)
			}
		}
	})
}

func (e *repoEnv) createBatch(t *testing.T, domains []string, opts repo.BatchOptions) repo.Batch {
	t.Helper()
	batch, err := e.repos.Batches.Create(e.ctx, e.tenant, domains, opts)
	if err != nil {
		t.Fatalf("Create batch: %v", err)
	}
	return batch
}

// expectRows checks how many batches, domains and jobs the schema holds.
func (e *repoEnv) expectRows(t *testing.T, batches, domains, jobs int) {
	t.Helper()
	for table, want := range map[string]int{"batches": batches, "domains": domains, "jobs": jobs} {
		if got := e.count(t, table); got != want {
			t.Fatalf("%d rows in %s, want %d", got, table, want)
		}
	}
}

func (e *repoEnv) batch(t *testing.T, id uuid.UUID) repo.Batch {
	t.Helper()
	batch, err := e.repos.Batches.Get(e.ctx, e.tenant, id)
	if err != nil {
		t.Fatalf("Get batch: %v", err)
	}
	return batch
}

func domainNames(n int, format string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

// workBatch claims and ends every job of the tenant with one worker:
// jobs whose domain is in fail fail, the others complete. It returns how
// many calls reported the batch finished.
func (e *repoEnv) workBatch(t *testing.T, fail map[string]bool) (finished int, last repo.Transition) {
	t.Helper()
	for {
		jobs := e.claim(t, "solo", 10, time.Minute)
		if len(jobs) == 0 {
			return finished, last
		}
		for _, j := range jobs {
			var p struct{ Domain string }
			if err := json.Unmarshal(j.Payload, &p); err != nil {
				t.Fatal(err)
			}
			var tr repo.Transition
			var err error
			if fail[p.Domain] {
				tr, err = e.repos.Jobs.Fail(e.ctx, j.ID, "solo", "unreachable")
			} else {
				tr, err = e.repos.Jobs.Complete(e.ctx, j.ID, "solo", nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			if tr.BatchFinished {
				finished++
				last = tr
			}
		}
	}
}
