package repo_test

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/repo"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// containsSQL matches a statement that contains the expected text, so a
// unit test of code built on the repositories can pin the statement it
// expects by a distinctive part.
var containsSQL = sqlmock.QueryMatcherFunc(func(want, got string) error {
	if !strings.Contains(got, want) {
		return fmt.Errorf("statement does not contain %q: %s", want, got)
	}
	return nil
})

// A worker loop: claim a few jobs, do the work, complete each; the call
// that completes a batch's last job learns that the batch finished.
func ExampleJobs_Claim() {
	sqlDB, mock, err := sqlmock.New(sqlmock.QueryMatcherOption(containsSQL))
	if err != nil {
		panic(err)
	}
	db := sqladapter.Wrap(sqlDB)
	defer db.Close()

	tenant := uuid.MustParse("7f1c0c1e-4a0e-4d3b-9d1e-2b6f1f0e9a01")
	batch := uuid.MustParse("0b8e2c6a-3b1d-4a57-8f11-5d9c1a7e2b02")
	job := uuid.MustParse("c3d4e5f6-0718-4293-a4b5-c6d7e8f90a03")
	mock.ExpectQuery("FOR UPDATE SKIP LOCKED").
		WithArgs(10, "worker-1", int64(30000), tenant).
		WillReturnRows(exampleJobRows(job, tenant, batch, "running"))
	mock.ExpectQuery("state = 'succeeded'").
		WithArgs(job, "worker-1", `{"pages":12}`).
		WillReturnRows(exampleJobRows(job, tenant, batch, "succeeded", exampleBatchCols(batch, tenant)...))

	ctx := context.Background()
	jobs := repo.New(db).Jobs
	claimed, err := jobs.Claim(ctx, &tenant, "worker-1", 10, 30*time.Second)
	if err != nil {
		panic(err)
	}
	for _, j := range claimed {
		// … scrape j.Payload's domain, calling jobs.Heartbeat before the
		// lease runs out …
		res, err := jobs.Complete(ctx, j.ID, "worker-1", json.RawMessage(`{"pages":12}`))
		if errors.Is(err, repo.ErrLeaseLost) {
			continue // rescued or cancelled meanwhile: drop the result
		} else if err != nil {
			panic(err)
		}
		fmt.Println(j.Kind, "job:", res.Job.State)
		if res.BatchFinished {
			fmt.Printf("batch finished: %s, %d of %d succeeded\n", res.Batch.Status, res.Batch.Succeeded, res.Batch.Total)
		}
	}
	if err := mock.ExpectationsWereMet(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// scan job: succeeded
	// batch finished: completed, 1 of 1 succeeded
}

// Submitting a batch: domains are normalised and de-duplicated, and the
// domains, the batch and one job per domain are written by one statement.
func ExampleBatches_Create() {
	sqlDB, mock, err := sqlmock.New(sqlmock.QueryMatcherOption(containsSQL))
	if err != nil {
		panic(err)
	}
	db := sqladapter.Wrap(sqlDB)
	defer db.Close()

	tenant := uuid.MustParse("7f1c0c1e-4a0e-4d3b-9d1e-2b6f1f0e9a01")
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	mock.ExpectQuery("INSERT INTO public.batches").
		WithArgs(tenant, `{"example.com","xn--bcher-kva.de"}`, "nightly", "scan", "{}", 0, nil, 3, nil).
		WillReturnRows(sqlmock.NewRows([]string{"id", "tenant_id", "name", "status", "total", "succeeded", "failed",
			"cancelled", "finished_at", "created_at", "updated_at"}).
			AddRow("0b8e2c6a-3b1d-4a57-8f11-5d9c1a7e2b02", tenant.String(), "nightly", "pending", 2, 0, 0, 0, nil, at, at))

	batch, err := repo.New(db).Batches.Create(context.Background(), tenant,
		[]string{"https://www.Example.com/", "example.com", "bücher.de"},
		repo.BatchOptions{Name: "nightly"})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s: %s, %d jobs, %.0f%% done\n", batch.Name, batch.Status, batch.Total, 100*batch.Progress())

	_, err = repo.New(db).Batches.Create(context.Background(), tenant, []string{"example.com", "not a domain"}, repo.BatchOptions{})
	fmt.Println(err)

	if err := mock.ExpectationsWereMet(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// nightly: pending, 2 jobs, 0% done
	// repo: invalid domains[1]: "not a domain" is not a valid domain name: disallowed rune U+0020
}

// Submitting a batch so that a failed call can be repeated: the batch's ID
// is chosen before the first attempt. Here the first attempt's connection
// breaks after the statement was sent (it may have run, and may still be
// running on the server); the repeat with the same ID waits for it, writes
// nothing, and returns the stored batch.
func ExampleBatches_Create_repeat() {
	sqlDB, mock, err := sqlmock.New(sqlmock.QueryMatcherOption(containsSQL))
	if err != nil {
		panic(err)
	}
	db := sqladapter.Wrap(sqlDB)
	defer db.Close()
	batches := repo.New(db).Batches

	tenant := uuid.MustParse("7f1c0c1e-4a0e-4d3b-9d1e-2b6f1f0e9a01")
	id := uuid.MustParse("0b8e2c6a-3b1d-4a57-8f11-5d9c1a7e2b02") // uuid.New() in real code
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	cols := []string{"id", "tenant_id", "name", "status", "total", "succeeded", "failed",
		"cancelled", "finished_at", "created_at", "updated_at"}
	mock.ExpectQuery("INSERT INTO public.batches").WillReturnError(io.ErrUnexpectedEOF)
	mock.ExpectQuery("INSERT INTO public.batches").WillReturnRows(sqlmock.NewRows(cols)) // the id exists
	mock.ExpectQuery("FROM public.batches").WithArgs(tenant, id).
		WillReturnRows(sqlmock.NewRows(cols).AddRow(id.String(), tenant.String(), "nightly", "pending", 2, 0, 0, 0, nil, at, at))
	mock.ExpectQuery("count(DISTINCT d.domain)").WillReturnRows(sqlmock.NewRows([]string{"count"}).AddRow(2))

	domains := []string{"example.com", "bücher.de"}
	opts := repo.BatchOptions{Name: "nightly", ID: id}
	ctx := context.Background()
	batch, err := batches.Create(ctx, tenant, domains, opts)
	for attempt := 1; err != nil && attempt < 3; attempt++ {
		var e *sqladapter.Error
		if errors.As(err, &e) {
			fmt.Println("attempt failed:", e.Outcome())
		}
		batch, err = batches.Create(ctx, tenant, domains, opts)
	}
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s %s: %d jobs\n", batch.ID, batch.Name, batch.Total)

	if err := mock.ExpectationsWereMet(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// attempt failed: it may have run
	// 0b8e2c6a-3b1d-4a57-8f11-5d9c1a7e2b02 nightly: 2 jobs
}

// exampleJobRows is one job row as the claim and complete statements
// return it, followed by the batch columns when given.
func exampleJobRows(id, tenant, batch uuid.UUID, state string, batchVals ...driver.Value) *sqlmock.Rows {
	cols := []string{"id", "tenant_id", "batch_id", "domain_id", "kind", "payload", "state", "priority", "run_at",
		"attempts", "max_attempts", "locked_by", "lease_expires_at", "progress", "result", "last_error", "finished_at",
		"created_at", "updated_at"}
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	var lockedBy, lease, finished driver.Value
	if state == "running" {
		lockedBy, lease = "worker-1", at.Add(30*time.Second)
	} else {
		finished = at
	}
	vals := []driver.Value{id.String(), tenant.String(), batch.String(), nil, "scan", []byte(`{"domain":"example.com"}`),
		state, 0, at, 1, 3, lockedBy, lease, 0.0, []byte("null"), nil, finished, at, at}
	if len(batchVals) > 0 {
		cols = append(cols, "batch", "b_just_finished")
		vals = append(vals, batchVals...)
	}
	return sqlmock.NewRows(cols).AddRow(vals...)
}

// exampleBatchCols is the batch a completing job finished, as the
// statement returns it: the batch row as JSON, and true.
func exampleBatchCols(batch, tenant uuid.UUID) []driver.Value {
	row := `{"id": "` + batch.String() + `", "tenant_id": "` + tenant.String() + `", "name": "nightly", "status": "completed", ` +
		`"total": 1, "succeeded": 1, "failed": 0, "cancelled": 0, "finished_at": "2024-05-01T12:00:00+00:00", ` +
		`"created_at": "2024-05-01T12:00:00+00:00", "updated_at": "2024-05-01T12:00:00+00:00"}`
	return []driver.Value{[]byte(row), true}
}
