#!/usr/bin/env bash
# bench-vs-peers.sh: one broker, the `steme bench` workloads, and NATS JetStream measured in
# the same run with ../shared/bench/, then the ratios.
#
#   client/scripts/bench-vs-peers.sh [--count N] [--window W] [--peers DIR]
#
# Builds the release binaries, starts `steme-broker` on a free loopback port with its data
# in a temp dir (removed on exit), runs: signed produce (acks=all, fsync before ack),
# produce with signature verification off (the log itself), consume, produce-to-consume;
# then nats-jetstream.sh with the same count, size and window. Prints every RESULT line
# and the ratios Steme / peer.
set -euo pipefail

COUNT=100000 WINDOW=256 SIZE=200
PEERS="$(cd "$(dirname "$0")/../../.." && pwd)/shared/bench"
while [ $# -gt 0 ]; do
    case "$1" in
        --count) COUNT="$2"; shift ;;
        --window) WINDOW="$2"; shift ;;
        --peers) PEERS="$2"; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
cargo build --release -q -p steme-broker -p steme-client
WORK="$(mktemp -d "${TMPDIR:-/tmp}/steme-bench-vs-peers.XXXXXX")"
BROKER_PID=""
cleanup() {
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

target/release/steme-broker --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/broker.out" 2>"$WORK/broker.err" &
BROKER_PID=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$WORK/broker.out" 2>/dev/null && break
    sleep 0.1
done
ADDR="$(grep -o '[0-9.]*:[0-9]*$' "$WORK/broker.out")"
echo "# steme-broker at $ADDR, data in $WORK/data ($(stat -f -c %T "$WORK"))" >&2
STEME="target/release/steme --bootstrap $ADDR"

$STEME topic create nv --partitions 1 --config verify.signatures=false >/dev/null
{
    timeout 300 $STEME bench produce --topic signed --count "$COUNT" --size "$SIZE" --window "$WINDOW"
    timeout 300 $STEME bench produce --topic nv --count "$COUNT" --size "$SIZE" --window "$WINDOW"
    timeout 300 $STEME bench consume --topic signed --count "$COUNT"
    timeout 300 $STEME bench e2e --topic e2e --count "$((COUNT / 5))" --size "$SIZE" --window "$WINDOW"
} | tee "$WORK/steme.txt"

if [ -x "$PEERS/nats-jetstream.sh" ]; then
    timeout 900 "$PEERS/nats-jetstream.sh" --replicas 1 --size "$SIZE" --count "$COUNT" \
        --mode async --window "$WINDOW" | tee "$WORK/nats.txt"
else
    echo "# $PEERS/nats-jetstream.sh not found: no peer figures" >&2
    : >"$WORK/nats.txt"
fi

python3 - "$WORK/steme.txt" "$WORK/nats.txt" <<'PY'
import sys
def results(path):
    out = []
    for line in open(path):
        if line.startswith("RESULT "):
            out.append(dict(kv.split("=", 1) for kv in line.split()[1:]))
    return out
steme, nats = results(sys.argv[1]), results(sys.argv[2])
def pick(rows, **kw):
    return next((r for r in rows if all(r.get(k) == v for k, v in kw.items())), None)
signed = steme[0] if steme else None
nv = steme[1] if len(steme) > 1 else None
consume = pick(steme, op="consume")
npub, ncon = pick(nats, op="publish"), pick(nats, op="consume")
print("\n== ratios (same machine, same run) ==")
if signed:
    print(f"signed produce / one-core batch-verify ceiling: {signed.get('ratio_to_verify_ceiling')}")
for name, mine in (("signed produce", signed), ("unverified produce", nv)):
    if mine and npub:
        r = float(mine["msgs_per_s"]) / float(npub["msgs_per_s"])
        p99 = float(mine["p99_us"]) / float(npub["p99_us"])
        print(f"{name} / NATS JetStream R1 publish: {r:.2f}x throughput, p99 {p99:.2f}x (Steme fsyncs before ack; NATS 2.9 acks from page cache)")
if consume and ncon:
    print(f"consume / NATS JetStream R1 consume: {float(consume['msgs_per_s']) / float(ncon['msgs_per_s']):.2f}x")
PY
