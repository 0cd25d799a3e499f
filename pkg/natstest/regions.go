package natstest

import (
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// HubDomain is the JetStream domain of the servers Hub starts.
const HubDomain = "hub"

// Domain sets the server's JetStream domain.
func Domain(name string) Option {
	return func(o *server.Options) { o.JetStreamDomain = name }
}

// Pings sets how often the server pings its connections (leaf links included) and
// how many unanswered pings close one.
func Pings(interval time.Duration, maxOut int) Option {
	return func(o *server.Options) { o.PingInterval, o.MaxPingsOut = interval, maxOut }
}

// Hub starts a server with JetStream domain "hub" that accepts leaf node connections
// on a random loopback port.
func Hub(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return Run(t, append([]Option{Domain(HubDomain), func(o *server.Options) {
		o.LeafNode.Host, o.LeafNode.Port = "127.0.0.1", -1
		// Leaves must keep dialling through their Link, not the addresses the hub
		// would advertise.
		o.LeafNode.NoAdvertise = true
	}}, opts...)...)
}

// Leaf starts a server with JetStream domain region that is a leaf node of hub,
// connected through a Link the test can cut, black-hole and heal. The leaf redials
// every 100 ms while the link is down and pings every second (three missed pings
// close the link), so tests see the link's state change within seconds. It returns once
// the link is up.
func Leaf(t testing.TB, hub *Server, region string, opts ...Option) (*Server, *Link) {
	t.Helper()
	link := NewLink(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(hub.LeafPort())))
	u, err := url.Parse("nats-leaf://" + link.Addr())
	if err != nil {
		t.Fatalf("natstest: leaf url: %v", err)
	}
	s := Run(t, append([]Option{Domain(region), Pings(time.Second, 3), func(o *server.Options) {
		o.LeafNode.ReconnectInterval = 100 * time.Millisecond
		o.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}}
	}}, opts...)...)
	Eventually(t, 10*time.Second, s.Linked, "leaf %s linked to the hub", region)
	return s, link
}

// LeafPort returns the port the server accepts leaf node connections on (0: none).
func (s *Server) LeafPort() int {
	v, err := s.Varz(nil)
	if err != nil {
		return 0
	}
	return v.LeafNode.Port
}

// Linked reports whether s has at least one leaf node connection up.
func (s *Server) Linked() bool { return s.NumLeafNodes() > 0 }

// Link is a TCP proxy on a random loopback port in front of target: a link between
// two servers that a test can cut (every connection reset, new ones refused), black-hole
// (connections stay open and new ones are accepted, every byte dropped: what a lost
// route looks like) and heal. It is closed when the test ends.
type Link struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	state linkState
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

type linkState int

const (
	linkUp linkState = iota
	linkCut
	linkBlackHole
)

// NewLink starts a proxy to target.
func NewLink(t testing.TB, target string) *Link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: link listen: %v", err)
	}
	l := &Link{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.accept()
	t.Cleanup(l.Close)
	return l
}

// Addr is the proxy's host:port.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Cut resets every connection and refuses new ones until Heal.
func (l *Link) Cut() { l.set(linkCut) }

// BlackHole keeps connections open but drops every byte either way, and accepts new
// connections that never reach the target, until Heal.
func (l *Link) BlackHole() { l.set(linkBlackHole) }

// Heal lets traffic through again; connections reset meanwhile are re-dialled by
// their owners.
func (l *Link) Heal() { l.set(linkUp) }

// Close stops the proxy and closes every connection. Safe to call twice.
func (l *Link) Close() {
	_ = l.ln.Close()
	l.set(linkCut)
	l.wg.Wait()
}

func (l *Link) set(s linkState) {
	l.mu.Lock()
	l.state = s
	var closing []net.Conn
	if s == linkCut {
		for c := range l.conns {
			closing = append(closing, c)
		}
	}
	l.mu.Unlock()
	for _, c := range closing {
		reset(c)
	}
}

// reset closes c with a TCP reset rather than an orderly close.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (l *Link) current() linkState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// track registers c unless the link is cut.
func (l *Link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state == linkCut {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *Link) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	_ = c.Close()
}

func (l *Link) accept() {
	defer l.wg.Done()
	for {
		in, err := l.ln.Accept()
		if err != nil {
			return
		}
		if !l.track(in) {
			reset(in)
			continue
		}
		l.wg.Add(1)
		go l.serve(in)
	}
}

func (l *Link) serve(in net.Conn) {
	defer l.wg.Done()
	defer l.untrack(in)
	// A black-holed link accepts but does not dial: it swallows what arrives until a
	// heal (then it dials, the swallowed bytes lost as on a real route) or a cut.
	for l.current() == linkBlackHole {
		_ = in.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := in.Read(make([]byte, 4096)); err != nil && !isTimeout(err) {
			return
		}
	}
	_ = in.SetReadDeadline(time.Time{})
	out, err := net.DialTimeout("tcp", l.target, 2*time.Second)
	if err != nil {
		return
	}
	if !l.track(out) {
		_ = out.Close()
		return
	}
	defer l.untrack(out)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && l.current() == linkUp {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	_ = in.Close()
	_ = out.Close()
	<-done
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
