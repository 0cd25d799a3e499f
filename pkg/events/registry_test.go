package events_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
)

func sampleRegistration() events.Registration {
	at := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	return events.Registration{
		V: events.RegistrationVersion, ID: "c1", InstanceKind: events.KindCollector, Region: "eu-west-1",
		Address: "10.0.0.1:4317", CapacityQPS: 5000, Metadata: map[string]string{"zone": "a"},
		Health: events.Health{Status: events.HealthHealthy, CPU: 0.2, Memory: 0.4, Checks: []events.CheckResult{
			{Name: "cpu", Status: events.HealthHealthy}, {Name: "memory", Status: events.HealthHealthy},
		}},
		Version: "1.0.0", RegisteredAt: at, UpdatedAt: at, Generation: 1,
	}
}

func TestRegistrationRoundTripAndKey(t *testing.T) {
	r := sampleRegistration()
	data, err := events.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"v":1`, `"id":"c1"`, `"kind":"collector"`, `"capacity_qps":5000`, `"registered_at"`, `"health":{"status":"healthy"`} {
		if !strings.Contains(string(data), field) {
			t.Errorf("JSON %s lacks %s", data, field)
		}
	}
	back, err := events.DecodeRegistration(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Fatalf("round trip: %+v, want %+v", back, r)
	}
	if key, err := r.Key(); err != nil || key != "collector.eu-west-1.c1" {
		t.Fatalf("Key() = %q, %v", key, err)
	}
	svc := events.Registration{InstanceKind: events.KindService, Name: "config", ID: "i1"}
	if key, err := svc.Key(); err != nil || key != "service.config.i1" {
		t.Fatalf("service Key() = %q, %v", key, err)
	}
}

func TestRegistrationValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*events.Registration)
		field  string // expected in the error; "" for valid
	}{
		{name: "valid", mutate: func(*events.Registration) {}},
		{name: "bad kind", mutate: func(r *events.Registration) { r.InstanceKind = "router" }, field: "kind"},
		{name: "collector without region", mutate: func(r *events.Registration) { r.Region = "" }, field: "region"},
		{name: "id with a dot", mutate: func(r *events.Registration) { r.ID = "a.b" }, field: "id"},
		{name: "negative capacity", mutate: func(r *events.Registration) { r.CapacityQPS = -1 }, field: "capacity_qps"},
		{name: "unknown health", mutate: func(r *events.Registration) { r.Health.Status = "fine" }, field: "health.status"},
		{name: "cpu above 1", mutate: func(r *events.Registration) { r.Health.CPU = 1.5 }, field: "health.cpu"},
		{name: "check without name", mutate: func(r *events.Registration) { r.Health.Checks[0].Name = "" }, field: "checks[0].name"},
		{name: "no registered_at", mutate: func(r *events.Registration) { r.RegisteredAt = time.Time{} }, field: "registered_at"},
		{name: "service without name", mutate: func(r *events.Registration) { r.InstanceKind = events.KindService }, field: "name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sampleRegistration()
			tc.mutate(&r)
			err := r.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

func TestRegistrationChanged(t *testing.T) {
	base := sampleRegistration()
	tests := []struct {
		name   string
		mutate func(*events.Registration)
		want   []string
	}{
		{name: "heartbeat only", mutate: func(r *events.Registration) {
			r.UpdatedAt = r.UpdatedAt.Add(time.Second)
			r.Health.CPU, r.Health.Memory, r.Health.ProcessRSSBytes = 0.9, 0.1, 123
			r.Health.Checks[0].Message = "cpu 90%"
		}},
		{name: "health status", mutate: func(r *events.Registration) { r.Health.Status = events.HealthDegraded }, want: []string{"health.status"}},
		{name: "check status", mutate: func(r *events.Registration) { r.Health.Checks[1].Status = events.HealthUnhealthy }, want: []string{"health.checks"}},
		{name: "checks reordered", mutate: func(r *events.Registration) {
			r.Health.Checks[0], r.Health.Checks[1] = r.Health.Checks[1], r.Health.Checks[0]
		}},
		{name: "address and capacity", mutate: func(r *events.Registration) { r.Address = "x:1"; r.CapacityQPS = 1 }, want: []string{"address", "capacity_qps"}},
		{name: "metadata", mutate: func(r *events.Registration) { r.Metadata = map[string]string{"zone": "b"} }, want: []string{"metadata"}},
		{name: "re-registered", mutate: func(r *events.Registration) { r.RegisteredAt = r.RegisteredAt.Add(time.Minute) }, want: []string{"registered_at"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sampleRegistration()
			r.Health.Checks = append([]events.CheckResult(nil), base.Health.Checks...)
			tc.mutate(&r)
			if got := r.Changed(base); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Changed() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRegistryEventIDIsDeterministic(t *testing.T) {
	r := sampleRegistration()
	tests := []struct {
		name string
		ev   events.RegistryEvent
		want string
	}{
		{name: "registered", ev: events.RegistryEvent{Event: events.EventRegistryRegistered, Key: "collector.eu-west-1.c1", Revision: 7, Registration: &r},
			want: "registered/collector.eu-west-1.c1/1795680000000000000"},
		{name: "updated", ev: events.RegistryEvent{Event: events.EventRegistryUpdated, Key: "collector.eu-west-1.c1", Revision: 9, Registration: &r},
			want: "updated/collector.eu-west-1.c1/1795680000000000000/g1"},
		{name: "expired", ev: events.RegistryEvent{Event: events.EventRegistryExpired, Key: "collector.eu-west-1.c1", Revision: 12, Registration: &r},
			want: "expired/collector.eu-west-1.c1/r12"},
		{name: "deregistered", ev: events.RegistryEvent{Event: events.EventRegistryDeregistered, Key: "collector.eu-west-1.c1", Revision: 13},
			want: "deregistered/collector.eu-west-1.c1/r13"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.ev.EventID(); got != tc.want {
				t.Fatalf("EventID() = %q, want %q", got, tc.want)
			}
			if tc.ev.Kind() != string(tc.ev.Event) {
				t.Fatalf("Kind() = %q", tc.ev.Kind())
			}
		})
	}
	legacy := r
	legacy.Generation = 0
	ev := events.RegistryEvent{Event: events.EventRegistryUpdated, Key: "k", Revision: 5, Registration: &legacy}
	if got := ev.EventID(); !strings.HasSuffix(got, "/r5") {
		t.Fatalf("updated without generation: %q, want the revision", got)
	}
}

func TestRegistryEventValidate(t *testing.T) {
	r := sampleRegistration()
	good := events.RegistryEvent{V: 1, Event: events.EventRegistryExpired, Key: "collector.eu-west-1.c1", InstanceKind: events.KindCollector, ID: "c1", Registration: &r}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.Event = events.EventConfigChanged
	if err := bad.Validate(); err == nil {
		t.Fatal("accepted a non-registry event type")
	}
	if _, err := events.NewMsg("otlp.events.registry.expired", "test", good); err != nil {
		t.Fatal(err)
	}
	if got := events.CEType(good); got != "io.otelfleet.registry.expired.v1" {
		t.Fatalf("ce-type %q", got)
	}
}

func TestLockKeys(t *testing.T) {
	if k, err := events.LockKey("deploy"); err != nil || k != "lock.deploy" {
		t.Fatalf("LockKey = %q, %v", k, err)
	}
	if _, err := events.LockKey("a.b"); !errors.Is(err, events.ErrInvalidToken) {
		t.Fatalf("LockKey(a.b): %v, want ErrInvalidToken", err)
	}
	for key, want := range map[string]string{"lock.deploy": "deploy", "sampler": "", "lock.": "", "lock.a.b": ""} {
		got, ok := events.LockFromKey(key)
		if got != want || ok != (want != "") {
			t.Errorf("LockFromKey(%q) = %q, %v", key, got, ok)
		}
	}
}

func TestDecodeRegistrationAtChecksTheKey(t *testing.T) {
	data, err := events.Encode(sampleRegistration())
	if err != nil {
		t.Fatal(err)
	}
	if r, err := events.DecodeRegistrationAt("collector.eu-west-1.c1", data); err != nil || r.ID != "c1" {
		t.Fatalf("own key: %+v, %v", r, err)
	}
	for _, key := range []string{"collector.eu-west-1.c9", "collector.us-east-1.c1", "service.c1.c1", ""} {
		_, err := events.DecodeRegistrationAt(key, data)
		if !errors.Is(err, events.ErrWrongKey) || !strings.Contains(err.Error(), "describes collector.eu-west-1.c1") {
			t.Errorf("key %q: %v, want ErrWrongKey naming the value's key", key, err)
		}
	}
	if _, err := events.DecodeRegistrationAt("collector.eu-west-1.c1", []byte("{")); !errors.Is(err, events.ErrMalformed) {
		t.Errorf("malformed: %v", err)
	}
}

func FuzzDecodeRegistration(f *testing.F) {
	good, _ := events.Encode(sampleRegistration())
	f.Add(good)
	f.Add([]byte(`{"v":1,"id":"c1","kind":"service","name":"x","health":{"status":"healthy"},"registered_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"v":1,"kind":"collector","capacity_qps":-1e308,"health":{"cpu":2}}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := events.DecodeRegistration(data)
		if err != nil {
			if !errors.Is(err, events.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// Anything accepted is valid, has a key, and survives a round trip.
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted an invalid registration: %v", err)
		}
		if _, err := r.Key(); err != nil {
			t.Fatalf("accepted a registration without a key: %v", err)
		}
		again, err := events.Encode(r)
		if err != nil {
			t.Fatalf("decoded value does not re-encode: %v", err)
		}
		back, err := events.DecodeRegistration(again)
		if err != nil {
			t.Fatalf("re-encoded value does not decode: %v", err)
		}
		if len(back.Changed(r)) != 0 {
			t.Fatalf("round trip changed %v", back.Changed(r))
		}
	})
}
