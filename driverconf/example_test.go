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

// Explain says what a configuration becomes, without connecting; the
// password is never shown. `poolsafe explain URL` prints the same.
func ExampleConfig_Explain() {
	cfg, err := driverconf.Parse("postgres://app:s3cret@127.0.0.1:6543/app?sslmode=disable&driver=pq&search_path=tenant1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(cfg.Explain())
	// Output:
	// URL:        postgres://app:xxxxx@127.0.0.1:6543/app?sslmode=disable&driver=pq&search_path=tenant1
	// driver:     pq (from the URL; the other is pgx: driver=pgx or DB_DRIVER=pgx)
	// pool mode:  transaction (from the URL: port 6543, Supabase's transaction pooler)
	// URL keys:
	//   moved driver=pq to Config.Driver
	//   moved search_path=tenant1 to Config.SearchPath
	//   port 6543 (Supabase transaction pooler): transaction mode
	// connection: user='app' password='xxxxx' host='127.0.0.1' port='6543' dbname='app' sslmode='disable' connect_timeout='10'
	// lib/pq:     binary_parameters=yes: a query with arguments is one round trip with the unnamed statement
	// cancel:     no CancelRequest reaches the pooler: a context that ends mid-statement closes that connection
	// prepare:    client-side: db.Prepare and sqlx's prepared statements leave nothing on a server connection
	// settings:
	//   search_path=tenant1: set_config(…, true) after BEGIN in every transaction (one more round trip); a statement outside a transaction runs in one of its own (four round trips instead of one) — ALTER ROLE … SET costs nothing
	// pool:       MaxOpenConns 10, MaxIdleConns 5, ConnMaxLifetime 30m0s, ConnMaxIdleTime 5m0s, AcquireTimeout 0 (as long as the call's context allows), ConnectTimeout 10s
	// hazards:
	//   - server settings through a transaction pooler cost round trips on every statement outside a transaction; set them on the role (ALTER ROLE … SET) or the database, or schema-qualify names instead of search_path
	//   - no DirectURL (DIRECT_URL): migrations, LISTEN and session advisory locks need a session-capable URL
}
