#!/usr/bin/env bash
# The response cache's CPU cost (issue #22 point 8), in instructions per request counted by
# valgrind's callgrind (see instructions.sh for why instructions, not wall-clock). Three runs of
# the bench gateway (benches/lib.sh `gateway_conf`) against the same mock upstream:
#   pass  no cache: every request goes to the upstream (distinct questions)
#   miss  model `bench` with `cache: {}`: every request is a distinct question, so each is a miss
#         that is looked up, forwarded, then stored (the memory LRU, 256 MiB)
#   hit   the same cache, one question asked again and again: every counted request is a hit
#         (the warm-up stored it)
# Targets: hit < pass (a hit never touches the upstream), miss ≤ 1.05 × pass.
#   bash benches/cache.sh                        (N=2000, builds the release binaries first)
#   NO_BUILD=1 SY_BIN=target/release/switchyard bash benches/cache.sh   an existing build
#   NO_BUILD=1 BIN_DIR=target/debug N=200 bash benches/cache.sh        the debug build
#   CONFIGS="pass hit" N=500 bash benches/cache.sh
#   KEEP=/tmp/cg bash benches/cache.sh           keeps each run's callgrind profile
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-2000}
WARMUP=${WARMUP:-300}
UP_PORT=${UP_PORT:-18210}
SY_PORT=${SY_PORT:-18211}
SY_ADMIN=${SY_ADMIN:-18212}

. benches/lib.sh
bench_setup valgrind
bin=${BIN_DIR:-$bin}   # BIN_DIR=target/debug: a debug build (figures then only compare within the run)

conf() { # pass|miss|hit
  if [ "$1" = pass ]; then
    gateway_conf $SY_PORT $SY_ADMIN $UP_PORT
  else
    gateway_conf $SY_PORT $SY_ADMIN $UP_PORT | sed 's/^  - name: bench$/  - name: bench\n    cache: {}/'
  fi
}

cat > "$work/client.py" <<'PY'
import http.client, json, sys
port, n, mode, start = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
headers = {"content-type": "application/json"}
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for i in range(start, start + n):
    text = "hello" if mode == "same" else f"hello number {i}"
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": text}]})
    c.request("POST", "/v1/chat/completions", body, headers)
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"status {r.status}")
    # The counted run must be what it claims (the warm-up's first `hit` request is a miss).
    want = {"pass": None, "miss": "miss", "hit": "hit"}[sys.argv[5]]
    got = r.getheader("x-switchyard-cache")
    if start > 0 and got != want:
        sys.exit(f"x-switchyard-cache {got}, expected {want}")
PY

start $bin/mock-upstream --listen 127.0.0.1:$UP_PORT --threads 1
wait_port $UP_PORT
: > "$work/results"
for name in ${CONFIGS:-pass miss hit}; do
  conf $name > "$work/$name.yaml"
  mode=distinct
  [ $name = hit ] && mode=same
  # Counted requests: new questions for pass/miss (never seen in the warm-up), the same for hit.
  client="python3 $work/client.py $SY_PORT"
  callgrind_count $name $SY_PORT "$client $WARMUP $mode 0 $name" \
    "$client $N $mode $WARMUP $name" -- "${SY_BIN:-$bin/switchyard}" run --conf "$work/$name.yaml"
done

python3 - "$work/results" "$N" <<'PY'
import sys
ir = {k: int(v) / int(sys.argv[2]) for k, v in (l.split() for l in open(sys.argv[1]))}
print(f"\nInstructions per request (callgrind, {sys.argv[2]} non-stream requests, all proxy threads)")
for name, v in ir.items():
    rel = f"{v / ir['pass']:.3f}x pass" if "pass" in ir else ""
    print(f"  {name:<5} {v:>9,.0f}   {rel}")
PY
