# Shared by the shell benches (sourced, not run): builds the release binaries, makes a scratch
# directory and kills every process the bench started when it exits.
#   bench_setup TOOL    installs TOOL (a Debian package of that name) when missing, then builds
#   start CMD...        runs CMD in the background, logged under $work, killed on exit
#   wait_port PORT [S]  waits up to S seconds (default 10) for a listener on 127.0.0.1:PORT

bench_setup() {
  command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$1"; }
  cargo build --release -q -p switchyard -p switchyard-benches
  bin=target/release
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
