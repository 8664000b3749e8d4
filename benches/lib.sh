# Shared by the shell benches (sourced, not run): builds the release binaries, makes a scratch
# directory and kills every process the bench started when it exits.
#   bench_setup TOOL    installs TOOL (a Debian package of that name) when missing, then builds
#   start CMD...        runs CMD in the background, logged under $work, killed on exit
#   wait_port PORT [S]  waits up to S seconds (default 10) for a listener on 127.0.0.1:PORT
#   gateway_conf PORT ADMIN UP_PORT           the bench gateway (model `bench`: two deployments
#                                             on one upstream, no auth) as YAML on stdout
#   keyed_conf PORT ADMIN UP_PORT             the same with one virtual key (`sy+key`)
#   governed_conf PORT ADMIN UP_PORT LEDGER   the key plus requests/tokens/concurrency limits, a
#                                             team budget and the SQLite spend ledger (`sy+gov`;
#                                             limits and budget set never to refuse)
#   fleet_conf PORT ADMIN UP_PORT SPOOL       `governed_conf` on the fleet store (`store.kind:
#                                             postgres` + Redis, SPOOL the local spool file);
#                                             call fleet_services first
#   fleet_services      starts a throwaway PostgreSQL cluster and redis-server on CPU 0 (stopped
#                       on exit); sets PG_URL and REDIS_URL
#   guarded_conf PORT ADMIN UP_PORT           the bench gateway with one PII guardrail (every PII
#                                             kind, redact) on the model's requests (`sy+pii`)
#   BENCH_KEY           the virtual key's secret
#   callgrind_count NAME PORT WARM RUN -- CMD...
#                       runs CMD under callgrind, waits for PORT, runs the shell command WARM,
#                       zeroes the counters, runs RUN, dumps them and appends "NAME TOTAL" (every
#                       instruction of every thread) to $work/results; KEEP=dir keeps the profile

bench_setup() {
  command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$1"; }
  [ -n "${NO_BUILD:-}" ] || cargo build --release -q -p switchyard -p switchyard-benches
  bin=${CARGO_TARGET_DIR:-target}/release
  work=$(mktemp -d)
  pids=()
  cleanups=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for c in "${cleanups[@]}"; do eval "$c" || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

start() { "$@" > "$work/$(basename "$1")-$RANDOM.log" 2>&1 & pids+=($!); }

wait_port() {
  for _ in $(seq 1 $((${2:-10} * 10))); do
    (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 never opened" >&2
  exit 1
}

gateway_conf() { # port admin upstream_port
  cat <<YAML
server:
  listen: ["127.0.0.1:$1"]
  admin_listen: "127.0.0.1:$2"
  threads: 1
providers:
  - name: up
    kind: openai
    base_url: http://127.0.0.1:$3/v1
    api_key: bench-key
  - name: up2
    kind: openai
    base_url: http://127.0.0.1:$3/v1
    api_key: bench-key
models:
  - name: bench
    strategy: ${STRATEGY:-priority}
    max_cost_per_request: 1
    deployments:
      - { provider: up, model: mock-model, price: { input_per_mtok: 0.15, output_per_mtok: 0.6 } }
      - { provider: up2, model: mock-model, price: { input_per_mtok: 0.3, output_per_mtok: 1.2 } }
telemetry: { access_log: off, audit_log: off }
YAML
}

BENCH_KEY=sk-bench-virtual-key-0001

guarded_conf() {
  gateway_conf "$@" | sed 's/^  - name: bench$/  - name: bench\n    guardrails: [pii]/'
  cat <<YAML
guardrails:
  - name: pii
    on: [request]
    pii: [email, phone, credit_card, ssn, iban, ip_address, secret]
    action: redact
YAML
}

keyed_conf() {
  gateway_conf "$@"
  cat <<YAML
auth:
  api_keys:
    - { name: bench-key, key: "$BENCH_KEY", team: bench }
  max_failures_per_minute: 1000000
YAML
}

governed_conf() {
  gateway_conf "$1" "$2" "$3"
  cat <<YAML
auth:
  api_keys:
    - { name: bench-key, key: "$BENCH_KEY", team: bench,
        limits: { requests_per_minute: 100000000, tokens_per_minute: 1000000000000, concurrency: 10000 } }
  max_failures_per_minute: 1000000
budgets:
  - { scope: team:bench, limit: 1000000, period: monthly }
store: { kind: sqlite, path: $4 }
YAML
}

fleet_services() {
  local pg_bin pgdir as=() owner
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$pg_bin" ] || { apt-get update -qq && apt-get install -y -qq postgresql; pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1); }
  command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
  pgdir="$work/pg"
  chmod o+x "$work"   # the unprivileged owner below must reach its directory
  mkdir -p "$pgdir"
  if [ "$(id -u)" = 0 ]; then   # PostgreSQL refuses to run as root
    owner=$(id -u postgres >/dev/null 2>&1 && echo postgres || echo nobody)
    chown -R "$owner" "$pgdir"
    as=(runuser -u "$owner" --)
  fi
  "${as[@]}" "$pg_bin/initdb" -D "$pgdir/data" -A trust -U switchyard --no-sync > /dev/null
  "${as[@]}" taskset -c 0 "$pg_bin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
    -o "-p ${PG_PORT:-18450} -c listen_addresses=127.0.0.1 -k $pgdir" start > /dev/null
  cleanups+=("${as[*]} $pg_bin/pg_ctl -D $pgdir/data -m fast -w stop > /dev/null 2>&1")
  start taskset -c 0 redis-server --port "${REDIS_PORT:-18451}" --bind 127.0.0.1 --save '' --appendonly no
  wait_port "${REDIS_PORT:-18451}"
  PG_URL="postgres://switchyard@127.0.0.1:${PG_PORT:-18450}/postgres"
  REDIS_URL="redis://127.0.0.1:${REDIS_PORT:-18451}"
}

fleet_conf() { # port admin upstream_port spool
  governed_conf "$1" "$2" "$3" "$4" | sed '/^store:/d'
  # FLEET_REDIS=0: PostgreSQL alone (limits and budgets counted on the replica itself).
  local redis=", redis_url: \"$REDIS_URL\""
  [ "${FLEET_REDIS:-1}" = 1 ] || redis=""
  echo "store: { kind: postgres, url: \"$PG_URL\"$redis, path: $4 }"
}

callgrind_count() { # name port warm_cmd run_cmd -- cmd...
  local name=$1 port=$2 warm=$3 run=$4
  shift 5
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.$name.%p" "$@" > "$work/$name.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  wait_port "$port" "${START_WAIT:-60}"   # valgrind starts slowly (a debug build: minutes)
  eval "$warm"
  sleep 1.5                                   # the warm-up's ledger flush is not counted
  callgrind_control -z $pid > /dev/null 2>&1
  eval "$run"
  sleep 1.5                                   # ...this run's is
  callgrind_control -d $pid > /dev/null 2>&1
  sleep 0.5
  local out total
  out=$(ls -t "$work"/cg.$name.$pid* | head -1)
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$out")
  echo "$name $total" >> "$work/results"
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$out" "$KEEP/callgrind.$name"; fi
  kill $pid; wait $pid 2>/dev/null || true
  sleep 0.5
}
