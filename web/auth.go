package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/labstack/echo/v4"

	"github.com/berthhq/berth/platform"
)

const (
	sessionCookie = "berth_session"
	csrfCookie    = "berth_csrf"
	flashCookie   = "berth_flash"
	csrfField     = "_csrf"
	csrfHeader    = "X-CSRF-Token"

	keyActor   = "berth.actor"
	keyCSRF    = "berth.csrf"
	keySession = "berth.session" // the session token of a signed-in request
)

// cookieName is the name the cookie called name has on the wire. With
// Secure it is __Host-name: browsers keep such a cookie only when it is
// Secure, for Path=/ and without a Domain, so an app at APP.<Domain>
// cannot set (toss) one for the dashboard, nor can plain HTTP.
func (s *Server) cookieName(name string) string {
	if s.cfg.Secure {
		return "__Host-" + name
	}
	return name
}

// cookie returns the request's cookie called name (see cookieName).
func (s *Server) cookie(c echo.Context, name string) (*http.Cookie, error) {
	return c.Cookie(s.cookieName(name))
}

// setCookie sets an HttpOnly cookie for the whole site; maxAge < 0 deletes.
func (s *Server) setCookie(c echo.Context, name, value string, maxAge int, sameSite http.SameSite) {
	c.SetCookie(&http.Cookie{
		Name: s.cookieName(name), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: s.cfg.Secure, SameSite: sameSite,
	})
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// csrfToken returns the CSRF token of this request's forms (see
// expectedCSRF), issuing the pre-session cookie when a signed-out
// browser has none.
func (s *Server) csrfToken(c echo.Context) string {
	if v, ok := c.Get(keyCSRF).(string); ok {
		return v
	}
	tok, ok := s.expectedCSRF(c)
	if !ok {
		seed := randomToken()
		// Lax, not Strict: a Strict cookie is not sent when the user
		// arrives from a link elsewhere, and a new seed would break the
		// login forms of their other open tabs.
		s.setCookie(c, csrfCookie, seed, 0, http.SameSiteLaxMode)
		tok = s.csrfFor("login", seed)
	}
	c.Set(keyCSRF, tok)
	return tok
}

// expectedCSRF returns the token a form posted in this request must
// carry. For a signed-in user it is an HMAC of the session token's hash:
// good for that session only, and dead with it. Before sign-in (the login
// form) it is an HMAC of a random pre-session cookie, which signing in
// drops. A cookie the browser sends proves nothing on its own: an app at
// APP.<Domain> is the same site and can set one for the dashboard, and
// anyone can fetch a cookie and its token from the login page. Hence no
// cookie alone ever makes a token good for a session.
func (s *Server) expectedCSRF(c echo.Context) (string, bool) {
	if session, ok := c.Get(keySession).(string); ok {
		sum := sha256.Sum256([]byte(session))
		return s.csrfFor("session", hex.EncodeToString(sum[:])), true
	}
	if ck, err := s.cookie(c, csrfCookie); err == nil && len(ck.Value) >= 32 {
		return s.csrfFor("login", ck.Value), true
	}
	return "", false
}

// csrfFor is the token for a seed of a kind ("session" or "login"); the
// kind keeps one kind's seed from ever passing for the other's.
func (s *Server) csrfFor(kind, seed string) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(seed))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF refuses state-changing requests that come from another
// origin (sameOrigin) or whose form field _csrf (or header X-CSRF-Token)
// is not the token of this session, or before sign-in of this browser.
// Group it after requireSession, which names the session.
func (s *Server) checkCSRF(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			return next(c)
		}
		if !s.sameOrigin(r) {
			s.log.Info("refused a cross-origin request", "method", r.Method, "path", r.URL.Path,
				"sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "origin", r.Header.Get("Origin"), "ip", c.RealIP())
			return ErrCrossOrigin
		}
		want, ok := s.expectedCSRF(c)
		if !ok {
			return ErrCSRF
		}
		got := r.Header.Get(csrfHeader)
		if got == "" {
			got = c.FormValue(csrfField)
		}
		if got == "" || !hmac.Equal([]byte(got), []byte(want)) {
			return ErrCSRF
		}
		return next(c)
	}
}

// sameOrigin reports whether a request comes from the dashboard's own
// pages. Browsers say so in Sec-Fetch-Site, which must then be
// same-origin: same-site is not enough, since apps are served on
// subdomains of the same site. Where it is missing (older browsers, plain
// http to a name other than localhost) the Origin header, or failing
// that the Referer, must name this host, over https when the dashboard
// is served so. A request with none of them is no browser's cross-site
// form or fetch (they send Origin); the CSRF token still guards it.
func (s *Server) sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	from := r.Header.Get("Origin")
	if from == "" {
		from = r.Header.Get("Referer")
	}
	if from == "" {
		return true
	}
	u, err := url.Parse(from)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return false // also Origin: null, from sandboxes and cross-origin redirects
	}
	if r.TLS != nil || s.cfg.Secure {
		return u.Scheme == "https"
	}
	return u.Scheme == "http" || u.Scheme == "https"
}

// requireSession lets signed-in users through and sends everyone else to
// the sign-in page.
func (s *Server) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		actor, session, ok := s.sessionActor(c)
		if !ok {
			target := "/login"
			if c.Request().Method == http.MethodGet {
				target += "?next=" + url.QueryEscape(c.Request().URL.RequestURI())
			}
			return c.Redirect(http.StatusSeeOther, target)
		}
		c.Set(keyActor, actor)
		c.Set(keySession, session)
		return next(c)
	}
}

// sessionActor returns the user and the token of the request's session
// cookie.
func (s *Server) sessionActor(c echo.Context) (platform.Actor, string, bool) {
	ck, err := s.cookie(c, sessionCookie)
	if err != nil || ck.Value == "" {
		return platform.Actor{}, "", false
	}
	actor, err := s.svc.ActorForSession(c.Request().Context(), ck.Value)
	if err != nil {
		if !errors.Is(err, platform.ErrBadCredentials) {
			s.log.Error("look up session", "err", err)
		}
		s.setCookie(c, sessionCookie, "", -1, http.SameSiteLaxMode)
		return platform.Actor{}, "", false
	}
	return actor, ck.Value, true
}

func actorOf(c echo.Context) platform.Actor {
	a, _ := c.Get(keyActor).(platform.Actor)
	return a
}

type loginData struct {
	User  string
	Next  string
	Error string
}

func (s *Server) loginPage(c echo.Context) error {
	if _, _, ok := s.sessionActor(c); ok {
		return c.Redirect(http.StatusSeeOther, "/apps")
	}
	return s.render(c, http.StatusOK, "login", &page{Title: "Sign in", Data: loginData{Next: safeNext(c.QueryParam("next"))}})
}

// safeNext keeps only local paths, so the sign-in form cannot send the
// user to another site. Browsers drop tabs and newlines from a URL and
// read a backslash as a slash, so "/\t/evil" or "/\\evil" would lead to
// //evil: control characters are refused outright, and so is anything
// with a scheme or host or that starts with // or /\.
func safeNext(next string) string {
	const home = "/apps"
	if strings.ContainsFunc(next, unicode.IsControl) {
		return home
	}
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return home
	}
	return next
}

func (s *Server) login(c echo.Context) error {
	user := strings.TrimSpace(c.FormValue("user"))
	password := c.FormValue("password")
	data := loginData{User: user, Next: safeNext(c.FormValue("next"))}
	keys := []string{"user:" + strings.ToLower(user), "ip:" + c.RealIP()}
	if wait := s.logins.wait(keys...); wait > 0 {
		secs := int(math.Ceil(wait.Seconds()))
		c.Response().Header().Set("Retry-After", fmt.Sprint(secs))
		data.Error = fmt.Sprintf("Too many failed sign-ins. Try again in %d second(s).", secs)
		return s.render(c, http.StatusTooManyRequests, "login", &page{Title: "Sign in", Data: data})
	}
	actor, err := s.svc.CheckPassword(c.Request().Context(), user, password)
	if errors.Is(err, platform.ErrBadCredentials) {
		s.logins.fail(keys...)
		s.log.Info("failed sign-in", "user", user, "ip", c.RealIP())
		data.Error = "Wrong user name or password."
		return s.render(c, http.StatusUnauthorized, "login", &page{Title: "Sign in", Data: data})
	}
	if err != nil {
		return err
	}
	s.logins.reset(keys[0])
	token, err := s.svc.CreateSession(c.Request().Context(), actor, s.cfg.SessionTTL)
	if err != nil {
		return err
	}
	s.setCookie(c, sessionCookie, token, int(s.cfg.SessionTTL.Seconds()), http.SameSiteLaxMode)
	// The session's forms carry tokens of the session from now on; the
	// pre-session seed goes, so a login-page pair someone else fetched or
	// planted is good for nothing.
	s.setCookie(c, csrfCookie, "", -1, http.SameSiteLaxMode)
	s.log.Info("signed in", "user", actor.Name, "ip", c.RealIP())
	return c.Redirect(http.StatusSeeOther, data.Next)
}

func (s *Server) logout(c echo.Context) error {
	if ck, err := s.cookie(c, sessionCookie); err == nil && ck.Value != "" {
		if err := s.svc.DeleteSession(c.Request().Context(), ck.Value); err != nil {
			return err
		}
	}
	s.setCookie(c, sessionCookie, "", -1, http.SameSiteLaxMode)
	return c.Redirect(http.StatusSeeOther, "/login")
}

// requireToken authenticates API requests by their bearer token. Session
// cookies are not accepted there, so the API needs no CSRF tokens.
func (s *Server) requireToken(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get(echo.HeaderAuthorization)
		token, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || strings.TrimSpace(token) == "" {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="berth"`)
			return ErrUnauthenticated
		}
		actor, err := s.svc.ActorForAPIToken(c.Request().Context(), strings.TrimSpace(token))
		if err != nil {
			if errors.Is(err, platform.ErrBadCredentials) {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="berth", error="invalid_token"`)
			}
			return err
		}
		c.Set(keyActor, actor)
		return next(c)
	}
}

// loginLimiter backs off sign-ins after repeated failures, per user name
// and per client address: after free failures (five times as many for an
// address), each further attempt must wait base, then twice as long, up to
// max. It lives in memory: a restart
// forgets it, which costs an attacker a restart of berth per few guesses.
type loginLimiter struct {
	mu        sync.Mutex
	free      int
	base, max time.Duration
	now       func() time.Time
	m         map[string]*attempts
}

type attempts struct {
	failures int
	until    time.Time
	last     time.Time
}

func newLoginLimiter(free int, base, max time.Duration) *loginLimiter {
	return &loginLimiter{free: free, base: base, max: max, now: time.Now, m: map[string]*attempts{}}
}

// wait returns how long the keys must still wait; 0 lets the attempt in.
func (l *loginLimiter) wait(keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var w time.Duration
	for _, k := range keys {
		if a := l.m[k]; a != nil && a.until.After(now) {
			w = max(w, a.until.Sub(now))
		}
	}
	return w
}

// fail records a failed attempt for every key.
func (l *loginLimiter) fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.m) > 10000 {
		for k, a := range l.m {
			if now.Sub(a.last) > l.max {
				delete(l.m, k)
			}
		}
	}
	for _, k := range keys {
		a := l.m[k]
		if a == nil || now.Sub(a.last) > l.max {
			a = &attempts{}
			l.m[k] = a
		}
		a.failures++
		a.last = now
		free := l.free
		if strings.HasPrefix(k, "ip:") {
			// Many people may share an address; the per-user limit is
			// the tight one.
			free *= 5
		}
		if n := a.failures - free; n >= 0 {
			d := l.base
			for i := 0; i < n && d < l.max; i++ {
				d *= 2
			}
			a.until = now.Add(min(d, l.max))
		}
	}
}

// reset forgets the failures of key after a successful sign-in.
func (l *loginLimiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, key)
}
