package deploy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/platform"
)

func TestRoutesFollowDomainsAndCerts(t *testing.T) {
	e := newEnv(t, nil)
	e.createApp("shop")
	v1 := e.release("shop", e.image("shop:v1", map[string]string{"web": webCommand("v1")}), nil)
	e.start(t)
	ctx := context.Background()
	if err := e.d.Rollout(ctx, "shop", v1, nil); err != nil {
		t.Fatal(err)
	}
	sys := platform.System()
	if _, err := e.svc.AddDomain(ctx, sys, "shop", "www.shop.example"); err != nil {
		t.Fatal(err)
	}
	cp, kp, _ := testenv.SelfSigned(t, "www.shop.example")
	certPEM, keyPEM := string(cp), string(kp)
	if _, err := e.svc.SetCert(ctx, sys, "shop", "www.shop.example", certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	if err := e.d.RefreshRoutes(ctx); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	steps := []struct {
		name string
		host string // app name given to getVia is the host's first label; use raw host below
		want int
	}{
		{name: "global domain", host: "shop." + e.domain, want: 200},
		{name: "custom domain", host: "www.shop.example", want: 200},
	}
	for _, s := range steps {
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.rtAddr+"/", nil)
		req.Host = s.host
		resp, err := c.Do(req)
		if err != nil || resp.StatusCode != s.want {
			t.Fatalf("%s: %v %v, want %d", s.name, resp, err, s.want)
		}
		resp.Body.Close()
	}
	if e.rt.Table().Certs["www.shop.example"] == nil {
		t.Fatal("the uploaded certificate is not in the routing table")
	}
	if err := e.svc.RemoveDomain(ctx, sys, "shop", "www.shop.example"); err != nil {
		t.Fatal(err)
	}
	if err := e.d.RefreshRoutes(ctx); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+e.rtAddr+"/", nil)
	req.Host = "www.shop.example"
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("removed domain: %v %v, want 404", resp, err)
	}
	resp.Body.Close()
}

// TestDefaultHostWinsOverClaims: rows that platform now refuses but that an
// older berth stored (another app's default hostname, a name under it, the
// global domain itself, and a certificate for the default hostname) never
// take an app's APP.<domain> from it, on any build of the routing table.
func TestDefaultHostWinsOverClaims(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.start(t)
	for _, app := range []string{"victim", "evil"} {
		e.createApp(app)
		rel := e.release(app, e.image(app+":v1", map[string]string{"web": webCommand(app)}), nil)
		if err := e.d.Rollout(ctx, app, rel, nil); err != nil {
			t.Fatal(err)
		}
	}
	victimHost := "victim." + e.domain
	claims := []string{victimHost, "x." + victimHost, e.domain, "www.evil.example"}
	if _, err := e.pool.Exec(ctx, `insert into domains (hostname, app_id)
		select h, a.id from apps a, unnest($1::text[]) h where a.name = 'evil'`, claims); err != nil {
		t.Fatal(err)
	}
	cp, kp, _ := testenv.SelfSigned(t, victimHost)
	certPEM, keyPEM := string(cp), string(kp)
	if _, err := e.pool.Exec(ctx, `insert into certs (hostname, app_id, cert_pem, key_pem)
		select $1, id, $2, $3 from apps where name = 'evil'`, victimHost, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := e.d.RefreshRoutes(ctx); err != nil {
			t.Fatal(err)
		}
		tab := e.rt.Table()
		if got := tab.Hosts[victimHost]; got != "victim" {
			t.Fatalf("build %d: %s routes to %q, want victim", i, victimHost, got)
		}
		for _, h := range []string{"x." + victimHost, e.domain} {
			if app, ok := tab.Hosts[h]; ok {
				t.Fatalf("build %d: %s routes to %s, want it left out", i, h, app)
			}
		}
		if tab.Hosts["www.evil.example"] != "evil" {
			t.Fatalf("build %d: evil's own custom domain is not routed: %v", i, tab.Hosts)
		}
		if tab.Certs[victimHost] != nil {
			t.Fatalf("build %d: evil's certificate answers for %s", i, victimHost)
		}
	}
	c := &http.Client{Timeout: 5 * time.Second}
	steps := []struct {
		name, host string
		want       int
		body       string
	}{
		{name: "victim's default hostname", host: victimHost, want: 200, body: "victim web.1"},
		{name: "evil's default hostname", host: "evil." + e.domain, want: 200, body: "evil web.1"},
		{name: "a name under victim's", host: "x." + victimHost, want: 404},
		{name: "the global domain", host: e.domain, want: 404},
	}
	for _, s := range steps {
		for range 5 {
			req, _ := http.NewRequest(http.MethodGet, "http://"+e.rtAddr+"/", nil)
			req.Host = s.host
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != s.want || (s.body != "" && strings.TrimSpace(string(b)) != s.body) {
				t.Fatalf("%s: %d %q, want %d %q", s.name, resp.StatusCode, b, s.want, s.body)
			}
		}
	}
}
