// Package natsembed runs a nats-server with JetStream inside an otelfleet process, for
// `otelfleet dev`: file store under a data directory, so state survives restarts.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure the embedded server.
type Options struct {
	// DataDir holds the JetStream file store (created if missing).
	DataDir string
	// Host and Port are the client listen address; Port -1 picks a free port.
	Host string
	Port int
	// Debug enables the server's own logging to stderr.
	Debug bool
}

// Server is a running embedded server.
type Server struct{ *server.Server }

// Start starts the server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	if o.DataDir == "" {
		return nil, errors.New("--data-dir: empty")
	}
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", o.DataDir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", o.DataDir, err)
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	// nats-server, logging nothing, would only time out below on a port that is taken:
	// try the address first, so the error comes at once and says why.
	if o.Port > 0 {
		addr := net.JoinHostPort(o.Host, strconv.Itoa(o.Port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS cannot listen on %s (set --nats-port): %w", addr, err)
		}
		l.Close()
	}
	opts := &server.Options{
		ServerName: "otelfleet-dev",
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   filepath.Join(dir, "jetstream"),
		NoSigs:     true,
		NoLog:      !o.Debug,
		MaxPayload: 8 << 20,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	if o.Debug {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not start listening on %s:%d within 15s (is the port taken? set --nats-port)", o.Host, o.Port)
	}
	return &Server{s}, nil
}

// Stop shuts the server down and waits for it.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}
