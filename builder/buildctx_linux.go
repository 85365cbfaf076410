package builder

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/sys/unix"
)

// buildContext is the app's source directory with its .dockerignore.
type buildContext struct {
	dir     string
	ignore  *patternmatcher.PatternMatcher
	hasRule bool
}

func openBuildContext(dir string) (*buildContext, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolve build context: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("open build context: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open build context: %s is not a directory", abs)
	}
	bc := &buildContext{dir: abs}
	f, err := os.Open(filepath.Join(abs, ".dockerignore"))
	if err == nil {
		defer f.Close()
		pats, err := ignorefile.ReadAll(f)
		if err != nil {
			return nil, fmt.Errorf("read .dockerignore: %w", err)
		}
		if bc.ignore, err = patternmatcher.New(pats); err != nil {
			return nil, fmt.Errorf("parse .dockerignore: %w", err)
		}
		bc.hasRule = len(pats) > 0
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("open .dockerignore: %w", err)
	}
	return bc, nil
}

// defaultIgnore applies patterns when the app has no .dockerignore of its
// own (buildpack builds leave the repository's .git out of the image).
func (bc *buildContext) defaultIgnore(patterns ...string) {
	if bc.hasRule {
		return
	}
	m, err := patternmatcher.New(patterns)
	if err != nil {
		return
	}
	bc.ignore, bc.hasRule = m, true
}

// readFile reads a regular file of the context (the Dockerfile, the
// Procfile) without following a symlink, so a pushed repository cannot make
// the builder read, and echo in errors, a file of the host.
func (bc *buildContext) readFile(rel string) ([]byte, error) {
	p, err := safeJoin(bc.dir, rel)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("read %s: it is a symlink; the builder reads only regular files from the build context", rel)
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", rel, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: not a regular file", rel)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", rel, err)
	}
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("read %s: larger than 1 MiB", rel)
	}
	return b, nil
}

// excluded reports whether rel (slash-separated, relative to the context)
// is left out by .dockerignore.
func (bc *buildContext) excluded(rel string) bool {
	if !bc.hasRule || rel == "" || rel == "." {
		return false
	}
	m, err := bc.ignore.MatchesOrParentMatches(filepath.ToSlash(rel))
	return err == nil && m
}

// skipFunc returns a copyOptions.skip for a source at rel.
func (bc *buildContext) skipFunc(rel string) func(string, bool) bool {
	if !bc.hasRule {
		return nil
	}
	return func(sub string, _ bool) bool { return bc.excluded(filepath.Join(rel, sub)) }
}

// expand resolves COPY/ADD sources (with * ? [ ] wildcards) to context
// paths relative to the context root, none outside it, none excluded.
func (bc *buildContext) expand(srcs []string) ([]string, error) {
	var out []string
	for _, src := range srcs {
		clean := strings.TrimPrefix(filepath.Clean("/"+src), "/")
		if clean == "" {
			clean = "."
		}
		if strings.ContainsAny(clean, "*?[") {
			matches, err := filepath.Glob(filepath.Join(bc.dir, clean))
			if err != nil {
				return nil, fmt.Errorf("bad pattern %q: %w", src, err)
			}
			n := 0
			for _, m := range matches {
				rel, err := filepath.Rel(bc.dir, m)
				if err != nil || strings.HasPrefix(rel, "..") || bc.excluded(rel) {
					continue
				}
				// Glob follows symlinked directories; a match must not.
				if _, err := safeJoin(bc.dir, rel); err != nil {
					return nil, err
				}
				out = append(out, rel)
				n++
			}
			if n == 0 {
				return nil, fmt.Errorf("no source files were specified by %q", src)
			}
			continue
		}
		if bc.excluded(clean) {
			return nil, fmt.Errorf("%s is excluded by .dockerignore", src)
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(bc.dir, clean), &st); err != nil {
			return nil, fmt.Errorf("%s: not found in the build context", src)
		}
		// The source path's own directories must not be symlinks out of the
		// context.
		if _, err := safeJoin(bc.dir, clean); err != nil {
			return nil, err
		}
		out = append(out, clean)
	}
	return out, nil
}

// hash digests the sources' names, types, permissions and contents (not
// their owners or times, which COPY does not keep), honouring
// .dockerignore, so the cache key changes exactly when what COPY would
// write changes.
func (bc *buildContext) hash(rels []string) (string, error) {
	h := sha256.New()
	for _, rel := range rels {
		if err := bc.hashEntry(h, rel); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (bc *buildContext) hashEntry(h hash.Hash, rel string) error {
	p := filepath.Join(bc.dir, rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return fmt.Errorf("stat %s: %w", rel, err)
	}
	var num [8]byte
	h.Write([]byte(rel))
	h.Write([]byte{0})
	binary.LittleEndian.PutUint64(num[:], uint64(st.Mode))
	h.Write(num[:])
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		binary.LittleEndian.PutUint64(num[:], uint64(st.Size))
		h.Write(num[:])
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("open %s: %w", rel, err)
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", rel, err)
		}
	case unix.S_IFLNK:
		t, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("readlink %s: %w", rel, err)
		}
		h.Write([]byte(t))
	case unix.S_IFDIR:
		names, err := readDirNames(p)
		if err != nil {
			return err
		}
		sort.Strings(names)
		for _, n := range names {
			crel := filepath.Join(rel, n)
			if bc.excluded(crel) {
				continue
			}
			if err := bc.hashEntry(h, crel); err != nil {
				return err
			}
		}
	}
	h.Write([]byte{0})
	return nil
}
