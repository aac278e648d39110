package sqladapter

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Replica is one streaming replica of a DB's primary, with its own handle
// (driverconf.Open opens each from Config.ReplicaURLs, with the pool mode of
// its own URL, so a replica behind a transaction pooler is as safe as the
// primary behind one).
type Replica struct {
	Name string // for Stats and logs: the URL without its password
	DB   *DB
}

// ReplicaOptions configure how a DB uses its replicas (see [WithReplicas]).
type ReplicaOptions struct {
	// MaxLag is how far behind the primary a replica may be and still
	// serve reads that tolerate stale data. Defaults to 10s.
	MaxLag time.Duration
	// Wait bounds how long a read that must see the caller's writes (see
	// [ReadYourWrites]) waits for a replica to replay them before it goes
	// to the primary. Defaults to 200ms.
	Wait time.Duration
	// CheckInterval is how often each replica's health, role and lag are
	// checked; a replica that is down, promoted or too far behind leaves
	// the rotation until a check finds it well again. Defaults to 500ms.
	CheckInterval time.Duration
}

// WithReplicas routes the reads a caller sends through [DB.Reader] or
// InTx with [OnReplica] to replicas. The DB closes the replicas' handles
// when it is closed.
func WithReplicas(opts ReplicaOptions, replicas ...Replica) Option {
	return func(o *dbOptions) {
		if len(replicas) > 0 {
			o.replicas = &replicaSet{opts: opts, list: replicas}
		}
	}
}

// ReadYourWrites returns a context whose reads see every write made with it
// before them: after a call with it on the primary, a read through
// [DB.Reader] (or InTx with [OnReplica]) goes to a replica only once that
// replica has replayed the primary's WAL up to where it was when the read
// began, waiting at most ReplicaOptions.Wait; else it reads the primary.
// This costs one round trip on the primary for the first read after writes.
// Use one such context per request or unit of work.
func ReadYourWrites(ctx context.Context) context.Context {
	return context.WithValue(ctx, rywKey{}, &rywTracker{})
}

type rywKey struct{}

// rywTracker is the WAL position a ReadYourWrites context must see.
type rywTracker struct {
	mu    sync.Mutex
	dirty bool   // the primary was used since lsn was taken
	lsn   walPos // 0: nothing to wait for
}

// markPrimaryUse records that a call with ctx went to the primary and may
// have written.
func markPrimaryUse(ctx context.Context) {
	if t, ok := ctx.Value(rywKey{}).(*rywTracker); ok && t != nil {
		t.mu.Lock()
		t.dirty = true
		t.mu.Unlock()
	}
}

// walPos is a PostgreSQL LSN.
type walPos uint64

func parseWALPos(s string) (walPos, error) {
	hi, lo, ok := strings.Cut(s, "/")
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("sqladapter: bad WAL position %q", s)
	}
	return walPos(h<<32 | l), nil
}

func (p walPos) String() string { return fmt.Sprintf("%X/%X", uint64(p)>>32, uint64(p)&0xFFFFFFFF) }

// Replica states reported by Stats.
const (
	ReplicaUnknown  = "unknown"  // not checked yet
	ReplicaUp       = "up"       // in rotation
	ReplicaLagging  = "lagging"  // up, but further behind than MaxLag: only read-your-writes reads that it has caught up with
	ReplicaDown     = "down"     // unreachable: out of rotation until a check reaches it
	ReplicaPromoted = "promoted" // no longer in recovery: out of rotation
)

// ReplicaStats is one replica's state, as of its last check.
type ReplicaStats struct {
	Name      string
	State     string        // one of the Replica… states
	Lag       time.Duration // how far its replay is behind the primary
	ReplayLSN string        // the WAL position it has replayed
	Reads     int64         // reads routed to it
	LastError string        // why it is down, if it is
}

type replicaSet struct {
	opts ReplicaOptions
	list []Replica
	st   []replicaState
	next atomic.Uint64 // round robin
	// primaryReads counts reads that asked for a replica and got the primary.
	primaryReads atomic.Int64
	stop         context.CancelFunc
	done         chan struct{}
}

type replicaState struct {
	mu        sync.Mutex
	state     string
	replay    walPos
	lag       time.Duration
	lastErr   string
	reads     atomic.Int64
	checkedAt time.Time
}

func (rs *replicaSet) start() {
	if rs.opts.MaxLag <= 0 {
		rs.opts.MaxLag = 10 * time.Second
	}
	if rs.opts.Wait <= 0 {
		rs.opts.Wait = 200 * time.Millisecond
	}
	if rs.opts.CheckInterval <= 0 {
		rs.opts.CheckInterval = 500 * time.Millisecond
	}
	rs.st = make([]replicaState, len(rs.list))
	for i := range rs.st {
		rs.st[i].state = ReplicaUnknown
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs.stop, rs.done = cancel, make(chan struct{})
	go func() {
		defer close(rs.done)
		t := time.NewTicker(rs.opts.CheckInterval)
		defer t.Stop()
		for {
			rs.checkAll(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (rs *replicaSet) close() error {
	rs.stop()
	<-rs.done
	var first error
	for _, r := range rs.list {
		if err := r.DB.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// checkAll checks every replica's role, replay position and lag. It asks
// the replicas only: the primary's pool is the application's.
func (rs *replicaSet) checkAll(ctx context.Context) {
	// A replica busy serving reads through a small pool may answer late:
	// only one that does not answer within a few seconds is down.
	ctx, cancel := context.WithTimeout(ctx, max(4*rs.opts.CheckInterval, 2*time.Second))
	defer cancel()
	var wg sync.WaitGroup
	for i := range rs.list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs.check(ctx, i)
		}()
	}
	wg.Wait()
}

func (rs *replicaSet) check(ctx context.Context, i int) {
	var (
		inRecovery      bool
		replay, receive sql.NullString
		lagSecs         sql.NullFloat64
	)
	err := rs.list[i].DB.DB.QueryRowContext(ctx, `SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
		pg_last_wal_receive_lsn()::text, EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp())::float8`).
		Scan(&inRecovery, &replay, &receive, &lagSecs)
	s := &rs.st[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkedAt = time.Now()
	if err != nil {
		s.state, s.lastErr = ReplicaDown, err.Error()
		return
	}
	s.lastErr = ""
	if !inRecovery {
		s.state = ReplicaPromoted
		return
	}
	if replay.Valid {
		if p, err := parseWALPos(replay.String); err == nil {
			s.replay = p
		}
	}
	var received walPos
	if receive.Valid {
		received, _ = parseWALPos(receive.String)
	}
	switch {
	case received > 0 && s.replay >= received:
		s.lag = 0 // replayed everything it has received: it is streaming, not behind
	case lagSecs.Valid:
		s.lag = time.Duration(lagSecs.Float64 * float64(time.Second))
	default:
		s.lag = rs.opts.MaxLag + 1 // nothing replayed yet
	}
	s.state = ReplicaUp
	if s.lag > rs.opts.MaxLag {
		s.state = ReplicaLagging
	}
}

// markDown takes replica i out of rotation until its next good check.
func (rs *replicaSet) markDown(i int, err error) {
	s := &rs.st[i]
	s.mu.Lock()
	s.state, s.lastErr = ReplicaDown, err.Error()
	s.mu.Unlock()
}

// primaryPos is the primary's current WAL insert position: every
// transaction that committed before the call ends at or before it.
func primaryPos(ctx context.Context, primary *DB) (walPos, error) {
	var s string
	if err := primary.DB.QueryRowContext(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		return 0, err
	}
	return parseWALPos(s)
}

// Reader returns the handle a read should use: a replica in rotation —
// one that has replayed the caller's writes when ctx comes from
// [ReadYourWrites] — or the DB itself when there is none (no replicas, all
// down or behind, or the wait ran out). The choice is explicit: nothing is
// routed by looking at SQL. A read that fails on a replica that has just
// gone down is not retried; use InTx with [OnReplica] for that.
func (db *DB) Reader(ctx context.Context) *DB {
	r, _ := db.reader(ctx)
	return r
}

// reader returns the chosen handle and its replica index (-1: primary).
func (db *DB) reader(ctx context.Context) (*DB, int) {
	rs := db.replicas
	if rs == nil {
		return db, -1
	}
	need, err := db.mustSee(ctx)
	if err != nil {
		rs.primaryReads.Add(1)
		return db, -1
	}
	if i := rs.pick(need); i >= 0 {
		return rs.use(i), i
	}
	if need > 0 {
		if i := rs.waitFor(ctx, need); i >= 0 {
			return rs.use(i), i
		}
	}
	rs.primaryReads.Add(1)
	return db, -1
}

func (rs *replicaSet) use(i int) *DB {
	rs.st[i].reads.Add(1)
	return rs.list[i].DB
}

// mustSee returns the WAL position a read with ctx must see (0: none).
func (db *DB) mustSee(ctx context.Context) (walPos, error) {
	t, ok := ctx.Value(rywKey{}).(*rywTracker)
	if !ok || t == nil {
		return 0, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dirty {
		// This lookup is not a write: it must not mark the tracker again.
		p, err := primaryPos(context.WithValue(ctx, rywKey{}, (*rywTracker)(nil)), db)
		if err != nil {
			return 0, err
		}
		t.lsn, t.dirty = max(t.lsn, p), false
	}
	return t.lsn, nil
}

// pick returns a replica in rotation that has replayed need, round robin
// (-1: none). need 0 means any replica within MaxLag.
func (rs *replicaSet) pick(need walPos) int {
	n := len(rs.list)
	start := int(rs.next.Add(1) % uint64(n))
	for k := range n {
		i := (start + k) % n
		s := &rs.st[i]
		s.mu.Lock()
		ok := s.state == ReplicaUp || (need > 0 && s.state == ReplicaLagging)
		if need > 0 {
			ok = ok && s.replay >= need
		}
		s.mu.Unlock()
		if ok {
			return i
		}
	}
	return -1
}

// waitFor asks the replicas in rotation how far they have replayed until
// one has replayed need, for at most opts.Wait (-1: none did).
func (rs *replicaSet) waitFor(ctx context.Context, need walPos) int {
	ctx, cancel := context.WithTimeout(ctx, rs.opts.Wait)
	defer cancel()
	delay := 2 * time.Millisecond
	for {
		for i := range rs.list {
			s := &rs.st[i]
			s.mu.Lock()
			live := s.state == ReplicaUp || s.state == ReplicaLagging
			s.mu.Unlock()
			if !live {
				continue
			}
			var replay sql.NullString
			if err := rs.list[i].DB.DB.QueryRowContext(ctx, "SELECT pg_last_wal_replay_lsn()::text").Scan(&replay); err != nil || !replay.Valid {
				continue
			}
			p, err := parseWALPos(replay.String)
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.replay = max(s.replay, p)
			s.mu.Unlock()
			if p >= need {
				return i
			}
		}
		if sleep(ctx, delay) != nil {
			return -1
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// OnReplica runs the transaction read-only on the handle [DB.Reader]
// picks. When that replica fails it — its connection is lost, it is
// unreachable, or it does not begin the transaction within
// max(4×CheckInterval, 2s), as when its pooler waits for a stopped server —
// the replica leaves the rotation and the transaction runs again on the
// next pick, in the end the primary, so a replica going away fails no read.
// Without replicas it runs on the primary, read-only.
func OnReplica() TxOption {
	return func(c *txConfig) { c.readOnly, c.onReplica = true, true }
}

func (rs *replicaSet) stats() []ReplicaStats {
	out := make([]ReplicaStats, len(rs.list))
	for i := range rs.list {
		s := &rs.st[i]
		s.mu.Lock()
		out[i] = ReplicaStats{Name: rs.list[i].Name, State: s.state, Lag: s.lag, ReplayLSN: s.replay.String(),
			Reads: s.reads.Load(), LastError: s.lastErr}
		s.mu.Unlock()
	}
	return out
}

// beginBound is how long a transaction sent to a replica may take to
// begin: a pooler in front of a stopped replica holds the BEGIN while it
// retries the server, and the read should go elsewhere instead.
func (rs *replicaSet) beginBound() time.Duration {
	return max(4*rs.opts.CheckInterval, 2*time.Second)
}

// beginCtx is the context a transaction on a replica begins with: it ends
// at the bound unless the transaction began first; after that only the
// caller's context ends it (database/sql ties the transaction to the
// context it began with).
type beginCtx struct {
	context.Context // the caller's

	mu    sync.Mutex
	done  chan struct{}
	err   error
	late  bool
	timer *time.Timer
	stop  func() bool
}

func boundBegin(ctx context.Context, d time.Duration) *beginCtx {
	b := &beginCtx{Context: ctx, done: make(chan struct{})}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.timer = time.AfterFunc(d, func() { b.end(context.DeadlineExceeded, true) })
	b.stop = context.AfterFunc(ctx, func() { b.end(context.Cause(ctx), false) })
	return b
}

func (b *beginCtx) end(err error, late bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err, b.late = err, late
		close(b.done)
	}
}

// began stops the bound: the transaction has begun (or failed to).
func (b *beginCtx) began() { b.timer.Stop() }

// release unregisters from the caller's context once the transaction is over.
func (b *beginCtx) release() { b.timer.Stop(); b.stop() }

func (b *beginCtx) timedOut() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.late
}

func (b *beginCtx) Done() <-chan struct{} { return b.done }

func (b *beginCtx) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// replicaBeginTimeout: a replica did not begin a transaction in time.
type replicaBeginTimeout struct {
	bound time.Duration
	err   error
}

func (e *replicaBeginTimeout) Error() string {
	return fmt.Sprintf("sqladapter: the replica did not begin the transaction within %s: %v", e.bound, e.err)
}

func (e *replicaBeginTimeout) Unwrap() error { return e.err }
