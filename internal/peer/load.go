package peer

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Load runs checked queries through a pooler while a suite runs, so that
// the pooler keeps handing the suite's transactions to server connections
// other clients used a moment before. Every query has its goroutine's own
// SQL text and argument: an answer meant for another client, or for
// another statement, is a wrong answer.
type Load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	queries, errs, wrong atomic.Int64
	mu                   sync.Mutex
	pids                 map[int64]bool
	samples              []string
}

// LoadResult is what a [Load] saw.
type LoadResult struct {
	Queries, Errors, Wrong int64
	// ServerConns is the number of server connections (backend PIDs) that
	// answered.
	ServerConns int
	// Samples describes up to five errors or wrong answers.
	Samples []string
}

func (r LoadResult) String() string {
	return fmt.Sprintf("%d queries, %d errors, %d wrong answers, answered by %d server connections",
		r.Queries, r.Errors, r.Wrong, r.ServerConns)
}

// StartLoad starts goroutines that query db until Stop, pausing pause
// between queries.
func StartLoad(db *sql.DB, goroutines int, pause time.Duration) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cancel: cancel, pids: map[int64]bool{}}
	for g := range goroutines {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			q := fmt.Sprintf("SELECT $1::int8 * 1000 + %d, pg_backend_pid() /* poolsafe peer load g%d */", g, g)
			for i := int64(0); ctx.Err() == nil; i++ {
				var got, pid int64
				err := db.QueryRowContext(ctx, q, i).Scan(&got, &pid)
				switch {
				case err != nil && ctx.Err() != nil:
					return // stopping: the error is the cancellation's
				case err != nil:
					l.errs.Add(1)
					l.sample(fmt.Sprintf("g%d/q%d: %v", g, i, err))
				case got != i*1000+int64(g):
					l.wrong.Add(1)
					l.sample(fmt.Sprintf("g%d/q%d: got %d, want %d", g, i, got, i*1000+int64(g)))
				default:
					l.mu.Lock()
					l.pids[pid] = true
					l.mu.Unlock()
				}
				l.queries.Add(1)
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		}()
	}
	return l
}

func (l *Load) sample(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.samples) < 5 {
		l.samples = append(l.samples, s)
	}
}

// Stop stops the load and returns what it saw.
func (l *Load) Stop() LoadResult {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return LoadResult{Queries: l.queries.Load(), Errors: l.errs.Load(), Wrong: l.wrong.Load(),
		ServerConns: len(l.pids), Samples: append([]string(nil), l.samples...)}
}
