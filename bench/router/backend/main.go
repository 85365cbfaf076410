// Command backend is the router benchmark's backend: a minimal net/http
// handler that writes 12 bytes.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("listen", "127.0.0.1:18080", "listen address")
	flag.Parse()
	body := []byte("hello world\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(body) //nolint:errcheck // a benchmark backend
	})
	if err := http.ListenAndServe(*addr, h); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
