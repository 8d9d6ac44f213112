#!/usr/bin/env bash
# The cost of TLS on the client listener: one broker with TLS, one without, the same build,
# alternating in one run (the machine is shared and noisy: compare the ratio).
#
#   client/scripts/tls-ab.sh [ROUNDS] [COUNT]
#
# Makes a CA and a broker certificate for 127.0.0.1 with openssl (the steps an operator
# takes), then per round and per mode starts a fresh broker on a loopback port, produces
# COUNT records with `steme bench produce` and reads them back with `steme bench consume`.
# Binaries come from target/release (`cargo build --release -p steme-broker -p
# steme-cli --bins`).
set -euo pipefail
rounds=${1:-3}
count=${2:-1000000}
bin="$(cd "$(dirname "$0")/../.." && pwd)/target/release"
pki=$(mktemp -d "${TMPDIR:-/tmp}/tls-ab-pki-XXXX")
trap 'rm -rf "$pki"' EXIT
# A CA, and a broker certificate for 127.0.0.1 signed by it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=steme bench CA" -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=broker-1" \
  -keyout "$pki/broker.key" -out "$pki/broker.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$pki/san.ext"
openssl x509 -req -in "$pki/broker.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
  -CAcreateserial -days 2 -extfile "$pki/san.ext" -out "$pki/broker.pem" 2>/dev/null
for r in $(seq 1 "$rounds"); do
  for mode in plain tls; do
    dir=$(mktemp -d "${TMPDIR:-/tmp}/tls-ab-XXXX")
    port=$((20000 + RANDOM % 20000))
    broker_tls=()
    client_tls=()
    if [ "$mode" = tls ]; then
      broker_tls=(--tls-cert "$pki/broker.pem" --tls-key "$pki/broker.key")
      client_tls=(--tls-ca "$pki/ca.pem")
    fi
    "$bin/steme-broker" --node-id 1 --listen "127.0.0.1:$port" --data-dir "$dir/data" \
      "${broker_tls[@]}" >"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do grep -q "listening" "$dir/log" && break; sleep 0.1; done
    produced=$("$bin/steme" "${client_tls[@]}" bench produce --bootstrap "127.0.0.1:$port" \
      --topic ab --count "$count" 2>&1 | grep -E "records/s" | tail -1)
    consumed=$("$bin/steme" "${client_tls[@]}" bench consume --bootstrap "127.0.0.1:$port" \
      --topic ab --count 0 2>&1 | grep -E "records/s" | tail -1)
    echo "$mode round $r: produce: $produced"
    echo "$mode round $r: consume: $consumed"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
  done
done
