#!/usr/bin/env bash
# Load benchmark: causeway and coturn's turnserver, same machine, same run, each
# with its default limits (no quota or rate-limit overrides: causeway's reflection
# budgets and machine-derived total are what is measured), driven by the same
# load generator (`causeway load`), in alternating rounds.
#
# Reports for each server: relayed packets/s and server CPU µs per relayed packet
# for a ChannelData echo (160-byte payloads, several clients), RTT p50/p99,
# allocations/s from one source address, and RSS per allocation over ALLOCS
# allocations; each the mean over ROUNDS rounds; then the ratios.
#
# Usage: examples/causeway/bench/coturn-compare.sh   (needs Debian's `coturn`)
# Knobs: CLIENTS (8), RATE per client (2000 pkt/s), DURATION (10 s), ALLOCS (5000),
# ROUNDS (2); COTURN_BIN (turnserver; a newer build: bench/coturn-build.sh) and
# COTURN_ARGS (its extra flags, e.g. "--udp-gso --multiplex-peer"); LOAD_THREADS
# (drive the echo clients from that many event loops instead of a thread each).
set -euo pipefail
cd "$(dirname "$0")/../../.."

CLIENTS=${CLIENTS:-8}
RATE=${RATE:-2000}
DURATION=${DURATION:-10}
ALLOCS=${ALLOCS:-5000}
ROUNDS=${ROUNDS:-2}
PORT_CW=${PORT_CW:-3480}
PORT_CT=${PORT_CT:-3490}
COTURN_BIN=${COTURN_BIN:-turnserver}
COTURN_ARGS=${COTURN_ARGS:-}
LOAD_THREADS=${LOAD_THREADS:-}
command -v "$COTURN_BIN" >/dev/null || { echo "coturn is not installed: apt-get install coturn (or COTURN_BIN)" >&2; exit 2; }
coturn_version=$("$COTURN_BIN" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1 || true)
threads=()
[ -n "$LOAD_THREADS" ] && threads=(--threads "$LOAD_THREADS")
ulimit -n 65536 2>/dev/null || true

cargo build --release -q -p causeway
CW=target/release/causeway
work=$(mktemp -d)
pids=()
# SIGINT: causeway stops at once (SIGTERM would drain it, still bound to its
# port for a next run).
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The load tool's echo peers run on 127.0.0.2 (never the server's own address),
# one port per client (coturn's --multiplex-peer tells sessions apart by peer).
cat > "$work/causeway.toml" <<TOML
listen = ["127.0.0.1:$PORT_CW"]
realm = "TANDBERG"
user = ["alice:wonderland"]
allow_peer = ["127.0.0.0/8"]
relay_range = "20000-39999"
admin = "127.0.0.1:0"
log_level = "warn"
TOML
"$CW" serve --config "$work/causeway.toml" >"$work/cw.out" 2>"$work/cw.log" &
pids+=($!); cw_pid=$!

# shellcheck disable=SC2086 # COTURN_ARGS is a list of flags
"$COTURN_BIN" $COTURN_ARGS -n --no-cli --no-tls --no-dtls --listening-ip 127.0.0.1 --listening-port "$PORT_CT" \
  --relay-ip 127.0.0.1 --min-port 40000 --max-port 59999 --lt-cred-mech --realm TANDBERG \
  --user alice:wonderland --allow-loopback-peers --fingerprint \
  --no-stdout-log --log-file "$work/coturn.log" --simple-log \
  --pidfile "$work/coturn.pid" >/dev/null 2>&1 &
pids+=($!); ct_pid=$!
sleep 1.5

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
tick=$(getconf CLK_TCK)

declare -A R
add() { R[$1]=$(awk -v a="${R[$1]:-0}" -v b="$2" -v n="$ROUNDS" 'BEGIN { printf "%.2f", a + b / n }'); }
run_server() { # name pid port
  local name=$1 pid=$2 port=$3
  local t0 t1 out rate received
  t0=$(cpu_ticks "$pid")
  out=$("$CW" load --server "127.0.0.1:$port" --user alice:wonderland --clients "$CLIENTS" \
        --rate "$RATE" --duration "$DURATION" --size 160 --peers "$CLIENTS" "${threads[@]}")
  t1=$(cpu_ticks "$pid")
  echo "$name: $out"
  received=$(sed -E 's/.* received=([0-9]+).*/\1/' <<<"$out")
  add "$name.pps" "$(sed -E 's/.* rate=([0-9]+).*/\1/' <<<"$out")"
  add "$name.loss" "$(sed -E 's/.* loss=([0-9.]+)%.*/\1/' <<<"$out")"
  add "$name.p50" "$(sed -E 's/.* rtt_p50_us=([0-9]+).*/\1/' <<<"$out")"
  add "$name.p99" "$(sed -E 's/.* rtt_p99_us=([0-9]+).*/\1/' <<<"$out")"
  # Each echo is two relayed packets: client to peer, and peer to client.
  add "$name.cpu_us" "$(awk -v t=$((t1 - t0)) -v hz="$tick" -v n="$received" \
        'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / (2 * n); else print 0 }')"

  local rss0 rss1
  rss0=$(rss_kb "$pid")
  "$CW" load --server "127.0.0.1:$port" --user alice:wonderland --mode allocations \
      --count "$ALLOCS" --concurrency 16 --hold 4 >"$work/$name.storm" &
  local lp=$!
  while ! grep -q holding "$work/$name.storm" 2>/dev/null; do
    kill -0 "$lp" 2>/dev/null || break
    sleep 0.2
  done
  sleep 1
  rss1=$(rss_kb "$pid")
  wait "$lp" || true
  echo "$name: $(head -1 "$work/$name.storm")"
  add "$name.aps" "$(sed -nE 's/.* rate=([0-9]+) alloc\/s.*/\1/p' "$work/$name.storm" | head -1)"
  add "$name.rss_alloc" $(( (rss1 - rss0) * 1024 / ALLOCS ))
  add "$name.rss_total" $(( rss1 * 1024 / ALLOCS ))
  sleep 2
}

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  run_server causeway "$cw_pid" "$PORT_CW"
  run_server coturn "$ct_pid" "$PORT_CT"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "| metric | causeway | coturn ${coturn_version:-$(dpkg-query -W -f='${Version}' coturn 2>/dev/null)} $COTURN_ARGS | causeway / coturn |"
echo "|---|---|---|---|"
echo "| echo packets/s received ($CLIENTS clients x $RATE pkt/s, 160 B) | ${R[causeway.pps]} | ${R[coturn.pps]} | $(ratio "${R[causeway.pps]}" "${R[coturn.pps]}") |"
echo "| loss % | ${R[causeway.loss]} | ${R[coturn.loss]} | |"
echo "| server CPU µs per relayed packet | ${R[causeway.cpu_us]} | ${R[coturn.cpu_us]} | $(ratio "${R[causeway.cpu_us]}" "${R[coturn.cpu_us]}") |"
echo "| RTT p50 µs | ${R[causeway.p50]} | ${R[coturn.p50]} | $(ratio "${R[causeway.p50]}" "${R[coturn.p50]}") |"
echo "| RTT p99 µs | ${R[causeway.p99]} | ${R[coturn.p99]} | $(ratio "${R[causeway.p99]}" "${R[coturn.p99]}") |"
echo "| allocations/s ($ALLOCS from one address, 16 at a time) | ${R[causeway.aps]} | ${R[coturn.aps]} | $(ratio "${R[causeway.aps]}" "${R[coturn.aps]}") |"
echo "| RSS bytes per allocation (growth over $ALLOCS) | ${R[causeway.rss_alloc]} | ${R[coturn.rss_alloc]} | $(ratio "${R[causeway.rss_alloc]}" "${R[coturn.rss_alloc]}") |"
echo "| RSS bytes per allocation (whole process / $ALLOCS) | ${R[causeway.rss_total]} | ${R[coturn.rss_total]} | $(ratio "${R[causeway.rss_total]}" "${R[coturn.rss_total]}") |"
