#!/usr/bin/env bash
# Paired A/B: two Switchyard configs measured at the same time on one shared core, so that the
# host's speed (which on a shared VM drifts by ±20 % within seconds) moves both alike. Both
# gateways are pinned to CPU 1, where the kernel's scheduler splits the core between them; the
# mock upstream and one wrk per gateway run on CPU 0. The ratio of CPU time per request (all of a
# gateway's threads: the request thread and, for `gov`, the ledger writer) is what one core
# serves: RPS(B)/RPS(A) = 1 / cpu_ratio when the gateway is the bottleneck. Needs 2 CPUs.
#   bash benches/paired.sh                    none vs gov, 5 rounds of 5 s at c=32
#   A=key B=gov ROUNDS=8 DURATION=3 CONNS=64 bash benches/paired.sh
#   SEQ=1 A=gov B=fleet bash benches/paired.sh   each round loads A, then B (each has CPU 1 to
#                                                itself): also reports the requests-per-second ratio
#   A=none B=none B_BIN=/tmp/old/switchyard bash benches/paired.sh   two builds of one config
#   STREAM=1 A=none B=none A_BIN=/tmp/old/switchyard bash benches/paired.sh   the same, streamed
# Configs (benches/lib.sh): none = no auth; key = one virtual key; gov = the key with request,
# token and concurrency limits, a team budget and the SQLite spend ledger; fleet = gov on the
# fleet store (PostgreSQL ledger and keys, budgets and limits in Redis), both started here:
#   A=gov B=fleet bash benches/paired.sh     the fleet store against the embedded one (#24)
#   A=hop B=none bash benches/paired.sh      Switchyard against the bare Pingora hop (`hop`:
#                                            bench's bare-hop on the same mock; the goal of #16)
#   A=hop B=llmhop bash benches/paired.sh    the floor of any metering LLM gateway on Pingora
#                                            (`bare-hop --llm`: reads the request's model and
#                                            the answer's usage, nothing else) against the hop
set -euo pipefail
cd "$(dirname "$0")/.."

A=${A:-none}
B=${B:-gov}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
UP_PORT=${UP_PORT:-18400}

. benches/lib.sh
bench_setup wrk
[ "$(nproc)" -ge 2 ] || { echo "paired.sh needs 2 CPUs" >&2; exit 1; }

conf() { # name port admin
  case $1 in
    none) gateway_conf "$2" "$3" $UP_PORT ;;
    key) keyed_conf "$2" "$3" $UP_PORT ;;
    gov) governed_conf "$2" "$3" $UP_PORT "$work/ledger-$2.db" ;;
    fleet) fleet_conf "$2" "$3" $UP_PORT "$work/spool-$2.db" ;;
    *) echo "unknown config $1 (hop, llmhop, none, key, gov, fleet)" >&2; exit 2 ;;
  esac
}
launch() { # name port admin yaml binary: the gateway of that config, or the bare hop, on CPU 1
  if [ "$1" = hop ] || [ "$1" = llmhop ]; then
    start taskset -c 1 $bin/bare-hop --listen 127.0.0.1:"$2" --upstream 127.0.0.1:$UP_PORT --threads 1 \
      $([ "$1" = llmhop ] && echo --llm)
  else
    conf "$1" "$2" "$3" > "$4"
    start taskset -c 1 "$5" run --conf "$4"
  fi
}
case " $A $B " in *" fleet "*) fleet_services ;; esac

start taskset -c 0 $bin/mock-upstream --listen 127.0.0.1:$UP_PORT --threads 1
launch "$A" $((UP_PORT + 1)) $((UP_PORT + 11)) "$work/a.yaml" "${A_BIN:-$bin/switchyard}"; a_pid=${pids[-1]}
launch "$B" $((UP_PORT + 2)) $((UP_PORT + 12)) "$work/b.yaml" "${B_BIN:-$bin/switchyard}"; b_pid=${pids[-1]}
for p in $UP_PORT $((UP_PORT + 1)) $((UP_PORT + 2)); do wait_port $p; done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime of every thread, in ticks
if [ -n "${STREAM:-}" ]; then   # STREAM=1: streamed answers (role, 3 content events, finish, usage)
  body='{"model":"bench","stream":true,"messages":[{"role":"user","content":"hello"}]}'
else
  body='{"model":"bench","messages":[{"role":"user","content":"hello"}]}'
fi
load() { # port out
  BENCH_AUTH="Bearer $BENCH_KEY" BENCH_BODY=$body taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" \
    -s benches/post.lua "http://127.0.0.1:$1/v1/chat/completions" > "$2"
}
requests() { awk '/requests in/ {print $1}' "$1"; }
errors() { awk '/Non-2xx/ {print $5}' "$1"; }

# One unmeasured second each, then the rounds.
DURATION=1 load $((UP_PORT + 1)) /dev/null & DURATION=1 load $((UP_PORT + 2)) /dev/null; wait $!
: > "$work/rounds"
for _ in $(seq 1 "$ROUNDS"); do
  a0=$(cpu $a_pid); b0=$(cpu $b_pid)
  if [ -n "${SEQ:-}" ]; then   # one after the other: each gateway has CPU 1 to itself
    load $((UP_PORT + 1)) "$work/a.out"; load $((UP_PORT + 2)) "$work/b.out"
  else
    load $((UP_PORT + 1)) "$work/a.out" & la=$!
    load $((UP_PORT + 2)) "$work/b.out" & lb=$!
    wait $la $lb
  fi
  a1=$(cpu $a_pid); b1=$(cpu $b_pid)
  echo "$(requests "$work/a.out") $((a1 - a0)) $(requests "$work/b.out") $((b1 - b0)) $(errors "$work/a.out")$(errors "$work/b.out")" >> "$work/rounds"
done

python3 - "$work/rounds" "$A" "$B" "$CONNS" "$DURATION" "$(getconf CLK_TCK)" "${SEQ:-}" <<'PY'
import statistics, sys
path, a, b, conns, duration, tick, seq = sys.argv[1:]
rows = [l.split() for l in open(path) if l.strip()]
how = "one after the other on CPU 1" if seq else "on one shared core"
print(f"\npaired A/B {how}: {a} vs {b}, wrk -t1 -c{conns} each, {duration}s rounds")
print(f"{'round':>5} {a + ' req':>12} {a + ' CPU s':>10} {b + ' req':>12} {b + ' CPU s':>10} {'CPU/req ' + b + '/' + a:>18}")
ratios = []
for i, r in enumerate(rows, 1):
    ra, ca, rb, cb = (int(x) for x in r[:4])
    if len(r) > 4:
        sys.exit(f"non-2xx answers in round {i}: {r[4:]}")
    ratio = (cb / rb) / (ca / ra)
    ratios.append(ratio)
    print(f"{i:>5} {ra:>12} {ca / int(tick):>10.2f} {rb:>12} {cb / int(tick):>10.2f} {ratio:>18.3f}")
m = statistics.median(ratios)
if seq:
    rps = statistics.median(int(r[2]) / int(r[0]) for r in rows)
    print(f"median requests per second {b}/{a}: {rps:.3f}x (each alone on CPU 1)")
print(f"median CPU per request {b}/{a}: {m:.3f}x (rounds {min(ratios):.3f}-{max(ratios):.3f}) "
      f"=> one core serves {1 / m:.3f}x the requests with {b} ({(1 / m - 1) * 100:+.1f} %)")
PY
