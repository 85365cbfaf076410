package gitreceive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"
)

// repoPath is where an app's bare repository lives.
func (s *Server) repoPath(app string) string {
	return filepath.Join(s.cfg.DataDir, "repos", app+".git")
}

// ensureRepo creates the app's bare repository on first push and (re)writes
// its pre-receive hook, which calls back into this daemon through the local
// socket with the push's ID.
func (s *Server) ensureRepo(ctx context.Context, app string) (string, error) {
	dir := s.repoPath(app)
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			return "", fmt.Errorf("create repos dir: %w", err)
		}
		cmd := exec.CommandContext(ctx, "git", "init", "--quiet", "--bare", "--initial-branch=main", dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("git init %s: %w: %s", app, err, strings.TrimSpace(string(out)))
		}
	}
	hook := fmt.Sprintf("#!/bin/sh\n# Written by berth; runs the build and rollout of a push.\nexec %q --socket %q _hook pre-receive \"$BERTH_PUSH_ID\" \"$GIT_QUARANTINE_PATH\"\n",
		s.cfg.Executable, s.cfg.Socket)
	hookPath := filepath.Join(dir, "hooks", "pre-receive")
	if b, err := os.ReadFile(hookPath); err != nil || string(b) != hook {
		if err := os.MkdirAll(filepath.Dir(hookPath), 0o755); err != nil {
			return "", fmt.Errorf("create hooks dir: %w", err)
		}
		tmp := hookPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(hook), 0o755); err != nil {
			return "", fmt.Errorf("write pre-receive hook: %w", err)
		}
		if err := os.Rename(tmp, hookPath); err != nil {
			return "", fmt.Errorf("write pre-receive hook: %w", err)
		}
	}
	return dir, nil
}

// chainStorer reads objects from a push's quarantine directory first and from
// the repository second: inside pre-receive, the pushed objects are not yet
// in the repository (git moves them in only when the hook accepts).
type chainStorer struct {
	*filesystem.ObjectStorage // the repository; used for everything but reads of quarantined objects
	quarantine                *filesystem.ObjectStorage
}

func (c chainStorer) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	if c.quarantine != nil {
		if o, err := c.quarantine.EncodedObject(t, h); err == nil {
			return o, nil
		}
	}
	return c.ObjectStorage.EncodedObject(t, h)
}

func (c chainStorer) HasEncodedObject(h plumbing.Hash) error {
	if c.quarantine != nil && c.quarantine.HasEncodedObject(h) == nil {
		return nil
	}
	return c.ObjectStorage.HasEncodedObject(h)
}

func (c chainStorer) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	if c.quarantine != nil {
		if n, err := c.quarantine.EncodedObjectSize(h); err == nil {
			return n, nil
		}
	}
	return c.ObjectStorage.EncodedObjectSize(h)
}

// openObjects opens the repository's objects plus, when set, the objects of
// a push still in quarantine.
func openObjects(repoDir, quarantine string) (chainStorer, func(), error) {
	main := filesystem.NewObjectStorage(dotgit.New(osfs.New(repoDir)), cache.NewObjectLRUDefault())
	cs := chainStorer{ObjectStorage: main}
	cleanup := func() {}
	if quarantine != "" {
		// go-git wants a .git directory holding "objects"; give it one
		// whose objects is the quarantine directory.
		tmp, err := os.MkdirTemp("", "berth-quarantine-")
		if err != nil {
			return cs, cleanup, fmt.Errorf("open quarantine: %w", err)
		}
		cleanup = func() { os.RemoveAll(tmp) }
		if err := os.Symlink(quarantine, filepath.Join(tmp, "objects")); err != nil {
			cleanup()
			return cs, func() {}, fmt.Errorf("open quarantine: %w", err)
		}
		cs.quarantine = filesystem.NewObjectStorage(dotgit.New(osfs.New(tmp)), cache.NewObjectLRUDefault())
	}
	return cs, cleanup, nil
}

// maxContextBytes bounds the size of a checked-out build context.
const maxContextBytes = 2 << 30

// checkoutTree writes the tree of commit sha into dst (which must exist and
// be empty): regular files with their executable bit, symlinks as symlinks;
// submodules are skipped with a note to out.
func checkoutTree(repoDir, quarantine, sha, dst string, out io.Writer) (*object.Commit, error) {
	st, cleanup, err := openObjects(repoDir, quarantine)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	commit, err := object.GetCommit(st, plumbing.NewHash(sha))
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", shortSHA(sha), err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("read tree of %s: %w", shortSHA(sha), err)
	}
	// Everything is written through a Root: a symlink the tree made earlier
	// (x -> /etc) cannot carry a later entry (x/evil) out of dst.
	root, err := os.OpenRoot(dst)
	if err != nil {
		return nil, fmt.Errorf("open checkout dir: %w", err)
	}
	defer root.Close()
	var total int64
	seen := map[string]bool{}
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, entry, err := walker.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("walk tree of %s: %w", shortSHA(sha), err)
		}
		if !filepath.IsLocal(name) {
			return nil, fmt.Errorf("tree of %s: path %q leaves the repository", shortSHA(sha), name)
		}
		// git itself never writes two entries of one name; a hand-made tree
		// may.
		if seen[name] {
			return nil, fmt.Errorf("tree of %s: path %q appears twice", shortSHA(sha), name)
		}
		seen[name] = true
		switch entry.Mode {
		case filemode.Dir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return nil, fmt.Errorf("check out %s: %w", name, err)
			}
		case filemode.Submodule:
			fmt.Fprintf(out, "note: submodule %s is not checked out\n", name)
		case filemode.Symlink, filemode.Regular, filemode.Executable, filemode.Deprecated:
			blob, err := object.GetBlob(st, entry.Hash)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", name, err)
			}
			total += blob.Size
			if total > maxContextBytes {
				return nil, fmt.Errorf("check out %s: the source tree is larger than %d bytes", shortSHA(sha), maxContextBytes)
			}
			if err := writeBlob(root, blob, name, entry.Mode); err != nil {
				return nil, fmt.Errorf("check out %s: %w", name, err)
			}
		}
	}
	return commit, nil
}

// writeBlob writes one file or symlink of the tree at name below root.
func writeBlob(root *os.Root, blob *object.Blob, name string, mode filemode.FileMode) error {
	if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	r, err := blob.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	if mode == filemode.Symlink {
		b, err := io.ReadAll(io.LimitReader(r, 4096))
		if err != nil {
			return err
		}
		return root.Symlink(string(b), name)
	}
	perm := os.FileMode(0o644)
	if mode == filemode.Executable {
		perm = 0o755
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func shortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// AddAlternate is not supported: the chain only reads.
func (c chainStorer) AddAlternate(string) error { return errors.New("add alternate: not supported") }

// removeRepo deletes an app's repository (apps:destroy).
func (s *Server) removeRepo(app string) {
	if err := os.RemoveAll(s.repoPath(app)); err != nil {
		s.logger.Warn("remove repository", "app", app, "err", err)
	}
}
