package opampsvc

import (
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/promscrape"
)

// ownMetricsPath is where agents post their own metrics (OTLP/HTTP).
const ownMetricsPath = "/v1/metrics"

// CPUCountAttribute is the agent description attribute giving the number of CPUs of the
// collector's host; with it the load report's CPU is the process's share of the host,
// without it the load report carries no CPU reading (0).
const CPUCountAttribute = "host.cpu.count"

// maxLoadStates bounds the own-metrics baselines kept for agents held elsewhere.
const maxLoadStates = 100_000

// ErrOwnMetrics is wrapped by every refusal of an own-metrics post.
var ErrOwnMetrics = errors.New("own metrics refused")

// loadState is the previous own-metrics sample of one agent.
type loadState struct {
	prev   promscrape.Sample
	primed bool
	// state is the agent's state read from the agents bucket at stateAt, for an agent
	// held by another replica (zero stateAt: none read).
	state   events.AgentState
	stateAt time.Time
}

// metricsToken is the bearer token offered to agent uid: uid.hmac(secret, uid).
func (s *Service) metricsToken(uid string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(uid))
	return uid + "." + hex.EncodeToString(m.Sum(nil))
}

// tokenUID checks a bearer token and returns its uid.
func (s *Service) tokenUID(auth string) (string, bool) {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || len(tok) > 200 {
		return "", false
	}
	uid, _, ok := strings.Cut(tok, ".")
	if !ok || len(uid) != 32 {
		return "", false
	}
	return uid, hmac.Equal([]byte(tok), []byte(s.metricsToken(uid)))
}

// handleOwnMetrics takes an OTLP/HTTP metrics export from an agent and turns it into the
// agent's load report.
func (s *Service) handleOwnMetrics(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, reason string, err error) {
		s.m.ownMetrics.WithLabelValues(reason).Inc()
		s.log.Debug("own metrics refused", "remote", r.RemoteAddr, "reason", reason, "err", err)
		http.Error(w, err.Error(), code)
	}
	if r.Method != http.MethodPost {
		fail(http.StatusMethodNotAllowed, "method", fmt.Errorf("%w: %s: want POST", ErrOwnMetrics, r.Method))
		return
	}
	uid, ok := s.tokenUID(r.Header.Get("Authorization"))
	if !ok {
		fail(http.StatusUnauthorized, "unauthorized", fmt.Errorf("%w: Authorization: not a token this server offered", ErrOwnMetrics))
		return
	}
	md, err := s.readMetrics(w, r)
	if err != nil {
		fail(http.StatusBadRequest, "invalid", err)
		return
	}
	if err := s.ownMetrics(r.Context(), uid, md, time.Now()); err != nil {
		switch {
		case errors.Is(err, errUnknownAgent), errors.Is(err, errBadAgentState):
			// Its state may not be stored yet (it just connected): the agent retries.
			fail(http.StatusServiceUnavailable, "unknown_agent", err)
		case errors.Is(err, ErrOwnMetrics):
			fail(http.StatusBadRequest, "invalid", err)
		default: // the agents bucket or NATS failed
			fail(http.StatusServiceUnavailable, "unavailable", err)
		}
		return
	}
	s.m.ownMetrics.WithLabelValues("accepted").Inc()
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// readMetrics reads the bounded, possibly gzipped body as OTLP protobuf or JSON.
func (s *Service) readMetrics(w http.ResponseWriter, r *http.Request) (*metricspb.MetricsData, error) {
	limit := int64(s.cfg.MaxMessageBytes)
	var body io.Reader = http.MaxBytesReader(w, r.Body, limit)
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip body: %w", ErrOwnMetrics, err)
		}
		defer gz.Close()
		body = gz
	}
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: body: %w", ErrOwnMetrics, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: body over %d bytes", ErrOwnMetrics, limit)
	}
	return decodeMetrics(r.Header.Get("Content-Type"), data)
}

// decodeMetrics decodes an ExportMetricsServiceRequest (wire-identical to MetricsData).
func decodeMetrics(contentType string, data []byte) (*metricspb.MetricsData, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	md := &metricspb.MetricsData{}
	var err error
	switch mt {
	case "application/x-protobuf", "application/protobuf", "":
		err = proto.Unmarshal(data, md)
	case "application/json":
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, md)
	default:
		return nil, fmt.Errorf("%w: Content-Type %q: want application/x-protobuf or application/json", ErrOwnMetrics, contentType)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s body: %w", ErrOwnMetrics, mt, err)
	}
	return md, nil
}

// sampleOf sums the collector metrics of md: cumulative series into cur, delta sums
// into delta.
func sampleOf(md *metricspb.MetricsData) (cur, delta promscrape.Sample) {
	for _, rm := range md.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				var dps []*metricspb.NumberDataPoint
				into := &cur
				switch {
				case m.GetSum() != nil:
					dps = m.GetSum().GetDataPoints()
					if m.GetSum().GetAggregationTemporality() == metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA {
						into = &delta
					}
				case m.GetGauge() != nil:
					dps = m.GetGauge().GetDataPoints()
				default:
					continue
				}
				for _, dp := range dps {
					v := dp.GetAsDouble()
					if _, ok := dp.GetValue().(*metricspb.NumberDataPoint_AsInt); ok {
						v = float64(dp.GetAsInt())
					}
					if !into.AddSeries(m.GetName(), v) {
						break
					}
				}
			}
		}
	}
	return cur, delta
}

// ownMetrics turns one export into a load report of agent uid (held here, or found in
// the agents bucket) and publishes it once a baseline exists.
func (s *Service) ownMetrics(ctx context.Context, uid string, md *metricspb.MetricsData, now time.Time) error {
	cur, delta := sampleOf(md)
	if cur.Found|delta.Found == 0 {
		return nil // nothing we read
	}
	cur.At = now
	st, held, err := s.agentIdentity(ctx, uid, now)
	if err != nil {
		return err
	}
	s.mu.Lock()
	ls := s.loadStateLocked(uid)
	prev, primed := ls.prev, ls.primed
	// Delta sums add to the running totals.
	cur.AcceptedSpans += delta.AcceptedSpans
	cur.RefusedSpans += delta.RefusedSpans
	cur.CPUSeconds += delta.CPUSeconds
	if primed {
		if delta.Found.Has(promscrape.FoundAccepted) {
			cur.AcceptedSpans += prev.AcceptedSpans
		}
		if delta.Found.Has(promscrape.FoundRefused) {
			cur.RefusedSpans += prev.RefusedSpans
		}
		if delta.Found.Has(promscrape.FoundCPU) {
			cur.CPUSeconds += prev.CPUSeconds
		}
	}
	cur.Found |= delta.Found
	ls.prev, ls.primed = cur, true
	s.mu.Unlock()
	if !primed || !now.After(prev.At) {
		return nil
	}
	numCPU := 0
	if v, ok := attrOf(st, CPUCountAttribute); ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 && n <= 1<<16 {
			numCPU = n
		}
	}
	cfg := promscrape.SourceConfig{Capacity: s.cfg.Capacity, NumCPU: max(numCPU, 1)}
	rep := promscrape.Load(prev, cur, cfg)
	if numCPU == 0 {
		rep.CPU = 0
	}
	rep.Region, rep.Collector = st.Region, st.ID
	rep.Healthy = rep.Healthy && (st.Health.Healthy || !slices.Contains(st.Capabilities, "ReportsHealth"))
	if held != nil {
		held.mu.Lock()
		held.rss = rep.Memory
		held.processCPU = rep.CPU
		held.mu.Unlock()
	}
	msg, err := loadreport.NewMsg(s.ns, s.source, rep)
	if err != nil {
		return fmt.Errorf("%w: load report of %s: %w", ErrOwnMetrics, uid, err)
	}
	if err := s.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("publish the load report of %s: %w", uid, err)
	}
	s.m.loadReports.Inc()
	return nil
}

// loadStateLocked returns the own-metrics state of uid, creating it (and dropping
// another one when maxLoadStates are kept). s.mu must be held.
func (s *Service) loadStateLocked(uid string) *loadState {
	ls := s.loads[uid]
	if ls == nil {
		if len(s.loads) >= maxLoadStates {
			for k := range s.loads {
				delete(s.loads, k)
				break
			}
		}
		ls = &loadState{}
		s.loads[uid] = ls
	}
	return ls
}

// agentIdentity returns the state of agent uid: from memory when held here, else from
// the agents bucket, read at most once per TTL/3 per agent (the state is kept with the
// agent's own-metrics baseline, bounded by maxLoadStates).
func (s *Service) agentIdentity(ctx context.Context, uid string, now time.Time) (events.AgentState, *agent, error) {
	s.mu.Lock()
	a := s.agents[uid]
	var cached *events.AgentState
	if ls := s.loads[uid]; ls != nil && ls.stateAt.After(now.Add(-s.ttl/3)) && !ls.stateAt.After(now) {
		st := ls.state
		cached = &st
	}
	s.mu.Unlock()
	if a != nil {
		a.mu.Lock()
		st, ok := a.view.state, a.view.described
		a.mu.Unlock()
		if ok {
			return st, a, nil
		}
	}
	if cached != nil {
		return *cached, nil, nil
	}
	st, err := s.readAgentState(ctx, uid)
	if err != nil {
		return events.AgentState{}, nil, err
	}
	s.mu.Lock()
	ls := s.loadStateLocked(uid)
	ls.state, ls.stateAt = st, now
	s.mu.Unlock()
	return st, nil, nil
}

// Errors of readAgentState besides a failed read of the bucket.
var (
	// errUnknownAgent: no replica stores a state of the agent.
	errUnknownAgent = errors.New("unknown agent")
	// errBadAgentState: the stored state does not decode or names another agent.
	errBadAgentState = errors.New("stored agent state unusable")
)

// readAgentState reads agent.<uid> from the agents bucket. It says what failed: a uid
// that is no key, an agent no replica holds (errUnknownAgent), a value that is no state
// of it (errBadAgentState), or the read itself (the bucket's error).
func (s *Service) readAgentState(ctx context.Context, uid string) (events.AgentState, error) {
	key, err := events.AgentKey(uid)
	if err != nil {
		return events.AgentState{}, fmt.Errorf("%w: uid: %w", ErrOwnMetrics, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	e, err := s.agentsKV.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return events.AgentState{}, fmt.Errorf("%w: agent %s is not connected to any replica (no %s in the agents bucket)", errUnknownAgent, uid, key)
	case err != nil:
		return events.AgentState{}, fmt.Errorf("read %s from the agents bucket: %w", key, err)
	}
	var st events.AgentState
	if err := events.Decode(e.Value(), &st); err != nil {
		return events.AgentState{}, fmt.Errorf("%w: %s: %v", errBadAgentState, key, err)
	}
	if st.UID != uid {
		return events.AgentState{}, fmt.Errorf("%w: %s holds the state of agent %q", errBadAgentState, key, st.UID)
	}
	return st, nil
}

// attrOf looks name up in a stored state's attributes.
func attrOf(st events.AgentState, name string) (string, bool) {
	if v, ok := st.Identifying[name]; ok {
		return v, true
	}
	v, ok := st.NonIdentifying[name]
	return v, ok
}
