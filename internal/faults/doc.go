// Package faults is the fault suite: the job pipeline (repo's batches and
// jobs, eight workers claiming and completing) runs on both drivers through
// PgBouncer's transaction pool while package faultproxy and the stack
// script break connections, lose answers, stall traffic, kill the pooler and
// restart PostgreSQL; afterwards the database itself is asked whether any
// job was lost, run twice or written twice.
//
// The suite starts its own throwaway stack with scripts/pgstack.sh on ports
// 15532 and 16532 (POOLSAFE_FAULTS_PG_PORT and POOLSAFE_FAULTS_BOUNCER_PORT
// override them) and stops it at the end; it never touches the shared stack
// on 15432/16432. It skips with -short, and when POOLSAFE_REQUIRE_DB is not
// 1 and PostgreSQL or PgBouncer is not installed; with POOLSAFE_REQUIRE_DB=1
// a stack that cannot start fails it.
//
//	go test -count=1 -v -run TestFaults ./internal/faults
//
// Each scenario and driver prints one line:
//
//	fault <scenario> <driver>: jobs N, lost L, doubled D, duplicate writes W, recovery Xs
//
// N is the jobs submitted (four batches of 50 domains, created 500 ms
// apart); L the submitted domains without a job in a final state; D the
// extra completions of one job (each completion records its execution in
// faults.fault_exec in the same transaction); W the extra rows written for
// one Batches.Create (a second batch of the same name, a second job for a
// domain); X the time from the fault's end until SELECT 1 succeeds on the
// same handle (0 when the scenario injects no fault). Besides those, a run
// fails when a batch's counters disagree with its jobs, a finished batch
// did not give exactly one worker its finish notice, a call returned more
// than 500 ms after its deadline (beyond what the process's own scheduling
// lag explains: on a loaded machine every goroutine can wait a second for
// a CPU; the lag is measured during the run, and the goroutines of a hung
// call are written to POOLSAFE_FAULTS_HANG_DIR or the temporary
// directory), the handle needs reopening, a
// CancelRequest reached the pooler (the proxy counts them), or
// `pgstack.sh check` says PgBouncer crashed or restarted.
package faults
