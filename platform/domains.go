package platform

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// AddDomain routes hostname to the app. Hostnames are unique across all
// apps; a taken one gives an *ExistsError (also when two requests race),
// which does not say which app has it. The global domain and the names
// under it are refused (see ValidateCustomDomain): every app already
// answers at APP.<domain>.
func (s *Service) AddDomain(ctx context.Context, actor Actor, app, hostname string) (string, error) {
	h, err := ValidateCustomDomain(hostname, s.domain)
	if err != nil {
		return "", err
	}
	a, err := s.appFor(ctx, s.pool, actor, app)
	if err != nil {
		return "", err
	}
	_, err = s.pool.Exec(ctx, `insert into domains (hostname, app_id) values ($1, $2)`, h, a.ID)
	if c, ok := uniqueViolation(err); ok && c == "domains_pkey" {
		return "", exists("domain", h, "it is in use by an app: remove it there first (domains:remove)")
	}
	if isForeignKeyViolation(err) {
		return "", appNotFound(app)
	}
	if err != nil {
		return "", fmt.Errorf("add domain %s: %w", h, err)
	}
	s.log.Info("domain added", "app", app, "hostname", h, "by", actor.Name)
	return h, nil
}

// RemoveDomain stops routing hostname to the app.
func (s *Service) RemoveDomain(ctx context.Context, actor Actor, app, hostname string) error {
	h, err := ValidateHostname(hostname)
	if err != nil {
		return err
	}
	a, err := s.appFor(ctx, s.pool, actor, app)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `delete from domains where hostname = $1 and app_id = $2`, h, a.ID)
	if err != nil {
		return fmt.Errorf("remove domain %s: %w", h, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("domain", h, "see domains:report "+app)
	}
	s.log.Info("domain removed", "app", app, "hostname", h, "by", actor.Name)
	return nil
}

// Domains lists the app's hostnames, sorted.
func (s *Service) Domains(ctx context.Context, actor Actor, app string) ([]string, error) {
	a, err := s.appFor(ctx, s.pool, actor, app)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `select hostname from domains where app_id = $1 order by hostname`, a.ID)
	if err != nil {
		return nil, fmt.Errorf("list domains of %s: %w", app, err)
	}
	hosts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list domains of %s: %w", app, err)
	}
	return hosts, nil
}

// AllDomains maps every hostname to its app's name, for the router's table.
// It is for the daemon and takes no actor.
func (s *Service) AllDomains(ctx context.Context) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, `select d.hostname, a.name from domains d join apps a on a.id = d.app_id`)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	defer rows.Close()
	m := map[string]string{}
	for rows.Next() {
		var h, app string
		if err := rows.Scan(&h, &app); err != nil {
			return nil, fmt.Errorf("list domains: %w", err)
		}
		m[h] = app
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	return m, nil
}

// Cert is an uploaded TLS certificate for a hostname.
type Cert struct {
	// Hostname is the name it serves.
	Hostname string
	// App is the app it belongs to.
	App string
	// CertPEM is the certificate chain.
	CertPEM string
	// KeyPEM is the private key (a secret).
	KeyPEM string
	// NotAfter is when the leaf certificate expires.
	NotAfter time.Time
}

// SetCert stores (or replaces) the certificate for one of the app's
// domains. The pair must parse and match; the key is never logged.
func (s *Service) SetCert(ctx context.Context, actor Actor, app, hostname, certPEM, keyPEM string) (Cert, error) {
	h, err := ValidateHostname(hostname)
	if err != nil {
		return Cert{}, err
	}
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return Cert{}, invalid("certificate", "", "give a PEM certificate chain and its matching PEM private key")
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return Cert{}, invalid("certificate", "", "the certificate does not parse")
	}
	if err := leaf.VerifyHostname(h); err != nil {
		return Cert{}, invalid("certificate", "", fmt.Sprintf("it is not valid for %s", h))
	}
	a, err := s.appFor(ctx, s.pool, actor, app)
	if err != nil {
		return Cert{}, err
	}
	var owner int64
	err = s.pool.QueryRow(ctx, `select app_id from domains where hostname = $1`, h).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && owner != a.ID) {
		return Cert{}, notFound("domain", h, "add it to "+app+" first (domains:add)")
	}
	if err != nil {
		return Cert{}, fmt.Errorf("look up domain %s: %w", h, err)
	}
	if _, err := s.pool.Exec(ctx, `insert into certs (hostname, app_id, cert_pem, key_pem, not_after) values ($1, $2, $3, $4, $5)
		on conflict (hostname) do update set app_id = excluded.app_id, cert_pem = excluded.cert_pem, key_pem = excluded.key_pem,
		not_after = excluded.not_after, created_at = now()`, h, a.ID, certPEM, keyPEM, leaf.NotAfter); err != nil {
		return Cert{}, fmt.Errorf("store certificate for %s: %w", h, err)
	}
	s.log.Info("certificate stored", "app", app, "hostname", h, "not_after", leaf.NotAfter, "by", actor.Name)
	return Cert{Hostname: h, App: app, CertPEM: certPEM, KeyPEM: keyPEM, NotAfter: leaf.NotAfter}, nil
}

// RemoveCert deletes the certificate of one of the app's domains.
func (s *Service) RemoveCert(ctx context.Context, actor Actor, app, hostname string) error {
	h, err := ValidateHostname(hostname)
	if err != nil {
		return err
	}
	a, err := s.appFor(ctx, s.pool, actor, app)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `delete from certs where hostname = $1 and app_id = $2`, h, a.ID)
	if err != nil {
		return fmt.Errorf("remove certificate for %s: %w", h, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("certificate", h, "")
	}
	return nil
}

// AllCerts returns every uploaded certificate, for the router. It is for the
// daemon and takes no actor.
func (s *Service) AllCerts(ctx context.Context) ([]Cert, error) {
	rows, err := s.pool.Query(ctx, `select c.hostname, coalesce(a.name, ''), c.cert_pem, c.key_pem, coalesce(c.not_after, 'epoch')
		from certs c left join apps a on a.id = c.app_id order by c.hostname`)
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	certs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Cert, error) {
		var c Cert
		err := r.Scan(&c.Hostname, &c.App, &c.CertPEM, &c.KeyPEM, &c.NotAfter)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	return certs, nil
}
