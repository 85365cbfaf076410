package router

import (
	"fmt"
	"io"
	"net/http"
	"time"
)

// Policy chooses among an app's healthy backends.
type Policy int

const (
	// RoundRobin hands requests to backends in turn.
	RoundRobin Policy = iota
	// LeastConn hands a request to the backend with the fewest requests in
	// flight, breaking ties in turn.
	LeastConn
)

// String returns the policy's config name.
func (p Policy) String() string {
	switch p {
	case RoundRobin:
		return "round-robin"
	case LeastConn:
		return "least-conn"
	default:
		return fmt.Sprintf("policy(%d)", int(p))
	}
}

// ParsePolicy turns a config name ("round-robin" or "least-conn") into a Policy.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "", "round-robin", "roundrobin", "rr":
		return RoundRobin, nil
	case "least-conn", "leastconn", "least-connections":
		return LeastConn, nil
	}
	return 0, fmt.Errorf("parse policy %q: %w (want round-robin or least-conn)", s, ErrInvalidConfig)
}

// Config is the router's static configuration; the routing table itself
// comes later through SetTable.
type Config struct {
	// HTTPAddr is the plain HTTP listen address; default ":80".
	HTTPAddr string
	// HTTPSAddr is the HTTPS listen address used when TLS is on; default ":443".
	HTTPSAddr string
	// TLS turns the HTTPS listener on. Certificates come from the table
	// (uploaded) or, with ACME on, from the ACME directory.
	TLS bool

	// ACME turns on automatic certificates for the table's hosts.
	ACME bool
	// ACMEDirectoryURL is the ACME directory; empty means Let's Encrypt production.
	ACMEDirectoryURL string
	// ACMEEmail is the contact address given to the ACME CA; optional.
	ACMEEmail string
	// ACMECacheDir keeps account keys and certificates across restarts;
	// empty keeps them in memory only.
	ACMECacheDir string
	// ACMEHTTPClient talks to the ACME directory; nil uses a default client.
	// Tests set it to trust a local test CA.
	ACMEHTTPClient *http.Client

	// Policy is the load-balancing policy; default RoundRobin.
	Policy Policy
	// AccessLog receives one line per request; nil turns the access log off.
	AccessLog io.Writer

	// DialTimeout bounds a connection attempt to a backend; default 3s.
	DialTimeout time.Duration
	// FailTimeout is how long a backend that refused a connection is left
	// out of rotation before it is tried again; default 2s. When all of an
	// app's backends are down, the one that failed first is still tried.
	FailTimeout time.Duration
	// MaxIdleConnsPerBackend caps the pooled keep-alive connections kept per
	// backend; default 256.
	MaxIdleConnsPerBackend int
	// IdleConnTimeout closes pooled backend connections unused for this
	// long; default 30s.
	IdleConnTimeout time.Duration
	// ShutdownTimeout bounds the graceful drain when Serve's context ends;
	// default 30s.
	ShutdownTimeout time.Duration
	// ReadHeaderTimeout bounds how long a client may take to send request
	// headers; default 10s.
	ReadHeaderTimeout time.Duration
	// ClientIdleTimeout closes client keep-alive connections idle this long;
	// default 120s.
	ClientIdleTimeout time.Duration
	// WriteTimeout closes a client connection whose response has not
	// moved for this long (a client that stopped reading, or vanished),
	// with the backend connection serving it; default 60s, as nginx's
	// send_timeout. The close is abortive: the bytes the client has not
	// taken are dropped. A slow download that keeps moving is not cut,
	// nor an idle upgraded connection (websocket): one is cut when the
	// client stops taking what the backend sends. An HTTP/2 stream whose
	// writes stall is reset, the connection's other streams going on.
	WriteTimeout time.Duration
}

func (c *Config) setDefaults() error {
	if c.HTTPAddr == "" {
		c.HTTPAddr = ":80"
	}
	if c.HTTPSAddr == "" {
		c.HTTPSAddr = ":443"
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 3 * time.Second
	}
	if c.FailTimeout == 0 {
		c.FailTimeout = 2 * time.Second
	}
	if c.MaxIdleConnsPerBackend == 0 {
		c.MaxIdleConnsPerBackend = 256
	}
	if c.IdleConnTimeout == 0 {
		c.IdleConnTimeout = 30 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.ClientIdleTimeout == 0 {
		c.ClientIdleTimeout = 120 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 60 * time.Second
	}
	switch {
	case c.Policy != RoundRobin && c.Policy != LeastConn:
		return fmt.Errorf("check policy %d: %w", int(c.Policy), ErrInvalidConfig)
	case c.DialTimeout < 0, c.FailTimeout < 0, c.IdleConnTimeout < 0, c.ShutdownTimeout < 0, c.WriteTimeout < 0:
		return fmt.Errorf("check timeouts: negative duration: %w", ErrInvalidConfig)
	case c.MaxIdleConnsPerBackend < 0:
		return fmt.Errorf("check max idle conns %d: %w", c.MaxIdleConnsPerBackend, ErrInvalidConfig)
	case c.ACME && !c.TLS:
		return fmt.Errorf("check acme: ACME needs TLS on: %w", ErrInvalidConfig)
	}
	return nil
}
