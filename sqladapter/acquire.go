package sqladapter

import (
	"context"
	"sync"
	"time"
)

// acquireKey finds an *acquireCtx in a context chain.
type acquireKey struct{}

// acquireCtx is a context whose deadline applies only until the call has a
// connection: database/sql waits for a free connection on ctx.Done(), and
// the wrapped connection disarms the timer as soon as it sees the call.
// Cancellation of the parent still reaches the call afterwards.
type acquireCtx struct {
	context.Context // the caller's context
	timeout         time.Duration

	once     sync.Once
	done     chan struct{}
	mu       sync.Mutex
	err      error
	disarmed bool
	timer    *time.Timer
	stop     func() bool
}

// withAcquireTimeout returns ctx bounded by d while it waits for a
// connection, and a release func to call when the call no longer uses ctx.
func withAcquireTimeout(parent context.Context, d time.Duration) *acquireCtx {
	a := &acquireCtx{Context: parent, timeout: d, done: make(chan struct{})}
	a.timer = time.AfterFunc(d, func() { a.fire(true) })
	a.stop = context.AfterFunc(parent, func() { a.fire(false) })
	return a
}

func (a *acquireCtx) fire(timeout bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil || (timeout && a.disarmed) {
		return
	}
	if timeout {
		a.err = &acquireTimeoutError{timeout: a.timeout}
	} else {
		a.err = context.Cause(a.Context)
		if a.err == nil {
			a.err = a.Context.Err()
		}
	}
	close(a.done)
}

func (a *acquireCtx) Done() <-chan struct{} { return a.done }

func (a *acquireCtx) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *acquireCtx) Value(key any) any {
	if key == (acquireKey{}) {
		return a
	}
	return a.Context.Value(key)
}

// disarm stops the acquire timer: the call has its connection.
func (a *acquireCtx) disarm() {
	a.mu.Lock()
	a.disarmed = true
	a.mu.Unlock()
	a.timer.Stop()
}

// release frees the timer and the parent registration.
func (a *acquireCtx) release() {
	a.once.Do(func() {
		a.timer.Stop()
		a.stop()
	})
}

// disarmAcquire is called by the wrapped connection on every call it gets.
func disarmAcquire(ctx context.Context) {
	if a, ok := ctx.Value(acquireKey{}).(*acquireCtx); ok {
		a.disarm()
	}
}

// releaseAcquire is called when a call's rows or transaction end.
func releaseAcquire(ctx context.Context) {
	if a, ok := ctx.Value(acquireKey{}).(*acquireCtx); ok {
		a.release()
	}
}

// acquireTimeoutError is what database/sql sees when the wait for a
// connection outlasts the acquire timeout.
type acquireTimeoutError struct{ timeout time.Duration }

func (e *acquireTimeoutError) Error() string {
	return "sqladapter: no free connection within the acquire timeout of " + e.timeout.String() +
		"; raise MaxOpenConns or AcquireTimeout, or hold connections for less time"
}

// Is makes the error match ErrTimeout and context.DeadlineExceeded.
func (e *acquireTimeoutError) Is(target error) bool {
	return target == ErrTimeout || target == context.DeadlineExceeded
}
