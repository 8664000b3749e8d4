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
#   guarded_conf PORT ADMIN UP_PORT           the bench gateway with one PII guardrail (every PII
#                                             kind, redact) on the model's requests (`sy+pii`)
#   BENCH_KEY           the virtual key's secret

bench_setup() {
  command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$1"; }
  [ -n "${NO_BUILD:-}" ] || cargo build --release -q -p switchyard -p switchyard-benches
  bin=${CARGO_TARGET_DIR:-target}/release
  work=$(mktemp -d)
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
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
