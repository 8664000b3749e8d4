#!/usr/bin/env bash
# Cycles per request, estimated: the bare hop and Switchyard configs under concurrent load (wrk
# -c$CONNS, one proxy thread) run under callgrind with its cache and branch simulation, and each
# request's instructions, L1 instruction/data misses and mispredicted branches are weighed into
# one figure (benches/cycles.py: Ir + 10 per L1 miss + 15 per mispredict). Why it exists: under
# load Switchyard's CPU per request is further from the hop's than its instructions are (user
# time 1.8x the hop's for 1.25x the instructions, December 2026): code and data spread over more
# cache lines, more branches mispredicted. This figure moves with that; `instructions.sh` cannot.
#   bash benches/cycles.sh                      hop and none at c=32, 8 s each
#   CONFIGS="hop none gov" CONNS=64 DURATION=10 bash benches/cycles.sh   (also `llmhop`: bare-hop --llm)
#   SY_BIN=/tmp/old/switchyard NO_BUILD=1 bash benches/cycles.sh   another build's gateway
#   STREAM=1 bash benches/cycles.sh             streamed answers instead
#   TOP=30 bash benches/cycles.sh               also lists the 30 functions that cost most over
#                                               the hop (needs hop among CONFIGS)
#   KEEP=/tmp/cyc bash benches/cycles.sh        keeps the profiles (uncompressed names), to read
#                                               with `python3 benches/cycles.py top A N B M`
# Loopback only; every process is stopped on exit. ~1 minute a config (valgrind is ~50x slower,
# so a run serves a few thousand requests: enough, the figure is per request).
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-32}
DURATION=${DURATION:-8}
UP_PORT=${UP_PORT:-18250}
SY_PORT=${SY_PORT:-18251}
SY_ADMIN=${SY_ADMIN:-18252}

. benches/lib.sh
bench_setup valgrind
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

start $bin/mock-upstream --listen 127.0.0.1:$UP_PORT --threads 1
wait_port $UP_PORT
: > "$work/results"
for name in ${CONFIGS:-hop none}; do
  model=bench
  case $name in
    hop) cmd=($bin/bare-hop --listen 127.0.0.1:$SY_PORT --upstream 127.0.0.1:$UP_PORT --threads 1)
         model=mock-model ;;
    llmhop) cmd=($bin/bare-hop --listen 127.0.0.1:$SY_PORT --upstream 127.0.0.1:$UP_PORT --threads 1 --llm)
         model=mock-model ;;
    none) gateway_conf $SY_PORT $SY_ADMIN $UP_PORT > "$work/$name.yaml" ;;
    key) keyed_conf $SY_PORT $SY_ADMIN $UP_PORT > "$work/$name.yaml" ;;
    gov) governed_conf $SY_PORT $SY_ADMIN $UP_PORT "$work/ledger.db" > "$work/$name.yaml" ;;
    *) echo "unknown config $name" >&2; exit 1 ;;
  esac
  case $name in hop|llmhop) ;; *) cmd=("${SY_BIN:-$bin/switchyard}" run --conf "$work/$name.yaml") ;; esac
  case $name in key|gov) auth="Bearer $BENCH_KEY" ;; *) auth="" ;; esac
  stream=""
  [ "${STREAM:-0}" = 1 ] && stream='"stream":true,'
  body="{\"model\":\"$model\",$stream\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}"
  valgrind --tool=callgrind --cache-sim=yes --branch-sim=yes --compress-strings=no \
    --callgrind-out-file="$work/cg.$name.%p" "${cmd[@]}" > "$work/$name.log" 2>&1 &
  pid=$!
  pids+=($pid)
  wait_port $SY_PORT "${START_WAIT:-60}"
  load() { BENCH_AUTH=$auth BENCH_BODY=$body wrk -t1 -c"$CONNS" -d"$1" -s benches/post.lua \
    "http://127.0.0.1:$SY_PORT/v1/chat/completions"; }
  load 3s > /dev/null                                # warm-up: pool, caches, first-use paths
  sleep 1
  callgrind_control -z $pid > /dev/null 2>&1
  load "${DURATION}s" > "$work/wrk.$name"
  callgrind_control -d $pid > /dev/null 2>&1
  sleep 0.5
  if grep -q "Non-2xx" "$work/wrk.$name"; then grep "Non-2xx" "$work/wrk.$name" >&2; exit 1; fi
  requests=$(grep -o '[0-9]* requests in' "$work/wrk.$name" | cut -d' ' -f1)
  out=$(ls -t "$work"/cg.$name.$pid* | head -1)
  echo "$name $out $requests" >> "$work/results"
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$out" "$KEEP/cg.$name"; echo "$name $requests" >> "$KEEP/requests"; fi
  kill $pid; wait $pid 2>/dev/null || true
  sleep 1
done

echo
echo "Estimated cycles per request (callgrind cache + branch simulation, wrk -c$CONNS, ${DURATION}s, 1 proxy thread$([ "${STREAM:-0}" = 1 ] && echo ", streamed"))"
python3 benches/cycles.py summary "$work/results"
if [ -n "${TOP:-}" ] && grep -q "^hop " "$work/results"; then
  read -r _ hop_out hop_n < <(grep "^hop " "$work/results")
  while read -r name out n; do
    [ "$name" = hop ] && continue
    echo
    echo "$name: the $TOP functions that cost most over the hop (self cost, estimated cycles per request)"
    python3 benches/cycles.py top "$out" "$n" "$hop_out" "$hop_n" "$TOP"
  done < "$work/results"
fi
