package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Check is one startup check of a new instance, from app.json
// "healthchecks" or a CHECKS file.
type Check struct {
	// Name describes the check in messages.
	Name string
	// Path is the HTTP path requested from the instance; empty for a
	// command check.
	Path string
	// Content, when set, must appear in the response body.
	Content string
	// Command, when set, is run inside the instance and must exit 0.
	Command []string
	// Attempts is how many times the check is tried before it fails.
	Attempts int
	// Timeout bounds one attempt.
	Timeout time.Duration
	// Wait is the pause between attempts.
	Wait time.Duration
	// InitialDelay is the pause before the first attempt.
	InitialDelay time.Duration
}

const (
	defaultCheckAttempts = 3
	defaultCheckTimeout  = 5 * time.Second
	defaultCheckWait     = time.Second
)

func (c *Check) setDefaults() {
	if c.Attempts <= 0 {
		c.Attempts = defaultCheckAttempts
	}
	if c.Timeout <= 0 {
		c.Timeout = defaultCheckTimeout
	}
	if c.Wait <= 0 {
		c.Wait = defaultCheckWait
	}
	if c.Name == "" {
		if len(c.Command) > 0 {
			c.Name = "command " + strings.Join(c.Command, " ")
		} else {
			c.Name = "GET " + c.Path
		}
	}
}

// ParseChecksFile parses a Dokku-style CHECKS file: WAIT=, TIMEOUT= and
// ATTEMPTS= settings (seconds and a count) followed by one check per line,
// "PATH [EXPECTED CONTENT]"; a path written "//host/path" is requested as
// "/path". Blank lines and # comments are ignored.
func ParseChecksFile(b []byte) ([]Check, error) {
	var (
		checks []Check
		set    Check
	)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "/") {
			num, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || num < 0 {
				return nil, fmt.Errorf("%w: CHECKS line %d: %s wants a whole number, got %q", ErrInvalidChecks, n, k, v)
			}
			switch strings.TrimSpace(k) {
			case "WAIT":
				set.InitialDelay = time.Duration(num) * time.Second
			case "TIMEOUT":
				set.Timeout = time.Duration(num) * time.Second
			case "ATTEMPTS":
				set.Attempts = num
			default:
				return nil, fmt.Errorf("%w: CHECKS line %d: unknown setting %q (want WAIT, TIMEOUT or ATTEMPTS)", ErrInvalidChecks, n, k)
			}
			continue
		}
		p, content, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("%w: CHECKS line %d: %q does not start with a path like /health", ErrInvalidChecks, n, line)
		}
		if rest, ok := strings.CutPrefix(p, "//"); ok {
			_, after, found := strings.Cut(rest, "/")
			p = "/" + after
			if !found {
				p = "/"
			}
		}
		checks = append(checks, Check{Path: p, Content: strings.TrimSpace(content)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: CHECKS line %d: %v", ErrInvalidChecks, n+1, err)
	}
	for i := range checks {
		checks[i].Attempts, checks[i].Timeout, checks[i].InitialDelay = set.Attempts, set.Timeout, set.InitialDelay
		checks[i].setDefaults()
	}
	return checks, nil
}

// appJSONCheck is one entry of app.json "healthchecks" (Dokku's format;
// durations in seconds).
type appJSONCheck struct {
	Type         string          `json:"type"`
	Name         string          `json:"name"`
	Path         string          `json:"path"`
	Content      string          `json:"content"`
	Command      json.RawMessage `json:"command"`
	Attempts     int             `json:"attempts"`
	Timeout      float64         `json:"timeout"`
	Wait         float64         `json:"wait"`
	InitialDelay float64         `json:"initialDelay"`
}

// ParseAppJSONChecks returns the startup checks of one process type from an
// app.json document; liveness and readiness entries are treated as startup
// checks too, since berth checks only at start. It returns nil when the
// document has none.
func ParseAppJSONChecks(b []byte, processType string) ([]Check, error) {
	var doc struct {
		Healthchecks map[string][]appJSONCheck `json:"healthchecks"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: app.json: %v", ErrInvalidChecks, err)
	}
	var out []Check
	for i, a := range doc.Healthchecks[processType] {
		switch a.Type {
		case "", "startup", "readiness", "liveness":
		default:
			return nil, fmt.Errorf("%w: app.json healthchecks.%s[%d]: unknown type %q", ErrInvalidChecks, processType, i, a.Type)
		}
		c := Check{
			Name:         a.Name,
			Path:         a.Path,
			Content:      a.Content,
			Attempts:     a.Attempts,
			Timeout:      seconds(a.Timeout),
			Wait:         seconds(a.Wait),
			InitialDelay: seconds(a.InitialDelay),
		}
		if len(a.Command) > 0 && string(a.Command) != "null" {
			var s string
			if err := json.Unmarshal(a.Command, &s); err == nil {
				c.Command = []string{"/bin/sh", "-c", s}
			} else if err := json.Unmarshal(a.Command, &c.Command); err != nil {
				return nil, fmt.Errorf("%w: app.json healthchecks.%s[%d].command: want a string or a list of strings", ErrInvalidChecks, processType, i)
			}
		}
		if c.Path == "" && len(c.Command) == 0 {
			c.Path = "/"
		}
		if c.Path != "" && !strings.HasPrefix(c.Path, "/") {
			return nil, fmt.Errorf("%w: app.json healthchecks.%s[%d].path %q must start with /", ErrInvalidChecks, processType, i, c.Path)
		}
		c.setDefaults()
		out = append(out, c)
	}
	return out, nil
}

func seconds(f float64) time.Duration {
	if f <= 0 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

// checksFor returns the checks of a process type: app.json when it has any,
// else the CHECKS file (web only), else none (the default check applies).
func checksFor(img *Image, processType string) ([]Check, error) {
	if len(img.AppJSON) > 0 {
		cs, err := ParseAppJSONChecks(img.AppJSON, processType)
		if err != nil {
			return nil, err
		}
		if len(cs) > 0 {
			return cs, nil
		}
	}
	if processType == "web" && len(img.Checks) > 0 {
		return ParseChecksFile(img.Checks)
	}
	return nil, nil
}

// probeHTTP sends one GET to addr and returns an error unless the instance
// answered (with any status when want is nil; otherwise want decides).
func probeHTTP(ctx context.Context, client *http.Client, addr, host, path string, want func(status int, body []byte) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return fmt.Errorf("make request: %w", err)
	}
	req.Host = host
	req.Header.Set("User-Agent", "berth-healthcheck")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if want == nil {
		return nil
	}
	return want(resp.StatusCode, body)
}

// waitListening polls addr until it accepts a TCP connection and answers an
// HTTP request, or ctx ends. alive reports whether the instance still runs,
// so a crashed instance fails at once.
func waitListening(ctx context.Context, client *http.Client, addr, host string, alive func() error) error {
	delay := 10 * time.Millisecond
	var last error
	for {
		d := net.Dialer{Timeout: time.Second}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = probeHTTP(actx, client, addr, host, "/", nil)
			cancel()
			if err == nil {
				return nil
			}
		}
		last = err
		if aerr := alive(); aerr != nil {
			return aerr
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("port %s did not answer HTTP in time (last error: %v)", addr, last)
		case <-time.After(delay):
		}
		if delay < 200*time.Millisecond {
			delay = delay * 3 / 2
		}
	}
}
