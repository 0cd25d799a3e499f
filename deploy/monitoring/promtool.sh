#!/usr/bin/env bash
# Prints the path of promtool (the Prometheus rule checker and rule unit tester), built
# from its Go module into a cache outside the repository and reused while the version
# matches. The first build takes minutes; later calls only print the path.
#   PROMTOOL_VERSION  the github.com/prometheus/prometheus module version (default below)
#   OTELFLEET_TOOLS   the cache directory (default ~/.cache/otelfleet-tools)
set -euo pipefail
version="${PROMTOOL_VERSION:-v0.316.0}"
cache="${OTELFLEET_TOOLS:-${HOME}/.cache/otelfleet-tools}"
dir="${cache}/promtool-${version}"
bin="${dir}/promtool"
if [ ! -x "${bin}" ]; then
  mkdir -p "${dir}"
  echo "building promtool ${version} into ${dir} (once; takes minutes)" >&2
  # A build outside any module (no go.work of this repository applies) into a temporary
  # name, renamed when complete, so an interrupted build leaves no broken binary.
  tmp="$(mktemp -d "${dir}/build.XXXXXX")"
  trap 'rm -rf "${tmp}"' EXIT
  (cd "${tmp}" && GOWORK=off GOFLAGS= GOBIN="${tmp}" CGO_ENABLED=0 \
    go install "github.com/prometheus/prometheus/cmd/promtool@${version}") >&2
  mv "${tmp}/promtool" "${bin}"
fi
echo "${bin}"
