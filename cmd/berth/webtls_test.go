package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
)

// TestDashboardTLS: with web_tls_cert and web_tls_key the dashboard
// speaks HTTPS only, with Secure __Host- cookies and HSTS.
func TestDashboardTLS(t *testing.T) {
	certFile, keyFile, cert := testenv.WriteSelfSigned(t, t.TempDir(), "dashboard", "127.0.0.1")
	d := newTestDaemon(t, "BERTH_WEB_TLS_CERT="+certFile, "BERTH_WEB_TLS_KEY="+keyFile)
	d.start()

	pool := x509.NewCertPool()
	pool.AddCert(cert)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(hc.CloseIdleConnections)
	resp, err := hc.Get("https://127.0.0.1:" + d.webPort + "/login")
	if err != nil {
		t.Fatalf("GET /login over TLS: %v\n%s", err, d.log)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /login over TLS = %d", resp.StatusCode)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no Strict-Transport-Security over TLS")
	}
	cookies := resp.Cookies()
	if len(cookies) == 0 {
		t.Errorf("GET /login set no cookie; Set-Cookie: %q", resp.Header.Values("Set-Cookie"))
	}
	for _, ck := range cookies {
		if !ck.Secure || !strings.HasPrefix(ck.Name, "__Host-") {
			t.Errorf("cookie %s: Secure %v, want Secure and a __Host- name", ck.Name, ck.Secure)
		}
	}

	// Plain HTTP on the same port gets no page: Go's TLS server answers a
	// bare 400 to a request in the clear.
	resp, err = (&http.Client{Timeout: 10 * time.Second}).Get("http://127.0.0.1:" + d.webPort + "/login")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) > 0 {
			t.Errorf("plain HTTP to the TLS dashboard = %d, cookies %v: %s", resp.StatusCode, resp.Cookies(), body)
		}
	}
}

// TestDashboardTLSRefusesBadFiles: berth serve does not start with a
// dashboard certificate it cannot use, and says which file is wrong.
func TestDashboardTLSRefusesBadFiles(t *testing.T) {
	d := newTestDaemon(t)
	dir := t.TempDir()
	certFile, keyFile, _ := testenv.WriteSelfSigned(t, dir, "one", "127.0.0.1")
	_, otherKey, _ := testenv.WriteSelfSigned(t, dir, "two", "127.0.0.1")
	garbage := filepath.Join(dir, "garbage.crt")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.key")
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{name: "missing key file", env: []string{"BERTH_WEB_TLS_CERT=" + certFile, "BERTH_WEB_TLS_KEY=" + missing},
			want: []string{"web_tls_key", missing, "no such file"}},
		{name: "missing certificate file", env: []string{"BERTH_WEB_TLS_CERT=" + missing, "BERTH_WEB_TLS_KEY=" + keyFile},
			want: []string{"web_tls_cert", missing}},
		{name: "key of another certificate", env: []string{"BERTH_WEB_TLS_CERT=" + certFile, "BERTH_WEB_TLS_KEY=" + otherKey},
			want: []string{certFile, otherKey, "does not match"}},
		{name: "not PEM", env: []string{"BERTH_WEB_TLS_CERT=" + garbage, "BERTH_WEB_TLS_KEY=" + keyFile},
			want: []string{garbage}},
		{name: "certificate without key", env: []string{"BERTH_WEB_TLS_CERT=" + certFile},
			want: []string{"web_tls_cert", "web_tls_key", "both"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, d.bin, "serve")
			cmd.Env = append(append([]string{}, d.env...), tt.env...)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("berth serve exited 0:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output does not mention %q:\n%s", w, out)
				}
			}
			if _, err := os.Stat(d.dataDir); err == nil {
				t.Errorf("berth serve created %s before refusing the certificate", d.dataDir)
			}
		})
	}
}

// TestWebSecureSetting: web_secure is a true/false setting from the file,
// the environment or a bare flag, and makes the dashboard's cookies Secure.
func TestWebSecureSetting(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "berth.toml")
	tests := []struct {
		name    string
		toml    string
		env     map[string]string
		args    []string
		want    bool
		wantErr string
	}{
		{name: "default", want: false},
		{name: "file", toml: "web_secure = true\n", want: true},
		{name: "env", env: map[string]string{"BERTH_WEB_SECURE": "1"}, want: true},
		{name: "bare flag", args: []string{"--web-secure"}, want: true},
		{name: "flag over env", env: map[string]string{"BERTH_WEB_SECURE": "true"}, args: []string{"--web-secure=false"}, want: false},
		{name: "bad env", env: map[string]string{"BERTH_WEB_SECURE": "yes please"}, wantErr: "BERTH_WEB_SECURE"},
		{name: "string in file", toml: "web_secure = \"on\"\n", wantErr: "web_secure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(file, []byte(tt.toml), 0o600); err != nil {
				t.Fatal(err)
			}
			env := map[string]string{"BERTH_CONFIG": file}
			for k, v := range tt.env {
				env[k] = v
			}
			fset := flag.NewFlagSet("test", flag.ContinueOnError)
			fset.SetOutput(io.Discard)
			cfg, _, err := loadConfig(fset, tt.args, func(k string) string { return env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wcfg, err := webConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.WebSecure != tt.want || wcfg.Secure != tt.want {
				t.Errorf("WebSecure %v, web Secure %v, want %v", cfg.WebSecure, wcfg.Secure, tt.want)
			}
		})
	}
}
