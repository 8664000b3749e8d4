#!/usr/bin/env bash
# Load bench: direct vs bare Pingora hop vs Switchyard, in one run, against the same local mock
# upstream. Prints RPS, p50, p99 and proxy CPU per request for each, and the ratios.
#   bash benches/load.sh                 (DURATION=10 seconds per run by default)
#   GOV_ROUNDS=5 DURATION=3 bash benches/load.sh   (+ 5 back-to-back sy+key/sy+gov pairs per c)
#   PAIRED_ROUNDS=5 (default; 0 skips): governance vs none at once on one shared core (paired.sh)
# Loopback only; every run is bounded by DURATION; all processes are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
STREAM_SAMPLES=${STREAM_SAMPLES:-200}
UP_PORT=${UP_PORT:-18000}
HOP_PORT=${HOP_PORT:-18001}
SY_PORT=${SY_PORT:-18002}
SY_ADMIN=${SY_ADMIN:-18003}
SLOW_UP_PORT=${SLOW_UP_PORT:-18010}
SLOW_HOP_PORT=${SLOW_HOP_PORT:-18011}
SLOW_SY_PORT=${SLOW_SY_PORT:-18012}
AUTH_SY_PORT=${AUTH_SY_PORT:-18020}
JWKS_PORT=${JWKS_PORT:-18021}
GOV_SY_PORT=${GOV_SY_PORT:-18030}
GOV_ADMIN=${GOV_ADMIN:-18031}

. benches/lib.sh
bench_setup wrk

STRATEGY=${STRATEGY:-priority}   # the bench model's strategy (two deployments, same upstream)

# Fast upstream (throughput and latency) and a paced one (5 ms between events, for first-event).
start $bin/mock-upstream --listen 127.0.0.1:$UP_PORT --threads 1; up_pid=${pids[-1]}
start $bin/bare-hop --listen 127.0.0.1:$HOP_PORT --upstream 127.0.0.1:$UP_PORT --threads 1; hop_pid=${pids[-1]}
gateway_conf $SY_PORT $SY_ADMIN $UP_PORT > "$work/sy.yaml"
start $bin/switchyard run --conf "$work/sy.yaml"; sy_pid=${pids[-1]}
start $bin/mock-upstream --listen 127.0.0.1:$SLOW_UP_PORT --threads 1 --chunk-interval-ms 5
start $bin/bare-hop --listen 127.0.0.1:$SLOW_HOP_PORT --upstream 127.0.0.1:$SLOW_UP_PORT --threads 1
gateway_conf $SLOW_SY_PORT $((SY_ADMIN + 10)) $SLOW_UP_PORT > "$work/sy-slow.yaml"
start $bin/switchyard run --conf "$work/sy-slow.yaml"
# Switchyard with authentication: one virtual key and OAuth JWTs against a local JWKS.
mkdir -p "$work/jwks"
TOKEN=$($bin/bench-token --jwks-out "$work/jwks/jwks.json")
start python3 -m http.server "$JWKS_PORT" --bind 127.0.0.1 --directory "$work/jwks"
wait_port $JWKS_PORT
{ gateway_conf $AUTH_SY_PORT $((SY_ADMIN + 20)) $UP_PORT; cat <<YAML
auth:
  api_keys:
    - { name: bench-key, key: "$BENCH_KEY" }
  oauth:
    issuer: "https://bench/"
    audience: switchyard
    jwks_url: http://127.0.0.1:$JWKS_PORT/jwks.json
    algorithms: [RS256]
  max_failures_per_minute: 1000000
YAML
} > "$work/sy-auth.yaml"
start $bin/switchyard run --conf "$work/sy-auth.yaml"; auth_pid=${pids[-1]}
# Switchyard with cost governance on top of the same key: request, token and concurrency limits
# (never reached), a budget (never reached), and the spend ledger in a SQLite file.
governed_conf $GOV_SY_PORT $GOV_ADMIN $UP_PORT "$work/ledger.db" > "$work/sy-gov.yaml"
start $bin/switchyard run --conf "$work/sy-gov.yaml"; gov_pid=${pids[-1]}
for p in $UP_PORT $HOP_PORT $SY_PORT $SLOW_UP_PORT $SLOW_HOP_PORT $SLOW_SY_PORT $AUTH_SY_PORT $GOV_SY_PORT; do wait_port $p; done
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
gov_rss0=$(rss_kb "$gov_pid")

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME PORT MODEL PID CONNS STREAM [AUTH] -> appends a result line
run() {
  local name=$1 port=$2 model=$3 pid=$4 conns=$5 stream=$6 auth=${7:-} body
  if [ "$stream" = 1 ]; then
    body="{\"model\":\"$model\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}"
  else
    body="{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}"
  fi
  local c0; c0=$(cpu "$pid")
  BENCH_AUTH=$auth BENCH_BODY=$body wrk -t1 -c"$conns" -d"${DURATION}s" --latency -s benches/post.lua \
    "http://127.0.0.1:$port/v1/chat/completions" > "$work/wrk.out"
  local c1; c1=$(cpu "$pid")
  python3 - "$name" "$conns" "$stream" "$c0" "$c1" "$ticks" "$work/wrk.out" >> "${RESULTS:-$work/results}" <<'PY'
import re, sys
name, conns, stream, c0, c1, ticks, path = sys.argv[1:]
text = open(path).read()
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
lat = {p: ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)}
total = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
cpu_ms = (int(c1) - int(c0)) * 1000.0 / int(ticks) / max(total, 1)
scenario = ("stream" if stream == "1" else "non-stream") + f" c={conns}"
print(f"{name}|{scenario}|{rps:.0f}|{lat['50']:.3f}|{lat['99']:.3f}|{cpu_ms:.4f}|{errors.group(1) if errors else 0}")
PY
}
# (run appends to $RESULTS when set, else to $work/results)

: > "$work/results"
for scenario in "1 0" "32 0" "64 0" "32 1"; do
  set -- $scenario
  run direct $UP_PORT mock-model $up_pid "$1" "$2"
  run bare-hop $HOP_PORT mock-model $hop_pid "$1" "$2"
  run switchyard $SY_PORT bench $sy_pid "$1" "$2"
  if [ "$2" = 0 ]; then
    run sy+key $AUTH_SY_PORT bench $auth_pid "$1" "$2" "Bearer $BENCH_KEY"
    run sy+jwt $AUTH_SY_PORT bench $auth_pid "$1" "$2" "Bearer $TOKEN"
    run sy+gov $GOV_SY_PORT bench $gov_pid "$1" "$2" "Bearer $BENCH_KEY"
  fi
done
# GOV_ROUNDS=N: N more rounds of switchyard, sy+key and sy+gov back to back at c=32 and c=64,
# so the governance ratios are medians of runs seconds apart rather than one of each.
: > "$work/govrounds"
for _ in $(seq 1 "${GOV_ROUNDS:-0}"); do
  for conns in 32 64; do
    RESULTS=$work/govrounds run switchyard $SY_PORT bench $sy_pid "$conns" 0
    RESULTS=$work/govrounds run sy+key $AUTH_SY_PORT bench $auth_pid "$conns" 0 "Bearer $BENCH_KEY"
    RESULTS=$work/govrounds run sy+gov $GOV_SY_PORT bench $gov_pid "$conns" 0 "Bearer $BENCH_KEY"
  done
done
sleep 2   # one more ledger flush
gov_rss1=$(rss_kb "$gov_pid")
gov_pending=$(curl -s "http://127.0.0.1:$GOV_ADMIN/metrics" | awk '/^switchyard_ledger_pending_rows/ {print $2}')
gov_rows=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from ledger').fetchone()[0])" "$work/ledger.db")
echo "$gov_rss0 $gov_rss1 ${gov_pending:-?} $gov_rows" > "$work/gov"
python3 benches/first_event.py "$STREAM_SAMPLES" \
  direct=127.0.0.1:$SLOW_UP_PORT:mock-model bare-hop=127.0.0.1:$SLOW_HOP_PORT:mock-model \
  switchyard=127.0.0.1:$SLOW_SY_PORT:bench > "$work/first"

python3 - "$work/results" "$work/first" "$DURATION" "$work/gov" "$work/govrounds" <<'PY'
import sys
rows = [l.strip().split("|") for l in open(sys.argv[1]) if l.strip()]
first = {l.split()[0]: l.split()[1:] for l in open(sys.argv[2]) if l.strip()}
print(f"\nSwitchyard load bench, bench model strategy {__import__('os').environ.get('STRATEGY', 'priority')} ({sys.argv[3]}s per run, wrk -t1, 1 proxy thread, loopback; CPU = proxy process)")
print(f"{'target':<11} {'scenario':<16} {'RPS':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11} {'non-2xx':>8}")
by = {}
for name, scen, rps, p50, p99, cpu, err in rows:
    cpu_s = "-" if name == "direct" else cpu
    print(f"{name:<11} {scen:<16} {rps:>8} {p50:>8} {p99:>8} {cpu_s:>11} {err:>8}")
    by[(name, scen)] = (float(rps), float(p50), float(p99), float(cpu))
print("\nratios (Switchyard vs bare hop; targets: RPS >= 0.85x, CPU/req <= 1.2x)")
for scen in dict.fromkeys(s for _, s, *_ in rows):
    sy, hop, d = by[("switchyard", scen)], by[("bare-hop", scen)], by[("direct", scen)]
    print(f"  {scen:<16} RPS {sy[0]/hop[0]:.2f}x   CPU/req {sy[3]/hop[3]:.2f}x   "
          f"p50 +{(sy[1]-d[1]):.3f} ms over direct (hop +{(hop[1]-d[1]):.3f} ms)")
print("\nauthentication cost (vs Switchyard without auth, same scenario)")
for scen in dict.fromkeys(s for _, s, *_ in rows):
    base = by.get(("switchyard", scen))
    for name in ("sy+key", "sy+jwt"):
        if base and (name, scen) in by:
            r = by[(name, scen)]
            print(f"  {name:<7} {scen:<16} RPS {r[0]/base[0]:.2f}x   CPU/req {r[3]/base[3]:.2f}x")
print("\ncost governance (sy+gov: key + rate/concurrency limits + budget + SQLite ledger; target: RPS >= 0.90x of none)")
for scen in dict.fromkeys(s for _, s, *_ in rows):
    none, key = by.get(("switchyard", scen)), by.get(("sy+key", scen))
    if none and key and ("sy+gov", scen) in by:
        r = by[("sy+gov", scen)]
        print(f"  {scen:<16} vs none: RPS {r[0]/none[0]:.2f}x CPU/req {r[3]/none[3]:.2f}x   "
              f"vs key only: RPS {r[0]/key[0]:.2f}x CPU/req {r[3]/key[3]:.2f}x")
rounds = {}
last = {}
for l in open(sys.argv[5]):
    name, scen, rps, _, _, cpu, _ = l.strip().split("|")
    last[(name, scen)] = (float(rps), float(cpu))
    if name == "sy+gov" and ("switchyard", scen) in last and ("sy+key", scen) in last:
        g, n, k = last[(name, scen)], last[("switchyard", scen)], last[("sy+key", scen)]
        rounds.setdefault(scen, []).append((g[0] / n[0], g[1] / n[1], g[0] / k[0], g[1] / k[1]))
med = lambda xs: sorted(xs)[len(xs) // 2]
for scen, rs in rounds.items():
    print(f"  {scen:<16} {len(rs)} back-to-back rounds, medians: vs none RPS {med([r[0] for r in rs]):.2f}x "
          f"CPU/req {med([r[1] for r in rs]):.2f}x; vs key only RPS {med([r[2] for r in rs]):.2f}x "
          f"CPU/req {med([r[3] for r in rs]):.2f}x")
    print(f"  {'':<16} each vs none: {' '.join(f'{r[0]:.2f}' for r in rs)}")
rss0, rss1, pending, rows_written = open(sys.argv[4]).read().split()
round_rows = [l.strip().split("|") for l in open(sys.argv[5]) if l.strip()]
gov_requests = sum(float(rps) * float(sys.argv[3]) for name, _, rps, *_ in rows + round_rows if name == "sy+gov")
print(f"  ledger: {rows_written} rows written (~{gov_requests:.0f} requests sent), {pending} pending at the end; "
      f"gateway RSS {int(rss0)//1024} MiB before -> {int(rss1)//1024} MiB after")
print("\ntime to first stream event, ms (p50 / p90), upstream paced at 5 ms per event:")
for name, (p50, p90) in first.items():
    print(f"  {name:<11} {p50} / {p90}")
if "switchyard" in first and "direct" in first:
    print(f"  switchyard - direct (p50): {float(first['switchyard'][0]) - float(first['direct'][0]):+.3f} ms (target <= 1 ms)")
PY

# The governance target measured the way this host's drift cannot move: none and gov at once on
# one shared core (benches/paired.sh). PAIRED_ROUNDS=0 skips it.
if [ "${PAIRED_ROUNDS:-5}" -gt 0 ]; then
  echo
  echo "cost governance, paired on one shared core (benches/paired.sh; target: >= 0.90x the requests of none):"
  ROUNDS=${PAIRED_ROUNDS:-5} DURATION=${PAIRED_DURATION:-3} bash benches/paired.sh | tail -1 | sed 's/^/  /'
fi
