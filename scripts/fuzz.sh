#!/usr/bin/env bash
# Runs every cargo-fuzz target of the adapters crate (adapters/fuzz) for a bounded time and fails
# when any of them finds a crash (a panic, an overflow, a failed assertion, a timeout, an OOM).
#
# Usage: scripts/fuzz.sh [--list] [TARGET...]
#   --list          print the fuzz targets, one a line, and exit
#   TARGET...       run only these targets (default: all of them)
# Environment:
#   FUZZ_SECONDS    seconds per target (default 10). With the 17 targets the default run takes
#                   4-5 minutes on 2 cores: 45 s to 2 min for the one cold build of all targets
#                   (seconds when warm), then 17 x 10 s of fuzzing (measured: 4 min cold).
#   FUZZ_SANITIZER  address (default) or none (faster; the crate has no unsafe code).
#   FUZZ_WORK_DIR   where the inputs the fuzzer discovers are kept between runs (default
#                   adapters/fuzz/target/work-corpus); the committed seeds in
#                   adapters/fuzz/corpus/<target> are only read.
#   CARGO_TARGET_DIR  honoured (passed to cargo fuzz as --target-dir).
#   FUZZ_TOOLCHAIN  stable: use the stable toolchain even when a nightly is installed.
#
# Uses `cargo +nightly fuzz` when rustup has a nightly toolchain, else `RUSTC_BOOTSTRAP=1 cargo
# fuzz` on the stable toolchain; installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when it
# is missing. A crash leaves its input in adapters/fuzz/artifacts/<target>/; reproduce it with
# `cargo +nightly fuzz run <target> <artifact>` from adapters/.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fuzz_dir=$root/adapters/fuzz

all_targets=()
for f in "$fuzz_dir"/fuzz_targets/*.rs; do
    all_targets+=("$(basename "$f" .rs)")
done

if [[ ${1:-} == "--list" ]]; then
    printf '%s\n' "${all_targets[@]}"
    exit 0
fi
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=("${all_targets[@]}")
fi
for t in "${targets[@]}"; do
    if [[ ! -f $fuzz_dir/fuzz_targets/$t.rs ]]; then
        echo "fuzz.sh: unknown target '$t' (see --list)" >&2
        exit 2
    fi
done

seconds=${FUZZ_SECONDS:-10}
sanitizer=${FUZZ_SANITIZER:-address}
work=${FUZZ_WORK_DIR:-$fuzz_dir/target/work-corpus}

if [[ ${FUZZ_TOOLCHAIN:-} != stable ]] && command -v rustup >/dev/null 2>&1 \
    && rustup toolchain list | grep -q '^nightly'; then
    cargo=(cargo +nightly)
else
    export RUSTC_BOOTSTRAP=1
    cargo=(cargo)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

build_args=(--sanitizer "$sanitizer")
if [[ -n ${CARGO_TARGET_DIR:-} ]]; then
    build_args+=(--target-dir "$CARGO_TARGET_DIR")
fi

cd "$root/adapters"
start=$SECONDS
echo "fuzz.sh: building ${#all_targets[@]} targets (${cargo[*]} fuzz, sanitizer $sanitizer)"
"${cargo[@]}" fuzz build "${build_args[@]}"

failed=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "$work/logs"
    log=$work/logs/$t.log
    # The first corpus directory receives new inputs; the committed seeds are read only.
    if "${cargo[@]}" fuzz run "${build_args[@]}" "$t" "$work/$t" "$fuzz_dir/corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
        echo "fuzz.sh: $t ok (${runs:-?} runs in ${seconds}s)"
    else
        echo "fuzz.sh: $t FAILED; the end of its log ($log):" >&2
        tail -n 40 "$log" >&2
        failed+=("$t")
    fi
done

echo "fuzz.sh: ${#targets[@]} targets in $((SECONDS - start))s"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: crashes in: ${failed[*]} (inputs under adapters/fuzz/artifacts/)" >&2
    exit 1
fi
