#!/usr/bin/env bash
# Soak: one `causeway serve` (TURN on UDP, TCP and TLS, the web proxy in front
# of the stand-in web bridge) under churn for SOAK_MINUTES: allocation storms
# made and ended at a steady rate, UDP clients relaying ChannelData echoes,
# TCP and TLS clients doing the same, and meetings of WSS tunnels opened and
# closed, each in a loop of its own. Every SAMPLE_SECS the server's RSS, open
# file descriptors and threads, and the answer times of /metrics and /status,
# are sampled. At the end: the samples, the slope of each (least squares, per
# hour, over the second half of the run: what grows once the load is steady),
# and the errors of every kind (failed allocations, corrupt echoes, tunnels
# that failed, closed early or lost an echo, a loop whose tool failed).
#
# Usage: examples/causeway/bench/soak.sh
# Knobs: SOAK_MINUTES (60), SAMPLE_SECS (60), NO_BUILD (set: use the binaries
#        in target/release), TURN_PORT, TLS_PORT, ADMIN_PORT and RELAY_RANGE
#        (two soaks side by side), SERVER_WRAP (a command the server runs under, as
#        in SERVER_WRAP="heaptrack -o /tmp/soak.heaptrack": the samples are
#        the server's own, and it is stopped with SIGINT so the tool can finish
#        its record), MALLOC (deployed: glibc's allocator set as
#        deploy/systemd/causeway.service sets it, GLIBC_TUNABLES; glibc: its
#        defaults, one arena per thread), CAUSEWAY_BIN (the server's binary,
#        target/release/causeway by default, which also drives the load; the
#        static image's, target/x86_64-unknown-linux-musl/release/causeway,
#        runs on musl's allocator, where GLIBC_TUNABLES means nothing).
#        Exits 1 when any error was counted.
set -euo pipefail
cd "$(dirname "$0")/../../.."
SOAK_MINUTES=${SOAK_MINUTES:-60}
SAMPLE_SECS=${SAMPLE_SECS:-60}
TURN_PORT=${TURN_PORT:-24321}
TLS_PORT=${TLS_PORT:-24322}
ADMIN_PORT=${ADMIN_PORT:-24323}
RELAY_RANGE=${RELAY_RANGE:-40000-49999}

if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release -q -p causeway --example bridge_standin --example meeting_load
  cargo build --release -q -p causeway
fi
CW=target/release/causeway
SERVER_BIN=${CAUSEWAY_BIN:-$CW}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

d=$(mktemp -d)
pids=()
cleanup() {
  # The server first, with SIGINT (no drain), then its wrapper if any and the rest.
  [ -n "${server:-}" ] && kill -INT "$server" 2>/dev/null || true
  for p in "${pids[@]}"; do [ "$p" = "${server:-}" ] || kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$d"
}
trap cleanup EXIT

target/release/examples/bridge_standin "$d" >"$d/bridge.port" 2>"$d/bridge.err" &
pids+=($!)
while [ ! -s "$d/bridge.port" ]; do sleep 0.1; done
bport=$(cat "$d/bridge.port")
cat >"$d/soak.toml" <<TOML
listen = ["127.0.0.1:$TURN_PORT"]
tls_listen = ["127.0.0.1:$TLS_PORT"]
cert = "$d/front.pem"
key = "$d/front.key"
upstream_ca = "$d/ca.pem"
proxy = ["join.example.test=https://localhost:$bport"]
admin = "127.0.0.1:$ADMIN_PORT"
user = ["alice:wonderland"]
allow_peer = ["127.0.0.0/8"]
relay_range = "$RELAY_RANGE"
log_level = "warn"

[tcp]
# Every client of the soak comes from 127.0.0.1 (an office NAT's allowance).
tls_handshakes_per_sec = 1000000
tls_handshake_burst = 1000000
TOML
# The allocator's settings as deployed (MALLOC).
# shellcheck source=deployed-malloc.sh
. examples/causeway/bench/deployed-malloc.sh
# shellcheck disable=SC2086 # SERVER_WRAP is a command and its words
${SERVER_WRAP:-} "${server_env[@]}" "$SERVER_BIN" serve --config "$d/soak.toml" >"$d/server.out" 2>"$d/server.log" &
wrapper=$!
pids+=("$wrapper")
for _ in $(seq 300); do grep -q "causeway: ready" "$d/server.out" 2>/dev/null && break; sleep 0.1; done
grep -q "causeway: ready" "$d/server.out" || { echo "the server did not start: $(cat "$d/server.log")" >&2; exit 1; }
# The process to sample: the wrapper's child named causeway, or the wrapper itself.
server=$wrapper
for c in $(pgrep -P "$wrapper" || true); do
  [ "$(cat "/proc/$c/comm" 2>/dev/null)" = causeway ] && server=$c
done
token=$(sed -nE 's/.*admin token in ([^ ]+).*/\1/p' "$d/server.out")

end=$(($(date +%s) + SOAK_MINUTES * 60))
# Runs "$@" again and again until the end, appending each result to $d/$name.
loop() {
  local name=$1
  shift
  while [ "$(date +%s)" -lt "$end" ]; do
    if ! "$@" >>"$d/$name" 2>&1; then echo "LOOP-FAILED $name" >>"$d/$name"; fi
    echo >>"$d/$name"
  done
}
U=(--server "127.0.0.1:$TURN_PORT" --user alice:wonderland)
loop storm "$CW" load "${U[@]}" --mode allocations --count 200 --concurrency 4 --hold 2 &
pids+=($!)
loop udp "$CW" load "${U[@]}" --clients 4 --rate 200 --duration 20 &
pids+=($!)
loop tcp "$CW" load "${U[@]}" --transport tcp --clients 2 --rate 100 --duration 15 &
pids+=($!)
loop tls "$CW" load --server "127.0.0.1:$TLS_PORT" --user alice:wonderland --transport tls \
  --ca "$d/ca.pem" --server-name join.example.test --clients 2 --rate 100 --duration 15 &
pids+=($!)
loop wss target/release/examples/meeting_load "127.0.0.1:$TLS_PORT" "$d/ca.pem" 100 10 &
pids+=($!)

# One sample: minute, RSS KiB, fds, threads, /metrics and /status answer ms.
answer_ms() {
  curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $(cat "$token")" \
    "http://127.0.0.1:$ADMIN_PORT$1" | awk '{ printf "%.1f", $1 * 1000 }'
}
sample() {
  local t rss fds threads
  t=$(awk -v s="$(($(date +%s) - start))" 'BEGIN { printf "%.1f", s / 60 }')
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$server/status")
  threads=$(awk '/^Threads:/ { print $2 }' "/proc/$server/status")
  fds=$(find "/proc/$server/fd" -mindepth 1 -maxdepth 1 | wc -l)
  echo "$t $rss $fds $threads $(answer_ms /metrics) $(answer_ms /status)" >>"$d/samples"
}
start=$(date +%s)
while [ "$(date +%s)" -lt "$end" ]; do
  kill -0 "$server" 2>/dev/null || { echo "the server died: $(tail -n 20 "$d/server.log")" >&2; exit 1; }
  sample
  sleep "$SAMPLE_SECS"
done
# (No sample after the end: the loops are winding down.)
wait "${pids[@]:2}" 2>/dev/null || true

echo "| minute | RSS, KiB | fds | threads | /metrics, ms | /status, ms |"
echo "|---|---|---|---|---|---|"
awk '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$d/samples"
# Least-squares slope per hour of column $1 over the second half of the run.
slope() {
  awk -v c="$1" '{ t[NR] = $1; v[NR] = $c } END {
    from = int(NR / 2) + 1; n = 0
    for (i = from; i <= NR; i++) { n++; st += t[i]; sv += v[i]; stt += t[i] * t[i]; stv += t[i] * v[i] }
    den = n * stt - st * st
    printf "%.1f", (n > 1 && den > 0) ? 60 * (n * stv - st * sv) / den : 0 }' "$d/samples"
}
echo
echo "slope per hour over the second half: RSS $(slope 2) KiB, fds $(slope 3), threads $(slope 4)," \
  "/metrics $(slope 5) ms, /status $(slope 6) ms"
sum() { sed -nE "s/.* $1=([0-9]+).*/\1/p" "$d/$2" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
failed_loops=$(cat "$d"/storm "$d"/udp "$d"/tcp "$d"/tls "$d"/wss 2>/dev/null | grep -c "LOOP-FAILED" || true)
storm_ok=$(sum ok storm) storm_failed=$(sum failed storm)
echo "allocations in storms: $storm_ok made, $storm_failed failed"
for t in udp tcp tls; do
  echo "$t echo: $(sum sent "$t") sent, $(sum received "$t") received, $(sum corrupt "$t") corrupt"
done
echo "WSS: $(sum opened wss) tunnels opened, $(sum failed wss) failed, $(sum closed wss) closed early," \
  "$(sum echoes wss) echoes, $(sum lost wss) lost"
echo "loops whose tool failed: $failed_loops"
errors=$((storm_failed + $(sum corrupt udp) + $(sum corrupt tcp) + $(sum corrupt tls) + $(sum failed wss) \
  + $(sum closed wss) + $(sum lost wss) + failed_loops))
echo "errors: $errors"
[ "$errors" -eq 0 ]
