package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/berthhq/berth/builder"
	"github.com/berthhq/berth/deploy"
	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/gitreceive"
	"github.com/berthhq/berth/internal/control"
	"github.com/berthhq/berth/platform"
	"github.com/berthhq/berth/quota"
	"github.com/berthhq/berth/router"
	"github.com/berthhq/berth/web"
)

// daemon holds berth's subsystems, built once in newDaemon and passed
// explicitly to whoever needs them.
type daemon struct {
	cfg     Config
	logger  *slog.Logger
	db      *database
	svc     *platform.Service
	engine  *engine.Engine
	store   *builder.Store
	builder *builder.Builder
	router  *router.Router
	deploy  *deploy.Deployer
	apps    appDeployer
	disk    *quota.Disk // nil when no driver works
	quota   *quota.EngineQuota
	cmds    *gitreceive.Commands
	ssh     *gitreceive.Server
	control *control.Server
	web     *web.Server
	closers []io.Closer
}

func newDaemon(ctx context.Context, cfg Config, logger *slog.Logger) (_ *daemon, err error) {
	d := &daemon{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	// Checked before anything starts: a bad certificate would otherwise
	// show only once the dashboard is served, after the database is up.
	wcfg, err := webConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := ensureDataDirs(cfg.DataDir); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find berth's own binary: %w", err)
	}
	if d.db, err = openDatabase(ctx, cfg, logger); err != nil {
		return nil, err
	}
	d.svc = platform.NewWithConfig(d.db.pool, platform.Config{Domain: cfg.Domain}, logger)

	ctrRoot := filepath.Join(cfg.DataDir, "containers")
	driver := cfg.DiskQuotaDriver
	d.disk, err = quota.NewEngineDisk(quota.DiskConfig{Root: filepath.Join(cfg.DataDir, "quota"), Driver: driver}, logger)
	if err != nil {
		if driver != "auto" {
			return nil, fmt.Errorf("disk quota driver %s: %w", driver, err)
		}
		logger.Warn("no disk quota driver works on this host: disk limits will be refused", "err", err)
		d.disk = nil
	} else {
		logger.Info("disk quotas", "driver", d.disk.Driver(), "mechanism", d.disk.Mechanism())
	}
	d.quota, err = quota.NewEngineQuota(quota.EngineConfig{Disk: d.disk, ContainersRoot: ctrRoot}, logger)
	if err != nil {
		return nil, fmt.Errorf("start quota: %w", err)
	}
	d.engine, err = engine.New(engine.Config{
		Root:       ctrRoot,
		BridgeName: cfg.BridgeName,
		Subnet:     cfg.BridgeSubnet,
		Logger:     logger,
		Quota:      d.quota,
	})
	if err != nil {
		return nil, fmt.Errorf("start container engine: %w", err)
	}
	// Before reconciling: drop half-made containers, then re-attach the
	// disk quotas and bandwidth caps of the ones that run.
	if err := d.engine.GC(ctx); err != nil {
		logger.Warn("clean up interrupted containers", "err", err)
	}
	infos, err := d.engine.List()
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	if err := d.quota.Restore(ctx, infos); err != nil {
		return nil, fmt.Errorf("restore quotas: %w", err)
	}
	if !d.engine.UserNamespaces() {
		logger.Warn("this kernel cannot idmap the shared layers: containers run without a user namespace (root inside is root outside); upgrade to Linux 5.19+ on ext4/xfs/btrfs for full isolation")
	}
	if d.store, err = builder.NewStore(cfg.DataDir, logger); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	runner := builder.NewEngineRunner(d.engine, d.appIDs, logger)
	if d.builder, err = builder.New(builder.Options{Store: d.store, Runner: runner, Logger: logger}); err != nil {
		return nil, err
	}
	accessLog, err := openAccessLog(filepath.Join(cfg.DataDir, "logs", "access.log"))
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, accessLog)
	if d.router, err = router.New(router.Config{
		HTTPAddr: cfg.HTTPAddr, HTTPSAddr: cfg.HTTPSAddr,
		TLS:  cfg.TLS == "on",
		ACME: cfg.ACMEEmail != "", ACMEEmail: cfg.ACMEEmail, ACMEDirectoryURL: cfg.ACMEDirectory,
		ACMECacheDir: filepath.Join(cfg.DataDir, "acme"),
		AccessLog:    accessLog,
	}, logger); err != nil {
		return nil, fmt.Errorf("start router: %w", err)
	}

	d.deploy, err = deploy.New(deploy.Config{DataDir: cfg.DataDir, Domain: cfg.Domain, Logger: logger}, deploy.Deps{
		Platform: d.svc, Engine: d.engine, Images: deploy.NewBuilderImages(d.store), Router: d.router,
	})
	if err != nil {
		return nil, fmt.Errorf("start deployer: %w", err)
	}

	d.apps = appDeployer{Deployer: d.deploy, quota: d.quota, disk: d.disk}

	gcfg := gitreceive.Config{
		Addr: cfg.SSHAddr, DataDir: cfg.DataDir, Socket: cfg.Socket, Executable: exe,
		Domain: cfg.Domain, Version: version,
	}
	d.cmds = gitreceive.NewCommands(gcfg, d.svc, d.apps, builderAdapter{b: d.builder}, logger, d.extensions()...)
	if d.ssh, err = gitreceive.NewServer(gcfg, d.cmds, logger); err != nil {
		return nil, err
	}
	d.web, err = web.New(wcfg,
		web.Deps{Platform: d.svc, Deployer: d.apps, AppDestroyed: func(app string) {
			// The dashboard destroyed the app: its repository goes too, as
			// with apps:destroy over SSH.
			if err := os.RemoveAll(filepath.Join(cfg.DataDir, "repos", app+".git")); err != nil {
				logger.Warn("remove repository", "app", app, "err", err)
			}
		}}, logger)
	if err != nil {
		return nil, fmt.Errorf("start dashboard: %w", err)
	}
	if d.control, err = control.Listen(cfg.Socket, d.handleLocal, logger); err != nil {
		return nil, err
	}
	return d, nil
}

// webConfig is the dashboard's configuration. With web_tls_cert and
// web_tls_key it loads the pair once, so that an unreadable file or a key
// that is not the certificate's stops berth serve with a message naming
// them; the web server loads them again when it starts serving.
func webConfig(cfg Config) (web.Config, error) {
	wcfg := web.Config{
		Addr: cfg.WebAddr, Domain: cfg.Domain, Version: version,
		Secure: cfg.WebSecure, CertFile: cfg.WebTLSCert, KeyFile: cfg.WebTLSKey,
	}
	if cfg.WebTLSCert == "" {
		return wcfg, nil
	}
	certPEM, err := os.ReadFile(cfg.WebTLSCert)
	if err != nil {
		return wcfg, fmt.Errorf("config web_tls_cert: %w", err)
	}
	keyPEM, err := os.ReadFile(cfg.WebTLSKey)
	if err != nil {
		return wcfg, fmt.Errorf("config web_tls_key: %w", err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return wcfg, fmt.Errorf("config web_tls_cert %s, web_tls_key %s: %w (give PEM files: the certificate, chain after it, and its own private key)",
			cfg.WebTLSCert, cfg.WebTLSKey, err)
	}
	return wcfg, nil
}

// appIDs gives an app's private host ID range for its build containers.
func (d *daemon) appIDs(app string) (builder.IDRange, error) {
	a, err := d.svc.App(context.Background(), platform.System(), app)
	if err != nil {
		return builder.IDRange{}, err
	}
	return builder.IDRange{HostUID: uint32(a.UIDBase), HostGID: uint32(a.UIDBase), Size: 65536}, nil
}

// handleLocal runs a command from the root-only socket as the system actor.
func (d *daemon) handleLocal(ctx context.Context, s *control.Session) int {
	return d.cmds.Run(ctx, platform.System(), s.Request.Args, &gitreceive.Env{
		Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, Terminal: s.Terminal, Local: true,
	})
}

// run serves every front door until ctx ends, then stops them all.
func (d *daemon) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	serve := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	// Reconcile before taking requests: re-adopt running containers, start
	// what is missing and rebuild the routing table.
	if n, err := d.svc.FailInterruptedDeploys(ctx); err != nil {
		d.logger.Warn("mark interrupted deploys failed", "err", err)
	} else if n > 0 {
		d.logger.Info("marked deploys interrupted by a restart as failed", "count", n)
	}
	if err := d.deploy.Start(ctx); err != nil {
		return fmt.Errorf("reconcile apps: %w", err)
	}
	serve("control socket", d.control.Serve)
	serve("ssh", d.ssh.Serve)
	serve("router", d.router.Serve)
	serve("web", d.web.Serve)
	if d.db.cluster != nil {
		go func() {
			select {
			case <-d.db.cluster.Done():
				if ctx.Err() == nil {
					errc <- errors.New("embedded postgres stopped for good; see " + d.db.cluster.LogPath())
					cancel()
				}
			case <-ctx.Done():
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func (d *daemon) close() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if d.deploy != nil {
			if err := d.deploy.Close(); err != nil {
				d.logger.Warn("stop deployer", "err", err)
			}
		}
		if d.db != nil {
			d.db.close()
		}
		for _, c := range d.closers {
			c.Close()
		}
	}()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		d.logger.Error("shutdown timed out")
	}
}
