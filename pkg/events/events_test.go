package events

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNameBuilders(t *testing.T) {
	ns := Default
	tests := []struct {
		name    string
		got     func() (string, error)
		want    string
		wantErr string
	}{
		{"load subject", func() (string, error) { return ns.LoadSubject("us-east-1", "c1") }, "otlp.load.us-east-1.c1", ""},
		{"load subject rejects dot", func() (string, error) { return ns.LoadSubject("us.east", "c1") }, "", `region "us.east" contains "."`},
		{"load subject rejects wildcard", func() (string, error) { return ns.LoadSubject("eu", "*") }, "", `collector id "*" contains "*"`},
		{"load subject rejects empty", func() (string, error) { return ns.LoadSubject("", "c1") }, "", "region is empty"},
		{"collector key", func() (string, error) { return CollectorKey("eu-west-1", "c-7") }, "collector.eu-west-1.c-7", ""},
		{"collector key rejects space", func() (string, error) { return CollectorKey("eu west", "c") }, "", `contains " "`},
		{"service key", func() (string, error) { return ServiceKey("config", "host-1") }, "service.config.host-1", ""},
		{"service key rejects gt", func() (string, error) { return ServiceKey("a>b", "x") }, "", `contains ">"`},
		{"region config key", func() (string, error) { return RegionConfigKey("us-east-1") }, "region.us-east-1", ""},
		{"lease key", func() (string, error) { return LeaseKey("sampler") }, "sampler", ""},
		{"lease key rejects unicode", func() (string, error) { return LeaseKey("sämpler") }, "", "contains"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.got()
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrInvalidToken containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestNamespaceNames(t *testing.T) {
	ns, err := NewNamespace("acme")
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{
		ns.LoadStream():                     "ACME_LOAD",
		ns.EventsStream():                   "ACME_EVENTS",
		ns.ConfigBucket():                   "acme_config",
		ns.RegistryBucket():                 "acme_registry",
		ns.LeasesBucket():                   "acme_leases",
		ns.SamplingBucket():                 "acme_sampling",
		ns.EventSubject(EventConfigChanged): "acme.events.config.changed",
		ns.MicroName(ServiceConfig):         "acme-config",
		ns.Endpoint(ServiceConfig, "get"):   "acme.config.get",
		ns.LoadSubjects():                   "acme.load.>",
	}
	for got, want := range checks {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if _, err := NewNamespace("a.b"); err == nil {
		t.Error("NewNamespace accepted a dotted root")
	}
	if r, ok := RegionFromConfigKey("region.eu-1"); !ok || r != "eu-1" {
		t.Errorf("RegionFromConfigKey = %q, %v", r, ok)
	}
	if _, ok := RegionFromConfigKey("global"); ok {
		t.Error("global parsed as a region key")
	}
}

func validChange() ConfigChanged {
	return ConfigChanged{V: 1, Key: "global", OldVersion: 1, NewVersion: 2, Changed: []string{"sampling_rate"}, Action: "put", By: "me", At: time.Unix(1, 0).UTC()}
}

func TestMsgCarriesCloudEventsHeaders(t *testing.T) {
	m, err := NewMsg(Default.EventSubject(EventConfigChanged), "otelfleet/config/a", validChange())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		HeaderSpecVersion: "1.0",
		HeaderType:        "io.otelfleet.config.changed.v1",
		HeaderSource:      "otelfleet/config/a",
		HeaderContentType: "application/json",
	}
	for h, v := range want {
		if got := m.Header.Get(h); got != v {
			t.Errorf("%s = %q, want %q", h, got, v)
		}
	}
	if len(m.Header.Get(HeaderID)) != 32 {
		t.Errorf("ce-id = %q", m.Header.Get(HeaderID))
	}
	if _, err := time.Parse(time.RFC3339Nano, m.Header.Get(HeaderTime)); err != nil {
		t.Errorf("ce-time: %v", err)
	}
	var back ConfigChanged
	if err := Decode(m.Data, &back); err != nil {
		t.Fatal(err)
	}
	if back.NewVersion != 2 || back.Key != "global" {
		t.Errorf("round trip = %+v", back)
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	c := validChange()
	c.NewVersion = 0
	if _, err := Encode(c); err == nil {
		t.Fatal("encoded an invalid payload")
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, data, want string
		version          bool
	}{
		{name: "empty", data: "", want: "empty payload"},
		{name: "garbage", data: "\x00\x01garbage", want: "invalid JSON at byte"},
		{name: "missing v", data: `{"key":"global","new_version":2}`, want: `field "v" is missing`, version: true},
		{name: "future v", data: `{"v":9,"key":"global","new_version":2}`, want: "v=9", version: true},
		{name: "wrong type", data: `{"v":1,"key":"global","new_version":"two"}`, want: `field "new_version"`},
		{name: "fails validation", data: `{"v":1,"key":"","new_version":0}`, want: "key: empty"},
		{name: "huge", data: `{"v":1,"key":"` + strings.Repeat("x", MaxPayloadBytes) + `"}`, want: "exceeds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c ConfigChanged
			err := Decode([]byte(tc.data), &c)
			if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrMalformed containing %q", err, tc.want)
			}
			if tc.version != errors.Is(err, ErrUnsupportedVersion) {
				t.Errorf("ErrUnsupportedVersion = %v, want %v", errors.Is(err, ErrUnsupportedVersion), tc.version)
			}
		})
	}
}

func TestLoadReportValidation(t *testing.T) {
	good := LoadReport{V: 1, Region: "eu", Collector: "c1", At: time.Unix(5, 0), QPS: 10, CPU: 0.5, ErrorRate: 0.1, Capacity: 100,
		Services: []ServiceRate{{Name: "checkout", SpansPerSec: 5}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good report: %v", err)
	}
	tests := map[string]struct {
		data string
		want string
	}{
		"negative qps":  {`{"v":1,"region":"eu","collector":"c1","at":"2026-01-01T00:00:00Z","qps":-1}`, "qps: -1 is negative"},
		"absurd qps":    {`{"v":1,"region":"eu","collector":"c1","at":"2026-01-01T00:00:00Z","qps":1e300}`, "qps: 1e+300 is above the limit"},
		"cpu over 1":    {`{"v":1,"region":"eu","collector":"c1","at":"2026-01-01T00:00:00Z","cpu":3}`, "cpu: 3 is above"},
		"bad region":    {`{"v":1,"region":"eu.west","collector":"c1","at":"2026-01-01T00:00:00Z"}`, "region:"},
		"no time":       {`{"v":1,"region":"eu","collector":"c1"}`, "at: missing"},
		"NaN as string": {`{"v":1,"region":"eu","collector":"c1","at":"2026-01-01T00:00:00Z","qps":"NaN"}`, `field "qps"`},
		"overflow":      {`{"v":1,"region":"eu","collector":"c1","at":"2026-01-01T00:00:00Z","qps":1e999}`, "qps"},
		"empty service": {`{"v":1,"region":"eu","collector":"c1","at":"2026-01-01T00:00:00Z","services":[{"name":"","spans_per_sec":1}]}`, "services[0].name"},
		"unknown role":  {`{"v":1,"region":"eu","collector":"c1","at":"2026-01-01T00:00:00Z","role":"proxy"}`, `role: "proxy"`},
		"forwarded on a collector": {`{"v":1,"region":"eu","collector":"c1","at":"2026-01-01T00:00:00Z","forwarded_qps":3}`,
			"forwarded_qps, forwarded: set on a report whose role is not"},
		"negative forwarded": {`{"v":1,"region":"eu","collector":"r1","at":"2026-01-01T00:00:00Z","role":"router","forwarded_qps":-2}`,
			"forwarded_qps: -2 is negative"},
		"forwarded service unnamed": {`{"v":1,"region":"eu","collector":"r1","at":"2026-01-01T00:00:00Z","role":"router","forwarded":[{"spans_per_sec":1}]}`,
			"forwarded[0].name"},
		"forwarded service absurd": {`{"v":1,"region":"eu","collector":"r1","at":"2026-01-01T00:00:00Z","role":"router","forwarded":[{"name":"a","spans_per_sec":1e300}]}`,
			"forwarded[0].spans_per_sec: 1e+300 is above the limit"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var r LoadReport
			err := Decode([]byte(tc.data), &r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func FuzzDecodeConfigChanged(f *testing.F) {
	good, _ := Encode(validChange())
	f.Add(good)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":-1,"changed":[1,2]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c ConfigChanged
		if err := Decode(data, &c); err != nil {
			return
		}
		// Anything accepted is valid and survives a round trip.
		again, err := Encode(c)
		if err != nil {
			t.Fatalf("decoded value does not re-encode: %v", err)
		}
		var back ConfigChanged
		if err := Decode(again, &back); err != nil {
			t.Fatalf("re-encoded value does not decode: %v", err)
		}
	})
}

func FuzzDecodeLoadReport(f *testing.F) {
	f.Add([]byte(`{"v":1,"region":"eu","collector":"c1","at":"2026-01-01T00:00:00Z","qps":10,"services":[{"name":"a","spans_per_sec":1}]}`))
	f.Add([]byte(`{"v":1,"qps":1e308}`))
	f.Add([]byte(`{"v":1,"region":"eu","collector":"r1","at":"2026-01-01T00:00:00Z","qps":10,"role":"router","forwarded_qps":4,` +
		`"services":[{"name":"a","spans_per_sec":10}],"forwarded":[{"name":"a","spans_per_sec":4}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r LoadReport
		if err := Decode(data, &r); err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("Decode accepted an invalid report: %v", err)
		}
	})
}

func TestCollectorFromKeyInvertsCollectorKey(t *testing.T) {
	key, err := CollectorKey("eu-west", "c-1")
	if err != nil {
		t.Fatal(err)
	}
	if r, id, ok := CollectorFromKey(key); !ok || r != "eu-west" || id != "c-1" {
		t.Errorf("CollectorFromKey(%q) = %q, %q, %v", key, r, id, ok)
	}
	for _, bad := range []string{"", "collector", "collector.eu", "collector.eu.a.b", "service.x.y", "collector..id", "collector.eu.bad id"} {
		if _, _, ok := CollectorFromKey(bad); ok {
			t.Errorf("CollectorFromKey(%q) accepted", bad)
		}
	}
	if got := Source(ServiceRegistry, "r1"); got != "otelfleet/registry/r1" {
		t.Errorf("Source = %q", got)
	}
	if got := Source("simulate", ""); got != "otelfleet/simulate" {
		t.Errorf("Source without instance = %q", got)
	}
	if got := Default.Endpoint(ServiceRouter, "route"); got != "otlp.router.route" {
		t.Errorf("router endpoint = %q", got)
	}
}

func TestRouterFromKeyInvertsServiceKey(t *testing.T) {
	key, err := ServiceKey(ServiceRouter, "r-1")
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := RouterFromKey(key); !ok || id != "r-1" {
		t.Errorf("RouterFromKey(%q) = %q, %v", key, id, ok)
	}
	for _, bad := range []string{"", "service.router", "service.router.", "service.router.a.b", "service.sampler.x", "collector.eu.r1", "service.router.bad id"} {
		if _, ok := RouterFromKey(bad); ok {
			t.Errorf("RouterFromKey(%q) accepted", bad)
		}
	}
	subj, err := Default.RouterStatusSubject("r-1")
	if err != nil || subj != "otlp.router.status.r-1" {
		t.Errorf("RouterStatusSubject = %q, %v", subj, err)
	}
	if _, err := Default.RouterStatusSubject("a.b"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("RouterStatusSubject(a.b) err = %v, want ErrInvalidToken", err)
	}
}

func TestRouterStatusValidation(t *testing.T) {
	good := `{"v":1,"router":"r1","region":"eu","received":10,"kept":4,"backends":[{"key":"collector.eu.c1","share":1,"sent":4}]}`
	var st RouterStatus
	if err := Decode([]byte(good), &st); err != nil || st.Backends[0].Sent != 4 {
		t.Fatalf("good status: %+v, %v", st, err)
	}
	tests := map[string]struct{ data, want string }{
		"no router":        {`{"v":1}`, "router:"},
		"bad region":       {`{"v":1,"router":"r1","region":"e u"}`, "region:"},
		"negative kept":    {`{"v":1,"router":"r1","kept":-1}`, "kept: -1 is negative"},
		"backend no key":   {`{"v":1,"router":"r1","backends":[{"sent":1}]}`, "backends[0].key"},
		"backend share":    {`{"v":1,"router":"r1","backends":[{"key":"k","share":2}]}`, "backends[0].share: 2 is outside"},
		"backend negative": {`{"v":1,"router":"r1","backends":[{"key":"k","queue_bytes":-5}]}`, "backends[0].queue_bytes: -5 is negative"},
		"newer schema":     {`{"v":2,"router":"r1"}`, "v"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var st RouterStatus
			err := Decode([]byte(tc.data), &st)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
