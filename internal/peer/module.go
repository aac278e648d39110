package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// PoolsafePath is this repository's module path.
const PoolsafePath = "github.com/scrapersky/poolsafe"

// RepoRoot returns the directory of the main module the go command sees
// from the current directory (the repository, when run by go test).
func RepoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// ModuleDir returns the module cache directory of module at the version
// the repository's go.mod selects, downloading it through the module proxy
// if the cache lacks it.
func ModuleDir(ctx context.Context, root, module string) (dir, version string, err error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("go mod download %s: %v: %s%s", module, err, out, stderr.String())
	}
	var info struct{ Dir, Version, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", "", fmt.Errorf("go mod download %s: %v", module, err)
	}
	if info.Error != "" || info.Dir == "" {
		return "", "", fmt.Errorf("go mod download %s: %s", module, info.Error)
	}
	return info.Dir, info.Version, nil
}

var goLine = regexp.MustCompile(`(?m)^go [0-9.]+\s*$`)

// WriteGoMod makes dir — a copy of an upstream module — a module that
// requires poolsafe from the repository at root. A renamed copy gets a
// go.mod of its own (the go command finds the rest with -mod=mod); a copy
// under its own path keeps upstream's requirements. go.sum starts as
// upstream's and the repository's together, so that no checksum needs the
// network.
func WriteGoMod(root, dir, upstreamDir, newPath string) error {
	rootMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return err
	}
	goVersion := goLine.Find(rootMod)
	if goVersion == nil {
		return fmt.Errorf("%s/go.mod has no go line", root)
	}
	var mod []byte
	if newPath != "" {
		mod = fmt.Appendf(nil, "module %s\n\n%s\n", newPath, bytes.TrimSpace(goVersion))
	} else {
		mod, err = os.ReadFile(filepath.Join(upstreamDir, "go.mod"))
		if err != nil {
			return err
		}
		// poolsafe's go version is the floor of any module requiring it.
		mod = goLine.ReplaceAll(mod, goVersion)
	}
	mod = fmt.Appendf(mod, "\nrequire %s v0.0.0\n\nreplace %s => %s\n", PoolsafePath, PoolsafePath, root)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), mod, 0o644); err != nil {
		return err
	}
	var sum []byte
	for _, f := range []string{filepath.Join(upstreamDir, "go.sum"), filepath.Join(root, "go.sum")} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		sum = append(sum, b...)
	}
	return os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644)
}

// GoEnv returns the environment for go commands in a copied module: the
// current one, with -mod=mod added to GOFLAGS (the copy's go.mod and go.sum
// are completed as needed, through GOPROXY), no workspace and no libpq
// variables (PG*: the suites set what they need), plus extra.
func GoEnv(extra ...string) []string {
	var env []string
	flags := "-mod=mod"
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "GOFLAGS":
			for _, f := range strings.Fields(v) {
				if !strings.HasPrefix(f, "-mod=") {
					flags = f + " " + flags
				}
			}
			continue
		case "GOWORK":
			continue
		}
		if strings.HasPrefix(k, "PG") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "GOFLAGS="+flags, "GOWORK=off")
	return append(env, extra...)
}
