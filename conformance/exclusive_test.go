package conformance

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scrapersky/poolsafe/driverconf"
)

// TestNegativeControlRunsAlone runs the suite's own Run machinery — a
// target's parallel topics of parallel tests, one of them run with
// testAlone as the negative control is — without a database: two targets
// in parallel, each with a control, while "another process" holds the
// database lock shared again and again, the way the tests of
// poolsafe check or of a second go test package would. Every test body
// logs its start and end; no control may start while any test runs, and
// no test may start while a control runs. A deadlock (a lock held across
// t.Parallel) fails it through the watchdog.
func TestNegativeControlRunsAlone(t *testing.T) {
	db := &fakeDB{}
	saved := lockDatabase
	lockDatabase = db.lock
	t.Cleanup(func() { lockDatabase = saved })
	watchdog := time.AfterFunc(2*time.Minute, func() {
		debug.SetTraceback("all")
		panic("TestNegativeControlRunsAlone: no progress in 2 minutes: the locks deadlocked")
	})
	defer watchdog.Stop()

	var log eventLog
	// Another process: its tests hold the database lock shared, one after
	// the other, without this process's lock.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				l, _ := db.lock(context.Background(), "", false)
				name := fmt.Sprintf("other-process/%d/%d", g, i)
				log.add(evTestStart, name)
				time.Sleep(2 * time.Millisecond)
				log.add(evTestEnd, name)
				l.Release()
				time.Sleep(time.Millisecond)
			}
		}()
	}

	const perTopic = 6
	body := func(name string, d time.Duration) func(t *testing.T) {
		return func(t *testing.T) {
			log.add(evTestStart, name)
			time.Sleep(d)
			log.add(evTestEnd, name)
		}
	}
	fakeTopics := func(target string) []topic {
		var tps []topic
		for _, tn := range []string{"first", "control", "last"} {
			tps = append(tps, topic{tn, func(t *testing.T, r *run) {
				for i := range perTopic {
					if tn == "control" && i == perTopic/2 {
						name := target + "/NegativeControl"
						r.testAlone(t, "NegativeControl", func(t *testing.T) {
							log.add(evControlStart, name)
							time.Sleep(50 * time.Millisecond)
							log.add(evControlEnd, name)
						})
					}
					name := fmt.Sprintf("%s/%s/%d", target, tn, i)
					r.test(t, fmt.Sprint(i), body(name, time.Duration(5+5*(i%3))*time.Millisecond))
				}
			}})
		}
		return tps
	}
	reports := make([]*Report, 2)
	t.Run("targets", func(t *testing.T) {
		for i, name := range []string{"a", "b"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				reports[i] = runTopics(t, Target{Name: name, Config: driverconf.Config{
					URL:       "postgres://u:p@127.0.0.1:1/db?sslmode=disable",
					DirectURL: "postgres://u:p@127.0.0.1:1/db?sslmode=disable",
					Driver:    driverconf.PQ, PoolMode: driverconf.Transaction,
				}}, fakeTopics(name))
			})
		}
	})
	close(stop)
	wg.Wait()

	for _, rep := range reports {
		if want := 3*perTopic + 1; rep.Passed != want || rep.Failed != 0 {
			t.Errorf("%s: %d passed, %d failed (%v), want %d passed", rep.Target, rep.Passed, rep.Failed, rep.FailedTests, want)
		}
	}
	running := map[string]bool{}
	control := ""
	controls, tests, maxRunning, beforeControl, afterControl := 0, 0, 0, 0, 0
	for _, e := range log.events {
		switch e.kind {
		case evTestStart:
			tests++
			if control != "" {
				t.Errorf("%s started while %s ran", e.name, control)
			}
			running[e.name] = true
			maxRunning = max(maxRunning, len(running))
			if controls == 0 {
				beforeControl++
			} else {
				afterControl++
			}
		case evTestEnd:
			delete(running, e.name)
		case evControlStart:
			controls++
			if control != "" {
				t.Errorf("%s started while %s ran", e.name, control)
			}
			if len(running) > 0 {
				t.Errorf("%s started while %d tests ran: %v", e.name, len(running), running)
			}
			control = e.name
		case evControlEnd:
			control = ""
		}
	}
	t.Logf("%d tests (%d before the first control, %d after it), at most %d at once; %d controls; %d exclusive requests found the database lock held",
		tests, beforeControl, afterControl, maxRunning, controls, db.contended.Load())
	// Not vacuous: both controls ran, among tests that ran in parallel,
	// before and after them.
	if controls != 2 {
		t.Errorf("%d controls ran, want 2", controls)
	}
	if maxRunning < 2 || beforeControl == 0 || afterControl == 0 {
		t.Errorf("tests: at most %d at once, %d before the first control, %d after it: want parallel tests on both sides",
			maxRunning, beforeControl, afterControl)
	}
	if n := activeTests.Load(); n != 0 {
		t.Errorf("activeTests = %d after the run, want 0", n)
	}
}

// fakeDB stands for PostgreSQL's advisory lock: a sync.RWMutex, which
// like PostgreSQL queues shared requests behind a waiting exclusive one.
type fakeDB struct {
	mu        sync.RWMutex
	shared    atomic.Int64
	contended atomic.Int64
}

func (d *fakeDB) lock(_ context.Context, _ string, exclusive bool) (dbLock, error) {
	if exclusive {
		if !d.mu.TryLock() {
			d.contended.Add(1)
			d.mu.Lock()
		}
	} else {
		d.mu.RLock()
		d.shared.Add(1)
	}
	return &fakeLock{d: d, exclusive: exclusive}, nil
}

type fakeLock struct {
	d         *fakeDB
	exclusive bool
}

func (l *fakeLock) Others(context.Context) (int, error) {
	n := int(l.d.shared.Load())
	if !l.exclusive {
		n--
	}
	return n, nil
}

func (l *fakeLock) Release() {
	if l.exclusive {
		l.d.mu.Unlock()
		return
	}
	l.d.shared.Add(-1)
	l.d.mu.RUnlock()
}

type eventKind int

const (
	evTestStart eventKind = iota
	evTestEnd
	evControlStart
	evControlEnd
)

type event struct {
	kind eventKind
	name string
}

type eventLog struct {
	mu     sync.Mutex
	events []event
}

func (l *eventLog) add(k eventKind, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, event{k, name})
}
