package driverconf_test

import (
	"database/sql"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// Parse reads the original system's URL: the no-prepare hints select
// transaction mode and are removed before either driver sees them.
func ExampleParse() {
	cfg, err := driverconf.Parse("postgres://app:s3cret@db.internal:6432/app?raw_sql=true&no_prepare=true&statement_cache_size=0&driver=pq")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Driver, cfg.PoolMode)
	for _, n := range cfg.Notes() {
		fmt.Println(n)
	}
	// Output:
	// pq transaction
	// removed raw_sql=true: pool-mode hint
	// removed no_prepare=true: pool-mode hint
	// removed statement_cache_size=0: pool-mode hint
	// moved driver=pq to Config.Driver
}

// A Prisma-style Supabase URL: pgbouncer=true and port 6543 both mean
// transaction mode; connection_limit becomes MaxOpenConns.
func ExampleParse_prisma() {
	cfg, err := driverconf.Parse("postgresql://postgres.abc:pw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres?pgbouncer=true&connection_limit=5")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.PoolMode, cfg.MaxOpenConns)
	fmt.Println(cfg) // the password never appears
	// Output:
	// transaction 5
	// driverconf.Config{URL: "postgresql://postgres.abc:xxxxx@aws-0-eu-west-1.pooler.supabase.com:6543/postgres?pgbouncer=true&connection_limit=5", Driver: "", PoolMode: "transaction", MaxOpenConns: 5, MaxIdleConns: 0}
}

// FromEnv reads DATABASE_URL and the DB_* variables; explicit variables win
// over the URL's keys.
func ExampleFromEnv() {
	os.Setenv("DATABASE_URL", "postgres://app@127.0.0.1:6543/app?statement_timeout=5s")
	os.Setenv("DB_DRIVER", "pq")
	os.Setenv("DB_MAX_POOL_SIZE", "20")
	defer func() {
		for _, k := range []string{"DATABASE_URL", "DB_DRIVER", "DB_MAX_POOL_SIZE"} {
			os.Unsetenv(k)
		}
	}()
	cfg, err := driverconf.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Driver, cfg.PoolMode, cfg.MaxOpenConns, cfg.StatementTimeout)
	// Output: pq transaction 20 5s
}

// NewConnector is for code that opens the *sql.DB itself, for example
// through a tracing wrapper such as otelsql.OpenDB. Everything a Config asks
// of a connection is in the connector; pool sizing is the caller's, and
// sqladapter.Wrap adds InTx and Stats. No connection is made here.
func ExampleNewConnector() {
	c, err := driverconf.NewConnector(driverconf.Config{
		URL:      "postgres://app:pw@127.0.0.1:6432/app",
		Driver:   driverconf.PGX,
		PoolMode: driverconf.Transaction,
	})
	if err != nil {
		log.Fatal(err)
	}
	sqlDB := sql.OpenDB(c) // or otelsql.OpenDB(c)
	sqlDB.SetMaxOpenConns(10)
	db := sqladapter.Wrap(sqlDB)
	defer db.Close()
	fmt.Println(db.Stats().MaxOpenConnections, db.Rebind("id = ?"))
	// Output: 10 id = $1
}

// Open returns the sqladapter handle: pooler-safe connections plus InTx.
// It makes no connection until the first query.
func ExampleOpen() {
	db, err := driverconf.Open(driverconf.Config{
		URL:              "postgres://app:pw@127.0.0.1:6543/app", // port 6543: transaction pooler
		Driver:           driverconf.PQ,
		StatementTimeout: 5 * time.Second, // applied inside each InTx transaction
	})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	fmt.Println(db.DriverName(), db.Stats().MaxOpenConnections)
	// Output: poolsafe 10
}
