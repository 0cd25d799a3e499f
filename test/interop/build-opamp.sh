#!/usr/bin/env bash
# Builds the OpAMP interop binaries into $OPAMP_BIN (default ~/.cache/otelfleet-interop):
#   otelcol-opamp     our collector distribution (test/interop/opampcol: core + opamp extension)
#   opampsupervisor   the contrib supervisor, copied out of the module cache with its
#                     replace directives dropped and built in place
# Each is rebuilt only when its inputs changed (a stamp file next to it records them).
# Needs Go and the Go module proxy only; the binaries never enter the repository.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
OPAMP_BIN=${OPAMP_BIN:-$HOME/.cache/otelfleet-interop}
SUPERVISOR_VERSION=v0.149.0
SUPERVISOR_MODULE=github.com/open-telemetry/opentelemetry-collector-contrib/cmd/opampsupervisor
mkdir -p "$OPAMP_BIN"
export GOWORK=off GOFLAGS=-mod=mod

# stamp <name> <inputs...>: prints the stamp of the inputs (go version + content hashes).
stamp() { { go version; cat "$@"; } | sha256sum | cut -d' ' -f1; }
# fresh <binary> <stamp>: true when the binary exists and was built from these inputs.
fresh() { [[ -x "$1" && -f "$1.stamp" && "$(cat "$1.stamp")" == "$2" ]]; }

col="$OPAMP_BIN/otelcol-opamp"
s=$(stamp "$here/opampcol/main.go" "$here/opampcol/go.mod" "$here/opampcol/go.sum" "$0")
if fresh "$col" "$s"; then
  echo "otelcol-opamp up to date"
else
  echo "building otelcol-opamp"
  (cd "$here/opampcol" && go build -trimpath -ldflags='-s -w' -o "$col.tmp" .)
  mv "$col.tmp" "$col" && echo "$s" >"$col.stamp"
fi

sup="$OPAMP_BIN/opampsupervisor"
s=$(echo "$SUPERVISOR_MODULE@$SUPERVISOR_VERSION" | cat - "$0" | { go version; cat; } | sha256sum | cut -d' ' -f1)
if fresh "$sup" "$s"; then
  echo "opampsupervisor up to date"
else
  echo "building opampsupervisor $SUPERVISOR_VERSION"
  dir=$(go mod download -json "$SUPERVISOR_MODULE@$SUPERVISOR_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d "$dir" ]] || { echo "build-opamp: $SUPERVISOR_MODULE@$SUPERVISOR_VERSION not in the module cache" >&2; exit 1; }
  src="$OPAMP_BIN/src/opampsupervisor"
  rm -rf "$src" && mkdir -p "$src" && cp -R "$dir/." "$src/" && chmod -R u+w "$src"
  # Drop replace directives, one-line and block form: the modules they point at are
  # required at their released versions instead.
  awk '/^replace[[:space:]]*\(/{skip=1; next} skip&&/^\)/{skip=0; next} skip{next} /^replace[[:space:]]/{next} {print}' \
    "$src/go.mod" >"$src/go.mod.new" && mv "$src/go.mod.new" "$src/go.mod"
  (cd "$src" && go build -trimpath -ldflags='-s -w' -o "$sup.tmp" .)
  mv "$sup.tmp" "$sup" && echo "$s" >"$sup.stamp"
fi

"$col" --version
"$sup" --help >/dev/null 2>&1 || true
echo "binaries in $OPAMP_BIN"
