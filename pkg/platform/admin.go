package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/fx"
)

// Admin is the admin HTTP server: /metrics, /healthz, /readyz, /debug/pprof/ with
// Settings.Pprof, plus whatever services add with Handle (the topology page, for
// example).
type Admin struct {
	mux *http.ServeMux
	srv *http.Server
	log *slog.Logger

	mu   sync.Mutex
	addr net.Addr
}

// NewAdmin builds the admin server on s.AdminAddr; it listens on start (failing the start
// when the address is taken) and shuts down gracefully on stop.
func NewAdmin(lc fx.Lifecycle, s Settings, log *slog.Logger, reg *prometheus.Registry, ready *Readiness) *Admin {
	a := &Admin{mux: http.NewServeMux(), log: log}
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	a.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		results, ok := ready.Check()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(struct {
			Ready  bool          `json:"ready"`
			Checks []CheckResult `json:"checks"`
		}{ok, results})
	})
	if s.Pprof {
		a.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		a.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		a.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		a.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		a.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	a.srv = &http.Server{Handler: a.mux, ReadHeaderTimeout: 5 * time.Second}
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", s.AdminAddr)
			if err != nil {
				return fmt.Errorf("admin server: listen on %s (set --admin-addr or ADMIN_ADDR): %w", s.AdminAddr, err)
			}
			a.mu.Lock()
			a.addr = ln.Addr()
			a.mu.Unlock()
			log.Info("admin server listening", "addr", ln.Addr().String())
			go func() {
				if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					log.Error("admin server stopped", "err", err)
				}
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error { return a.srv.Shutdown(ctx) },
	})
	return a
}

// Handle registers h for pattern (http.ServeMux syntax) on the admin server.
func (a *Admin) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// Addr is the address the server listens on, once started.
func (a *Admin) Addr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.addr
}
