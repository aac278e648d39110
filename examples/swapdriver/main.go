// Command swapdriver shows that switching between pgx and lib/pq is a
// configuration change and nothing else: it stores a handful of typed Go
// values — a timestamptz in a non-UTC zone, timestamp, date, numeric, uuid,
// jsonb from []byte and from json.RawMessage, text[], interval from
// time.Duration, bytea, NULLs — reads each one back, and prints it as sent,
// as stored, and as scanned into `any` and into a typed destination.
//
// Run with DB_DRIVER=pgx and DB_DRIVER=pq, the output is byte-for-byte the
// same. To check, with DATABASE_URL set as for driverconf.FromEnv:
//
//	diff <(DB_DRIVER=pgx go run ./examples/swapdriver) <(DB_DRIVER=pq go run ./examples/swapdriver) && echo identical
//
// It works in a schema of its own, named after its process (two runs can go
// side by side, as above), and drops it before it exits. The same table of
// values is in the sqladapter package documentation; the conformance suite
// checks it on every driver and pool mode.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/scrapersky/poolsafe/driverconf"
	"github.com/scrapersky/poolsafe/sqladapter"
)

// A fixed zone two hours east of UTC: the timestamptz below is sent in it.
var utcPlus2 = time.FixedZone("UTC+2", 2*60*60)

// valueCase is one Go value stored in a column of type col.
type valueCase struct {
	label string
	col   string     // the column's SQL type
	arg   any        // the Go value sent
	typed func() any // a pointer to a typed destination to scan into
}

// Fixed values only: random ones would make the two runs differ.
var cases = []valueCase{
	{"timestamptz, sent in UTC+2", "timestamptz",
		time.Date(2024, 3, 10, 9, 30, 15, 123456000, utcPlus2), func() any { return new(time.Time) }},
	{"timestamp, sent in UTC+2", "timestamp",
		time.Date(2024, 3, 10, 9, 30, 15, 0, utcPlus2), func() any { return new(time.Time) }},
	{"date", "date",
		time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), func() any { return new(time.Time) }},
	{"numeric from string", "numeric(12,4)",
		"12345.6789", func() any { return new(string) }},
	{"numeric from float64", "numeric(10,3)",
		2.5, func() any { return new(float64) }},
	{"uuid", "uuid",
		uuid.MustParse("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), func() any { return new(uuid.UUID) }},
	{"jsonb from []byte", "jsonb",
		[]byte(`{"tags":["go","sql"],"n":1}`), func() any { return new(json.RawMessage) }},
	{"jsonb from json.RawMessage", "jsonb",
		json.RawMessage(`{"ok":true}`), func() any { return new(json.RawMessage) }},
	{"text[] from []string", "text[]",
		[]string{"pgx", "lib/pq", "with space"}, func() any { return new(string) }},
	{"interval from time.Duration", "interval",
		90*time.Minute + 1500*time.Millisecond, func() any { return new(string) }},
	{"bytea", "bytea",
		[]byte{0x00, 0x01, 0xfe, 0xff, '\\'}, func() any { return new([]byte) }},
	{"text from []byte", "text",
		[]byte("bytes sent to a text column"), func() any { return new(string) }},
	{"NULL timestamptz from sql.NullTime", "timestamptz",
		sql.NullTime{}, func() any { return new(sql.NullTime) }},
	{"NULL numeric from a nil *string", "numeric",
		(*string)(nil), func() any { return new(*string) }},
	{"NULL jsonb from a nil json.RawMessage", "jsonb",
		// A nullable JSON column scans into a *json.RawMessage: NULL is nil.
		json.RawMessage(nil), func() any { return new(*json.RawMessage) }},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "swapdriver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	cfg, err := driverconf.FromEnv() // DB_DRIVER picks the driver; nothing else changes
	if err != nil {
		return err
	}
	db, err := driverconf.Open(cfg)
	if err != nil {
		return err
	}
	defer db.Close()

	// A schema of our own. Single, schema-qualified DDL statements are safe
	// through a transaction pooler.
	schema := fmt.Sprintf("swapdriver_%d", os.Getpid())
	cols := make([]string, len(cases))
	for i, c := range cases {
		cols[i] = fmt.Sprintf("c%d %s", i, c.col)
	}
	for _, stmt := range []string{
		"CREATE SCHEMA " + schema,
		fmt.Sprintf("CREATE TABLE %s.vals (id int PRIMARY KEY, %s)", schema, strings.Join(cols, ", ")),
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
	}
	defer func() {
		// A fresh context: ctx may be over (Ctrl-C, timeout).
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		if _, err := db.ExecContext(cctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			fmt.Fprintln(os.Stderr, "swapdriver: clean up:", err)
		}
	}()

	// Store every value in one row, through DATABASE_URL, with plain
	// database/sql arguments: no driver-specific wrappers such as pq.Array.
	names := make([]string, len(cases))
	params := make([]string, len(cases))
	args := make([]any, len(cases))
	for i, c := range cases {
		names[i] = fmt.Sprintf("c%d", i)
		params[i] = fmt.Sprintf("$%d", i+1)
		args[i] = c.arg
	}
	ins := fmt.Sprintf("INSERT INTO %s.vals (id, %s) VALUES (1, %s)", schema, strings.Join(names, ", "), strings.Join(params, ", "))
	if _, err := db.ExecContext(ctx, ins, args...); err != nil {
		return fmt.Errorf("store: %w", err)
	}

	fmt.Println("Each value: the Go value sent, the column's text in the database, and the")
	fmt.Println("value scanned back into `any` and into a typed destination.")
	// Read in a read-only transaction whose TimeZone is UTC, so the
	// "stored" text of the timestamptz does not depend on the server's
	// configuration. set_config(…, true) lasts for this transaction only:
	// safe behind a transaction pooler.
	err = db.InTx(ctx, func(tx *sqladapter.Tx) error {
		for i, c := range cases {
			q := fmt.Sprintf("SELECT c%d, c%d::text FROM %s.vals WHERE id = 1", i, i, schema)
			var (
				asAny  any
				stored sql.NullString
			)
			if err := tx.QueryRowContext(ctx, q).Scan(&asAny, &stored); err != nil {
				return fmt.Errorf("%s: scan into any: %w", c.label, err)
			}
			dst := c.typed()
			if err := tx.QueryRowContext(ctx, q).Scan(dst, new(any)); err != nil {
				return fmt.Errorf("%s: scan into %T: %w", c.label, dst, err)
			}
			text := "NULL"
			if stored.Valid {
				text = stored.String
			}
			fmt.Printf("\n%s (%s)\n", c.label, c.col)
			fmt.Printf("  sent    %s\n", show(c.arg))
			fmt.Printf("  stored  %s\n", text)
			fmt.Printf("  any     %s\n", show(asAny))
			fmt.Printf("  typed   %s\n", show(reflect.ValueOf(dst).Elem().Interface()))
		}
		return nil
	}, sqladapter.ReadOnly(), sqladapter.WithSetting("TimeZone", "UTC"))
	if err != nil {
		return err
	}
	fmt.Printf("\n%d values stored and read back.\n", len(cases))
	return nil
}

// show formats v as "type value", with byte slices quoted and nils spelled out.
func show(v any) string {
	switch x := v.(type) {
	case nil:
		return "nil"
	case []byte:
		if x == nil {
			return "[]byte(nil)"
		}
		return fmt.Sprintf("[]byte %q", x)
	case json.RawMessage:
		if x == nil {
			return "json.RawMessage(nil)"
		}
		return fmt.Sprintf("json.RawMessage %s", x)
	case *json.RawMessage:
		if x == nil {
			return "*json.RawMessage(nil)"
		}
		return fmt.Sprintf("*json.RawMessage %s", *x)
	case *string:
		if x == nil {
			return "*string(nil)"
		}
		return fmt.Sprintf("*string %q", *x)
	case string:
		return fmt.Sprintf("string %q", x)
	}
	return fmt.Sprintf("%T %v", v, v)
}
