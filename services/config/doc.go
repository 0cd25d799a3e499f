// Package configsvc is otelfleet's config service: the global configuration and the
// regional overrides in the KV bucket otlp_config, validated, versioned and written by
// compare-and-set, with history and rollback, served as the NATS micro service
// otlp-config (endpoints otlp.config.get, .put, .validate, .history, .rollback, .status).
//
// Every accepted change bumps the key's version by one, is written with a KV revision
// check (so two writers never silently overwrite each other: the loser gets
// ErrConflict), and is announced on otlp.events.config.changed.
package configsvc
