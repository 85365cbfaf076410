package gitreceive

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthhq/berth/platform"
)

// gitIn runs git in dir with stdin and returns its trimmed output.
func gitIn(t *testing.T, dir string, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// treeEntry is one raw entry of a git tree object.
func treeEntry(t *testing.T, mode, name, sha string) []byte {
	t.Helper()
	h, err := hex.DecodeString(sha)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(mode+" "+name+"\x00"), h...)
}

// TestCheckoutStaysInside checks out hand-made trees that git itself never
// writes, which try to place a file outside the checkout: through a symlink
// made by an earlier entry of the same name, or by that name twice.
func TestCheckoutStaysInside(t *testing.T) {
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo.git")
	outside := filepath.Join(tmp, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	gitIn(t, tmp, nil, "init", "--quiet", "--bare", repo)
	link := gitIn(t, repo, []byte(outside), "hash-object", "-w", "--stdin")
	evil := gitIn(t, repo, []byte("* * * * * root id > /tmp/owned\n"), "hash-object", "-w", "--stdin")
	sub := gitIn(t, repo, treeEntry(t, "100644", "evil", evil), "hash-object", "-w", "-t", "tree", "--literally", "--stdin")
	for _, tc := range []struct {
		name string
		tree []byte
		want string
	}{
		{"symlink then directory of one name", append(treeEntry(t, "120000", "x", link), treeEntry(t, "40000", "x", sub)...), "twice"},
		{"absolute symlink as a directory", append(treeEntry(t, "120000", "x", link), treeEntry(t, "40000", "y", sub)...), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := gitIn(t, repo, tc.tree, "hash-object", "-w", "-t", "tree", "--literally", "--stdin")
			commit := gitIn(t, repo, nil, "commit-tree", tree, "-m", "escape")
			dst := filepath.Join(tmp, "co-"+commit[:8])
			if err := os.Mkdir(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			_, err := checkoutTree(repo, "", commit, dst, io.Discard)
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Fatalf("the checkout wrote outside its directory: %v (err %v)", ents, err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("checkout: %v, want an error saying %q", err, tc.want)
			}
			if tc.want == "" && err != nil {
				t.Errorf("checkout of a harmless tree: %v", err)
			}
		})
	}
}

// TestPushOfMalformedTreeRefused pushes such a tree with the stock git over
// ssh: receive-pack checks every object and refuses it before any hook runs.
func TestPushOfMalformedTreeRefused(t *testing.T) {
	e := newSSHEnv(t, nil)
	e.user("alice", platform.RoleMember)
	work := filepath.Join(e.dir, "work")
	gitIn(t, e.dir, nil, "init", "--quiet", "-b", "main", work)
	link := gitIn(t, work, []byte("/etc/cron.d"), "hash-object", "-w", "--stdin")
	evil := gitIn(t, work, []byte("x\n"), "hash-object", "-w", "--stdin")
	sub := gitIn(t, work, treeEntry(t, "100644", "evil", evil), "hash-object", "-w", "-t", "tree", "--literally", "--stdin")
	tree := gitIn(t, work, append(treeEntry(t, "120000", "x", link), treeEntry(t, "40000", "x", sub)...), "hash-object", "-w", "-t", "tree", "--literally", "--stdin")
	commit := gitIn(t, work, nil, "commit-tree", tree, "-m", "escape")
	cmd := exec.Command("git", "push", fmt.Sprintf("ssh://berth@127.0.0.1:%s/alpha", e.port), commit+":refs/heads/main")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "GIT_SSH_COMMAND=ssh "+strings.Join(e.sshArgs(e.keys["alice"]), " "))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "duplicate") || strings.Contains(string(out), "hook") {
		t.Fatalf("push of a tree with a duplicate entry: %v\n%s", err, out)
	}
}
