#!/usr/bin/env bash
# Builds Switchyard and runs it on conf/quickstart.yaml (offline: the built-in mock provider).
# Installs the one system package the build needs (cmake, for Pingora's zlib-ng) when missing.
# Extra arguments replace the config file: bash scripts/quickstart.sh conf/full.yaml
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v cc >/dev/null || need+=(build-essential)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (needed to build Pingora)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

conf="${1:-conf/quickstart.yaml}"
cargo build --release -p switchyard
exec ./target/release/switchyard run --conf "$conf"
