#!/usr/bin/env bash
# Attack benchmark: what hostile clients cost the TLS front of `causeway serve`
# (release build, in front of the stand-in web bridge), measured from outside.
#
# 1. A real client's handshake p50 idle, then while one source replays a
#    captured ClientHello as fast as THREADS connections can (the flood also
#    from 16 sources, which the per-source rate does not stop: the handshake
#    pool and its bounded queue do).
# 2. RSS with BROWSERS browsers: idle after one request, and asking for 4 MiB
#    each and never reading, with the default memory budget (the worst case per
#    connection) and with a 16 MiB one (the total bound).
# 3. Log lines per second while one connection pipelines refused requests.
#
# Usage: examples/causeway/bench/attack.sh
# Knobs: BROWSERS (1000), FLOOD_SECS (10), THREADS (16), HANDSHAKES (300),
# PARTS ("tls memory logs": which parts to run).
set -euo pipefail
cd "$(dirname "$0")/../../.."
BROWSERS=${BROWSERS:-1000}
FLOOD_SECS=${FLOOD_SECS:-10}
THREADS=${THREADS:-16}
HANDSHAKES=${HANDSHAKES:-300}
PARTS=${PARTS:-tls memory logs}
part() { [[ " $PARTS " == *" $1 "* ]]; }
ulimit -n 65536 2>/dev/null || true

cargo build --release -q -p causeway --example bridge_standin --example attack_load
cargo build --release -q -p causeway
CW=target/release/causeway
LOAD=target/release/examples/attack_load
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP_WORK:-}" ] && echo "kept $work" >&2 || rm -rf "$work"; }
trap cleanup EXIT

# The bridge stands for another host: its send buffers are kept small so that
# a thousand stalled 4 MiB answers do not fill this kernel's TCP memory.
target/release/examples/bridge_standin "$work" 262144 >"$work/bridge.port" &
pids+=($!)
while [ ! -s "$work/bridge.port" ]; do sleep 0.1; done
bport=$(cat "$work/bridge.port")
TLS_PORT=${TLS_PORT:-24443}
ADMIN_PORT=${ADMIN_PORT:-24455}
head -c 24 /dev/urandom | base64 >"$work/admin.token"
chmod 600 "$work/admin.token" "$work/front.key"

# start_server NAME [EXTRA TOML]: starts causeway, waits for its TLS port; sets $server.
start_server() {
  cat >"$work/$1.toml" <<TOML
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:$TLS_PORT"]
admin = "127.0.0.1:$ADMIN_PORT"
admin_token_file = "$work/admin.token"
cert = "$work/front.pem"
key = "$work/front.key"
upstream_ca = "$work/ca.pem"
user = ["alice:a-password-long-enough"]
proxy = ["join.example.test=https://localhost:$bport"]
log_level = "info"
$2
TOML
  chmod 600 "$work/$1.toml"
  ${CW_ENV:-} "$CW" serve --config "$work/$1.toml" >"$work/$1.out" 2>"$work/$1.log" &
  server=$!
  pids+=("$server")
  for _ in $(seq 600); do
    grep -q "listening on tls" "$work/$1.out" "$work/$1.log" 2>/dev/null && return
    sleep 0.1
  done
  echo "causeway did not start: $(tail -5 "$work/$1.log")" >&2
  exit 1
}
stop_server() { kill "$server"; wait "$server" 2>/dev/null || true; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
metric_sum() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" 'index($1, m) == 1 { s += $2 } END { print s + 0 }'; }
# settle: waits until the queued bytes stop moving for 2 s (60 s at most).
settle() {
  local last=-1 now
  for _ in $(seq 30); do
    now=$(metric causeway_web_queued_bytes)
    [ "$now" = "$last" ] && return
    last=$now
    sleep 2
  done
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
hs() { "$LOAD" handshakes "127.0.0.1:$TLS_PORT" "$work/ca.pem" 127.0.0.2 "$HANDSHAKES" | awk '{ print $2 }'; }

if part tls; then
echo "## TLS handshakes (a real client from 127.0.0.2, $HANDSHAKES handshakes one after another)"
start_server hs ""
hs >/dev/null # warm-up
idle=$(hs)
flood_row() { # flood_row SOURCES RATE (0: as fast as THREADS connections go)
  local t0 c0 c1 t1 p50 out
  t0=$(date +%s.%N); c0=$(cpu_ticks "$server")
  "$LOAD" hello-flood "127.0.0.1:$TLS_PORT" "$1" "$FLOOD_SECS" "$THREADS" "$2" >"$work/flood.out" &
  local flood=$!
  sleep 1
  p50=$(hs)
  wait "$flood"
  c1=$(cpu_ticks "$server"); t1=$(date +%s.%N)
  out=$(cat "$work/flood.out")
  local cpu
  cpu=$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", 100 * (b - a) / hz / (e - s) }')
  local what="as fast as $THREADS connections go"
  [ "$2" = 0 ] || what="at $2/s"
  echo "| ClientHello replay from $1 source(s), $what | $(echo "$out" | awk '{ print $2 }') | $(echo "$out" | awk '{ print $4 }') | $cpu % | $p50 | $(ratio "$p50" "$idle") |"
}
echo "| load | flood attempts/s | answered/s | server CPU | client p50 ms | vs idle |"
echo "|---|---|---|---|---|---|"
echo "| idle | - | - | - | $idle | 1.00 |"
flood_row 1 900 # the rate of the security review's finding
flood_row 1 0
flood_row 16 900
flood_row 16 0
echo
echo "refused by reason: $(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep '^causeway_tls_refused_total' | tr '\n' ' ')"
stop_server
fi

if part memory; then
echo
echo "## Memory ($BROWSERS browsers from 8 addresses)"
mem_row() { # mem_row NAME MODE PATH EXTRA_TOML
  start_server "$1" "$4"
  local base held budget queued
  sleep 1
  base=$(rss_kib "$server")
  rm -f "$work/hold.in" "$work/hold.out"; mkfifo "$work/hold.in"
  "$LOAD" "$2" "127.0.0.1:$TLS_PORT" "$work/ca.pem" 8 "$BROWSERS" "$3" <"$work/hold.in" >"$work/hold.out" &
  local hold=$!
  exec 3>"$work/hold.in" # the browsers are held while this is open
  while ! grep -q '^ready' "$work/hold.out"; do
    kill -0 "$hold" 2>/dev/null || { echo "the browsers did not open" >&2; exit 1; }
    sleep 0.2
  done
  settle
  held=$(rss_kib "$server")
  budget=$(metric causeway_web_memory_budget_bytes)
  queued=$(metric causeway_web_queued_bytes)
  echo "| $1 | $(( budget >> 20 )) MiB | $(( queued >> 10 )) KiB | $(( base >> 10 )) MiB | $(( held >> 10 )) MiB | $(( (held - base) / BROWSERS )) KiB |"
  exec 3>&-
  wait "$hold" || true
  stop_server
}
echo "| browsers | budget | queued | RSS before | RSS held | per browser |"
echo "|---|---|---|---|---|---|"
mem_row idle idle / ""
mem_row "never reading 4 MiB" stall /large ""
mem_row "never reading 4 MiB, 16 MiB budget" stall /large $'[http]\nmemory_budget_mb = 16'
fi

if part logs; then
echo
echo "## Log lines from one connection pipelining refused requests ($FLOOD_SECS s)"
start_server logs ""
before=$(wc -l <"$work/logs.log")
out=$("$LOAD" refusals "127.0.0.1:$TLS_PORT" "$work/ca.pem" "$FLOOD_SECS")
sleep 2 # the line that says how many were held back comes at the next interval
after=$(wc -l <"$work/logs.log")
echo "| requests/s refused | log lines/s |"
echo "|---|---|"
echo "| $(echo "$out" | awk '{ print $2 }') | $(awk -v n=$((after - before)) -v s="$FLOOD_SECS" 'BEGIN { printf "%.1f", n / s }') |"
stop_server
fi
