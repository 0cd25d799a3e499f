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
	"strings"
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
	// ConfigFile, if set, is a nats-server configuration file whose authorization,
	// limits and TLS apply (otelfleet dev --auth: deploy/nats/nats.conf with its
	// identities); Host, Port and the store under DataDir still come from these options.
	// The variables it refers to come from the environment.
	ConfigFile string
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
	opts := &server.Options{}
	if o.ConfigFile != "" {
		if opts, err = server.ProcessConfigFile(o.ConfigFile); err != nil {
			return nil, fmt.Errorf("embedded NATS config %s: %w", o.ConfigFile, err)
		}
		opts.HTTPPort, opts.HTTPHost = 0, ""
	}
	opts.ServerName = "otelfleet-dev"
	opts.Host, opts.Port = o.Host, o.Port
	opts.JetStream, opts.StoreDir = true, filepath.Join(dir, "jetstream")
	opts.NoSigs, opts.NoLog = true, !o.Debug
	opts.MaxPayload = 8 << 20
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

// ReadEnvFile reads a KEY=VALUE file such as deploy/nats/dev.env (the passwords the
// shipped config refers to): blank lines and lines starting with # are skipped; any
// other line without '=' or with an empty key is an error naming the line.
func ReadEnvFile(path string) ([][2]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][2]string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%s line %d: want KEY=VALUE, got %q", path, i+1, line)
		}
		out = append(out, [2]string{strings.TrimSpace(k), v})
	}
	return out, nil
}

// LoadEnvFile sets the variables of ReadEnvFile(path) in the environment, leaving those
// already set alone (so a real secret in the environment wins over a throw-away file).
func LoadEnvFile(path string) error {
	kvs, err := ReadEnvFile(path)
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		if _, set := os.LookupEnv(kv[0]); !set {
			if err := os.Setenv(kv[0], kv[1]); err != nil {
				return fmt.Errorf("%s: %s: %w", path, kv[0], err)
			}
		}
	}
	return nil
}
