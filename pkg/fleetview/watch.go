package fleetview

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
)

// KeyFromRegistry splits a registry key collector.<region>.<id> (events.CollectorFromKey);
// ok is false for any other key.
func KeyFromRegistry(key string) (Key, bool) {
	region, id, ok := events.CollectorFromKey(key)
	return Key{region, id}, ok
}

// Run follows the registry bucket kv and the load stream until ctx ends: one watch of
// every registration, replayed after each reconnect (the registrations whose keys
// vanished meanwhile are forgotten), and, once the registry's first replay is applied
// (Loaded), one follower of the load stream from the last report of every reporter
// (CaughtUp after its replay).
func (v *View) Run(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, kv jetstream.KeyValue) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		v.watchRegistry(ctx, nc, kv)
	}()
	select {
	case <-v.loaded:
	case <-ctx.Done():
		return
	}
	loadreport.Follower{NC: nc, JS: js, NS: v.cfg.NS, Log: v.cfg.Log}.Follow(ctx, v.ingest, func() {
		v.replayed.Store(true)
		v.caughtUpOnce.Do(func() { close(v.caughtUp) })
	})
}

// watchRegistry keeps the view in step with every registration in kv.
func (v *View) watchRegistry(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue) {
	log := v.cfg.Log
	first := true
	kvwatch.Run(ctx, nc, kv, ">", func(e jetstream.KeyValueEntry) {
		if e == nil {
			if first {
				first = false
				v.loadedOnce.Do(func() { close(v.loaded) })
				return
			}
			v.resync(ctx, kv)
			return
		}
		if e.Operation() != jetstream.KeyValuePut {
			op := "delete" // delete, purge, or an expiry marker
			if e.Operation() == jetstream.KeyValuePurge {
				op = "expire"
			}
			v.cfg.Registry(op)
			if v.Delete(e.Key()) {
				log.Debug("registration forgotten", "key", e.Key(), "op", op)
			}
			return
		}
		if err := v.PutEntry(e.Key(), e.Value()); err != nil {
			v.cfg.Registry("rejected")
			log.Warn("ignoring registry value that is not a valid registration of its key", "key", e.Key(), "revision", e.Revision(), "err", err)
			return
		}
		v.cfg.Registry("put")
	}, func(err error) { log.Warn("registry watch failed, retrying", "err", err) })
}

// PutEntry applies the registry value data stored under key: a valid registration of
// that very key (events.DecodeRegistrationAt) is recorded; anything else is an error,
// and what was registered under key is forgotten (it is no longer valid).
func (v *View) PutEntry(key string, data []byte) error {
	r, err := events.DecodeRegistrationAt(key, data)
	if err != nil {
		if v.Delete(key) {
			v.cfg.Log.Info("registration forgotten: it is no longer valid", "key", key)
		}
		return err
	}
	v.PutRegistration(&r)
	return nil
}

// resync forgets registrations whose keys are no longer in kv. It runs on the watch
// goroutine, so no update is applied meanwhile; a key written after the replay is
// listed (and kept), a key deleted after it is not (and its delete marker, delivered
// later, finds nothing to forget).
func (v *View) resync(ctx context.Context, kv jetstream.KeyValue) {
	log := v.cfg.Log
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		log.Warn("registry resync: listing keys failed; expired registrations may linger until their next change", "err", err)
		return
	}
	defer func() { _ = lister.Stop() }()
	keep := map[string]struct{}{}
	for key := range lister.Keys() {
		keep[key] = struct{}{}
	}
	if ctx.Err() != nil {
		log.Warn("registry resync: listing keys timed out")
		return
	}
	if n := v.Retain(keep); n > 0 {
		log.Info("forgot registrations no longer in the registry after a resync", "registrations", n)
	}
}

// ingest decodes one message of the load stream (loadreport.DecodeJetStream, under this
// view's subject root) and records it.
func (v *View) ingest(msg jetstream.Msg) {
	root, _, _, err := loadreport.ParseSubject(msg.Subject())
	if err == nil && root != v.cfg.NS.Root() {
		err = fmt.Errorf("%w: subject %q: root %q, want %q", loadreport.ErrInvalid, msg.Subject(), root, v.cfg.NS.Root())
	}
	var r events.LoadReport
	if err == nil {
		r, err = loadreport.DecodeJetStream(msg)
	}
	if err != nil {
		v.cfg.Reports(0, msg.Subject(), msg.Data(), err)
		v.cfg.Log.Debug("load report rejected", "subject", msg.Subject(), "err", err)
		return
	}
	// A message with more behind it is (most likely) part of a replay: the first one at
	// start, or the one after a reconnect re-created the consumer.
	var stored time.Time
	replaying := !v.replayed.Load()
	if md, err := msg.Metadata(); err == nil {
		stored = md.Timestamp
		replaying = replaying || md.NumPending > 0
	}
	v.cfg.Reports(v.putReport(&r, stored, replaying), msg.Subject(), nil, nil)
}
