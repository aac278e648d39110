// Package conformance is poolsafe's promise in executable form: a suite
// that proves a driver and pool mode — yours included, say a Supabase
// project behind its pooler on port 6543 — is safe with poolsafe.
//
// Run it from a test:
//
//	func TestMyDatabase(t *testing.T) {
//		conformance.Run(t, conformance.Target{Config: driverconf.Config{
//			URL:       os.Getenv("DATABASE_URL"), // the pooled URL
//			DirectURL: os.Getenv("DIRECT_URL"),   // session-capable, for setup
//			Driver:    driverconf.PQ,
//		}})
//	}
//
// or with the repository's own matrix test and environment variables
// (see the README, "Is my pooler safe?"):
//
//	POOLSAFE_CONFORMANCE_URL=… POOLSAFE_CONFORMANCE_DIRECT_URL=… go test ./conformance -run TestExternal
//
// Every test works in a schema of its own, created over DirectURL and
// dropped at the end; nothing else in the database is touched. Through a
// transaction pooler, each test also holds an advisory lock shared over
// DirectURL while it runs, and the negative control (the raw drivers'
// defaults, which can execute other clients' statements) holds it
// exclusively: the control runs alone, whichever process runs the other
// tests. Topics,
// one file each: adapter (Prepare and sqlx under load, transactions,
// settings), values (equal Go values across drivers), hostility
// (connection swapping, session-state leaks, DDL), wire (no named
// statements, one round trip per statement), repos (the repositories).
// What a target cannot do is declared as a capability and skipped on
// that, never on the driver's name or an error's text.
package conformance
