#!/usr/bin/env bash
# Dedup cost against the retained log: produce into a fresh topic and into one grown to
# SEGMENTS segments of 1 MiB, on one broker, verification off, 200-byte records, and print
# the ratio grown / fresh (issue 13: >= 0.9). Then restart the broker and time how long
# until it acknowledges a produce into the grown topic. Runs this build and, if given,
# another one's binaries in the same run (the machine is shared and noisy: compare ratios).
#
#   client/scripts/dedup-growth.sh [OLD_BIN_DIR] [SEGMENTS] [COUNT] [ROUNDS]
#
# This build's binaries come from target/release
# (`cargo build --release -p steme-broker -p steme-cli --bins`).
set -euo pipefail
old=${1:-}
segments=${2:-520}
count=${3:-300000}
rounds=${4:-2}
new="$(cd "$(dirname "$0")/../.." && pwd)/target/release"
# 1 MiB segments of 200-byte assertions (268 bytes a record stored) hold ~3,900 records.
fill=$((segments * 3950))

bench() { # bin addr topic count -> records/s
  "$1/steme" bench produce --bootstrap "$2" --topic "$3" --count "$4" --window 4096 \
    --max-secs 120 2>/dev/null | sed -n 's/.* = \([0-9.]*[kM]\?\) records\/s.*/\1/p' | head -1
}

to_num() { # 322k -> 322000
  python3 -c "import sys; s=sys.argv[1]; m={'k':1e3,'M':1e6}; print(float(s[:-1])*m[s[-1]] if s[-1] in m else float(s))" "$1"
}

start_broker() { # bin dir port -> pid
  "$1/steme-broker" --node-id 1 --listen "127.0.0.1:$3" --data-dir "$2/data" >>"$2/log" 2>&1 &
  echo $!
}

stop_broker() { # pid (not a child of this shell: poll until it is gone)
  kill "$1"
  while kill -0 "$1" 2>/dev/null; do sleep 0.05; done
}

first_ack() { # bin dir port topic -> seconds from exec to the first acknowledged produce
  local t0 t1 pid
  t0=$(date +%s.%N)
  pid=$(start_broker "$1" "$2" "$3")
  until "$1/steme" --bootstrap "127.0.0.1:$3" bench produce --topic "$4" --count 1 \
    >/dev/null 2>&1; do
    sleep 0.05
  done
  t1=$(date +%s.%N)
  stop_broker "$pid"
  printf %.2f "$(echo "$t1 - $t0" | bc)"
}

run() { # label bin
  local label=$1 bin=$2
  local dir port addr pid
  dir=$(mktemp -d "${TMPDIR:-/tmp}/dedup-growth-XXXX")
  port=$((20000 + RANDOM % 20000))
  addr="127.0.0.1:$port"
  pid=$(start_broker "$bin" "$dir" "$port")
  for _ in $(seq 1 100); do grep -q "listening" "$dir/log" && break; sleep 0.1; done
  for t in fresh grown; do
    "$bin/steme" --bootstrap "$addr" topic create "$t" --partitions 1 \
      --config verify.signatures=false --config segment.bytes=1048576 >/dev/null
  done
  local t0 t1
  t0=$(date +%s.%N)
  bench "$bin" "$addr" grown "$fill" >/dev/null
  t1=$(date +%s.%N)
  local segs
  segs=$(find "$dir/data" -path '*grown*' -name '*.log' | wc -l)
  echo "$label: grew 'grown' to $segs segments ($fill records) in $(printf %.1f "$(echo "$t1 - $t0" | bc)") s"
  for r in $(seq 1 "$rounds"); do
    local f g
    f=$(bench "$bin" "$addr" fresh "$count")
    g=$(bench "$bin" "$addr" grown "$count")
    echo "$label round $r: fresh $f records/s, grown $g records/s, grown / fresh = $(python3 -c "print(f'{$(to_num "$g")/$(to_num "$f"):.2f}')")"
  done
  stop_broker "$pid"
  # Restart: from exec to the first acknowledged produce, with the grown log and then, for
  # reference, with an empty data directory.
  local grown_s empty_s
  grown_s=$(first_ack "$bin" "$dir" "$port" grown)
  rm -rf "$dir/data"
  empty_s=$(first_ack "$bin" "$dir" "$port" grown)
  echo "$label: start to first acknowledged produce: $grown_s s with $segs segments, $empty_s s empty"
  rm -rf "$dir"
}

run "this build" "$new"
if [ -n "$old" ]; then
  run "old build" "$old"
fi
