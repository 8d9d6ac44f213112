#!/usr/bin/env bash
# End-to-end consume throughput of one broker, this build against another, alternating in
# one run (the machine is shared and noisy: compare the ratio, not the figures).
#
#   client/scripts/consume-ab.sh OLD_BIN_DIR [ROUNDS] [COUNT]
#
# OLD_BIN_DIR holds another build's `steme-broker` and `steme`; this build's come from
# target/release (`cargo build --release -p steme-broker -p steme-cli --bins`). Each
# round starts a fresh broker on a loopback port, produces COUNT records with
# `steme bench produce`, reads them back with `steme bench consume`, and prints its line.
set -euo pipefail
old=${1:?usage: consume-ab.sh OLD_BIN_DIR [ROUNDS] [COUNT]}
rounds=${2:-3}
count=${3:-1500000}
new="$(cd "$(dirname "$0")/../.." && pwd)/target/release"
for r in $(seq 1 "$rounds"); do
  for v in new old; do
    bin=$new
    [ "$v" = old ] && bin=$old
    dir=$(mktemp -d "${TMPDIR:-/tmp}/consume-ab-XXXX")
    port=$((20000 + RANDOM % 20000))
    "$bin/steme-broker" --node-id 1 --listen "127.0.0.1:$port" --data-dir "$dir/data" \
      >"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do grep -q "listening" "$dir/log" && break; sleep 0.1; done
    "$bin/steme" bench produce --bootstrap "127.0.0.1:$port" --topic ab --count "$count" \
      --window 4096 >/dev/null 2>&1
    line=$("$bin/steme" bench consume --bootstrap "127.0.0.1:$port" --topic ab --count 0 2>&1 |
      grep -E "records/s" | tail -1)
    echo "$v round $r: $line"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
  done
done
