#!/usr/bin/env bash
# What the HTTP gateway costs: 3 brokers, a topic with replication factor 3, one
# steme-gateway, then client/gateway/examples/gateway_bench.rs — RECORDS signed records of
# about 200 bytes through the Rust client and as many posted through the gateway as JSON
# arrays of BATCH records, CONCURRENCY batches in flight on each side — and its figures:
# records/s, MB/s, batch latency p50/p99/p99.9, and the ratios gateway / Rust.
#
#   client/scripts/gateway-bench.sh [RECORDS] [BATCH] [CONCURRENCY] [PARTITIONS]
#
# Builds the release binaries first (`cargo build --release`), into target/release.
set -euo pipefail
records=${1:-200000}
batch=${2:-1000}
concurrency=${3:-4}
partitions=${4:-3}
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/target/release"

(cd "$root" && cargo build --release -q -p steme-broker -p steme-cli -p steme-gateway --bins \
  && cargo build --release -q -p steme-gateway --example gateway_bench)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

work=$(mktemp -d "${TMPDIR:-/tmp}/gateway-bench-XXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$work/secret"
chmod 600 "$work/secret"
ports=() peer_ports=()
for _ in 1 2 3; do ports+=("$(free_port)"); peer_ports+=("$(free_port)"); done
for id in 1 2 3; do
  peers=()
  for j in 1 2 3; do
    [ "$j" = "$id" ] || peers+=(--peer "$j=127.0.0.1:${peer_ports[j - 1]}")
  done
  "$bin/steme-broker" --node-id "$id" --listen "127.0.0.1:${ports[id - 1]}" \
    --peer-listen "127.0.0.1:${peer_ports[id - 1]}" --cluster-secret-file "$work/secret" \
    --data-dir "$work/data-$id" "${peers[@]}" >"$work/broker-$id.log" 2>&1 &
  pids+=($!)
done
addr="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
steme() { "$bin/steme" --bootstrap "$addr" "$@"; }
created=
for _ in $(seq 1 200); do
  if steme topic create bench --partitions "$partitions" --replication-factor 3 >/dev/null 2>&1; then
    created=1
    break
  fi
  sleep 0.2
done
[ -n "$created" ] || { echo "cannot create the topic; broker 1 log:" >&2; tail -20 "$work/broker-1.log" >&2; exit 1; }

gw_port=$(free_port)
"$bin/steme-gateway" --listen "127.0.0.1:$gw_port" --bootstrap "$addr" \
  >"$work/gateway.out" 2>"$work/gateway.log" &
pids+=($!)
healthy=
for _ in $(seq 1 150); do
  if curl -sf "http://127.0.0.1:$gw_port/healthz" >/dev/null 2>&1; then
    healthy=1
    break
  fi
  sleep 0.2
done
[ -n "$healthy" ] || { echo "the gateway is not healthy; its log:" >&2; tail -20 "$work/gateway.log" >&2; exit 1; }

echo "3 brokers, topic bench ($partitions partitions, replication factor 3), gateway on 127.0.0.1:$gw_port" >&2
"$bin/examples/gateway_bench" --bootstrap "$addr" --gateway "127.0.0.1:$gw_port" --topic bench \
  --records "$records" --batch "$batch" --concurrency "$concurrency" --max-secs 300
