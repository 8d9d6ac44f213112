#!/usr/bin/env bash
# What an idle cluster costs: 3 brokers, a topic whose partitions put REPLICAS replicas on
# each broker (replication factor 3), nothing produced; each broker's CPU over SECS seconds,
# as a share of one core (issue 13: <= 5% at 256 replicas each, <= 10% at 1024). Runs this
# build and, if given, another build's binaries in the same run.
#
#   client/scripts/idle-cost.sh [OLD_BIN_DIR] [SECS] [REPLICAS...]
#
# This build's binaries come from target/release
# (`cargo build --release -p steme-broker -p steme-cli --bins`).
set -euo pipefail
old=${1:-}
secs=${2:-20}
shift $(( $# >= 2 ? 2 : $# ))
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(256 1024)
new="$(cd "$(dirname "$0")/../.." && pwd)/target/release"
tck=$(getconf CLK_TCK)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # label bin replicas
  local label=$1 bin=$2 n=$3
  local work; work=$(mktemp -d "${TMPDIR:-/tmp}/idle-cost-XXXX")
  python3 -c 'import secrets; print(secrets.token_hex(32))' >"$work/secret"
  chmod 600 "$work/secret"
  local ports=() peer_ports=() pids=()
  for i in 1 2 3; do ports+=("$(free_port)"); peer_ports+=("$(free_port)"); done
  for id in 1 2 3; do
    local peers=()
    for j in 1 2 3; do [ "$j" = "$id" ] || peers+=(--peer "$j=127.0.0.1:${peer_ports[j - 1]}"); done
    "$bin/steme-broker" --node-id "$id" --listen "127.0.0.1:${ports[id - 1]}" \
      --peer-listen "127.0.0.1:${peer_ports[id - 1]}" --cluster-secret-file "$work/secret" \
      --data-dir "$work/data-$id" --max-partitions-per-broker 4096 "${peers[@]}" \
      >"$work/broker-$id.log" 2>&1 &
    pids+=($!)
  done
  local addr="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
  for _ in $(seq 1 200); do
    "$bin/steme" --bootstrap "$addr" topic create idle --partitions "$n" --replication-factor 3 \
      >/dev/null 2>&1 && break
    sleep 0.2
  done
  # Every partition led, then a quiet spell before measuring.
  for _ in $(seq 1 600); do
    local led
    led=$("$bin/steme" --bootstrap "$addr" topic describe idle --json 2>/dev/null |
      python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin)["partitions"] if p.get("leader") is not None))' 2>/dev/null || echo 0)
    [ "$led" = "$n" ] && break
    sleep 0.5
  done
  sleep 5
  local before=() after=()
  for p in "${pids[@]}"; do before+=("$(cpu_ticks "$p")"); done
  sleep "$secs"
  for p in "${pids[@]}"; do after+=("$(cpu_ticks "$p")"); done
  local line="$label, $n replicas on each broker, idle for $secs s:"
  for i in 0 1 2; do
    line+=" broker $((i + 1)) $(python3 -c "print(f'{100*($((after[i] - before[i])))/$tck/$secs:.1f}')")%"
  done
  echo "$line of a core"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
  rm -rf "$work"
}

for n in "${sizes[@]}"; do
  run "this build" "$new" "$n"
  if [ -n "$old" ]; then run "old build" "$old" "$n"; fi
done
