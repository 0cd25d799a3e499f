package natsconn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// Defaults for the TTL classes of the contract's buckets.
const (
	DefaultRegistryTTL = 30 * time.Second
	DefaultLeaseTTL    = 5 * time.Second
	// MinTTL is the smallest bucket TTL the server accepts for limit markers.
	MinTTL = time.Second
	// ConfigHistory is how many versions of each config key the bucket keeps (the
	// maximum JetStream KV allows); rollback reaches this far back.
	ConfigHistory = 64
)

// Layout says how to size the contract's streams and buckets.
type Layout struct {
	Namespace events.Namespace
	// RegistryTTL is the registry bucket's TTL: a registration not refreshed within it
	// expires and watchers see a purge marker.
	RegistryTTL time.Duration
	// LeaseTTL is the leases bucket's TTL: a leader that stops renewing loses its lease
	// after it.
	LeaseTTL time.Duration
	// Replicas is the stream replica count (1 for a single server, 3 in a cluster).
	Replicas int
	// Reconcile makes Provision update buckets that exist with other settings (TTLs,
	// replicas) to this layout. Without it an existing bucket is used as it is, so one
	// process started with other TTLs cannot flip the whole deployment's: the first
	// creator, or whoever reconciles (`otelfleet dev`, or RECONCILE_BUCKETS=true),
	// decides. Clients read the TTL from the bucket, never from their own settings.
	Reconcile bool
	// UseExisting makes Provision create nothing: every stream and bucket must exist, and
	// a missing one is an error wrapping ErrNotProvisioned (env PROVISION_BUCKETS=false).
	// For identities without create rights, which wait for the one that provisions
	// (the config service in deploy/nats/auth.conf). It wins over Reconcile.
	UseExisting bool
}

// ErrNotProvisioned is returned by Provision with Layout.UseExisting when a stream or
// bucket of the contract does not exist yet.
var ErrNotProvisioned = errors.New("not provisioned yet (created by the identity that provisions, e.g. the config service)")

// DefaultLayout is the layout of a laptop deployment.
func DefaultLayout() Layout {
	return Layout{Namespace: events.Default, RegistryTTL: DefaultRegistryTTL, LeaseTTL: DefaultLeaseTTL, Replicas: 1}
}

// Validate checks the TTLs and replica count.
func (l Layout) Validate() error {
	var errs []error
	if l.RegistryTTL < MinTTL {
		errs = append(errs, fmt.Errorf("registry TTL %v: must be at least %v", l.RegistryTTL, MinTTL))
	}
	if l.LeaseTTL < MinTTL {
		errs = append(errs, fmt.Errorf("lease TTL %v: must be at least %v", l.LeaseTTL, MinTTL))
	}
	if l.Replicas < 1 || l.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: must be in [1, 5]", l.Replicas))
	}
	return errors.Join(errs...)
}

// Buckets holds the contract's KV buckets.
type Buckets struct {
	Config   jetstream.KeyValue
	Registry jetstream.KeyValue
	Leases   jetstream.KeyValue
	Sampling jetstream.KeyValue
	// Agents holds OpAMP agent states (TTL = registry TTL); Rollouts holds rollouts and
	// each agent's desired config.
	Agents   jetstream.KeyValue
	Rollouts jetstream.KeyValue
	// Differences lists existing buckets whose settings differ from the layout and were
	// left as they are (Layout.Reconcile off), e.g. "otlp_registry: TTL 30s (layout 3s)".
	Differences []string
}

// streamSpecs are the contract's streams: the one place their settings live. Names come
// from events.Namespace.
func streamSpecs(l Layout) []jetstream.StreamConfig {
	ns := l.Namespace
	return []jetstream.StreamConfig{
		{
			Name:              ns.LoadStream(),
			Description:       "otelfleet load reports from collectors and routers",
			Subjects:          []string{ns.LoadSubjects()},
			Retention:         jetstream.LimitsPolicy,
			MaxAge:            15 * time.Minute,
			MaxMsgsPerSubject: 120,
			MaxBytes:          512 << 20,
			Discard:           jetstream.DiscardOld,
			Storage:           jetstream.FileStorage,
			Replicas:          l.Replicas,
		},
		{
			Name:        ns.EventsStream(),
			Description: "otelfleet lifecycle events",
			Subjects:    []string{ns.EventSubjects()},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      24 * time.Hour,
			MaxBytes:    256 << 20,
			Discard:     jetstream.DiscardOld,
			Storage:     jetstream.FileStorage,
			Replicas:    l.Replicas,
		},
	}
}

// bucketSpec is one KV bucket of the contract: its settings under a layout and the
// Buckets field that holds it.
type bucketSpec struct {
	config func(l Layout) jetstream.KeyValueConfig
	field  func(b *Buckets) *jetstream.KeyValue
}

// bucketSpecs are the contract's KV buckets: the one place their settings live (names
// come from events.Namespace). Adding a bucket is a row here and a field in Buckets;
// Provision, OpenBuckets and every service's platform.Contract pick it up.
var bucketSpecs = []bucketSpec{
	{
		config: func(l Layout) jetstream.KeyValueConfig {
			return jetstream.KeyValueConfig{Bucket: l.Namespace.ConfigBucket(), Description: "otelfleet global and regional configuration", History: ConfigHistory, Replicas: l.Replicas}
		},
		field: func(b *Buckets) *jetstream.KeyValue { return &b.Config },
	},
	{
		config: func(l Layout) jetstream.KeyValueConfig {
			return jetstream.KeyValueConfig{Bucket: l.Namespace.RegistryBucket(), Description: "otelfleet registrations", History: 1, TTL: l.RegistryTTL, LimitMarkerTTL: l.RegistryTTL, Replicas: l.Replicas}
		},
		field: func(b *Buckets) *jetstream.KeyValue { return &b.Registry },
	},
	{
		config: func(l Layout) jetstream.KeyValueConfig {
			return jetstream.KeyValueConfig{Bucket: l.Namespace.LeasesBucket(), Description: "otelfleet leader leases and locks", History: 1, TTL: l.LeaseTTL, LimitMarkerTTL: l.LeaseTTL, Replicas: l.Replicas}
		},
		field: func(b *Buckets) *jetstream.KeyValue { return &b.Leases },
	},
	{
		config: func(l Layout) jetstream.KeyValueConfig {
			return jetstream.KeyValueConfig{Bucket: l.Namespace.SamplingBucket(), Description: "otelfleet sampling decision", History: 10, Replicas: l.Replicas}
		},
		field: func(b *Buckets) *jetstream.KeyValue { return &b.Sampling },
	},
	{
		config: func(l Layout) jetstream.KeyValueConfig {
			return jetstream.KeyValueConfig{Bucket: l.Namespace.AgentsBucket(), Description: "otelfleet OpAMP agent states", History: 1, TTL: l.RegistryTTL, LimitMarkerTTL: l.RegistryTTL, Replicas: l.Replicas}
		},
		field: func(b *Buckets) *jetstream.KeyValue { return &b.Agents },
	},
	{
		config: func(l Layout) jetstream.KeyValueConfig {
			return jetstream.KeyValueConfig{Bucket: l.Namespace.RolloutsBucket(), Description: "otelfleet collector config rollouts and desired configs", History: 5, Replicas: l.Replicas}
		},
		field: func(b *Buckets) *jetstream.KeyValue { return &b.Rollouts },
	},
}

// Provision creates or updates the contract's streams and KV buckets. It is idempotent:
// running it again, from any number of processes, converges on the same configuration.
// Without Reconcile it looks every stream and bucket up first and creates only what is
// missing, so an identity that may not create or update streams works once they exist;
// with UseExisting it creates nothing.
func Provision(ctx context.Context, js jetstream.JetStream, l Layout) (*Buckets, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	for _, sc := range streamSpecs(l) {
		if !l.Reconcile || l.UseExisting {
			_, err := js.Stream(ctx, sc.Name)
			if err == nil {
				continue
			}
			if !errors.Is(err, jetstream.ErrStreamNotFound) {
				return nil, fmt.Errorf("provision stream %s: %w", sc.Name, err)
			}
			if l.UseExisting {
				return nil, fmt.Errorf("stream %s: %w", sc.Name, ErrNotProvisioned)
			}
		}
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return nil, fmt.Errorf("provision stream %s: %w", sc.Name, err)
		}
	}
	out := &Buckets{}
	for _, spec := range bucketSpecs {
		kc := spec.config(l)
		if !l.Reconcile || l.UseExisting {
			kv, err := js.KeyValue(ctx, kc.Bucket)
			if err == nil {
				if d, err := differences(ctx, kv, kc); err == nil {
					out.Differences = append(out.Differences, d...)
				}
				*spec.field(out) = kv
				continue
			}
			if !errors.Is(err, jetstream.ErrBucketNotFound) {
				return nil, fmt.Errorf("provision KV bucket %s: %w", kc.Bucket, err)
			}
			if l.UseExisting {
				return nil, fmt.Errorf("KV bucket %s: %w", kc.Bucket, ErrNotProvisioned)
			}
		}
		kv, err := js.CreateOrUpdateKeyValue(ctx, kc)
		if err != nil {
			return nil, fmt.Errorf("provision KV bucket %s: %w", kc.Bucket, err)
		}
		*spec.field(out) = kv
	}
	return out, nil
}

// differences describes how an existing bucket's settings differ from want.
func differences(ctx context.Context, kv jetstream.KeyValue, want jetstream.KeyValueConfig) ([]string, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	if st.TTL() != want.TTL {
		out = append(out, fmt.Sprintf("%s: TTL %v (this process was configured with %v)", want.Bucket, st.TTL(), want.TTL))
	}
	if st.History() != int64(max(want.History, 1)) {
		out = append(out, fmt.Sprintf("%s: history %d (this process was configured with %d)", want.Bucket, st.History(), want.History))
	}
	return out, nil
}

// OpenBuckets binds to the contract's buckets without creating or changing them (for the
// CLI, which must not resize what the services provisioned).
func OpenBuckets(ctx context.Context, js jetstream.JetStream, ns events.Namespace) (*Buckets, error) {
	l := DefaultLayout()
	l.Namespace = ns
	out := &Buckets{}
	for _, spec := range bucketSpecs {
		name := spec.config(l).Bucket
		kv, err := js.KeyValue(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("open KV bucket %s (is an otelfleet service running?): %w", name, err)
		}
		*spec.field(out) = kv
	}
	return out, nil
}

// IsConflict reports whether err is a KV compare-and-set failure: Create on a key that
// exists, Update on a revision that is no longer the last, or the stream's "wrong last
// sequence" error, which the KV API returns as it is (10071 on R1 streams, 10164 on
// replicated ones).
func IsConflict(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
