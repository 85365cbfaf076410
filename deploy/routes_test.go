package deploy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/berthhq/berth/platform"
)

// selfSigned returns a PEM certificate and key for host.
func selfSigned(t *testing.T, host string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
}

func TestRoutesFollowDomainsAndCerts(t *testing.T) {
	e := newEnv(t, nil)
	e.createApp("shop")
	v1 := e.release("shop", e.image("shop:v1", map[string]string{"web": webCommand("v1")}), nil)
	e.start(t)
	ctx := context.Background()
	if err := e.d.Rollout(ctx, "shop", v1, nil); err != nil {
		t.Fatal(err)
	}
	sys := platform.System()
	if _, err := e.svc.AddDomain(ctx, sys, "shop", "www.shop.example"); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := selfSigned(t, "www.shop.example")
	if _, err := e.svc.SetCert(ctx, sys, "shop", "www.shop.example", certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	if err := e.d.RefreshRoutes(ctx); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	steps := []struct {
		name string
		host string // app name given to getVia is the host's first label; use raw host below
		want int
	}{
		{name: "global domain", host: "shop." + e.domain, want: 200},
		{name: "custom domain", host: "www.shop.example", want: 200},
	}
	for _, s := range steps {
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.rtAddr+"/", nil)
		req.Host = s.host
		resp, err := c.Do(req)
		if err != nil || resp.StatusCode != s.want {
			t.Fatalf("%s: %v %v, want %d", s.name, resp, err, s.want)
		}
		resp.Body.Close()
	}
	if e.rt.Table().Certs["www.shop.example"] == nil {
		t.Fatal("the uploaded certificate is not in the routing table")
	}
	if err := e.svc.RemoveDomain(ctx, sys, "shop", "www.shop.example"); err != nil {
		t.Fatal(err)
	}
	if err := e.d.RefreshRoutes(ctx); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+e.rtAddr+"/", nil)
	req.Host = "www.shop.example"
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("removed domain: %v %v, want 404", resp, err)
	}
	resp.Body.Close()
}
