package web

import (
	"bytes"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/berthhq/berth/platform"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// templates holds one parsed template set per page: the layout plus the
// page's own file.
type templates struct {
	pages map[string]*template.Template
}

var funcs = template.FuncMap{
	"ago":      ago,
	"duration": formatDuration,
	"when":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"size": func(b any) string {
		switch v := b.(type) {
		case int64:
			return platform.FormatSize(v)
		case uint64:
			return platform.FormatSize(int64(v))
		}
		return fmt.Sprint(b)
	},
	"limit": func(v int64, kind string) string {
		if v == 0 {
			return "unlimited"
		}
		switch kind {
		case "memory", "disk":
			return platform.FormatSize(v)
		case "cpu":
			return platform.FormatCPU(v)
		case "network":
			return platform.FormatRate(v)
		}
		return fmt.Sprint(v)
	},
	"add": func(a, b int) int { return a + b },
	// rowAction is the data of the "rowAction" partial: a one-button form
	// posting one hidden field (remove a key, unset a config var, …).
	"rowAction": func(action, csrf, field, value, label string) rowAction {
		return rowAction{Action: action, CSRF: csrf, Field: field, Value: value, Label: label}
	},
	"short": func(s string, n int) string {
		if len(s) > n {
			return s[:n]
		}
		return s
	},
}

// rowAction is a table row's one-button form.
type rowAction struct {
	Action, CSRF, Field, Value, Label string
}

func parseTemplates() (*templates, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	t := &templates{pages: map[string]*template.Template{}}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" || strings.HasPrefix(base, "_") {
			continue
		}
		p, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/_partials.html", n)
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", n, err)
		}
		t.pages[base] = p
	}
	return t, nil
}

// page is what every page template gets.
type page struct {
	Title    string
	Section  string // apps, account, admin: the highlighted menu entry
	Actor    platform.Actor
	SignedIn bool
	CSRF     string
	Flash    *flash
	Version  string
	App      *appNav // set on an app's pages
	Data     any
}

// appNav is the header of an app's pages.
type appNav struct {
	Name string
	Tab  string
	URL  string
}

type flash struct {
	Error bool
	Msg   string
}

// setFlash keeps a message for the next page the browser shows.
func (s *Server) setFlash(c echo.Context, isErr bool, msg string) {
	kind := "i"
	if isErr {
		kind = "e"
	}
	if len(msg) > 1500 {
		msg = msg[:1500] + "…"
	}
	s.setCookie(c, flashCookie, base64.RawURLEncoding.EncodeToString([]byte(kind+msg)), 120, http.SameSiteLaxMode)
}

func (s *Server) takeFlash(c echo.Context) *flash {
	ck, err := s.cookie(c, flashCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	s.setCookie(c, flashCookie, "", -1, http.SameSiteLaxMode)
	b, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || len(b) < 2 {
		return nil
	}
	return &flash{Error: b[0] == 'e', Msg: string(b[1:])}
}

// render writes a page; the layout gets the signed-in user, the CSRF
// token and any flash message.
func (s *Server) render(c echo.Context, status int, name string, p *page) error {
	tmpl, ok := s.pages.pages[name]
	if !ok {
		return fmt.Errorf("render %s: no such template", name)
	}
	if a, ok := c.Get(keyActor).(platform.Actor); ok {
		p.Actor, p.SignedIn = a, true
	}
	p.CSRF = s.csrfToken(c)
	if p.Flash == nil {
		p.Flash = s.takeFlash(c)
	}
	p.Version = s.cfg.Version
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, p); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.HTMLBlob(status, buf.Bytes())
}

type errorData struct {
	Status int
	Text   string
	Msg    string
}

// handleError answers any error a handler returned: JSON under /api, an
// error page elsewhere. Server-side errors are logged and not shown.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, userErr := statusOf(err)
	msg := err.Error()
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status, userErr = he.Code, he.Code < 500
		msg = fmt.Sprint(he.Message)
		if he.Code == http.StatusNotFound && he.Message == echo.ErrNotFound.Message {
			msg = "no such page"
		}
	}
	if !userErr {
		s.log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
		msg = "internal error; see the berth log"
	}
	var werr error
	if strings.HasPrefix(c.Request().URL.Path, "/api/") {
		werr = c.JSON(status, apiError{Error: msg, Status: status})
	} else {
		werr = s.render(c, status, "error", &page{Title: http.StatusText(status), Data: errorData{Status: status, Text: http.StatusText(status), Msg: msg}})
	}
	if werr != nil {
		s.log.Warn("write error response", "err", werr)
	}
}

// ago formats the time since t, as "3m ago".
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return formatDuration(time.Since(t)) + " ago"
}

// formatDuration rounds d for people: 42s, 5m, 3h 12m, 2d 4h.
func formatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}
