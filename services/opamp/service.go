package opampsvc

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/open-telemetry/opamp-go/protobufs"
	"github.com/open-telemetry/opamp-go/server"
	"github.com/open-telemetry/opamp-go/server/types"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
)

// Transports as stored in AgentState.Transport.
const (
	TransportWebSocket = "websocket"
	TransportHTTP      = "http"
)

// Deps are what the service talks to.
type Deps struct {
	// NC is the NATS connection: load reports are published on it and watches are
	// re-created after its reconnects.
	NC *nats.Conn
	// NS names subjects and keys; the zero value means events.Default.
	NS events.Namespace
	// Instance names this replica (AgentState.Replica, ce-source).
	Instance string
	// Region is the region of agents that do not name one (--region).
	Region string
	// Log may be nil (discard).
	Log *slog.Logger
	// Registerer receives the metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// Leader, if set, runs the leader's work (the rollout controller) for each term this
	// replica wins for role "opamp"; it must return once the term's context ends. Nil
	// leads without doing anything.
	Leader func(election.Term)
}

// Service is the OpAMP server of one replica. Create it with New, run it with Run.
type Service struct {
	cfg      Config
	nc       *nats.Conn
	ns       events.Namespace
	instance string
	region   string
	source   string
	log      *slog.Logger
	m        *metrics
	secret   []byte
	leader   func(election.Term)

	ready     chan struct{}
	readyOnce sync.Once

	// Set once by Run before ready closes.
	agentsKV, registryKV, rolloutsKV jetstream.KeyValue
	ttl                              time.Duration
	addr                             net.Addr

	mu      sync.Mutex
	agents  map[string]*agent      // uid -> agent held by this replica
	desired map[string]heldDesired // uid -> desired config (every agent)
	loads   map[string]*loadState  // uid -> own-metrics baseline

	conns *connLimiter // /v1/opamp connections (--opamp-max-connections)
}

// New returns the service; an invalid cfg fails with ErrConfig.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
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
	secret := []byte(cfg.MetricsSecret)
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	region := d.Region
	if region == "" {
		region = "local"
	}
	s := &Service{
		cfg: cfg, nc: d.NC, ns: ns, instance: d.Instance, region: region,
		source: events.Source(events.ServiceOpAMP, d.Instance), log: log,
		secret: secret, leader: d.Leader, ready: make(chan struct{}),
		agents: map[string]*agent{}, desired: map[string]heldDesired{}, loads: map[string]*loadState{},
		conns: newConnLimiter(cfg.MaxConnections),
	}
	s.m = newMetrics(d.Registerer, s.agentsByHealth)
	return s, nil
}

// agentsByHealth counts the agents this replica holds by the health of the registration
// last stored for each (agents not registered yet are not counted).
func (s *Service) agentsByHealth() map[events.HealthStatus]int {
	out := map[events.HealthStatus]int{events.HealthHealthy: 0, events.HealthDegraded: 0, events.HealthUnhealthy: 0}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.agents {
		if h, ok := a.storedHealth.Load().(events.HealthStatus); ok {
			out[h]++
		}
	}
	return out
}

// Ready is closed once the server listens and the desired configs are loaded.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Addr is the address the server listens on (nil before Ready).
func (s *Service) Addr() net.Addr {
	select {
	case <-s.ready:
		return s.addr
	default:
		return nil
	}
}

// Lead is the leader's work for one term: Deps.Leader, or waiting for the term to end.
func (s *Service) Lead(t election.Term) {
	if s.leader != nil {
		s.leader(t)
		return
	}
	<-t.Ctx.Done()
}

// Run serves /v1/opamp and /v1/metrics on cfg.Addr with the buckets of b until ctx ends.
// On return the listener is closed and every WebSocket connection is closed; the agents'
// keys are left to expire (the agents reconnect, to another replica if need be).
func (s *Service) Run(ctx context.Context, b *natsconn.Buckets) error {
	s.agentsKV, s.registryKV, s.rolloutsKV = b.Agents, b.Registry, b.Rollouts
	s.ttl = bucketTTL(ctx, b.Agents)
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("opamp: listen on %s (set --opamp-addr or OPAMP_ADDR): %w", s.cfg.Addr, err)
	}
	srv, err := s.httpServer()
	if err != nil {
		_ = ln.Close()
		return err
	}
	s.addr = ln.Addr()
	useTLS := srv.TLSConfig != nil
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		var err error
		if useTLS {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("opamp server stopped", "err", err)
		}
	}()
	loaded := make(chan struct{})
	go func() { defer wg.Done(); s.watchDesired(ctx, loaded) }()
	go func() { defer wg.Done(); s.sweep(ctx) }()
	select {
	case <-loaded:
		s.readyOnce.Do(func() { close(s.ready) })
		s.log.Info("opamp server listening", "addr", s.addr.String(), "ttl", s.ttl, "tls", useTLS)
	case <-ctx.Done():
	}
	<-ctx.Done()
	shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	defer s.conns.closeAll() // WebSockets that never sent a message hold no agent
	s.mu.Lock()
	held := make([]*agent, 0, len(s.agents))
	for _, a := range s.agents {
		held = append(held, a)
	}
	s.agents = map[string]*agent{}
	s.mu.Unlock()
	for _, a := range held {
		a.mu.Lock()
		a.gone = true
		if a.conn != nil {
			_ = a.conn.Disconnect()
		}
		a.mu.Unlock()
	}
	wg.Wait()
	s.m.held.Set(0)
	return nil
}

// bucketTTL reads the agents bucket's TTL (the registry TTL); 30s when unknown.
func bucketTTL(ctx context.Context, kv jetstream.KeyValue) time.Duration {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if st, err := kv.Status(ctx); err == nil && st.TTL() > 0 {
		return st.TTL()
	}
	return 30 * time.Second
}

// httpServer builds the HTTP server: the opamp-go server on /v1/opamp behind the
// connection bound and the message limit, own metrics on /v1/metrics.
func (s *Service) httpServer() (*http.Server, error) {
	opamp := server.New(nil)
	handler, connContext, err := opamp.Attach(server.Settings{Callbacks: types.Callbacks{OnConnecting: s.onConnecting}})
	if err != nil {
		return nil, fmt.Errorf("opamp: attach the OpAMP server: %w", err)
	}
	limit := int64(s.cfg.MaxMessageBytes)
	tooLarge := func() { s.m.refused.WithLabelValues("too_large").Inc() }
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/opamp", func(w http.ResponseWriter, r *http.Request) {
		if !s.conns.acquire() {
			s.m.refused.WithLabelValues("too_many_connections").Inc()
			w.Header().Set("Retry-After", "5")
			http.Error(w, fmt.Sprintf("this OpAMP server holds %d connections, its limit (--opamp-max-connections); retry later or on another replica", s.cfg.MaxConnections), http.StatusServiceUnavailable)
			return
		}
		// A WebSocket keeps the slot until its connection closes (limitedConn.Close).
		hw := &hijackWriter{ResponseWriter: smallBuffers{w}, lim: s.conns, maxBytes: limit, tooLarge: tooLarge}
		defer func() {
			if !hw.hijacked {
				s.conns.release()
			}
		}()
		if r.ContentLength > limit {
			tooLarge()
			http.Error(w, fmt.Sprintf("message of %d bytes, at most %d", r.ContentLength, limit), http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		if ok, over := readGzipBody(w, r, limit); !ok {
			if over {
				tooLarge()
			}
			return
		}
		handler(hw, r)
	})
	mux.HandleFunc(ownMetricsPath, s.handleOwnMetrics)
	srv := &http.Server{
		Handler: mux, ConnContext: connContext,
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("%w: --opamp-tls-cert/--opamp-tls-key: %w", ErrConfig, err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return srv, nil
}

// conn is what the service knows of one OpAMP connection (one WebSocket, or one plain
// HTTP request).
type conn struct {
	transport  string
	remote     string
	metricsURL string

	mu   sync.Mutex
	held map[*agent]struct{} // agents that spoke on this WebSocket (onClose looks only at these)
}

// onConnecting accepts every connection and gives it its own callbacks.
func (s *Service) onConnecting(r *http.Request) types.ConnectionResponse {
	c := &conn{transport: TransportWebSocket, remote: r.RemoteAddr, metricsURL: s.cfg.MetricsURL}
	if r.Header.Get("Content-Type") == "application/x-protobuf" {
		c.transport = TransportHTTP
	}
	if c.metricsURL == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		c.metricsURL = scheme + "://" + r.Host + ownMetricsPath
	}
	return types.ConnectionResponse{Accept: true, ConnectionCallbacks: types.ConnectionCallbacks{
		OnMessage: func(ctx context.Context, tc types.Connection, m *protobufs.AgentToServer) *protobufs.ServerToAgent {
			return s.onMessage(ctx, c, tc, m)
		},
		OnConnectionClose: func(tc types.Connection) { s.onClose(c, tc) },
		OnReadMessageError: func(_ types.Connection, _ int, b []byte, err error) {
			if errors.Is(err, errMessageTooLarge) {
				s.log.Warn("opamp WebSocket closed: message over the limit", "remote", c.remote, "err", err)
				return // counted by the connection as too_large
			}
			s.m.refused.WithLabelValues("undecodable").Inc()
			s.log.Warn("opamp message undecodable", "remote", c.remote, "bytes", len(b), "err", err)
		},
	}}
}

// serverCapabilities are announced in every reply.
const serverCapabilities = uint64(protobufs.ServerCapabilities_ServerCapabilities_AcceptsStatus |
	protobufs.ServerCapabilities_ServerCapabilities_OffersRemoteConfig |
	protobufs.ServerCapabilities_ServerCapabilities_AcceptsEffectiveConfig |
	protobufs.ServerCapabilities_ServerCapabilities_OffersConnectionSettings)

// refuse answers a refused message and counts it.
func (s *Service) refuse(c *conn, uid []byte, reason string, err error) *protobufs.ServerToAgent {
	s.m.refused.WithLabelValues(reason).Inc()
	s.log.Warn("opamp message refused", "remote", c.remote, "reason", reason, "err", err)
	return &protobufs.ServerToAgent{
		InstanceUid: uid, Capabilities: serverCapabilities,
		ErrorResponse: &protobufs.ServerErrorResponse{
			Type:         protobufs.ServerErrorResponseType_ServerErrorResponseType_BadRequest,
			ErrorMessage: truncate(err.Error(), maxText),
		},
	}
}

// onMessage handles one AgentToServer; it never panics on what an agent sends (a panic
// in the handling is recovered, logged and counted as a refusal).
func (s *Service) onMessage(ctx context.Context, c *conn, tc types.Connection, m *protobufs.AgentToServer) (reply *protobufs.ServerToAgent) {
	defer func() {
		if r := recover(); r != nil {
			reply = s.refuse(c, nil, "internal", fmt.Errorf("handling failed: %v", r))
		}
	}()
	if size := proto.Size(m); size > s.cfg.MaxMessageBytes {
		if tc != nil && c.transport == TransportWebSocket {
			defer func() { _ = tc.Disconnect() }()
		}
		return s.refuse(c, nil, "too_large", fmt.Errorf("%w: message of %d bytes, at most %d", ErrRefused, size, s.cfg.MaxMessageBytes))
	}
	uid, err := uidString(m.GetInstanceUid())
	if err != nil {
		return s.refuse(c, nil, "bad_uid", err)
	}
	s.m.messages.WithLabelValues(c.transport).Inc()
	now := time.Now()
	a := s.hold(uid, c, tc, now)
	a.mu.Lock()
	defer a.mu.Unlock()
	if m.GetAgentDisconnect() != nil {
		s.disconnected(ctx, a)
		return nil
	}
	reply = &protobufs.ServerToAgent{InstanceUid: m.GetInstanceUid(), Capabilities: serverCapabilities}
	if err := a.view.apply(m, c.remote, s.cfg.RegionAttribute, s.region, now); err != nil {
		return s.refuse(c, m.GetInstanceUid(), "invalid", err)
	}
	a.lastMsg = now
	if !a.view.described || (a.lastSeq != 0 && m.GetSequenceNum() != a.lastSeq+1) {
		// We hold no or a partial picture of this agent (new here, or messages lost):
		// agents send only what changed, so ask for everything.
		reply.Flags |= uint64(protobufs.ServerToAgentFlags_ServerToAgentFlags_ReportFullState)
	}
	if a.view.wantComponents {
		reply.Flags |= uint64(protobufs.ServerToAgentFlags_ServerToAgentFlags_ReportAvailableComponents)
	}
	a.lastSeq = m.GetSequenceNum()
	if a.view.described {
		if err := s.flush(ctx, a, now); err != nil {
			s.log.Warn("opamp agent state not written", "uid", uid, "err", err)
		}
	}
	if a.gone {
		return reply
	}
	if !a.offered && a.view.caps&uint64(protobufs.AgentCapabilities_AgentCapabilities_ReportsOwnMetrics) != 0 {
		reply.ConnectionSettings = &protobufs.ConnectionSettingsOffers{
			Hash: []byte(c.metricsURL),
			OwnMetrics: &protobufs.TelemetryConnectionSettings{
				DestinationEndpoint: c.metricsURL,
				Headers:             &protobufs.Headers{Headers: []*protobufs.Header{{Key: "Authorization", Value: "Bearer " + s.metricsToken(uid)}}},
			},
		}
		a.offered = true
	}
	reply.RemoteConfig = s.remoteConfigFor(a)
	return reply
}

// hold returns the agent uid held by this replica, creating it or moving it to
// connection tc.
func (s *Service) hold(uid string, c *conn, tc types.Connection, now time.Time) *agent {
	// Lock order: a.mu before s.mu, never s.mu then a.mu.
	s.mu.Lock()
	a, ok := s.agents[uid]
	if !ok {
		a = &agent{uid: uid, connectedAt: now}
		a.view.state.UID = uid
		s.agents[uid] = a
		s.m.held.Set(float64(len(s.agents)))
	}
	s.mu.Unlock()
	a.mu.Lock()
	if c.transport == TransportWebSocket {
		c.mu.Lock()
		if c.held == nil {
			c.held = map[*agent]struct{}{}
		}
		c.held[a] = struct{}{}
		c.mu.Unlock()
		if a.conn != tc {
			a.conn, a.offered, a.pushed = tc, false, ""
		}
	} else {
		a.conn = nil
	}
	a.transport = c.transport
	a.mu.Unlock()
	return a
}

// onClose forgets a WebSocket agent whose connection closed without a goodbye: its keys
// are no longer refreshed and expire within the TTL. A plain HTTP request closing says
// nothing about the agent. Only the agents that spoke on this connection are looked at.
func (s *Service) onClose(c *conn, tc types.Connection) {
	if c.transport != TransportWebSocket {
		return
	}
	c.mu.Lock()
	held := c.held
	c.held = nil
	c.mu.Unlock()
	for a := range held {
		a.mu.Lock()
		if a.conn != tc || a.gone {
			a.mu.Unlock()
			continue
		}
		a.gone = true
		s.mu.Lock()
		if s.agents[a.uid] == a {
			delete(s.agents, a.uid)
		}
		s.m.held.Set(float64(len(s.agents)))
		s.mu.Unlock()
		a.mu.Unlock()
		s.m.released.WithLabelValues("closed").Inc()
		s.log.Info("opamp agent connection closed; its registration expires unless it reconnects", "uid", a.uid)
	}
}

// release drops a held agent (silent, or taken over by another replica); a must be
// locked.
func (s *Service) release(a *agent, reason string) {
	a.gone = true
	s.mu.Lock()
	if s.agents[a.uid] == a {
		delete(s.agents, a.uid)
	}
	s.m.held.Set(float64(len(s.agents)))
	s.mu.Unlock()
	if a.conn != nil {
		_ = a.conn.Disconnect()
	}
	s.m.released.WithLabelValues(reason).Inc()
	s.log.Info("opamp agent released", "uid", a.uid, "reason", reason)
}

// sweep refreshes the held agents' keys every TTL/3 and releases agents silent for
// longer than the silence timeout.
func (s *Service) sweep(ctx context.Context) {
	tick := min(max(s.ttl/6, 50*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		held := make([]*agent, 0, len(s.agents))
		for _, a := range s.agents {
			held = append(held, a)
		}
		s.mu.Unlock()
		now := time.Now()
		for _, a := range held {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				a.mu.Lock()
				defer a.mu.Unlock()
				if a.gone {
					return
				}
				if now.Sub(a.lastMsg) > s.cfg.SilenceTimeout {
					s.release(a, "silent")
					return
				}
				if a.view.described {
					if err := s.flush(ctx, a, now); err != nil && ctx.Err() == nil {
						s.log.Warn("opamp agent refresh failed", "uid", a.uid, "err", err)
					}
				}
			}()
		}
	}
}
