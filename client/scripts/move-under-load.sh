#!/usr/bin/env bash
# Produce while a replica moves (issue 15's figures): 4 brokers, a 1-partition topic with
# replication factor 3 on brokers 1-3 filled with FILL_MIB MiB, then the same produce
# bench twice — undisturbed, and while the partition moves from broker 3 to broker 4
# (`steme partition reassign`) — and the move's own rate against the throttle.
# Prints the produce ratio (target >= 0.5x) and the move rate as a share of the throttle.
#
#   client/scripts/move-under-load.sh [FILL_MIB] [THROTTLE_MIB_PER_SEC] [BENCH_SECS]
#
# Binaries come from target/release
# (`cargo build --release -p steme-broker -p steme-cli --bins`).
set -euo pipefail
fill_mib=${1:-1024}
throttle_mib=${2:-100}
secs=${3:-10}
bin="$(cd "$(dirname "$0")/../.." && pwd)/target/release"
size=1000 # payload bytes per record; a record takes about 1.07 kB in the log

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

work=$(mktemp -d "${TMPDIR:-/tmp}/move-under-load-XXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
  rm -rf "$work"
}
trap cleanup EXIT
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$work/secret"
chmod 600 "$work/secret"
ports=() peer_ports=()
for _ in 1 2 3 4; do ports+=("$(free_port)"); peer_ports+=("$(free_port)"); done
start_broker() { # id: peers are the brokers before it (a later one joins the running ones)
  local id=$1 peers=()
  for j in 1 2 3; do
    [ "$j" = "$id" ] || peers+=(--peer "$j=127.0.0.1:${peer_ports[j - 1]}")
  done
  "$bin/steme-broker" --node-id "$id" --listen "127.0.0.1:${ports[id - 1]}" \
    --peer-listen "127.0.0.1:${peer_ports[id - 1]}" --cluster-secret-file "$work/secret" \
    --data-dir "$work/data-$id" --reassign-bytes-per-sec $((throttle_mib << 20)) \
    "${peers[@]}" >"$work/broker-$id.log" 2>&1 &
  pids+=($!)
}
for id in 1 2 3; do start_broker "$id"; done
addr="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
steme() { "$bin/steme" --bootstrap "$addr" "$@"; }
for _ in $(seq 1 200); do
  steme topic create moving --partitions 1 --replication-factor 3 >/dev/null 2>&1 && break
  sleep 0.2
done

records=$(((fill_mib << 20) / (size + 68)))
echo "filling: $records records of $size bytes (about $fill_mib MiB)" >&2
steme bench produce --topic moving --count "$records" --size "$size" --max-secs 600 >/dev/null
start_broker 4
for _ in $(seq 1 240); do
  steme cluster status --json 2>/dev/null |
    python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if any(b.get("node_id")==4 and b.get("state")=="active" for b in s.get("brokers",[])) else 1)' \
    2>/dev/null && break
  sleep 0.5
done

bench() { # label: records/s of a produce bench of $secs seconds
  steme bench produce --topic moving --count $((secs * 40000)) --size "$size" --max-secs "$secs" \
    --json 2>/dev/null | python3 -c 'import json,sys
for line in sys.stdin:
    r = json.loads(line)
    if "msgs_per_s" in r: print(r["msgs_per_s"])'
}
quiet=$(bench)
echo "undisturbed produce: $quiet records/s" >&2
log_bytes=$(du -sb "$work/data-1" | cut -f1)
t0=$(date +%s.%N)
steme partition reassign moving --partition 0 --replicas 1,2,4 >/dev/null
moving=$(bench)
steme partition reassign moving --partition 0 --replicas 1,2,4 --wait --timeout 900 >/dev/null
t1=$(date +%s.%N)
python3 - "$quiet" "$moving" "$log_bytes" "$t0" "$t1" "$throttle_mib" <<'PY'
import sys
quiet, moving, log_bytes, t0, t1, throttle = map(float, sys.argv[1:])
secs = t1 - t0
rate = log_bytes / secs / (1 << 20)
print(f"produce during the move: {moving:.0f} records/s against {quiet:.0f} undisturbed = "
      f"{moving / quiet:.2f}x (target >= 0.5x)")
print(f"move: {log_bytes / (1 << 20):.0f} MiB in {secs:.1f} s = {rate:.1f} MiB/s, "
      f"{rate / throttle:.2f}x the throttle of {throttle:.0f} MiB/s")
PY
