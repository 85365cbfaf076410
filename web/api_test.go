package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/platform"
)

// apiCall is one request in the API script.
type apiCall struct {
	name   string
	as     string // user whose token is sent; "" for none
	method string
	path   string
	body   string
	status int
	want   string // a substring of the response body
	check  func(t *testing.T, body []byte)
}

// do sends one API request.
func (e *env) api(token, method, path, body string) (int, http.Header, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+"/api/v1"+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if raw, ok := strings.CutPrefix(token, "raw:"); ok {
		req.Header.Set("Authorization", raw)
	} else if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// snapshot is everything the API can change, to show a refused request
// wrote nothing.
func (e *env) snapshot(apps ...string) string {
	e.t.Helper()
	ctx, sys := context.Background(), platform.System()
	var b strings.Builder
	all, _ := e.svc.Apps(ctx, sys)
	for _, a := range all {
		fmt.Fprintf(&b, "app %s owner %s branch %s\n", a.Name, a.Owner, a.DeployBranch)
	}
	for _, app := range apps {
		cfg, _ := e.svc.Config(ctx, sys, app)
		form, _ := e.svc.Formation(ctx, sys, app)
		rels, _ := e.svc.Releases(ctx, sys, app, 0)
		doms, _ := e.svc.Domains(ctx, sys, app)
		shares, _ := e.svc.AppShares(ctx, sys, app)
		stopped, _ := e.svc.AppStopped(ctx, app)
		fmt.Fprintf(&b, "%s: config %v %v form %+v releases %d domains %v shares %v stopped %v\n",
			app, cfg.Keys(), cfg, form, len(rels), doms, shares, stopped)
	}
	users, _ := e.svc.Users(ctx, sys)
	for _, u := range users {
		fmt.Fprintf(&b, "user %s %s %v\n", u.Name, u.Role, u.HasPassword)
	}
	keys, _ := e.svc.Keys(ctx, sys, "")
	for _, k := range keys {
		fmt.Fprintf(&b, "key %s %s\n", k.User, k.Name)
	}
	return b.String()
}

func TestAPI(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	ann := e.user("ann", platform.RoleMember)
	ben := e.user("ben", platform.RoleMember)
	root := e.user("root", platform.RoleAdmin)
	tokens := map[string]string{}
	for _, a := range []platform.Actor{ann, ben, root} {
		tok, err := e.svc.CreateAPIToken(ctx, a, "test")
		if err != nil {
			t.Fatal(err)
		}
		tokens[a.Name] = tok
	}
	for _, name := range []string{"ann-web", "ann-new"} {
		if _, err := e.svc.CreateApp(ctx, ann, name); err != nil {
			t.Fatal(err)
		}
	}
	e.push(ann, "ann-web")
	deploys, err := e.svc.Deploys(ctx, ann, "ann-web", 0)
	if err != nil || len(deploys) != 1 {
		t.Fatalf("deploys: %v %v", deploys, err)
	}
	deployID := fmt.Sprint(deploys[0].ID)

	keyLine, _ := testenv.AuthorizedKey(t, "ann@laptop")
	keyJSON, _ := json.Marshal(map[string]string{"public_key": keyLine, "name": "laptop"})
	keyForAnnJSON, _ := json.Marshal(map[string]string{"public_key": keyLine, "user": "ann"})
	var newToken string

	instances := func(want int, state string) func(*testing.T, []byte) {
		return func(t *testing.T, b []byte) {
			ins := decode[[]apiInstance](t, b)
			n := 0
			for _, in := range ins {
				if in.State == state {
					n++
				}
			}
			if n != want {
				t.Errorf("%d instances %s, want %d: %s", n, state, want, b)
			}
		}
	}

	calls := []apiCall{
		// Authentication.
		{name: "no token", method: "GET", path: "/apps", status: 401, want: "Bearer"},
		{name: "not a bearer token", as: "basic", method: "GET", path: "/apps", status: 401, want: "Bearer"},
		{name: "unknown token", as: "forged", method: "GET", path: "/apps", status: 401, want: "unknown API token"},
		{name: "me", as: "ann", method: "GET", path: "/me", status: 200, want: `"name":"ann"`},
		{name: "unknown endpoint", as: "ann", method: "GET", path: "/nope", status: 404, want: "openapi.json"},

		// Apps.
		{name: "list apps", as: "ann", method: "GET", path: "/apps", status: 200, check: func(t *testing.T, b []byte) {
			apps := decode[[]apiApp](t, b)
			if len(apps) != 2 || apps[0].Name != "ann-new" || apps[0].Status != "new" || apps[1].Name != "ann-web" || apps[1].Status != "running" || apps[1].Up != 1 {
				t.Errorf("apps: %s", b)
			}
		}},
		{name: "others see no apps", as: "ben", method: "GET", path: "/apps", status: 200, want: "[]"},
		{name: "create app", as: "ben", method: "POST", path: "/apps", body: `{"name":"ben-app"}`, status: 201, want: `"owner":"ben"`},
		{name: "create app bad name", as: "ben", method: "POST", path: "/apps", body: `{"name":"Bad_Name"}`, status: 400, want: "invalid app name"},
		{name: "create app taken", as: "ben", method: "POST", path: "/apps", body: `{"name":"ann-web"}`, status: 409, want: "already exists"},
		{name: "create app unknown field", as: "ben", method: "POST", path: "/apps", body: `{"nmae":"x"}`, status: 400, want: "unknown"},
		{name: "create app bad json", as: "ben", method: "POST", path: "/apps", body: `{"name":`, status: 400, want: "invalid JSON"},
		{name: "create app no body", as: "ben", method: "POST", path: "/apps", status: 400, want: "JSON body"},
		{name: "create app trailing data", as: "ben", method: "POST", path: "/apps", body: `{"name":"x1"} {}`, status: 400, want: "after the object"},
		{name: "app info", as: "ann", method: "GET", path: "/apps/ann-web", status: 200, check: func(t *testing.T, b []byte) {
			a := decode[apiApp](t, b)
			if a.Status != "running" || a.Release != 1 || len(a.Instances) != 1 || a.Instances[0].Name != "web.1" || a.URL != "http://ann-web.berth.test/" {
				t.Errorf("app: %s", b)
			}
		}},
		{name: "app info of another's app", as: "ben", method: "GET", path: "/apps/ann-web", status: 404, want: `app \"ann-web\" not found`},
		{name: "app info missing", as: "ann", method: "GET", path: "/apps/no-such", status: 404},
		{name: "set branch", as: "ann", method: "PATCH", path: "/apps/ann-web", body: `{"deploy_branch":"prod"}`, status: 200, want: `"deploy_branch":"prod"`},
		{name: "set bad branch", as: "ann", method: "PATCH", path: "/apps/ann-web", body: `{"deploy_branch":"a..b"}`, status: 400, want: "branch"},
		{name: "set branch of another's app", as: "ben", method: "PATCH", path: "/apps/ann-web", body: `{"deploy_branch":"x"}`, status: 404},

		// Config.
		{name: "config empty", as: "ann", method: "GET", path: "/apps/ann-web/config", status: 200, want: "{}"},
		{name: "config of another's app", as: "ben", method: "GET", path: "/apps/ann-web/config", status: 404},
		{name: "set config", as: "ann", method: "PATCH", path: "/apps/ann-web/config", body: `{"FOO":"bar","BAZ":"1"}`, status: 200, check: func(t *testing.T, b []byte) {
			r := decode[apiRelease](t, b)
			if r.Version != 2 || r.Description != "Set BAZ, FOO" || !reflect.DeepEqual(r.ConfigKeys, []string{"BAZ", "FOO"}) || r.CreatedBy != "ann" {
				t.Errorf("release: %s", b)
			}
		}},
		{name: "config values", as: "ann", method: "GET", path: "/apps/ann-web/config", status: 200, want: `"FOO":"bar"`},
		{name: "set bad config key", as: "ann", method: "PATCH", path: "/apps/ann-web/config", body: `{"1BAD":"x","GOOD":"y"}`, status: 400, want: "config var name"},
		{name: "set and unset together", as: "ann", method: "PATCH", path: "/apps/ann-web/config", body: `{"A":"1","FOO":null}`, status: 400, want: "separate requests"},
		{name: "set nothing", as: "ann", method: "PATCH", path: "/apps/ann-web/config", body: `{}`, status: 400, want: "at least one"},
		{name: "config not an object", as: "ann", method: "PATCH", path: "/apps/ann-web/config", body: `["FOO"]`, status: 400, want: "invalid JSON"},
		{name: "unset missing var", as: "ann", method: "PATCH", path: "/apps/ann-web/config", body: `{"FOO":null,"NOPE":null}`, status: 404, want: "NOPE"},
		{name: "set config of another's app", as: "ben", method: "PATCH", path: "/apps/ann-web/config", body: `{"X":"1"}`, status: 404},
		{name: "unset config", as: "ann", method: "PATCH", path: "/apps/ann-web/config", body: `{"BAZ":null}`, status: 200, want: `"description":"Unset BAZ"`},

		// Formation and limits.
		{name: "formation", as: "ann", method: "GET", path: "/apps/ann-web/formation", status: 200, want: `[{"type":"web","quantity":1`},
		{name: "formation of another's app", as: "ben", method: "GET", path: "/apps/ann-web/formation", status: 404},
		{name: "scale", as: "ann", method: "PATCH", path: "/apps/ann-web/formation", body: `{"web":2}`, status: 200, want: `"quantity":2`},
		{name: "two instances", as: "ann", method: "GET", path: "/apps/ann-web/processes", status: 200, check: instances(2, "up")},
		{name: "scale negative", as: "ann", method: "PATCH", path: "/apps/ann-web/formation", body: `{"web":-1}`, status: 400, want: "quantity"},
		{name: "scale unknown type", as: "ann", method: "PATCH", path: "/apps/ann-web/formation", body: `{"worker":1}`, status: 400, want: "has web"},
		{name: "scale not a number", as: "ann", method: "PATCH", path: "/apps/ann-web/formation", body: `{"web":"two"}`, status: 400, want: "invalid JSON"},
		{name: "scale another's app", as: "ben", method: "PATCH", path: "/apps/ann-web/formation", body: `{"web":0}`, status: 404},
		{name: "set limits", as: "ann", method: "PATCH", path: "/apps/ann-web/formation/web/limits", body: `{"memory":"256m","cpu":"0.5"}`, status: 200,
			want: `"limits":{"memory_bytes":268435456,"cpu_millis":500}`},
		{name: "set bad limit", as: "ann", method: "PATCH", path: "/apps/ann-web/formation/web/limits", body: `{"memory":"lots"}`, status: 400, want: "memory"},
		{name: "set no limit", as: "ann", method: "PATCH", path: "/apps/ann-web/formation/web/limits", body: `{}`, status: 400, want: "at least one"},
		{name: "set limit of bad type", as: "ann", method: "PATCH", path: "/apps/ann-web/formation/Web!/limits", body: `{"pids":"10"}`, status: 400, want: "process type"},
		{name: "set limits of another's app", as: "ben", method: "PATCH", path: "/apps/ann-web/formation/web/limits", body: `{"pids":"10"}`, status: 404},

		// Processes.
		{name: "processes of another's app", as: "ben", method: "GET", path: "/apps/ann-web/processes", status: 404},
		{name: "restart web", as: "ann", method: "POST", path: "/apps/ann-web/restart", body: `{"type":"web"}`, status: 200, want: "restart of ann-web done"},
		{name: "restarted instances up", as: "ann", method: "GET", path: "/apps/ann-web/processes", status: 200, check: instances(2, "up")},
		{name: "restart bad type", as: "ann", method: "POST", path: "/apps/ann-web/restart", body: `{"type":"BAD"}`, status: 400, want: "process type"},
		{name: "restart another's app", as: "ben", method: "POST", path: "/apps/ann-web/restart", status: 404},
		{name: "restart app not deployed", as: "ann", method: "POST", path: "/apps/ann-new/restart", status: 409, want: "no deployed release"},
		{name: "stop another's app", as: "ben", method: "POST", path: "/apps/ann-web/stop", status: 404},
		{name: "stop", as: "ann", method: "POST", path: "/apps/ann-web/stop", status: 200},
		{name: "stopped", as: "ann", method: "GET", path: "/apps/ann-web", status: 200, want: `"status":"stopped"`},
		{name: "restart stopped app", as: "ann", method: "POST", path: "/apps/ann-web/restart", status: 409, want: "stopped"},
		{name: "start another's app", as: "ben", method: "POST", path: "/apps/ann-web/start", status: 404},
		{name: "start", as: "ann", method: "POST", path: "/apps/ann-web/start", status: 200},
		{name: "started", as: "ann", method: "GET", path: "/apps/ann-web/processes", status: 200, check: instances(2, "up")},

		// One-off commands.
		{name: "run", as: "ann", method: "POST", path: "/apps/ann-web/run", body: `{"command":["sh","-c","echo hello $DYNO; echo oops >&2; cat; exit 3"],"stdin":"from stdin"}`, status: 200,
			check: func(t *testing.T, b []byte) {
				r := decode[map[string]any](t, b)
				if r["exit_code"] != float64(3) || !strings.HasPrefix(r["stdout"].(string), "hello run.") || !strings.Contains(r["stdout"].(string), "from stdin") ||
					r["stderr"] != "oops\n" || r["truncated"] != false {
					t.Errorf("run: %s", b)
				}
			}},
		{name: "run nothing", as: "ann", method: "POST", path: "/apps/ann-web/run", body: `{"command":[]}`, status: 400, want: "command"},
		{name: "run in another's app", as: "ben", method: "POST", path: "/apps/ann-web/run", body: `{"command":["true"]}`, status: 404},
		{name: "run in app not deployed", as: "ann", method: "POST", path: "/apps/ann-new/run", body: `{"command":["true"]}`, status: 409, want: "no deployed release"},

		// Releases.
		{name: "releases", as: "ann", method: "GET", path: "/apps/ann-web/releases", status: 200, check: func(t *testing.T, b []byte) {
			rs := decode[[]apiRelease](t, b)
			if len(rs) != 3 || rs[0].Version != 3 || rs[2].Version != 1 {
				t.Errorf("releases: %s", b)
			}
		}},
		{name: "releases of another's app", as: "ben", method: "GET", path: "/apps/ann-web/releases", status: 404},
		{name: "release", as: "ann", method: "GET", path: "/apps/ann-web/releases/v2", status: 200, want: `"config_keys":["BAZ","FOO"]`},
		{name: "release missing", as: "ann", method: "GET", path: "/apps/ann-web/releases/v99", status: 404, want: "v99"},
		{name: "release bad version", as: "ann", method: "GET", path: "/apps/ann-web/releases/latest", status: 400, want: "version"},
		{name: "release of another's app", as: "ben", method: "GET", path: "/apps/ann-web/releases/v1", status: 404, want: "app"},
		{name: "diff", as: "ann", method: "GET", path: "/apps/ann-web/diff?from=v1&to=v3", status: 200, check: func(t *testing.T, b []byte) {
			d := decode[apiDiff](t, b)
			if !reflect.DeepEqual(d.Added, []string{"FOO"}) || len(d.Removed) != 0 || len(d.Changed) != 0 || d.ImageChanged {
				t.Errorf("diff: %s", b)
			}
		}},
		{name: "diff bad version", as: "ann", method: "GET", path: "/apps/ann-web/diff?from=x&to=v1", status: 400},
		{name: "diff of another's app", as: "ben", method: "GET", path: "/apps/ann-web/diff?from=v1&to=v2", status: 404},
		{name: "rollback", as: "ann", method: "POST", path: "/apps/ann-web/rollback", body: `{"version":1}`, status: 200, want: `"description":"Rollback to v1"`},
		{name: "rolled back instances", as: "ann", method: "GET", path: "/apps/ann-web/processes", status: 200, check: func(t *testing.T, b []byte) {
			for _, in := range decode[[]apiInstance](t, b) {
				if in.State == "up" && in.Release != 4 {
					t.Errorf("instance %s runs v%d after the rollback to v4", in.Name, in.Release)
				}
			}
		}},
		{name: "rollback to nothing", as: "ann", method: "POST", path: "/apps/ann-web/rollback", body: `{"version":0}`, status: 400, want: "version"},
		{name: "rollback missing", as: "ann", method: "POST", path: "/apps/ann-web/rollback", body: `{"version":99}`, status: 404},
		{name: "rollback another's app", as: "ben", method: "POST", path: "/apps/ann-web/rollback", body: `{"version":1}`, status: 404},

		// Domains.
		{name: "add domain", as: "ann", method: "POST", path: "/apps/ann-web/domains", body: `{"hostname":"WWW.Example.com"}`, status: 201, want: `"hostname":"www.example.com"`},
		{name: "add domain twice", as: "ann", method: "POST", path: "/apps/ann-new/domains", body: `{"hostname":"www.example.com"}`, status: 409},
		{name: "add bad domain", as: "ann", method: "POST", path: "/apps/ann-web/domains", body: `{"hostname":"not a host"}`, status: 400, want: "hostname"},
		{name: "add domain to another's app", as: "ben", method: "POST", path: "/apps/ann-web/domains", body: `{"hostname":"b.example.com"}`, status: 404},
		{name: "domains", as: "ann", method: "GET", path: "/apps/ann-web/domains", status: 200, want: `["www.example.com"]`},
		{name: "domains of another's app", as: "ben", method: "GET", path: "/apps/ann-web/domains", status: 404},
		{name: "remove domain of another's app", as: "ben", method: "DELETE", path: "/apps/ann-web/domains/www.example.com", status: 404},
		{name: "remove domain", as: "ann", method: "DELETE", path: "/apps/ann-web/domains/www.example.com", status: 204},
		{name: "remove domain again", as: "ann", method: "DELETE", path: "/apps/ann-web/domains/www.example.com", status: 404},

		// Deploys and logs.
		{name: "deploys", as: "ann", method: "GET", path: "/apps/ann-web/deploys", status: 200, want: `"status":"succeeded"`},
		{name: "deploys of another's app", as: "ben", method: "GET", path: "/apps/ann-web/deploys", status: 404},
		{name: "build log", as: "ann", method: "GET", path: "/apps/ann-web/deploys/" + deployID + "/log", status: 200, want: "-----> Building ann-web"},
		{name: "build log of another app", as: "ann", method: "GET", path: "/apps/ann-new/deploys/" + deployID + "/log", status: 404},
		{name: "build log missing", as: "ann", method: "GET", path: "/apps/ann-web/deploys/999999/log", status: 404},
		{name: "build log bad id", as: "ann", method: "GET", path: "/apps/ann-web/deploys/abc/log", status: 404},
		{name: "build log of another's app", as: "ben", method: "GET", path: "/apps/ann-web/deploys/" + deployID + "/log", status: 404},
		{name: "logs", as: "ann", method: "GET", path: "/apps/ann-web/logs?lines=200", status: 200, check: func(t *testing.T, b []byte) {
			for _, want := range []string{"serving web.1", "serving web.2", "berth[", "scaled to web=2"} {
				if !bytes.Contains(b, []byte(want)) {
					t.Errorf("logs lack %q:\n%s", want, b)
				}
			}
		}},
		{name: "logs of web.2", as: "ann", method: "GET", path: "/apps/ann-web/logs?type=web.2", status: 200, check: func(t *testing.T, b []byte) {
			if !bytes.Contains(b, []byte("serving web.2")) || bytes.Contains(b, []byte("serving web.1")) || bytes.Contains(b, []byte("berth[")) {
				t.Errorf("filtered logs:\n%s", b)
			}
		}},
		{name: "logs bad type", as: "ann", method: "GET", path: "/apps/ann-web/logs?type=Web", status: 400, want: "process type"},
		{name: "logs bad lines", as: "ann", method: "GET", path: "/apps/ann-web/logs?lines=many", status: 400, want: "lines"},
		{name: "logs bad follow", as: "ann", method: "GET", path: "/apps/ann-web/logs?follow=maybe", status: 400, want: "follow"},
		{name: "logs of another's app", as: "ben", method: "GET", path: "/apps/ann-web/logs", status: 404},

		// Sharing.
		{name: "share", as: "ann", method: "POST", path: "/apps/ann-web/shares", body: `{"user":"ben"}`, status: 201, want: `["ben"]`},
		{name: "shared app visible", as: "ben", method: "GET", path: "/apps/ann-web/config", status: 200, want: "{}"},
		{name: "sharee may not share", as: "ben", method: "POST", path: "/apps/ann-web/shares", body: `{"user":"root"}`, status: 403, want: "only the owner"},
		{name: "sharee may not destroy", as: "ben", method: "DELETE", path: "/apps/ann-web", status: 403, want: "only the owner"},
		{name: "share with nobody", as: "ann", method: "POST", path: "/apps/ann-web/shares", body: `{"user":"nobody"}`, status: 404, want: "user"},
		{name: "shares", as: "ann", method: "GET", path: "/apps/ann-web/shares", status: 200, want: `["ben"]`},
		{name: "unshare", as: "ann", method: "DELETE", path: "/apps/ann-web/shares/ben", status: 204},
		{name: "unshared app gone", as: "ben", method: "GET", path: "/apps/ann-web", status: 404},
		{name: "unshare again", as: "ann", method: "DELETE", path: "/apps/ann-web/shares/ben", status: 404},
		{name: "shares of another's app", as: "ben", method: "GET", path: "/apps/ann-web/shares", status: 404},

		// SSH keys.
		{name: "add key", as: "ann", method: "POST", path: "/keys", body: string(keyJSON), status: 201, want: `"fingerprint":"SHA256:`},
		{name: "add key twice", as: "root", method: "POST", path: "/keys", body: string(keyJSON), status: 409},
		{name: "add bad key", as: "ann", method: "POST", path: "/keys", body: `{"public_key":"ssh-rsa nonsense"}`, status: 400, want: "SSH public key"},
		{name: "add key for another user", as: "ben", method: "POST", path: "/keys", body: string(keyForAnnJSON), status: 403, want: "only admins"},
		{name: "keys", as: "ann", method: "GET", path: "/keys", status: 200, want: `"name":"laptop"`},
		{name: "keys of another user", as: "ben", method: "GET", path: "/keys?user=ann", status: 403},
		{name: "all keys for admins", as: "root", method: "GET", path: "/keys?user=", status: 200, want: `"user":"ann"`},
		{name: "remove another's key", as: "ben", method: "DELETE", path: "/keys/laptop?user=ann", status: 403},
		{name: "remove key", as: "ann", method: "DELETE", path: "/keys/laptop", status: 204},
		{name: "remove key again", as: "ann", method: "DELETE", path: "/keys/laptop", status: 404},

		// API tokens.
		{name: "create token", as: "ann", method: "POST", path: "/tokens", body: `{"name":"ci"}`, status: 201, check: func(t *testing.T, b []byte) {
			newToken = decode[map[string]string](t, b)["token"]
			if !strings.HasPrefix(newToken, "berth_") {
				t.Errorf("token: %s", b)
			}
		}},
		{name: "new token works", as: "new", method: "GET", path: "/me", status: 200, want: `"name":"ann"`},
		{name: "list tokens", as: "ann", method: "GET", path: "/tokens", status: 200, check: func(t *testing.T, b []byte) {
			toks := decode[[]map[string]any](t, b)
			var names []string
			for _, tk := range toks {
				names = append(names, tk["name"].(string))
				if _, secret := tk["token"]; secret {
					t.Errorf("the token list shows a token: %s", b)
				}
			}
			if !slices.Contains(names, "ci") {
				t.Errorf("token list %s lacks ci", b)
			}
		}},
		{name: "others' tokens are not listed", as: "ben", method: "GET", path: "/tokens", status: 200, check: func(t *testing.T, b []byte) {
			if strings.Contains(string(b), `"ci"`) {
				t.Errorf("ben sees ann's token: %s", b)
			}
		}},
		{name: "create token twice", as: "ann", method: "POST", path: "/tokens", body: `{"name":"ci"}`, status: 409},
		{name: "create token bad name", as: "ann", method: "POST", path: "/tokens", body: `{"name":"no spaces please"}`, status: 400, want: "token name"},
		{name: "delete another's token", as: "ben", method: "DELETE", path: "/tokens/ci", status: 404},
		{name: "delete token", as: "ann", method: "DELETE", path: "/tokens/ci", status: 204},
		{name: "deleted token refused", as: "new", method: "GET", path: "/me", status: 401},

		// Users.
		{name: "users for members", as: "ann", method: "GET", path: "/users", status: 403, want: "only admins"},
		{name: "users", as: "root", method: "GET", path: "/users", status: 200, want: `"name":"ben"`},
		{name: "add user as member", as: "ann", method: "POST", path: "/users", body: `{"name":"eve"}`, status: 403},
		{name: "add user", as: "root", method: "POST", path: "/users", body: `{"name":"dave"}`, status: 201, want: `"role":"member"`},
		{name: "add user twice", as: "root", method: "POST", path: "/users", body: `{"name":"dave"}`, status: 409},
		{name: "add user bad name", as: "root", method: "POST", path: "/users", body: `{"name":"Dave!"}`, status: 400, want: "user name"},
		{name: "add user bad role", as: "root", method: "POST", path: "/users", body: `{"name":"erin","role":"god"}`, status: 400, want: "role"},
		{name: "set role", as: "root", method: "PUT", path: "/users/dave/role", body: `{"role":"admin"}`, status: 200, want: `"role":"admin"`},
		{name: "set own role", as: "root", method: "PUT", path: "/users/root/role", body: `{"role":"member"}`, status: 403, want: "own role"},
		{name: "set bad role", as: "root", method: "PUT", path: "/users/dave/role", body: `{"role":"owner"}`, status: 400},
		{name: "set role as member", as: "ann", method: "PUT", path: "/users/ann/role", body: `{"role":"admin"}`, status: 403},
		{name: "set password", as: "root", method: "PUT", path: "/users/dave/password", body: `{"password":"long enough"}`, status: 204},
		{name: "set short password", as: "root", method: "PUT", path: "/users/dave/password", body: `{"password":"short"}`, status: 400, want: "at least 8"},
		{name: "set another's password", as: "ann", method: "PUT", path: "/users/ben/password", body: `{"password":"long enough"}`, status: 403},
		{name: "set own password", as: "ann", method: "PUT", path: "/users/ann/password", body: `{"password":"` + testPassword + `"}`, status: 204},
		{name: "remove user as member", as: "ann", method: "DELETE", path: "/users/ben", status: 403},
		{name: "remove user", as: "root", method: "DELETE", path: "/users/dave", status: 204},
		{name: "remove user again", as: "root", method: "DELETE", path: "/users/dave", status: 404},

		// Destroy.
		{name: "destroy another's app", as: "ben", method: "DELETE", path: "/apps/ann-web", status: 404},
		{name: "destroy", as: "ann", method: "DELETE", path: "/apps/ann-web", status: 204},
		{name: "destroyed", as: "ann", method: "GET", path: "/apps/ann-web", status: 404},
	}
	watched := []string{"ann-web", "ann-new", "ben-app"}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			token := tokens[c.as]
			switch c.as {
			case "forged":
				token = "berth_forged"
			case "basic":
				token = "raw:Basic YW5uOmNvcnJlY3QgaG9yc2UgYmF0dGVyeQ=="
			case "new":
				token = newToken
			}
			before := ""
			if c.status >= 400 {
				before = e.snapshot(watched...)
			}
			status, hdr, body := e.api(token, c.method, c.path, c.body)
			if status != c.status {
				t.Fatalf("%s %s: %d, want %d: %s", c.method, c.path, status, c.status, body)
			}
			if c.want != "" && !bytes.Contains(body, []byte(c.want)) {
				t.Errorf("%s %s: body lacks %q: %s", c.method, c.path, c.want, body)
			}
			if c.status >= 400 {
				if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("error as %q", ct)
				}
				ae := decode[apiError](t, body)
				if ae.Error == "" || ae.Status != status {
					t.Errorf("error body %s", body)
				}
				if after := e.snapshot(watched...); after != before {
					t.Errorf("a refused request changed state:\nbefore:\n%s\nafter:\n%s", before, after)
				}
			}
			if c.check != nil {
				c.check(t, body)
			}
		})
	}

	// The destroyed app's containers are gone, and the hook for its
	// repository ran once.
	if ins, err := e.dep.Instances(ctx, "ann-web"); err == nil && len(ins) > 0 {
		t.Errorf("instances after destroy: %+v", ins)
	}
	e.mu.Lock()
	if !reflect.DeepEqual(e.destroyed, []string{"ann-web"}) {
		t.Errorf("AppDestroyed saw %v", e.destroyed)
	}
	e.mu.Unlock()

	t.Run("openapi document covers every endpoint", func(t *testing.T) {
		status, _, body := e.api("", "GET", "/openapi.json", "")
		if status != 200 {
			t.Fatalf("openapi.json: %d", status)
		}
		doc := decode[map[string]any](t, body)
		if doc["openapi"] != "3.1.0" {
			t.Errorf("openapi version %v", doc["openapi"])
		}
		paths := doc["paths"].(map[string]any)
		param := regexp.MustCompile(`:([a-z]+)`)
		var tested []string
		for _, c := range calls {
			tested = append(tested, c.method+" "+strings.SplitN(c.path, "?", 2)[0])
		}
		for _, r := range e.srv.apiTable() {
			p := param.ReplaceAllString(r.path, "{$1}")
			item, ok := paths[p].(map[string]any)
			if !ok || item[strings.ToLower(r.method)] == nil {
				t.Errorf("%s %s is not in the document", r.method, p)
			}
			// Every endpoint is exercised by the script above.
			re := regexp.MustCompile("^" + r.method + " " + param.ReplaceAllString(regexp.QuoteMeta(r.path), `[^/]+`) + "$")
			if !slices.ContainsFunc(tested, re.MatchString) {
				t.Errorf("%s %s has no test", r.method, r.path)
			}
		}
	})
}
