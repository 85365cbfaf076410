package builder

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Buildpack is a recipe for apps without a Dockerfile: how to recognise
// one, the Debian packages of its runtime (installed in one layer that
// every app of the language shares), and how to build the app.
type Buildpack struct {
	// Name is the language, e.g. "python".
	Name string
	// Detect names the file whose presence selects the buildpack.
	Detect string
	// Packages are the Debian packages of the runtime layer.
	Packages []string
	// Build is the shell command run in /app after the source is copied;
	// empty means nothing to build.
	Build string
	// Env is added to the image's environment.
	Env []KeyValue
}

// Buildpacks returns the built-in buildpacks in the order they are tried;
// the first whose Detect file exists wins.
func Buildpacks() []Buildpack {
	return []Buildpack{
		{
			Name: "go", Detect: "go.mod",
			Packages: []string{"golang-go", "ca-certificates", "git"},
			Build:    "mkdir -p /app/bin && GOFLAGS=-mod=mod GOBIN=/app/bin go install ./...",
			Env:      []KeyValue{{"PATH", "/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		},
		{
			Name: "node", Detect: "package.json",
			Packages: []string{"nodejs", "npm", "ca-certificates"},
			Build:    "npm install --omit=dev --no-audit --no-fund",
			Env:      []KeyValue{{"NODE_ENV", "production"}, {"PATH", "/app/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		},
		{
			Name: "python", Detect: "requirements.txt",
			Packages: []string{"python3", "python3-venv", "ca-certificates"},
			// pip goes into the venv only when there is something to
			// install: bootstrapping it is most of the step's time.
			Build: "if grep -qvE '^[[:space:]]*(#|$)' requirements.txt; then python3 -m venv /app/.venv && " +
				"/app/.venv/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt; " +
				"else python3 -m venv --without-pip /app/.venv; fi",
			Env: []KeyValue{{"PATH", "/app/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, {"PYTHONUNBUFFERED", "1"}},
		},
		{
			Name: "static", Detect: "index.html",
			Packages: []string{"busybox"},
		},
	}
}

// DetectBuildpack picks the buildpack for the app in dir and reads its
// Procfile, which must exist and be valid.
func DetectBuildpack(dir string) (Buildpack, map[string]string, error) {
	var bp Buildpack
	found := false
	for _, b := range Buildpacks() {
		if fi, err := os.Stat(filepath.Join(dir, b.Detect)); err == nil && fi.Mode().IsRegular() {
			bp, found = b, true
			break
		}
	}
	if !found {
		return bp, nil, fmt.Errorf("%w: add a Dockerfile, or one of go.mod, package.json, requirements.txt, index.html", ErrNoBuildpack)
	}
	pf := filepath.Join(dir, "Procfile")
	if fi, err := os.Lstat(pf); err == nil && !fi.Mode().IsRegular() {
		return bp, nil, fmt.Errorf("%w: Procfile must be a regular file, not a symlink or directory", ErrProcfile)
	}
	f, err := os.Open(pf)
	if os.IsNotExist(err) {
		return bp, nil, fmt.Errorf("%w: %s app has no Procfile; add one with a line like \"web: <command>\"", ErrProcfile, bp.Name)
	}
	if err != nil {
		return bp, nil, fmt.Errorf("open Procfile: %w", err)
	}
	defer f.Close()
	procs, err := ParseProcfile(f)
	if err != nil {
		return bp, nil, err
	}
	return bp, procs, nil
}

// Dockerfile renders the buildpack as a Dockerfile on base. The runtime
// RUN line depends only on the buildpack, so its cache key, and so its
// layer, is the same for every app of the language on the same base.
func (bp Buildpack) Dockerfile(base string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "FROM %s\n", base)
	fmt.Fprintf(&b, "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends %s >/dev/null && rm -rf /var/lib/apt/lists/*\n",
		strings.Join(bp.Packages, " "))
	b.WriteString("WORKDIR /app\n")
	b.WriteString("COPY . /app\n")
	if bp.Build != "" {
		fmt.Fprintf(&b, "RUN %s\n", bp.Build)
	}
	for _, kv := range bp.Env {
		fmt.Fprintf(&b, "ENV %s=%q\n", kv.Key, kv.Value)
	}
	b.WriteString("ENV PORT=5000\nEXPOSE 5000\n")
	return b.String()
}
