#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: a figure that does not move with the
# neighbours of a shared VM (wall-clock RPS on one does, by ±10 % between runs minutes apart).
# The bare Pingora hop and three Switchyard configs against the same mock upstream, each under
# callgrind in turn:
#   hop   bench's bare-hop (the floor any Pingora gateway stands on)
#   llmhop  `bare-hop --llm`: the hop reading the request's model and the answer's usage (the
#         floor any metering LLM gateway on Pingora stands on; only when named in CONFIGS)
#   none  no auth, no limits, no ledger (the load bench's `switchyard`)
#   key   one virtual key (`sy+key`)
#   gov   the key + requests/tokens/concurrency limits + a team budget + the SQLite spend ledger
#         (`sy+gov`; limits set never to refuse)
# Each gets WARMUP requests, then its counters are zeroed, N more requests are sent on one
# keep-alive connection, the ledger is given a flush, and every instruction of every gateway
# thread (request thread and ledger writer) is divided by N.
#   bash benches/instructions.sh            (N=2000)
#   N=5000 bash benches/instructions.sh
#   KEEP=/tmp/cg bash benches/instructions.sh   also keeps each config's callgrind profile there
#                                               (read with callgrind_annotate --inclusive=yes)
#   SY_BIN=/tmp/old/switchyard bash benches/instructions.sh   measures another build's gateway
#   CONFIGS="hop none" bash benches/instructions.sh            only these (ratios need hop, none, key)
#   STREAM=1 bash benches/instructions.sh                      streamed answers instead
#   PROMPT_BYTES=2048 CONFIGS="none pii" bash benches/instructions.sh
#       a prompt of about that many bytes of prose (lines, no personal data) instead of "hello";
#       `pii` is `none` with one PII guardrail on requests (benches/guardrails.sh runs this pair)
#   NO_BUILD=1 SY_BIN=... UP_BIN=...                            binaries built elsewhere
#                                                               (a smoke check may use debug ones)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-2000}
WARMUP=${WARMUP:-300}
UP_PORT=${UP_PORT:-18200}
SY_PORT=${SY_PORT:-18201}
SY_ADMIN=${SY_ADMIN:-18202}

. benches/lib.sh
bench_setup valgrind

conf() { # none|key|gov: the configs of load.sh and paired.sh (benches/lib.sh)
  case $1 in
    none) gateway_conf $SY_PORT $SY_ADMIN $UP_PORT ;;
    key) keyed_conf $SY_PORT $SY_ADMIN $UP_PORT ;;
    gov) governed_conf $SY_PORT $SY_ADMIN $UP_PORT "$work/ledger.db" ;;
    pii) guarded_conf $SY_PORT $SY_ADMIN $UP_PORT ;;
  esac
}

cat > "$work/client.py" <<'PY'
import http.client, json, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
size = int(sys.argv[5]) if len(sys.argv) > 5 else 0
line = "The gateway routes each request to a healthy deployment, meters its tokens and keeps the caller's budget; "
prompt = "hello" if size == 0 else "\n".join([line] * (size // (len(line) + 1) + 1))[:size]
body = json.dumps({"model": "bench", "stream": sys.argv[4] == "1",
                   "messages": [{"role": "user", "content": prompt}]})
headers = {"content-type": "application/json", "authorization": "Bearer " + sys.argv[3]}
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for _ in range(n):
    c.request("POST", "/v1/chat/completions", body, headers)
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"status {r.status}")
PY

start ${UP_BIN:-$bin/mock-upstream} --listen 127.0.0.1:$UP_PORT --threads 1
wait_port $UP_PORT
: > "$work/results"
for name in ${CONFIGS:-hop none key gov}; do
  if [ $name = hop ]; then
    cmd=($bin/bare-hop --listen 127.0.0.1:$SY_PORT --upstream 127.0.0.1:$UP_PORT --threads 1)
  elif [ $name = llmhop ]; then
    cmd=($bin/bare-hop --listen 127.0.0.1:$SY_PORT --upstream 127.0.0.1:$UP_PORT --threads 1 --llm)
  else
    conf $name > "$work/$name.yaml"
    cmd=("${SY_BIN:-$bin/switchyard}" run --conf "$work/$name.yaml")
  fi
  client="python3 $work/client.py $SY_PORT"
  callgrind_count $name $SY_PORT "$client $WARMUP $BENCH_KEY ${STREAM:-0} ${PROMPT_BYTES:-0}" \
    "$client $N $BENCH_KEY ${STREAM:-0} ${PROMPT_BYTES:-0}" -- "${cmd[@]}"
done

python3 - "$work/results" "$N" "${STREAM:-0}" <<'PY'
import sys
ir = {k: int(v) / int(sys.argv[2]) for k, v in (l.split() for l in open(sys.argv[1]))}
kind = "streamed" if sys.argv[3] == "1" else "non-stream"
print(f"\nInstructions per request (callgrind, {sys.argv[2]} {kind} requests, all proxy threads)")
def ratio(v, base):
    return f"{v / ir[base]:.3f}x {base}" if base in ir else ""
for name, v in ir.items():
    print(f"  {name:<6} {v:>9,.0f}   {ratio(v, 'hop'):>11}   {ratio(v, 'none'):>12}   {ratio(v, 'key'):>11}")
PY
