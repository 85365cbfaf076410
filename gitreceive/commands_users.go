package gitreceive

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/berthhq/berth/platform"
)

// maxKeyBytes bounds a public key read from stdin.
const maxKeyBytes = 16 << 10

func (c *Commands) keyActor(ctx context.Context, fingerprint string) (Actor, error) {
	return c.svc.ActorForKey(ctx, fingerprint)
}

func (c *Commands) keysAdd(inv *Invocation) error {
	user := inv.Args[0]
	name := ""
	if len(inv.Args) == 2 {
		name = inv.Args[1]
	}
	b, err := io.ReadAll(io.LimitReader(inv.env.Stdin, maxKeyBytes+1))
	if err != nil {
		return fmt.Errorf("read the public key from stdin: %w", err)
	}
	if len(b) > maxKeyBytes {
		return &platform.InvalidError{Field: "SSH key", Reason: "more than 16 KiB on stdin; give one public key line"}
	}
	line := strings.TrimSpace(string(b))
	if line == "" {
		return &platform.InvalidError{Field: "SSH key", Reason: "nothing on stdin; pipe the public key in: keys:add USER < ~/.ssh/id_ed25519.pub"}
	}
	k, err := c.svc.AddKey(inv.ctx, inv.actor, user, name, line)
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> Added key %s (%s) for %s\n", k.Name, k.Fingerprint, user)
	return nil
}

func (c *Commands) keysRemove(inv *Invocation) error {
	if err := c.svc.RemoveKey(inv.ctx, inv.actor, inv.Args[0], inv.Args[1]); err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> Removed key %s of %s\n", inv.Args[1], inv.Args[0])
	return nil
}

func (c *Commands) keysList(inv *Invocation) error {
	user := inv.actor.Name
	if len(inv.Args) == 1 {
		user = inv.Args[0]
	}
	var users []string
	if len(inv.Args) == 0 && inv.actor.IsSystem() {
		all, err := c.svc.Users(inv.ctx, inv.actor)
		if err != nil {
			return err
		}
		for _, u := range all {
			users = append(users, u.Name)
		}
	} else {
		users = []string{user}
	}
	tw := tabwriter.NewWriter(inv.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tNAME\tFINGERPRINT\tADDED")
	for _, u := range users {
		keys, err := c.svc.Keys(inv.ctx, inv.actor, u)
		if err != nil {
			return err
		}
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u, k.Name, k.Fingerprint, k.CreatedAt.UTC().Format("2006-01-02 15:04"))
		}
	}
	return tw.Flush()
}

func (c *Commands) usersAdd(inv *Invocation) error {
	role := platform.RoleMember
	if inv.Bool("admin") {
		role = platform.RoleAdmin
	}
	u, err := c.svc.CreateUser(inv.ctx, inv.actor, inv.Args[0], role)
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> Added %s %s; add their key with: keys:add %s < KEY.pub\n", u.Role, u.Name, u.Name)
	return nil
}

func (c *Commands) usersList(inv *Invocation) error {
	users, err := c.svc.Users(inv.ctx, inv.actor)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(inv.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tPASSWORD\tADDED")
	for _, u := range users {
		pw := "no"
		if u.HasPassword {
			pw = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Role, pw, u.CreatedAt.UTC().Format("2006-01-02 15:04"))
	}
	return tw.Flush()
}

func (c *Commands) usersRemove(inv *Invocation) error {
	if err := c.svc.DeleteUser(inv.ctx, inv.actor, inv.Args[0]); err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> Removed user %s\n", inv.Args[0])
	return nil
}

func (c *Commands) usersPasswd(inv *Invocation) error {
	if inv.env.Terminal != nil {
		fmt.Fprint(inv.env.Stderr, "New password (input is shown; pipe it in to hide it): ")
	}
	pw, err := readLine(inv.env.Stdin)
	if err != nil || pw == "" {
		return &platform.InvalidError{Field: "password", Reason: "nothing on stdin; pipe the password in: users:passwd USER <<< 'secret'"}
	}
	if err := c.svc.SetPassword(inv.ctx, inv.actor, inv.Args[0], pw); err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> Password set for %s\n", inv.Args[0])
	return nil
}

func (c *Commands) domainsAdd(inv *Invocation) error {
	host, err := c.svc.AddDomain(inv.ctx, inv.actor, inv.Args[0], inv.Args[1])
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> Added %s to %s\n", host, inv.Args[0])
	return c.deploy.RefreshRoutes(inv.ctx)
}

func (c *Commands) domainsRemove(inv *Invocation) error {
	if err := c.svc.RemoveDomain(inv.ctx, inv.actor, inv.Args[0], inv.Args[1]); err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> Removed %s from %s\n", inv.Args[1], inv.Args[0])
	return c.deploy.RefreshRoutes(inv.ctx)
}

func (c *Commands) domainsList(inv *Invocation) error {
	hosts, err := c.svc.Domains(inv.ctx, inv.actor, inv.Args[0])
	if err != nil {
		return err
	}
	header(inv.env.Stdout, "%s domains", inv.Args[0])
	fmt.Fprintf(inv.env.Stdout, "%s.%s (default)\n", inv.Args[0], c.cfg.Domain)
	for _, h := range hosts {
		fmt.Fprintln(inv.env.Stdout, h)
	}
	return nil
}

// authorizeGit decides whether actor may push to (receive) or fetch from
// app's repository, creating the app on a first push as Dokku does.
func (c *Commands) authorizeGit(ctx context.Context, actor Actor, app string, receive bool, out io.Writer) error {
	if err := platform.ValidateAppName(app); err != nil {
		return err
	}
	_, err := c.svc.App(ctx, actor, app)
	if err == nil {
		return nil
	}
	if !receive || !errors.Is(err, platform.ErrNotFound) {
		return err
	}
	a, cerr := c.svc.CreateApp(ctx, actor, app)
	if cerr != nil {
		if errors.Is(cerr, platform.ErrExists) {
			// Someone else's app: say "not found", as for any app the
			// user may not see.
			return err
		}
		return cerr
	}
	fmt.Fprintf(out, "-----> Created app %s\n", a.Name)
	return nil
}

// maxPEMBytes bounds a certificate chain plus key read from stdin.
const maxPEMBytes = 256 << 10

func (c *Commands) certsAdd(inv *Invocation) error {
	b, err := io.ReadAll(io.LimitReader(inv.env.Stdin, maxPEMBytes+1))
	if err != nil {
		return fmt.Errorf("read the certificate from stdin: %w", err)
	}
	if len(b) > maxPEMBytes {
		return &platform.InvalidError{Field: "certificate", Reason: "more than 256 KiB on stdin"}
	}
	certPEM, keyPEM := splitPEM(b)
	if certPEM == "" || keyPEM == "" {
		return &platform.InvalidError{Field: "certificate", Reason: "give the certificate chain and its private key, PEM, on stdin: cat cert.pem key.pem | certs:add APP HOST"}
	}
	crt, err := c.svc.SetCert(inv.ctx, inv.actor, inv.Args[0], inv.Args[1], certPEM, keyPEM)
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> %s now serves TLS with the uploaded certificate (valid until %s)\n", crt.Hostname, crt.NotAfter.UTC().Format("2006-01-02"))
	return c.deploy.RefreshRoutes(inv.ctx)
}

// splitPEM separates private key blocks from certificate blocks.
func splitPEM(b []byte) (certs, key string) {
	var cb, kb strings.Builder
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if strings.Contains(block.Type, "PRIVATE KEY") {
			kb.Write(pem.EncodeToMemory(block))
		} else {
			cb.Write(pem.EncodeToMemory(block))
		}
	}
	return cb.String(), kb.String()
}

func (c *Commands) certsRemove(inv *Invocation) error {
	if err := c.svc.RemoveCert(inv.ctx, inv.actor, inv.Args[0], inv.Args[1]); err != nil {
		return err
	}
	fmt.Fprintf(inv.env.Stdout, "-----> removed the certificate of %s\n", inv.Args[1])
	return c.deploy.RefreshRoutes(inv.ctx)
}

func (c *Commands) certsList(inv *Invocation) error {
	if _, err := c.svc.App(inv.ctx, inv.actor, inv.Args[0]); err != nil {
		return err
	}
	all, err := c.svc.AllCerts(inv.ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(inv.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tEXPIRES")
	for _, crt := range all {
		if crt.App == inv.Args[0] {
			fmt.Fprintf(tw, "%s\t%s\n", crt.Hostname, crt.NotAfter.UTC().Format("2006-01-02"))
		}
	}
	return tw.Flush()
}
