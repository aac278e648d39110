package driverconf

import (
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the README's configuration table from the key table")

// Every entry names a real field of a type its values convert to, and the
// keys poolsafe reads are exactly those with a field or a check.
func TestKeyTable(t *testing.T) {
	t.Parallel()
	for _, k := range keys {
		if k.field == "" {
			if len(k.env) > 0 || k.oneName {
				t.Errorf("%s: environment variables or oneName without a field", k.name)
			}
			continue
		}
		f, ok := reflect.TypeOf(Config{}).FieldByName(k.field)
		if !ok {
			t.Errorf("%s: Config has no field %s", k.name, k.field)
			continue
		}
		for _, env := range []bool{false, true} {
			v, err := k.value.parse(samples[k.value], env)
			if err != nil || !reflect.TypeOf(v).ConvertibleTo(f.Type) {
				t.Errorf("%s: a %T (err %v) does not fit Config.%s (%s)", k.name, v, err, k.field, f.Type)
			}
		}
		if (k.use == passed || k.use == removed) || (k.use == hint) != (k.field == "PoolMode") {
			t.Errorf("%s: use %d does not fit a field", k.name, k.use)
		}
	}
}

// samples are valid values of each kind.
var samples = map[kind]string{
	text: "x", count: "0", boolean: "true", seconds: "1", goDuration: "1s", gucDuration: "1",
	driverName: "pq", poolModeName: "session", execMode: "exec", isolation: "serializable", utf8: "UTF8",
	optionList: "-c work_mem=1MB",
}

// What the README's table says happens to each key is what happens: a
// connection parameter reaches the drivers that accept it and is an error
// with the other, no other key reaches a driver as given, a pool key is an
// error in sql.Open, a server setting is applied, a hint sets the mode.
func TestKeysDoWhatTheTableSays(t *testing.T) {
	t.Parallel()
	for _, k := range keys {
		for _, n := range k.names() {
			v := map[string]string{"sslmode": "require"}[n]
			if v == "" {
				v = samples[k.value]
			}
			u := "postgres://u:p@h/db?" + n + "=" + queryEscape(v)
			for _, d := range []Driver{PGX, PQ} {
				r, err := Config{URL: u, Driver: d}.resolve()
				if k.use == passed {
					if accepts := map[Driver]bool{PGX: k.drivers.pgx, PQ: k.drivers.pq}[d]; accepts != (err == nil) {
						t.Errorf("%s with %s: accepted %t, error %v", n, d, accepts, err)
					} else if accepts && !strings.Contains(r.dsn(), " "+n+"=") {
						t.Errorf("%s with %s: not passed to the driver: %s", n, d, r.dsn())
					}
					continue
				}
				if err != nil {
					t.Errorf("%s with %s: %v", n, d, err)
					continue
				}
				if k.use != sent && strings.Contains(" "+r.dsn(), " "+n+"=") {
					t.Errorf("%s with %s reaches the driver: %s", n, d, r.dsn())
				}
				switch settings := fmt.Sprint(r.cfg.TxSettings()); {
				case k.use == setting && k.field != "" && !strings.Contains(settings, k.name):
					t.Errorf("%s: %s is not applied: %s", n, k.name, settings)
				case k.value == optionList && !strings.Contains(settings, "work_mem"):
					t.Errorf("%s: work_mem is not applied: %s", n, settings)
				case k.use == hint && r.cfg.PoolMode == Direct:
					t.Errorf("%s=%s: pool mode stays direct", n, v)
				}
			}
			var fe *FieldError
			if _, err := sql.Open(DriverName, u); k.use != passed && (k.use == pool) != (errors.As(err, &fe) && fe.Field == n) {
				t.Errorf("sql.Open with %s: error %v", n, err)
			}
		}
	}
}

// Each Config field's doc comment names the URL keys that fill it.
func TestFieldDocsNameTheirKeys(t *testing.T) {
	t.Parallel()
	f, err := parser.ParseFile(token.NewFileSet(), "config.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		if ts, ok := n.(*ast.TypeSpec); ok && ts.Name.Name == "Config" {
			for _, fl := range ts.Type.(*ast.StructType).Fields.List {
				for _, name := range fl.Names {
					docs[name.Name] = fl.Doc.Text()
				}
			}
		}
		return true
	})
	for _, k := range keys {
		for _, n := range k.names() {
			if k.field != "" && !strings.Contains(strings.Join(strings.Fields(docs[k.field]), " "), n) {
				t.Errorf("the doc comment of Config.%s does not name its URL key %s", k.field, n)
			}
		}
	}
}

// Parse's reading of URL is reused (by WithDefaults, Validate, Open, Notes)
// while URL is unchanged, and only then.
func TestParseIsReused(t *testing.T) {
	t.Parallel()
	cfg, err := Parse(prismaURL)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := cfg.source(); p != cfg.src || p == nil {
		t.Error("source() read the URL again")
	}
	cfg.URL = originalURL
	if p, _ := cfg.source(); p == cfg.src || p.raw != originalURL {
		t.Error("source() reused the reading of another URL")
	}
	if n := cfg.Notes(); n != nil {
		t.Errorf("Notes() = %q for a URL Parse did not read", n)
	}
}

// The README's configuration table is the key table, rendered: every key,
// its field, variables, default and what happens to it in each pool mode.
// Run with -update to rewrite it after changing the table.
func TestREADMEConfigTable(t *testing.T) {
	const path = "../README.md"
	const begin, end = "<!-- key table: begin -->\n", "<!-- key table: end -->\n"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i, j := strings.Index(readme, begin), strings.Index(readme, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q … %q block", path, begin, end)
	}
	got, want := readme[i+len(begin):j], renderKeyTable()
	if got != want {
		if *update {
			readme = readme[:i+len(begin)] + want + readme[j:]
			if err := os.WriteFile(path, []byte(readme), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
		for n := 0; n < max(len(gl), len(wl)); n++ {
			if n >= len(gl) || n >= len(wl) || gl[n] != wl[n] {
				t.Errorf("README key table differs from the key table at row %d:\n README: %s\n  table: %s",
					n, at(gl, n), at(wl, n))
				break
			}
		}
		t.Error("run go test ./driverconf -run README -update to rewrite it")
	}
	// The prose around it names every Config field.
	section := readme[strings.Index(readme, "## Configuration reference"):j]
	for _, f := range reflect.VisibleFields(reflect.TypeOf(Config{})) {
		if f.IsExported() && !strings.Contains(section, "`"+f.Name+"`") {
			t.Errorf("the README's configuration reference does not name Config.%s", f.Name)
		}
	}
}

func at(lines []string, n int) string {
	if n < len(lines) {
		return lines[n]
	}
	return "(none)"
}

// renderKeyTable writes the key table as Markdown, one row per key, or per
// run of keys that differ only in name.
func renderKeyTable() string {
	defaults := Config{URL: "postgres://h/db"}.WithDefaults()
	var rows [][]string
	for _, k := range keys {
		names := "`" + strings.Join(k.names(), "`, `") + "`"
		row := append([]string{names, fieldCell(&k), codes(k.env), defaultCell(defaults, &k)}, modeCells(&k)...)
		if n := len(rows); n > 0 && reflect.DeepEqual(rows[n-1][1:], row[1:]) {
			rows[n-1][0] += ", " + names
			continue
		}
		rows = append(rows, row)
	}
	var b strings.Builder
	b.WriteString("| URL key | Config field | Environment | Default | direct | session | transaction |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

func codes(names []string) string {
	if len(names) == 0 {
		return "—"
	}
	return "`" + strings.Join(names, "`, `") + "`"
}

func fieldCell(k *key) string {
	switch {
	case k.use == removed:
		return "none: " + k.why
	case k.use == hint && k.field == "":
		means := map[kind]string{boolean: "`true`", count: "`0`"}[k.value]
		return "`PoolMode`: " + means + " means transaction"
	case k.value == optionList:
		return "the fields above for their keys, else `Settings`"
	case k.field == "":
		return "—"
	}
	syntax := map[kind]string{
		seconds:      "seconds",
		goDuration:   "Go duration",
		gucDuration:  "ms, or with a unit",
		driverName:   "`pgx`, `pq`",
		poolModeName: "`direct`, `session`, `transaction`",
		execMode:     "`exec`, `simple_protocol`; `cache_statement`, `cache_describe`, `describe_exec` outside transaction mode",
		isolation:    "`read committed`, `repeatable read`, `serializable`",
	}[k.value]
	if syntax != "" {
		return "`" + k.field + "` (" + syntax + ")"
	}
	return "`" + k.field + "`"
}

func defaultCell(defaults Config, k *key) string {
	switch k.field {
	case "":
		return "—"
	case "SSLMode": // libpq's environment default first
		return "`PGSSLMODE` if set, else `" + DefaultSSLMode + "`"
	}
	v := reflect.ValueOf(defaults).FieldByName(k.field).Interface()
	switch v := v.(type) {
	case time.Duration:
		if v == 0 {
			return "—"
		}
		s := v.String() // 30m0s, 1h0m0s, 10s
		for _, zero := range []string{"m0s", "h0m"} {
			if strings.HasSuffix(s, zero) {
				s = s[:len(s)-2]
			}
		}
		return "`" + s + "`"
	case fmt.Stringer: // sql.IsolationLevel
		return "`" + strings.ToLower(v.String()) + "`"
	}
	if reflect.ValueOf(v).IsZero() {
		return "—"
	}
	return fmt.Sprintf("`%v`", v)
}

// modeCells says what happens to k in direct, session and transaction mode.
func modeCells(k *key) []string {
	same := func(s string) []string { return []string{s, s, s} }
	switch k.use {
	case passed:
		switch k.drivers {
		case both:
			return same("passed to the driver")
		case pgxAlone:
			return same("passed to pgx; an error with lib/pq")
		default:
			return same("passed to lib/pq; an error with pgx")
		}
	case sent:
		return same("sent to the driver")
	case pool:
		return same("applied by `Open`; an error in `sql.Open`")
	case setting:
		return []string{"startup parameter", "`set_config` after connecting", "`set_config(…, true)` in each transaction"}
	case read:
		if k.value == utf8 {
			return same("removed; must be `UTF8`")
		}
		return same("read by poolsafe")
	case hint:
		s := "removed; an error if it means transaction"
		return []string{s, s, "removed"}
	}
	return same("removed")
}
