package main

import (
	"context"
	"fmt"
	"strings"
)

// The parts of jobs_next (repo/migrations/00003_jobs_next.sql) a breakdown
// reports, each found by the start of its statement's text as
// pg_stat_statements normalises it.
var nextParts = []struct{ name, prefix string }{
	{"claim", "WITH cand AS"},
	{"finish", "WITH owned AS"},
	{"batch lock", "SELECT array_agg(l.id ORDER BY l.id)"},
	{"batch update", "WITH bat AS"},
	{"claimed rows", "SELECT $40::text, j.id"},
}

// breakdown is where a run's jobs_next calls spent their time, from
// pg_stat_statements (nested statements tracked): each part's share of the
// calls' total execution time. Time, not CPU: a statement waiting for a
// lock counts.
type breakdown struct {
	calls   int64
	perCall float64            // ms per call, all parts included
	share   map[string]float64 // part → share of perCall
}

// statsOn reports whether the server tracks statements inside functions
// (pg_stat_statements loaded with track = all; scripts/pgstack.sh starts
// PostgreSQL so) and creates the extension in the bench schema.
func (e *env) statsOn(ctx context.Context) bool {
	var track string
	if err := e.direct.GetContext(ctx, &track, `SELECT current_setting('pg_stat_statements.track', true)`); err != nil || track != "all" {
		return false
	}
	if e.exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA `+schema) != nil {
		return false
	}
	// Created before in another schema, IF NOT EXISTS keeps it there.
	err := e.direct.GetContext(ctx, &e.statsSchema, `SELECT quote_ident(extnamespace::regnamespace::text) FROM pg_extension WHERE extname = 'pg_stat_statements'`)
	return err == nil
}

func (e *env) resetStatements(ctx context.Context) error {
	return e.exec(ctx, `SELECT `+e.statsSchema+`.pg_stat_statements_reset()`)
}

// nextBreakdown reads the breakdown of the jobs_next calls since the last
// resetStatements.
func (e *env) nextBreakdown(ctx context.Context) (breakdown, error) {
	var rows []struct {
		Query    string  `db:"query"`
		Calls    int64   `db:"calls"`
		Time     float64 `db:"total_exec_time"`
		TopLevel bool    `db:"toplevel"`
	}
	err := e.direct.SelectContext(ctx, &rows, `SELECT query, calls, total_exec_time, toplevel FROM `+e.statsSchema+`.pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	if err != nil {
		return breakdown{}, err
	}
	b := breakdown{share: map[string]float64{}}
	var total float64
	for _, r := range rows {
		q := strings.Join(strings.Fields(r.Query), " ")
		if r.TopLevel && strings.Contains(q, "jobs_next(") {
			b.calls += r.Calls
			total += r.Time
			continue
		}
		if r.TopLevel {
			continue
		}
		for _, p := range nextParts {
			if strings.HasPrefix(q, p.prefix) {
				b.share[p.name] += r.Time
			}
		}
	}
	if b.calls == 0 || total == 0 {
		return breakdown{}, fmt.Errorf("pg_stat_statements saw no jobs_next call")
	}
	b.perCall = total / float64(b.calls)
	for k, v := range b.share {
		b.share[k] = v / total
	}
	return b, nil
}
