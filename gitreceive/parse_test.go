package gitreceive

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	specs := builtinSpecs()
	tests := []struct {
		name     string
		args     []string
		wantCmd  string
		wantArgs []string
		wantErr  string
		check    func(t *testing.T, inv *Invocation)
	}{
		{name: "empty is help", args: nil, wantCmd: "help"},
		{name: "alias", args: []string{"apps"}, wantCmd: "apps:list"},
		{name: "create", args: []string{"apps:create", "myapp"}, wantCmd: "apps:create", wantArgs: []string{"myapp"}},
		{name: "unknown command", args: []string{"rm", "-rf", "/"}, wantErr: `unknown command "rm"`},
		{name: "missing argument", args: []string{"apps:create"}, wantErr: "missing arguments; usage: apps:create APP"},
		{name: "extra argument", args: []string{"apps:create", "a", "b"}, wantErr: `unexpected argument "b"`},
		{name: "flags after positional", args: []string{"logs", "myapp", "-t", "-n", "5", "-p", "web"}, wantCmd: "logs", wantArgs: []string{"myapp"},
			check: func(t *testing.T, inv *Invocation) {
				if !inv.Bool("t") || inv.Int("n") != 5 || inv.String("p") != "web" {
					t.Errorf("flags: t=%v n=%d p=%q", inv.Bool("t"), inv.Int("n"), inv.String("p"))
				}
			}},
		{name: "unknown flag", args: []string{"logs", "myapp", "--bogus"}, wantErr: "flag provided but not defined: -bogus"},
		{name: "bad flag value", args: []string{"logs", "myapp", "-n", "many"}, wantErr: `invalid value "many" for flag -n`},
		{name: "double dash keeps dashes", args: []string{"config:unset", "myapp", "--", "-X"}, wantCmd: "config:unset", wantArgs: []string{"myapp", "-X"}},
		{name: "run passes the command through", args: []string{"run", "myapp", "ls", "-la", "--", "x"}, wantCmd: "run", wantArgs: []string{"myapp", "ls", "-la", "--", "x"}},
		{name: "run drops a -- right after the app", args: []string{"run", "myapp", "--", "ls", "--", "x"}, wantCmd: "run", wantArgs: []string{"myapp", "ls", "--", "x"}},
		{name: "run takes a command of only --", args: []string{"run", "myapp", "--"}, wantErr: "missing arguments"},
		{name: "destroy force", args: []string{"apps:destroy", "--force", "myapp"}, wantCmd: "apps:destroy", wantArgs: []string{"myapp"},
			check: func(t *testing.T, inv *Invocation) {
				if !inv.Bool("force") {
					t.Error("force not set")
				}
			}},
		{name: "NUL byte", args: []string{"apps:create", "a\x00b"}, wantErr: "NUL"},
		{name: "huge argument", args: []string{"apps:create", strings.Repeat("a", maxArgLen+1)}, wantErr: "too long"},
		{name: "too many arguments", args: append([]string{"config:set", "app"}, make([]string, maxArgs)...), wantErr: "too many arguments"},
		{name: "resource flags", args: []string{"resource:limit", "myapp", "--memory", "512m", "-p", "worker"}, wantCmd: "resource:limit", wantArgs: []string{"myapp"},
			check: func(t *testing.T, inv *Invocation) {
				if inv.String("memory") != "512m" || inv.String("p") != "worker" {
					t.Errorf("memory=%q p=%q", inv.String("memory"), inv.String("p"))
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := parse(specs, tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				if !errors.Is(err, ErrUsage) {
					t.Errorf("err %v is not ErrUsage", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if inv.Name() != tt.wantCmd {
				t.Errorf("command = %q, want %q", inv.Name(), tt.wantCmd)
			}
			if tt.wantArgs != nil && strings.Join(inv.Args, "\x00") != strings.Join(tt.wantArgs, "\x00") {
				t.Errorf("args = %q, want %q", inv.Args, tt.wantArgs)
			}
			if tt.check != nil {
				tt.check(t, inv)
			}
		})
	}
}

func TestHelpListsEveryCommand(t *testing.T) {
	specs := builtinSpecs()
	delete(specs, "_hook")
	text := helpText(specs, true)
	for name, s := range specs {
		if !strings.Contains(text, name) || !strings.Contains(text, s.summary) {
			t.Errorf("help lacks %s", name)
		}
	}
	if strings.Contains(helpText(specs, false), "users:add") {
		t.Error("members' help lists admin commands")
	}
}

func TestRepoApp(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{name: "slash", in: "/myapp", want: "myapp"},
		{name: "dot git", in: "myapp.git", want: "myapp"},
		{name: "home", in: "~/myapp.git", want: "myapp"},
		{name: "traversal stays invalid", in: "/../etc", want: "../etc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := repoApp(tt.in); got != tt.want {
				t.Errorf("repoApp(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseRefUpdates(t *testing.T) {
	a := strings.Repeat("a", 40)
	b := strings.Repeat("b", 40)
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr bool
	}{
		{name: "one", in: a + " " + b + " refs/heads/main\n", want: 1},
		{name: "two", in: a + " " + b + " refs/heads/main\n" + zeroSHA + " " + b + " refs/heads/dev\n", want: 2},
		{name: "malformed sha", in: "xyz " + b + " refs/heads/main\n", wantErr: true},
		{name: "not a ref", in: a + " " + b + " main\n", wantErr: true},
		{name: "extra field", in: a + " " + b + " refs/heads/main x\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ups, err := parseRefUpdates(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if len(ups) != tt.want {
				t.Errorf("got %d updates, want %d", len(ups), tt.want)
			}
		})
	}
}

func TestIsDeployRef(t *testing.T) {
	tests := []struct {
		name, ref, branch string
		want              bool
	}{
		{name: "main", ref: "refs/heads/main", branch: "main", want: true},
		{name: "master while main", ref: "refs/heads/master", branch: "main", want: true},
		{name: "other branch", ref: "refs/heads/dev", branch: "main", want: false},
		{name: "custom branch", ref: "refs/heads/prod", branch: "prod", want: true},
		{name: "master not with custom", ref: "refs/heads/master", branch: "prod", want: false},
		{name: "tag", ref: "refs/tags/main", branch: "main", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isDeployRef(tt.ref, tt.branch); got != tt.want {
				t.Errorf("isDeployRef(%q, %q) = %v", tt.ref, tt.branch, got)
			}
		})
	}
}

// FuzzParse feeds arbitrary command lines, split as an SSH server splits
// them, to the parser: it must never panic and must either fail with a usage
// error or name a known command.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"apps:create myapp", "logs app -t -n 10", "run app sh -c 'echo hi'", "config:set app A=1 B=2",
		"ps:scale app web=3", "../../etc/passwd", "apps:create $(reboot)", "-- -- --", "help apps:create", "releases:rollback app v1"} {
		f.Add(s)
	}
	specs := builtinSpecs()
	f.Fuzz(func(t *testing.T, line string) {
		inv, err := parse(specs, strings.Fields(line))
		if err != nil {
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("non-usage error %v", err)
			}
			return
		}
		if _, ok := specs[inv.Name()]; !ok {
			t.Fatalf("parsed to unknown command %q", inv.Name())
		}
		if len(inv.Args) < inv.spec.minArgs || (inv.spec.maxArgs >= 0 && len(inv.Args) > inv.spec.maxArgs) {
			t.Fatalf("%s: %d args outside [%d,%d]", inv.Name(), len(inv.Args), inv.spec.minArgs, inv.spec.maxArgs)
		}
	})
}
