#!/usr/bin/env bash
# Runs every cargo-fuzz target of the adapters crate (adapters/fuzz: the provider decoders) and of
# the filters crate (filters/fuzz: the JWT and JWKS parsers) for a bounded time and fails when any
# of them finds a crash (a panic, an overflow, a failed assertion, a timeout, an OOM).
#
# Usage: scripts/fuzz.sh [--list] [TARGET...]
#   --list          print the fuzz targets, one a line, and exit
#   TARGET...       run only these targets (default: all of them)
# Environment:
#   FUZZ_SECONDS    seconds per target (default 10). With the 18 targets the default run takes
#                   5-6 minutes on 2 cores: 45 s to 2 min for the cold build of each fuzz crate
#                   (seconds when warm), then 18 x 10 s of fuzzing. Only the crates of the named
#                   targets are built.
#   FUZZ_SANITIZER  address (default) or none (faster; the crate has no unsafe code).
#   FUZZ_WORK_DIR   where the inputs the fuzzer discovers are kept between runs (default
#                   <crate>/fuzz/target/work-corpus); the committed seeds in
#                   <crate>/fuzz/corpus/<target> are only read.
#   CARGO_TARGET_DIR  honoured (passed to cargo fuzz as --target-dir).
#   FUZZ_TOOLCHAIN  stable: use the stable toolchain even when a nightly is installed.
#
# Uses `cargo +nightly fuzz` when rustup has a nightly toolchain, else `RUSTC_BOOTSTRAP=1 cargo
# fuzz` on the stable toolchain; installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when it
# is missing. A crash leaves its input in <crate>/fuzz/artifacts/<target>/; reproduce it with
# `cargo +nightly fuzz run <target> <artifact>` from <crate>/ (adapters/ or filters/).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The cargo-fuzz crates (each excluded from the main workspace), and which one holds each target.
fuzz_dirs=("$root/adapters/fuzz" "$root/filters/fuzz")
all_targets=()
declare -A dir_of
for d in "${fuzz_dirs[@]}"; do
    for f in "$d"/fuzz_targets/*.rs; do
        t=$(basename "$f" .rs)
        all_targets+=("$t")
        dir_of[$t]=$d
    done
done

if [[ ${1:-} == "--list" ]]; then
    printf '%s\n' "${all_targets[@]}"
    exit 0
fi
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
    exit 0
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=("${all_targets[@]}")
fi
for t in "${targets[@]}"; do
    if [[ -z ${dir_of[$t]:-} ]]; then
        echo "fuzz.sh: unknown target '$t' (see --list)" >&2
        exit 2
    fi
done

seconds=${FUZZ_SECONDS:-10}
sanitizer=${FUZZ_SANITIZER:-address}

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

start=$SECONDS
# Each crate that holds a requested target is built once (all of its targets).
for d in "${fuzz_dirs[@]}"; do
    n=0
    for t in "${targets[@]}"; do
        if [[ ${dir_of[$t]} == "$d" ]]; then
            n=$((n + 1))
        fi
    done
    if [[ $n -eq 0 ]]; then
        continue
    fi
    echo "fuzz.sh: building ${d#"$root"/} (${cargo[*]} fuzz, sanitizer $sanitizer)"
    (cd "$(dirname "$d")" && "${cargo[@]}" fuzz build "${build_args[@]}")
done

failed=()
for t in "${targets[@]}"; do
    fuzz_dir=${dir_of[$t]}
    work=${FUZZ_WORK_DIR:-$fuzz_dir/target/work-corpus}
    mkdir -p "$work/$t" "$work/logs"
    log=$work/logs/$t.log
    # The first corpus directory receives new inputs; the committed seeds are read only.
    if (cd "$(dirname "$fuzz_dir")" && "${cargo[@]}" fuzz run "${build_args[@]}" "$t" \
        "$work/$t" "$fuzz_dir/corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1); then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
        echo "fuzz.sh: $t ok (${runs:-?} runs in ${seconds}s)"
    else
        echo "fuzz.sh: $t FAILED; the end of its log ($log):" >&2
        tail -n 40 "$log" >&2
        failed+=("$t (${fuzz_dir#"$root"/}/artifacts/$t/)")
    fi
done

echo "fuzz.sh: ${#targets[@]} targets in $((SECONDS - start))s"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
