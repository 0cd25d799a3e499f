#!/usr/bin/env bash
# Builds the interop test's OpenTelemetry Collector distribution (otelcol/, its own Go
# module, not in go.work) into $INTEROP_BIN (default ~/.cache/otelfleet-interop) and
# prints the binary's path. A binary built from the same sources and Go version is
# reused. Never commit the binary.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
INTEROP_BIN=${INTEROP_BIN:-$HOME/.cache/otelfleet-interop}
bin=$INTEROP_BIN/otelcol-interop
mkdir -p "$INTEROP_BIN"

stamp=$(cd "$here/otelcol" && { cat main.go go.mod go.sum; go version; } | sha256sum | cut -d' ' -f1)
if [[ -x $bin && -f $bin.stamp && $(cat "$bin.stamp") == "$stamp" ]]; then
  echo "$bin"
  exit 0
fi
echo "building $bin (takes minutes the first time)" >&2
cd "$here/otelcol"
GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$bin.tmp" .
mv "$bin.tmp" "$bin"
echo "$stamp" >"$bin.stamp"
echo "$bin"
