package peer

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Rewrite changes some Go files of a copied module before its tests run.
// Every change it names must happen at least once: when an upstream file no
// longer has the call or function a rule expects, [Copy] fails instead of
// running a suite that silently bypasses poolsafe.
type Rewrite struct {
	// Files selects the files, a path.Match pattern on the slash-separated
	// path relative to the module root ("*_test.go" matches test files
	// of the root package only; "internal/pqtest/pqtest.go" one file).
	Files string
	// Calls replaces the function of calls written as the key ("sql.Open",
	// "Connect") with the identifier in the value, a function a shim file
	// declares in the same package. Selectors are matched as written, so
	// "sql.Open" means the package imported as sql. An import no longer
	// used after the change is removed.
	Calls map[string]string
	// RenameFuncs renames package-level function declarations (not their
	// calls): a shim then declares the old name, wraps the renamed original
	// and every caller in the package reaches the wrapper.
	RenameFuncs map[string]string
	// DeleteFuncs takes package-level function declarations out of the
	// package, for a shim file to declare again: each is renamed to "_"
	// (Go allows any number of those), which keeps every line where it
	// was, so that line numbers in failures match upstream's sources.
	DeleteFuncs []string
	// DropImports removes imports of these paths (blank imports of drivers
	// the suite is not run against, so they need not be built): the
	// import becomes _ "embed", again to keep line numbers.
	DropImports []string
}

// CopySpec says how to turn an upstream module into a module whose tests
// run through poolsafe.
type CopySpec struct {
	// From is the upstream module's directory (in the module cache).
	From string
	// OldPath and NewPath rename the module: every import of OldPath or a
	// package below it is rewritten. A test binary that imports poolsafe
	// cannot also be the test binary of a package poolsafe imports (Go
	// forbids the import cycle), so sqlx and lib/pq are tested as copies
	// under another path while poolsafe keeps using the real ones. Empty
	// NewPath keeps the path.
	OldPath, NewPath string
	// Rewrites are applied in order, after the rename.
	Rewrites []Rewrite
	// Shims are extra files, by slash-separated path relative to the
	// module root. They are written as they are: a shim imports the copy's
	// packages by NewPath and the real library by its own path.
	Shims map[string][]byte
}

// Copy copies spec.From into dir, applying the rename, the rewrites and
// the shims. It writes no go.mod of its own: the caller does.
func Copy(spec CopySpec, dir string) error {
	counts := make([]map[string]int, len(spec.Rewrites))
	for i := range counts {
		counts[i] = map[string]int{}
	}
	err := filepath.WalkDir(spec.From, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(spec.From, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		slash := filepath.ToSlash(rel)
		if strings.HasSuffix(slash, ".go") {
			src, err = rewriteFile(slash, src, spec, counts)
			if err != nil {
				return fmt.Errorf("%s: %w", slash, err)
			}
		}
		return os.WriteFile(dst, src, 0o644)
	})
	if err != nil {
		return err
	}
	var missing []string
	for i, rw := range spec.Rewrites {
		for _, k := range rw.keys() {
			if counts[i][k] == 0 {
				missing = append(missing, fmt.Sprintf("%s in %s", k, rw.Files))
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("upstream sources changed, these rewrites found nothing to change: %s", strings.Join(missing, "; "))
	}
	for name, src := range spec.Shims {
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if _, err := os.Stat(dst); err == nil {
			return fmt.Errorf("shim %s would overwrite an upstream file", name)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, src, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// keys names every change rw promises, for the "found nothing" check.
func (rw Rewrite) keys() []string {
	var ks []string
	for k := range rw.Calls {
		ks = append(ks, "call "+k)
	}
	for k := range rw.RenameFuncs {
		ks = append(ks, "func "+k)
	}
	for _, k := range rw.DeleteFuncs {
		ks = append(ks, "func "+k)
	}
	for _, k := range rw.DropImports {
		ks = append(ks, "import "+k)
	}
	sort.Strings(ks)
	return ks
}

// rewriteFile applies the rename and the matching rewrites to one file; a
// file nothing applies to is returned unchanged, byte for byte.
func rewriteFile(rel string, src []byte, spec CopySpec, counts []map[string]int) ([]byte, error) {
	var rules []int
	for i, rw := range spec.Rewrites {
		ok, err := path.Match(rw.Files, rel)
		if err != nil {
			return nil, err
		}
		if ok {
			rules = append(rules, i)
		}
	}
	rename := spec.NewPath != "" && spec.NewPath != spec.OldPath && bytes.Contains(src, []byte(`"`+spec.OldPath))
	if len(rules) == 0 && !rename {
		return src, nil
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, rel, src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	if rename {
		// Imports, and string literals naming the module's packages or
		// their symbols ("github.com/jmoiron/sqlx/reflectx.TestMustBe" in a
		// test's expected panic).
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			v, err := strconv.Unquote(lit.Value)
			if err == nil && (v == spec.OldPath || strings.HasPrefix(v, spec.OldPath+"/") || strings.HasPrefix(v, spec.OldPath+".")) {
				lit.Value = strconv.Quote(spec.NewPath + strings.TrimPrefix(v, spec.OldPath))
			}
			return true
		})
	}
	for _, i := range rules {
		applyRewrite(f, spec.Rewrites[i], counts[i])
	}
	// go/printer as gofmt configures it, but without gofmt's import
	// sorting, which would move lines.
	var out bytes.Buffer
	cfg := printer.Config{Mode: printer.UseSpaces | printer.TabIndent, Tabwidth: 8}
	if err := cfg.Fprint(&out, fset, f); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func applyRewrite(f *ast.File, rw Rewrite, count map[string]int) {
	usedBefore := selectorPrefixes(f)
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Recv != nil {
			continue
		}
		if slices.Contains(rw.DeleteFuncs, fd.Name.Name) {
			count["func "+fd.Name.Name]++
			fd.Name.Name = "_"
		} else if to, ok := rw.RenameFuncs[fd.Name.Name]; ok {
			count["func "+fd.Name.Name]++
			fd.Name.Name = to
		}
	}

	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		var name string
		switch fun := call.Fun.(type) {
		case *ast.Ident:
			name = fun.Name
		case *ast.SelectorExpr:
			if x, ok := fun.X.(*ast.Ident); ok {
				name = x.Name + "." + fun.Sel.Name
			}
		}
		if to, ok := rw.Calls[name]; ok && name != "" {
			count["call "+name]++
			call.Fun = &ast.Ident{NamePos: call.Fun.Pos(), Name: to}
		}
		return true
	})

	// An import the changes left unused — its name was used before and is
	// not any more — becomes a blank import, which needs no use.
	usedAfter := selectorPrefixes(f)
	for _, is := range f.Imports {
		p, _ := strconv.Unquote(is.Path.Value)
		name := path.Base(p)
		if is.Name != nil {
			name = is.Name.Name
		}
		switch {
		case slices.Contains(rw.DropImports, p):
			count["import "+p]++
			is.Name, is.Path.Value = blank(is), strconv.Quote("embed")
		case usedBefore[name] && !usedAfter[name]:
			is.Name = blank(is)
		}
	}
}

// blank returns "_" as the name of spec, at its position: the printer
// places lines by the positions of the nodes.
func blank(spec *ast.ImportSpec) *ast.Ident {
	return &ast.Ident{NamePos: spec.Path.Pos(), Name: "_"}
}

// selectorPrefixes returns the identifiers used as X in X.Sel.
func selectorPrefixes(f *ast.File) map[string]bool {
	used := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if x, ok := sel.X.(*ast.Ident); ok {
				used[x.Name] = true
			}
		}
		return true
	})
	return used
}
