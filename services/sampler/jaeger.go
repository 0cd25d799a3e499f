package samplersvc

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/promreg"
)

// API serves Jaeger's remote-sampling HTTP API (what the Jaeger agent serves on :5778
// and what OpenTelemetry SDKs' jaeger_remote sampler polls) from the decision in force:
//
//	GET <any path>?service=NAME[&region=REGION]
//
// answers 200 with Jaeger's JSON (api_v2 SamplingStrategyResponse, the proto3 JSON
// mapping that jaeger's sampling.proto defines and the SDKs parse with jsonpb):
//
//	{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":0.1}}
//
// plus, while an adaptive strategy is configured, Jaeger's adaptive-sampling shape
// (SDKs then keep at least defaultLowerBoundTracesPerSecond per operation):
//
//	"operationSampling":{"defaultSamplingProbability":0.1,
//	  "defaultLowerBoundTracesPerSecond":0.0166667,"perOperationStrategies":[]}
//
// The rate is the service's own (seen in the load reports), else its priority rule's,
// else the default. With region=REGION it is multiplied by the region's
// regional_sampling_rate. A missing, empty or repeated service, or an invalid region,
// is answered 400 with a message; methods other than GET and HEAD 405; and 503 until
// the first decision (or the config's static rates) is installed.
//
// Each install precomputes the response bytes of every service and rule, so a request
// is a map lookup. API is safe for concurrent use.
type API struct {
	cur atomic.Pointer[table]
	m   *apiMetrics
}

// table is one installed decision with its precomputed responses.
type table struct {
	d        *events.Decision
	services map[string][]byte
	rules    [][]byte
	def      []byte
}

// NewAPI returns an API that answers 503 until Install is called. m may be nil.
func NewAPI(m *apiMetrics) *API {
	if m == nil {
		m = newAPIMetrics(&promreg.Registrar{})
	}
	return &API{m: m}
}

// Install makes d the decision served. d must not be modified afterwards.
func (a *API) Install(d *events.Decision) {
	t := &table{d: d, services: make(map[string][]byte, len(d.Services)), rules: make([][]byte, len(d.Rules))}
	// One backing array for all bodies: fewer, larger allocations for big fleets.
	buf := make([]byte, 0, (len(d.Services)+len(d.Rules)+1)*strategyJSONLen(d.LowerBoundTPS))
	add := func(rate float64) []byte {
		start := len(buf)
		buf = appendStrategy(buf, rate, d.LowerBoundTPS)
		return buf[start:len(buf):len(buf)]
	}
	for name, s := range d.Services {
		t.services[name] = add(s.Rate)
	}
	for i, r := range d.Rules {
		t.rules[i] = add(r.Rate)
	}
	t.def = add(d.DefaultRate)
	a.cur.Store(t)
}

// Decision returns the decision served, or nil before the first Install.
func (a *API) Decision() *events.Decision {
	if t := a.cur.Load(); t != nil {
		return t.d
	}
	return nil
}

// body returns the response for service.
func (t *table) body(service string) []byte {
	if b, ok := t.services[service]; ok {
		return b
	}
	if i := t.d.RuleFor(service); i >= 0 {
		return t.rules[i]
	}
	return t.def
}

var (
	headerJSON    = []string{"application/json"}
	headerText    = []string{"text/plain; charset=utf-8"}
	headerNoSniff = []string{"nosniff"}
)

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		a.fail(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: use GET /sampling?service=NAME\n")
		return
	}
	service, region, msg := parseQuery(r.URL.RawQuery)
	if msg != "" {
		a.fail(w, http.StatusBadRequest, msg)
		return
	}
	t := a.cur.Load()
	if t == nil {
		a.fail(w, http.StatusServiceUnavailable, "no sampling decision yet: the sampler has not loaded one, retry shortly\n")
		return
	}
	body := t.body(service)
	if region != "" {
		if m := t.d.RegionRate(region); m != 1 {
			body = appendStrategy(make([]byte, 0, strategyJSONLen(t.d.LowerBoundTPS)), t.d.RateFor(service)*m, t.d.LowerBoundTPS)
		}
	}
	h := w.Header()
	h["Content-Type"] = headerJSON
	_, _ = w.Write(body)
	a.m.ok.Inc()
}

func (a *API) fail(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h["Content-Type"] = headerText
	h["X-Content-Type-Options"] = headerNoSniff
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg))
	switch code {
	case http.StatusBadRequest, http.StatusMethodNotAllowed:
		a.m.bad.Inc()
	default:
		a.m.unavailable.Inc()
	}
}

// parseQuery extracts service and region from a raw query; msg is the 400 message when
// the query is unusable. It allocates only for escaped values.
func parseQuery(q string) (service, region, msg string) {
	nService, nRegion := 0, 0
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			if u, err := url.QueryUnescape(k); err == nil {
				k = u
			}
		}
		switch k {
		case "service":
			nService++
			service = v
		case "region":
			nRegion++
			region = v
		}
	}
	switch {
	case nService == 0:
		return "", "", "missing query parameter 'service': use ?service=NAME with the name of the service asking\n"
	case nService > 1:
		return "", "", "'service' parameter must be provided once, got " + strconv.Itoa(nService) + "\n"
	case nRegion > 1:
		return "", "", "'region' parameter must be provided at most once, got " + strconv.Itoa(nRegion) + "\n"
	}
	var err error
	if strings.ContainsAny(service, "%+") {
		if service, err = url.QueryUnescape(service); err != nil {
			return "", "", "query parameter 'service' is not valid URL encoding: " + err.Error() + "\n"
		}
	}
	if service == "" {
		return "", "", "query parameter 'service' is empty: use ?service=NAME\n"
	}
	if strings.ContainsAny(region, "%+") {
		if region, err = url.QueryUnescape(region); err != nil {
			return "", "", "query parameter 'region' is not valid URL encoding: " + err.Error() + "\n"
		}
	}
	if nRegion == 1 {
		if err := events.CheckToken("region", region); err != nil {
			return "", "", "query parameter 'region': " + err.Error() + "\n"
		}
	}
	return service, region, ""
}

// strategyJSONLen bounds the length of appendStrategy's output.
func strategyJSONLen(lowerBound float64) int {
	if lowerBound > 0 {
		return 260
	}
	return 100
}

// appendStrategy appends Jaeger's JSON for probabilistic sampling at rate, with
// Jaeger's adaptive (per-operation) shape when lowerBound > 0. Field names are those of
// jaeger api_v2 sampling.proto in proto3 JSON (lowerCamelCase), the only names the
// SDKs' jsonpb decoders accept (unknown fields are an error there).
func appendStrategy(b []byte, rate, lowerBound float64) []byte {
	rate = min(max(rate, 0), 1)
	b = append(b, `{"strategyType":"PROBABILISTIC","probabilisticSampling":{"samplingRate":`...)
	b = strconv.AppendFloat(b, rate, 'g', -1, 64)
	b = append(b, '}')
	if lowerBound > 0 {
		b = append(b, `,"operationSampling":{"defaultSamplingProbability":`...)
		b = strconv.AppendFloat(b, rate, 'g', -1, 64)
		b = append(b, `,"defaultLowerBoundTracesPerSecond":`...)
		b = strconv.AppendFloat(b, lowerBound, 'g', -1, 64)
		b = append(b, `,"perOperationStrategies":[]}`...)
	}
	return append(b, '}')
}
