#!/usr/bin/env bash
# The router against the collector contrib loadbalancingexporter, same offered load, same run.
#
#   peer:  the peer's own bench.sh (telemetrygen -> LB collector -> two nop collectors)
#   ours:  telemetrygen --OTLP/gRPC--> otelfleet-router --OTLP/gRPC--> two nop collectors
#          (the same collector binary and nop config as the peer's backends, registered by
#          otelfleet agent --metrics-url; the control plane runs in otelfleet dev with
#          --router=false --sinks 0 --simulate=false, and a config that keeps every span
#          and sets no rate limits, so both sides deliver everything they accept)
#
# Both sides: same telemetrygen flags, same window (1 s after the generator starts to 1 s
# before it ends), CPU = utime+stime of the balancing process over the window, RSS =
# its VmHWM, loss = spans it accepted minus spans the backends accepted after draining.
# Every process listens on 127.0.0.1, is started here, and is stopped by its PID on exit.
#
# Env (defaults in brackets):
#   DURATION [20] WORKERS [64] RATE [1000] CHILD_SPANS [4] GEN_BATCH_SIZE [512] GEN_QUEUE [8192]
#   COMPRESSION [gzip]   export compression on both sides (gzip or none)
#   SKIP_PEER [0]        1: measure the router only
#   PEER_DIR [<repo>/../shared/peers/lbexporter]  the peer's bench.sh
#   PEER_BIN [~/.cache/otelfleet-peers]           otelcol-lb and telemetrygen (the peer's build.sh)
#   AGENT_METRICS [1]    1: the backends' agents also scrape them and publish their load (--metrics-url); empty: registration only
#   KEEP [0]             1: keep the run folder (configs, logs)
# Needs bin/otelfleet and bin/otelfleet-router (make build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-20}
((DURATION >= 5)) || { echo "DURATION must be >= 5" >&2; exit 2; }
WORKERS=${WORKERS:-64}
RATE=${RATE:-1000}
CHILD_SPANS=${CHILD_SPANS:-4}
GEN_BATCH_SIZE=${GEN_BATCH_SIZE:-512}
GEN_QUEUE=${GEN_QUEUE:-8192}
COMPRESSION=${COMPRESSION:-gzip}
SKIP_PEER=${SKIP_PEER:-0}
PEER_DIR=${PEER_DIR:-$root/../shared/peers/lbexporter}
PEER_BIN=${PEER_BIN:-$HOME/.cache/otelfleet-peers}
KEEP=${KEEP:-0}
AGENT_METRICS=${AGENT_METRICS-1}
COL=$PEER_BIN/otelcol-lb
GEN=$PEER_BIN/telemetrygen
CLI=$root/bin/otelfleet
ROUTER=$root/bin/otelfleet-router
H=127.0.0.1

for b in "$COL" "$GEN" "$CLI" "$ROUTER"; do
  [[ -x $b ]] || { echo "missing $b (make build; the peer's build.sh for otelcol-lb and telemetrygen)" >&2; exit 2; }
done
[[ $COMPRESSION == gzip || $COMPRESSION == none ]] || { echo "COMPRESSION must be gzip or none" >&2; exit 2; }

# ---------- the peer, first (its script cleans up after itself) ----------
peer_line="(peer skipped)"
if [[ $SKIP_PEER != 1 ]]; then
  [[ -x $PEER_DIR/bench.sh ]] || { echo "missing $PEER_DIR/bench.sh (set PEER_DIR)" >&2; exit 2; }
  echo "== peer: loadbalancingexporter" >&2
  peer_out=$(DURATION=$DURATION WORKERS=$WORKERS RATE=$RATE CHILD_SPANS=$CHILD_SPANS GEN_BATCH_SIZE=$GEN_BATCH_SIZE \
    GEN_QUEUE=$GEN_QUEUE LB_COMPRESSION=$COMPRESSION PEER_BIN=$PEER_BIN "$PEER_DIR/bench.sh")
  echo "$peer_out" >&2
  peer_line=$(tail -1 <<<"$peer_out")
fi

# ---------- ours ----------
echo "== ours: otelfleet-router" >&2
RUN=$(mktemp -d -t router-bench.XXXXXX)
PIDS=()
stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local up=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && up=1; done
    ((up)) || break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [[ $KEEP == 1 ]]; then echo "run folder kept: $RUN" >&2; else rm -rf "$RUN"; fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

USED=" "
pick() { # VAR START: sets VAR to a loopback port from START up that nothing listens on and no other VAR got
  local p=$2
  while [[ -n $(ss -Htan "sport = :$p" 2>/dev/null) || $USED == *" $p "* ]]; do p=$((p + 1)); done
  USED+="$p "
  printf -v "$1" %s "$p"
}
port=47300
for v in NATS_PORT DEV_ADMIN SAMPLING R_GRPC R_HTTP R_ADMIN S1 S2 S1M S2M; do pick "$v" "$port"; port=$((port + 1)); done
NATS=nats://$H:$NATS_PORT

cat >"$RUN/fleet.yaml" <<YAML
global:
  sampling_rate: 1.0
  sampling_strategies:
    - type: fixed
      rate: 1.0
YAML
backend_yaml() { # grpc port, metrics port: the peer's backend shape (otlp in, nop out)
  cat <<YAML
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: $H:$1
exporters:
  nop: {}
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: normal
      readers:
        - pull:
            exporter:
              prometheus: {host: $H, port: $2, without_scope_info: true, without_units: true, without_type_suffix: true}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [nop]
YAML
}
backend_yaml "$S1" "$S1M" >"$RUN/sink1.yaml"
backend_yaml "$S2" "$S2M" >"$RUN/sink2.yaml"

spawn() { # name, command...: runs it in the background, logging to $RUN/name.log; sets PID_<name>
  local name=$1; shift
  "$@" >"$RUN/$name.log" 2>&1 &
  PIDS+=($!)
  printf -v "PID_$name" %s "$!"
}
until_ok() { # what, seconds, command...: polls the command every 0.1 s
  local what=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$what not ready after ${secs}s; logs in $RUN" >&2; KEEP=1; exit 1
}
accepted() { # metrics port: otelcol_receiver_accepted_spans summed over series
  curl -sf --max-time 2 "http://$H:$1/metrics" | awk '/^#/ {next} { split($1, a, "{"); m=a[1]; sub(/_total$/, "", m); if (m=="otelcol_receiver_accepted_spans") s+=$NF } END {printf "%.0f\n", s+0}'
}
status_field() { # field of `otelfleet router status -o json` (the router's own counter)
  "$CLI" --nats "$NATS" router status -o json | awk -v f="\"$1\":" '$1==f {gsub(/,/, "", $2); print $2; exit}'
}
ticks() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }; s=${s##*) }; awk '{print $12 + $13}' <<<"$s"; }
now() { date +%s.%N; }
calc() { awk "BEGIN{printf \"$1\n\", $2}"; }
TCK=$(getconf CLK_TCK)

spawn dev "$CLI" dev --router=false --sinks 0 --simulate=false --data-dir "$RUN/data" --nats-port "$NATS_PORT" \
  --admin-addr "$H:$DEV_ADMIN" --sampling-addr "$H:$SAMPLING" --config "$RUN/fleet.yaml" --log-level warn
until_ok "otelfleet dev" 30 "$CLI" --nats "$NATS" --timeout 1s config status
spawn sink1 "$COL" --config "file:$RUN/sink1.yaml"
spawn sink2 "$COL" --config "file:$RUN/sink2.yaml"
until_ok sink1 15 curl -sf "http://$H:$S1M/metrics"
until_ok sink2 15 curl -sf "http://$H:$S2M/metrics"
spawn agent1 "$CLI" --nats "$NATS" agent --region local --id bench-sink1 --endpoint "$H:$S1" ${AGENT_METRICS:+--metrics-url "http://$H:$S1M/metrics"}
spawn agent2 "$CLI" --nats "$NATS" agent --region local --id bench-sink2 --endpoint "$H:$S2" ${AGENT_METRICS:+--metrics-url "http://$H:$S2M/metrics"}
NATS_URL=$NATS REGION=local ADMIN_ADDR=$H:$R_ADMIN OTLP_GRPC_ADDR=$H:$R_GRPC OTLP_HTTP_ADDR=$H:$R_HTTP \
  ROUTER_EXPORT_COMPRESSION=$COMPRESSION LOG_LEVEL=warn spawn router "$ROUTER"
two_backends() { [[ $("$CLI" --nats "$NATS" router status -o json | grep -c '"key": "collector.local.bench-sink') == 2 ]]; }
until_ok "router with two backends (if otelfleet registry ls shows them unhealthy: the host CPU is at or above 98%, which the registrations count against a collector; run on a quieter machine)" 30 two_backends

base_kept=$(status_field kept); s1_0=$(accepted "$S1M"); s2_0=$(accepted "$S2M")
(
  export OTEL_BSP_MAX_QUEUE_SIZE=$GEN_QUEUE
  exec timeout -s KILL $((DURATION + 30)) "$GEN" traces --otlp-endpoint "$H:$R_GRPC" --otlp-insecure \
    --duration "${DURATION}s" --rate "$RATE" --workers "$WORKERS" --child-spans "$CHILD_SPANS" --batch-size "$GEN_BATCH_SIZE" \
    --service checkout --otlp-attributes 'deployment.environment.name="bench"' --otlp-attributes 'service.version="1.4.2"' \
    --telemetry-attributes 'http.request.method="GET"' --telemetry-attributes 'http.route="/api/v1/orders/{id}"' \
    --telemetry-attributes 'http.response.status_code=200' --telemetry-attributes 'user_agent.original="bench/1.0"'
) >"$RUN/gen.log" 2>&1 &
GEN_PID=$!
PIDS+=("$GEN_PID")
sleep 1
t0=$(now); c0=$(ticks "$PID_router"); k0=$(status_field kept)
sleep $((DURATION - 2))
t1=$(now); c1=$(ticks "$PID_router"); k1=$(status_field kept)
wait "$GEN_PID" 2>/dev/null || true
prev=-1
for _ in $(seq 40); do # drain: until the backends' counts stop moving
  cur=$(($(accepted "$S1M") + $(accepted "$S2M")))
  [[ $cur == "$prev" ]] && break
  prev=$cur; sleep 0.5
done
kept_all=$(($(status_field kept) - base_kept))
s1=$(($(accepted "$S1M") - s1_0)); s2=$(($(accepted "$S2M") - s2_0))
dropped=$("$CLI" --nats "$NATS" router status -o json | awk '$1=="\"dropped\":" {gsub(/,/, "", $2); s+=$2} END {print s+0}')
# Spans of requests refused as busy (UNAVAILABLE with a retry delay) are counted kept, then
# sent again by the client: each such request explains its spans of "loss" below.
busy=$(curl -sf --max-time 2 "http://$H:$R_ADMIN/metrics" | awk '/^otelfleet_router_requests_total\{/ && /outcome="busy"/ && /signal="traces"/ {s+=$NF} END {printf "%.0f\n", s+0}')
after_submit=$(curl -sf --max-time 2 "http://$H:$R_ADMIN/metrics" | awk '/^otelfleet_router_backpressure_after_submit_total/ {s+=$NF} END {printf "%.0f\n", s+0}')
hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$PID_router/status")
win=$(calc %.3f "$t1 - $t0")
cpu=$(calc %.3f "($c1 - $c0) / $TCK")
rate=$(calc %.0f "($k1 - $k0) / $win")
per_cpu=$(calc %.0f "($k1 - $k0) / ($cpu > 0 ? $cpu : 1e-9)")
rss=$(calc %.0f "$hwm / 1024")
loss=$((kept_all - s1 - s2))
echo "config: duration=${DURATION}s workers=$WORKERS rate=$RATE child_spans=$CHILD_SPANS gen_batch=$GEN_BATCH_SIZE compression=$COMPRESSION cores=$(nproc)" >&2
echo "ours: window ${win}s, router kept in window $((k1 - k0)), whole run $kept_all; backends sink1=$s1 sink2=$s2; router dropped=$dropped; busy-refused requests=$busy (their spans count as kept and come again), backpressure after submit=$after_submit spans; router cpu-s=$cpu" >&2
our_line="router: $rate spans/s, $per_cpu spans per router cpu-second, rss $rss MiB, loss $loss (kept minus delivered; $busy busy-refused requests retried by the client)"
echo "$peer_line"
echo "$our_line"
if ((busy > 0)); then
  echo "warning: the router refused $busy requests as busy: its backends were marked unhealthy or full during the run (on a saturated host the agents' registrations turn unhealthy at 98% host CPU), so the offered load was not the peer's; re-run on a quieter machine" >&2
fi
if [[ $SKIP_PEER != 1 ]]; then
  peer_cpu=$(sed -n 's/.* \([0-9]*\) spans per LB cpu-second.*/\1/p' <<<"$peer_line")
  peer_rss=$(sed -n 's/.*rss \([0-9]*\) MiB.*/\1/p' <<<"$peer_line")
  [[ -n $peer_cpu && -n $peer_rss ]] && echo "router/peer: $(calc %.2f "$per_cpu / $peer_cpu")x spans per cpu-second, $(calc %.2f "$rss / $peer_rss")x rss"
fi
