// Package l4proxy is a small TCP forwarder that publishes one port in front of every
// replica of a scaled service (`otelfleet proxy`): it re-resolves the target's DNS name
// (Docker's embedded DNS answers a service name with every replica's address), spreads new
// connections over the addresses round-robin, skips an address whose dial failed for a
// quarantine period, and cuts the connections to an address as soon as it leaves the DNS
// answer, so clients reconnect to a live replica at once.
//
// It forwards bytes and nothing else: a gRPC or HTTP client keeps its connection to one
// replica until that connection ends, and then gets another replica on its next dial.
package l4proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid proxy config")

// ErrNoBackend is returned by Dial when no address of the target takes a connection.
var ErrNoBackend = errors.New("no backend")

// Forward is one published port: connections to Listen go to Target.
type Forward struct {
	// Listen is the listen address (":4317").
	Listen string
	// Target is host:port; the host is re-resolved every Config.Resolve.
	Target string
}

// ParseForwards reads "LISTEN=TARGET[,LISTEN=TARGET...]" (":4317=router:4317").
func ParseForwards(s string) ([]Forward, error) {
	var out []Forward
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		l, t, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%w: forward %q: want LISTEN=HOST:PORT", ErrConfig, part)
		}
		f := Forward{Listen: strings.TrimSpace(l), Target: strings.TrimSpace(t)}
		if _, _, err := net.SplitHostPort(f.Listen); err != nil {
			return nil, fmt.Errorf("%w: forward %q: listen address: %v", ErrConfig, part, err)
		}
		if h, p, err := net.SplitHostPort(f.Target); err != nil || h == "" || p == "" {
			return nil, fmt.Errorf("%w: forward %q: target must be HOST:PORT", ErrConfig, part)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: forward: none given (want LISTEN=HOST:PORT)", ErrConfig)
	}
	return out, nil
}

// Config configures a Proxy.
type Config struct {
	// Forwards are the published ports (flag --forward, env PROXY_FORWARD).
	Forwards []Forward
	// Resolve is how often each target's name is resolved again (flag --resolve-interval,
	// env PROXY_RESOLVE_INTERVAL; default 1s). A replica that stops is out of the answer
	// within about one interval plus the DNS server's own delay.
	Resolve time.Duration
	// DialTimeout bounds one dial to a backend (flag --dial-timeout, env
	// PROXY_DIAL_TIMEOUT; default 1s); on a timeout the next address is tried.
	DialTimeout time.Duration
	// Quarantine is how long an address whose dial failed is skipped (flag --quarantine,
	// env PROXY_QUARANTINE; default 5s), unless every address is quarantined.
	Quarantine time.Duration
	// MaxConnections bounds the connections forwarded at once over every Forward (flag
	// --max-connections, env PROXY_MAX_CONNECTIONS; default 10,000): each holds two
	// sockets and two goroutines. A connection over it is closed at once and counted in
	// otelfleet_proxy_refused_total{reason="too_many_connections"}.
	MaxConnections int
	// Lookup resolves a host to addresses; nil means net.DefaultResolver.LookupHost.
	Lookup func(ctx context.Context, host string) ([]string, error)
}

// DefaultConfig returns a 1s resolve interval, a 1s dial timeout, a 5s quarantine and
// 10,000 connections.
func DefaultConfig() Config {
	return Config{Resolve: time.Second, DialTimeout: time.Second, Quarantine: 5 * time.Second, MaxConnections: 10000}
}

// Validate reports every invalid field, naming its flag.
func (c Config) Validate() error {
	var errs []error
	if len(c.Forwards) == 0 {
		errs = append(errs, fmt.Errorf("%w: --forward: none given", ErrConfig))
	}
	if c.Resolve < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("%w: --resolve-interval %v: must be at least 10ms", ErrConfig, c.Resolve))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("%w: --dial-timeout %v: must be > 0", ErrConfig, c.DialTimeout))
	}
	if c.Quarantine < 0 {
		errs = append(errs, fmt.Errorf("%w: --quarantine %v: must be ≥ 0", ErrConfig, c.Quarantine))
	}
	if c.MaxConnections < 1 {
		errs = append(errs, fmt.Errorf("%w: --max-connections %d: must be ≥ 1", ErrConfig, c.MaxConnections))
	}
	return errors.Join(errs...)
}

// Proxy forwards every Forward of its Config. Start it once, Stop it once.
type Proxy struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	ports []*port
	open  atomic.Int64 // connections being forwarded, over every port

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// New builds a proxy; nothing listens before Start. reg may be nil.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Lookup == nil {
		cfg.Lookup = net.DefaultResolver.LookupHost
	}
	p := &Proxy{cfg: cfg, log: log, m: newMetrics(reg), stop: make(chan struct{})}
	for _, f := range cfg.Forwards {
		host, prt, _ := net.SplitHostPort(f.Target)
		p.ports = append(p.ports, &port{p: p, f: f, host: host, port: prt, conns: map[string]map[*pipe]struct{}{}, bad: map[string]time.Time{}})
	}
	return p, nil
}

// Start resolves every target once (an empty answer is not an error: replicas may not be
// up yet), listens on every Forward and starts accepting. On an error nothing is left
// listening.
func (p *Proxy) Start() error {
	for _, pt := range p.ports {
		ln, err := net.Listen("tcp", pt.f.Listen)
		if err != nil {
			p.closeListeners()
			return fmt.Errorf("proxy: listen on %s: %w", pt.f.Listen, err)
		}
		pt.ln = ln
	}
	for _, pt := range p.ports {
		pt.resolve()
		p.log.Info("proxy listening", "listen", pt.ln.Addr().String(), "target", pt.f.Target, "backends", pt.backends())
		p.wg.Add(2)
		go pt.accept()
		go pt.resolveLoop()
	}
	return nil
}

func (p *Proxy) closeListeners() {
	for _, pt := range p.ports {
		if pt.ln != nil {
			_ = pt.ln.Close()
		}
	}
}

// Stop closes the listeners and every forwarded connection and waits for the proxy's
// goroutines. It is safe to call more than once and before Start.
func (p *Proxy) Stop() {
	p.once.Do(func() {
		close(p.stop)
		p.closeListeners()
		for _, pt := range p.ports {
			pt.closeAll()
		}
	})
	p.wg.Wait()
}

// Addrs returns the listen address of each Forward, in order (once started).
func (p *Proxy) Addrs() []net.Addr {
	out := make([]net.Addr, len(p.ports))
	for i, pt := range p.ports {
		if pt.ln != nil {
			out[i] = pt.ln.Addr()
		}
	}
	return out
}

// Backends returns the addresses each Forward currently spreads over, in order.
func (p *Proxy) Backends() [][]string {
	out := make([][]string, len(p.ports))
	for i, pt := range p.ports {
		out[i] = pt.backends()
	}
	return out
}

// Ready reports whether every Forward has at least one backend address.
func (p *Proxy) Ready() error {
	for _, pt := range p.ports {
		if len(pt.backends()) == 0 {
			return fmt.Errorf("%w: %s resolves to no address", ErrNoBackend, pt.f.Target)
		}
	}
	return nil
}

// port is one Forward: its listener, its resolved backends and its live connections.
type port struct {
	p          *Proxy
	f          Forward
	host, port string
	ln         net.Listener

	mu    sync.Mutex
	addrs []string                      // host:port, sorted
	next  int                           // round-robin cursor
	bad   map[string]time.Time          // quarantined until
	conns map[string]map[*pipe]struct{} // live connections per backend
}

func (pt *port) backends() []string {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return slices.Clone(pt.addrs)
}

func (pt *port) resolveLoop() {
	defer pt.p.wg.Done()
	t := time.NewTicker(pt.p.cfg.Resolve)
	defer t.Stop()
	for {
		select {
		case <-pt.p.stop:
			return
		case <-t.C:
			pt.resolve()
		}
	}
}

// resolve replaces the address set with the DNS answer, forgets the quarantine of every
// address that left it (so replica churn cannot grow the table) and cuts its
// connections. A failed lookup keeps the set as it was, except that "no such host"
// (every replica gone) empties it.
func (pt *port) resolve() {
	ctx, cancel := context.WithTimeout(context.Background(), pt.p.cfg.Resolve+pt.p.cfg.DialTimeout)
	defer cancel()
	ips, err := pt.p.cfg.Lookup(ctx, pt.host)
	var dnsErr *net.DNSError
	if err != nil && !(errors.As(err, &dnsErr) && dnsErr.IsNotFound) {
		pt.p.log.Warn("proxy: resolve failed; keeping the last answer", "target", pt.f.Target, "err", err)
		return
	}
	addrs := make([]string, 0, len(ips))
	for _, ip := range ips {
		addrs = append(addrs, net.JoinHostPort(ip, pt.port))
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)

	pt.mu.Lock()
	old := pt.addrs
	pt.addrs = addrs
	for a := range pt.bad { // an address that left the answer needs no quarantine
		if !slices.Contains(addrs, a) {
			delete(pt.bad, a)
		}
	}
	var cut []*pipe
	for a, set := range pt.conns {
		if !slices.Contains(addrs, a) {
			for c := range set {
				cut = append(cut, c)
			}
		}
	}
	pt.mu.Unlock()
	pt.p.m.backends.WithLabelValues(pt.f.Listen).Set(float64(len(addrs)))
	if !slices.Equal(old, addrs) {
		pt.p.log.Info("proxy: backends changed", "target", pt.f.Target, "backends", addrs, "cut", len(cut))
	}
	for _, c := range cut {
		c.close()
	}
}

// order returns the addresses to try for one new connection: round-robin from the cursor,
// quarantined ones last.
func (pt *port) order() []string {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	n := len(pt.addrs)
	if n == 0 {
		return nil
	}
	start := pt.next % n
	pt.next++
	now := time.Now()
	good := make([]string, 0, n)
	var later []string
	for i := range n {
		a := pt.addrs[(start+i)%n]
		if until, ok := pt.bad[a]; ok && now.Before(until) {
			later = append(later, a)
			continue
		}
		delete(pt.bad, a)
		good = append(good, a)
	}
	return append(good, later...)
}

// dial connects to the first address of order() that answers, quarantining the ones that
// do not.
func (pt *port) dial() (net.Conn, string, error) {
	addrs := pt.order()
	if len(addrs) == 0 {
		return nil, "", fmt.Errorf("%w: %s resolves to no address", ErrNoBackend, pt.f.Target)
	}
	var errs []error
	for _, a := range addrs {
		c, err := net.DialTimeout("tcp", a, pt.p.cfg.DialTimeout)
		if err == nil {
			return c, a, nil
		}
		errs = append(errs, err)
		pt.p.m.dialFailures.WithLabelValues(pt.f.Listen).Inc()
		pt.mu.Lock()
		pt.bad[a] = time.Now().Add(pt.p.cfg.Quarantine)
		pt.mu.Unlock()
	}
	return nil, "", fmt.Errorf("%w: %s: %w", ErrNoBackend, pt.f.Target, errors.Join(errs...))
}

func (pt *port) accept() {
	defer pt.p.wg.Done()
	for {
		c, err := pt.ln.Accept()
		if err != nil {
			select {
			case <-pt.p.stop:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			pt.p.log.Warn("proxy: accept failed", "listen", pt.f.Listen, "err", err)
			select {
			case <-pt.p.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if pt.p.open.Add(1) > int64(pt.p.cfg.MaxConnections) {
			pt.p.open.Add(-1)
			pt.p.m.refused.WithLabelValues(pt.f.Listen, "too_many_connections").Inc()
			pt.p.log.Debug("proxy: connection refused: --max-connections reached", "listen", pt.f.Listen, "client", c.RemoteAddr().String(), "max", pt.p.cfg.MaxConnections)
			_ = c.Close()
			continue
		}
		pt.p.wg.Add(1)
		go pt.serve(c)
	}
}

// serve forwards one client connection until either side ends.
func (pt *port) serve(client net.Conn) {
	defer pt.p.wg.Done()
	defer pt.p.open.Add(-1)
	back, addr, err := pt.dial()
	if err != nil {
		pt.p.m.refused.WithLabelValues(pt.f.Listen, "no_backend").Inc()
		pt.p.log.Warn("proxy: connection refused", "listen", pt.f.Listen, "client", client.RemoteAddr().String(), "err", err)
		_ = client.Close()
		return
	}
	c := &pipe{client: client, back: back}
	pt.mu.Lock()
	select {
	case <-pt.p.stop: // Stop ran closeAll already
		pt.mu.Unlock()
		c.close()
		return
	default:
	}
	if !slices.Contains(pt.addrs, addr) { // left the answer while we dialled
		pt.mu.Unlock()
		c.close()
		return
	}
	if pt.conns[addr] == nil {
		pt.conns[addr] = map[*pipe]struct{}{}
	}
	pt.conns[addr][c] = struct{}{}
	pt.mu.Unlock()
	pt.p.m.conns.WithLabelValues(pt.f.Listen, pt.f.Target).Inc()
	pt.p.m.active.WithLabelValues(pt.f.Listen).Inc()

	c.run()

	pt.p.m.active.WithLabelValues(pt.f.Listen).Dec()
	pt.mu.Lock()
	delete(pt.conns[addr], c)
	if len(pt.conns[addr]) == 0 {
		delete(pt.conns, addr)
	}
	pt.mu.Unlock()
}

func (pt *port) closeAll() {
	pt.mu.Lock()
	var all []*pipe
	for _, set := range pt.conns {
		for c := range set {
			all = append(all, c)
		}
	}
	pt.mu.Unlock()
	for _, c := range all {
		c.close()
	}
}

// pipe is one forwarded connection.
type pipe struct {
	client, back net.Conn
	once         sync.Once
}

// run copies both ways; when either direction ends, both connections are closed (so a
// backend that dies ends the client's connection at once, and the client dials again).
func (c *pipe) run() {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		c.close()
		done <- struct{}{}
	}
	go cp(c.back, c.client)
	go cp(c.client, c.back)
	<-done
	<-done
}

func (c *pipe) close() {
	c.once.Do(func() {
		_ = c.client.Close()
		_ = c.back.Close()
	})
}

// metrics are the proxy's Prometheus metrics.
type metrics struct {
	conns        *prometheus.CounterVec
	active       *prometheus.GaugeVec
	dialFailures *prometheus.CounterVec
	backends     *prometheus.GaugeVec
	refused      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_proxy_connections_total", Help: "Connections forwarded, per listen address and target (HOST:PORT as configured, not the address it resolved to: replica churn adds no series).",
		}, []string{"listen", "target"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "otelfleet_proxy_active_connections", Help: "Connections being forwarded now.",
		}, []string{"listen"}),
		dialFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_proxy_dial_failures_total", Help: "Dials to a backend that failed (the address is then quarantined).",
		}, []string{"listen"}),
		backends: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "otelfleet_proxy_backends", Help: "Addresses the target resolved to at the last lookup.",
		}, []string{"listen"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otelfleet_proxy_refused_total", Help: "Client connections closed without forwarding, by reason: too_many_connections (--max-connections), no_backend.",
		}, []string{"listen", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.conns, m.active, m.dialFailures, m.backends, m.refused)
	}
	return m
}

// String describes the forwards ("LISTEN=TARGET,...").
func (c Config) String() string {
	parts := make([]string, len(c.Forwards))
	for i, f := range c.Forwards {
		parts[i] = f.Listen + "=" + f.Target
	}
	return strings.Join(parts, ",")
}
