package faults

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// TestReplicaFaults runs readers and writers against the stack's primary
// and its streaming replica (through the replica's transaction pool) on
// both drivers, in two scenarios:
//
//   - replica-delayed: the replica applies WAL two seconds late. Reads that
//     tolerate stale data must see old values (the delay is real); reads
//     in a ReadYourWrites context must never miss the writer's own write.
//   - replica-stopped: the replica stops mid-run and comes back. No read in
//     InTx with OnReplica may fail; reads move to the primary and return to
//     the replica once it is back.
func TestReplicaFaults(t *testing.T) {
	st := startStack(t)
	out, err := st.run(time.Minute, "env")
	if err != nil {
		t.Fatal(err)
	}
	replica := parseExports(out)["POOLSAFE_TEST_REPLICA_TX_URL"]
	if replica == "" {
		t.Fatalf("`pgstack.sh env` printed no POOLSAFE_TEST_REPLICA_TX_URL:\n%s", out)
	}
	ctx := context.Background()
	direct, err := sql.Open("pgx", st.directURL)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if _, err := direct.ExecContext(ctx, `DROP TABLE IF EXISTS public.ryw;
		CREATE TABLE public.ryw (writer int PRIMARY KEY, seq int8 NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = st.run(time.Minute, "replica-delay", "0")
		_, _ = st.run(2*time.Minute, "start-replica")
	})
	for _, d := range []driverconf.Driver{driverconf.PGX, driverconf.PQ} {
		cfg, err := driverconf.Parse(st.txURL)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Driver, cfg.PoolMode, cfg.DirectURL = d, driverconf.Transaction, st.directURL
		cfg.ReplicaURLs = []string{replica + "&pool_mode=transaction"}
		cfg.ReplicaMaxLag = time.Minute // the delayed replica stays in rotation for stale reads
		cfg.ReplicaWait = 50 * time.Millisecond
		cfg.MaxOpenConns, cfg.MaxIdleConns = 16, 16
		db, err := driverconf.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Run("replica-delayed/"+string(d), func(t *testing.T) { replicaDelayed(t, st, db, direct, d) })
		t.Run("replica-stopped/"+string(d), func(t *testing.T) { replicaStopped(t, st, db, d) })
		db.Close()
	}
}

const replicaWorkers = 8

func waitReplica(t *testing.T, db *sqladapter.DB, state string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := db.Stats().Replicas
		if len(st) == 1 && st[0].State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not %s after %s: %+v", state, within, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func replicaDelayed(t *testing.T, st *stack, db *sqladapter.DB, direct *sql.DB, d driverconf.Driver) {
	ctx := context.Background()
	if _, err := direct.ExecContext(ctx, "TRUNCATE public.ryw"); err != nil {
		t.Fatal(err)
	}
	waitReplica(t, db, sqladapter.ReplicaUp, 30*time.Second)
	if _, err := st.run(time.Minute, "replica-delay", "2000"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := st.run(time.Minute, "replica-delay", "0"); err != nil {
			t.Error(err)
		}
	}()
	var ryw, stale, rywOnReplica, tolerant, old, tolerantOnReplica, failed atomic.Int64
	stop := time.Now().Add(20 * time.Second)
	var wg sync.WaitGroup
	for w := range replicaWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := int64(1); time.Now().Before(stop); seq++ {
				c, cancel := context.WithTimeout(sqladapter.ReadYourWrites(ctx), 10*time.Second)
				_, err := db.ExecContext(c, `INSERT INTO public.ryw (writer, seq) VALUES ($1, $2)
					ON CONFLICT (writer) DO UPDATE SET seq = EXCLUDED.seq`, w, seq)
				const read = "SELECT COALESCE((SELECT seq FROM public.ryw WHERE writer = $1), 0), pg_is_in_recovery()"
				var got, seen int64
				var gotOnReplica, seenOnReplica bool
				if err == nil {
					err = db.Reader(c).QueryRowContext(c, read, w).Scan(&got, &gotOnReplica)
				}
				if err == nil {
					err = db.Reader(ctx).QueryRowContext(c, read, w).Scan(&seen, &seenOnReplica)
				}
				cancel()
				if err != nil {
					failed.Add(1)
					t.Errorf("writer %d, seq %d: %v", w, seq, err)
					return
				}
				ryw.Add(1)
				tolerant.Add(1)
				if gotOnReplica {
					rywOnReplica.Add(1)
				}
				if seenOnReplica {
					tolerantOnReplica.Add(1)
				}
				if got != seq {
					stale.Add(1)
				}
				if seen < seq {
					old.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("fault replica-delayed %s: read-your-writes reads %d, stale %d, on the replica %.0f%%; stale-tolerant reads %d, old data seen %d (%.0f%%), on the replica %.0f%%; failed %d\n",
		d, ryw.Load(), stale.Load(), pct(rywOnReplica.Load(), ryw.Load()), tolerant.Load(), old.Load(), pct(old.Load(), tolerant.Load()),
		pct(tolerantOnReplica.Load(), tolerant.Load()), failed.Load())
	if stale.Load() != 0 {
		t.Errorf("%d of %d read-your-writes reads missed the writer's own write", stale.Load(), ryw.Load())
	}
	if old.Load() == 0 {
		t.Errorf("no stale-tolerant read saw old data: the replica was not delayed, so the test proves nothing")
	}
	if ryw.Load() < 200 {
		t.Errorf("only %d read-your-writes reads in 20s: too few to say anything", ryw.Load())
	}
}

func replicaStopped(t *testing.T, st *stack, db *sqladapter.DB, d driverconf.Driver) {
	ctx := context.Background()
	waitReplica(t, db, sqladapter.ReplicaUp, 30*time.Second)
	// phase: 0 before the stop, 1 while stopped, 2 after it is back.
	var phase atomic.Int32
	var reads, failed [3]atomic.Int64
	var onReplica [3]atomic.Int64
	var slowest atomic.Int64 // the longest read, in ns
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range replicaWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				p := phase.Load()
				c, cancel := context.WithTimeout(ctx, 10*time.Second)
				var inRecovery bool
				began := time.Now()
				err := db.InTx(c, func(tx *sqladapter.Tx) error {
					return tx.GetContext(c, &inRecovery, "SELECT pg_is_in_recovery()")
				}, sqladapter.OnReplica())
				cancel()
				for took := int64(time.Since(began)); ; {
					if old := slowest.Load(); took <= old || slowest.CompareAndSwap(old, took) {
						break
					}
				}
				reads[p].Add(1)
				if err != nil {
					failed[p].Add(1)
					t.Errorf("read in phase %d: %v", p, err)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				if inRecovery {
					onReplica[p].Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	phase.Store(1)
	stopped := time.Now()
	if _, err := st.run(2*time.Minute, "stop-replica"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if _, err := st.run(2*time.Minute, "start-replica"); err != nil {
		t.Fatal(err)
	}
	phase.Store(2)
	back := time.Now()
	waitReplica(t, db, sqladapter.ReplicaUp, 30*time.Second)
	returned := time.Since(back)
	time.Sleep(2 * time.Second)
	close(done)
	wg.Wait()
	var total, fails int64
	for i := range reads {
		total += reads[i].Load()
		fails += failed[i].Load()
	}
	fmt.Printf("fault replica-stopped %s: reads %d, failed %d, slowest %s; on the replica before/while stopped/after: %d/%d, %d/%d, %d/%d; down %s, back in rotation %s after its restart\n",
		d, total, fails, time.Duration(slowest.Load()).Round(10*time.Millisecond), onReplica[0].Load(), reads[0].Load(), onReplica[1].Load(), reads[1].Load(), onReplica[2].Load(), reads[2].Load(),
		back.Sub(stopped).Round(100*time.Millisecond), returned.Round(100*time.Millisecond))
	if fails != 0 {
		t.Errorf("%d reads failed because the replica stopped", fails)
	}
	// A replica that does not begin a transaction within 2s is left for the
	// next pick; the rest is the machine's own slowness.
	if d := time.Duration(slowest.Load()); d > 6*time.Second {
		t.Errorf("a read took %s: a stopped replica held it past the 2s begin bound", d)
	}
	if onReplica[0].Load() == 0 || onReplica[2].Load() == 0 {
		t.Errorf("reads did not use the replica before it stopped and after it came back")
	}
	if reads[1].Load() == onReplica[1].Load() {
		t.Errorf("no read went to the primary while the replica was stopped")
	}
}

func pct(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}
