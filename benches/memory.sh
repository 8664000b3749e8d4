#!/usr/bin/env bash
# Memory bench: what requests held open cost, bare Pingora hop vs Switchyard, in one run.
#   bash benches/memory.sh
#   SLOW=256 STREAMS=5000 IDLE_AFTER=60 bash benches/memory.sh
# For each proxy (one worker thread each, as in load.sh) it measures the resident set:
#   idle          after start and one warm-up request
#   slow peak     the peak (VmHWM, reset through /proc/PID/clear_refs) while $SLOW non-stream
#                 requests wait on an upstream that answers after SLOW_MS
#   streams peak  the peak while $STREAMS streams are open at once (the upstream sends
#                 STREAM_CHUNKS events CHUNK_MS apart)
#   after         $IDLE_AFTER seconds after that load ended (is a spike given back?)
# Per-stream cost = (streams peak - idle) / STREAMS. Loopback only; everything is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SLOW=${SLOW:-256}
SLOW_MS=${SLOW_MS:-2000}
STREAMS=${STREAMS:-5000}
STREAM_CHUNKS=${STREAM_CHUNKS:-20}
CHUNK_MS=${CHUNK_MS:-500}
IDLE_AFTER=${IDLE_AFTER:-60}
PORT=${PORT:-18600}

. benches/lib.sh
bench_setup wrk
ulimit -n "$(ulimit -Hn)"   # 5,000 streams: wrk, the proxy (both sides) and the mock each hold one per stream

up_slow=$PORT; up_stream=$((PORT + 1))
start $bin/mock-upstream --listen 127.0.0.1:$up_slow --threads 1 --first-byte-delay-ms "$SLOW_MS"
start $bin/mock-upstream --listen 127.0.0.1:$up_stream --threads 1 \
  --chunks "$STREAM_CHUNKS" --chunk-interval-ms "$CHUNK_MS"

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
reset_peak() { echo 5 > "/proc/$1/clear_refs"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# wrk for SECONDS on PORT with CONNS connections posting BODY (two wrk threads: the client side
# of 5,000 streams is more than one thread reads in time).
drive() { # port conns seconds body
  BENCH_BODY=$4 BENCH_AUTH="Bearer none" wrk -t2 -c"$2" -d"$3s" --timeout 30s \
    -s benches/post.lua "http://127.0.0.1:$1/v1/chat/completions" > "$work/wrk-$1-$2.out" 2>&1 || true
}

plain='{"model":"bench","messages":[{"role":"user","content":"hello"}]}'
stream='{"model":"bench","stream":true,"messages":[{"role":"user","content":"hello"}]}'
stream_secs=$(( (STREAM_CHUNKS * CHUNK_MS) / 1000 + 3 ))

# Each proxy runs twice, one instance per upstream (the bare hop has one upstream): the slow
# phase measures the first instance, the stream phase the second.
start $bin/bare-hop --listen 127.0.0.1:$((PORT + 10)) --upstream 127.0.0.1:$up_slow --threads 1; hop_a=${pids[-1]}
gateway_conf $((PORT + 20)) $((PORT + 21)) $up_slow > "$work/sy-slow.yaml"
start $bin/switchyard run --conf "$work/sy-slow.yaml"; sy_a=${pids[-1]}
start $bin/bare-hop --listen 127.0.0.1:$((PORT + 11)) --upstream 127.0.0.1:$up_stream --threads 1; hop_b=${pids[-1]}
gateway_conf $((PORT + 30)) $((PORT + 31)) $up_stream > "$work/sy-stream.yaml"
start $bin/switchyard run --conf "$work/sy-stream.yaml"; sy_b=${pids[-1]}
for p in $((PORT + 10)) $((PORT + 11)) $((PORT + 20)) $((PORT + 30)); do wait_port $p; done
: > "$work/table"

measure_pair() { # name pid_slow pid_stream port_slow port_stream
  local name=$1
  curl -s -o /dev/null -H 'content-type: application/json' -d "$plain" \
    "http://127.0.0.1:$4/v1/chat/completions" || true
  curl -s -o /dev/null -H 'content-type: application/json' -d "$stream" \
    "http://127.0.0.1:$5/v1/chat/completions" || true
  local idle_a idle_b; idle_a=$(rss_kb "$2"); idle_b=$(rss_kb "$3")
  reset_peak "$2"
  drive "$4" "$SLOW" $(( SLOW_MS * 3 / 1000 + 1 )) "$plain"
  local slow; slow=$(hwm_kb "$2")
  reset_peak "$3"
  drive "$5" "$STREAMS" "$stream_secs" "$stream"
  local streams; streams=$(hwm_kb "$3")
  sleep "$IDLE_AFTER"
  local after; after=$(rss_kb "$3")
  local per; per=$(awk -v p="$streams" -v i="$idle_b" -v n="$STREAMS" 'BEGIN {printf "%.1f", (p - i) / n}')
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(mib "$idle_a")" "$(mib "$slow")" \
    "$(mib "$idle_b")" "$(mib "$streams")" "$(mib "$after")" "$per" >> "$work/table"
  echo "$name: completed slow / streams: $(awk '/requests in/ {print $1}' "$work/wrk-$4-$SLOW.out") / $(awk '/requests in/ {print $1}' "$work/wrk-$5-$STREAMS.out"); $(grep -h -E 'Socket errors|Non-2xx' "$work/wrk-$4-$SLOW.out" "$work/wrk-$5-$STREAMS.out" | tr '\n' ' ')" >&2
}

measure_pair bare-hop "$hop_a" "$hop_b" $((PORT + 10)) $((PORT + 11))
measure_pair switchyard "$sy_a" "$sy_b" $((PORT + 20)) $((PORT + 30))

echo
echo "$SLOW slow requests (upstream answers after ${SLOW_MS} ms); $STREAMS streams of $STREAM_CHUNKS events ${CHUNK_MS} ms apart; RSS in MiB"
echo
echo "| proxy | idle | peak, $SLOW slow | idle (stream instance) | peak, $STREAMS streams | ${IDLE_AFTER} s after | KiB per stream |"
echo "|---|---:|---:|---:|---:|---:|---:|"
cat "$work/table"
