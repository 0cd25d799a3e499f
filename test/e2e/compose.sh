#!/usr/bin/env bash
# End-to-end test of the docker compose stack with kills: FROM-scratch images (make
# images), NATS permissions on, driven from the host by bin/otelfleet (identity admin)
# and test/e2e/otlpsend (the OTel SDK's OTLP/gRPC exporter through the published 4317).
# Run it with `make e2e`. Host ports are chosen to stay clear of `make run` and of a
# stack started by hand; OTELFLEET_E2E_PROJECT names the compose project.
#
#   1. single node: the routers behind the otlp proxy take traces; docker kill a router
#      mid-stream: clients fail over and every acknowledged trace reaches a sink;
#   2. kill a sink: no acknowledged trace is lost (the routers re-route what it was sent);
#   3. --scale sampler=3, kill the leader: decisions resume under a higher token within
#      LEASE_TTL + one interval;
#   4. an agent identity trying to write the config is refused;
#   5. cluster profile: stop one NATS node under load: every service stays ready, the
#      config and the registrations are intact, traces keep arriving.
set -euo pipefail
cd "$(dirname "$0")/../.."

export OTELFLEET_TAG=${OTELFLEET_TAG:-dev}
export OTELFLEET_NATS_PORT=${OTELFLEET_NATS_PORT:-24222}
export OTELFLEET_NATS_CLUSTER_PORT=${OTELFLEET_NATS_CLUSTER_PORT:-24223}
export OTELFLEET_OTLP_GRPC_PORT=${OTELFLEET_OTLP_GRPC_PORT:-24317}
export OTELFLEET_OTLP_HTTP_PORT=${OTELFLEET_OTLP_HTTP_PORT:-24318}
export OTELFLEET_SINK1_PORT=${OTELFLEET_SINK1_PORT:-28881}
export OTELFLEET_SINK2_PORT=${OTELFLEET_SINK2_PORT:-28882}
export OTELFLEET_SINK3_PORT=${OTELFLEET_SINK3_PORT:-28883}
export OTELFLEET_TOPOLOGY_PORT=${OTELFLEET_TOPOLOGY_PORT:-28080}
export OTELFLEET_SAMPLING_PORT=${OTELFLEET_SAMPLING_PORT:-25778}
project=${OTELFLEET_E2E_PROJECT:-otelfleet-e2e}
lease_ttl=3 sampling_interval=10 # the compose file's LEASE_TTL and the sampler's default interval

work=$(mktemp -d)
sender=$work/otlpsend
go build -o "$sender" ./test/e2e/otlpsend

envfile=()
dc() { docker-compose -p "$project" "${envfile[@]}" -f deploy/compose/docker-compose.yml "$@"; }
# The CLI speaks as admin (writes) over the single node or, in cluster mode, node 1.
nats_url="nats://127.0.0.1:$OTELFLEET_NATS_PORT"
of() { NATS_USER=admin NATS_PASSWORD=${OTELFLEET_PASSWORD_ADMIN:-dev-admin} bin/otelfleet --nats "$nats_url" --timeout 3s "$@"; }
sinks="http://127.0.0.1:$OTELFLEET_SINK1_PORT/v1/sink,http://127.0.0.1:$OTELFLEET_SINK2_PORT/v1/sink,http://127.0.0.1:$OTELFLEET_SINK3_PORT/v1/sink"

failed=0 passed=0 send_pid=
cleanup() {
  if [ -n "$send_pid" ]; then kill "$send_pid" 2>/dev/null || true; fi
  if [ "$failed" != 0 ]; then dc logs --tail=30 || true; fi
  dc down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { failed=1; echo "FAIL: $*" >&2; echo "e2e: $passed passed, 1 failed"; exit 1; }
pass() { passed=$((passed + 1)); echo "ok: $*"; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds. COMMAND runs
# again on every try, so it must be a function or command that probes by itself: never
# pass an expanded "$(...)" (that is evaluated once, before the first try).
wait_for() {
  local limit=$1 deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "$what (not within ${limit}s)"
    sleep 0.5
  done
  pass "$what"
}

# A probe expanded before the wait starts would be checked once and then waited on in vain.
if grep -nE '^[[:space:]]*wait_for .*[$][(]' "$0" >&2; then
  echo "e2e: a wait_for above expands \$(...) once; wrap the probe in a function" >&2; exit 2
fi

containers() { docker ps -q --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1"; }
# every_healthy: every running container of the project reports healthy (or has no healthcheck)
every_healthy() {
  local id h
  for id in $(docker ps -q --filter "label=com.docker.compose.project=$project"); do
    h=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")
    [ "$h" = healthy ] || [ "$h" = none ] || return 1
  done
}
has_services() {
  local out; out=$(of registry ls --kind service -o json)
  for s in config registry topology sampler router; do
    grep -q "\"name\": \"$s\"" <<<"$out" || return 1
  done
}
three_sinks() { [ "$(of registry ls | grep -cE ' sink-[123] +sink-[123]:4317 +healthy ')" -ge 3 ]; }

# start_sending SECONDS: the SDK sender in the background, acknowledged traces in $work/acked
start_sending() {
  rm -f "$work/acked" "$work/ready" "$work/pause" "$work/pause.idle"
  "$sender" send --endpoint "127.0.0.1:$OTELFLEET_OTLP_GRPC_PORT" --out "$work/acked" --for "${1}s" \
    --ready "$work/ready" --ready-after 100 --pause "$work/pause" --max-failures 0 >"$work/send.log" 2>&1 &
  send_pid=$!
}
sending() { [ -e "$work/ready" ]; }
sender_done() { ! kill -0 "$send_pid" 2>/dev/null; }
finish_sending() {
  wait_for 60 "$1: the sender finished" sender_done
  wait "$send_pid" || { cat "$work/send.log" >&2; send_pid=; fail "$1: the sender failed"; }
  send_pid=
  echo "   $(tail -n1 "$work/send.log")"
}
check_arrived() { # DESCRIPTION [check flags...]
  local what=$1; shift
  "$sender" check --acked "$work/acked" --sinks "$sinks" --within 30s "$@" || fail "$what"
  pass "$what"
}

stack_up() { # DESCRIPTION
  dc down -v --remove-orphans >/dev/null 2>&1 || true
  dc up -d >/dev/null || fail "compose up"
  wait_for 120 "$1: the config service answers" of config status
  of config set -f test/e2e/config.yaml --by e2e >/dev/null || fail "config set as admin"
  pass "$1: config set as admin (every trace kept)"
  wait_for 90 "$1: every service lists itself in the registry" has_services
  wait_for 90 "$1: three healthy sinks registered" three_sinks
  wait_for 120 "$1: every container reports healthy" every_healthy
}

# ---- 1. single node, router kill ------------------------------------------------------
stack_up "single node"

start_sending 20
wait_for 60 "traces flow through the proxy to the routers" sending
victim=$(containers router | head -n1)
docker kill "$victim" >/dev/null || fail "docker kill router $victim"
pass "killed router $victim mid-stream"
finish_sending "router kill"
pass "clients failed over (no export failed after the SDK's retries)"
# A router (--ack delivered, the default) answers a request only once a backend took all
# of it, so a SIGKILL loses nothing a client was told was accepted.
check_arrived "zero acknowledged traces lost: every one reached a sink despite the router kill"
wait_for 60 "the remaining containers are healthy" every_healthy

# ---- 2. sink kill -------------------------------------------------------------------------
start_sending 20
wait_for 60 "traces flow again" sending
touch "$work/pause"
paused() { [ -e "$work/pause.idle" ]; }
wait_for 30 "the sender paused with nothing in flight" paused
"$sender" check --acked "$work/acked" --sinks "$sinks" --within 30s >/dev/null || fail "traces before the sink kill"
curl -fsS "http://127.0.0.1:$OTELFLEET_SINK2_PORT/v1/sink?recent=1000000" >"$work/sink2.json" || fail "read sink-2's counts"
docker kill "$(containers sink-2)" >/dev/null || fail "docker kill sink-2"
rm -f "$work/pause"
pass "killed sink-2 (its registration stands until it expires) and resumed sending"
finish_sending "sink kill"

check_arrived "zero acknowledged traces lost: each at a live sink or counted by sink-2 before it died" --also "$work/sink2.json"

# ---- 3. sampler leader kill -----------------------------------------------------------
dc up -d --no-recreate --scale sampler=3 --scale router=2 >/dev/null || fail "scale sampler=3"
three_samplers() { [ "$(containers sampler | wc -l)" -eq 3 ]; }
wait_for 60 "three sampler replicas run" three_samplers
token() { of sampling -o json | sed -n 's/.*"token": \([0-9]*\).*/\1/p' | head -n1; }
has_token() { [ -n "$(token)" ]; }
wait_for 60 "a sampling decision is stored" has_token
sampling_api() { curl -fsS "http://127.0.0.1:$OTELFLEET_SAMPLING_PORT/sampling?service=payment" | grep -q '"samplingRate"'; }
wait_for 30 "the Jaeger remote-sampling API answers through the proxy" sampling_api
before=$(token)
holder=$(of leader ls -o json | tr -d ' \n' | sed -n 's/.*"role":"sampler","holder":"\([^"]*\)".*/\1/p')
[ -n "$holder" ] || fail "no sampler leader in leader ls"
docker kill "${holder%-*}" >/dev/null || fail "kill the sampler leader's container ${holder%-*}"
killed_at=$SECONDS
pass "killed the sampler leader ($holder, token $before)"
new_token() { t=$(token); [ -n "$t" ] && [ "$t" -gt "$before" ]; }
bound=$((lease_ttl + sampling_interval + 2)) # + 2s: polling and docker's own latency
wait_for "$bound" "decisions resume under a higher fencing token" new_token
echo "   resumed after $((SECONDS - killed_at))s (bound: LEASE_TTL ${lease_ttl}s + interval ${sampling_interval}s)"

# ---- 4. an agent may not write the config ------------------------------------------------
version() { of config get -o json | sed -n 's/.*"version": \([0-9]*\).*/\1/p' | head -n1; }
v=$(version)
if [ "${OTELFLEET_NATS_CONF:-nats.conf}" != nats.conf ]; then
  echo "skip: an agent writing the config (OTELFLEET_NATS_CONF=$OTELFLEET_NATS_CONF: permissions off, a debugging run)"
else
sed 's/sampling_rate: 1.0/sampling_rate: 0.5/' test/e2e/config.yaml >"$work/hostile.yaml"
if NATS_USER=agent NATS_PASSWORD=${OTELFLEET_PASSWORD_AGENT:-dev-agent} bin/otelfleet --nats "$nats_url" --timeout 3s \
  config set -f "$work/hostile.yaml" --by agent >"$work/agent.out" 2>&1; then
  cat "$work/agent.out" >&2; fail "an agent identity changed the config"
fi
[ "$(version)" = "$v" ] || fail "config version moved from $v after the agent's attempt"
pass "an agent identity writing the config is refused ($(tr '\n' ' ' <"$work/agent.out" | cut -c1-120))"
fi

# ---- 5. cluster profile, one NATS node stopped under load ------------------------------
envfile=(--env-file deploy/compose/cluster.env)
nats_url="nats://127.0.0.1:$OTELFLEET_NATS_CLUSTER_PORT"
stack_up "cluster"
regs() { of registry ls -o json | tr -d ' \n' | grep -o '"id":"[^"]*"' | sort; }
regs >"$work/regs.before"
cv=$(version)
start_sending 20
wait_for 60 "cluster: traces flow" sending
docker stop -t 0 "$(containers nats2)" >/dev/null || fail "stop nats2"
pass "stopped NATS node nats2 under load"
finish_sending "nats node stop"
check_arrived "cluster: every acknowledged trace reached a sink with a node down"
wait_for 60 "cluster: every service still reports ready" every_healthy
[ "$(version)" = "$cv" ] || fail "cluster: config version $cv became $(version)"
regs_intact() { regs >"$work/regs.after"; comm -23 "$work/regs.before" "$work/regs.after" | grep -q . && return 1; return 0; }
wait_for 30 "cluster: config (version $cv) and every registration intact" regs_intact

echo "e2e: $passed passed, 0 failed"
