package configsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// ErrConfig is wrapped by every Config validation error.
var ErrConfig = errors.New("invalid config service config")

// Config configures the config service.
type Config struct {
	// InitialFile is a YAML config file loaded on first start, when the bucket holds no
	// global config yet (flag --config, env CONFIG_FILE). Empty means built-in defaults
	// (the reference example in examples/global-config.yaml).
	InitialFile string
	// StatusWait is how long `status` gathers reports from instances (flag
	// --status-wait, env CONFIG_STATUS_WAIT).
	StatusWait time.Duration

	initial *fleetconfig.File // read by Load
}

// DefaultConfig returns the defaults: no initial file, 500ms status wait.
func DefaultConfig() Config { return Config{StatusWait: 500 * time.Millisecond} }

// Validate checks the config's values; it reads no file (Load does).
func (c Config) Validate() error {
	var errs []error
	if c.StatusWait <= 0 || c.StatusWait > 10*time.Second {
		errs = append(errs, fmt.Errorf("%w: --status-wait %v: must be in (0, 10s]", ErrConfig, c.StatusWait))
	}
	return errors.Join(errs...)
}

// Load reads and validates InitialFile, so a bad file is reported when the process
// starts (platform.Main and `otelfleet dev` exit 2 naming it) rather than on first
// store. Without Load, Init reads the file itself.
func (c *Config) Load() error {
	f, err := c.initialFile()
	if err != nil {
		return err
	}
	c.initial = &f
	return nil
}

func (c Config) initialFile() (fleetconfig.File, error) {
	if c.initial != nil {
		return *c.initial, nil
	}
	if c.InitialFile == "" {
		return fleetconfig.Defaults(), nil
	}
	data, err := os.ReadFile(c.InitialFile)
	if err != nil {
		return fleetconfig.File{}, fmt.Errorf("%w: --config: %w", ErrConfig, err)
	}
	f, err := fleetconfig.LoadFile(data)
	if err != nil {
		return fleetconfig.File{}, fmt.Errorf("%w: --config %s: %w", ErrConfig, c.InitialFile, err)
	}
	return f, nil
}

// Deps are what the service talks to.
type Deps struct {
	// Store holds the versioned documents (NewStore on the config bucket).
	Store *Store
	// NC publishes config.changed events and the status scatter/gather.
	NC *nats.Conn
	// NS names the subjects; the zero value means events.Default.
	NS events.Namespace
	// Instance names this replica in ce-source and in who stored the initial config.
	Instance string
	// Agents is the OpAMP agents bucket, read to check collector configs against the
	// components of the agents they select; nil skips that check (said in the reply).
	Agents jetstream.KeyValue
	// Log may be nil (discard).
	Log *slog.Logger
	// Registerer receives the metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// Tracer makes the spans of puts and rollbacks; nil: none.
	Tracer trace.Tracer
}

// Service implements the otlp.config.* endpoints on a Store.
type Service struct {
	cfg      Config
	store    *Store
	nc       *nats.Conn
	ns       events.Namespace
	source   string
	log      *slog.Logger
	m        *metrics
	agents   jetstream.KeyValue
	mu       sync.Mutex // serialises writes from this instance
	instance string
	tracer   trace.Tracer
}

// New returns the service; Init must run before it serves. An invalid cfg fails with
// ErrConfig.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(d.Registerer)
	if err != nil {
		return nil, err
	}
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ns := d.NS
	if ns == (events.Namespace{}) {
		ns = events.Default
	}
	tracer := d.Tracer
	if tracer == nil {
		tracer = noop.NewTracerProvider().Tracer("")
	}
	return &Service{cfg: cfg, store: d.Store, nc: d.NC, ns: ns, instance: d.Instance, agents: d.Agents,
		source: events.Source(events.ServiceConfig, d.Instance), log: log, m: m, tracer: tracer}, nil
}

// Init loads the initial file (or the defaults) into an empty bucket and announces it.
func (s *Service) Init(ctx context.Context) error {
	f, err := s.cfg.initialFile()
	if err != nil {
		return err
	}
	by := "otelfleet-config/" + s.instance + " (defaults)"
	if s.cfg.InitialFile != "" {
		by = "otelfleet-config/" + s.instance + " (" + s.cfg.InitialFile + ")"
	}
	changes, err := s.store.Init(ctx, f, by)
	for _, c := range changes {
		s.log.Info("initial config stored", "key", c.Key, "version", c.NewVersion, "by", c.By)
		s.announce(ctx, c, "init", 0)
	}
	return err
}

// announce publishes config.changed for an accepted change; a publish failure is logged,
// never fails the write that already happened.
func (s *Service) announce(ctx context.Context, c Change, action string, rolledBackTo uint64) {
	s.m.changes.WithLabelValues(action).Inc()
	changeEvent(ctx, c, action)
	ev := events.ConfigChanged{V: events.ConfigChangedVersion, Key: c.Key, OldVersion: c.OldVersion,
		NewVersion: c.NewVersion, Changed: c.Changed, Action: action, By: c.By, RolledBackTo: rolledBackTo, At: time.Now().UTC()}
	if ev.Changed == nil {
		ev.Changed = []string{}
	}
	msg, err := events.NewMsg(s.ns.EventSubject(events.EventConfigChanged), s.source, ev)
	if err == nil {
		platform.InjectTrace(ctx, msg.Header)
		err = s.nc.PublishMsg(msg)
	}
	if err != nil {
		s.log.Error("publishing config.changed failed", "key", c.Key, "version", c.NewVersion, "err", err)
	}
}

// GetReply is the reply of otlp.config.get.
type GetReply struct {
	Global  fleetconfig.Global            `json:"global"`
	Regions map[string]fleetconfig.Region `json:"regions,omitempty"`
	// Warnings describe stored values that are invalid and therefore not in force.
	Warnings []string `json:"warnings,omitempty"`
}

// Get returns the config in force: for every key the newest valid version.
func (s *Service) Get(ctx context.Context) (GetReply, error) {
	g, warn, err := s.store.Global(ctx)
	if err != nil {
		return GetReply{}, err
	}
	regions, rwarns, err := s.store.Regions(ctx)
	if err != nil {
		return GetReply{}, err
	}
	rep := GetReply{Global: g, Regions: regions}
	if warn != nil {
		rwarns = append([]HistoryEntry{*warn}, rwarns...)
	}
	for _, w := range rwarns {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("revision %d is invalid and not in force: %s", w.Revision, w.Error))
	}
	return rep, nil
}

// PutRequest is the body of otlp.config.put: a config file's content (YAML or JSON
// text in File, or Global/Regions already decoded), who writes it, and optionally the
// version the writer expects to replace.
type PutRequest struct {
	// File is the YAML (or JSON) text of a config file.
	File string `json:"file,omitempty"`
	// By names the writer (user@host, tool name).
	By string `json:"by"`
	// IfVersion, when set, makes the write fail with a conflict unless the stored global
	// version equals it.
	IfVersion *uint64 `json:"if_version,omitempty"`
}

// PutReply lists the accepted changes.
type PutReply struct {
	Changes []Change `json:"changes"`
}

// ValidateReply is the reply of otlp.config.validate and the body of a refused put.
type ValidateReply struct {
	Valid    bool                  `json:"valid"`
	Problems []fleetconfig.Problem `json:"problems,omitempty"`
	Error    string                `json:"error,omitempty"`
}

func validationReply(err error) ValidateReply {
	if err == nil {
		return ValidateReply{Valid: true}
	}
	var ve *fleetconfig.ValidationError
	if errors.As(err, &ve) {
		return ValidateReply{Problems: ve.Problems, Error: err.Error()}
	}
	return ValidateReply{Error: err.Error()}
}

// Put validates the whole file first and writes nothing unless every part is valid; then
// it writes the global config and each region, each by compare-and-set.
func (s *Service) Put(ctx context.Context, req PutRequest) (PutReply, error) {
	f, err := fleetconfig.LoadFile([]byte(req.File))
	if err != nil {
		return PutReply{}, refusal(err)
	}
	by := req.By
	if by == "" {
		by = "unknown"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var rep PutReply
	c, err := s.store.PutGlobal(ctx, f.Global, by, req.IfVersion)
	if err != nil {
		return rep, s.storeError(err)
	}
	rep.Changes = append(rep.Changes, c)
	if !c.Unchanged {
		s.announce(ctx, c, "put", 0)
	}
	names := make([]string, 0, len(f.Regions))
	for name := range f.Regions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c, err := s.store.PutRegion(ctx, name, f.Regions[name], by, nil)
		if err != nil {
			return rep, s.storeError(err)
		}
		rep.Changes = append(rep.Changes, c)
		if !c.Unchanged {
			s.announce(ctx, c, "put", 0)
		}
	}
	return rep, nil
}

// RollbackRequest is the body of otlp.config.rollback.
type RollbackRequest struct {
	Key string `json:"key"`
	To  uint64 `json:"to"`
	By  string `json:"by"`
}

// Rollback restores a kept version as the key's next version.
func (s *Service) Rollback(ctx context.Context, req RollbackRequest) (Change, error) {
	if req.Key == "" {
		req.Key = events.GlobalConfigKey
	}
	if req.To == 0 {
		return Change{}, microapi.Errorf(microapi.CodeBadRequest, "rollback: \"to\" must name a version ≥ 1")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.store.Rollback(ctx, req.Key, req.To, fmt.Sprintf("%s (rollback to %d)", req.By, req.To))
	if err != nil {
		return Change{}, s.storeError(err)
	}
	if !c.Unchanged {
		s.announce(ctx, c, "rollback", req.To)
	}
	return c, nil
}

// HistoryRequest is the body of otlp.config.history.
type HistoryRequest struct {
	Key string `json:"key"`
}

// StatusReply is the reply of otlp.config.status: the stored versions and what each
// instance has applied.
type StatusReply struct {
	GlobalVersion uint64                `json:"global_version"`
	Instances     []events.ConfigReport `json:"instances"`
}

// InSync reports whether instance r runs the stored global version. An instance on the
// built-in defaults (version 0: it found no valid stored value) is never in sync, not
// even when the store has no valid version either: it runs a config nobody stored.
func (rep StatusReply) InSync(r events.ConfigReport) bool {
	return r.GlobalVersion != 0 && r.GlobalVersion == rep.GlobalVersion
}

// Status gathers the config reports of every watching instance for StatusWait.
func (s *Service) Status(ctx context.Context) (StatusReply, error) {
	g, _, err := s.store.Global(ctx)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return StatusReply{}, err
	}
	rep := StatusReply{GlobalVersion: g.Version, Instances: []events.ConfigReport{}}
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return rep, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.nc.PublishRequest(s.ns.ConfigReportSubject(), inbox, nil); err != nil {
		return rep, err
	}
	deadline := time.Now().Add(s.cfg.StatusWait)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		var r events.ConfigReport
		if err := events.Decode(m.Data, &r); err != nil {
			s.log.Warn("ignoring a malformed config report", "err", err)
			continue
		}
		rep.Instances = append(rep.Instances, r)
	}
	sort.Slice(rep.Instances, func(i, j int) bool {
		a, b := rep.Instances[i], rep.Instances[j]
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Instance < b.Instance
	})
	return rep, nil
}

// refusal turns a decode or validation error into a 400 carrying every problem.
func refusal(err error) error {
	body, _ := jsonMarshal(validationReply(err))
	return &microapi.Error{Code: microapi.CodeBadRequest, Message: err.Error(), Body: body}
}

func (s *Service) storeError(err error) error {
	switch {
	case errors.Is(err, fleetconfig.ErrInvalid), errors.Is(err, fleetconfig.ErrDecode):
		return refusal(err)
	case errors.Is(err, ErrConflict):
		s.m.conflicts.Inc()
		return &microapi.Error{Code: microapi.CodeConflict, Message: err.Error()}
	case errors.Is(err, ErrNotFound):
		return &microapi.Error{Code: microapi.CodeNotFound, Message: err.Error()}
	default:
		return err
	}
}

// Endpoints returns the micro endpoints of the service.
func (s *Service) Endpoints() []endpoint {
	return append([]endpoint{
		{"get", "the config in force (global and regions), with warnings for invalid stored values", func(ctx context.Context, req micro.Request) (any, error) {
			return s.Get(ctx)
		}},
		{"put", "validate and store a config file (YAML or JSON) by compare-and-set", s.traced("otlp.config.put", func(ctx context.Context, req micro.Request) (any, error) {
			var in PutRequest
			if err := microapi.DecodeRequest(req, &in); err != nil {
				return nil, err
			}
			return s.Put(ctx, in)
		})},
		{"validate", "validate a config file without storing it", func(ctx context.Context, req micro.Request) (any, error) {
			var in PutRequest
			if err := microapi.DecodeRequest(req, &in); err != nil {
				return nil, err
			}
			_, err := fleetconfig.LoadFile([]byte(in.File))
			return validationReply(err), nil
		}},
		{"history", "the kept versions of a key (global or region.<r>)", func(ctx context.Context, req micro.Request) (any, error) {
			var in HistoryRequest
			if err := microapi.DecodeRequest(req, &in); err != nil {
				return nil, err
			}
			if in.Key == "" {
				in.Key = events.GlobalConfigKey
			}
			h, err := s.store.History(ctx, in.Key)
			if err != nil {
				return nil, s.storeError(err)
			}
			return h, nil
		}},
		{"rollback", "store a kept version again as the newest", s.traced("otlp.config.rollback", func(ctx context.Context, req micro.Request) (any, error) {
			var in RollbackRequest
			if err := microapi.DecodeRequest(req, &in); err != nil {
				return nil, err
			}
			return s.Rollback(ctx, in)
		})},
		{"status", "the config version each instance has applied", func(ctx context.Context, req micro.Request) (any, error) {
			return s.Status(ctx)
		}},
	}, s.collectorEndpoints()...)
}

type endpoint struct {
	op, description string
	handler         microapi.HandlerFunc
}
