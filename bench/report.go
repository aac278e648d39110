package main

import (
	"fmt"
	"strings"
	"time"
)

type report struct {
	opts    options
	machine *machine
	started time.Time
	queue   *queueResult
	bulk    *bulkResult
	adapter *adapterResult
}

func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "machine: %s\n", r.machine)
	if q := r.queue; q != nil {
		for _, name := range []string{qAnchor, qToday, qPGX, qPQ} {
			var rates, stm, wait []float64
			for _, run := range q.runs[name] {
				rates = append(rates, run.rate())
				s, _ := run.perJob()
				stm = append(stm, s)
				wait = append(wait, run.waitShare())
				fmt.Fprintf(&b, "  %s %+v\n", name, run.stats)
			}
			var sv, pl, cl []float64
			for _, run := range q.runs[name] {
				a, b, c := run.cpuPerJob()
				sv, pl, cl = append(sv, a), append(pl, b), append(cl, c)
			}
			fmt.Fprintf(&b, "%-14s %s jobs/s  %s stmts/job  wait %s cpu µs/job server %s pooler %s client %s\n", name, summarize(rates).num("%.0f"), summarize(stm).num("%.3f"), summarize(wait).num("%.2f"),
				summarize(sv).num("%.0f"), summarize(pl).num("%.0f"), summarize(cl).num("%.0f"))
		}
		for _, name := range []string{qPGX, qPQ} {
			var ra, rt []float64
			for i, run := range q.runs[name] {
				if len(q.runs[qAnchor]) > i {
					ra = append(ra, run.rate()/q.runs[qAnchor][i].rate())
				}
				if len(q.runs[qToday]) > i {
					rt = append(rt, run.rate()/q.runs[qToday][i].rate())
				}
			}
			fmt.Fprintf(&b, "%s / anchor %s ; / today %s\n", name, summarize(ra).ratio(), summarize(rt).ratio())
		}
	}
	return b.String()
}
