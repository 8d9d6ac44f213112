#!/usr/bin/env bash
# bench-vs-peers.sh: one broker or a 3-broker cluster, the `steme bench` workloads, and NATS
# JetStream with as many replicas measured in the same run with ../shared/bench/, then the
# ratios.
#
#   client/scripts/bench-vs-peers.sh [--replicas 1|3] [--count N] [--window W] [--peers DIR]
#                                    [--baseline BIN_DIR [--rounds R] [--ab-signed]]
#
# With --baseline, BIN_DIR holds the `steme-broker` and `steme` of another build (say, the
# commit before a change): after the figures above, R rounds (default 3) alternate a fresh
# cluster of this build and one of the baseline, each running the unverified produce (the
# signed one with --ab-signed), and the medians and their ratio are printed (a change's
# cost, measured in one run).
#
# Builds the release binaries, starts `steme-broker` processes on free loopback ports with
# their data in a temp dir (removed on exit), runs: signed produce (acks=all: committed by a
# quorum, fsync before ack on every replica), produce with signature verification off (the
# log itself), consume, produce-to-consume; with 3 replicas also a failover (kill -9 the
# leader of a partition mid-produce: time until a new leader serves). Then
# nats-jetstream.sh with the same replicas, count, size and window. Prints every RESULT
# line and the ratios Steme / peer.
set -euo pipefail

COUNT=100000 WINDOW=256 SIZE=200 REPLICAS=1 BASELINE="" ROUNDS=3 AB_SIGNED=0
PEERS="$(cd "$(dirname "$0")/../../.." && pwd)/shared/bench"
while [ $# -gt 0 ]; do
    case "$1" in
        --count) COUNT="$2"; shift ;;
        --replicas) REPLICAS="$2"; shift ;;
        --window) WINDOW="$2"; shift ;;
        --peers) PEERS="$2"; shift ;;
        --baseline) BASELINE="$(cd "$2" && pwd)"; shift ;;
        --rounds) ROUNDS="$2"; shift ;;
        --ab-signed) AB_SIGNED=1 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
cargo build --release -q -p steme-broker -p steme-cli
[ "$REPLICAS" = 1 ] || [ "$REPLICAS" = 3 ] || { echo "--replicas must be 1 or 3" >&2; exit 2; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/steme-bench-vs-peers.XXXXXX")"
declare -A PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Free loopback ports (bound, read, released): a client port and a peer-plane port per
# broker; peers know each other by the peer ports.
free_ports() {
    python3 -c '
import socket,sys
socks=[socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1",0))
for s in socks: print(s.getsockname()[1])
' "$1"
}
# The cluster secret the brokers authenticate their peer plane with.
SECRET="$WORK/cluster.secret"
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$SECRET"
chmod 600 "$SECRET"
BIN="target/release"
start_broker() {
    local id=$1 peers=() plane=()
    if "$BIN/steme-broker" --help | grep -q -- --peer-listen; then
        for j in $(seq 1 "$REPLICAS"); do
            [ "$j" = "$id" ] || peers+=(--peer "$j=127.0.0.1:${PEER_PORTS[j - 1]}")
        done
        [ "$REPLICAS" = 1 ] || plane=(--peer-listen "127.0.0.1:${PEER_PORTS[id - 1]}" --cluster-secret-file "$SECRET")
    else
        # A build from before the peer plane: brokers reach each other on the client port.
        for j in $(seq 1 "$REPLICAS"); do
            [ "$j" = "$id" ] || peers+=(--peer "$j=127.0.0.1:${PORTS[j - 1]}")
        done
    fi
    "$BIN/steme-broker" --node-id "$id" --listen "127.0.0.1:${PORTS[id - 1]}" \
        --data-dir "$WORK/data-$id" "${peers[@]}" "${plane[@]}" >>"$WORK/broker-$id.out" 2>>"$WORK/broker-$id.err" &
    PIDS[$id]=$!
    for _ in $(seq 1 100); do
        grep -q "listening on" "$WORK/broker-$id.out" 2>/dev/null && return
        sleep 0.1
    done
    echo "broker $id did not start" >&2; exit 1
}
start_cluster() {
    mapfile -t PORTS < <(free_ports "$REPLICAS")
    mapfile -t PEER_PORTS < <(free_ports "$REPLICAS")
    for id in $(seq 1 "$REPLICAS"); do start_broker "$id"; done
    ADDR="$(for p in "${PORTS[@]}"; do printf '127.0.0.1:%s,' "$p"; done)"
    ADDR="${ADDR%,}"
    # Serve once every broker has registered its address in the metadata.
    for _ in $(seq 1 100); do
        n=$("$BIN/steme" --bootstrap "$ADDR" cluster status --json 2>/dev/null \
            | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["brokers"]))' 2>/dev/null || echo 0)
        [ "$n" = "$REPLICAS" ] && return
        sleep 0.1
    done
    echo "the brokers did not all register" >&2; exit 1
}
stop_cluster() {
    for id in "${!PIDS[@]}"; do kill "${PIDS[$id]}" 2>/dev/null && wait "${PIDS[$id]}" 2>/dev/null; done
    PIDS=()
    rm -rf "$WORK"/data-* "$WORK"/broker-*.out
}
start_cluster
echo "# $REPLICAS steme-broker(s) at $ADDR, data in $WORK ($(stat -f -c %T "$WORK"))" >&2
STEME="target/release/steme --bootstrap $ADDR"

$STEME topic create nv --partitions 1 --config verify.signatures=false >/dev/null
{
    timeout 300 $STEME bench produce --topic signed --count "$COUNT" --size "$SIZE" --window "$WINDOW"
    timeout 300 $STEME bench produce --topic nv --count "$COUNT" --size "$SIZE" --window "$WINDOW"
    timeout 300 $STEME bench consume --topic signed --count "$COUNT"
    timeout 300 $STEME bench e2e --topic e2e --count "$((COUNT / 5))" --size "$SIZE" --window "$WINDOW"
} | tee "$WORK/steme.txt"

if [ "$REPLICAS" = 3 ]; then
    # Failover: kill -9 the leader of partition 0 mid-produce; time until a new leader is
    # named by the survivors, and what the producer saw (its p999 and max carry the pause).
    # "LEADER EPOCH" of partition 0 of topic $2, as the brokers at $1 report it ("0 0": none).
    leader_of() {
        target/release/steme --bootstrap "$1" cluster status "$2" --json 2>/dev/null | python3 -c '
import json,sys
p=json.load(sys.stdin)["topics"][0]["partitions"][0]; print(p["leader"] or 0, p["leader_epoch"])' \
            || echo "0 0"
    }
    timeout 300 $STEME bench produce --topic failover --count "$((COUNT * 3))" --size "$SIZE" \
        --window "$WINDOW" >"$WORK/failover.txt" 2>&1 &
    BENCH=$!
    sleep 3
    read -r OLD OLD_EPOCH < <(leader_of "$ADDR" failover)
    kill -9 "${PIDS[$OLD]}"; unset "PIDS[$OLD]"
    T0=$(date +%s%N)
    SURVIVORS="$(for i in $(seq 1 3); do [ "$i" = "$OLD" ] || printf '127.0.0.1:%s,' "${PORTS[i - 1]}"; done)"
    NEW=0 EPOCH=0
    for _ in $(seq 1 300); do
        read -r NEW EPOCH < <(leader_of "${SURVIVORS%,}" failover)
        [ "$NEW" != 0 ] && [ "$NEW" != "$OLD" ] && break
        sleep 0.05
    done
    T1=$(date +%s%N)
    wait "$BENCH" || true
    cat "$WORK/failover.txt"
    echo "RESULT peer=steme replicas=3 op=failover killed=$OLD new_leader=$NEW old_epoch=$OLD_EPOCH new_epoch=$EPOCH failover_ms=$(( (T1 - T0) / 1000000 ))" | tee -a "$WORK/steme.txt"
fi

if [ -x "$PEERS/nats-jetstream.sh" ]; then
    timeout 900 "$PEERS/nats-jetstream.sh" --replicas "$REPLICAS" --size "$SIZE" --count "$COUNT" \
        --mode async --window "$WINDOW" | tee "$WORK/nats.txt"
else
    echo "# $PEERS/nats-jetstream.sh not found: no peer figures" >&2
    : >"$WORK/nats.txt"
fi

if [ -n "$BASELINE" ]; then
    # This build and the baseline, alternating, each on a fresh cluster: unverified produce.
    stop_cluster
    : >"$WORK/ab.txt"
    AB_CONFIG=(--config verify.signatures=false) AB_WHAT="unverified produce"
    [ "$AB_SIGNED" = 1 ] && AB_CONFIG=() AB_WHAT="signed produce"
    for round in $(seq 1 "$ROUNDS"); do
        for side in current baseline; do
            if [ "$side" = current ]; then BIN="target/release"; else BIN="$BASELINE"; fi
            start_cluster
            "$BIN/steme" --bootstrap "$ADDR" topic create nv --partitions 1 "${AB_CONFIG[@]}" >/dev/null
            timeout 300 "$BIN/steme" --bootstrap "$ADDR" bench produce --topic nv --count "$COUNT" \
                --size "$SIZE" --window "$WINDOW" | grep '^RESULT' | sed "s/^RESULT /RESULT side=$side round=$round /" \
                | tee -a "$WORK/ab.txt"
            stop_cluster
        done
    done
    python3 - "$WORK/ab.txt" "$AB_WHAT" <<'PY'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in l.split()[1:]) for l in open(sys.argv[1]) if l.startswith("RESULT")]
def med(side, key):
    return statistics.median(float(r[key]) for r in rows if r["side"] == side)
cur, base = med("current", "msgs_per_s"), med("baseline", "msgs_per_s")
print(f"\n== this build vs baseline, {sys.argv[2]}, median of {len(rows) // 2} rounds each ==")
print(f"records/s: {cur:.0f} vs {base:.0f}: {cur / base:.3f}x ({(cur / base - 1) * 100:+.1f} %)")
print(f"p99 us: {med('current', 'p99_us'):.0f} vs {med('baseline', 'p99_us'):.0f}")
print(f"RESULT peer=steme op=ab_produce current={cur:.0f} baseline={base:.0f} ratio={cur / base:.3f}")
PY
fi

python3 - "$WORK/steme.txt" "$WORK/nats.txt" "$REPLICAS" <<'PY'
import sys
def results(path):
    out = []
    for line in open(path):
        if line.startswith("RESULT "):
            out.append(dict(kv.split("=", 1) for kv in line.split()[1:]))
    return out
steme, nats = results(sys.argv[1]), results(sys.argv[2])
rep = sys.argv[3]
def pick(rows, **kw):
    return next((r for r in rows if all(r.get(k) == v for k, v in kw.items())), None)
signed = steme[0] if steme else None
nv = steme[1] if len(steme) > 1 else None
consume = pick(steme, op="consume")
npub, ncon = pick(nats, op="publish"), pick(nats, op="consume")
print("\n== ratios (same machine, same run) ==")
if signed:
    print(f"signed produce / one-core batch-verify ceiling: {signed.get('ratio_to_verify_ceiling')}; / all cores': {signed.get('ratio_to_all_cores_verify_ceiling')}")
for name, mine in (("signed produce", signed), ("unverified produce", nv)):
    if mine and npub:
        r = float(mine["msgs_per_s"]) / float(npub["msgs_per_s"])
        p99 = float(mine["p99_us"]) / float(npub["p99_us"])
        print(f"{name} / NATS JetStream R{rep} publish: {r:.2f}x throughput, p99 {p99:.2f}x (Steme fsyncs before ack on every replica; NATS acks from the page cache)")
if consume and ncon:
    print(f"consume / NATS JetStream R{rep} consume: {float(consume['msgs_per_s']) / float(ncon['msgs_per_s']):.2f}x")
fo = pick(steme, op="failover")
if fo:
    print(f"failover: broker {fo['killed']} killed, broker {fo['new_leader']} named leader after {fo['failover_ms']} ms")
PY
