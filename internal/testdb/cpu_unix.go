//go:build unix

package testdb

import (
	"syscall"
	"testing"
	"time"
)

// CPUTime is the CPU time (user + system, all threads) this process has
// used so far.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportCPU reports the process's CPU time per operation since start (a
// [CPUTime]) as cpu-ns/op: unlike ns/op it leaves out time spent waiting
// for the server and for other processes on a busy machine, so it isolates
// what the client code costs.
func ReportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 && start > 0 {
		b.ReportMetric(float64(CPUTime()-start)/float64(b.N), "cpu-ns/op")
	}
}
