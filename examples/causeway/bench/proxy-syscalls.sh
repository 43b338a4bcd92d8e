#!/usr/bin/env bash
# Syscalls the web proxy makes per WSS echo (100 B each way) and per HTTPS request
# (keep-alive GET): causeway in front of the stand-in web bridge, one connection at
# a time, every syscall of the causeway process (all threads) counted with perf's
# raw_syscalls:sys_enter while examples/proxy_load.rs runs; then the same load under
# `strace -c -f` for which calls they are (the errors column: reads that found
# nothing, EAGAIN).
#
# Usage: examples/causeway/bench/proxy-syscalls.sh   (root, for perf and strace)
# Knobs: SECS (5).
set -euo pipefail
cd "$(dirname "$0")/../../.."
SECS=${SECS:-5}
command -v perf >/dev/null || { echo "needs perf (linux-perf)" >&2; exit 2; }
command -v strace >/dev/null || { echo "needs strace" >&2; exit 2; }

cargo build --release -q -p causeway --example bridge_standin --example proxy_load
cargo build --release -q -p causeway
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

target/release/examples/bridge_standin "$work" >"$work/bridge.port" &
pids+=($!)
while [ ! -s "$work/bridge.port" ]; do sleep 0.1; done
bport=$(cat "$work/bridge.port")
CW_PORT=${CW_PORT:-24311}
target/release/causeway serve --listen 127.0.0.1:0 --admin 127.0.0.1:0 --user a:b \
  --tls-listen "127.0.0.1:$CW_PORT" --cert "$work/front.pem" --key "$work/front.key" \
  --upstream-ca "$work/ca.pem" --proxy "join.example.test=https://localhost:$bport" \
  --log-level warn >"$work/cw.out" 2>"$work/cw.log" &
cw=$!
pids+=("$cw")
until (exec 3<>"/dev/tcp/127.0.0.1/$CW_PORT") 2>/dev/null; do sleep 0.1; done

load() { target/release/examples/proxy_load "127.0.0.1:$CW_PORT" "$work/ca.pem" "$1" 1 "$SECS" | sed -E 's/.*\(([0-9]+) in .*/\1/'; }
echo "| one connection, $SECS s | operations | syscalls of causeway | per operation |"
echo "|---|---|---|---|"
for mode in wss https; do
  perf stat -x, -e raw_syscalls:sys_enter -p "$cw" -o "$work/perf.$mode" &
  perf=$!
  sleep 0.5
  n=$(load "$mode")
  kill -INT "$perf"; wait "$perf" 2>/dev/null || true
  calls=$(awk -F, '/raw_syscalls/ { print $1 }' "$work/perf.$mode")
  echo "| $mode | $n | $calls | $(awk -v c="$calls" -v n="$n" 'BEGIN { printf "%.2f", c / n }') |"
done
for mode in wss https; do
  strace -c -f -p "$cw" -o "$work/strace.$mode" &
  st=$!
  sleep 0.5
  n=$(load "$mode")
  kill -INT "$st"; wait "$st" 2>/dev/null || true
  echo
  echo "$mode under strace ($n operations; strace slows it):"
  awk 'NR > 2 && $NF != "total" && $1 != "------" { calls = ($5 ~ /^[0-9]+$/) ? $4 : $4; print }' "$work/strace.$mode" | head -12
done
