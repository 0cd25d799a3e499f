// Package natstest starts real, in-process nats-server instances with JetStream for
// tests: random port, store in a temporary directory, shut down and removed on cleanup.
// It can stop and restart a server on the same port and store to exercise reconnects.
package natstest

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/natsembed"
)

// Server is a running in-process nats-server with JetStream.
type Server struct {
	*server.Server
	opts *server.Options
}

// Option changes the server options before the server starts.
type Option func(*server.Options)

// ConfigFile loads a nats-server configuration file (with its includes and variables),
// for example the shipped deploy/nats/dev.conf with its identities and permissions. The
// listen address, store directory, HTTP monitoring and logging are then set by Run as
// for any test server; everything else (authorization, limits, TLS) comes from the file.
// A file that does not load fails the test.
func ConfigFile(t testing.TB, path string) Option {
	t.Helper()
	fo, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("natstest: config file %s: %v", path, err)
	}
	return func(o *server.Options) {
		keep := *o
		*o = *fo
		o.Host, o.Port, o.JetStream, o.StoreDir = keep.Host, keep.Port, true, keep.StoreDir
		o.NoLog, o.NoSigs, o.HTTPPort, o.HTTPHost = keep.NoLog, keep.NoSigs, 0, ""
	}
}

// EnvFile sets, for the rest of the test, the environment variables of a KEY=VALUE file
// (blank lines and # comments skipped), such as deploy/nats/dev.env with the passwords a
// ConfigFile refers to, and returns them. Call it before ConfigFile.
func EnvFile(t testing.TB, path string) map[string]string {
	t.Helper()
	kvs, err := natsembed.ReadEnvFile(path)
	if err != nil {
		t.Fatalf("natstest: env file: %v", err)
	}
	out := map[string]string{}
	for _, kv := range kvs {
		t.Setenv(kv[0], kv[1])
		out[kv[0]] = kv[1]
	}
	return out
}

// TLS makes the server require TLS with cfg (server certificate; ClientCAs and
// ClientAuth for mutual TLS). Clients then connect with tls:// URLs.
func TLS(cfg *tls.Config) Option {
	return func(o *server.Options) {
		o.TLS, o.TLSConfig = true, cfg
		o.TLSVerify = cfg.ClientAuth == tls.RequireAndVerifyClientCert
		o.TLSTimeout = 5
	}
}

// Run starts a JetStream-enabled server on a random loopback port with its store in
// t.TempDir(), changed by opts. The server is shut down when the test ends.
func Run(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	for _, opt := range opts {
		opt(o)
	}
	s := &Server{opts: o}
	s.start(t)
	// Pin the port so a restart comes back at the same address.
	o.Port = s.Addr().(*net.TCPAddr).Port
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	srv, err := server.NewServer(s.opts)
	if err != nil {
		t.Fatalf("natstest: new server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("natstest: server not ready within 10s")
	}
	s.Server = srv
}

// URL is the client URL of the server (tls:// when the server requires TLS).
func (s *Server) URL() string {
	if s.opts.TLS {
		return "tls://" + s.Addr().String()
	}
	return s.ClientURL()
}

// Stop shuts the server down and waits until it is gone. Safe to call twice.
func (s *Server) Stop() {
	if s.Server == nil {
		return
	}
	s.Shutdown()
	s.WaitForShutdown()
}

// Restart stops the server and starts a new one on the same port and store directory.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.start(t)
}

// Connect returns a client connection to s that is closed when the test ends.
func (s *Server) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	return connect(t, s.URL(), opts)
}

// connect connects to url and closes the connection when the test ends.
func connect(t testing.TB, url string, opts []nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("natstest: connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a new connection to s.
func (s *Server) JetStream(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := s.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// Eventually polls cond every 10ms until it returns true or timeout passes, then fails
// the test with msg.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: condition not met within %v: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Buffer is a bytes.Buffer safe to read while a logger or a command writes to it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Cluster is a JetStream cluster of in-process servers on random loopback ports.
type Cluster struct {
	Servers []*Server
}

// RunCluster starts a JetStream cluster of n servers (named s1..sn, cluster "test"),
// each with its own store in t.TempDir(), on random loopback ports (the seed's route
// port is reserved first; every server routes to it and gossip completes the mesh). It
// waits until every server accepts clients and JetStream's meta leader sees all n online
// (so an R3 stream can be placed at once). The servers are shut down when the test ends.
func RunCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: a cluster needs at least one server, not %d", n)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: reserve the seed route port: %v", err)
	}
	seedPort := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	seed := []*url.URL{{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(seedPort))}}
	c := &Cluster{}
	// A clustered JetStream server is not ready for clients before it has peers, so
	// every server is started before any is waited for.
	for i := range n {
		port := -1
		if i == 0 {
			port = seedPort
		}
		o := &server.Options{
			ServerName: fmt.Sprintf("s%d", i+1), Host: "127.0.0.1", Port: -1, JetStream: true,
			StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: port}, Routes: seed,
		}
		srv, err := server.NewServer(o)
		if err != nil {
			t.Fatalf("natstest: new cluster server: %v", err)
		}
		go srv.Start()
		s := &Server{Server: srv, opts: o}
		t.Cleanup(s.Stop)
		c.Servers = append(c.Servers, s)
	}
	for _, s := range c.Servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("natstest: cluster server %s not ready within 30s", s.Name())
		}
		s.opts.Port = s.Addr().(*net.TCPAddr).Port
	}
	Eventually(t, 30*time.Second, func() bool {
		for _, s := range c.Servers {
			if s.NumRoutes() < n-1 {
				return false
			}
		}
		// The meta leader must see every server online with JetStream (it places
		// replicas only on those), and every server must have caught up with it.
		leader := false
		for _, s := range c.Servers {
			if s.JetStreamIsLeader() {
				if len(s.JetStreamClusterPeers()) < n {
					return false
				}
				leader = true
			}
			if !s.JetStreamIsCurrent() {
				return false
			}
		}
		return leader
	}, "the JetStream cluster of %d servers is not formed (routes, meta leader, peers)", n)
	return c
}

// URL is every server's client URL, comma-separated (what nats.Connect takes).
func (c *Cluster) URL() string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.URL()
	}
	return strings.Join(urls, ",")
}

// Connect returns a client connection to the cluster that is closed when the test ends.
func (c *Cluster) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	return connect(t, c.URL(), opts)
}
