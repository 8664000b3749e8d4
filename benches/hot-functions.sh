#!/usr/bin/env bash
# Writes gateway/link/hot-functions.txt: the release gateway's functions that took CPU under load,
# hottest first, which gateway/build.rs hands to the linker so that they sit together at the
# start of `.text` (see its doc). Three loads, each its own profile, weighed alike: no auth,
# key + limits + budget + SQLite ledger, and streams (wrk -c32 on CPU 0, the gateway alone on
# CPU 1, `perf record` sampling the CPU clock). Names are the mangled ones the linker sees.
#   bash benches/hot-functions.sh                then rebuild: cargo build --release -p switchyard
#   DURATION=30 bash benches/hot-functions.sh    longer profiles (default 20 s each: 8 s missed
#                                                ~50 lukewarm functions; 20 s measured ~1 % better)
# Run it again when the request path changed much, or the dependencies' versions did (their
# symbols' hashes change with them; a stale name is skipped, it only costs layout).
#   NO_BUILD=1 CARGO_TARGET_DIR=/tmp/t bash benches/hot-functions.sh   profiles a build made there
# How many of the list's names a build has (all but a few, or the list is stale):
#   nm --defined-only target/release/switchyard | awk '{print $3}' | grep -cxF -f gateway/link/hot-functions.txt
# Needs perf (Debian: linux-perf) and 2 CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
UP_PORT=${UP_PORT:-18950}
SY_PORT=${SY_PORT:-18951}
SY_ADMIN=${SY_ADMIN:-18952}
OUT=gateway/link/hot-functions.txt

command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf; }
. benches/lib.sh
bench_setup wrk

start taskset -c 0 $bin/mock-upstream --listen 127.0.0.1:$UP_PORT --threads 1
wait_port $UP_PORT
for load in none gov stream; do
  case $load in
    gov) governed_conf $SY_PORT $SY_ADMIN $UP_PORT "$work/ledger.db" > "$work/$load.yaml"
         stream="" ;;
    none) gateway_conf $SY_PORT $SY_ADMIN $UP_PORT > "$work/$load.yaml"; stream="" ;;
    stream) gateway_conf $SY_PORT $SY_ADMIN $UP_PORT > "$work/$load.yaml"; stream='"stream":true,' ;;
  esac
  taskset -c 1 "$bin/switchyard" run --conf "$work/$load.yaml" > "$work/$load.log" 2>&1 &
  pid=$!
  pids+=($pid)
  wait_port $SY_PORT 30
  body="{\"model\":\"bench\",$stream\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}"
  run() { BENCH_AUTH="Bearer $BENCH_KEY" BENCH_BODY=$body taskset -c 0 wrk -t1 -c32 -d"$1" \
    -s benches/post.lua "http://127.0.0.1:$SY_PORT/v1/chat/completions" > /dev/null; }
  run 2s
  perf record -q -F 2999 -p $pid -o "$work/$load.data" -- sleep "$DURATION" > /dev/null 2>&1 &
  rec=$!
  run "${DURATION}s"
  wait $rec || true
  kill $pid; wait $pid 2>/dev/null || true
  perf report -i "$work/$load.data" --no-children --no-demangle --dsos switchyard --sort sym -n \
    --stdio 2>/dev/null | grep '%' | grep -v '^#' > "$work/$load.txt"
done

python3 - "$OUT" "$work"/none.txt "$work"/gov.txt "$work"/stream.txt <<'PY'
import collections, re, sys
weight = collections.Counter()
for path in sys.argv[2:]:
    rows = []
    for line in open(path):
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+\[\.\]\s+(\S+)", line)
        if m:
            rows.append((m.group(2), int(m.group(1))))
    total = sum(n for _, n in rows) or 1
    for name, n in rows:
        weight[name] += n / total
names = [name for name, _ in weight.most_common()]
with open(sys.argv[1], "w") as out:
    out.write("".join(f"{n}\n" for n in names))
print(f"{sys.argv[1]}: {len(names)} functions")
PY
