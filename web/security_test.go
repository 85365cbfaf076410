package web

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/platform"
)

func TestDashboardSecurity(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	alice := e.user("alice", platform.RoleMember)
	e.user("bob", platform.RoleMember)
	e.user("root", platform.RoleAdmin)
	if _, err := e.svc.CreateApp(ctx, alice, "alice-app"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetConfig(ctx, alice, "alice-app", map[string]string{"SECRET": "s3cret"}); err != nil {
		t.Fatal(err)
	}

	t.Run("no session redirects to login", func(t *testing.T) {
		c := e.client()
		for _, path := range []string{"/apps", "/apps/alice-app", "/apps/alice-app/config", "/apps/alice-app/logs/stream", "/account", "/admin"} {
			status, loc, _ := c.get(path)
			if status != http.StatusSeeOther || loc != "/login?next="+url.QueryEscape(path) {
				t.Errorf("GET %s: %d %q, want 303 to the login page", path, status, loc)
			}
		}
		// A post without a session goes to the login page too, and
		// changes nothing.
		status, loc, _ := c.post("/apps/alice-app/config", url.Values{"key": {"X"}, "value": {"1"}})
		if status != http.StatusSeeOther || loc != "/login" {
			t.Errorf("POST without session: %d %q", status, loc)
		}
		// A forged session cookie is no session.
		u, _ := url.Parse(e.url)
		c.http.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: "forged"}})
		if status, _, _ := c.get("/apps"); status != http.StatusSeeOther {
			t.Errorf("forged session: %d", status)
		}
	})

	t.Run("another user's app is not found", func(t *testing.T) {
		bob := e.client()
		bob.login("bob")
		for _, path := range []string{"/apps/alice-app", "/apps/alice-app/config", "/apps/alice-app/releases", "/apps/alice-app/logs",
			"/apps/alice-app/logs/stream", "/apps/alice-app/deploys", "/apps/alice-app/settings", "/apps/alice-app/releases/v1/rollback",
			"/apps/no-such-app"} {
			status, _, body := bob.get(path)
			if status != http.StatusNotFound {
				t.Errorf("bob GET %s: %d, want 404", path, status)
			}
			if strings.Contains(body, "s3cret") {
				t.Errorf("bob GET %s shows alice's secret", path)
			}
		}
		for _, action := range []string{"/apps/alice-app/config", "/apps/alice-app/scale", "/apps/alice-app/restart", "/apps/alice-app/destroy",
			"/apps/alice-app/domains", "/apps/alice-app/releases/v1/rollback", "/apps/alice-app/share"} {
			status, _, _ := bob.submit("/apps", action, url.Values{"key": {"HACKED"}, "value": {"1"}, "type": {"web"}, "quantity": {"3"},
				"confirm": {"alice-app"}, "hostname": {"evil.example.com"}, "user": {"bob"}})
			if status != http.StatusNotFound {
				t.Errorf("bob POST %s: %d, want 404", action, status)
			}
		}
		status, _, body := bob.get("/apps")
		if status != http.StatusOK || strings.Contains(body, "alice-app") {
			t.Errorf("bob's app list shows alice's app (status %d)", status)
		}
		if _, err := e.svc.App(ctx, alice, "alice-app"); err != nil {
			t.Fatalf("alice-app gone: %v", err)
		}
		cfg, _ := e.svc.Config(ctx, alice, "alice-app")
		if _, ok := cfg["HACKED"]; ok || len(cfg) != 1 {
			t.Errorf("bob changed alice's config: %v", cfg.Keys())
		}
		if rels, _ := e.svc.Releases(ctx, alice, "alice-app", 0); len(rels) != 1 {
			t.Errorf("bob made releases of alice's app: %d", len(rels))
		}
		if status, _, _ := bob.get("/admin"); status != http.StatusNotFound {
			t.Errorf("member GET /admin: %d, want 404", status)
		}
	})

	t.Run("shared app is visible", func(t *testing.T) {
		a := e.client()
		a.login("alice")
		if status, _, body := a.submit("/apps/alice-app/settings", "/apps/alice-app/share", url.Values{"user": {"bob"}}); status != http.StatusSeeOther {
			t.Fatalf("share: %d %s", status, body)
		}
		bob := e.client()
		bob.login("bob")
		if status, _, _ := bob.get("/apps/alice-app/config"); status != http.StatusOK {
			t.Errorf("shared app: %d", status)
		}
		// Sharing stays the owner's: bob may not destroy it.
		status, loc, _ := bob.submit("/apps/alice-app/settings", "/apps/alice-app/destroy", url.Values{"confirm": {"alice-app"}})
		if status != http.StatusSeeOther || loc != "/apps/alice-app/settings" {
			t.Errorf("bob destroys shared app: %d %q", status, loc)
		}
		if _, err := e.svc.App(ctx, alice, "alice-app"); err != nil {
			t.Fatalf("alice-app gone: %v", err)
		}
		if err := e.svc.UnshareApp(ctx, alice, "alice-app", "bob"); err != nil {
			t.Fatal(err)
		}
		if status, _, _ := bob.get("/apps/alice-app/config"); status != http.StatusNotFound {
			t.Errorf("unshared app: %d", status)
		}
	})

	t.Run("forms need their CSRF token", func(t *testing.T) {
		a := e.client()
		a.login("alice")
		a.get("/apps/alice-app/config") // the browser has its CSRF cookie
		tests := []struct {
			name  string
			token string
		}{
			{name: "missing", token: ""},
			{name: "wrong", token: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
			{name: "another browser's", token: e.client().token("/login")},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				form := url.Values{"key": {"INJECTED"}, "value": {"1"}}
				if tt.token != "" {
					form.Set("_csrf", tt.token)
				}
				status, _, body := a.post("/apps/alice-app/config", form)
				if status != http.StatusForbidden {
					t.Errorf("post: %d, want 403", status)
				}
				if !strings.Contains(body, "CSRF") {
					t.Errorf("the 403 page does not say why:\n%s", body)
				}
			})
		}
		cfg, _ := e.svc.Config(ctx, alice, "alice-app")
		if _, ok := cfg["INJECTED"]; ok {
			t.Error("a post without its CSRF token changed the config")
		}
		// The login and logout forms are protected as well.
		if status, _, _ := e.client().post("/login", url.Values{"user": {"alice"}, "password": {testPassword}}); status != http.StatusForbidden {
			t.Errorf("login without token: %d", status)
		}
		if status, _, _ := a.post("/logout", nil); status != http.StatusForbidden {
			t.Errorf("logout without token: %d", status)
		}
		// With the token it works.
		if status, _, _ := a.submit("/apps/alice-app/config", "/apps/alice-app/config", url.Values{"key": {"WITH_TOKEN"}, "value": {"1"}}); status != http.StatusSeeOther {
			t.Errorf("post with token: %d", status)
		}
	})

	t.Run("apps one may not see take no lock", func(t *testing.T) {
		bob := e.client()
		bob.login("bob")
		bobActor, err := e.svc.ActorForUser(ctx, "bob")
		if err != nil {
			t.Fatal(err)
		}
		token, err := e.svc.CreateAPIToken(ctx, bobActor, "locks")
		if err != nil {
			t.Fatal(err)
		}
		// Names from the URL that are no app (one of 4 KB), and alice's
		// app, which bob may not see.
		for _, app := range []string{strings.Repeat("a", 4096), "no-such-app", "Alice-App", "alice-app"} {
			for _, action := range []string{"/config", "/config/unset", "/scale", "/restart", "/stop", "/start", "/releases/v1/rollback", "/destroy"} {
				status, _, _ := bob.submit("/apps", "/apps/"+url.PathEscape(app)+action, url.Values{"key": {"X"}, "value": {"1"},
					"type": {"web"}, "quantity": {"1"}, "confirm": {app}})
				if status != http.StatusNotFound {
					t.Errorf("bob POST %s on %.20q: %d, want 404", action, app, status)
				}
			}
			for _, call := range []struct{ method, path, body string }{
				{method: "PATCH", path: "/config", body: `{"X":"1"}`},
				{method: "PATCH", path: "/formation", body: `{"web":1}`},
				{method: "POST", path: "/restart", body: `{}`},
				{method: "POST", path: "/rollback", body: `{"version":1}`},
				{method: "DELETE", path: ""},
			} {
				if status, _, body := e.api(token, call.method, "/apps/"+url.PathEscape(app)+call.path, call.body); status != http.StatusNotFound {
					t.Errorf("bob API %s %s on %.20q: %d %s, want 404", call.method, call.path, app, status, body)
				}
			}
		}
		if n := e.srv.locks.Len(); n != 0 {
			t.Errorf("%d app lock(s) left behind", n)
		}
	})

	t.Run("forms are bound to the session and its origin", func(t *testing.T) {
		a := e.client()
		a.login("alice")
		keys := func() int {
			t.Helper()
			ks, err := e.svc.Keys(ctx, alice, "alice")
			if err != nil {
				t.Fatal(err)
			}
			return len(ks)
		}
		before := keys()
		// toss plants cookies in alice's browser for /account only, as a
		// page on another subdomain can (Domain=<Domain>, a more specific
		// Path): the browser sends them first.
		toss := func(cookies map[string]string) {
			t.Helper()
			u, _ := url.Parse(e.url + "/account")
			for name, value := range cookies {
				a.http.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/account"}})
			}
		}
		planted := 0
		refused := func(what string, form url.Values, header http.Header, want string) {
			t.Helper()
			planted++
			form.Set("name", fmt.Sprintf("planted-%d", planted))
			key, _ := testenv.AuthorizedKey(t, "") // new each time: a duplicate would be refused anyway
			form.Set("key", key)
			status, _, body := a.postHeader("/account/keys", form, header)
			if status != http.StatusForbidden || !strings.Contains(body, want) {
				t.Errorf("%s: %d, want 403 saying %q", what, status, want)
			}
			if n := keys(); n != before {
				t.Errorf("%s: the key was added", what)
				before = n
			}
		}

		// An anonymous GET /login hands anyone a cookie and its token.
		anon := e.client()
		anonToken := anon.token("/login")
		toss(map[string]string{csrfCookie: anon.cookie("/login", csrfCookie)})
		refused("login-page pair", url.Values{"_csrf": {anonToken}}, nil, "CSRF")

		// So does another session: bob's token, with whatever cookie
		// his browser holds for it.
		bob := e.client()
		bob.login("bob")
		bobToken := bob.token("/account")
		if ck := bob.cookie("/account", csrfCookie); ck != "" {
			toss(map[string]string{csrfCookie: ck})
		}
		refused("another session's pair", url.Values{"_csrf": {bobToken}}, nil, "CSRF")

		// Signing in rotates: the login page's own token is no good
		// for the session it started.
		c := e.client()
		loginToken := c.token("/login")
		if status, loc, _ := c.post("/login", url.Values{"_csrf": {loginToken}, "user": {"alice"}, "password": {testPassword}}); status != http.StatusSeeOther || loc != "/apps" {
			t.Fatalf("login: %d %q", status, loc)
		}
		if ck := c.cookie("/login", csrfCookie); ck != "" {
			t.Error("the pre-session cookie outlived the sign-in")
		}
		key, _ := testenv.AuthorizedKey(t, "")
		if status, _, _ := c.post("/account/keys", url.Values{"_csrf": {loginToken}, "name": {"login-token"}, "key": {key}}); status != http.StatusForbidden {
			t.Errorf("the login page's token after sign-in: %d, want 403", status)
		}
		if n := keys(); n != before {
			t.Error("the login page's token added a key")
			before = n
		}

		// A good token from a page of another origin is refused too.
		a = e.client()
		a.login("alice")
		tok := a.token("/account")
		host := strings.TrimPrefix(e.url, "http://")
		for _, tt := range []struct {
			name   string
			header http.Header
		}{
			{name: "cross-site origin", header: http.Header{"Origin": {"http://evil.example.com"}}},
			{name: "same-site origin", header: http.Header{"Origin": {"http://evil." + e.domain}}},
			{name: "same host, another port", header: http.Header{"Origin": {"http://127.0.0.1:1"}}},
			{name: "null origin", header: http.Header{"Origin": {"null"}}},
			{name: "sec-fetch-site same-site", header: http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {e.url}}},
			{name: "sec-fetch-site cross-site", header: http.Header{"Sec-Fetch-Site": {"cross-site"}}},
			{name: "sec-fetch-site none", header: http.Header{"Sec-Fetch-Site": {"none"}}},
			{name: "cross-site referer", header: http.Header{"Referer": {"http://evil." + e.domain + "/account"}}},
		} {
			refused(tt.name, url.Values{"_csrf": {tok}}, tt.header, "another site")
		}
		// Sign-in is guarded the same way: no signing a victim in to the
		// attacker's account from another page.
		l := e.client()
		if status, _, _ := l.postHeader("/login", url.Values{"_csrf": {l.token("/login")}, "user": {"bob"}, "password": {testPassword}},
			http.Header{"Origin": {"http://evil." + e.domain}}); status != http.StatusForbidden {
			t.Errorf("login from another origin: %d, want 403", status)
		}

		// The dashboard's own pages, as browsers describe them, work.
		for i, header := range []http.Header{
			{"Sec-Fetch-Site": {"same-origin"}, "Origin": {e.url}},
			{"Origin": {e.url}},
			{"Origin": {"http://" + strings.ToUpper(host)}},
			{"Referer": {e.url + "/account"}},
			nil, // no browser: the token alone
		} {
			k, _ := testenv.AuthorizedKey(t, "")
			status, loc, body := a.postHeader("/account/keys", url.Values{"_csrf": {tok}, "name": {fmt.Sprintf("own-%d", i)}, "key": {k}}, header)
			if status != http.StatusSeeOther || loc != "/account" {
				t.Errorf("own page %v: %d %q\n%s", header, status, loc, body)
			}
		}
		if n := keys(); n != before+5 {
			t.Errorf("%d keys after five good posts, want %d", n, before+5)
		}
	})

	t.Run("script in a config value is text", func(t *testing.T) {
		const evil = `<script>document.title="pwned"</script><img src=x onerror=alert(1)>`
		if _, err := e.svc.SetConfig(ctx, alice, "alice-app", map[string]string{"EVIL": evil}); err != nil {
			t.Fatal(err)
		}
		a := e.client()
		a.login("alice")
		_, _, body := a.get("/apps/alice-app/config")
		if strings.Contains(body, "<script>document") || strings.Contains(body, "<img src=x") {
			t.Fatal("the config page carries the value as markup")
		}
		if !strings.Contains(body, html.EscapeString(evil)) && !strings.Contains(body, "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;") {
			t.Errorf("the escaped value is not on the page:\n%s", body)
		}
	})

	t.Run("security headers", func(t *testing.T) {
		resp, err := http.Get(e.url + "/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("CSP %q lacks %q", csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("CSP allows unsafe code: %q", csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("headers: %v", resp.Header)
		}
		// Assets are embedded and served; directories are not listed.
		for path, status := range map[string]int{"/static/berth.css": 200, "/static/berth.js": 200, "/static/": 404, "/static/nope.js": 404} {
			resp, err := http.Get(e.url + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != status {
				t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, status)
			}
		}
	})

	t.Run("session cookie and logout", func(t *testing.T) {
		c := e.client()
		tok := c.token("/login")
		resp, err := c.http.PostForm(e.url+"/login", url.Values{"_csrf": {tok}, "user": {"alice"}, "password": {testPassword}, "next": {"//evil.example.com/"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); loc != "/apps" {
			t.Errorf("login with an off-site next goes to %q", loc)
		}
		var session *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == sessionCookie {
				session = ck
			}
		}
		if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteLaxMode || session.Secure {
			t.Fatalf("session cookie: %+v", session)
		}
		if status, _, _ := c.get("/apps"); status != http.StatusOK {
			t.Fatalf("signed in: %d", status)
		}
		if status, loc, _ := c.submit("/apps", "/logout", nil); status != http.StatusSeeOther || loc != "/login" {
			t.Fatalf("logout: %d %q", status, loc)
		}
		// The old session token is dead on the server, not just forgotten.
		if _, err := e.svc.ActorForSession(ctx, session.Value); err == nil {
			t.Error("the session survived logout")
		}
		if status, _, _ := c.get("/apps"); status != http.StatusSeeOther {
			t.Errorf("after logout: %d", status)
		}
	})

	t.Run("own certificate: TLS, Secure cookies, HSTS", func(t *testing.T) {
		certFile, keyFile, cert := testenv.WriteSelfSigned(t, t.TempDir(), "dashboard", "127.0.0.1")
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		srv, err := New(Config{Domain: e.domain, CertFile: certFile, KeyFile: keyFile}, Deps{Platform: e.svc, Deployer: e.dep}, testenv.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- srv.ServeListener(sctx, ln) }()
		t.Cleanup(func() {
			cancel()
			if err := <-served; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		t.Cleanup(hc.CloseIdleConnections)
		base := "https://" + ln.Addr().String()
		resp, err := hc.Get(base + "/login")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("Strict-Transport-Security") == "" {
			t.Error("no HSTS over TLS")
		}
		m := csrfRe.FindSubmatch(body)
		if m == nil {
			t.Fatalf("no CSRF token: %s", body)
		}
		resp, err = hc.PostForm(base+"/login", url.Values{"_csrf": {string(m[1])}, "user": {"alice"}, "password": {testPassword}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login over TLS: %d", resp.StatusCode)
		}
		gotSession := false
		for _, ck := range resp.Cookies() {
			gotSession = gotSession || ck.Name == "__Host-"+sessionCookie
			if !ck.Secure || !ck.HttpOnly {
				t.Errorf("cookie %s over TLS: Secure %v HttpOnly %v", ck.Name, ck.Secure, ck.HttpOnly)
			}
			// A subdomain cannot toss a cookie with this prefix.
			if !strings.HasPrefix(ck.Name, "__Host-") || ck.Path != "/" || ck.Domain != "" {
				t.Errorf("cookie over TLS: name %q Path %q Domain %q, want __Host-NAME for / and no Domain", ck.Name, ck.Path, ck.Domain)
			}
		}
		if !gotSession {
			t.Errorf("login over TLS set no __Host-%s cookie: %v", sessionCookie, resp.Cookies())
		}
		resp, err = hc.Get(base + "/apps")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "https://alice-app.berth.test/") {
			t.Errorf("apps over TLS: %d, app URLs not https", resp.StatusCode)
		}
	})

	t.Run("wrong passwords back off", func(t *testing.T) {
		lim := e.srv.logins
		now := time.Now()
		lim.mu.Lock()
		lim.now = func() time.Time { return now }
		lim.mu.Unlock()
		advance := func(d time.Duration) {
			lim.mu.Lock()
			now = now.Add(d)
			lim.mu.Unlock()
		}
		c := e.client()
		try := func(password string) (int, string, string) {
			t.Helper()
			resp, err := c.http.PostForm(e.url+"/login", url.Values{"_csrf": {c.token("/login")}, "user": {"root"}, "password": {password}})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b := make([]byte, 64<<10)
			n, _ := resp.Body.Read(b)
			return resp.StatusCode, resp.Header.Get("Retry-After"), string(b[:n])
		}
		for i := 0; i < 3; i++ {
			if status, _, body := try("wrong password"); status != http.StatusUnauthorized || !strings.Contains(body, "Wrong user name or password") {
				t.Fatalf("wrong password %d: %d", i+1, status)
			}
		}
		// Now even the right password must wait, and is not checked.
		status, retry, body := try(testPassword)
		if status != http.StatusTooManyRequests || retry != "1" || !strings.Contains(body, "Too many failed sign-ins") {
			t.Fatalf("during backoff: %d Retry-After %q", status, retry)
		}
		advance(1100 * time.Millisecond)
		if status, _, _ := try("wrong again"); status != http.StatusUnauthorized {
			t.Fatalf("after the wait: %d", status)
		}
		// The wait doubles.
		if status, retry, _ := try(testPassword); status != http.StatusTooManyRequests || retry != "2" {
			t.Fatalf("second backoff: %d Retry-After %q", status, retry)
		}
		advance(2100 * time.Millisecond)
		if status, _, _ := try(testPassword); status != http.StatusSeeOther {
			t.Fatalf("right password after the wait: %d", status)
		}
		// Success forgets the user's failures.
		if w := lim.wait("user:root"); w != 0 {
			t.Errorf("wait after success: %v", w)
		}
	})

	t.Run("the address limit ignores X-Forwarded-For", func(t *testing.T) {
		lim := e.srv.logins
		now := time.Now()
		lim.mu.Lock()
		lim.m = map[string]*attempts{}
		lim.now = func() time.Time { return now }
		lim.mu.Unlock()
		c := e.client()
		// A new user name every time, so that only the address limit
		// can stop the guesses; a new X-Forwarded-For every time, as a
		// LAN client or an app container could send.
		try := func(i int) int {
			t.Helper()
			form := url.Values{"_csrf": {c.token("/login")}, "user": {fmt.Sprintf("guess%d", i)}, "password": {"wrong"}}
			req, err := http.NewRequest(http.MethodPost, e.url+"/login", strings.NewReader(form.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", i/65536%256, i/256%256, i%256))
			resp, err := c.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		free := 5 * e.srv.cfg.LoginFreeAttempts
		for i := range free {
			if status := try(i); status != http.StatusUnauthorized {
				t.Fatalf("guess %d: %d, want 401", i+1, status)
			}
		}
		if status := try(free); status != http.StatusTooManyRequests {
			t.Errorf("guess %d from a new X-Forwarded-For: %d, want 429: the header escaped the address limit", free+1, status)
		}
		if w := lim.wait("ip:127.0.0.1"); w == 0 {
			t.Error("the connecting address is not backing off")
		}
	})
}

// TestPasswordChangeEndsOtherSessions: a password changed on the account
// page signs out the user's other sessions (a stolen cookie among them) and
// keeps the one that made the change.
func TestPasswordChangeEndsOtherSessions(t *testing.T) {
	e := newEnv(t, nil)
	e.user("pat", platform.RoleMember)
	here, other := e.client(), e.client()
	here.login("pat")
	other.login("pat")
	status, loc, body := here.submit("/account", "/account/password", url.Values{"current": {testPassword}, "password": {"a new long password"}, "confirm": {"a new long password"}})
	if status != http.StatusSeeOther || loc != "/account" {
		t.Fatalf("change password: %d %q\n%s", status, loc, body)
	}
	if status, _, _ := here.get("/account"); status != http.StatusOK {
		t.Errorf("the session that changed the password: GET /account = %d, want 200", status)
	}
	if status, loc, _ := other.get("/account"); status == http.StatusOK || !strings.Contains(loc, "/login") {
		t.Errorf("another session after the change: GET /account = %d %q, want a redirect to sign in", status, loc)
	}
}
