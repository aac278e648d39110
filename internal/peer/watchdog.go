package peer

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"
)

// Watchdog ends transactions a suite leaves open, as PgBouncer's
// idle_transaction_timeout would (the local stack sets none).
//
// Upstream suites are written for a server of their own: a test that
// fails half-way through a transaction may return without rolling it
// back, and the open transaction holds its session until the process ends.
// Behind a transaction pooler that session is one of the pool's few server
// connections (two in the local stack), pinned to the leaking client; two
// such leaks and every later query of every client waits for a server
// connection. The watchdog looks, on a direct connection, for backends
// whose application_name is the suite's and that have been idle in a
// transaction for longer than a limit, and terminates them. It touches no
// other client's connection. What it ended is reported: it is a symptom of
// a failing test (or of a transaction the adapter left open).
type Watchdog struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	ended  []string
}

// StartWatchdog checks every period, on direct, for sessions of appName
// idle in a transaction for longer than idle.
func StartWatchdog(direct *sql.DB, appName string, idle, period time.Duration) *Watchdog {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watchdog{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(period):
			}
			w.sweep(ctx, direct, appName, idle)
		}
	}()
	return w
}

func (w *Watchdog) sweep(ctx context.Context, direct *sql.DB, appName string, idle time.Duration) {
	rows, err := direct.QueryContext(ctx, `
		SELECT pid, state, left(query, 100), pg_terminate_backend(pid)
		FROM pg_stat_activity
		WHERE application_name = $1
		  AND state IN ('idle in transaction', 'idle in transaction (aborted)')
		  AND now() - state_change > make_interval(secs => $2)`, appName, idle.Seconds())
	if err != nil {
		return // the next sweep tries again
	}
	defer rows.Close()
	for rows.Next() {
		var (
			pid          int64
			state, query string
			ok           bool
		)
		if rows.Scan(&pid, &state, &query, &ok) == nil {
			w.mu.Lock()
			w.ended = append(w.ended, fmt.Sprintf("pid %d, %s for over %s after %q", pid, state, idle, query))
			w.mu.Unlock()
		}
	}
}

// Stop stops the watchdog and describes each transaction it ended.
func (w *Watchdog) Stop() []string {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.ended...)
}
