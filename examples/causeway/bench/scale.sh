#!/usr/bin/env bash
# Allocations at scale: one `causeway serve` (and, with COTURN=1, Debian's
# coturn after it, same load) holding ALLOCATIONS allocations, each with a
# permission and a channel (`causeway load --mode bind` from SOURCES processes
# at once, each its own share), a tenth more of them relaying ChannelData
# echoes at RATE packets/s each (`causeway load --threads 1`). Reports the rate the
# channels were made at, the server's RSS before and with them (and per
# allocation), and, under that load, the answer time and size of `/metrics`,
# `/status` (its default page) and `/status?limit=0` (the summary), medians of
# five; and for causeway the echoes' round trips (p50, p99, the longest) over
# ECHO_SECS with nothing read, then over ECHO_SECS with `/status` read every
# second (what a monitoring poll costs the calls). With REFRESH_EVERY=SECS
# every bound client refreshes its allocation, permission and channel (three
# requests) once every SECS while it is held, and the script reports, over
# 10 s before the echoes, the requests per second answered, how many failed,
# and the server's CPU per request (browsers refresh about every five
# minutes: 30 s over 16,000 allocations asks what 160,000 would).
#
# Each allocation holds a relay socket: the open-file limit bounds the count
# (this machine's hard limit is 20,000; 100,000 needs `ulimit -Hn` over that
# for the server and for each load process's share).
#
# causeway's RSS is read before anything read its allocations (its workers
# list them only while someone does), after the `/status` reads, and 12 s
# later (the workers stop listing 10 s after the last read).
#
# Usage: examples/causeway/bench/scale.sh
# Knobs: ALLOCATIONS (16000), SOURCES (4), RATE (10), COTURN (set: coturn
#        too), SERVERS (instead: "causeway", "coturn" or both), NO_BUILD,
#        COTURN_BIN (a turnserver other than Debian's, e.g. coturn 4.17.1 from
#        bench/coturn-build.sh), COTURN_ARGS (options added to coturn's),
#        SERVER_WRAP (a command that execs causeway with what it is given),
#        MALLOC (deployed: glibc's allocator set as the systemd unit sets it;
#        glibc: its defaults), ECHO_SECS (20), REFRESH_EVERY (unset: no
#        refreshes).
set -euo pipefail
cd "$(dirname "$0")/../../.."
# The allocator's settings as deployed (MALLOC).
# shellcheck source=deployed-malloc.sh
. examples/causeway/bench/deployed-malloc.sh
ALLOCATIONS=${ALLOCATIONS:-16000}
SOURCES=${SOURCES:-4}
RATE=${RATE:-10}
ECHO_SECS=${ECHO_SECS:-20}
PORT=${PORT:-3478}
ADMIN=${ADMIN:-4472}
if [ -z "${NO_BUILD:-}" ]; then cargo build --release -q -p causeway; fi
CW=$PWD/target/release/causeway
ulimit -n "$(ulimit -Hn)"
traffic=$((ALLOCATIONS / 10))
need=$((ALLOCATIONS + traffic + 200))
if [ "$(ulimit -n)" -lt "$need" ]; then
  echo "the open-file limit $(ulimit -n) is under $need (ALLOCATIONS + a tenth): lower ALLOCATIONS" >&2
  exit 2
fi

d=$(mktemp -d)
pids=()
server_pid=
# SIGINT for the server: causeway stops at once (SIGTERM would drain).
# SIGTERM for the load: a script's background jobs ignore SIGINT.
stop_all() {
  for p in "${pids[@]}"; do
    if [ "$p" = "$server_pid" ]; then kill -INT "$p"; else kill -TERM "$p"; fi 2>/dev/null || true
  done
  wait 2>/dev/null || true
  pids=()
}
cleanup() {
  stop_all
  rm -rf "$d"
}
trap cleanup EXIT
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# Median answer time (ms) and size (bytes) of five GETs of $1.
answer() {
  local t s
  t=$(for _ in 1 2 3 4 5; do curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $token" "http://127.0.0.1:$ADMIN$1"; done |
    awk '{ print $1 * 1000 }' | median)
  s=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$ADMIN$1" | wc -c)
  printf '%-22s %8.1f ms %10s bytes\n' "$1" "$t" "$s"
}

run() { # server: causeway or coturn
  local server=$1 pid
  case $server in
    causeway)
      cat >"$d/scale.toml" <<TOML
listen = ["127.0.0.1:$PORT"]
admin = "127.0.0.1:$ADMIN"
user = ["alice:wonderland"]
allow_peer = ["127.0.0.0/8"]
relay_range = "10000-65000"
log_level = "warn"

[quota]
total = $((ALLOCATIONS + traffic + 100))
TOML
      # shellcheck disable=SC2086 # SERVER_WRAP is a command and its words
      ${SERVER_WRAP:-} "${server_env[@]}" "$CW" serve --config "$d/scale.toml" >"$d/server.out" 2>"$d/server.log" &
      pid=$!
      for _ in $(seq 100); do grep -q "causeway: ready" "$d/server.out" 2>/dev/null && break; sleep 0.1; done
      token=$(cat "$(sed -nE 's/.*admin token in ([^ ]+).*/\1/p' "$d/server.out")")
      ;;
    coturn)
      "${COTURN_BIN:-turnserver}" -n --no-cli --no-tls --no-dtls --listening-ip 127.0.0.1 --listening-port "$PORT" \
        --relay-ip 127.0.0.1 --min-port 10000 --max-port 65000 --lt-cred-mech --realm causeway \
        --user alice:wonderland --allow-loopback-peers --no-stdout-log \
        --log-file "$d/coturn.log" --simple-log ${COTURN_ARGS:-} >/dev/null 2>&1 &
      pid=$!
      for _ in $(seq 100); do ss -uln | grep -q "127.0.0.1:$PORT" && break; sleep 0.1; done
      ;;
  esac
  pids+=("$pid")
  server_pid=$pid
  sleep 1
  local before
  before=$(rss_kib "$pid")
  local share=$((ALLOCATIONS / SOURCES)) t0 t1
  t0=$(date +%s%N)
  local refresh=()
  [ -n "${REFRESH_EVERY:-}" ] && refresh=(--refresh-every "$REFRESH_EVERY")
  for i in $(seq "$SOURCES"); do
    "$CW" load --mode bind --server "127.0.0.1:$PORT" --user alice:wonderland \
      --peer 127.0.0.2:9 --clients "$share" --hold 100000 "${refresh[@]}" >"$d/bind.$i" 2>&1 &
    pids+=($!)
  done
  for i in $(seq "$SOURCES"); do
    for _ in $(seq 3000); do grep -q "^bound:\|rror" "$d/bind.$i" 2>/dev/null && break; sleep 0.1; done
    grep -q "^bound:" "$d/bind.$i" || { echo "$server: binding failed: $(cat "$d/bind.$i")" >&2; exit 1; }
  done
  t1=$(date +%s%N)
  local made=$((share * SOURCES))
  local refreshes=
  if [ -n "${REFRESH_EVERY:-}" ]; then
    # Over 10 s, every source refreshing: the sum of each one's latest counts.
    refreshed() { # field
      for i in $(seq "$SOURCES"); do
        grep "^refreshed:" "$d/bind.$i" | tail -1 | sed -nE "s/.* $1=([0-9]+).*/\1/p"
      done | awk '{ s += $1 } END { print s + 0 }'
    }
    sleep 3
    local r0 f0 c0 r1 f1 c1
    r0=$(refreshed requests); f0=$(refreshed failed); c0=$(cpu_ticks "$pid")
    sleep 10
    r1=$(refreshed requests); f1=$(refreshed failed); c1=$(cpu_ticks "$pid")
    refreshes="refreshes (each allocation's, permission's and channel's once every ${REFRESH_EVERY} s): $(((r1 - r0) / 10)) requests/s, $((f1 - f0)) failed, server CPU $(awk -v t=$((c1 - c0)) -v hz="$tick" 'BEGIN { printf "%.1f", 100 * t / hz / 10 }') % of a core, $(awk -v t=$((c1 - c0)) -v hz="$tick" -v n=$((r1 - r0)) 'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }') µs per request"
  fi
  echo_load() { # seconds, output
    "$CW" load --server "127.0.0.1:$PORT" --user alice:wonderland --clients "$traffic" --rate "$RATE" \
      --duration "$1" --threads 1 >"$2" 2>&1
  }
  local quiet=
  if [ "$server" = causeway ]; then
    # The round trips with nothing read, then (below) while /status is read.
    echo_load "$ECHO_SECS" "$d/echo.quiet" || true
    quiet=$(grep "^echo:" "$d/echo.quiet" || cat "$d/echo.quiet")
  fi
  echo_load $((ECHO_SECS + 12)) "$d/echo.out" &
  local echo_pid=$!
  pids+=("$echo_pid")
  sleep 12
  local with
  with=$(rss_kib "$pid")
  echo "## $server"
  echo "channels bound: $made from $SOURCES sources in $(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }') s ($(awk -v n="$made" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", n / ns * 1e9 }') allocations+channels/s)"
  [ -n "$refreshes" ] && echo "$refreshes"
  echo "RSS: $((before / 1024)) MiB before, $((with / 1024)) MiB with $((made + traffic)) allocations: $(awk -v a="$before" -v b="$with" -v n=$((made + traffic)) 'BEGIN { printf "%.0f", (b - a) * 1024 / n }') B per allocation on top, $(awk -v b="$with" -v n=$((made + traffic)) 'BEGIN { printf "%.0f", b * 1024 / n }') B per allocation in all"
  if [ "$server" = causeway ]; then
    answer /metrics
    answer /status
    answer "/status?limit=0"
    # /status each second until the echo ends.
    while kill -0 "$echo_pid" 2>/dev/null; do
      curl -s -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$ADMIN/status" || true
      sleep 1
    done
    local read
    read=$(rss_kib "$pid")
    echo "RSS after those reads: $((read / 1024)) MiB ($(awk -v a="$before" -v b="$read" -v n=$((made + traffic)) 'BEGIN { printf "%.0f", (b - a) * 1024 / n }') B per allocation)"
    # The workers stop listing 10 s after the last read (LISTING_KEPT).
    sleep 12
    read=$(rss_kib "$pid")
    echo "RSS 12 s after the last read: $((read / 1024)) MiB ($(awk -v a="$before" -v b="$read" -v n=$((made + traffic)) 'BEGIN { printf "%.0f", (b - a) * 1024 / n }') B per allocation)"
  fi
  wait "$echo_pid" || true
  if [ -n "$quiet" ]; then
    echo "echoes, nothing read: $quiet"
    echo "echoes, /status read each second: $(grep "^echo:" "$d/echo.out" || cat "$d/echo.out")"
  else
    grep "^echo:" "$d/echo.out" || cat "$d/echo.out"
  fi
  stop_all
}

echo "# coturn: ${COTURN_BIN:-turnserver} ${COTURN_ARGS:-}" >&2
echo "# $ALLOCATIONS allocations with a channel each (+ $traffic relaying $RATE pkt/s each), $(nproc) cores"
for server in ${SERVERS:-causeway${COTURN:+ coturn}}; do run "$server"; done
