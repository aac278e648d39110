package faults

import (
	"fmt"
	"runtime/pprof"
	"strings"
	"sync"
	"time"
)

// A call that returns later than its deadline plus hangGrace has either
// hung — the library waited for something the deadline should have ended —
// or the process was not running: on a loaded machine (the suite shares
// two cores with other test runs) every goroutine, timers included, can
// wait a second or more for a CPU, and all calls in flight then return late
// together. No library can bound that. lagMonitor measures it, so that
// only the lateness the process's own scheduling does not explain counts
// as a hang.

// lagTick is how often lagMonitor wakes up.
const lagTick = 10 * time.Millisecond

// lagSample is one wake-up of the monitor: when it ran, and how much later
// than asked.
type lagSample struct {
	at   time.Time
	late time.Duration
}

// lagMonitor records how late a goroutine that only sleeps wakes up: the
// process's scheduling lag (CPU starvation, stop-the-world pauses).
type lagMonitor struct {
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	samples []lagSample // only those later than lagFloor
}

// lagFloor: wake-ups later than this are kept.
const lagFloor = 20 * time.Millisecond

func startLagMonitor() *lagMonitor {
	m := &lagMonitor{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTimer(lagTick)
		defer t.Stop()
		for {
			asked := time.Now()
			t.Reset(lagTick)
			select {
			case <-m.stop:
				return
			case <-t.C:
				now := time.Now() // when this goroutine runs, not when the timer fired
				if late := now.Sub(asked) - lagTick; late > lagFloor {
					m.mu.Lock()
					m.samples = append(m.samples, lagSample{at: now, late: late})
					m.mu.Unlock()
				}
			}
		}
	}()
	return m
}

// close stops the monitor.
func (m *lagMonitor) close() {
	close(m.stop)
	<-m.done
}

// worst returns the largest lag of a wake-up between from and to.
func (m *lagMonitor) worst(from, to time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var w time.Duration
	for _, s := range m.samples {
		if !s.at.Before(from) && !s.at.After(to) {
			w = max(w, s.late)
		}
	}
	return w
}

// max returns the largest lag seen.
func (m *lagMonitor) max() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var w time.Duration
	for _, s := range m.samples {
		w = max(w, s.late)
	}
	return w
}

// overrun is a call that returned more than hangGrace after its deadline.
type overrun struct {
	id       int64
	op       string
	start    time.Time
	deadline time.Duration
	took     time.Duration
	err      error
}

// maxOverruns bounds the overruns a run keeps.
const maxOverruns = 500

// judgeOverruns splits the run's overruns into hung calls and calls the
// process's scheduling lag explains: lateness beyond the deadline and the
// grace that is no more than the worst lag the monitor saw between the
// deadline and shortly after the call returned (the monitor may run just
// after the call).
func (p *pipeline) judgeOverruns(m *lagMonitor) (hung, starved []overrun, worstLag time.Duration) {
	p.mu.Lock()
	all := append([]overrun(nil), p.overruns...)
	p.mu.Unlock()
	for _, o := range all {
		due := o.start.Add(o.deadline)
		lag := m.worst(due, o.start.Add(o.took).Add(250*time.Millisecond))
		worstLag = max(worstLag, lag)
		if o.took-o.deadline-hangGrace <= lag {
			starved = append(starved, o)
			continue
		}
		hung = append(hung, o)
	}
	return hung, starved, worstLag
}

func (o overrun) String() string {
	return fmt.Sprintf("%s hung: returned after %v with a %v deadline (%v)",
		o.op, o.took.Round(time.Millisecond), o.deadline, o.err)
}

// captureHang keeps every goroutine's stack for the first few calls that
// are still running hangGrace after their deadline, to show where a hung
// call waits.
func (p *pipeline) captureHang(id int64, op string) {
	p.mu.Lock()
	full := len(p.hangStacks) >= 3
	p.mu.Unlock()
	if full {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (call %d) still running %v past its deadline; goroutines:\n", op, id, hangGrace)
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	p.mu.Lock()
	if len(p.hangStacks) < 3 {
		p.hangStacks[id] = b.String()
	}
	p.mu.Unlock()
}
