#!/usr/bin/env bash
# Runs every test of Switchyard on a fresh machine: formatting, lints, Rust unit and integration
# tests (the real gateway against local mock upstreams), and the Python tests that drive the
# gateway with the official OpenAI SDK. Installs what is missing (Debian packages, a venv).
#   bash scripts/test.sh          everything (what CI runs)
#   bash scripts/test.sh --quick  skip fmt and clippy
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1
section() { printf '\n=== %s ===\n' "$*"; }

section "system packages"
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v systemd-analyze >/dev/null || need+=(systemd)   # the unit file is verified
command -v openssl >/dev/null || need+=(openssl)           # TLS tests make a throwaway CA
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
echo "ok"

section "python venv (.venv)"
req=tests/python/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r "$req"
  echo "$want" > "$stamp"
fi
.venv/bin/python -c 'import openai, pytest; print("openai", openai.__version__, "pytest", pytest.__version__)'

if [ $quick -eq 0 ]; then
  section "cargo fmt --check"
  cargo fmt --all -- --check
  section "cargo clippy"
  cargo clippy --workspace --all-targets -- -D warnings
fi

section "cargo test"
cargo test --workspace

section "python tests (official openai SDK)"
cargo build -p switchyard -p switchyard-benches --bins
SWITCHYARD_BIN="$PWD/target/debug/switchyard" MOCK_UPSTREAM_BIN="$PWD/target/debug/mock-upstream" \
  .venv/bin/python -m pytest tests/python -q
