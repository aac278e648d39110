package repo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// Batches.Cancel and Batches.Reconcile write nothing when they change
// nothing: cancelling a cancelled batch, cancelling a completed one (which
// fails with ErrConflict) and reconciling a finished batch whose counters
// are right leave the row as it was — the same row version (xmin) and
// updated_at. Reconcile still writes a repair.
func TestBatchesNoWriteWhenNothingChanges(t *testing.T) {
	forDrivers(t, func(t *testing.T, drv driverconf.Driver) {
		r, db, schema := dbRepos(t, drv, 2)
		ctx := context.Background()
		tenant := uuid.New()
		// version returns the batch row's version and updated_at.
		version := func(id uuid.UUID) (string, time.Time) {
			t.Helper()
			var xmin string
			var at time.Time
			if err := db.QueryRowContext(ctx, "SELECT xmin::text, updated_at FROM "+schema+".batches WHERE id = $1", id).Scan(&xmin, &at); err != nil {
				t.Fatal(err)
			}
			return xmin, at
		}
		unchanged := func(what string, id uuid.UUID, xmin0 string, at0 time.Time, got repo.Batch) {
			t.Helper()
			xmin, at := version(id)
			if xmin != xmin0 || !at.Equal(at0) {
				t.Errorf("%s rewrote the batch: xmin %s -> %s, updated_at %v -> %v", what, xmin0, xmin, at0, at)
			}
			if !got.UpdatedAt.Equal(at0) {
				t.Errorf("%s returned updated_at %v, want the stored %v", what, got.UpdatedAt, at0)
			}
		}

		// A cancelled batch.
		cancelled, err := r.Batches.Create(ctx, tenant, []string{"a.example.com", "b.example.com"}, repo.BatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		first, err := r.Batches.Cancel(ctx, tenant, cancelled.ID)
		if err != nil || !first.Finished || first.JobsCancelled != 2 {
			t.Fatalf("Cancel = %+v, %v; want it finished with 2 jobs cancelled", first, err)
		}
		xmin, at := version(cancelled.ID)
		time.Sleep(5 * time.Millisecond)
		again, err := r.Batches.Cancel(ctx, tenant, cancelled.ID)
		if err != nil || again.Finished || again.JobsCancelled != 0 || again.Batch.Status != repo.BatchStatusCancelled || again.Batch.Cancelled != 2 {
			t.Fatalf("Cancel again = %+v, %v; want the cancelled batch, nothing done", again, err)
		}
		unchanged("Cancel of a cancelled batch", cancelled.ID, xmin, at, again.Batch)
		rec, err := r.Batches.Reconcile(ctx, tenant, cancelled.ID)
		if err != nil || rec.Finished || rec.Batch.Status != repo.BatchStatusCancelled || rec.Batch.Cancelled != 2 || rec.Batch.Total != 2 {
			t.Fatalf("Reconcile of the cancelled batch = %+v, %v", rec, err)
		}
		unchanged("Reconcile of a cancelled batch", cancelled.ID, xmin, at, rec.Batch)

		// A completed batch.
		done, err := r.Batches.Create(ctx, tenant, []string{"c.example.com"}, repo.BatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		jobs, err := r.Jobs.Claim(ctx, &tenant, "w", 1, time.Minute)
		if err != nil || len(jobs) != 1 || jobs[0].BatchID == nil || *jobs[0].BatchID != done.ID {
			t.Fatalf("Claim = %+v, %v; want the job of the batch", jobs, err)
		}
		if tr, err := r.Jobs.Complete(ctx, jobs[0].ID, "w", nil); err != nil || !tr.BatchFinished {
			t.Fatalf("Complete = %+v, %v; want the batch finished", tr, err)
		}
		xmin, at = version(done.ID)
		time.Sleep(5 * time.Millisecond)
		res, err := r.Batches.Cancel(ctx, tenant, done.ID)
		if !errors.Is(err, sqladapter.ErrConflict) || res.Batch.Status != repo.BatchStatusCompleted {
			t.Fatalf("Cancel of a completed batch = %+v, %v; want it completed and ErrConflict", res, err)
		}
		unchanged("Cancel of a completed batch", done.ID, xmin, at, res.Batch)
		rec, err = r.Batches.Reconcile(ctx, tenant, done.ID)
		if err != nil || rec.Finished || rec.Batch.Status != repo.BatchStatusCompleted || rec.Batch.Succeeded != 1 {
			t.Fatalf("Reconcile of the completed batch = %+v, %v", rec, err)
		}
		unchanged("Reconcile of a completed batch", done.ID, xmin, at, rec.Batch)

		// A repair is written.
		if _, err := db.ExecContext(ctx, "UPDATE "+schema+".batches SET succeeded = 0 WHERE id = $1", done.ID); err != nil {
			t.Fatal(err)
		}
		xmin, _ = version(done.ID)
		rec, err = r.Batches.Reconcile(ctx, tenant, done.ID)
		if err != nil || rec.Finished || rec.Batch.Succeeded != 1 || rec.Batch.Status != repo.BatchStatusCompleted {
			t.Fatalf("Reconcile of drifted counters = %+v, %v; want succeeded 1 again", rec, err)
		}
		if x, _ := version(done.ID); x == xmin {
			t.Errorf("Reconcile of drifted counters wrote nothing")
		}
	})
}
