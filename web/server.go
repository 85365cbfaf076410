package web

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/berthhq/berth/deploy"
	"github.com/berthhq/berth/internal/applock"
	"github.com/berthhq/berth/internal/tty"
	"github.com/berthhq/berth/platform"
)

// Deployer is what the dashboard and the API need from the deploy package:
// the same operations the SSH commands run, the instances behind the
// process table and the app log for the live view. *deploy.Deployer
// implements it.
type Deployer interface {
	Rollout(ctx context.Context, app string, rel platform.Release, out io.Writer) error
	Converge(ctx context.Context, app string, out io.Writer) error
	Restart(ctx context.Context, app, processType string, out io.Writer) error
	StopApp(ctx context.Context, app string, out io.Writer) error
	StartApp(ctx context.Context, app string, out io.Writer) error
	Destroy(ctx context.Context, app string) error
	Instances(ctx context.Context, app string) ([]deploy.Instance, error)
	ReadLogs(ctx context.Context, app string, opts deploy.LogOptions, w io.Writer) error
	RunOneOff(ctx context.Context, app string, args []string, stdin io.Reader, stdout, stderr io.Writer, term *tty.Terminal) (int, error)
}

// Config configures the web server.
type Config struct {
	// Addr is the listen address; default ":8080".
	Addr string
	// Domain is the global app domain: app APP is served at APP.<Domain>.
	Domain string
	// Secure marks cookies Secure, names them __Host-NAME, sends HSTS and
	// links apps over https. Set it when the dashboard is reached over
	// TLS, whether it terminates TLS itself (CertFile) or a proxy does.
	Secure bool
	// CertFile and KeyFile, when both set, make Serve speak TLS with this
	// certificate; Secure is implied.
	CertFile string
	KeyFile  string
	// SessionTTL is how long a sign-in lasts; default 12h.
	SessionTTL time.Duration
	// LoginBackoff is the wait after the first failed sign-ins beyond
	// LoginFreeAttempts; it doubles with every further failure up to
	// LoginBackoffMax. Defaults 1s, 3 and 15m.
	LoginBackoff      time.Duration
	LoginFreeAttempts int
	LoginBackoffMax   time.Duration
	// Version is shown in the page footer.
	Version string
}

func (c *Config) setDefaults() error {
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	if c.Domain == "" {
		return fmt.Errorf("configure web: Domain is required (apps are served at APP.<Domain>)")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("configure web: give both CertFile and KeyFile, or neither")
	}
	if c.CertFile != "" {
		c.Secure = true
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.LoginBackoff <= 0 {
		c.LoginBackoff = time.Second
	}
	if c.LoginFreeAttempts <= 0 {
		c.LoginFreeAttempts = 3
	}
	if c.LoginBackoffMax <= 0 {
		c.LoginBackoffMax = 15 * time.Minute
	}
	return nil
}

// Deps are the subsystems the web server drives.
type Deps struct {
	// Platform holds the rules and the state; every request goes through it.
	Platform *platform.Service
	// Deployer runs the containers (see Deployer).
	Deployer Deployer
	// AppDestroyed, when set, is called after an app was destroyed from
	// the dashboard or the API, for what the web does not own (the app's
	// git repository).
	AppDestroyed func(app string)
}

// Server is berth's dashboard and JSON API.
type Server struct {
	cfg    Config
	log    *slog.Logger
	svc    *platform.Service
	deploy Deployer
	echo   *echo.Echo
	pages  *templates
	logins *loginLimiter
	locks  *applock.Locks
	// destroyed is Deps.AppDestroyed.
	destroyed func(app string)
	// csrfKey signs the CSRF tokens of this process's forms.
	csrfKey []byte
}

// New builds the server; Serve runs it, Handler gives its routes to tests.
func New(cfg Config, deps Deps, logger *slog.Logger) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if deps.Platform == nil || deps.Deployer == nil {
		return nil, fmt.Errorf("new web server: Deps needs Platform and Deployer")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("make csrf key: %w", err)
	}
	s := &Server{
		cfg:       cfg,
		log:       logger.With("component", "web"),
		svc:       deps.Platform,
		deploy:    deps.Deployer,
		pages:     pages,
		logins:    newLoginLimiter(cfg.LoginFreeAttempts, cfg.LoginBackoff, cfg.LoginBackoffMax),
		locks:     applock.New(),
		destroyed: deps.AppDestroyed,
		csrfKey:   key,
	}
	s.echo = s.routes()
	return s, nil
}

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler { return s.echo }

// Serve listens on Config.Addr (with TLS when a certificate is configured)
// until ctx ends, then shuts down, letting requests in flight finish for a
// few seconds; live log streams are cut.
func (s *Server) Serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener is Serve on a listener the caller opened; it closes ln.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s.log.Info("dashboard listening", "addr", ln.Addr().String(), "tls", s.cfg.CertFile != "")
	errc := make(chan error, 1)
	go func() {
		if s.cfg.CertFile != "" {
			errc <- hs.ServeTLS(ln, s.cfg.CertFile, s.cfg.KeyFile)
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve dashboard: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		// Streams that did not end in time are cut.
		_ = hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve dashboard: %w", err)
	}
	return nil
}
