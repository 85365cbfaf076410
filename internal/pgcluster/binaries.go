package pgcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Binaries is one installed PostgreSQL server version.
type Binaries struct {
	// Dir holds initdb and postgres.
	Dir string
	// Major is the major version, e.g. 15.
	Major int
}

// Postgres returns the path of the postgres server binary.
func (b Binaries) Postgres() string { return filepath.Join(b.Dir, "postgres") }

// Initdb returns the path of the initdb binary.
func (b Binaries) Initdb() string { return filepath.Join(b.Dir, "initdb") }

// debianRoot is where Debian and Ubuntu install versioned server binaries.
const debianRoot = "/usr/lib/postgresql"

var versionRe = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// FindBinaries lists the PostgreSQL server installations on the host, newest
// first: Debian's /usr/lib/postgresql/*/bin, then the directory of a postgres
// found on PATH. The places it looked are returned too, for error messages.
func FindBinaries() (found []Binaries, looked []string) {
	seen := map[string]bool{}
	add := func(dir string, major int) {
		if seen[dir] {
			return
		}
		for _, name := range []string{"postgres", "initdb"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				return
			}
		}
		seen[dir] = true
		found = append(found, Binaries{Dir: dir, Major: major})
	}

	looked = append(looked, filepath.Join(debianRoot, "*", "bin"))
	entries, _ := os.ReadDir(debianRoot)
	for _, e := range entries {
		major, err := strconv.Atoi(strings.SplitN(e.Name(), ".", 2)[0])
		if err != nil {
			continue
		}
		add(filepath.Join(debianRoot, e.Name(), "bin"), major)
	}

	looked = append(looked, "PATH")
	if p, err := exec.LookPath("postgres"); err == nil {
		if dir, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
			if major, err := binaryMajor(filepath.Join(dir, "postgres")); err == nil {
				add(dir, major)
			}
		}
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].Major > found[j].Major })
	return found, looked
}

// binaryMajor asks a postgres binary for its major version.
func binaryMajor(postgres string) (int, error) {
	out, err := exec.Command(postgres, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("run %s --version: %w", postgres, err)
	}
	m := versionRe.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("parse version of %s: %q", postgres, strings.TrimSpace(string(out)))
	}
	return strconv.Atoi(string(m[1]))
}

// chooseBinaries picks the newest installation, or the one of major version
// want when want is not zero (an existing cluster can only be run by the
// version that made it).
func chooseBinaries(want int) (Binaries, error) {
	found, looked := FindBinaries()
	if len(found) == 0 {
		return Binaries{}, fmt.Errorf("%w (looked in %s): install the postgresql package (scripts/deps.sh) or set BERTH_DATABASE_URL",
			ErrNoBinaries, strings.Join(looked, ", "))
	}
	if want == 0 {
		return found[0], nil
	}
	for _, b := range found {
		if b.Major == want {
			return b, nil
		}
	}
	var have []string
	for _, b := range found {
		have = append(have, strconv.Itoa(b.Major))
	}
	return Binaries{}, fmt.Errorf("%w for version %d (found %s): the cluster was made by PostgreSQL %d; install postgresql-%d or upgrade the cluster with pg_upgrade",
		ErrNoBinaries, want, strings.Join(have, ", "), want, want)
}
