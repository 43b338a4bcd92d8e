#!/usr/bin/env bash
# Meeting-scale web proxy benchmark: causeway and nginx as the same TLS reverse
# proxy (as in nginx-compare.sh) in front of the same stand-in web bridge, same
# machine, same run. For each number of tunnels N, a meeting of N browsers
# (examples/meeting_load.rs: N WSS tunnels opened at a bounded rate, each echoing a
# 100-byte frame a second for SECS seconds) through each server; then HTTPS
# requests/s (examples/proxy_load.rs, 16 keep-alive connections, 10 s).
#
# Every run gets a fresh bridge and a freshly started server, so the peak RSS
# (VmRSS sampled every 0.5 s; nginx: master + workers) and the CPU seconds
# (utime + stime over the run; nginx: master + workers) are those of that run
# alone; nginx's sum counts pages its processes share once per process, which the
# growth row (peak - idle) mostly cancels. The per-tunnel row is the RSS halfway
# through the window (every tunnel open, handshakes over) less the idle RSS,
# divided by N: what one open tunnel costs, both TLS sessions and buffers. The
# table shows the median over ROUNDS
# rounds (causeway and nginx alternate). The load tool and the bridge (a thread
# per connection) share the machine with the server; stderr has each run's raw
# line, with the load tool's and the bridge's CPU seconds.
#
# SERVERS="causeway traversal" compares the join URL served directly with the
# same join URL served through the traversal: `causeway serve` as the edge
# (`proxy = ["JOIN=connector"]`, `[traversal]`) and `causeway connect` beside it
# (POOL connections kept ready, 32 by default) dialling the bridge. Its server
# rows are the edge's; the connector's peak RSS, RSS per tunnel and CPU have
# rows of their own.
#
# SERVERS="traversal hop" measures what any inside hop costs on this machine:
# "hop" is the same edge dialling an nginx inside (one process, TLS both ways,
# keep-alive and session reuse toward the bridge) that dials the bridge, the
# classic reverse proxy a DMZ rule forbids but the same two extra TLS sessions
# on every byte's path; its nginx has the connector's rows.
#
# Usage: examples/causeway/bench/meeting-compare.sh   (needs Debian's nginx; root
#        only to lift limits)
# Knobs: TUNNELS ("1000 4000 8000"), SECS (20), ROUNDS (1), SETTLE (5, seconds
#        between runs), SERVERS ("causeway nginx", "causeway traversal" or
#        "traversal hop"),
#        POOL (32), NO_HTTPS (set: skip the HTTPS runs), NO_BUILD (set: use the
#        binaries already in target/release).
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck source=nginx-proxy.sh
. examples/causeway/bench/nginx-proxy.sh
TUNNELS=${TUNNELS:-1000 4000 8000}
SECS=${SECS:-20}
ROUNDS=${ROUNDS:-1}
SETTLE=${SETTLE:-5}
SERVERS=${SERVERS:-causeway nginx}
POOL=${POOL:-32}
# Every browser of the benchmark comes from 127.0.0.1: the per-source TLS
# handshake rate (an office NAT's allowance, 200/s after a burst of 1000) would
# refuse the ramp of a meeting of thousands from one address.
BENCH_TCP='[tcp]
tls_handshakes_per_sec = 1000000
tls_handshake_burst = 1000000'
TRAVERSAL_PORT=${TRAVERSAL_PORT:-24314}
# Listening ports outside the ephemeral ones (32768-60999): a run leaves thousands
# of TIME_WAIT sockets on random local ports, and one on a listening port makes
# the next server's bind fail. That includes causeway's TURN listener: given port
# 0, it binds TCP on the port the kernel chose for its UDP socket.
CW_PORT=${CW_PORT:-24311}
NG_PORT=${NG_PORT:-24312}
HOP_PORT=${HOP_PORT:-24315}
TURN_PORT=${TURN_PORT:-24313}
case " $SERVERS " in
  *" nginx "* | *" hop "*) command -v nginx >/dev/null || { echo "nginx is not installed: apt-get install nginx-light" >&2; exit 2; } ;;
esac

if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release -q -p causeway --example bridge_standin --example proxy_load --example meeting_load
  cargo build --release -q -p causeway
fi

# Each server holds two descriptors per tunnel (browser side, bridge side).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)
[ "$nofile" = unlimited ] && nofile=1048576
for n in $TUNNELS; do
  if [ $((2 * n + 256)) -gt "$nofile" ]; then
    echo "warning: open files limited to $nofile; $n tunnels need about $((2 * n + 256))" >&2
  fi
done
[ "$nofile" -gt 65536 ] && nofile=65536
# TIME_WAIT of the previous run: reuse on loopback (Linux's default, 2).
if [ "$(cat /proc/sys/net/ipv4/tcp_tw_reuse)" = 0 ]; then
  sysctl -qw net.ipv4.tcp_tw_reuse=2 2>/dev/null || echo "warning: net.ipv4.tcp_tw_reuse is 0" >&2
fi
hz=$(getconf CLK_TCK)

root=$(mktemp -d)
live=()
cleanup() {
  for p in "${live[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$root"
}
trap cleanup EXIT

# Stops child process $1: TERM, then KILL after 10 s.
stop() {
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do
    state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null || echo gone)
    [ "$state" = Z ] || [ "$state" = gone ] && break
    sleep 0.1
  done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
# Whether something listens on 127.0.0.1:$1.
listening() { grep -qi " 0100007F:$(printf %04X "$1") 00000000:0000 0A " /proc/net/tcp; }
# The children of process $1.
children() { cat /proc/[0-9]*/stat 2>/dev/null | awk -v pp="$1" '{ p = $1; sub(/^.*\) /, ""); if ($2 == pp) print p }'; }
# utime + stime of processes "$@", in clock ticks.
cpu_ticks() {
  for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null || true; done |
    awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t + 0 }'
}
# The sum of VmRSS (KiB) of processes "$@".
rss_kib() {
  for p in "$@"; do cat "/proc/$p/status" 2>/dev/null || true; done |
    awk '/^VmRSS:/ { s += $2 } END { print s + 0 }'
}
# Writes to $1 the highest rss_kib of processes "${@:2}", every 0.5 s.
sample_rss() {
  local out=$1 max=0 sum
  shift
  while :; do
    sum=$(rss_kib "$@")
    if [ "$sum" -gt "$max" ]; then max=$sum; echo "$max" >"$out"; fi
    sleep 0.5
  done
}

start_bridge() {
  target/release/examples/bridge_standin "$1" >"$1/bridge.port" 2>"$1/bridge.err" &
  bridge=$!
  live+=("$bridge")
  while [ ! -s "$1/bridge.port" ]; do
    kill -0 "$bridge" 2>/dev/null || { echo "bridge_standin failed: $(cat "$1/bridge.err")" >&2; exit 1; }
    sleep 0.1
  done
  bport=$(cat "$1/bridge.port")
}

# The edge (server) and the connector beside it, in directory $1.
start_traversal() {
  local d=$1 pin
  pin=$(target/release/causeway connect --fingerprint "$d/front.pem")
  printf '%s\n' "listen = [\"127.0.0.1:$TURN_PORT\"]" 'admin = "127.0.0.1:0"' 'user = ["a:b"]' \
    "tls_listen = [\"127.0.0.1:$port\"]" "cert = \"$d/front.pem\"" "key = \"$d/front.key\"" \
    'proxy = ["join.example.test=connector"]' 'log_level = "warn"' '' "$BENCH_TCP" '' '[traversal]' \
    "listen = \"127.0.0.1:$TRAVERSAL_PORT\"" '' '[[traversal.connector]]' 'name = "bench"' \
    "pin = \"$pin\"" 'join = ["join.example.test"]' >"$d/edge.toml"
  target/release/causeway serve --config "$d/edge.toml" >"$d/server.out" 2>"$d/server.log" &
  server=$!
  # The connector shows the same certificate as the edge: each pins it.
  printf '%s\n' "edge = [\"127.0.0.1:$TRAVERSAL_PORT\"]" 'edge_name = "join.example.test"' \
    "edge_pin = \"$pin\"" "cert = \"$d/front.pem\"" "key = \"$d/front.key\"" "pool = $POOL" \
    "proxy = [\"join.example.test=https://localhost:$bport\"]" "upstream_ca = \"$d/ca.pem\"" \
    'log_level = "warn"' >"$d/inside.toml"
  for _ in $(seq 100); do listening "$TRAVERSAL_PORT" && break; sleep 0.1; done
  target/release/causeway connect --config "$d/inside.toml" >"$d/connector.out" 2>"$d/connector.log" &
  connector=$!
  live+=("$connector")
  # Ready once the edge holds the pool.
  for _ in $(seq 100); do
    [ "$(ss -Htn state established "( sport = :$TRAVERSAL_PORT )" | wc -l)" -ge "$POOL" ] && break
    sleep 0.1
  done
}

# An nginx inside (one process) between the edge and the bridge, in directory
# $1, on HOP_PORT: the connector's rows are its.
start_hop() {
  local d=$1
  nginx_proxy_conf "$d" "$HOP_PORT" "$bport" "$nofile" "$d/hop.log"
  sed -i 's/^worker_processes 2;/master_process off;/' "$d/nginx.conf"
  nginx -c "$d/nginx.conf" -g 'daemon off;' >"$d/hop.out" 2>&1 &
  connector=$!
  live+=("$connector")
  for _ in $(seq 100); do listening "$HOP_PORT" && break; sleep 0.1; done
  listening "$HOP_PORT" || { echo "the inside nginx does not listen: $(cat "$d/hop.out")" >&2; exit 1; }
}

# Starts SERVER ($1) in directory $2; sets server (the child to stop), procs (the
# processes to measure) and port.
start_server() {
  local d=$2
  connector=
  if [ "$1" = traversal ]; then
    port=$CW_PORT
    start_traversal "$d"
  elif [ "$1" = causeway ] || [ "$1" = hop ]; then
    port=$CW_PORT
    local up=$bport
    if [ "$1" = hop ]; then
      start_hop "$d"
      up=$HOP_PORT
    fi
    printf '%s\n' "$BENCH_TCP" >"$d/bench.toml"
    target/release/causeway serve --config "$d/bench.toml" --listen "127.0.0.1:$TURN_PORT" --admin 127.0.0.1:0 --user a:b \
      --tls-listen "127.0.0.1:$port" --cert "$d/front.pem" --key "$d/front.key" \
      --upstream-ca "$d/ca.pem" --proxy "join.example.test=https://localhost:$up" \
      --log-level warn >"$d/server.out" 2>"$d/server.log" &
    server=$!
  else
    port=$NG_PORT
    nginx_proxy_conf "$d" "$port" "$bport" "$nofile" "$d/server.log"
    nginx -c "$d/nginx.conf" -g 'daemon off;' >"$d/server.out" 2>&1 &
    server=$!
  fi
  live+=("$server")
  for _ in $(seq 100); do
    listening "$port" && break
    kill -0 "$server" 2>/dev/null || { echo "$1 failed: $(cat "$d/server.log")" >&2; exit 1; }
    sleep 0.1
  done
  listening "$port" || { echo "$1 does not listen on $port" >&2; exit 1; }
  procs=("$server")
  if [ "$1" = nginx ]; then
    for _ in $(seq 50); do [ "$(children "$server" | wc -l)" -ge 2 ] && break; sleep 0.1; done
    mapfile -t workers < <(children "$server")
    procs+=("${workers[@]}")
  fi
}

declare -A res
# Records value $3 of metric $2 for key $1 (one value per round).
put() { res[$1,$2]="${res[$1,$2]:-} $3"; }
# The median of the recorded values.
get() {
  # shellcheck disable=SC2086
  printf '%s\n' ${res[$1,$2]:-} | sort -g | awk 'NF { a[++n] = $1 } END { print (n ? a[int((n + 1) / 2)] : "n/a") }'
}
# Clock ticks $1 in seconds.
secs() { awk -v t="$1" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }'; }
field() { sed -nE "s/(^|.* )$1=([^ ]*).*/\2/p" <<<"$2"; }

# One run: a fresh bridge and SERVER ($1), then meeting_load with $2 tunnels, or
# proxy_load HTTPS when $2 is "https".
run() {
  local name=$1 n=$2 d line cpu0 cpu1 bcpu0 bcpu1 sampler rss rss0 ccpu0 crss0 crss csampler
  d=$(mktemp -d "$root/$name-$n.XXXX")
  start_bridge "$d"
  start_server "$name" "$d"
  sleep 0.5
  rss0=$(rss_kib "${procs[@]}")
  cpu0=$(cpu_ticks "${procs[@]}")
  bcpu0=$(cpu_ticks "$bridge")
  ccpu0=0 crss0=0
  if [ -n "$connector" ]; then
    ccpu0=$(cpu_ticks "$connector")
    crss0=$(rss_kib "$connector")
    sample_rss "$d/crss" "$connector" &
    csampler=$!
    live+=("$csampler")
  fi
  sample_rss "$d/rss" "${procs[@]}" &
  sampler=$!
  live+=("$sampler")
  if [ "$n" = https ]; then
    line=$(target/release/examples/proxy_load "127.0.0.1:$port" "$d/ca.pem" https 16 10 2>"$d/load.err") ||
      line="proxy_load failed: $(tail -n 3 "$d/load.err")"
  else
    line=$(MEASURE_PIDS="${procs[*]}" target/release/examples/meeting_load "127.0.0.1:$port" "$d/ca.pem" "$n" "$SECS" 2>"$d/load.err") ||
      line="meeting_load failed: $(tail -n 3 "$d/load.err")"
  fi
  if [ -n "$connector" ]; then
    put "$name,$n" conn_cpu_s "$(secs $(($(cpu_ticks "$connector") - ccpu0)))"
    kill "$csampler" 2>/dev/null || true
    wait "$csampler" 2>/dev/null || true
    crss=$(cat "$d/crss" 2>/dev/null || echo 0)
    put "$name,$n" conn_rss_mib "$(awk -v r="$crss" 'BEGIN { printf "%.1f", r / 1024 }')"
    if [ "$n" != https ]; then
      put "$name,$n" conn_per_tunnel_kib "$(awk -v m="$crss" -v r="$crss0" -v n="$n" 'BEGIN { printf "%.1f", (m - r) / n }')"
    fi
    stop "$connector"
  fi
  cpu1=$(cpu_ticks "${procs[@]}")
  bcpu1=$(cpu_ticks "$bridge")
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  rss=$(cat "$d/rss" 2>/dev/null || echo 0)
  stop "$server"
  for p in "${procs[@]:1}"; do # nginx workers left behind by a killed master
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = nginx ] && kill -9 "$p" 2>/dev/null || true
  done
  stop "$bridge"
  live=()
  echo "$name $n: $line (peak RSS $((rss / 1024)) MiB, idle $((rss0 / 1024)) MiB," \
    "CPU $(secs $((cpu1 - cpu0))) s; bridge CPU $(secs $((bcpu1 - bcpu0))) s)" >&2
  sed 's/^/    /' "$d/load.err" >&2
  if [ "$n" = https ]; then
    put "$name,https" rps "$(sed -nE 's/^https: ([0-9]+)\/s.*/\1/p' <<<"$line")"
  else
    for f in opened failed closed sent echoes lost p50_ms p99_ms max_ms open_s; do
      put "$name,$n" "$f" "$(field "$f" "$line")"
    done
    put "$name,$n" per_tunnel_kib "$(awk -v m="$(field mid_rss_kib "$line")" -v r="$rss0" -v n="$n" \
      'BEGIN { if (m ~ /^[0-9]+$/) printf "%.1f", (m - r) / n; else print "n/a" }')"
    put "$name,$n" delivered "$(awk -v e="$(field echoes "$line")" -v s="$(field sent "$line")" \
      'BEGIN { if (s > 0) printf "%.2f", 100 * e / s; else print "n/a" }')"
  fi
  put "$name,$n" rss_mib "$(awk -v r="$rss" 'BEGIN { printf "%.1f", r / 1024 }')"
  put "$name,$n" rss_growth_mib "$(awk -v r=$((rss - rss0)) 'BEGIN { printf "%.1f", r / 1024 }')"
  put "$name,$n" cpu_s "$(secs $((cpu1 - cpu0)))"
  rm -rf "$d"
  sleep "$SETTLE"
}

for n in $TUNNELS; do
  for _ in $(seq "$ROUNDS"); do
    for s in $SERVERS; do run "$s" "$n"; done
  done
done
if [ -z "${NO_HTTPS:-}" ]; then
  for _ in $(seq "$ROUNDS"); do
    for s in $SERVERS; do run "$s" https; done
  done
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
read -r A B _ <<<"$SERVERS"
B=${B:-$A}
row() { # label, key, metric
  local a b
  a=$(get "$A,$2" "$3")
  b=$(get "$B,$2" "$3")
  echo "| $1 | $a | $b | $(ratio "$a" "$b") |"
}
label() { if [ "$1" = nginx ]; then echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')"; else echo "$1"; fi; }
echo "| metric ($SECS s meeting window, median of $ROUNDS) | $(label "$A") | $(label "$B") | $A / $B |"
echo "|---|---|---|---|"
for n in $TUNNELS; do
  row "$n tunnels: opened" "$n" opened
  row "$n tunnels: failed to open" "$n" failed
  row "$n tunnels: closed after opening" "$n" closed
  row "$n tunnels: ramp (all settled), s" "$n" open_s
  row "$n tunnels: echoes sent" "$n" sent
  row "$n tunnels: echoes delivered, %" "$n" delivered
  row "$n tunnels: echo latency p50, ms" "$n" p50_ms
  row "$n tunnels: echo latency p99, ms" "$n" p99_ms
  row "$n tunnels: echo latency max, ms" "$n" max_ms
  row "$n tunnels: server peak RSS, MiB" "$n" rss_mib
  row "$n tunnels: server RSS growth (peak - idle), MiB" "$n" rss_growth_mib
  row "$n tunnels: server RSS per open tunnel (mid-window - idle), KiB" "$n" per_tunnel_kib
  row "$n tunnels: server CPU, s" "$n" cpu_s
  if [ -n "${res[traversal,$n,conn_cpu_s]:-}${res[hop,$n,conn_cpu_s]:-}" ]; then
    row "$n tunnels: inside hop (connector or nginx) peak RSS, MiB" "$n" conn_rss_mib
    row "$n tunnels: inside hop RSS per tunnel (peak - idle), KiB" "$n" conn_per_tunnel_kib
    row "$n tunnels: inside hop CPU, s" "$n" conn_cpu_s
  fi
done
if [ -z "${NO_HTTPS:-}" ]; then
  row "HTTPS requests/s (16 keep-alive connections, 10 s)" https rps
  row "HTTPS: server peak RSS, MiB" https rss_mib
  row "HTTPS: server CPU, s" https cpu_s
  if [ -n "${res[traversal,https,conn_cpu_s]:-}${res[hop,https,conn_cpu_s]:-}" ]; then
    row "HTTPS: inside hop CPU, s" https conn_cpu_s
  fi
fi
