package platform

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
)

// Version is the build version, set at link time with -X.
var Version = "dev"

// Settings are the knobs every service shares.
type Settings struct {
	// Process names the process in logs and the NATS connection name, e.g. "config" or "dev".
	Process string
	// Instance is this process's unique id (env INSTANCE_ID; default host name plus a
	// random suffix). It names the instance in registrations, events and config reports.
	Instance string
	// Region is the region this process runs in (env REGION).
	Region string
	// AdminAddr is the admin HTTP listen address (env ADMIN_ADDR).
	AdminAddr string
	// LogLevel is debug, info, warn or error (env LOG_LEVEL).
	LogLevel string
	// LogFormat is json or text (env LOG_FORMAT).
	LogFormat string
	// Root is the subject root (env OTELFLEET_ROOT).
	Root string
	// NATS says how to reach NATS (env NATS_URL, NATS_CREDS, ...).
	NATS natsconn.Options
	// RegistryTTL and LeaseTTL size the registry and leases buckets (env REGISTRY_TTL,
	// LEASE_TTL). Every process provisions the buckets with them, so give all processes
	// the same values.
	RegistryTTL time.Duration
	LeaseTTL    time.Duration
	// Replicas is the replica count of streams and buckets (env JS_REPLICAS).
	Replicas int
	// Reconcile updates existing buckets to RegistryTTL, LeaseTTL and Replicas (env
	// RECONCILE_BUCKETS); off, existing buckets are used as they are.
	Reconcile bool
	// Provision creates missing streams and buckets (env PROVISION_BUCKETS, default
	// true). False for identities without create rights: the process waits, retrying,
	// until the provisioning identity (the config service) has created them.
	Provision bool
	// StopTimeout bounds graceful shutdown.
	StopTimeout time.Duration
	// LogOutput is where the logger writes; nil means stderr.
	LogOutput io.Writer
	// Health is the hysteresis of the process's registrations' health.
	Health HealthHysteresis
	// Pprof serves Go's runtime profiles (net/http/pprof) under /debug/pprof/ on the
	// admin server (env ADMIN_PPROF, default off: profiles reveal internals and cost
	// CPU while taken, so they are for the operator who asks for them).
	Pprof bool
}

// Defaults of HealthHysteresis.
const (
	DefaultHealthWorseAfter  = 3
	DefaultHealthBetterAfter = 3
)

// HealthHysteresis keeps a registration's health from flapping (pkg/registration): the
// status a heartbeat reports changes only after consecutive heartbeats agree, so one
// busy second moves no router's tables.
type HealthHysteresis struct {
	// WorseAfter is how many consecutive heartbeats must judge a worse status (degraded
	// or unhealthy) before it is reported (flag --health-worse-after, env
	// HEALTH_WORSE_AFTER; default 3; 1 reports every reading as it comes).
	WorseAfter int
	// BetterAfter is how many consecutive heartbeats must judge a better status before
	// it is reported (flag --health-better-after, env HEALTH_BETTER_AFTER; default 3).
	BetterAfter int
}

// DefaultHealthHysteresis returns 3 heartbeats each way.
func DefaultHealthHysteresis() HealthHysteresis {
	return HealthHysteresis{WorseAfter: DefaultHealthWorseAfter, BetterAfter: DefaultHealthBetterAfter}
}

// Validate checks that each count is in [1, 100] (0 takes the default).
func (h HealthHysteresis) Validate() error {
	if h.WorseAfter < 0 || h.WorseAfter > 100 || h.BetterAfter < 0 || h.BetterAfter > 100 {
		return fmt.Errorf("--health-worse-after %d, --health-better-after %d: each must be in [1, 100]", h.WorseAfter, h.BetterAfter)
	}
	return nil
}

// Bind registers the hysteresis knobs.
func (h *HealthHysteresis) Bind(k *knobs.Set) {
	k.Int(&h.WorseAfter, "health-worse-after", "HEALTH_WORSE_AFTER", h.WorseAfter, "consecutive heartbeats that must judge a worse health before a registration reports it")
	k.Int(&h.BetterAfter, "health-better-after", "HEALTH_BETTER_AFTER", h.BetterAfter, "consecutive heartbeats that must judge a better health before a registration reports it")
}

// DefaultSettings returns the settings of a standalone service on a laptop.
func DefaultSettings(process string) Settings {
	return Settings{
		Process:     process,
		Instance:    DefaultInstanceID(),
		Region:      "local",
		AdminAddr:   ":8080",
		LogLevel:    "info",
		LogFormat:   "json",
		Root:        events.DefaultRoot,
		NATS:        natsconn.Options{URL: natsconn.DefaultURL},
		RegistryTTL: natsconn.DefaultRegistryTTL,
		LeaseTTL:    natsconn.DefaultLeaseTTL,
		Replicas:    1,
		Provision:   true,
		StopTimeout: 5 * time.Second,
		Health:      DefaultHealthHysteresis(),
	}
}

// DefaultInstanceID is the host name plus a short random suffix, reduced to a valid token.
func DefaultInstanceID() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return SanitizeToken(host) + "-" + hex.EncodeToString(b[:])
}

// SanitizeToken maps s to a valid name token by replacing every other byte with '-'.
func SanitizeToken(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s) && sb.Len() < 100; i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			sb.WriteByte(c)
		} else {
			sb.WriteByte('-')
		}
	}
	if sb.Len() == 0 {
		return "otelfleet"
	}
	return sb.String()
}

// Bind registers the shared knobs on k, with defaults taken from s.
func (s *Settings) Bind(k *knobs.Set) {
	k.String(&s.Instance, "instance-id", "INSTANCE_ID", s.Instance, "unique id of this instance")
	k.String(&s.Region, "region", "REGION", s.Region, "region this instance runs in")
	k.String(&s.AdminAddr, "admin-addr", "ADMIN_ADDR", s.AdminAddr, "admin HTTP address (/metrics, /healthz, /readyz)")
	k.Bool(&s.Pprof, "admin-pprof", "ADMIN_PPROF", s.Pprof, "serve Go runtime profiles under /debug/pprof/ on the admin server")
	k.String(&s.LogLevel, "log-level", "LOG_LEVEL", s.LogLevel, "log level: debug, info, warn, error")
	k.String(&s.LogFormat, "log-format", "LOG_FORMAT", s.LogFormat, "log format: json or text")
	k.String(&s.Root, "subject-root", "OTELFLEET_ROOT", s.Root, "subject root of every subject, stream and bucket name")
	k.String(&s.NATS.URL, "nats", "NATS_URL", s.NATS.URL, "NATS server URL(s), comma-separated; tls:// for TLS")
	k.String(&s.NATS.CredsFile, "nats-creds", "NATS_CREDS", s.NATS.CredsFile, "NATS credentials file")
	k.String(&s.NATS.User, "nats-user", "NATS_USER", s.NATS.User, "NATS user name")
	k.String(&s.NATS.Password, "nats-password", "NATS_PASSWORD", s.NATS.Password, "NATS password")
	k.String(&s.NATS.Token, "nats-token", "NATS_TOKEN", s.NATS.Token, "NATS token")
	k.String(&s.NATS.CAFile, "nats-ca", "NATS_CA", s.NATS.CAFile, "extra root CA file for tls:// servers")
	k.String(&s.NATS.CertFile, "nats-cert", "NATS_CERT", s.NATS.CertFile, "client certificate file for NATS mutual TLS (with --nats-key)")
	k.String(&s.NATS.KeyFile, "nats-key", "NATS_KEY", s.NATS.KeyFile, "client key file for NATS mutual TLS (with --nats-cert)")
	k.String(&s.NATS.InboxPrefix, "nats-inbox-prefix", "NATS_INBOX_PREFIX", s.NATS.InboxPrefix, "subject prefix of reply inboxes (default _INBOX_<nats user> with --nats-user, else _INBOX); the identity must be allowed to subscribe to <prefix>.>")
	k.Duration(&s.RegistryTTL, "registry-ttl", "REGISTRY_TTL", s.RegistryTTL, "registration TTL: an instance that stops heart-beating expires after it")
	k.Duration(&s.LeaseTTL, "lease-ttl", "LEASE_TTL", s.LeaseTTL, "leader lease TTL: failover takes about this long after a leader dies")
	k.Int(&s.Replicas, "js-replicas", "JS_REPLICAS", s.Replicas, "replicas of streams and buckets (3 in a JetStream cluster)")
	k.Bool(&s.Provision, "provision-buckets", "PROVISION_BUCKETS", s.Provision, "create missing streams and buckets; false: wait until another process (the config service) has (for NATS identities without create rights)")
	s.Health.Bind(k)
	k.Bool(&s.Reconcile, "reconcile-buckets", "RECONCILE_BUCKETS", s.Reconcile, "update existing buckets to --registry-ttl, --lease-ttl and --js-replicas (otherwise the first creator's settings stay)")
}

// Namespace returns the names rooted at s.Root.
func (s Settings) Namespace() (events.Namespace, error) { return events.NewNamespace(s.Root) }

// Layout returns the stream and bucket layout.
func (s Settings) Layout() (natsconn.Layout, error) {
	ns, err := s.Namespace()
	if err != nil {
		return natsconn.Layout{}, err
	}
	return natsconn.Layout{Namespace: ns, RegistryTTL: s.RegistryTTL, LeaseTTL: s.LeaseTTL, Replicas: s.Replicas, Reconcile: s.Reconcile, UseExisting: !s.Provision}, nil
}

// Validate reports every invalid setting, naming the flag.
func (s Settings) Validate() error {
	var errs []error
	if err := events.CheckToken("--instance-id", s.Instance); err != nil {
		errs = append(errs, err)
	}
	if err := events.CheckToken("--region", s.Region); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseLevel(s.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if s.LogFormat != "json" && s.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("--log-format %q: want json or text", s.LogFormat))
	}
	if l, err := s.Layout(); err != nil {
		errs = append(errs, err)
	} else if err := l.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := s.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := s.Health.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
