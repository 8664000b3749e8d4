#!/usr/bin/env bash
# Runs every test of Switchyard on a fresh machine: formatting, lints, Rust unit and integration
# tests (the real gateway against local mock upstreams, Redis for the shared-store tests), the
# Python tests that drive the gateway with the official OpenAI and Anthropic SDKs, and a bounded
# fuzzing run of every wire-format decoder (scripts/fuzz.sh). Installs only what is missing
# (Debian packages, the venv in .venv/, cargo-fuzz), so a second run on a prepared machine needs
# no network.
#
#   bash scripts/test.sh          everything (what CI runs, through .ci/run)
#   bash scripts/test.sh --quick  skip `cargo fmt --check`, `cargo clippy` and fuzzing (local iteration)
#
# Exits non-zero on the first failure and names the section that failed.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "scripts/test.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

current="start"
section() {
  current="$*"
  printf '\n=== %s ===\n' "$*"
}
trap 'rc=$?; [ $rc -eq 0 ] || printf "\n*** FAILED (exit %s) in section: %s ***\n" "$rc" "$current" >&2' EXIT

section "system packages"
# cargo may be installed by rustup without being on PATH (non-login shells, CI).
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup" >&2; exit 1; }
need=()
command -v cmake >/dev/null || need+=(cmake)                 # Pingora's zlib-ng build
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v systemd-analyze >/dev/null || need+=(systemd)     # the unit file is verified
command -v openssl >/dev/null || need+=(openssl)             # TLS tests make a throwaway CA
command -v redis-server >/dev/null || need+=(redis-server)   # shared-store tests start their own
# The fleet tests start a throwaway PostgreSQL cluster (initdb is not on PATH on Debian).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)           # the status page's browser test
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 "${need[@]}"
fi
if [ $quick -eq 0 ]; then
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
fi
cargo --version
echo "ok"

section "python venv (.venv)"
req=tests/python/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if ! .venv/bin/python -c '' 2>/dev/null || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "(re)creating .venv from $req"
  python3 -m venv --clear .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
else
  echo "up to date ($req unchanged)"
fi
.venv/bin/python -c 'import openai, pytest; print("openai", openai.__version__, "pytest", pytest.__version__)'

if [ $quick -eq 0 ]; then
  section "cargo fmt --check"
  cargo fmt --all -- --check
  section "cargo clippy -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings
else
  echo; echo "(--quick: skipping cargo fmt and cargo clippy)"
fi

section "local model artefacts (scripts/fetch-models.sh: ONNX Runtime, MiniLM; sha256-checked)"
PYTHON=.venv/bin/python bash scripts/fetch-models.sh

section "cargo test"
cargo test --workspace

section "build the gateway and the mock upstream (debug)"
cargo build -p switchyard -p switchyard-benches --bins

section "python tests (official openai and anthropic SDKs)"
bins="${CARGO_TARGET_DIR:-$PWD/target}/debug"   # where cargo built them (CARGO_TARGET_DIR honoured)
SWITCHYARD_BIN="$bins/switchyard" MOCK_UPSTREAM_BIN="$bins/mock-upstream" \
  .venv/bin/python -m pytest tests/python -q

if [ $quick -eq 0 ]; then
  section "fuzz every decoder (scripts/fuzz.sh, ${FUZZ_SECONDS:-10}s per target)"
  bash scripts/fuzz.sh
fi

current="done"
