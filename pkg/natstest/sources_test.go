package natstest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestRegionRegistrySourcedUp: a region's TTL bucket sourced into a hub aggregate
// without a TTL of its own. Puts, deletes and the region's TTL expiries (limit markers)
// reach the hub; while the link is cut the hub keeps the last values (it expires
// nothing for the region), and after the heal what happened meanwhile arrives.
func TestRegionRegistrySourcedUp(t *testing.T) {
	hub := Hub(t)
	eu, link := Leaf(t, hub, "eu")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, euJS := eu.JetStream(t)
	reg, err := euJS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "reg", History: 1, TTL: 2 * time.Second, LimitMarkerTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, hubJS := hub.JetStream(t)
	agg, err := hubJS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "reg_all", History: 1,
		Sources: []*jetstream.StreamSource{{Name: "reg", Domain: "eu"}}})
	if err != nil {
		t.Fatal(err)
	}
	get := func(key string) string {
		e, err := agg.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return "absent"
		case err != nil:
			return "error: " + err.Error()
		}
		return string(e.Value())
	}
	if _, err := reg.Put(ctx, "collector.eu.a", []byte("a1")); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Put(ctx, "collector.eu.b", []byte("b1")); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, func() bool { return get("collector.eu.a") == "a1" && get("collector.eu.b") == "b1" }, "sourced up: a=%s b=%s", get("collector.eu.a"), get("collector.eu.b"))
	if err := reg.Delete(ctx, "collector.eu.b"); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, func() bool { return get("collector.eu.b") == "absent" }, "delete sourced up: b=%s", get("collector.eu.b"))
	// a is not refreshed: its TTL expiry in the region reaches the hub as a marker.
	Eventually(t, 15*time.Second, func() bool { return get("collector.eu.a") == "absent" }, "expiry sourced up: a=%s", get("collector.eu.a"))

	if _, err := reg.Put(ctx, "collector.eu.c", []byte("c1")); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, func() bool { return get("collector.eu.c") == "c1" }, "c sourced up")
	link.Cut()
	Eventually(t, 10*time.Second, func() bool { return !eu.Linked() }, "leaf notices the cut")
	// c expires in the region and d joins, while the hub cannot hear it.
	Eventually(t, 15*time.Second, func() bool {
		_, err := reg.Get(ctx, "collector.eu.c")
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}, "c expires in the region")
	if got := get("collector.eu.c"); got != "c1" {
		t.Fatalf("the hub shows c as %q during the cut; it must keep the last value", got)
	}
	if _, err := reg.Put(ctx, "collector.eu.d", []byte("d1")); err != nil {
		t.Fatal(err)
	}
	link.Heal()
	healed := time.Now()
	Eventually(t, 30*time.Second, func() bool { return get("collector.eu.c") == "absent" && get("collector.eu.d") == "d1" }, "after the heal: c=%s d=%s", get("collector.eu.c"), get("collector.eu.d"))
	t.Logf("hub aggregate converged %v after the heal", time.Since(healed).Round(time.Millisecond))
}
