package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/berthhq/berth/deploy"
	"github.com/berthhq/berth/platform"
)

// apiPrefix is where the JSON API lives.
const apiPrefix = "/api/v1"

// apiRoute is one endpoint of the JSON API; the table both registers the
// routes and writes the OpenAPI document, so the two cannot drift apart.
type apiRoute struct {
	method  string
	path    string // echo syntax, e.g. /apps/:app
	summary string
	body    map[string]any // JSON schema of the request body; nil for none
	status  int            // success status
	result  string         // what a success returns
	admin   bool
	handler echo.HandlerFunc
}

func (s *Server) apiTable() []apiRoute {
	str := map[string]any{"type": "string"}
	obj := func(required []string, props map[string]any) map[string]any {
		m := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			m["required"] = required
		}
		return m
	}
	return []apiRoute{
		{method: "GET", path: "/me", summary: "the user the token belongs to", status: 200, result: "user", handler: s.apiMe},
		{method: "GET", path: "/apps", summary: "list the apps you may see, with status", status: 200, result: "array of app", handler: s.apiApps},
		{method: "POST", path: "/apps", summary: "create an app (apps:create)", body: obj([]string{"name"}, map[string]any{"name": str}), status: 201, result: "app", handler: s.apiCreateApp},
		{method: "GET", path: "/apps/:app", summary: "an app's status, formation and instances (apps:info, ps:report)", status: 200, result: "app", handler: s.apiApp},
		{method: "PATCH", path: "/apps/:app", summary: "change an app's deploy branch (apps:branch)", body: obj([]string{"deploy_branch"}, map[string]any{"deploy_branch": str}), status: 200, result: "app", handler: s.apiPatchApp},
		{method: "DELETE", path: "/apps/:app", summary: "destroy an app and its containers (apps:destroy); owner or admin", status: 204, handler: s.apiDestroyApp},
		{method: "GET", path: "/apps/:app/config", summary: "an app's config vars (config)", status: 200, result: "object of name to value", handler: s.apiConfig},
		{method: "PATCH", path: "/apps/:app/config", summary: "set config vars, or unset them with null (config:set, config:unset); makes a release and rolls it out",
			body: map[string]any{"type": "object", "additionalProperties": map[string]any{"type": []string{"string", "null"}}}, status: 200, result: "release", handler: s.apiPatchConfig},
		{method: "GET", path: "/apps/:app/formation", summary: "process types with quantities and limits (ps:scale)", status: 200, result: "array of process", handler: s.apiFormation},
		{method: "PATCH", path: "/apps/:app/formation", summary: "scale process types (ps:scale)", body: map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "integer"}}, status: 200, result: "array of process", handler: s.apiScale},
		{method: "PATCH", path: "/apps/:app/formation/:type/limits", summary: "set resource limits of a process type (resource:limit)",
			body: obj(nil, map[string]any{"memory": str, "cpu": str, "pids": str, "disk": str, "network": str}), status: 200, result: "process", handler: s.apiLimits},
		{method: "GET", path: "/apps/:app/processes", summary: "running instances: state, uptime, restarts, memory, cpu (ps:report)", status: 200, result: "array of instance", handler: s.apiProcesses},
		{method: "POST", path: "/apps/:app/restart", summary: "restart all processes or one type (ps:restart)", body: obj(nil, map[string]any{"type": str}), status: 200, result: "message", handler: s.apiPS("restart")},
		{method: "POST", path: "/apps/:app/stop", summary: "stop an app (ps:stop)", status: 200, result: "message", handler: s.apiPS("stop")},
		{method: "POST", path: "/apps/:app/start", summary: "start a stopped app (ps:start)", status: 200, result: "message", handler: s.apiPS("start")},
		{method: "POST", path: "/apps/:app/run", summary: "run a command in a one-off container of the app and return its exit code and output (run); output beyond 1 MiB per stream is cut",
			body: obj([]string{"command"}, map[string]any{"command": map[string]any{"type": "array", "items": str, "minItems": 1}, "stdin": str}), status: 200, result: "exit code, stdout and stderr", handler: s.apiRun},
		{method: "GET", path: "/apps/:app/releases", summary: "releases, newest first (releases)", status: 200, result: "array of release", handler: s.apiReleases},
		{method: "GET", path: "/apps/:app/releases/:version", summary: "one release (releases:info)", status: 200, result: "release", handler: s.apiRelease},
		{method: "GET", path: "/apps/:app/diff", summary: "what changed between releases ?from=vN&to=vM: config keys and image", status: 200, result: "diff", handler: s.apiDiff},
		{method: "POST", path: "/apps/:app/rollback", summary: "roll back to a release, as a new release (releases:rollback)", body: obj([]string{"version"}, map[string]any{"version": map[string]any{"type": "integer"}}), status: 200, result: "release", handler: s.apiRollback},
		{method: "GET", path: "/apps/:app/domains", summary: "an app's domains (domains:list)", status: 200, result: "array of hostname", handler: s.apiDomains},
		{method: "POST", path: "/apps/:app/domains", summary: "add a domain (domains:add)", body: obj([]string{"hostname"}, map[string]any{"hostname": str}), status: 201, result: "hostname", handler: s.apiAddDomain},
		{method: "DELETE", path: "/apps/:app/domains/:hostname", summary: "remove a domain (domains:remove)", status: 204, handler: s.apiRemoveDomain},
		{method: "GET", path: "/apps/:app/deploys", summary: "deploy history, newest first", status: 200, result: "array of deploy", handler: s.apiDeploys},
		{method: "GET", path: "/apps/:app/deploys/:id/log", summary: "a deploy's build log (text/plain)", status: 200, result: "text", handler: s.apiDeployLog},
		{method: "GET", path: "/apps/:app/logs", summary: "the app's log as text; ?lines=N&type=web&follow=true (logs)", status: 200, result: "text", handler: s.apiLogs},
		{method: "GET", path: "/apps/:app/shares", summary: "users the app is shared with", status: 200, result: "array of user name", handler: s.apiShares},
		{method: "POST", path: "/apps/:app/shares", summary: "share the app with a user (apps:share); owner or admin", body: obj([]string{"user"}, map[string]any{"user": str}), status: 201, result: "array of user name", handler: s.apiShare},
		{method: "DELETE", path: "/apps/:app/shares/:user", summary: "stop sharing the app with a user (apps:unshare)", status: 204, handler: s.apiUnshare},
		{method: "GET", path: "/keys", summary: "SSH keys: yours, ?user=NAME (admin: anyone's, empty: all)", status: 200, result: "array of key", handler: s.apiKeys},
		{method: "POST", path: "/keys", summary: "add an SSH key (keys:add)", body: obj([]string{"public_key"}, map[string]any{"public_key": str, "name": str, "user": str}), status: 201, result: "key", handler: s.apiAddKey},
		{method: "DELETE", path: "/keys/:name", summary: "remove an SSH key by name or fingerprint (keys:remove); ?user=NAME", status: 204, handler: s.apiRemoveKey},
		{method: "GET", path: "/tokens", summary: "your API tokens: name, created_at, last_used_at (the tokens themselves are never stored)", status: 200, result: "array of token", handler: s.apiTokens},
		{method: "POST", path: "/tokens", summary: "create an API token; it is shown only in this response", body: obj([]string{"name"}, map[string]any{"name": str}), status: 201, result: "token", handler: s.apiCreateToken},
		{method: "DELETE", path: "/tokens/:name", summary: "delete one of your API tokens", status: 204, handler: s.apiDeleteToken},
		{method: "GET", path: "/users", summary: "list users (users:list)", status: 200, result: "array of user", admin: true, handler: s.apiUsers},
		{method: "POST", path: "/users", summary: "add a user (users:add)", body: obj([]string{"name"}, map[string]any{"name": str, "role": map[string]any{"type": "string", "enum": []string{"admin", "member"}}}), status: 201, result: "user", admin: true, handler: s.apiAddUser},
		{method: "DELETE", path: "/users/:name", summary: "remove a user (users:remove)", status: 204, admin: true, handler: s.apiRemoveUser},
		{method: "PUT", path: "/users/:name/role", summary: "change a user's role", body: obj([]string{"role"}, map[string]any{"role": map[string]any{"type": "string", "enum": []string{"admin", "member"}}}), status: 200, result: "user", admin: true, handler: s.apiSetRole},
		{method: "PUT", path: "/users/:name/password", summary: "set a user's dashboard password (users:passwd); yours, or anyone's for admins", body: obj([]string{"password"}, map[string]any{"password": str}), status: 204, handler: s.apiSetPassword},
	}
}

func (s *Server) apiRoutes(e *echo.Echo) {
	e.GET(apiPrefix+"/openapi.json", s.openAPI)
	g := e.Group(apiPrefix, s.requireToken)
	for _, r := range s.apiTable() {
		g.Add(r.method, r.path, r.handler)
	}
	g.Any("/*", func(c echo.Context) error {
		return echo.NewHTTPError(http.StatusNotFound, "no such endpoint: see "+apiPrefix+"/openapi.json")
	})
}

// apiError is the body of every API error.
type apiError struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

// bind decodes a JSON request body strictly: unknown fields and trailing
// data are errors, so a typo never half-applies.
func bind(c echo.Context, v any) error {
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("send the body as application/json: %w", ErrBadRequest)
	}
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("the request needs a JSON body: %w", ErrBadRequest)
		}
		return fmt.Errorf("invalid JSON body: %s: %w", err, ErrBadRequest)
	}
	if dec.More() {
		return fmt.Errorf("invalid JSON body: data after the object: %w", ErrBadRequest)
	}
	return nil
}

// bindOptional is bind for bodies that may be left out.
func bindOptional(c echo.Context, v any) error {
	if c.Request().ContentLength == 0 {
		return nil
	}
	return bind(c, v)
}

type apiUser struct {
	Name        string    `json:"name"`
	Role        string    `json:"role"`
	HasPassword bool      `json:"has_password"`
	CreatedAt   time.Time `json:"created_at"`
}

func toAPIUser(u platform.User) apiUser {
	return apiUser{Name: u.Name, Role: string(u.Role), HasPassword: u.HasPassword, CreatedAt: u.CreatedAt}
}

type apiInstance struct {
	Name             string    `json:"name"`
	Type             string    `json:"type"`
	Number           int       `json:"number"`
	State            string    `json:"state"`
	Release          int       `json:"release"`
	StartedAt        time.Time `json:"started_at,omitzero"`
	UptimeSeconds    int64     `json:"uptime_seconds"`
	Restarts         int       `json:"restarts"`
	LastExit         string    `json:"last_exit,omitempty"`
	MemoryBytes      uint64    `json:"memory_bytes"`
	MemoryLimitBytes uint64    `json:"memory_limit_bytes"`
	CPUSeconds       float64   `json:"cpu_seconds"`
	IP               string    `json:"ip,omitempty"`
}

func toAPIInstances(ins []deploy.Instance) []apiInstance {
	out := make([]apiInstance, 0, len(ins))
	for _, in := range ins {
		out = append(out, apiInstance{Name: in.Name, Type: in.Type, Number: in.Number, State: in.State, Release: in.Release,
			StartedAt: in.StartedAt, UptimeSeconds: int64(in.Uptime.Seconds()), Restarts: in.Restarts, LastExit: in.LastExit,
			MemoryBytes: in.MemoryBytes, MemoryLimitBytes: in.MemoryLimitBytes, CPUSeconds: in.CPUTime.Seconds(), IP: in.IP})
	}
	return out
}

type apiApp struct {
	Name         string             `json:"name"`
	Owner        string             `json:"owner"`
	URL          string             `json:"url"`
	DeployBranch string             `json:"deploy_branch"`
	CreatedAt    time.Time          `json:"created_at"`
	Status       string             `json:"status"`
	Release      int                `json:"release"`
	Up           int                `json:"instances_up"`
	Want         int                `json:"instances_wanted"`
	LastDeploy   time.Time          `json:"last_deploy,omitzero"`
	Formation    []platform.Process `json:"formation"`
	Instances    []apiInstance      `json:"instances"`
}

func (s *Server) toAPIApp(c echo.Context, a platform.App) (apiApp, error) {
	st, err := s.status(c.Request().Context(), actorOf(c), a)
	if err != nil {
		return apiApp{}, err
	}
	form := st.Formation
	if form == nil {
		form = []platform.Process{}
	}
	return apiApp{Name: a.Name, Owner: a.Owner, URL: st.URL, DeployBranch: a.DeployBranch, CreatedAt: a.CreatedAt,
		Status: st.Status, Release: st.Release, Up: st.Up, Want: st.Want, LastDeploy: st.LastDeploy,
		Formation: form, Instances: toAPIInstances(st.Instances)}, nil
}

type apiRelease struct {
	Version     int               `json:"version"`
	Description string            `json:"description"`
	CreatedBy   string            `json:"created_by"`
	CreatedAt   time.Time         `json:"created_at"`
	Image       string            `json:"image"`
	Processes   map[string]string `json:"processes"`
	ConfigKeys  []string          `json:"config_keys"`
}

func toAPIRelease(r platform.Release) apiRelease {
	keys := r.Config.Keys()
	if keys == nil {
		keys = []string{}
	}
	return apiRelease{Version: r.Version, Description: r.Description, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt,
		Image: r.Image, Processes: r.Processes, ConfigKeys: keys}
}

func (s *Server) apiMe(c echo.Context) error {
	a := actorOf(c)
	u, err := s.svc.User(c.Request().Context(), a, a.Name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toAPIUser(u))
}

func (s *Server) apiApps(c echo.Context) error {
	apps, err := s.svc.Apps(c.Request().Context(), actorOf(c))
	if err != nil {
		return err
	}
	out := make([]apiApp, 0, len(apps))
	for _, a := range apps {
		x, err := s.toAPIApp(c, a)
		if err != nil {
			return err
		}
		out = append(out, x)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) apiCreateApp(c echo.Context) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := bind(c, &req); err != nil {
		return err
	}
	a, err := s.svc.CreateApp(c.Request().Context(), actorOf(c), req.Name)
	if err != nil {
		return err
	}
	x, err := s.toAPIApp(c, a)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, x)
}

func (s *Server) apiApp(c echo.Context) error {
	a, err := s.svc.App(c.Request().Context(), actorOf(c), c.Param("app"))
	if err != nil {
		return err
	}
	x, err := s.toAPIApp(c, a)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, x)
}

func (s *Server) apiPatchApp(c echo.Context) error {
	var req struct {
		DeployBranch string `json:"deploy_branch"`
	}
	if err := bind(c, &req); err != nil {
		return err
	}
	ctx, actor := c.Request().Context(), actorOf(c)
	if err := s.svc.SetDeployBranch(ctx, actor, c.Param("app"), req.DeployBranch); err != nil {
		return err
	}
	return s.apiApp(c)
}

func (s *Server) apiDestroyApp(c echo.Context) error {
	if err := s.destroy(c.Request().Context(), actorOf(c), c.Param("app")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) apiConfig(c echo.Context) error {
	vars, err := s.svc.Config(c.Request().Context(), actorOf(c), c.Param("app"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string(vars))
}

func (s *Server) apiPatchConfig(c echo.Context) error {
	var req map[string]*string
	if err := bind(c, &req); err != nil {
		return err
	}
	set, unset := map[string]string{}, []string{}
	for k, v := range req {
		if v == nil {
			unset = append(unset, k)
		} else {
			set[k] = *v
		}
	}
	ctx, actor, app := c.Request().Context(), actorOf(c), c.Param("app")
	var rel platform.Release
	var err error
	switch {
	case len(set) > 0 && len(unset) > 0:
		return fmt.Errorf("set (values) and unset (null) config vars in separate requests; nothing changed: %w", ErrBadRequest)
	case len(unset) > 0:
		rel, err = s.unsetConfig(ctx, actor, app, unset)
	default:
		rel, err = s.setConfig(ctx, actor, app, set)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toAPIRelease(rel))
}

func (s *Server) apiFormation(c echo.Context) error {
	procs, err := s.svc.Formation(c.Request().Context(), actorOf(c), c.Param("app"))
	if err != nil {
		return err
	}
	if procs == nil {
		procs = []platform.Process{}
	}
	return c.JSON(http.StatusOK, procs)
}

func (s *Server) apiScale(c echo.Context) error {
	var req map[string]int
	if err := bind(c, &req); err != nil {
		return err
	}
	procs, err := s.scale(c.Request().Context(), actorOf(c), c.Param("app"), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, procs)
}

func (s *Server) apiLimits(c echo.Context) error {
	var req struct {
		Memory  *string `json:"memory"`
		CPU     *string `json:"cpu"`
		PIDs    *string `json:"pids"`
		Disk    *string `json:"disk"`
		Network *string `json:"network"`
	}
	if err := bind(c, &req); err != nil {
		return err
	}
	vals := map[string]string{}
	for name, v := range map[string]*string{"memory": req.Memory, "cpu": req.CPU, "pids": req.PIDs, "disk": req.Disk, "network": req.Network} {
		if v != nil {
			vals[name] = *v
		}
	}
	if len(vals) == 0 {
		return &platform.InvalidError{Field: "limits", Reason: "give at least one of memory, cpu, pids, disk, network"}
	}
	change, err := platform.ParseLimitChange(vals)
	if err != nil {
		return err
	}
	p, err := s.svc.SetLimits(c.Request().Context(), actorOf(c), c.Param("app"), c.Param("type"), change)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) apiProcesses(c echo.Context) error {
	ctx, app := c.Request().Context(), c.Param("app")
	if _, err := s.svc.App(ctx, actorOf(c), app); err != nil {
		return err
	}
	ins, err := s.deploy.Instances(ctx, app)
	if err != nil && !errors.Is(err, deploy.ErrNoRelease) {
		return err
	}
	return c.JSON(http.StatusOK, toAPIInstances(ins))
}

func (s *Server) apiPS(action string) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req struct {
			Type string `json:"type"`
		}
		if action == "restart" {
			if err := bindOptional(c, &req); err != nil {
				return err
			}
		}
		app := c.Param("app")
		if err := s.psAction(c.Request().Context(), actorOf(c), app, action, req.Type); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]string{"message": action + " of " + app + " done"})
	}
}

func (s *Server) apiReleases(c echo.Context) error {
	rels, err := s.svc.Releases(c.Request().Context(), actorOf(c), c.Param("app"), 0)
	if err != nil {
		return err
	}
	out := make([]apiRelease, 0, len(rels))
	for _, r := range rels {
		out = append(out, toAPIRelease(r))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) apiRelease(c echo.Context) error {
	ctx, actor, app := c.Request().Context(), actorOf(c), c.Param("app")
	if _, err := s.svc.App(ctx, actor, app); err != nil {
		return err
	}
	v, err := platform.ParseVersion(c.Param("version"))
	if err != nil {
		return err
	}
	r, err := s.svc.Release(ctx, actor, app, v)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toAPIRelease(r))
}

type apiDiff struct {
	From           int      `json:"from"`
	To             int      `json:"to"`
	Added          []string `json:"config_added"`
	Changed        []string `json:"config_changed"`
	Removed        []string `json:"config_removed"`
	ImageChanged   bool     `json:"image_changed"`
	FromImage      string   `json:"from_image"`
	ToImage        string   `json:"to_image"`
	ProcessChanges []string `json:"process_changes"`
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *Server) apiDiff(c echo.Context) error {
	if _, err := s.svc.App(c.Request().Context(), actorOf(c), c.Param("app")); err != nil {
		return err
	}
	d, err := s.releasePair(c, c.QueryParam("from"), c.QueryParam("to"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, apiDiff{From: d.From.Version, To: d.To.Version, Added: nonNil(d.Added), Changed: nonNil(d.Changed),
		Removed: nonNil(d.Removed), ImageChanged: d.ImageChanged, FromImage: d.From.Image, ToImage: d.To.Image,
		ProcessChanges: nonNil(d.ProcessChanges)})
}

func (s *Server) apiRollback(c echo.Context) error {
	var req struct {
		Version int `json:"version"`
	}
	if err := bind(c, &req); err != nil {
		return err
	}
	if req.Version < 1 {
		return &platform.InvalidError{Field: "version", Value: strconv.Itoa(req.Version), Reason: "give a release version such as 3"}
	}
	rel, err := s.rollback(c.Request().Context(), actorOf(c), c.Param("app"), req.Version)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toAPIRelease(rel))
}

func (s *Server) apiDomains(c echo.Context) error {
	hosts, err := s.svc.Domains(c.Request().Context(), actorOf(c), c.Param("app"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, nonNil(hosts))
}

func (s *Server) apiAddDomain(c echo.Context) error {
	var req struct {
		Hostname string `json:"hostname"`
	}
	if err := bind(c, &req); err != nil {
		return err
	}
	h, err := s.svc.AddDomain(c.Request().Context(), actorOf(c), c.Param("app"), req.Hostname)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, map[string]string{"hostname": h})
}

func (s *Server) apiRemoveDomain(c echo.Context) error {
	if err := s.svc.RemoveDomain(c.Request().Context(), actorOf(c), c.Param("app"), c.Param("hostname")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

type apiDeploy struct {
	ID         int64     `json:"id"`
	Release    int       `json:"release"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason,omitempty"`
	GitCommit  string    `json:"git_commit"`
	CreatedBy  string    `json:"created_by"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

func (s *Server) apiDeploys(c echo.Context) error {
	ds, err := s.svc.Deploys(c.Request().Context(), actorOf(c), c.Param("app"), 0)
	if err != nil {
		return err
	}
	out := make([]apiDeploy, 0, len(ds))
	for _, d := range ds {
		out = append(out, apiDeploy{ID: d.ID, Release: d.ReleaseVersion, Status: string(d.Status), Reason: d.Reason, GitCommit: d.GitCommit,
			CreatedBy: d.CreatedBy, StartedAt: d.StartedAt, FinishedAt: d.FinishedAt})
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) apiDeployLog(c echo.Context) error {
	d, err := s.deployLog(c)
	if err != nil {
		return err
	}
	if d.Missing {
		return &platform.NotFoundError{Kind: "build log of deploy", Name: c.Param("id"), Hint: "old build logs are pruned"}
	}
	return c.Blob(http.StatusOK, "text/plain; charset=utf-8", []byte(d.Log))
}

func (s *Server) apiLogs(c echo.Context) error {
	ctx, app := c.Request().Context(), c.Param("app")
	if _, err := s.svc.App(ctx, actorOf(c), app); err != nil {
		return err
	}
	opts := deploy.LogOptions{ProcessType: c.QueryParam("type")}
	if err := validProcessFilter(opts.ProcessType); err != nil {
		return err
	}
	if v := c.QueryParam("lines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			return &platform.InvalidError{Field: "lines", Value: v, Reason: "give a number from 1 to 100000"}
		}
		opts.Lines = n
	}
	if v := c.QueryParam("follow"); v != "" {
		f, err := strconv.ParseBool(v)
		if err != nil {
			return &platform.InvalidError{Field: "follow", Value: v, Reason: "give true or false"}
		}
		opts.Follow = f
	}
	c.Response().Header().Set(echo.HeaderContentType, "text/plain; charset=utf-8")
	c.Response().Header().Set("X-Content-Type-Options", "nosniff")
	c.Response().WriteHeader(http.StatusOK)
	w := &flushWriter{w: c.Response()}
	if err := s.deploy.ReadLogs(ctx, app, opts, w); err != nil && ctx.Err() == nil {
		s.log.Warn("read logs", "app", app, "err", err)
	}
	return nil
}

// flushWriter flushes each batch of log lines to the client.
type flushWriter struct{ w http.ResponseWriter }

func (f *flushWriter) Write(p []byte) (int, error) { return f.w.Write(p) }

func (f *flushWriter) Flush() error { return http.NewResponseController(f.w).Flush() }

func (s *Server) apiShares(c echo.Context) error {
	sh, err := s.svc.AppShares(c.Request().Context(), actorOf(c), c.Param("app"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, nonNil(sh))
}

func (s *Server) apiShare(c echo.Context) error {
	var req struct {
		User string `json:"user"`
	}
	if err := bind(c, &req); err != nil {
		return err
	}
	ctx, actor, app := c.Request().Context(), actorOf(c), c.Param("app")
	if err := s.svc.ShareApp(ctx, actor, app, req.User); err != nil {
		return err
	}
	sh, err := s.svc.AppShares(ctx, actor, app)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, nonNil(sh))
}

func (s *Server) apiUnshare(c echo.Context) error {
	if err := s.svc.UnshareApp(c.Request().Context(), actorOf(c), c.Param("app"), c.Param("user")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

type apiKey struct {
	User        string    `json:"user"`
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"`
	PublicKey   string    `json:"public_key"`
	CreatedAt   time.Time `json:"created_at"`
}

func toAPIKey(k platform.Key) apiKey {
	return apiKey{User: k.User, Name: k.Name, Fingerprint: k.Fingerprint, PublicKey: k.PublicKey, CreatedAt: k.CreatedAt}
}

// keyUser is the user a key request is about: ?user= or oneself.
func keyUser(c echo.Context, given string) string {
	if given != "" {
		return given
	}
	if _, ok := c.QueryParams()["user"]; ok {
		return c.QueryParam("user")
	}
	return actorOf(c).Name
}

func (s *Server) apiKeys(c echo.Context) error {
	keys, err := s.svc.Keys(c.Request().Context(), actorOf(c), keyUser(c, ""))
	if err != nil {
		return err
	}
	out := make([]apiKey, 0, len(keys))
	for _, k := range keys {
		out = append(out, toAPIKey(k))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) apiAddKey(c echo.Context) error {
	var req struct {
		PublicKey string `json:"public_key"`
		Name      string `json:"name"`
		User      string `json:"user"`
	}
	if err := bind(c, &req); err != nil {
		return err
	}
	k, err := s.svc.AddKey(c.Request().Context(), actorOf(c), keyUser(c, req.User), req.Name, req.PublicKey)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toAPIKey(k))
}

func (s *Server) apiRemoveKey(c echo.Context) error {
	user := keyUser(c, "")
	if user == "" {
		user = actorOf(c).Name
	}
	if err := s.svc.RemoveKey(c.Request().Context(), actorOf(c), user, c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

type apiToken struct {
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

func (s *Server) apiTokens(c echo.Context) error {
	toks, err := s.svc.APITokens(c.Request().Context(), actorOf(c))
	if err != nil {
		return err
	}
	out := make([]apiToken, 0, len(toks))
	for _, t := range toks {
		a := apiToken{Name: t.Name, CreatedAt: t.CreatedAt}
		if !t.LastUsedAt.IsZero() {
			a.LastUsedAt = &t.LastUsedAt
		}
		out = append(out, a)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) apiCreateToken(c echo.Context) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := bind(c, &req); err != nil {
		return err
	}
	tok, err := s.svc.CreateAPIToken(c.Request().Context(), actorOf(c), req.Name)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, map[string]string{"name": req.Name, "token": tok})
}

func (s *Server) apiDeleteToken(c echo.Context) error {
	if err := s.svc.DeleteAPIToken(c.Request().Context(), actorOf(c), c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) apiUsers(c echo.Context) error {
	users, err := s.svc.Users(c.Request().Context(), actorOf(c))
	if err != nil {
		return err
	}
	out := make([]apiUser, 0, len(users))
	for _, u := range users {
		out = append(out, toAPIUser(u))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) apiAddUser(c echo.Context) error {
	var req struct {
		Name string `json:"name"`
		Role string `json:"role"`
	}
	if err := bind(c, &req); err != nil {
		return err
	}
	if req.Role == "" {
		req.Role = string(platform.RoleMember)
	}
	u, err := s.svc.CreateUser(c.Request().Context(), actorOf(c), req.Name, platform.Role(req.Role))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toAPIUser(u))
}

func (s *Server) apiRemoveUser(c echo.Context) error {
	if err := s.svc.DeleteUser(c.Request().Context(), actorOf(c), c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) apiSetRole(c echo.Context) error {
	var req struct {
		Role string `json:"role"`
	}
	if err := bind(c, &req); err != nil {
		return err
	}
	ctx, actor, name := c.Request().Context(), actorOf(c), c.Param("name")
	if err := s.svc.SetRole(ctx, actor, name, platform.Role(req.Role)); err != nil {
		return err
	}
	u, err := s.svc.User(ctx, actor, name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toAPIUser(u))
}

func (s *Server) apiSetPassword(c echo.Context) error {
	var req struct {
		Password string `json:"password"`
	}
	if err := bind(c, &req); err != nil {
		return err
	}
	if err := s.svc.SetPassword(c.Request().Context(), actorOf(c), c.Param("name"), req.Password); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// maxRunOutput bounds each stream of a one-off command that the API keeps.
const maxRunOutput = 1 << 20

// cappedBuffer keeps the first max bytes written and drops the rest.
type cappedBuffer struct {
	lockedBuffer
	max       int
	truncated bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	room := c.max - c.b.Len()
	if room < len(p) {
		c.truncated = true
		if room > 0 {
			c.b.Write(p[:room])
		}
	} else {
		c.b.Write(p)
	}
	c.mu.Unlock()
	return len(p), nil
}

func (s *Server) apiRun(c echo.Context) error {
	var req struct {
		Command []string `json:"command"`
		Stdin   string   `json:"stdin"`
	}
	if err := bind(c, &req); err != nil {
		return err
	}
	if len(req.Command) == 0 || req.Command[0] == "" {
		return &platform.InvalidError{Field: "command", Reason: `give the command as a list, e.g. ["sh", "-c", "echo hi"]`}
	}
	ctx, app := c.Request().Context(), c.Param("app")
	if _, err := s.svc.App(ctx, actorOf(c), app); err != nil {
		return err
	}
	stdout := &cappedBuffer{max: maxRunOutput}
	stderr := &cappedBuffer{max: maxRunOutput}
	code, err := s.deploy.RunOneOff(ctx, app, req.Command, strings.NewReader(req.Stdin), stdout, stderr, nil)
	if err != nil {
		return fmt.Errorf("run in %s: %w", app, err)
	}
	return c.JSON(http.StatusOK, map[string]any{
		"exit_code": code, "stdout": stdout.String(), "stderr": stderr.String(),
		"truncated": stdout.truncated || stderr.truncated,
	})
}
