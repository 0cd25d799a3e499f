// Package opampsvc is the OpAMP server (micro service otlp-opamp): stock OpenTelemetry
// Collectors running the opamp extension or the opampsupervisor connect to /v1/opamp
// (WebSocket or plain HTTP) and join the fleet.
//
// The replica holding an agent's connection keeps its state in memory and in NATS: the
// agent's events.AgentState under agent.<uid> in the agents bucket and its registration
// collector.<region>.<id> in the registry bucket, both written at once on a change and
// refreshed every TTL/3 while the agent is connected; a closed or silent connection stops
// the refreshes, so both keys expire within the bucket TTL, and a clean disconnect deletes
// them at once. An agent may reconnect to any replica: writes to agent.<uid> are
// compare-and-set on the replica's last revision, and a replica that finds another
// replica's newer write lets the agent go.
//
// The collector's own metrics, offered as own_metrics connection settings pointing at
// /v1/metrics on the same port (OTLP/HTTP, protobuf or JSON), become its load report on
// otlp.load.<region>.<id>. The replica watches desired.<uid> in the rollouts bucket and
// pushes a desired config to the agents it holds that accept remote config and run
// another hash; the status they report goes back into their AgentState.
package opampsvc
