// Command poolsafe answers "is my pooler safe with my driver?" and "what
// does poolsafe make of my connection string?" without a Go test.
//
//	poolsafe check URL [--direct URL] [--driver pgx|pq|both] [--mode direct|session|transaction] [--json]
//	poolsafe explain [URL]
//
// check runs the conformance suite (package conformance) against URL on each
// driver: it creates and drops schemas of its own over the direct URL and
// touches nothing else. It prints a table per driver and exits 0 when every
// check passed, 1 when one failed, 2 when it could not run (bad arguments,
// unreachable database). explain prints what driverconf.Parse makes of URL
// (default: $DATABASE_URL) and the hazards it sees; it never prints the
// password and makes no connection.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage:
  poolsafe check URL [--direct URL] [--driver pgx|pq|both] [--mode direct|session|transaction] [--json]
  poolsafe explain [URL]

URL defaults to $DATABASE_URL and --direct to $DIRECT_URL.
`

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // a check failed
	exitUsage  = 2 // could not run: bad arguments, bad URL, unreachable database
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "check":
		return check(args[1:], stdout, stderr)
	case "explain":
		return explain(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "poolsafe: unknown command %q\n%s", args[0], usage)
	return exitUsage
}
