package web

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/platform"
)

// chromiumPath finds Debian's chromium, or skips (fails under CI).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Skip(t, "browser tests need Debian's chromium package (scripts/deps.sh test installs it)")
	return ""
}

// artifactsDir is where screenshots go: $BERTH_ARTIFACTS, or artifacts/
// at the repository root (git-ignored).
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("BERTH_ARTIFACTS")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		root := wd
		for {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(root)
			if parent == root {
				t.Fatalf("no go.mod above %s", wd)
			}
			root = parent
		}
		dir = filepath.Join(root, "artifacts")
	}
	dir = filepath.Join(dir, "web")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one headless Chromium tab on the test's dashboard.
type browser struct {
	t         *testing.T
	ctx       context.Context
	base      string
	artifacts string

	mu      sync.Mutex
	console []chromedp.ConsoleMessage // what the pages wrote to the console
}

// newBrowser starts a headless Chromium with a fresh profile that does not
// try to reach the internet; cleanup closes it and removes the profile.
// extra adds command-line options.
func newBrowser(t *testing.T, base string, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	path := chromiumPath(t)
	profile := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("no-pings", true),
	}
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// Cleanups run last-in first-out: the browser goes before its profile.
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx, base: base, artifacts: artifactsDir(t)}
	if err := chromedp.Do(ctx); err != nil { // start the browser with no deadline
		t.Fatalf("start chromium: %v", err)
	}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return b
}

// checkConsole fails the test for any script exception or Content Security
// Policy violation the pages reported.
func (b *browser) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
			b.t.Errorf("browser console: %s:%d %s", m.URL, m.Line+1, m.Text)
		}
	}
}

// do runs steps, failing the test on the first error. The deadline only
// bounds a hung browser; no step relies on it.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// open navigates to a dashboard path.
func (b *browser) open(path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path))
}

// submit clicks a form's button and waits for the page it leads to.
func (b *browser) submit(button string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.WaitEvent(cdppage.LoadEventFired, nil, chromedp.Click(chromedp.CSS(button)))); err != nil {
		b.t.Fatalf("click %s: %v", button, err)
	}
}

// waitFor waits until a JavaScript condition holds on the page.
func (b *browser) waitFor(what, cond string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		b.t.Fatalf("wait for %s: %v\non page %s:\n%s", what, err, b.eval("location.href"), b.eval("document.body.innerText"))
	}
}

// eval returns a JavaScript expression's string value.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// shot saves a full-page screenshot as an artifact.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.artifacts, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestBrowser walks the dashboard in headless Chromium as a person would:
// sign in, create an app, deploy it, set a config var, scale, watch the
// live log and roll back, over real containers.
func TestBrowser(t *testing.T) {
	chromiumPath(t)
	e := newEnv(t, nil)
	ada := e.user("ada", platform.RoleAdmin)
	e.user("grace", platform.RoleMember)
	b := newBrowser(t, e.url)
	const app = "shop"

	// Signing in: no session leads to the login page, a wrong password
	// says so, the right one leads back to where the user was going.
	b.open("/apps")
	b.waitFor("the login page", `location.pathname === "/login" && !!document.querySelector("#signin")`)
	b.do("wrong password", chromedp.SendKeys(chromedp.CSS("#user"), "ada"), chromedp.SendKeys(chromedp.CSS("#password"), "not the password"))
	b.submit("#signin")
	b.waitFor("the wrong-password message", `(document.querySelector("#login-error")||{}).textContent === "Wrong user name or password."`)
	b.shot("01-login")
	b.do("sign in", chromedp.SendKeys(chromedp.CSS("#password"), testPassword))
	b.submit("#signin")
	b.waitFor("the apps page", `location.pathname === "/apps" && !!document.querySelector("#new-app")`)

	// Create the app.
	b.do("name the app", chromedp.SendKeys(chromedp.CSS("#new-app"), app))
	b.submit("#create-app")
	b.waitFor("the new app's page", `location.pathname === "/apps/shop" && document.querySelector("#app-status").textContent === "new"`)

	// A git push deploys it (out of band, as gitreceive does: image,
	// release, rollout of real containers); the page shows web.1 up.
	e.push(ada, app)
	b.open("/apps/" + app)
	b.waitFor("web.1 up", `!!document.querySelector('tr.instance[data-name="web.1"][data-state="up"]')`)
	if got := b.eval(`document.querySelector("#app-status").textContent`); got != "running" {
		t.Errorf("status after deploy: %q", got)
	}

	// Set a config var whose value is markup: a new release appears, and
	// the value is shown as text, never run.
	const evil = `<script>document.title="pwned"</script><b>bold</b>`
	b.open("/apps/" + app + "/config")
	b.do("fill config", chromedp.SendKeys(chromedp.CSS("#config-key"), "GREETING"), chromedp.SetValue(chromedp.CSS("#config-value"), evil))
	b.submit("#config-set")
	b.waitFor("the config flash", `document.querySelector(".flash.ok").textContent.includes("Set GREETING: release v2.")`)
	b.do("reveal", chromedp.Click(chromedp.CSS(`tr.var[data-key="GREETING"] summary`)))
	b.waitFor("the revealed value", `document.querySelector('tr.var[data-key="GREETING"] details').open`)
	if got := b.eval(`document.querySelector('tr.var[data-key="GREETING"] pre.value').textContent`); got != evil {
		t.Errorf("revealed value %q, want the text %q", got, evil)
	}
	if n := b.eval(`String(document.querySelectorAll("pre.value b, pre.value script").length)`); n != "0" {
		t.Errorf("the config value became %s element(s)", n)
	}
	if title := b.eval("document.title"); title != "shop config · berth" {
		t.Errorf("title %q: the value ran as script", title)
	}
	b.shot("04-config")
	b.open("/apps/" + app + "/releases")
	b.waitFor("release v2", `document.querySelector('tr.release[data-version="2"] .desc').textContent === "Set GREETING"`)

	// Scale web to 2: two instances, both up.
	b.open("/apps/" + app)
	b.do("scale", chromedp.SetValue(chromedp.CSS("#scale-web"), "2"))
	b.submit("#scale-web-submit")
	b.waitFor("two web instances up", `document.querySelectorAll('tr.instance[data-state="up"]').length === 2 &&
		!!document.querySelector('tr.instance[data-name="web.1"]') && !!document.querySelector('tr.instance[data-name="web.2"]')`)
	if got := b.eval(`document.querySelector("#instance-count").textContent`); got != "2 / 2" {
		t.Errorf("instance count %q", got)
	}
	b.shot("03-app")

	// The live log: lines the app writes appear without a reload; pause
	// holds them back, resume shows them; markup in a line stays text.
	b.open("/apps/" + app + "/logs")
	b.waitFor("the first lines", `document.querySelector("#log").textContent.includes("serving web.")`)
	b.waitFor("the stream to be live", `document.querySelector("#log-state").textContent === "live"`)
	marker := "/marker-" + randHex(4)
	if err := e.appRequest(app, marker); err != nil {
		t.Fatal(err)
	}
	b.waitFor("the marker line", `document.querySelector("#log").textContent.includes("url:`+marker+`")`)

	b.do("pause", chromedp.Click(chromedp.CSS("#log-pause")))
	held := "/held-" + randHex(4)
	if err := e.appRequest(app, held); err != nil {
		t.Fatal(err)
	}
	b.waitFor("held lines", `/paused · [1-9]\d* new line/.test(document.querySelector("#log-state").textContent)`)
	if strings.Contains(b.eval(`document.querySelector("#log").textContent`), held) {
		t.Error("a line appeared while paused")
	}
	b.do("resume", chromedp.Click(chromedp.CSS("#log-pause")))
	b.waitFor("the held line after resume", `document.querySelector("#log").textContent.includes("url:`+held+`")`)

	script := `/<script>document.title='pwned'</script>`
	if err := e.appRequest(app, script); err != nil {
		t.Fatal(err)
	}
	b.waitFor("the script line as text", `document.querySelector("#log").textContent.includes(`+js("url:"+script)+`)`)
	if n := b.eval(`String(document.querySelectorAll("#log script").length)`); n != "0" {
		t.Errorf("the log line became %s script element(s)", n)
	}
	if title := b.eval("document.title"); title != "shop logs · berth" {
		t.Errorf("title %q: a log line ran as script", title)
	}
	b.shot("05-logs")

	// Filter by instance: the stream restarts with web.2's lines only.
	b.do("filter web.2", chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector("#log-filter"); s.value = "web.2"; s.dispatchEvent(new Event("change")); })()`))
	b.waitFor("web.2's lines only", `location.search === "?type=web.2" && document.querySelector("#log").textContent.includes("serving web.2") &&
		[...document.querySelectorAll("#log .proc")].every(p => p.textContent.startsWith("web.2"))`)

	// Roll back to v1 after a confirmation that shows the diff.
	b.open("/apps/" + app + "/releases")
	b.shot("06-releases")
	b.submit("#rollback-v1")
	b.waitFor("the confirmation", `location.pathname === "/apps/shop/releases/v1/rollback" &&
		document.querySelector("#diff dd.removed").textContent.includes("GREETING")`)
	b.shot("07-rollback-confirm")
	b.submit("#confirm-rollback")
	b.waitFor("the rollback release", `document.querySelector(".flash.ok").textContent.includes("Rolled back to v1 as v3.") &&
		document.querySelector('tr.release[data-version="3"] .desc').textContent === "Rollback to v1" &&
		!!document.querySelector('tr.release[data-version="3"] .badge.current')`)
	b.open("/apps/" + app + "/config")
	b.waitFor("the config of v1", `!document.querySelector('tr.var[data-key="GREETING"]')`)
	b.open("/apps/" + app)
	b.waitFor("two instances of v3", `[...document.querySelectorAll('tr.instance[data-state="up"]')].filter(r => r.cells[2].textContent === "v3").length === 2`)

	// The other pages, for the record and to see they render.
	b.open("/apps")
	b.waitFor("the apps list", `document.querySelector('tr[data-app="shop"] .status').textContent === "running"`)
	b.shot("02-apps")
	b.open("/apps/" + app + "/deploys")
	b.waitFor("the deploy history", `document.querySelector("#deploys").textContent.includes("succeeded")`)
	b.shot("08-deploys")
	b.submit(`#deploys a`)
	b.waitFor("the build log", `!!document.querySelector("#build-log") && document.querySelector("#build-log").textContent.includes("Building shop")`)
	b.open("/apps/" + app + "/releases/diff?from=v1&to=v2")
	b.waitFor("the diff", `document.querySelector("#diff dd.added").textContent.includes("GREETING")`)
	b.open("/account")
	b.do("name a token", chromedp.SendKeys(chromedp.CSS("#token-name"), "ci"))
	b.submit("#token-create")
	b.waitFor("the new token", `document.querySelector("#token-value").textContent.startsWith("berth_")`)
	b.shot("09-account")
	token := b.eval(`document.querySelector("#token-value").textContent`)
	if _, err := e.svc.ActorForAPIToken(context.Background(), token); err != nil {
		t.Errorf("the token the page showed does not work: %v", err)
	}
	b.open("/account")
	b.waitFor("the token in the list, used once", `document.querySelector('tr.token[data-token="ci"]').cells[2].textContent !== "never"`)
	b.submit(`tr.token[data-token="ci"] button`)
	b.waitFor("the token gone", `!document.querySelector('tr.token[data-token="ci"]')`)
	if _, err := e.svc.ActorForAPIToken(context.Background(), token); err == nil {
		t.Errorf("the deleted token still works")
	}
	b.open("/admin")
	b.waitFor("the users", `!!document.querySelector('tr[data-user="grace"]')`)
	b.shot("10-admin")
	b.open("/apps/" + app + "/settings")
	b.do("share", chromedp.SendKeys(chromedp.CSS("#share-user"), "grace"))
	b.submit(`form[action$="/share"] button`)
	b.waitFor("the share", `document.querySelector("#shares").textContent.includes("grace")`)
	b.shot("11-settings")

	b.open("/apps/" + app + "/domains")
	b.do("name a domain", chromedp.SendKeys(chromedp.CSS("#domain"), "www.shop.example"))
	b.submit(`form[action$="/domains"] button`)
	b.waitFor("the domain", `document.querySelector("#domains").textContent.includes("www.shop.example")`)
	b.shot("12-domains")
	b.submit(`#domains form[action$="/domains/remove"] button`)
	b.waitFor("the domain removed", `!document.querySelector("#domains") || !document.querySelector("#domains").textContent.includes("www.shop.example")`)
	if doms, err := e.svc.Domains(context.Background(), platform.System(), app); err != nil || len(doms) != 0 {
		t.Errorf("domains after removing in the dashboard: %v, %v", doms, err)
	}
	b.open("/apps/" + app)
	b.do("memory limit", chromedp.SendKeys(chromedp.CSS(`form[action$="/limits"] input[name="memory"]`), "256m"))
	b.submit(`form[action$="/limits"] button`)
	b.waitFor("the limit", `document.querySelector("#limits tbody tr").cells[1].textContent === "256m"`)

	// Sign out: the next page is the login page again.
	b.submit(`form.logout button`)
	b.waitFor("the login page after logout", `location.pathname === "/login"`)
	b.open("/apps")
	b.waitFor("no session", `location.pathname === "/login"`)
	b.checkConsole()
	t.Logf("screenshots in %s", b.artifacts)
}

// TestBrowserCrossSite replays the review's attack in Chromium: an admin
// signed in to the dashboard at dash.<Domain> visits a page of an app at
// evil.<Domain>, the same site, which plants a CSRF cookie for the
// dashboard with a token minted on its anonymous login page, and posts a
// form that adds its SSH key to the admin's account. The session cookie
// goes along (SameSite=Lax allows same-site posts); the post must be
// refused and add nothing, while the dashboard's own form still works.
func TestBrowserCrossSite(t *testing.T) {
	chromiumPath(t)
	e := newEnv(t, nil)
	ada := e.user("ada", platform.RoleAdmin)
	_, port, err := net.SplitHostPort(strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	dash := "http://dash." + e.domain + ":" + port

	// The attacker's pair, from an anonymous GET /login.
	attacker := e.client()
	token := attacker.token("/login")
	seed := attacker.cookie("/login", csrfCookie)
	if seed == "" {
		t.Fatal("the login page set no CSRF cookie")
	}
	planted, _ := testenv.AuthorizedKey(t, "")
	evilPage := `<!doctype html><title>cute cats</title><body>
<form id="f" method="post" action="` + dash + `/account/keys">
<input type="hidden" name="_csrf" value="` + token + `">
<input type="hidden" name="name" value="planted">
<input type="hidden" name="key" value="` + planted + `">
</form>
<script>
document.cookie = "` + csrfCookie + `=` + seed + `; Domain=` + e.domain + `; Path=/account";
document.getElementById("f").submit();
</script>`
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, evilPage)
	}))
	t.Cleanup(evil.Close)
	_, evilPort, err := net.SplitHostPort(strings.TrimPrefix(evil.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}

	// Every name under the domain is this host, as DNS would have it.
	b := newBrowser(t, dash, chromedp.Flag("host-resolver-rules", "MAP *."+e.domain+" 127.0.0.1"))
	keys := func() []platform.Key {
		t.Helper()
		ks, err := e.svc.Keys(context.Background(), ada, "ada")
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}

	b.open("/login")
	b.do("sign in", chromedp.SendKeys(chromedp.CSS("#user"), "ada"), chromedp.SendKeys(chromedp.CSS("#password"), testPassword))
	b.submit("#signin")
	b.waitFor("the apps page", `location.pathname === "/apps"`)

	b.do("visit the app's page", chromedp.Navigate("http://evil."+e.domain+":"+evilPort+"/"))
	b.waitFor("the dashboard's answer", `location.host === `+js("dash."+e.domain+":"+port)+` && document.readyState === "complete"`)
	b.shot("13-cross-site-refused")
	if ks := keys(); len(ks) != 0 {
		t.Fatalf("the page of another origin added key %q to the admin's account", ks[0].Name)
	}
	if text := b.eval(`document.body.innerText`); !strings.Contains(text, "another site") {
		t.Errorf("the refusal does not say why:\n%s", text)
	}

	// The dashboard's own form, same origin, still adds a key.
	b.open("/account")
	ownKey, _ := testenv.AuthorizedKey(t, "")
	b.do("fill the key", chromedp.SetValue(chromedp.CSS(`form[action="/account/keys"] input[name="name"]`), "laptop"),
		chromedp.SetValue(chromedp.CSS(`form[action="/account/keys"] textarea[name="key"]`), ownKey))
	b.submit(`form[action="/account/keys"] button`)
	b.waitFor("the added key", `document.querySelector(".flash.ok").textContent.includes("Added key laptop")`)
	if ks := keys(); len(ks) != 1 || ks[0].Name != "laptop" {
		t.Errorf("keys after adding one on the account page: %v", ks)
	}
	b.checkConsole()
}
