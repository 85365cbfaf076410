package web

import (
	"io/fs"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// contentSecurityPolicy allows only berth's own scripts, styles and
// connections: no inline script or style, no other origin, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	// The dashboard listens directly, not behind the router, so the peer
	// address is the client's. X-Forwarded-For is the client's own word:
	// trusting it, even from private addresses, let any LAN host or app
	// container pick a fresh address for every sign-in attempt and so
	// escape the per-address backoff.
	e.IPExtractor = echo.ExtractIPDirect()
	e.Use(s.recoverPanics, s.securityHeaders)
	e.Use(middleware.BodyLimit("1M"))

	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/static/", http.FileServer(http.FS(static)))
	e.GET("/static/*", func(c echo.Context) error {
		if strings.HasSuffix(c.Request().URL.Path, "/") {
			return echo.ErrNotFound // no directory listings
		}
		files.ServeHTTP(c.Response(), c.Request())
		return nil
	}, s.cacheStatic)

	e.GET("/login", s.loginPage)
	e.POST("/login", s.login, s.checkCSRF)
	e.GET("/", func(c echo.Context) error { return c.Redirect(http.StatusSeeOther, "/apps") })

	g := e.Group("", s.requireSession, s.checkCSRF)
	g.POST("/logout", s.logout)
	g.GET("/apps", s.appsPage)
	g.POST("/apps", s.createApp)
	g.GET("/apps/:app", s.appPage)
	g.POST("/apps/:app/scale", s.scaleForm)
	g.POST("/apps/:app/restart", s.restartForm)
	g.POST("/apps/:app/stop", s.stopForm)
	g.POST("/apps/:app/start", s.startForm)
	g.POST("/apps/:app/limits", s.limitsForm)
	g.GET("/apps/:app/releases", s.releasesPage)
	g.GET("/apps/:app/releases/diff", s.diffPage)
	g.GET("/apps/:app/releases/:version/rollback", s.rollbackPage)
	g.POST("/apps/:app/releases/:version/rollback", s.rollbackForm)
	g.GET("/apps/:app/config", s.configPage)
	g.POST("/apps/:app/config", s.configSetForm)
	g.POST("/apps/:app/config/unset", s.configUnsetForm)
	g.GET("/apps/:app/domains", s.domainsPage)
	g.POST("/apps/:app/domains", s.domainAddForm)
	g.POST("/apps/:app/domains/remove", s.domainRemoveForm)
	g.GET("/apps/:app/deploys", s.deploysPage)
	g.GET("/apps/:app/deploys/:id", s.deployLogPage)
	g.GET("/apps/:app/logs", s.logsPage)
	g.GET("/apps/:app/logs/stream", s.logStream)
	g.GET("/apps/:app/settings", s.settingsPage)
	g.POST("/apps/:app/share", s.shareForm)
	g.POST("/apps/:app/unshare", s.unshareForm)
	g.POST("/apps/:app/destroy", s.destroyForm)
	g.GET("/account", s.accountPage)
	g.POST("/account/password", s.passwordForm)
	g.POST("/account/keys", s.keyAddForm)
	g.POST("/account/keys/remove", s.keyRemoveForm)
	g.POST("/account/tokens", s.tokenCreateForm)
	g.POST("/account/tokens/remove", s.tokenDeleteForm)
	g.GET("/admin", s.adminPage)
	g.POST("/admin/users", s.userAddForm)
	g.POST("/admin/users/remove", s.userRemoveForm)
	g.POST("/admin/users/role", s.userRoleForm)
	g.POST("/admin/users/password", s.userPasswordForm)

	s.apiRoutes(e)
	return e
}

func (s *Server) securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		if s.cfg.Secure {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		return next(c)
	}
}

func (s *Server) cacheStatic(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "public, max-age=300")
		return next(c)
	}
}

// recoverPanics turns a handler's panic into a logged 500.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("handler panicked", "path", c.Request().URL.Path, "panic", r)
				err = echo.NewHTTPError(http.StatusInternalServerError, "internal error")
			}
		}()
		return next(c)
	}
}
