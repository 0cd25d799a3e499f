package registered_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/registered"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestKeyFromRegistry(t *testing.T) {
	tests := []struct {
		key  string
		want registered.Key
		ok   bool
	}{
		{"collector.eu.c1", registered.Key{Region: "eu", ID: "c1"}, true},
		{"service.router.r1", registered.Key{}, false},
		{"collector.eu", registered.Key{}, false},
		{"collector.eu.c1.extra", registered.Key{}, false},
		{"collector..c1", registered.Key{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, ok := registered.KeyFromRegistry(tt.key)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("KeyFromRegistry(%q) = %v, %v", tt.key, got, ok)
			}
		})
	}
}

func registration(region, id string) []byte {
	at := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	data, err := events.Encode(events.Registration{V: events.RegistrationVersion, ID: id, InstanceKind: events.KindCollector,
		Region: region, Address: id + ":4317", Health: events.Health{Status: events.HealthHealthy}, RegisteredAt: at, UpdatedAt: at, Generation: 1})
	if err != nil {
		panic(err)
	}
	return data
}

func TestWatchFollowsTheRegistry(t *testing.T) {
	srv := natstest.Run(t)
	nc, js := srv.JetStream(t)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "reg", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, data []byte) {
		t.Helper()
		if _, err := kv.Put(ctx, key, data); err != nil {
			t.Fatal(err)
		}
	}
	put("collector.eu.c1", registration("eu", "c1"))
	put("collector.eu.c2", registration("eu", "c2"))
	put("collector.eu.c3", registration("us", "c3")) // describes another collector
	put("collector.eu.c4", []byte("garbage"))

	set := registered.NewSet()
	var mu sync.Mutex
	counts := map[string]int{}
	loaded := make(chan struct{})
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		registered.Watch(wctx, nc, kv, set, registered.Options{
			Loaded: func() { close(loaded) },
			Count:  func(op string) { mu.Lock(); defer mu.Unlock(); counts[op]++ },
		})
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-loaded:
	case <-time.After(10 * time.Second):
		t.Fatal("first replay never ended")
	}
	if !set.Has("eu", "c1") || !set.Has("eu", "c2") || set.Has("eu", "c3") || set.Has("us", "c3") || set.Has("eu", "c4") || set.Len() != 2 {
		t.Fatalf("after the replay: c1 %v c2 %v c3 %v c4 %v len %d", set.Has("eu", "c1"), set.Has("eu", "c2"), set.Has("eu", "c3"), set.Has("eu", "c4"), set.Len())
	}
	mu.Lock()
	if counts["rejected"] != 2 || counts["put"] != 2 {
		t.Fatalf("counts %v, want 2 put and 2 rejected", counts)
	}
	mu.Unlock()
	if err := kv.Delete(ctx, "collector.eu.c1"); err != nil {
		t.Fatal(err)
	}
	put("collector.eu.c2", []byte(`{"v":1}`)) // a registration that became invalid
	put("collector.us.c5", registration("us", "c5"))
	natstest.Eventually(t, 5*time.Second, func() bool {
		return !set.Has("eu", "c1") && !set.Has("eu", "c2") && set.Has("us", "c5") && set.Len() == 1
	}, "deleted and invalid registrations forgotten, a new one added")

	// A replica cut off while a registration expired forgets it at the next replay.
	srv.Stop()
	set.Put(&events.Registration{Region: "eu", ID: "ghost"})
	srv.Restart(t)
	natstest.Eventually(t, 20*time.Second, func() bool { return !set.Has("eu", "ghost") && set.Has("us", "c5") }, "resync after the reconnect")
}
