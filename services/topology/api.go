package topologysvc

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"strconv"

	"github.com/nats-io/nats.go/micro"

	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// Endpoints returns the otlp.topology.* endpoints: get and best.
func (s *Service) Endpoints() []platform.Endpoint {
	return []platform.Endpoint{
		{Op: "get", Description: "the topology: global and region statistics and collectors (JSON body: region, after, limit, stats_only; all optional)",
			Handler: microapi.Handler(func(_ context.Context, req micro.Request) (any, error) {
				var in GetRequest
				if err := microapi.DecodeRequest(req, &in); err != nil {
					return nil, err
				}
				out, err := s.Get(in)
				return out, apiError(err)
			})},
		{Op: "best", Description: "the best collector (JSON body: region, load_weight, latency_weight, capacity_weight; all optional)",
			Handler: microapi.Handler(func(_ context.Context, req micro.Request) (any, error) {
				var in BestRequest
				if err := microapi.DecodeRequest(req, &in); err != nil {
					return nil, err
				}
				out, err := s.BestOf(in)
				return out, apiError(err)
			})},
	}
}

// apiError maps the service's errors to microapi codes.
func apiError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrBadRequest):
		return microapi.Errorf(microapi.CodeBadRequest, "topology: %v", err)
	case errors.Is(err, ErrNoCollector):
		return microapi.Errorf(microapi.CodeNotFound, "topology: %v", err)
	case errors.Is(err, ErrNotReady):
		return microapi.Errorf(microapi.CodeUnavailable, "topology: %v", err)
	default:
		return err
	}
}

// httpCode maps the service's errors to HTTP status codes.
func httpCode(err error) int {
	switch microapi.CodeOf(apiError(err)) {
	case microapi.CodeBadRequest:
		return http.StatusBadRequest
	case microapi.CodeNotFound:
		return http.StatusNotFound
	case microapi.CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

//go:embed web
var webFS embed.FS

// Handler registers HTTP handlers; *platform.Admin implements it.
type Handler interface {
	Handle(pattern string, h http.Handler)
}

// RegisterHTTP registers on h:
//
//   - GET /v1/topology: the topology as JSON (Topology). Query parameters: region,
//     per_region (list at most N collectors per region), sort=id|attention (which N:
//     the first by id, or those most in need of attention — unhealthy, degraded,
//     stale, then the busiest; listed in id order either way), stats_only=true.
//   - GET /v1/topology/best: the best collector as JSON (BestReply). Query parameters:
//     region, load_weight, latency_weight, capacity_weight.
//   - GET /v1/routers: the OTLP routers and their backends as JSON (Routers).
//   - GET /: the live topology page; its script and style under /topology/ui/.
func (s *Service) RegisterHTTP(h Handler) {
	h.Handle("GET /v1/topology", http.HandlerFunc(s.serveTopology))
	h.Handle("GET /v1/topology/best", http.HandlerFunc(s.serveBest))
	h.Handle("GET /v1/routers", http.HandlerFunc(s.serveRouters))
	sub, _ := fs.Sub(webFS, "web")
	h.Handle("GET /topology/ui/", http.StripPrefix("/topology/ui/", http.FileServerFS(sub)))
	h.Handle("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, sub, "index.html")
	}))
}

func (s *Service) serveTopology(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	o := renderOpts{region: q.Get("region")}
	var err error
	if v := q.Get("per_region"); v != "" {
		if o.perRegion, err = strconv.Atoi(v); err != nil || o.perRegion < 0 {
			writeError(w, http.StatusBadRequest, "per_region "+strconv.Quote(v)+": want an integer >= 0")
			return
		}
	}
	switch q.Get("sort") {
	case "", "id":
	case "attention":
		o.attention = true
	default:
		writeError(w, http.StatusBadRequest, "sort "+strconv.Quote(q.Get("sort"))+": want id or attention")
		return
	}
	if v := q.Get("stats_only"); v != "" {
		if o.statsOnly, err = strconv.ParseBool(v); err != nil {
			writeError(w, http.StatusBadRequest, "stats_only "+strconv.Quote(v)+": want true or false")
			return
		}
	}
	// Validate the region the same way the NATS endpoint does.
	if _, err := s.Get(GetRequest{Region: o.region, StatsOnly: true}); err != nil {
		writeError(w, httpCode(err), err.Error())
		return
	}
	v, _ := s.current()
	writeJSON(w, s.render(v, o))
}

func (s *Service) serveBest(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := BestRequest{Region: q.Get("region")}
	for _, f := range []struct {
		name string
		p    **float64
	}{{"load_weight", &req.LoadWeight}, {"latency_weight", &req.LatencyWeight}, {"capacity_weight", &req.CapacityWeight}} {
		if v := q.Get(f.name); v != "" {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				writeError(w, http.StatusBadRequest, f.name+" "+strconv.Quote(v)+": want a number")
				return
			}
			*f.p = &x
		}
	}
	out, err := s.BestOf(req)
	if err != nil {
		writeError(w, httpCode(err), err.Error())
		return
	}
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
