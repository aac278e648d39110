package driverconf

import (
	"database/sql/driver"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/scrapersky/poolsafe/internal/pgdial"
)

// pgxTrackedParams are the startup parameters PgBouncer tracks and so
// accepts in every pool mode.
var pgxTrackedParams = map[string]bool{"application_name": true}

func pgxExecMode(m PgxExecMode) (pgx.QueryExecMode, error) {
	switch m {
	case ExecModeExec:
		return pgx.QueryExecModeExec, nil
	case ExecModeSimpleProtocol:
		return pgx.QueryExecModeSimpleProtocol, nil
	case ExecModeCacheStatement:
		return pgx.QueryExecModeCacheStatement, nil
	case ExecModeCacheDescribe:
		return pgx.QueryExecModeCacheDescribe, nil
	case ExecModeDescribeExec:
		return pgx.QueryExecModeDescribeExec, nil
	}
	return 0, fieldErr("PgxExecMode", "unknown pgx exec mode %q", m)
}

// pgxConnector builds a pgx stdlib connector for r. In transaction mode it
// uses an exec mode that never names a statement, turns both caches off and
// sends no startup parameter a pooler rejects.
func pgxConnector(r *resolved) (driver.Connector, error) {
	cc, err := pgx.ParseConfig(r.dsn())
	if err != nil {
		return nil, fieldErr("URL", "rejected by pgx: %s", r.scrub(err.Error()))
	}
	mode, err := pgxExecMode(r.cfg.PgxExecMode)
	if err != nil {
		return nil, err
	}
	cc.DefaultQueryExecMode = mode
	if mode != pgx.QueryExecModeCacheStatement && mode != pgx.QueryExecModeCacheDescribe {
		cc.StatementCacheCapacity = 0
		cc.DescriptionCacheCapacity = 0
	}
	if r.cfg.PoolMode != Direct {
		// No CancelRequest through a pooler (PgBouncer 1.18 can exit on
		// one): when a context ends mid-statement, a deadline on the socket
		// ends the read and pgconn closes the connection.
		cc.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
			return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
		}
		// pgconn also sends one when a connection breaks mid-query: the
		// dialer swallows it and closes the query's connection instead.
		cc.DialFunc = pgdial.New(true).DialContext
		// Poolers refuse startup parameters they do not track, in session
		// mode too (PGOPTIONS, PGTZ from the environment would land here).
		for k := range cc.RuntimeParams {
			if !pgxTrackedParams[k] {
				delete(cc.RuntimeParams, k)
			}
		}
	}
	if r.cfg.PoolMode == Direct {
		for _, s := range r.startupSettings() {
			cc.RuntimeParams[s[0]] = s[1]
		}
	}
	return stdlib.GetConnector(*cc), nil
}
