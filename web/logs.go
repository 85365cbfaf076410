package web

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/berthhq/berth/deploy"
)

// sseKeepAlive is how often an idle log stream sends a comment, so that
// proxies keep it open and a gone browser is noticed.
const sseKeepAlive = 15 * time.Second

// sseWriter turns the log's lines into server-sent events, one "data:"
// event per line, flushed as they come.
type sseWriter struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	partial []byte
}

func (s *sseWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	var out []byte
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		line := bytes.TrimRight(s.partial[:i], "\r")
		// A line holds no newline, so one data field carries it whole.
		line = bytes.ReplaceAll(line, []byte("\r"), nil)
		out = append(out, "data: "...)
		out = append(out, line...)
		out = append(out, "\n\n"...)
		s.partial = s.partial[i+1:]
	}
	if len(out) > 0 {
		if _, err := s.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush sends what was written; deploy's log reader calls it after every
// batch.
func (s *sseWriter) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.NewResponseController(s.w).Flush()
}

// event sends one named event.
func (s *sseWriter) event(name, data string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data = strings.NewReplacer("\r", "", "\n", " ").Replace(data)
	if _, err := s.w.Write([]byte("event: " + name + "\ndata: " + data + "\n\n")); err != nil {
		return err
	}
	return http.NewResponseController(s.w).Flush()
}

func (s *sseWriter) comment(text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write([]byte(": " + text + "\n\n")); err != nil {
		return err
	}
	return http.NewResponseController(s.w).Flush()
}

// logStream streams an app's log as server-sent events: the last lines,
// then new ones as they are written, until the browser goes away. The
// query parameter type filters by process type or instance, lines sets
// how many past lines come first (default 100).
func (s *Server) logStream(c echo.Context) error {
	a, err := s.svc.App(c.Request().Context(), actorOf(c), c.Param("app"))
	if err != nil {
		return err
	}
	filter := c.QueryParam("type")
	if err := validProcessFilter(filter); err != nil {
		return err
	}
	lines := 100
	if v := c.QueryParam("lines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 10000 {
			return echo.NewHTTPError(http.StatusBadRequest, "lines: give a number from 0 to 10000")
		}
		lines = n
		if n == 0 {
			lines = -1
		}
	}
	return s.streamLogs(c, a.Name, deploy.LogOptions{Lines: lines, Follow: true, ProcessType: filter})
}

func (s *Server) streamLogs(c echo.Context, app string, opts deploy.LogOptions) error {
	h := c.Response().Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	c.Response().WriteHeader(http.StatusOK)
	w := &sseWriter{w: c.Response().Writer}
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	if err := w.comment("streaming " + app); err != nil {
		return nil
	}
	go func() {
		t := time.NewTicker(sseKeepAlive)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if w.comment("keep-alive") != nil {
					cancel()
					return
				}
			}
		}
	}()
	if err := s.deploy.ReadLogs(ctx, app, opts, w); err != nil && ctx.Err() == nil {
		s.log.Warn("stream logs", "app", app, "err", err)
		_ = w.event("end", "the log stream ended: "+err.Error())
	}
	return nil
}
