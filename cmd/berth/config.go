package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// defaultConfigPath is read when present; BERTH_CONFIG or --config name another.
const defaultConfigPath = "/etc/berth/berth.toml"

// Config is berth's configuration. Each field is set, from lowest to highest
// precedence, by its default, the TOML file, the BERTH_* environment variable
// and the command-line flag of the same name.
type Config struct {
	// DataDir holds repos/, layers/, images/, containers/, logs/ and postgres/.
	DataDir string `toml:"data_dir"`
	// DatabaseURL names an external PostgreSQL; empty runs the embedded cluster.
	DatabaseURL string `toml:"database_url"`
	// Socket is the root-only unix socket the local `berth COMMAND` talks to.
	Socket string `toml:"socket"`
	// SSHAddr is where git push and the SSH commands are served.
	SSHAddr string `toml:"ssh_addr"`
	// HTTPAddr is the router's plain HTTP listener.
	HTTPAddr string `toml:"http_addr"`
	// HTTPSAddr is the router's TLS listener, used when TLS is on.
	HTTPSAddr string `toml:"https_addr"`
	// WebAddr is the dashboard and API listener.
	WebAddr string `toml:"web_addr"`
	// WebTLSCert and WebTLSKey, both or neither, are the PEM certificate
	// (chain) and private key the dashboard serves HTTPS with on WebAddr.
	WebTLSCert string `toml:"web_tls_cert"`
	WebTLSKey  string `toml:"web_tls_key"`
	// WebSecure marks the dashboard's cookies Secure without TLS in berth,
	// for a dashboard behind a proxy that terminates TLS. Implied by
	// WebTLSCert.
	WebSecure bool `toml:"web_secure"`
	// Domain is the global domain: app NAME answers at NAME.<Domain>.
	Domain string `toml:"domain"`
	// BridgeName and BridgeSubnet configure the container network.
	BridgeName   string `toml:"bridge_name"`
	BridgeSubnet string `toml:"bridge_subnet"`
	// TLS turns the router's HTTPS listener on: "on" or "off".
	TLS string `toml:"tls"`
	// ACMEEmail, when set with TLS on, gets certificates for the apps'
	// domains from the ACME directory (Let's Encrypt by default).
	ACMEEmail string `toml:"acme_email"`
	// ACMEDirectory is the ACME directory URL; empty means Let's Encrypt.
	ACMEDirectory string `toml:"acme_directory"`
	// DiskQuotaDriver picks the disk quota mechanism: auto, setquota, btrfs or loop.
	DiskQuotaDriver string `toml:"disk_quota_driver"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
}

// configField ties one Config field to its flag, environment variable and
// help text, so the three stay in step and the README can list them.
type configField struct {
	name string // flag name; TOML key and env var derive from it
	ptr  *string
	// boolPtr, instead of ptr, makes a true/false setting: a bare --flag
	// sets it, --flag=false clears it.
	boolPtr *bool
	help    string
}

func (c *Config) fields() []configField {
	return []configField{
		{name: "data-dir", ptr: &c.DataDir, help: "data directory"},
		{name: "database-url", ptr: &c.DatabaseURL, help: "PostgreSQL URL; empty runs a private cluster under the data directory"},
		{name: "socket", ptr: &c.Socket, help: "local admin socket (root only)"},
		{name: "ssh-addr", ptr: &c.SSHAddr, help: "SSH listen address for git push and commands"},
		{name: "http-addr", ptr: &c.HTTPAddr, help: "router HTTP listen address"},
		{name: "https-addr", ptr: &c.HTTPSAddr, help: "router HTTPS listen address (when TLS is on)"},
		{name: "web-addr", ptr: &c.WebAddr, help: "dashboard and API listen address"},
		{name: "web-tls-cert", ptr: &c.WebTLSCert, help: "dashboard HTTPS: certificate file (PEM, chain first); with --web-tls-key"},
		{name: "web-tls-key", ptr: &c.WebTLSKey, help: "dashboard HTTPS: private key file (PEM); with --web-tls-cert"},
		{name: "web-secure", boolPtr: &c.WebSecure, help: "Secure dashboard cookies without --web-tls-cert, behind a proxy that terminates TLS"},
		{name: "domain", ptr: &c.Domain, help: "global domain: apps answer at APP.DOMAIN"},
		{name: "bridge-name", ptr: &c.BridgeName, help: "container bridge interface name"},
		{name: "bridge-subnet", ptr: &c.BridgeSubnet, help: "container bridge subnet (CIDR); empty picks one that does not collide"},
		{name: "tls", ptr: &c.TLS, help: "router TLS: on or off (uploaded certificates, or ACME with --acme-email)"},
		{name: "acme-email", ptr: &c.ACMEEmail, help: "with TLS on: get certificates from ACME, with this contact address"},
		{name: "acme-directory", ptr: &c.ACMEDirectory, help: "ACME directory URL; empty means Let's Encrypt"},
		{name: "disk-quota-driver", ptr: &c.DiskQuotaDriver, help: "disk quota driver: auto, setquota, btrfs or loop"},
		{name: "log-level", ptr: &c.LogLevel, help: "log level: debug, info, warn or error"},
	}
}

func defaultConfig() Config {
	return Config{
		DataDir:         "/var/lib/berth",
		Socket:          "/run/berth/berth.sock",
		SSHAddr:         ":2222",
		HTTPAddr:        ":80",
		HTTPSAddr:       ":443",
		WebAddr:         ":8080",
		Domain:          "localhost",
		BridgeName:      "berth0",
		DiskQuotaDriver: "auto",
		TLS:             "off",
		LogLevel:        "info",
	}
}

func envName(flagName string) string {
	return "BERTH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// loadConfig reads the file, then the environment, then parses flags from
// args with fs. It returns the remaining arguments.
func loadConfig(fset *flag.FlagSet, args []string, getenv func(string) string) (Config, []string, error) {
	cfg := defaultConfig()
	path := getenv("BERTH_CONFIG")
	explicit := path != ""
	// --config must be known before the file is read; look for it first.
	for i, a := range args {
		if a == "--" {
			break
		}
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			path, explicit = v, true
		} else if (a == "--config" || a == "-config") && i+1 < len(args) {
			path, explicit = args[i+1], true
		}
	}
	if path == "" {
		path = defaultConfigPath
	}
	if err := readConfigFile(path, &cfg); err != nil {
		if !(errors.Is(err, fs.ErrNotExist) && !explicit) {
			return cfg, nil, err
		}
	}
	for _, f := range cfg.fields() {
		v := getenv(envName(f.name))
		switch {
		case v == "":
		case f.boolPtr != nil:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return cfg, nil, fmt.Errorf("config %s: %q is not true or false", envName(f.name), v)
			}
			*f.boolPtr = b
		default:
			*f.ptr = v
		}
	}
	var configFlag string
	fset.StringVar(&configFlag, "config", path, "configuration file (TOML)")
	for _, f := range cfg.fields() {
		help := f.help + " (env " + envName(f.name) + ")"
		if f.boolPtr != nil {
			fset.BoolVar(f.boolPtr, f.name, *f.boolPtr, help)
		} else {
			fset.StringVar(f.ptr, f.name, *f.ptr, help)
		}
	}
	if err := fset.Parse(args); err != nil {
		return cfg, nil, err
	}
	if err := cfg.validate(); err != nil {
		return cfg, nil, err
	}
	return cfg, fset.Args(), nil
}

func readConfigFile(path string, cfg *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config %s: %w", path, err)
	}
	md, err := toml.Decode(string(b), cfg)
	if err != nil {
		return fmt.Errorf("parse config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return fmt.Errorf("parse config %s: unknown key %q (known keys are listed in the README)", path, und[0].String())
	}
	return nil
}

func (c *Config) validate() error {
	if c.DataDir == "" || !strings.HasPrefix(c.DataDir, "/") {
		return fmt.Errorf("config data_dir: %q must be an absolute path", c.DataDir)
	}
	if c.Domain == "" {
		return errors.New("config domain: must not be empty")
	}
	if _, err := parseLogLevel(c.LogLevel); err != nil {
		return err
	}
	switch c.TLS {
	case "on", "off":
	default:
		return fmt.Errorf("config tls: %q is not on or off", c.TLS)
	}
	if (c.WebTLSCert == "") != (c.WebTLSKey == "") {
		return errors.New("config web_tls_cert, web_tls_key: give both (the dashboard's certificate and its private key, PEM files) or neither")
	}
	if c.ACMEEmail != "" && c.TLS != "on" {
		return errors.New("config acme_email: ACME needs tls = \"on\"")
	}
	switch c.DiskQuotaDriver {
	case "auto", "setquota", "btrfs", "loop":
	default:
		return fmt.Errorf("config disk_quota_driver: %q is not one of auto, setquota, btrfs, loop", c.DiskQuotaDriver)
	}
	return nil
}

func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("config log_level: %q is not one of debug, info, warn, error", s)
	}
	return l, nil
}
