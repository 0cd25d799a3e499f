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

func routerRegistration(region, id string) []byte {
	at := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	data, err := events.Encode(events.Registration{V: events.RegistrationVersion, ID: id, InstanceKind: events.KindService,
		Name: events.ServiceRouter, Region: region, Address: id + ":4317", Health: events.Health{Status: events.HealthHealthy},
		RegisteredAt: at, UpdatedAt: at, Generation: 1})
	if err != nil {
		panic(err)
	}
	return data
}

// TestWatchRoutersFollowsTheRegistry: routers count in the region their registration
// names, forged or foreign values are rejected, and a collector Watch on the same
// bucket never sees a router.
func TestWatchRoutersFollowsTheRegistry(t *testing.T) {
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
	put("service.router.r1", routerRegistration("eu", "r1"))
	put("service.router.r2", routerRegistration("eu", "other")) // describes another router
	put("service.router.r3", registration("eu", "r3"))          // a collector's registration
	put("service.router.r4", routerRegistration("", "r4"))      // no region
	put("service.sampler.s1", routerRegistration("eu", "s1"))   // not a router key
	put("collector.eu.c1", registration("eu", "c1"))

	routers, collectors := registered.NewRouterSet(), registered.NewSet()
	var mu sync.Mutex
	counts := map[string]int{}
	loaded := make(chan struct{}, 2)
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		registered.WatchRouters(wctx, nc, kv, routers, registered.Options{
			Loaded: func() { loaded <- struct{}{} },
			Count:  func(op string) { mu.Lock(); defer mu.Unlock(); counts[op]++ },
		})
	}()
	go func() {
		defer wg.Done()
		registered.Watch(wctx, nc, kv, collectors, registered.Options{Loaded: func() { loaded <- struct{}{} }})
	}()
	defer func() { cancel(); wg.Wait() }()
	for range 2 {
		select {
		case <-loaded:
		case <-time.After(10 * time.Second):
			t.Fatal("first replay never ended")
		}
	}
	if !routers.Has("eu", "r1") || routers.Has("us", "r1") || routers.Has("eu", "r2") || routers.Has("eu", "other") ||
		routers.Has("eu", "r3") || routers.Has("", "r4") || routers.Len() != 1 {
		t.Fatalf("routers after the replay: len %d", routers.Len())
	}
	if collectors.Len() != 1 || collectors.Has("eu", "r1") {
		t.Fatalf("collectors after the replay: len %d (a router counted as a collector?)", collectors.Len())
	}
	mu.Lock()
	if counts["rejected"] != 3 || counts["put"] != 1 {
		t.Fatalf("counts %v, want 1 put and 3 rejected", counts)
	}
	mu.Unlock()

	// A router that moves region counts in the new one only; a deleted one not at all.
	gen := routers.Generation()
	put("service.router.r1", routerRegistration("us", "r1"))
	put("service.router.r5", routerRegistration("eu", "r5"))
	natstest.Eventually(t, 5*time.Second, func() bool {
		return routers.Has("us", "r1") && !routers.Has("eu", "r1") && routers.Has("eu", "r5") && routers.Generation() != gen
	}, "moved and added routers")
	if err := kv.Delete(ctx, "service.router.r5"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() bool { return !routers.Has("eu", "r5") && routers.Len() == 1 }, "deleted router forgotten")

	// Resync after a reconnect forgets a router whose key vanished meanwhile.
	srv.Stop()
	routers.Put(&events.Registration{Region: "eu", ID: "ghost"})
	srv.Restart(t)
	natstest.Eventually(t, 20*time.Second, func() bool { return !routers.Has("eu", "ghost") && routers.Has("us", "r1") }, "resync after the reconnect")
}
