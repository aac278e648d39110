package sqladapter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/scrapersky/poolsafe/internal/testdb"
)

// plainColumnsExprs: a value of every column type people use (see
// plainColumnsSQL).
var plainColumnsExprs = []string{
	"1::int2", "2::int4", "3::int8", "1.5::float4", "1.2::float4", "2.25::float8", "1.50::numeric", "true",
	"'t'::text", "'vc'::varchar(5)", "'c'::char(3)", "'bp'::bpchar", "'n'::name", "'\\x00ff'::bytea",
	"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", `'{"a":1}'::json`, `'{"a":1}'::jsonb`, "'<a/>'::xml",
	"'2024-01-02'::date", "'03:04:05.25'::time", "'24:00'::time", "'11:59:59.5-04:30'::timetz",
	"'2024-01-02 03:04:05'::timestamp", "'2024-01-02 03:04:05+02'::timestamptz", "'infinity'::timestamptz",
	"'-infinity'::date", "'1 day'::interval", "'10.0.0.1'::inet", "'10.0.0.0/8'::cidr", "'08:00:2b:01:02:03'::macaddr",
	"B'101'::bit(3)", "B'10'::varbit", "1.5::money", "'pg_class'::regclass::oid", "'{a,b}'::text[]", "'{1,2}'::int8[]",
	"'{1.5}'::float4[]", "point(1, 2)", "'a b'::tsvector", "'(1,2)'::int4range",
}

// plainColumnsSQL selects plainColumnsExprs in 3 rows, the second all
// NULL; withArg sends it with an argument (pgx's extended protocol; without
// one pgx runs it as a simple Query, into pgxResults).
func plainColumnsSQL(withArg bool) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, e := range plainColumnsExprs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("CASE WHEN g = 2 THEN NULL ELSE " + e + " END")
	}
	if withArg {
		b.WriteString(" FROM generate_series(1, 3 + $1::int8 * 0) g")
	} else {
		b.WriteString(" FROM generate_series(1, 3) g")
	}
	return b.String()
}

// The columns rows.Next skips on the drivers it knows (plainColumn) hold
// only values it would leave as they are: every value of every column type
// comes out the same as when each value is looked at.
func TestPlainColumnsNeedNothing(t *testing.T) {
	u := testdb.Get(t)
	ctx := context.Background()
	pgxCfg, err := pgx.ParseConfig(u.Direct)
	if err != nil {
		t.Fatal(err)
	}
	pgxCfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	pgxCfg.StatementCacheCapacity, pgxCfg.DescriptionCacheCapacity = 0, 0
	sep := "?"
	if strings.Contains(u.Direct, "?") {
		sep = "&"
	}
	pqConn, err := pq.NewConnector(u.Direct + sep + "binary_parameters=yes") // as driverconf sets it
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		drv  string
		base driver.Connector
		src  int8
	}{
		{driverPGX, stdlib.GetConnector(*pgxCfg), srcPGX},
		{driverPQ, pqConn, srcPQ},
	} {
		t.Run(tc.drv, func(t *testing.T) {
			db := sql.OpenDB(NewConnector(tc.base, ConnectorOptions{Driver: tc.drv}))
			defer db.Close()
			sc, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			// Not UTC, so that lib/pq's times need converting.
			if _, err := sc.ExecContext(ctx, "SET TimeZone = 'America/New_York'"); err != nil {
				t.Fatal(err)
			}
			err = sc.Raw(func(dc any) error {
				c := dc.(interface{ unwrapConn() driver.Conn })
				var cn *conn
				switch v := c.(type) {
				case *conn:
					cn = v
				case struct {
					*conn
					pingerImpl
				}:
					cn = v.conn
				default:
					t.Fatalf("unexpected connection %T", dc)
				}
				for _, withArg := range []bool{true, false} {
					var args []driver.NamedValue
					if withArg {
						args = []driver.NamedValue{{Ordinal: 1, Value: int64(1)}}
					}
					q := plainColumnsSQL(withArg)
					known, watched := readAll(t, ctx, cn, q, args, true)
					looked, _ := readAll(t, ctx, cn, q, args, false)
					if !reflect.DeepEqual(known, looked) {
						for r := range known {
							for i := range known[r] {
								if !reflect.DeepEqual(known[r][i], looked[r][i]) {
									t.Errorf("arg %v, row %d, %s: %#v with plain columns skipped, %#v looked at", withArg, r, plainColumnsExprs[i], known[r][i], looked[r][i])
								}
							}
						}
					}
					if watched >= len(plainColumnsExprs) || watched == 0 {
						t.Errorf("arg %v: %d of %d columns looked at: plainColumn skipped none or all", withArg, watched, len(plainColumnsExprs))
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// readAll runs q on cn and returns its rows as rows.Next gives them: with
// the driver's value types known (as NewConnector's connections do), or
// every value looked at.
func readAll(t *testing.T, ctx context.Context, cn *conn, q string, args []driver.NamedValue, known bool) ([][]driver.Value, int) {
	t.Helper()
	base, err := cn.queryBase(ctx, q, args)
	if err != nil {
		t.Fatal(err)
	}
	r := newRows(base, ctx, nil)
	if known {
		r = cn.newRows(base, ctx, nil)
		if r.src == srcUnknown {
			t.Fatalf("rows %T: driver's value types not known", base)
		}
	}
	defer r.Close()
	var out [][]driver.Value
	for {
		dest := make([]driver.Value, len(r.Columns()))
		if err := r.Next(dest); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		out = append(out, dest)
	}
	if len(out) != 3 {
		t.Fatalf("%d rows, want 3", len(out))
	}
	return out, len(r.watch)
}
