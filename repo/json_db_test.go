package repo_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/repo"
)

// JSON that json.Valid accepts but jsonb refuses — \u0000 or an unpaired
// surrogate escape, in a key or a value, or invalid UTF-8 — is refused by
// every call that takes JSON with a *ValidationError naming the field,
// before anything is sent; a surrogate pair is stored.
func TestJSONRefusedLikeJSONB(t *testing.T) {
	bad := []string{`{"a":"\u0000"}`, `{"\u0000":1}`, `{"a":"\ud800"}`, `{"a":"\udc00"}`, `{"\udbff":1}`, `{"a":"\ud800\ud800"}`,
		"{\"a\":\"\xff\"}"} // and invalid UTF-8, which json.Valid lets through too
	forDrivers(t, func(t *testing.T, drv driverconf.Driver) {
		r, db, schema := dbRepos(t, drv, 2)
		ctx := context.Background()
		tenant := uuid.New()
		p, err := r.Profiles.Create(ctx, tenant, repo.NewProfile{Email: "a@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Jobs.EnqueueMany(ctx, tenant, []repo.NewJob{{Kind: "k"}, {Kind: "k"}}); err != nil {
			t.Fatal(err)
		}
		const worker = "w"
		running, err := r.Jobs.Claim(ctx, &tenant, worker, 2, time.Minute)
		if err != nil || len(running) != 2 {
			t.Fatalf("Claim = %d jobs, %v", len(running), err)
		}
		job := running[0].ID
		wantInvalid := func(what, raw, field string, err error) {
			t.Helper()
			var ve *repo.ValidationError
			if !errors.As(err, &ve) || ve.Field != field {
				t.Errorf("%s with %s: err = %v, want a *ValidationError for %s", what, raw, err, field)
			}
		}
		for _, s := range bad {
			// PostgreSQL refuses it indeed.
			var ok bool
			if err := db.QueryRowContext(ctx, "SELECT $1::jsonb IS NOT NULL", s).Scan(&ok); err == nil {
				t.Fatalf("jsonb stores %s; the case is wrong", s)
			}
			raw := json.RawMessage(s)
			_, err := r.Profiles.Create(ctx, tenant, repo.NewProfile{Email: "b@example.com", Attributes: raw})
			wantInvalid("Profiles.Create", s, "attributes", err)
			_, err = r.Profiles.Update(ctx, tenant, p.ID, repo.ProfileUpdate{Attributes: &raw})
			wantInvalid("Profiles.Update", s, "attributes", err)
			_, err = r.Jobs.Enqueue(ctx, tenant, repo.NewJob{Kind: "k", Payload: raw})
			wantInvalid("Jobs.Enqueue", s, "payload", err)
			_, err = r.Jobs.EnqueueMany(ctx, tenant, []repo.NewJob{{Kind: "k"}, {Kind: "k", Payload: raw}})
			wantInvalid("Jobs.EnqueueMany", s, "jobs[1].payload", err)
			_, err = r.Batches.Create(ctx, tenant, []string{"example.com"}, repo.BatchOptions{Payload: raw})
			wantInvalid("Batches.Create", s, "payload", err)
			err = r.Jobs.SetResult(ctx, job, worker, raw)
			wantInvalid("Jobs.SetResult", s, "result", err)
			_, err = r.Jobs.Complete(ctx, job, worker, raw)
			wantInvalid("Jobs.Complete", s, "result", err)
			_, err = r.Jobs.CompleteMany(ctx, worker, []repo.Completion{{ID: running[1].ID}, {ID: job, Result: raw}})
			wantInvalid("Jobs.CompleteMany", s, "jobs[1].result", err)
			_, err = r.Jobs.Next(ctx, &tenant, worker, []repo.Outcome{{ID: running[1].ID}, {ID: job, Result: raw}}, 0, time.Minute)
			wantInvalid("Jobs.Next", s, "done[1].result", err)
		}
		// Nothing was written: the jobs still run, no other profile or job.
		for _, j := range running {
			got, err := r.Jobs.Get(ctx, tenant, j.ID)
			if err != nil || got.State != repo.JobStateRunning || string(got.Result) != "null" {
				t.Errorf("job %s after the refused calls: state %q, result %s, %v; want running without a result", j.ID, got.State, got.Result, err)
			}
		}
		var profiles, jobs int
		if err := db.QueryRowContext(ctx, "SELECT (SELECT count(*) FROM "+schema+".profiles), (SELECT count(*) FROM "+schema+".jobs)").Scan(&profiles, &jobs); err != nil ||
			profiles != 1 || jobs != 2 {
			t.Errorf("profiles, jobs = %d, %d, %v; want 1, 2", profiles, jobs, err)
		}
		// A surrogate pair, in a key and a value, is stored.
		pair := json.RawMessage(`{"\ud83d\ude00":"\ud83d\ude00"}`)
		if _, err := r.Profiles.Update(ctx, tenant, p.ID, repo.ProfileUpdate{Attributes: &pair}); err != nil {
			t.Errorf("Profiles.Update with a surrogate pair: %v", err)
		}
		if _, err := r.Jobs.Complete(ctx, job, worker, pair); err != nil {
			t.Errorf("Jobs.Complete with a surrogate pair: %v", err)
		}
	})
}
