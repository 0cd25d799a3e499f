// Package events is otelfleet's wire contract: the subjects, stream names, KV bucket
// names and keys that users, scripts and outside tools rely on, the event payload types
// (each carrying a schema version field "v"), and the codec that turns payloads into
// NATS messages with CloudEvents headers and back.
//
// Every name is built by exactly one function here. Functions that take a caller-supplied
// token (a region, a collector id, a service name) reject tokens that are not valid NATS
// subject tokens or KV key segments, so a bad name fails loudly at its source instead of
// silently matching the wrong subjects.
package events
