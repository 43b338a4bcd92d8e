#!/usr/bin/env bash
# Upgrade under load: ALLOCATIONS UDP clients, each relaying RATE ChannelData
# packets/s of 160 B through an echo peer, while `causeway serve` is upgraded
# in place (SIGUSR2) halfway through SECS of sending. Each round runs the load
# twice on a fresh server, alternating: once without an upgrade (the baseline:
# the longest gap between two echoes a client sees on this machine anyway) and
# once with one. Per round: packets lost, the longest gap between two echoes
# (max over the clients), the longest round trip, how long the workers stopped
# reading UDP (the old process's log), and the hand-over from the old process
# starting the new binary to the new one serving (its log's timestamps).
#
# Usage: examples/causeway/bench/upgrade.sh
# Knobs: ROUNDS (3), ALLOCATIONS (1000), RATE (50), SECS (20), NO_BUILD (set:
#        use target/release/causeway as it is).
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROUNDS=${ROUNDS:-3}
ALLOCATIONS=${ALLOCATIONS:-1000}
RATE=${RATE:-50}
SECS=${SECS:-20}
TURN_PORT=${TURN_PORT:-24331}
ADMIN_PORT=${ADMIN_PORT:-24332}

if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release -q -p causeway
fi
CW=$PWD/target/release/causeway
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

d=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  cp $d/upgrade.log /tmp/up.log; rm -rf "$d"
}
trap cleanup EXIT

cat >"$d/upgrade.toml" <<TOML
listen = ["127.0.0.1:$TURN_PORT"]
admin = "127.0.0.1:$ADMIN_PORT"
user = ["alice:wonderland"]
allow_peer = ["127.0.0.0/8"]
relay_range = "40000-49999"
log_level = "info"
TOML

# Milliseconds since the epoch of a log line's timestamp.
stamp() { date -d "$(sed -E 's/^\[([^ ]+) .*/\1/' <<<"$1")" +%s%3N; }

# One run: $1 = upgrade or baseline. Prints one result line.
run() {
  local kind=$1 log="$d/$1.log" out="$d/$1.out"
  : >"$log"
  "$CW" serve --config "$d/upgrade.toml" >"$out" 2>"$log" &
  local server=$!
  pids+=("$server")
  for _ in $(seq 100); do grep -q "causeway: ready" "$out" 2>/dev/null && break; sleep 0.1; done
  "$CW" load --server "127.0.0.1:$TURN_PORT" --user alice:wonderland --clients "$ALLOCATIONS" \
    --rate "$RATE" --size 160 --duration "$SECS" --threads 1 >"$d/load.out" 2>&1 &
  local load=$!
  # Once every client sends: the allocations are all in (the admin port's
  # metrics), then half the sending time.
  for _ in $(seq 600); do
    n=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | sed -nE 's/^causeway_allocations ([0-9]+)/\1/p')
    [ "${n:-0}" -ge "$ALLOCATIONS" ] && break
    sleep 0.1
  done
  sleep $((SECS / 2))
  local paused="-" took="-" new=""
  if [ "$kind" = upgrade ]; then
    kill -USR2 "$server"
    for _ in $(seq 300); do grep -q "SIGUSR2: upgraded\|SIGUSR2: upgrade refused" "$log" && break; sleep 0.1; done
    local done_line start_line
    done_line=$(grep -m1 "SIGUSR2: upgraded" "$log" || true)
    [ -n "$done_line" ] || { echo "upgrade failed: $(grep SIGUSR2 "$log")" >&2; exit 1; }
    start_line=$(grep -m1 "upgrade: starting" "$log")
    paused=$(sed -E 's/.*UDP paused ([0-9]+) ms.*/\1/' <<<"$done_line")
    took=$(($(stamp "$done_line") - $(stamp "$start_line")))
    new=$(sed -E 's/.*upgraded: pid ([0-9]+).*/\1/' <<<"$done_line")
    pids+=("$new")
  fi
  wait "$load"
  local r
  r=$(grep "^echo:" "$d/load.out") || { cat "$d/load.out" >&2; exit 1; }
  kill -INT "$server" ${new:+"$new"} 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  while [ -n "$new" ] && kill -0 "$new" 2>/dev/null; do sleep 0.1; done
  local sent lost gap rtt
  sent=$(sed -E 's/.* sent=([0-9]+).*/\1/' <<<"$r")
  lost=$((sent - $(sed -E 's/.* received=([0-9]+).*/\1/' <<<"$r")))
  gap=$(($(sed -E 's/.* gap_max_us=([0-9]+).*/\1/' <<<"$r") / 1000))
  rtt=$(($(sed -E 's/.* rtt_max_us=([0-9]+).*/\1/' <<<"$r") / 1000))
  printf '%-9s sent=%-8s lost=%-4s gap_max_ms=%-5s rtt_max_ms=%-5s udp_paused_ms=%-5s handover_ms=%s\n' \
    "$kind" "$sent" "$lost" "$gap" "$rtt" "$paused" "$took"
}

echo "# $ALLOCATIONS allocations x $RATE pkt/s, 160 B, $SECS s; $(nproc) cores"
for round in $(seq "$ROUNDS"); do
  echo "## round $round"
  run baseline
  run upgrade
done
