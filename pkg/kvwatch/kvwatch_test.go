package kvwatch_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWatchSurvivesServerRestart(t *testing.T) {
	srv := natstest.Run(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "w", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]string{}
	replays := 0
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		kvwatch.Run(wctx, nc, kv, "", func(e jetstream.KeyValueEntry) {
			mu.Lock()
			defer mu.Unlock()
			if e == nil {
				replays++
				return
			}
			seen[e.Key()] = string(e.Value())
		}, nil)
	}()
	get := func(k string) string { mu.Lock(); defer mu.Unlock(); return seen[k] }
	natstest.Eventually(t, 5*time.Second, func() bool { return get("a") == "1" }, "initial value")

	srv.Restart(t)
	natstest.Eventually(t, 15*time.Second, func() bool {
		_, err := kv.Put(ctx, "b", []byte("2"))
		return err == nil
	}, "put after restart")
	natstest.Eventually(t, 15*time.Second, func() bool { return get("b") == "2" }, "update after the restart reaches the watcher")
	mu.Lock()
	if replays < 2 {
		t.Errorf("replays = %d, want the initial one and one after the reconnect", replays)
	}
	mu.Unlock()
	cancel()
	<-done
}
