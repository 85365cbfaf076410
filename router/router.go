package router

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

const levelDebug = slog.LevelDebug

// Router is berth's reverse proxy. Build it with New, give it a table with
// SetTable, and run it with Serve; it is also an http.Handler, so tests can
// drive it without binding ports.
type Router struct {
	cfg    Config
	logger *slog.Logger
	ctx    context.Context // for logger.Enabled only

	table     atomic.Pointer[compiled]
	tableMu   sync.Mutex           // serialises SetTable
	upstreams map[string]*upstream // by addr; guarded by tableMu

	alog     *accessLog
	idPrefix [8]byte
	idSeq    atomic.Uint64

	acme     *autocert.Manager
	acmeHTTP http.Handler
	tlsCfg   *tls.Config

	hijackMu sync.Mutex
	hijacked map[net.Conn]struct{}

	// httpsWrites are the HTTPS connections and HTTP/2 streams whose
	// writes the write timeout watches.
	httpsWrites writeWatchers

	// noLoops turns the plain-HTTP event loops off (tests of the
	// goroutine path).
	noLoops bool

	// httpsPort is ":PORT" when HTTPS is not on 443, for redirects.
	httpsPort string
	// issued holds the hosts ACME has served a certificate for, whose
	// plain-HTTP requests are redirected to HTTPS. It only grows, by
	// copying under issuedMu, so requests read it without a lock.
	issuedMu sync.Mutex
	issued   atomic.Pointer[map[string]struct{}]

	// Buffers reused across requests: body copy buffers and the fast
	// path's client connection readers and writers.
	copyBufs      sync.Pool
	clientReaders sync.Pool
	clientWriters sync.Pool
}

// New builds a router from its configuration. The logger is scoped to the
// "router" component here; pass the daemon's logger.
func New(cfg Config, logger *slog.Logger) (*Router, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("configure router: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rt := &Router{
		cfg:       cfg,
		logger:    logger.With("component", "router"),
		ctx:       context.Background(),
		upstreams: make(map[string]*upstream),
		hijacked:  make(map[net.Conn]struct{}),
	}
	rt.copyBufs.New = func() any { b := make([]byte, 32<<10); return &b }
	rt.clientReaders.New = func() any { return bufio.NewReaderSize(nil, clientReadBuf) }
	rt.clientWriters.New = func() any { return bufio.NewWriterSize(nil, clientWriteBuf) }
	var seed [4]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("seed request ids: %w", err)
	}
	hex.Encode(rt.idPrefix[:], seed[:])
	if cfg.AccessLog != nil {
		rt.alog = &accessLog{w: cfg.AccessLog}
	}
	rt.table.Store(&compiled{hosts: map[string]*route{}, src: &Table{}})

	if cfg.TLS {
		if _, port, err := net.SplitHostPort(cfg.HTTPSAddr); err == nil && port != "443" {
			rt.httpsPort = ":" + port
		}
		rt.issued.Store(&map[string]struct{}{})
		rt.tlsCfg = &tls.Config{
			GetCertificate: rt.getCertificate,
			NextProtos:     []string{"h2", "http/1.1"},
			MinVersion:     tls.VersionTLS12,
		}
	}
	if cfg.ACME {
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: rt.hostPolicy,
			Email:      cfg.ACMEEmail,
			Client:     &acme.Client{DirectoryURL: cfg.ACMEDirectoryURL, HTTPClient: cfg.ACMEHTTPClient},
		}
		if cfg.ACMECacheDir != "" {
			m.Cache = autocert.DirCache(cfg.ACMECacheDir)
		}
		rt.acme = m
		// HTTPHandler also turns on http-01 challenges in the manager.
		rt.acmeHTTP = m.HTTPHandler(nil)
		rt.tlsCfg.NextProtos = append(rt.tlsCfg.NextProtos, acme.ALPNProto)
	}
	return rt, nil
}

// TLSConfig returns the TLS configuration of the HTTPS listener (nil when TLS
// is off); its GetCertificate serves uploaded and ACME certificates.
func (rt *Router) TLSConfig() *tls.Config {
	return rt.tlsCfg
}

// Serve listens on the configured addresses (HTTPAddr, and HTTPSAddr when TLS
// is on) and serves until ctx is cancelled, then drains gracefully.
func (rt *Router) Serve(ctx context.Context) error {
	httpLn, err := net.Listen("tcp", rt.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen http %s: %w", rt.cfg.HTTPAddr, err)
	}
	var httpsLn net.Listener
	if rt.cfg.TLS {
		httpsLn, err = net.Listen("tcp", rt.cfg.HTTPSAddr)
		if err != nil {
			httpLn.Close()
			return fmt.Errorf("listen https %s: %w", rt.cfg.HTTPSAddr, err)
		}
	}
	return rt.ServeListeners(ctx, httpLn, httpsLn)
}

// ServeListeners serves plain HTTP on httpLn and HTTPS on httpsLn (either may
// be nil) until ctx is cancelled. Then it stops accepting, lets requests in
// flight finish for up to ShutdownTimeout, closes upgraded (websocket)
// connections and pooled backend connections, and flushes the access log.
// It closes the listeners.
func (rt *Router) ServeListeners(ctx context.Context, httpLn, httpsLn net.Listener) error {
	if httpLn == nil && httpsLn == nil {
		return ErrNoListener
	}
	if httpsLn != nil && rt.tlsCfg == nil {
		httpsLn.Close()
		if httpLn != nil {
			httpLn.Close()
		}
		return fmt.Errorf("serve https: TLS is off in the config: %w", ErrInvalidConfig)
	}
	errLog := slog.NewLogLogger(rt.logger.Handler(), slog.LevelDebug)
	newServer := func() *http.Server {
		return &http.Server{
			Handler:           rt,
			ReadHeaderTimeout: rt.cfg.ReadHeaderTimeout,
			IdleTimeout:       rt.cfg.ClientIdleTimeout,
			ErrorLog:          errLog,
		}
	}
	var servers []*http.Server
	var fast *fastServer
	errc := make(chan error, 2)
	if httpLn != nil {
		// Plain HTTP goes through the router's own HTTP/1.x server (fast.go).
		fast = newFastServer(rt, httpLn, rt.noLoops)
		rt.logger.Info("serving http", "addr", httpLn.Addr().String())
		go func() { errc <- fast.serve() }()
	}
	if httpsLn != nil {
		srv := newServer()
		srv.TLSConfig = rt.tlsCfg
		servers = append(servers, srv)
		rt.logger.Info("serving https", "addr", httpsLn.Addr().String())
		// The write timeout watches the listener's connections and
		// ServeHTTP's HTTP/2 streams (writetimeout.go). Not http2's
		// WriteByteTimeout: it counts only the bytes the socket takes,
		// so it cuts a slow reader behind a large send buffer, and it
		// misses a stream that flow control holds.
		ln := watchListener{Listener: httpsLn, ws: &rt.httpsWrites}
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	}
	if rt.alog != nil {
		rt.alog.setBuffered(true)
	}
	loopCtx, stopLoop := context.WithCancel(context.Background())
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		rt.maintain(loopCtx, httpsLn != nil)
	}()

	var firstErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			firstErr = fmt.Errorf("serve: %w", err)
		}
	}
	rt.logger.Info("router draining", "timeout", rt.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), rt.cfg.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(sctx); err != nil {
				rt.logger.Warn("drain timed out; closing connections", "err", err)
				srv.Close()
			}
		}()
	}
	if fast != nil {
		if !fast.shutdown(sctx.Done()) {
			rt.logger.Warn("drain timed out; closed client connections")
		}
	}
	wg.Wait()
	rt.closeHijacked()
	rt.closePools()
	stopLoop()
	<-loopDone
	if rt.alog != nil {
		rt.alog.setBuffered(false)
	}
	rt.logger.Info("router stopped")
	return firstErr
}

// maintain flushes the access log, prunes idle backend connections and,
// with https, cuts the HTTPS listener's stalled writes until ctx ends.
func (rt *Router) maintain(ctx context.Context, https bool) {
	flush := time.NewTicker(200 * time.Millisecond)
	defer flush.Stop()
	prune := time.NewTicker(rt.cfg.IdleConnTimeout/2 + time.Millisecond)
	defer prune.Stop()
	var sweep <-chan time.Time
	if https {
		t := time.NewTicker(writeSweep)
		defer t.Stop()
		sweep = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep:
			rt.httpsWrites.sweep(rt.cfg.WriteTimeout)
		case <-flush.C:
			if rt.alog != nil {
				rt.alog.flush()
			}
		case <-prune.C:
			func() {
				defer func() {
					if r := recover(); r != nil {
						rt.logger.Error("prune idle connections panicked", "panic", r)
					}
				}()
				rt.tableMu.Lock()
				us := make([]*upstream, 0, len(rt.upstreams))
				for _, u := range rt.upstreams {
					us = append(us, u)
				}
				rt.tableMu.Unlock()
				for _, u := range us {
					u.prune(rt.cfg.IdleConnTimeout)
				}
			}()
		}
	}
}

// CloseIdleConnections closes the pooled keep-alive connections to
// backends (Serve does it when it stops); connections in use are closed
// when their requests end.
func (rt *Router) CloseIdleConnections() {
	rt.closePools()
}

func (rt *Router) closePools() {
	rt.tableMu.Lock()
	defer rt.tableMu.Unlock()
	for _, u := range rt.upstreams {
		u.mu.Lock()
		idle := u.idle
		u.idle = nil
		u.mu.Unlock()
		for _, c := range idle {
			c.conn.Close()
		}
	}
}

func (rt *Router) trackHijacked(c net.Conn, add bool) {
	rt.hijackMu.Lock()
	if add {
		rt.hijacked[c] = struct{}{}
	} else {
		delete(rt.hijacked, c)
	}
	rt.hijackMu.Unlock()
}

func (rt *Router) closeHijacked() {
	rt.hijackMu.Lock()
	defer rt.hijackMu.Unlock()
	for c := range rt.hijacked {
		c.Close()
	}
}

// hostPolicy lets ACME issue certificates only for hosts in the table.
func (rt *Router) hostPolicy(_ context.Context, host string) error {
	if rt.table.Load().lookup(normalizeHost(host)) == nil {
		return fmt.Errorf("check acme host %q: %w", host, ErrHostNotAllowed)
	}
	return nil
}

// getCertificate serves an uploaded certificate for the SNI name, else an
// ACME one when ACME is on.
func (rt *Router) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := normalizeHost(hello.ServerName)
	isChallenge := len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto
	if !isChallenge {
		if crt := lookupCert(rt.table.Load(), name); crt != nil {
			return crt, nil
		}
	}
	if rt.acme != nil {
		crt, err := rt.acme.GetCertificate(hello)
		if err != nil {
			return nil, fmt.Errorf("get acme certificate for %q: %w", name, err)
		}
		if !isChallenge {
			rt.markIssued(name)
		}
		return crt, nil
	}
	return nil, fmt.Errorf("get certificate for %q: %w", name, ErrNoCertificate)
}

// ParseCertificate turns an uploaded PEM certificate chain and key (certs:add)
// into a certificate for Table.Certs.
func ParseCertificate(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	crt, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return &crt, nil
}

// redirectHTTPS reports whether plain-HTTP requests for host (lower-case,
// without port) are redirected to HTTPS: TLS is on and the host has a
// certificate, uploaded or already issued by ACME. Hosts still waiting for
// their first certificate stay on plain HTTP, so a failing issuance does
// not take a site down.
func (rt *Router) redirectHTTPS(host []byte) bool {
	if rt.tlsCfg == nil {
		return false
	}
	if lookupCert(rt.table.Load(), host) != nil {
		return true
	}
	_, ok := (*rt.issued.Load())[string(host)]
	return ok
}

// markIssued adds name to the hosts ACME has served a certificate for; a
// handshake for a host already there takes no lock.
func (rt *Router) markIssued(name string) {
	if _, ok := (*rt.issued.Load())[name]; ok {
		return
	}
	rt.issuedMu.Lock()
	defer rt.issuedMu.Unlock()
	old := *rt.issued.Load()
	m := make(map[string]struct{}, len(old)+1)
	maps.Copy(m, old)
	m[name] = struct{}{}
	rt.issued.Store(&m)
}

// writeRedirect writes a redirect of the request for host and uri to its
// HTTPS address: 301 for GET and HEAD, 308 (method and body kept) for the
// rest, as Heroku and Dokku do.
func (rt *Router) writeRedirect(bw *bufio.Writer, method string, host, uri []byte, closeConn bool) (status int, n int64) {
	status = redirectStatus(method)
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(status))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(status))
	bw.WriteString("\r\nLocation: https://")
	bw.Write(host)
	bw.WriteString(rt.httpsPort)
	bw.Write(uri)
	bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(redirectPage)))
	if closeConn {
		bw.WriteString("\r\nConnection: close")
	}
	bw.WriteString("\r\n\r\n")
	if method != http.MethodHead {
		bw.WriteString(redirectPage)
		n = int64(len(redirectPage))
	}
	return status, n
}

const redirectPage = "This site is served over HTTPS.\n"

// redirectStatus is 301 for GET and HEAD, else 308, which keeps the method
// and body.
func redirectStatus(method string) int {
	if method == http.MethodGet || method == http.MethodHead {
		return http.StatusMovedPermanently
	}
	return http.StatusPermanentRedirect
}
