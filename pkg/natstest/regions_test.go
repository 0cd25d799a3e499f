package natstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestLeafMirrorThroughCutAndHeal: a KV bucket at the hub, mirrored into a region's
// domain over a leaf link, keeps serving its last values while the link is cut, and
// catches up after the heal; a black-holed link is closed by the leaf's pings.
func TestLeafMirrorThroughCutAndHeal(t *testing.T) {
	hub := Hub(t)
	eu, link := Leaf(t, hub, "eu")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, hubJS := hub.JetStream(t)
	src, err := hubJS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "cfg", History: 5})
	if err != nil {
		t.Fatal(err)
	}
	_, euJS := eu.JetStream(t)
	var mirror jetstream.KeyValue
	Eventually(t, 10*time.Second, func() bool {
		mirror, err = euJS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "cfg", History: 5,
			Mirror: &jetstream.StreamSource{Name: "cfg", Domain: HubDomain}})
		return err == nil
	}, "mirror created: %v", err)

	put := func(v string) {
		t.Helper()
		if _, err := src.Put(ctx, "global", []byte(v)); err != nil {
			t.Fatalf("put at the hub: %v", err)
		}
	}
	value := func() string {
		e, err := mirror.Get(ctx, "global")
		if err != nil {
			return "error: " + err.Error()
		}
		return string(e.Value())
	}
	put("v1")
	Eventually(t, 10*time.Second, func() bool { return value() == "v1" }, "v1 mirrored, have %q", value())

	link.Cut()
	Eventually(t, 10*time.Second, func() bool { return !eu.Linked() }, "leaf notices the cut")
	for i := 2; i <= 5; i++ {
		put(fmt.Sprintf("v%d", i))
	}
	if got := value(); got != "v1" {
		t.Fatalf("region reads %q while cut off, want its last value v1", got)
	}
	link.Heal()
	healed := time.Now()
	Eventually(t, 30*time.Second, func() bool { return value() == "v5" }, "v5 mirrored after the heal, have %q", value())
	t.Logf("caught up %v after the heal", time.Since(healed).Round(time.Millisecond))

	link.BlackHole()
	holed := time.Now()
	Eventually(t, 10*time.Second, func() bool { return !eu.Linked() }, "leaf notices the black hole")
	t.Logf("black hole noticed by the leaf after %v", time.Since(holed).Round(time.Millisecond))
	link.Heal()
	Eventually(t, 10*time.Second, func() bool { return eu.Linked() }, "leaf link back")
	put("v6")
	Eventually(t, 30*time.Second, func() bool { return value() == "v6" }, "v6 mirrored, have %q", value())

	// A put through the region's mirror handle is a publish on $KV.cfg.global: over
	// the link the hub's bucket takes it, and the mirror brings it back.
	if _, err := mirror.Put(ctx, "global", []byte("via-region")); err != nil {
		t.Fatalf("put from the region while linked: %v", err)
	}
	if e, err := src.Get(ctx, "global"); err != nil || string(e.Value()) != "via-region" {
		t.Fatalf("the hub holds %v, %v after a put from the region", e, err)
	}
	Eventually(t, 10*time.Second, func() bool { return value() == "via-region" }, "mirrored back, have %q", value())
	// Cut off, the same put fails fast (no stream answers in the region).
	link.Cut()
	Eventually(t, 10*time.Second, func() bool { return !eu.Linked() }, "leaf notices the cut")
	start := time.Now()
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if _, err := mirror.Put(pctx, "global", []byte("cut")); err == nil {
		t.Error("a put from the cut-off region succeeded")
	} else {
		t.Logf("put while cut off failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	if value() != "via-region" {
		t.Errorf("the region reads %q after a refused put", value())
	}
}
