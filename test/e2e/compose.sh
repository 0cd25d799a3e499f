#!/usr/bin/env bash
# End-to-end test of the docker compose stack: a 3-node JetStream cluster and every
# service in FROM-scratch images (make images), driven from the host with bin/otelfleet.
# Run it with `make e2e`. Host ports are chosen to stay clear of `make run`.
set -euo pipefail
cd "$(dirname "$0")/../.."

export OTELFLEET_NATS_PORT=${OTELFLEET_NATS_PORT:-24222}
export OTELFLEET_TOPOLOGY_PORTS=${OTELFLEET_TOPOLOGY_PORTS:-28080-28083}
export OTELFLEET_SAMPLING_PORTS=${OTELFLEET_SAMPLING_PORTS:-25778-25781}
project=otelfleet-e2e
dc() { docker-compose -p "$project" -f deploy/compose/docker-compose.yml "$@"; }
of() { bin/otelfleet --nats "nats://127.0.0.1:$OTELFLEET_NATS_PORT" --timeout 3s "$@"; }

failed=0
cleanup() {
  if [ "$failed" != 0 ]; then dc logs --tail=40 || true; fi
  dc down -v --remove-orphans >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail() { failed=1; echo "FAIL: $*" >&2; echo "e2e: $passed passed, 1 failed"; exit 1; }
passed=0
pass() { passed=$((passed + 1)); echo "ok: $*"; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds. COMMAND runs
# again on every try, so it must be a function or command that probes by itself: never
# pass an expanded "$(...)" (that is evaluated once, before the first try).
wait_for() {
  local limit=$1 deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "$what (not within ${limit}s)"
    sleep 1
  done
  pass "$what"
}

# A probe expanded before the wait starts would be checked once and then waited on in vain.
if grep -nE '^[[:space:]]*wait_for .*[$][(]' "$0" >&2; then
  echo "e2e: a wait_for above expands \$(...) once; wrap the probe in a function" >&2; exit 2
fi

dc down -v --remove-orphans >/dev/null 2>&1 || true
dc up -d

wait_for 90 "config service answers through the cluster" of config status
of config set -f examples/global-config.yaml --by e2e >/dev/null || fail "config set"
pass "config set"

has_services() {
  local out; out=$(of registry ls --kind service -o json)
  for s in config registry topology sampler; do
    grep -q "\"name\": \"$s\"" <<<"$out" || return 1
  done
}
wait_for 60 "every service lists itself in the registry" has_services

twelve_collectors() { [ "$(of topology -o json | grep -c '"id": "sim-')" -ge 12 ]; }
wait_for 60 "topology shows the simulated fleet (3 regions x 4 collectors)" twelve_collectors

# Docker picks the host port from the published range: ask it which.
sampling_json() {
  local port; port=$(dc port --index=1 sampler 5778 | sed 's/.*://')
  curl -fsS "http://127.0.0.1:$port/sampling?service=payment" | grep -q '"samplingRate"'
}
wait_for 60 "the Jaeger remote-sampling API answers" sampling_json

token() { of sampling -o json | sed -n 's/.*"token": \([0-9]*\).*/\1/p' | head -n1; }
has_token() { [ -n "$(token)" ]; }
wait_for 60 "a sampling decision is stored" has_token

dc up -d --scale sampler=2 >/dev/null
two_samplers() { [ "$(docker ps -q --filter "label=com.docker.compose.project=$project" --filter label=com.docker.compose.service=sampler | wc -l)" -eq 2 ]; }
wait_for 60 "a second sampler replica runs" two_samplers
before=$(token)
holder=$(of leader ls -o json | tr -d ' \n' | sed -n 's/.*"role":"sampler","holder":"\([^"]*\)".*/\1/p')
[ -n "$holder" ] || fail "no sampler leader in leader ls"
container=${holder%-*}
docker kill "$container" >/dev/null || fail "kill leader container $container"
pass "killed the sampler leader ($holder)"
new_token() { t=$(token); [ -n "$t" ] && [ "$t" -gt "$before" ]; }
wait_for 30 "decisions resume under a higher fencing token" new_token

echo "e2e: $passed passed, 0 failed"
