package kvwatch_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWatchSurvivesServerRestart(t *testing.T) {
	srv, nc, kv := bucketWithA(t, "w")
	ctx := context.Background()
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

func TestWatchStartsEachReplayAfterAReconnect(t *testing.T) {
	srv, nc, kv := bucketWithA(t, "s")
	ctx := context.Background()
	var (
		mu      sync.Mutex
		calls   []string
		replays int
	)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		kvwatch.Watch(wctx, nc, kv, "a", kvwatch.Handler{
			Start: func() { mu.Lock(); defer mu.Unlock(); calls = append(calls, "start") },
			Entry: func(e jetstream.KeyValueEntry) {
				mu.Lock()
				defer mu.Unlock()
				if e == nil {
					replays++
					calls = append(calls, "replayed")
					return
				}
				calls = append(calls, e.Key())
			},
		})
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return replays }
	natstest.Eventually(t, 5*time.Second, func() bool { return count() == 1 }, "first replay")
	srv.Restart(t)
	natstest.Eventually(t, 15*time.Second, func() bool { return count() == 2 }, "a second replay after the reconnect")
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(calls, ","); got != "start,a,replayed,start,a,replayed" {
		t.Errorf("calls = %s, want each watch to start, replay a, and end its replay", got)
	}
}

// bucketWithA returns a server, a connection and a file-stored bucket holding a=1.
func bucketWithA(t *testing.T, bucket string) (*natstest.Server, *nats.Conn, jetstream.KeyValue) {
	t.Helper()
	srv := natstest.Run(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: bucket, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	return srv, nc, kv
}
