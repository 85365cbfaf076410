// Command berth is the berth PaaS in one binary: `berth serve` runs the
// daemon; `berth COMMAND ARGS…` on the host runs a command in the running
// daemon over its root-only socket, the same command set as
// `ssh berth@host COMMAND ARGS…`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/control"
	"github.com/berthhq/berth/internal/tty"
	"golang.org/x/term"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	// The engine re-execs this binary as container init and helpers; those
	// roles take over here and never return.
	engine.MaybeInit()
	code, err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "berth:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// run is the whole program; it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) (int, error) {
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			fset := flag.NewFlagSet("berth serve", flag.ContinueOnError)
			fset.SetOutput(stderr)
			cfg, rest, err := loadConfig(fset, args[1:], getenv)
			if err != nil {
				if errors.Is(err, flag.ErrHelp) {
					return 0, nil
				}
				return 2, err
			}
			if len(rest) > 0 {
				return 2, fmt.Errorf("serve: unexpected argument %q", rest[0])
			}
			return 0, serve(cfg, stderr)
		case "cleanup":
			fset := flag.NewFlagSet("berth cleanup", flag.ContinueOnError)
			fset.SetOutput(stderr)
			cfg, _, err := loadConfig(fset, args[1:], getenv)
			if err != nil {
				return 2, err
			}
			return 0, cleanup(context.Background(), cfg, stdout)
		case "--version", "-version":
			fmt.Fprintln(stdout, "berth", version)
			return 0, nil
		}
	}
	// Everything else is a command for the daemon. Global flags may come
	// first: berth [--socket PATH] COMMAND ARGS…
	fset := flag.NewFlagSet("berth", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() {
		fmt.Fprintln(stderr, "usage: berth serve [flags]      run the daemon (berth serve -h lists the flags)")
		fmt.Fprintln(stderr, "       berth cleanup [flags]    after the daemon stopped: remove leftovers and, with no container left, the bridge")
		fmt.Fprintln(stderr, "       berth COMMAND [ARGS…]    run a command in the running daemon (berth help lists them)")
	}
	cfg, rest, err := loadConfig(fset, args, getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	if len(rest) == 0 {
		rest = []string{"help"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	req := control.Request{Args: rest}
	var resize <-chan tty.Size
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		req.TTY = true
		var size tty.Size
		size, resize = followTerminal(ctx, int(f.Fd()))
		req.Width, req.Height = int(size.Width), int(size.Height)
		if rest[0] == "run" {
			// As `heroku run` and `ssh -t` do: keys, Ctrl-C included, go to
			// the one-off's terminal, which echoes and signals for itself.
			old, err := term.MakeRaw(int(f.Fd()))
			if err != nil {
				return 1, fmt.Errorf("set terminal to raw mode: %w", err)
			}
			defer term.Restore(int(f.Fd()), old) //nolint:errcheck // best effort on the way out
		}
	}
	return control.Run(ctx, cfg.Socket, req, stdin, stdout, stderr, resize)
}

// followTerminal returns the size of the terminal fd is on and, until ctx
// ends, its size after each SIGWINCH, so that a command run on it (berth
// run) fits the window as `ssh -t` would make it. A size the terminal does
// not report is the zero Size: the daemon leaves the default.
func followTerminal(ctx context.Context, fd int) (tty.Size, <-chan tty.Size) {
	size := func() tty.Size {
		w, h, err := term.GetSize(fd)
		if err != nil {
			return tty.Size{}
		}
		return tty.SizeOf(w, h)
	}
	// Asked for before the first size is read, so no change is missed.
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	resize := tty.NewResize()
	go func() {
		defer signal.Stop(winch)
		for {
			select {
			case <-winch:
				if s := size(); s.Valid() {
					tty.Send(resize, s)
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return size(), resize
}
