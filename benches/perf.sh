#!/usr/bin/env bash
# Where one config's CPU goes: `perf record` (DWARF call graphs) of the gateway while wrk loads it,
# then the hottest symbols (self, and Switchyard's own functions inclusive). For finding a cost, not for figures (those come
# from paired.sh and instructions.sh).
#   CFG=fleet bash benches/perf.sh          gov, none, key or fleet (fleet starts PostgreSQL + Redis)
#   OUT=/tmp/perf.data CFG=gov bash benches/perf.sh   keeps the profile (perf report -i ...)
#   STREAM=1 CFG=none bash benches/perf.sh  streamed answers
set -euo pipefail
cd "$(dirname "$0")/.."

CFG=${CFG:-gov}
UP_PORT=${UP_PORT:-18650}
OUT=${OUT:-}

. benches/lib.sh
bench_setup wrk
command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf; }

[ "$CFG" = fleet ] && fleet_services
start taskset -c 0 $bin/mock-upstream --listen 127.0.0.1:$UP_PORT --threads 1
case $CFG in
  none) gateway_conf $((UP_PORT + 1)) $((UP_PORT + 11)) $UP_PORT ;;
  key) keyed_conf $((UP_PORT + 1)) $((UP_PORT + 11)) $UP_PORT ;;
  gov) governed_conf $((UP_PORT + 1)) $((UP_PORT + 11)) $UP_PORT "$work/ledger.db" ;;
  fleet) fleet_conf $((UP_PORT + 1)) $((UP_PORT + 11)) $UP_PORT "$work/spool.db" ;;
  *) echo "unknown config $CFG (none, key, gov, fleet)" >&2; exit 2 ;;
esac > "$work/gateway.yaml"
start taskset -c 1 $bin/switchyard run --conf "$work/gateway.yaml"; gw=${pids[-1]}
wait_port $UP_PORT; wait_port $((UP_PORT + 1))

if [ -n "${STREAM:-}" ]; then
  body='{"model":"bench","stream":true,"messages":[{"role":"user","content":"hello"}]}'
else
  body='{"model":"bench","messages":[{"role":"user","content":"hello"}]}'
fi
load() {
  BENCH_AUTH="Bearer $BENCH_KEY" BENCH_BODY=$body taskset -c 0 wrk -t1 -c32 -d"$1s" \
    -s benches/post.lua "http://127.0.0.1:$((UP_PORT + 1))/v1/chat/completions"
}
load 2 > /dev/null
load 8 > "$work/wrk.out" & l=$!
sleep 1
data=${OUT:-$work/perf.data}
perf record -F 1999 -g --call-graph dwarf,16384 -p "$gw" -o "$data" -- sleep 5 2> /dev/null
wait $l
grep -E "Requests/sec" "$work/wrk.out"
echo "--- self time (top 25)"
perf report -i "$data" --no-children --sort sym --stdio -g none 2> /dev/null \
  | grep -v '^#' | grep -v '^$' | head -25
echo "--- inclusive time of Switchyard's own functions (top 40; call graphs: perf report -i \$OUT)"
perf report -i "$data" --children --sort sym --stdio -g none 2> /dev/null \
  | grep -v '^#' | grep 'switchyard::' | head -40
