#!/usr/bin/env bash
# The request-path issue's own measure (#16): oha at c=32 against the bare Pingora hop and
# Switchyard (no auth; key + limits + budget + SQLite ledger; streams), one proxy at a time, all
# against one mock, in rounds: each round loads the hop and then each Switchyard config for
# DURATION seconds, and every ratio (RPS and proxy CPU per request, all threads) is taken against
# the hop of the same round, so a host that drifts between rounds moves both alike. Prints each
# round and the medians.
#   bash benches/oha.sh                         5 rounds of 5 s
#   ROUNDS=7 DURATION=3 bash benches/oha.sh
#   SY_BIN=/tmp/old/switchyard NO_BUILD=1 bash benches/oha.sh   another build's gateway
#   PIN=0 bash benches/oha.sh                   no CPU pinning (by default each proxy runs on
#                                               CPU 1, the mock and oha on CPU 0)
# oha is built into ~/.cargo/bin (`cargo install oha --locked`) when it is missing. Loopback only;
# every process is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
PIN=${PIN:-1}
UP_PORT=${UP_PORT:-18500}

. benches/lib.sh
bench_setup wrk
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
[ -x "$OHA" ] || cargo install oha --locked -q
[ "$(nproc)" -ge 2 ] || { echo "oha.sh needs 2 CPUs" >&2; exit 1; }
cpu0=() cpu1=()
[ "$PIN" = 1 ] && cpu0=(taskset -c 0) cpu1=(taskset -c 1)

start "${cpu0[@]}" $bin/mock-upstream --listen 127.0.0.1:$UP_PORT --threads 1
start "${cpu1[@]}" $bin/bare-hop --listen 127.0.0.1:$((UP_PORT + 1)) --upstream 127.0.0.1:$UP_PORT --threads 1
hop_pid=${pids[-1]}
gateway_conf $((UP_PORT + 2)) $((UP_PORT + 12)) $UP_PORT > "$work/none.yaml"
start "${cpu1[@]}" "${SY_BIN:-$bin/switchyard}" run --conf "$work/none.yaml"; none_pid=${pids[-1]}
governed_conf $((UP_PORT + 3)) $((UP_PORT + 13)) $UP_PORT "$work/ledger.db" > "$work/gov.yaml"
start "${cpu1[@]}" "${SY_BIN:-$bin/switchyard}" run --conf "$work/gov.yaml"; gov_pid=${pids[-1]}
for p in $UP_PORT $((UP_PORT + 1)) $((UP_PORT + 2)) $((UP_PORT + 3)); do wait_port $p; done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime of every thread, in ticks
body() { echo "{\"model\":\"$1\",${2:+\"stream\":true,}\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}"; }
# load NAME PORT PID MODEL [STREAM] -> "NAME requests rps cpu_ticks non2xx" on stdout
load() {
  local c0 c1
  c0=$(cpu "$3")
  "${cpu0[@]}" "$OHA" -z "${DURATION}s" -c "$CONNS" --no-tui --output-format json -m POST \
    -H "content-type: application/json" -H "authorization: Bearer $BENCH_KEY" \
    -d "$(body "$4" "${5:-}")" "http://127.0.0.1:$2/v1/chat/completions" > "$work/oha.json"
  c1=$(cpu "$3")
  python3 - "$1" "$((c1 - c0))" "$work/oha.json" <<'PY'
import json, sys
name, ticks, path = sys.argv[1:]
s = json.load(open(path))
codes = s.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k.startswith("2"))
print(name, ok, s["summary"]["requestsPerSec"], ticks, sum(codes.values()) - ok)
PY
}

# One unmeasured second each, then the rounds.
for t in "hop $((UP_PORT + 1)) $hop_pid mock-model" "none $((UP_PORT + 2)) $none_pid bench" \
  "gov $((UP_PORT + 3)) $gov_pid bench"; do
  set -- $t; DURATION=1 load "$@" > /dev/null
done
: > "$work/rounds"
for r in $(seq 1 "$ROUNDS"); do
  {
    load hop $((UP_PORT + 1)) $hop_pid mock-model
    load none $((UP_PORT + 2)) $none_pid bench
    load gov $((UP_PORT + 3)) $gov_pid bench
    load hop-stream $((UP_PORT + 1)) $hop_pid mock-model 1
    load none-stream $((UP_PORT + 2)) $none_pid bench 1
  } | sed "s/^/$r /" >> "$work/rounds"
done

python3 - "$work/rounds" "$CONNS" "$DURATION" "$PIN" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
from collections import defaultdict
path, conns, duration, pin, tick = sys.argv[1:]
runs = defaultdict(dict)
for line in open(path):
    r, name, ok, rps, ticks, bad = line.split()
    if int(bad):
        sys.exit(f"round {r}: {bad} answers to {name} were not 2xx")
    runs[r][name] = (int(ok), float(rps), int(ticks) / int(tick))
where = "proxy on CPU 1, mock and oha on CPU 0" if pin == "1" else "no pinning"
print(f"\noha -c{conns}, {duration}s a run, {len(runs)} rounds ({where}); ratios against the hop of the same round")
pairs = [("none", "hop"), ("gov", "hop"), ("none-stream", "hop-stream")]
print(f"{'round':>5} " + " ".join(f"{b + ' ' + what:>22}" for b, _ in pairs for what in ("RPS", "CPU/req")))
ratios = defaultdict(list)
for r, m in runs.items():
    cells = []
    for b, a in pairs:
        (na, rpsa, ca), (nb, rpsb, cb) = m[a], m[b]
        rps, cpu = rpsb / rpsa, (cb / nb) / (ca / na)
        ratios[b, "rps"].append(rps)
        ratios[b, "cpu"].append(cpu)
        cells += [f"{rps:>22.3f}", f"{cpu:>22.3f}"]
    print(f"{r:>5} " + " ".join(cells))
for b, a in pairs:
    hop_rps = statistics.median(m[a][1] for m in runs.values())
    hop_cpu = statistics.median(m[a][2] / m[a][0] * 1e3 for m in runs.values())
    print(f"{b:>12} vs {a:<10}  RPS {statistics.median(ratios[b, 'rps']):.3f}x  "
          f"CPU/request {statistics.median(ratios[b, 'cpu']):.3f}x   "
          f"(medians; the hop: {hop_rps:,.0f} RPS, {hop_cpu:.4f} ms CPU a request)")
PY
