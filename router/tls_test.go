package router

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
	"github.com/letsencrypt/challtestsrv"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// serveTLSRouter runs rt with both listeners on loopback; it returns the
// HTTP and HTTPS addresses.
func serveTLSRouter(t *testing.T, rt *Router, httpLn net.Listener) (string, string) {
	t.Helper()
	if httpLn == nil {
		var err error
		if httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.ServeListeners(ctx, httpLn, httpsLn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return httpLn.Addr().String(), httpsLn.Addr().String()
}

// tlsClient dials addr whatever the URL's host, trusting roots.
func tlsClient(t *testing.T, addr string, roots *x509.CertPool) *http.Client {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func TestUploadedCertificate(t *testing.T) {
	be := startBackend(t, "echo", echoHeaders)
	certPEM, keyPEM, _ := testenv.SelfSigned(t, "secure.test", "*.wild.test")
	crt, err := ParseCertificate(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCertificate(certPEM, []byte("not a key")); err == nil {
		t.Fatal("ParseCertificate accepted a bad key")
	}
	rt := newRouter(t, Config{TLS: true})
	tbl := appTable(map[string][]*backend{"secure": {be}})
	tbl.Hosts["a.wild.test"] = "secure"
	tbl.Hosts["nocert.test"] = "secure"
	tbl.Certs = map[string]*tls.Certificate{"secure.test": crt, "*.wild.test": crt}
	rt.SetTable(tbl)
	_, httpsAddr := serveTLSRouter(t, rt, nil)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	c := tlsClient(t, httpsAddr, roots)

	tests := []struct {
		name    string
		host    string
		wantErr bool
	}{
		{name: "exact", host: "secure.test"},
		{name: "wildcard", host: "a.wild.test"},
		{name: "no certificate", host: "nocert.test", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Get("https://" + tc.host + "/")
			if tc.wantErr {
				if err == nil {
					resp.Body.Close()
					t.Fatal("TLS handshake succeeded for a host without certificate")
				}
				return
			}
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			defer resp.Body.Close()
			var seen http.Header
			if err := json.NewDecoder(resp.Body).Decode(&seen); err != nil {
				t.Fatal(err)
			}
			if resp.ProtoMajor != 2 {
				t.Errorf("protocol %s, want HTTP/2", resp.Proto)
			}
			if got := seen.Get("X-Forwarded-Proto"); got != "https" {
				t.Errorf("X-Forwarded-Proto = %q", got)
			}
			if got := seen.Get("X-Seen-Host"); got != tc.host {
				t.Errorf("Host = %q", got)
			}
		})
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPebble runs the pebble ACME test CA in-process, with a DNS server
// answering 127.0.0.1 for every name; its validation authority checks
// http-01 on httpPort and tls-alpn-01 on tlsPort. It returns the directory
// URL and a client that trusts the CA's HTTPS endpoint.
func startPebble(t *testing.T, httpPort, tlsPort int) (string, *http.Client) {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	logger := log.New(io.Discard, "", 0)
	if testing.Verbose() {
		logger = log.New(tWriter{t}, "pebble ", 0)
	}

	dnsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	dns, err := challtestsrv.New(challtestsrv.Config{DNSAddrs: []string{dnsAddr}, Log: logger})
	if err != nil {
		t.Fatalf("start test dns: %v", err)
	}
	dns.SetDefaultDNSIPv4("127.0.0.1")
	dns.SetDefaultDNSIPv6("")
	dns.Run()
	t.Cleanup(dns.Shutdown)

	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "test"}})
	// The VA's task loop has no stop; it idles on a channel after the test.
	validator := va.New(logger, httpPort, tlsPort, false, dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 1, 1)
	srv := httptest.NewTLSServer(front.Handler())
	t.Cleanup(srv.Close)
	return srv.URL + wfe.DirectoryPath, srv.Client()
}

// TestACMEHTTP01 gets a certificate from a local ACME CA (pebble), answering
// the http-01 challenge on the router's own HTTP listener.
func TestACMEHTTP01(t *testing.T) {
	if testing.Short() {
		t.Skip("ACME issuance takes a few seconds")
	}
	be := startBackend(t, "acme", nil)
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpPort := httpLn.Addr().(*net.TCPAddr).Port
	// Nothing listens on the tls-alpn-01 port, so only http-01 can pass.
	dirURL, acmeClient := startPebble(t, httpPort, freePort(t))

	var accessLog syncBuffer
	rt := newRouter(t, Config{
		TLS: true, ACME: true, ACMEDirectoryURL: dirURL, ACMEHTTPClient: acmeClient,
		ACMECacheDir: t.TempDir(), ACMEEmail: "ops@berth.test", AccessLog: &accessLog,
	})
	rt.SetTable(appTable(map[string][]*backend{"shop": {be}}))
	_, httpsAddr := serveTLSRouter(t, rt, httpLn)

	// Pebble's certificates chain to a root made at start; this test checks
	// issuance and serving, so it reads the chain instead of verifying it.
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, httpsAddr)
		},
		TLSHandshakeTimeout: 60 * time.Second,
	}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 90 * time.Second}

	resp, err := c.Get("https://shop.test/")
	if err != nil {
		t.Fatalf("https through ACME certificate: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "acme" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	leaf := resp.TLS.PeerCertificates[0]
	if leaf.VerifyHostname("shop.test") != nil || !strings.Contains(leaf.Issuer.CommonName, "Pebble") {
		t.Fatalf("certificate for %v issued by %q", leaf.DNSNames, leaf.Issuer.CommonName)
	}
	rt.alog.flush()
	if !strings.Contains(accessLog.String(), "/.well-known/acme-challenge/") {
		t.Errorf("the http-01 challenge did not go through the router's HTTP listener; access log:\n%s", accessLog.String())
	}

	// Hosts outside the table get no certificate.
	if resp, err := c.Get("https://stranger.test/"); err == nil {
		resp.Body.Close()
		t.Fatal("got a certificate for a host not in the table")
	}
}
