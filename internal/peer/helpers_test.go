package peer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The runner's own logic, without a database.

func TestParseExpected(t *testing.T) {
	list, err := ParseExpected(`
# comment
sqlx pgx,pq TestA a  uses pgx.Conn
pq   pq     TestB/* b  a temporary table   across statements
`, []string{"sqlx", "pq"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[1].Reason != "a temporary table across statements" || !slices.Equal(list[0].Drivers, []string{"pgx", "pq"}) {
		t.Fatalf("parsed %+v", list)
	}
	for _, bad := range []string{
		"sqlx pgx TestA a",          // no reason
		"nope pgx TestA a why",      // unknown suite
		"sqlx mysql TestA a why",    // unknown driver
		"sqlx pgx TestA d why",      // unknown category
		"sqlx pgx Test[A a why not", // bad pattern
	} {
		if _, err := ParseExpected(bad, []string{"sqlx"}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestJudge(t *testing.T) {
	list, err := ParseExpected(`
s pgx TestAPI       a driver API
s pgx TestTemp      b temp table
s pgx TestLucky     b temp table
s pgx TestWrong     a driver API
s pgx TestGone      a driver API
s pq  TestBug       a only on pq
s pgx TestSub/x     a one subtest
s pgx TestUTC       c values table
s pgx TestCancel    c no CancelRequest behind a pooler
`, []string{"s"})
	if err != nil {
		t.Fatal(err)
	}
	results := []Result{
		{Name: "TestOK", Outcome: Pass},
		{Name: "TestAPI", Outcome: Fail},
		{Name: "TestTemp", Outcome: Fail},
		{Name: "TestLucky", Outcome: Pass},
		{Name: "TestWrong", Outcome: Pass},
		{Name: "TestBug", Outcome: Fail},
		{Name: "TestSub/x", Outcome: Fail},
		{Name: "TestSub/y", Outcome: Pass},
		{Name: "TestSub", Outcome: Fail},
		{Name: "TestParent/z", Outcome: Pass},
		{Name: "TestParent", Outcome: Fail}, // failed by itself
		{Name: "TestSkip", Outcome: Skip},
		{Name: "TestUTC", Outcome: Fail},
		{Name: "TestCancel", Outcome: Pass},
	}
	r := Judge("s", "pgx", "transaction", results, list)
	check := func(what string, got, want []string) {
		t.Helper()
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("passed", r.Passed, []string{"TestOK", "TestLucky", "TestWrong", "TestSub/y", "TestParent/z", "TestCancel"})
	check("failed", r.Failed, []string{"TestBug", "TestParent"})
	check("expected", r.Expected, []string{"TestAPI", "TestTemp", "TestSub/x", "TestUTC"})
	check("skipped", r.Skipped, []string{"TestSkip"})
	names := func(es []Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Test)
		}
		return out
	}
	check("expected passed", names(r.ExpectedPassed), []string{"TestWrong", "TestCancel"})
	check("lucky", names(r.Lucky), []string{"TestLucky"})
	check("not run", names(r.NotRun), []string{"TestGone"})
	if got, want := r.Line(), "peer s pgx/transaction: 6 passed, 2 failed, 4 expected"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}

	// Session-state entries do not hold outside transaction mode;
	// deliberate ones do, but a pass there is not the list's error.
	r = Judge("s", "pgx", "direct", results, list)
	check("failed in direct mode", r.Failed, []string{"TestBug", "TestParent", "TestTemp"})
	check("expected in direct mode", r.Expected, []string{"TestAPI", "TestSub/x", "TestUTC"})
	check("expected passed in direct mode", names(r.ExpectedPassed), []string{"TestWrong"})
	check("lucky in direct mode", names(r.Lucky), []string{"TestCancel"})
}

func TestCopy(t *testing.T) {
	from := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/up\n",
		"a.go": `package up

import "example.com/up/sub"

func dial() int { return sub.X }
`,
		"a_test.go": `package up

import (
	"database/sql"
	"testing"

	_ "example.com/driver"
)

// helper is replaced by a shim.
func helper() {}

func TestA(t *testing.T) {
	db, err := sql.Open("up", "dsn")
	_, _ = db, err
	if "example.com/up/sub.X" == "" {
		t.Fatal()
	}
}
`,
		"sub/sub.go": "package sub\n\nconst X = 1\n",
	}
	for name, src := range files {
		p := filepath.Join(from, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec := CopySpec{
		From: from, OldPath: "example.com/up", NewPath: "peer.invalid/up",
		Rewrites: []Rewrite{
			{Files: "a.go", RenameFuncs: map[string]string{"dial": "upstreamDial"}},
			{Files: "*_test.go", Calls: map[string]string{"sql.Open": "peerOpen"}, DeleteFuncs: []string{"helper"},
				DropImports: []string{"example.com/driver"}},
		},
		Shims: map[string][]byte{"zz_shim_test.go": []byte("package up\n")},
	}
	dir := t.TempDir()
	if err := Copy(spec, dir); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	a, at := read("a.go"), read("a_test.go")
	for _, want := range []string{`import "peer.invalid/up/sub"`, "func upstreamDial() int"} {
		if !strings.Contains(a, want) {
			t.Errorf("a.go lacks %q:\n%s", want, a)
		}
	}
	for _, want := range []string{`_ "database/sql"`, `_ "embed"`, "func _() {}", `peerOpen("up", "dsn")`, `"peer.invalid/up/sub.X"`} {
		if !strings.Contains(at, want) {
			t.Errorf("a_test.go lacks %q:\n%s", want, at)
		}
	}
	if got, want := strings.Count(at, "\n"), strings.Count(files["a_test.go"], "\n"); got != want {
		t.Errorf("a_test.go has %d lines, upstream %d: line numbers moved", got, want)
	}
	if read("zz_shim_test.go") != "package up\n" {
		t.Error("shim not written as given")
	}

	// A rule that finds nothing is an error: upstream changed under it.
	spec.Rewrites = append(spec.Rewrites, Rewrite{Files: "*_test.go", Calls: map[string]string{"stdlib.OpenDB": "x"}})
	if err := Copy(spec, t.TempDir()); err == nil || !strings.Contains(err.Error(), "stdlib.OpenDB") {
		t.Errorf("missing rewrite target: err = %v", err)
	}
}
