package deploy

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"
)

// Config configures a Deployer.
type Config struct {
	// DataDir is berth's data directory; app logs go to DataDir/logs.
	DataDir string
	// Domain is the global domain: app APP is served at APP.<Domain>.
	Domain string
	// StopTimeout is how long an instance has to exit after SIGTERM
	// before it is killed with SIGKILL; default 30s.
	StopTimeout time.Duration
	// HealthTimeout bounds the wait for a new instance to answer HTTP on
	// its port; default 60s.
	HealthTimeout time.Duration
	// DrainDelay is the pause between taking instances out of the router
	// and sending them SIGTERM, so requests already on their way finish;
	// default 1s, a negative value means none.
	DrainDelay time.Duration
	// RestartBackoff is the delay before the second restart of a crashing
	// instance (the first is immediate); it doubles with every crash up to
	// RestartBackoffMax. Defaults 1s and 5m.
	RestartBackoff    time.Duration
	RestartBackoffMax time.Duration
	// RestartReset is how long an instance must run for its crash count
	// to start again from zero; default 10m.
	RestartReset time.Duration
	// LogFileBytes is the size at which a container's log file is rotated;
	// default 8 MiB.
	LogFileBytes int64
	// LogAppBytes bounds an app's logs: past it the files of gone
	// containers are removed, oldest first; default 64 MiB.
	LogAppBytes int64
	// BuildLogsKept is how many build logs an app keeps; default 20.
	BuildLogsKept int
	// LogPollInterval is how often a log follower looks for new lines;
	// default 200ms.
	LogPollInterval time.Duration
	// MaintenanceInterval is how often logs are rotated; default 30s.
	MaintenanceInterval time.Duration
	// StartConcurrency caps how many containers are created and started
	// at once (health checks are not capped); default 8.
	StartConcurrency int
	// Logger receives the deployer's logs; nil discards them.
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.DataDir == "" || !filepath.IsAbs(c.DataDir) {
		return fmt.Errorf("configure deployer: DataDir must be an absolute path, got %q", c.DataDir)
	}
	if c.Domain == "" {
		return fmt.Errorf("configure deployer: Domain is required (apps are served at APP.<Domain>)")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.StopTimeout, 30*time.Second)
	def(&c.HealthTimeout, 60*time.Second)
	if c.DrainDelay == 0 {
		c.DrainDelay = time.Second
	}
	def(&c.RestartBackoff, time.Second)
	def(&c.RestartBackoffMax, 5*time.Minute)
	def(&c.RestartReset, 10*time.Minute)
	def(&c.LogPollInterval, 200*time.Millisecond)
	def(&c.MaintenanceInterval, 30*time.Second)
	if c.LogFileBytes <= 0 {
		c.LogFileBytes = 8 << 20
	}
	if c.LogAppBytes <= 0 {
		c.LogAppBytes = 64 << 20
	}
	if c.StartConcurrency <= 0 {
		c.StartConcurrency = 8
	}

	if c.BuildLogsKept <= 0 {
		c.BuildLogsKept = 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// backoff is the delay before restart number n (1-based) of a slot that
// keeps crashing: 0 for the first, then base, 2·base, 4·base… up to max.
func backoff(n int, base, max time.Duration) time.Duration {
	if n <= 1 {
		return 0
	}
	d := base
	for i := 2; i < n; i++ {
		d *= 2
		if d >= max {
			return max
		}
	}
	if d > max {
		return max
	}
	return d
}
