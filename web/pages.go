package web

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/berthhq/berth/internal/buildlog"
	"github.com/berthhq/berth/platform"
)

// done finishes a form post: on success it flashes msg and goes to back;
// a user error (bad input, taken name, not allowed) is flashed on back; an
// app the user may not see is a 404 page; anything else is the server's.
func (s *Server) done(c echo.Context, back, msg string, err error) error {
	if err != nil {
		if _, userErr := statusOf(err); !userErr || isAppNotFound(err) {
			return err
		}
		s.setFlash(c, true, err.Error())
		return c.Redirect(http.StatusSeeOther, back)
	}
	if msg != "" {
		s.setFlash(c, false, msg)
	}
	return c.Redirect(http.StatusSeeOther, back)
}

// isAppNotFound reports an app the actor may not see.
func isAppNotFound(err error) bool {
	var nf *platform.NotFoundError
	return errors.As(err, &nf) && nf.Kind == "app"
}

func appPath(app string, rest ...string) string {
	return "/apps/" + app + strings.Join(rest, "")
}

// appHeader loads the app of the request for the signed-in user; others'
// apps are not found.
func (s *Server) appHeader(c echo.Context, tab string) (platform.App, *appNav, error) {
	a, err := s.svc.App(c.Request().Context(), actorOf(c), c.Param("app"))
	if err != nil {
		return platform.App{}, nil, err
	}
	return a, &appNav{Name: a.Name, Tab: tab, URL: s.appURL(a.Name)}, nil
}

func (s *Server) appsPage(c echo.Context) error {
	ctx, actor := c.Request().Context(), actorOf(c)
	apps, err := s.svc.Apps(ctx, actor)
	if err != nil {
		return err
	}
	list := make([]appStatus, 0, len(apps))
	for _, a := range apps {
		st, err := s.status(ctx, actor, a)
		if err != nil {
			return err
		}
		list = append(list, st)
	}
	return s.render(c, http.StatusOK, "apps", &page{Title: "Apps", Section: "apps", Data: list})
}

func (s *Server) createApp(c echo.Context) error {
	name := strings.TrimSpace(c.FormValue("name"))
	a, err := s.svc.CreateApp(c.Request().Context(), actorOf(c), name)
	if err != nil {
		return s.done(c, "/apps", "", err)
	}
	return s.done(c, appPath(a.Name), fmt.Sprintf("Created %s. Deploy it with: git push berth@HOST:%s main", a.Name, a.Name), nil)
}

type appPageData struct {
	Status  appStatus
	Current platform.Release
	HasRel  bool
	Types   []string
}

func (s *Server) appPage(c echo.Context) error {
	a, nav, err := s.appHeader(c, "overview")
	if err != nil {
		return err
	}
	ctx, actor := c.Request().Context(), actorOf(c)
	st, err := s.status(ctx, actor, a)
	if err != nil {
		return err
	}
	d := appPageData{Status: st}
	if d.Current, d.HasRel, err = s.svc.CurrentRelease(ctx, actor, a.Name); err != nil {
		return err
	}
	for _, p := range st.Formation {
		d.Types = append(d.Types, p.Type)
	}
	return s.render(c, http.StatusOK, "app", &page{Title: a.Name, Section: "apps", App: nav, Data: d})
}

func (s *Server) scaleForm(c echo.Context) error {
	app := c.Param("app")
	typ := c.FormValue("type")
	if err := platform.ValidateProcessType(typ); err != nil {
		return s.done(c, appPath(app), "", err)
	}
	n, err := platform.ParseQuantity(typ, c.FormValue("quantity"))
	if err != nil {
		return s.done(c, appPath(app), "", err)
	}
	_, err = s.scale(c.Request().Context(), actorOf(c), app, map[string]int{typ: n})
	return s.done(c, appPath(app), fmt.Sprintf("Scaled %s to %d.", typ, n), err)
}

func (s *Server) restartForm(c echo.Context) error {
	app, typ := c.Param("app"), c.FormValue("type")
	err := s.psAction(c.Request().Context(), actorOf(c), app, "restart", typ)
	what := "all processes"
	if typ != "" {
		what = typ
	}
	return s.done(c, appPath(app), "Restarted "+what+".", err)
}

func (s *Server) stopForm(c echo.Context) error {
	app := c.Param("app")
	return s.done(c, appPath(app), "Stopped "+app+".", s.psAction(c.Request().Context(), actorOf(c), app, "stop", ""))
}

func (s *Server) startForm(c echo.Context) error {
	app := c.Param("app")
	return s.done(c, appPath(app), "Started "+app+".", s.psAction(c.Request().Context(), actorOf(c), app, "start", ""))
}

func (s *Server) limitsForm(c echo.Context) error {
	app := c.Param("app")
	typ := c.FormValue("type")
	vals := map[string]string{}
	for _, n := range []string{"memory", "cpu", "pids", "disk", "network"} {
		if v := strings.TrimSpace(c.FormValue(n)); v != "" {
			vals[n] = v
		}
	}
	if len(vals) == 0 {
		return s.done(c, appPath(app), "", &platform.InvalidError{Field: "limits", Reason: "give at least one limit (memory, cpu, pids, disk, network)"})
	}
	change, err := platform.ParseLimitChange(vals)
	if err != nil {
		return s.done(c, appPath(app), "", err)
	}
	_, err = s.svc.SetLimits(c.Request().Context(), actorOf(c), app, typ, change)
	return s.done(c, appPath(app), "Limits of "+typ+" set; they apply to instances started from now on (restart to apply them now).", err)
}

type releasesData struct {
	Releases []platform.Release
	Deployed int
}

func (s *Server) releasesPage(c echo.Context) error {
	a, nav, err := s.appHeader(c, "releases")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	rels, err := s.svc.Releases(ctx, actorOf(c), a.Name, 0)
	if err != nil {
		return err
	}
	deployed, _, err := s.svc.DeployedRelease(ctx, a.Name)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "releases", &page{Title: a.Name + " releases", Section: "apps", App: nav, Data: releasesData{Releases: rels, Deployed: deployed}})
}

func (s *Server) releasePair(c echo.Context, from, to string) (releaseDiff, error) {
	ctx, actor, app := c.Request().Context(), actorOf(c), c.Param("app")
	fv, err := platform.ParseVersion(from)
	if err != nil {
		return releaseDiff{}, err
	}
	tv, err := platform.ParseVersion(to)
	if err != nil {
		return releaseDiff{}, err
	}
	fr, err := s.svc.Release(ctx, actor, app, fv)
	if err != nil {
		return releaseDiff{}, err
	}
	tr, err := s.svc.Release(ctx, actor, app, tv)
	if err != nil {
		return releaseDiff{}, err
	}
	return diffReleases(fr, tr), nil
}

func (s *Server) diffPage(c echo.Context) error {
	a, nav, err := s.appHeader(c, "releases")
	if err != nil {
		return err
	}
	d, err := s.releasePair(c, c.QueryParam("from"), c.QueryParam("to"))
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "diff", &page{Title: a.Name + " diff", Section: "apps", App: nav, Data: d})
}

// rollbackPage asks for confirmation and shows what the rollback changes:
// the diff from the current release to the target.
func (s *Server) rollbackPage(c echo.Context) error {
	a, nav, err := s.appHeader(c, "releases")
	if err != nil {
		return err
	}
	cur, ok, err := s.svc.CurrentRelease(c.Request().Context(), actorOf(c), a.Name)
	if err != nil {
		return err
	}
	if !ok {
		return &platform.NotFoundError{Kind: "release", Name: c.Param("version"), Hint: a.Name + " has no releases"}
	}
	d, err := s.releasePair(c, strconv.Itoa(cur.Version), c.Param("version"))
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "rollback", &page{Title: "Roll back " + a.Name, Section: "apps", App: nav, Data: d})
}

func (s *Server) rollbackForm(c echo.Context) error {
	app := c.Param("app")
	back := appPath(app, "/releases")
	v, err := platform.ParseVersion(c.Param("version"))
	if err != nil {
		return s.done(c, back, "", err)
	}
	rel, err := s.rollback(c.Request().Context(), actorOf(c), app, v)
	return s.done(c, back, fmt.Sprintf("Rolled back to v%d as v%d.", v, rel.Version), err)
}

type configData struct {
	Vars []configVar
}

type configVar struct{ Key, Value string }

func (s *Server) configPage(c echo.Context) error {
	a, nav, err := s.appHeader(c, "config")
	if err != nil {
		return err
	}
	vars, err := s.svc.Config(c.Request().Context(), actorOf(c), a.Name)
	if err != nil {
		return err
	}
	d := configData{}
	for _, k := range vars.Keys() {
		d.Vars = append(d.Vars, configVar{Key: k, Value: vars[k]})
	}
	return s.render(c, http.StatusOK, "config", &page{Title: a.Name + " config", Section: "apps", App: nav, Data: d})
}

func (s *Server) configSetForm(c echo.Context) error {
	app := c.Param("app")
	back := appPath(app, "/config")
	key := strings.TrimSpace(c.FormValue("key"))
	rel, err := s.setConfig(c.Request().Context(), actorOf(c), app, map[string]string{key: c.FormValue("value")})
	return s.done(c, back, fmt.Sprintf("Set %s: release v%d.", key, rel.Version), err)
}

func (s *Server) configUnsetForm(c echo.Context) error {
	app := c.Param("app")
	back := appPath(app, "/config")
	key := c.FormValue("key")
	rel, err := s.unsetConfig(c.Request().Context(), actorOf(c), app, []string{key})
	return s.done(c, back, fmt.Sprintf("Unset %s: release v%d.", key, rel.Version), err)
}

func (s *Server) domainsPage(c echo.Context) error {
	a, nav, err := s.appHeader(c, "domains")
	if err != nil {
		return err
	}
	hosts, err := s.svc.Domains(c.Request().Context(), actorOf(c), a.Name)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "domains", &page{Title: a.Name + " domains", Section: "apps", App: nav, Data: hosts})
}

func (s *Server) domainAddForm(c echo.Context) error {
	app := c.Param("app")
	h, err := s.svc.AddDomain(c.Request().Context(), actorOf(c), app, c.FormValue("hostname"))
	return s.done(c, appPath(app, "/domains"), "Added "+h+".", err)
}

func (s *Server) domainRemoveForm(c echo.Context) error {
	app := c.Param("app")
	h := c.FormValue("hostname")
	err := s.svc.RemoveDomain(c.Request().Context(), actorOf(c), app, h)
	return s.done(c, appPath(app, "/domains"), "Removed "+h+".", err)
}

func (s *Server) deploysPage(c echo.Context) error {
	a, nav, err := s.appHeader(c, "deploys")
	if err != nil {
		return err
	}
	ds, err := s.svc.Deploys(c.Request().Context(), actorOf(c), a.Name, 50)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "deploys", &page{Title: a.Name + " deploys", Section: "apps", App: nav, Data: ds})
}

type deployLogData struct {
	Deploy    platform.Deploy
	Log       string
	Truncated bool
	Missing   bool
}

func (s *Server) deployLog(c echo.Context) (deployLogData, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil {
		return deployLogData{}, &platform.NotFoundError{Kind: "deploy", Name: c.Param("id"), Hint: "see the deploy history"}
	}
	d, err := s.svc.Deploy(c.Request().Context(), actorOf(c), c.Param("app"), id)
	if err != nil {
		return deployLogData{}, err
	}
	if d.App != c.Param("app") {
		return deployLogData{}, &platform.NotFoundError{Kind: "deploy", Name: c.Param("id"), Hint: "see the deploy history"}
	}
	out := deployLogData{Deploy: d}
	if d.BuildLogPath == "" {
		out.Missing = true
		return out, nil
	}
	b, trunc, err := buildlog.ReadTail(d.BuildLogPath, buildlog.MaxShown)
	if errors.Is(err, os.ErrNotExist) {
		out.Missing = true
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("read build log: %w", err)
	}
	out.Log, out.Truncated = string(b), trunc
	return out, nil
}

func (s *Server) deployLogPage(c echo.Context) error {
	_, nav, err := s.appHeader(c, "deploys")
	if err != nil {
		return err
	}
	d, err := s.deployLog(c)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "deploylog", &page{Title: "Deploy " + c.Param("id"), Section: "apps", App: nav, Data: d})
}

type logsData struct {
	Types     []string
	Instances []string
	Filter    string
}

func (s *Server) logsPage(c echo.Context) error {
	a, nav, err := s.appHeader(c, "logs")
	if err != nil {
		return err
	}
	form, err := s.svc.Formation(c.Request().Context(), actorOf(c), a.Name)
	if err != nil {
		return err
	}
	d := logsData{Filter: c.QueryParam("type")}
	if err := validProcessFilter(d.Filter); err != nil {
		return err
	}
	for _, p := range form {
		d.Types = append(d.Types, p.Type)
		for n := 1; n <= p.Quantity; n++ {
			d.Instances = append(d.Instances, fmt.Sprintf("%s.%d", p.Type, n))
		}
	}
	return s.render(c, http.StatusOK, "logs", &page{Title: a.Name + " logs", Section: "apps", App: nav, Data: d})
}

type settingsData struct {
	App    platform.App
	Shares []string
	Owner  bool
}

func (s *Server) settingsPage(c echo.Context) error {
	a, nav, err := s.appHeader(c, "settings")
	if err != nil {
		return err
	}
	actor := actorOf(c)
	shares, err := s.svc.AppShares(c.Request().Context(), actor, a.Name)
	if err != nil {
		return err
	}
	d := settingsData{App: a, Shares: shares, Owner: actor.IsAdmin() || a.OwnerID == actor.UserID}
	return s.render(c, http.StatusOK, "settings", &page{Title: a.Name + " settings", Section: "apps", App: nav, Data: d})
}

func (s *Server) shareForm(c echo.Context) error {
	app, user := c.Param("app"), strings.TrimSpace(c.FormValue("user"))
	err := s.svc.ShareApp(c.Request().Context(), actorOf(c), app, user)
	return s.done(c, appPath(app, "/settings"), app+" is now shared with "+user+".", err)
}

func (s *Server) unshareForm(c echo.Context) error {
	app, user := c.Param("app"), c.FormValue("user")
	err := s.svc.UnshareApp(c.Request().Context(), actorOf(c), app, user)
	return s.done(c, appPath(app, "/settings"), app+" is no longer shared with "+user+".", err)
}

func (s *Server) destroyForm(c echo.Context) error {
	app := c.Param("app")
	if c.FormValue("confirm") != app {
		return s.done(c, appPath(app, "/settings"), "", fmt.Errorf("type the app name %q to confirm; nothing destroyed: %w", app, platform.ErrConflict))
	}
	err := s.destroy(c.Request().Context(), actorOf(c), app)
	if err != nil {
		return s.done(c, appPath(app, "/settings"), "", err)
	}
	return s.done(c, "/apps", "Destroyed "+app+".", nil)
}

type accountData struct {
	User     platform.User
	Keys     []platform.Key
	Tokens   []platform.APIToken
	NewToken string
	TokenFor string
}

func (s *Server) accountPage(c echo.Context) error {
	return s.renderAccount(c, "", "")
}

func (s *Server) renderAccount(c echo.Context, token, tokenName string) error {
	ctx, actor := c.Request().Context(), actorOf(c)
	u, err := s.svc.User(ctx, actor, actor.Name)
	if err != nil {
		return err
	}
	keys, err := s.svc.Keys(ctx, actor, actor.Name)
	if err != nil {
		return err
	}
	tokens, err := s.svc.APITokens(ctx, actor)
	if err != nil {
		return err
	}
	d := accountData{User: u, Keys: keys, Tokens: tokens, NewToken: token, TokenFor: tokenName}
	return s.render(c, http.StatusOK, "account", &page{Title: "Account", Section: "account", Data: d})
}

func (s *Server) passwordForm(c echo.Context) error {
	ctx, actor := c.Request().Context(), actorOf(c)
	if _, err := s.svc.CheckPassword(ctx, actor.Name, c.FormValue("current")); err != nil {
		if errors.Is(err, platform.ErrBadCredentials) {
			err = &platform.InvalidError{Field: "current password", Reason: "it is wrong; nothing changed"}
		}
		return s.done(c, "/account", "", err)
	}
	if c.FormValue("password") != c.FormValue("confirm") {
		return s.done(c, "/account", "", &platform.InvalidError{Field: "new password", Reason: "the two entries differ"})
	}
	// Every other session of the user ends (a stolen cookie with it); the
	// one making the change goes on.
	var keep string
	if ck, err := s.cookie(c, sessionCookie); err == nil {
		keep = ck.Value
	}
	err := s.svc.SetPasswordKeepSession(ctx, actor, actor.Name, c.FormValue("password"), keep)
	return s.done(c, "/account", "Password changed; your other sessions are signed out.", err)
}

func (s *Server) keyAddForm(c echo.Context) error {
	actor := actorOf(c)
	k, err := s.svc.AddKey(c.Request().Context(), actor, actor.Name, strings.TrimSpace(c.FormValue("name")), c.FormValue("key"))
	return s.done(c, "/account", "Added key "+k.Name+" ("+k.Fingerprint+").", err)
}

func (s *Server) keyRemoveForm(c echo.Context) error {
	actor := actorOf(c)
	name := c.FormValue("name")
	err := s.svc.RemoveKey(c.Request().Context(), actor, actor.Name, name)
	return s.done(c, "/account", "Removed key "+name+".", err)
}

func (s *Server) tokenCreateForm(c echo.Context) error {
	name := strings.TrimSpace(c.FormValue("name"))
	token, err := s.svc.CreateAPIToken(c.Request().Context(), actorOf(c), name)
	if err != nil {
		return s.done(c, "/account", "", err)
	}
	// Shown once, on this response only; never in a redirect or cookie.
	return s.renderAccount(c, token, name)
}

func (s *Server) tokenDeleteForm(c echo.Context) error {
	name := strings.TrimSpace(c.FormValue("name"))
	err := s.svc.DeleteAPIToken(c.Request().Context(), actorOf(c), name)
	return s.done(c, "/account", "Deleted API token "+name+".", err)
}

type adminData struct {
	Users []platform.User
	Apps  []adminApp
}

type adminApp struct {
	App    platform.App
	Shares []string
}

func (s *Server) adminPage(c echo.Context) error {
	ctx, actor := c.Request().Context(), actorOf(c)
	users, err := s.svc.Users(ctx, actor)
	if err != nil {
		if errors.Is(err, platform.ErrForbidden) {
			return &platform.NotFoundError{Kind: "page", Name: "/admin", Hint: "it is for admins"}
		}
		return err
	}
	apps, err := s.svc.Apps(ctx, actor)
	if err != nil {
		return err
	}
	d := adminData{Users: users}
	for _, a := range apps {
		sh, err := s.svc.AppShares(ctx, actor, a.Name)
		if err != nil {
			return err
		}
		d.Apps = append(d.Apps, adminApp{App: a, Shares: sh})
	}
	return s.render(c, http.StatusOK, "admin", &page{Title: "Admin", Section: "admin", Data: d})
}

func (s *Server) userAddForm(c echo.Context) error {
	name := strings.TrimSpace(c.FormValue("name"))
	role := platform.Role(c.FormValue("role"))
	_, err := s.svc.CreateUser(c.Request().Context(), actorOf(c), name, role)
	return s.done(c, "/admin", "Added "+name+". Set a password for them below, or run: berth users:passwd "+name, err)
}

func (s *Server) userRemoveForm(c echo.Context) error {
	name := c.FormValue("name")
	err := s.svc.DeleteUser(c.Request().Context(), actorOf(c), name)
	return s.done(c, "/admin", "Removed "+name+".", err)
}

func (s *Server) userRoleForm(c echo.Context) error {
	name := c.FormValue("name")
	role, err := platform.ParseRole(c.FormValue("role"))
	if err == nil {
		err = s.svc.SetRole(c.Request().Context(), actorOf(c), name, role)
	}
	return s.done(c, "/admin", name+" is now "+string(role)+".", err)
}

func (s *Server) userPasswordForm(c echo.Context) error {
	name := c.FormValue("name")
	err := s.svc.SetPassword(c.Request().Context(), actorOf(c), name, c.FormValue("password"))
	return s.done(c, "/admin", "Password of "+name+" set.", err)
}
