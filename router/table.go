package router

import (
	"crypto/tls"
	"strings"
	"sync/atomic"
)

// Table is the whole routing table. The deploy package builds a new one for
// every change and hands it over with SetTable; a Table must not be changed
// after that.
type Table struct {
	// Apps maps an app name to its app.
	Apps map[string]*App
	// Hosts maps a hostname (APP.<global domain> and custom domains) to an
	// app name. Hostnames are matched exactly, case-insensitively, with the
	// port stripped; "*.example.com" matches one label under example.com.
	Hosts map[string]string
	// Certs maps a hostname (or "*.example.com") to an uploaded certificate.
	Certs map[string]*tls.Certificate
}

// App is one app's current set of healthy web instances.
type App struct {
	// Name is the app's name, shown in error pages and logs.
	Name string
	// Backends are the instances that may take requests.
	Backends []Backend
}

// Backend is one web instance reachable over TCP.
type Backend struct {
	// ID names the instance (the container id), for logs.
	ID string
	// Addr is the instance's "IP:port" (its veth address).
	Addr string
}

// route is one app as compiled for the hot path.
type route struct {
	app       string
	upstreams []*upstream
	next      atomic.Uint32
}

// compiled is the immutable, lookup-ready form of a Table.
type compiled struct {
	hosts map[string]*route
	wild  map[string]*route // "example.com" for "*.example.com"
	certs map[string]*tls.Certificate
	src   *Table
}

func (c *compiled) lookup(host string) *route {
	if r := c.hosts[host]; r != nil {
		return r
	}
	if len(c.wild) > 0 {
		if i := strings.IndexByte(host, '.'); i > 0 {
			return c.wild[host[i+1:]]
		}
	}
	return nil
}

// lookupCert finds the uploaded certificate for a lower-cased host, exact
// or wildcard, without allocating.
func lookupCert[T ~string | ~[]byte](c *compiled, host T) *tls.Certificate {
	if len(c.certs) == 0 {
		return nil
	}
	if crt := c.certs[string(host)]; crt != nil {
		return crt
	}
	i := 0
	for i < len(host) && host[i] != '.' {
		i++
	}
	if i == 0 || i == len(host) {
		return nil
	}
	var kb [256]byte
	return c.certs[string(append(append(kb[:0], '*'), host[i:]...))]
}

// SetTable swaps in a new routing table atomically. Requests already in
// flight finish on the backends they started on; pooled connections to
// backends that are no longer in the table are closed, and connections in
// use are closed when their request ends.
func (rt *Router) SetTable(t *Table) {
	if t == nil {
		t = &Table{}
	}
	rt.tableMu.Lock()
	defer rt.tableMu.Unlock()

	c := &compiled{
		hosts: make(map[string]*route, len(t.Hosts)),
		certs: make(map[string]*tls.Certificate, len(t.Certs)),
		src:   t,
	}
	live := make(map[string]*upstream, len(rt.upstreams))
	routes := make(map[string]*route, len(t.Apps))
	for name, app := range t.Apps {
		if app == nil {
			continue
		}
		r := &route{app: app.Name}
		if r.app == "" {
			r.app = name
		}
		for _, b := range app.Backends {
			u := live[b.Addr]
			if u == nil {
				u = rt.upstreams[b.Addr]
				if u == nil {
					u = newUpstream(b.ID, b.Addr, rt)
				}
				live[b.Addr] = u
			}
			r.upstreams = append(r.upstreams, u)
		}
		routes[name] = r
	}
	for host, name := range t.Hosts {
		r := routes[name]
		if r == nil {
			rt.logger.Warn("host points to an unknown app; it will get 404", "host", host, "app", name)
			continue
		}
		h := normalizeHost(host)
		if rest, ok := strings.CutPrefix(h, "*."); ok {
			if c.wild == nil {
				c.wild = make(map[string]*route)
			}
			c.wild[rest] = r
			continue
		}
		c.hosts[h] = r
	}
	for host, crt := range t.Certs {
		if crt != nil {
			c.certs[normalizeHost(host)] = crt
		}
	}
	for addr, u := range rt.upstreams {
		if live[addr] == nil {
			u.retire()
		}
	}
	rt.upstreams = live
	rt.table.Store(c)
	if rt.logger.Enabled(rt.ctx, levelDebug) {
		rt.logger.Debug("routing table swapped", "hosts", len(c.hosts), "apps", len(routes), "backends", len(live))
	}
}

// Table returns the table currently in force (nil before the first SetTable).
func (rt *Router) Table() *Table {
	return rt.table.Load().src
}

// normalizeHost lowercases a Host header value and strips its port. It
// allocates only when the host has upper-case letters.
func normalizeHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		// An IPv6 literal without a port ("[::1]") ends with ']'.
		if !strings.HasSuffix(h, "]") {
			h = h[:i]
		}
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}
