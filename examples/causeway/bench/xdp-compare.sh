#!/usr/bin/env bash
# Kernel fast path benchmark: causeway in userspace, causeway with its XDP
# program, and coturn's turnserver, on one topology this script makes (a client,
# a server and a peer namespace joined by veth pairs; native XDP on the server's
# veth ends), the same load generator (`causeway load` in the client namespace,
# ChannelData echo through coturn's turnutils_peer in the peer namespace), in
# alternating rounds. Each round starts its server fresh.
#
# Reports per server: echo packets/s, RTT p50/p99, and per relayed packet: the
# server process's CPU, and the whole machine's: every process's and kernel
# thread's CPU, the load generator's and the echo peer's included (XDP on veth
# runs in the softirq of the sending process, so its cost lands there), all from
# the scheduler's exact run times in /proc/PID/stat (this machine's /proc/stat
# samples at ticks and misses bursty work); means over ROUNDS; and the ratios.
#
# With XDP it also reports the program's own cost per packet it ran on
# (bpf_stats: run time over runs, kernel.bpf_stats_enabled on for the run).
#
# Usage (root): examples/causeway/bench/xdp-compare.sh
# Knobs: CLIENTS (8), RATE per client (2000 pkt/s), DURATION (10 s), ROUNDS (3),
# SIZE (160 B).
set -euo pipefail
cd "$(dirname "$0")/../../.."

CLIENTS=${CLIENTS:-8}
RATE=${RATE:-2000}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-160}
command -v turnserver >/dev/null || { echo "coturn is not installed: apt-get install coturn" >&2; exit 2; }
command -v ethtool >/dev/null || { echo "ethtool is not installed: apt-get install ethtool" >&2; exit 2; }

cargo build --release -q -p causeway --features xdp
CW=$PWD/target/release/causeway
work=$(mktemp -d)
C=bxc S=bxs P=bxp
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  pkill -f "turnutils_peer -L 10.97.2.2" 2>/dev/null || true
  for ns in $C $S $P; do ip netns del $ns 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

for ns in $C $S $P; do ip netns del $ns 2>/dev/null || true; ip netns add $ns; ip -n $ns link set lo up; done
ip link add bxc0 netns $C type veth peer name bxc1 netns $S
ip link add bxp1 netns $S type veth peer name bxp0 netns $P
ip -n $C addr add 10.97.1.2/24 dev bxc0
ip -n $S addr add 10.97.1.1/24 dev bxc1
ip -n $S addr add 10.97.2.1/24 dev bxp1
ip -n $P addr add 10.97.2.2/24 dev bxp0
for x in "$C bxc0" "$S bxc1" "$S bxp1" "$P bxp0"; do set -- $x; ip -n "$1" link set "$2" up; done
ip -n $C route add default via 10.97.1.1
ip -n $P route add default via 10.97.2.1
# Full checksums from the far ends, and NAPI there for redirected frames.
ip netns exec $C ethtool -K bxc0 tx off gro on >/dev/null
ip netns exec $P ethtool -K bxp0 tx off gro on >/dev/null
ip netns exec $P turnutils_peer -L 10.97.2.2 -p 3480 >/dev/null 2>&1 &
sleep 0.5

config() { # xdp: true or false
  cat <<TOML
listen = ["10.97.1.1:3478"]
relay_ip = ["10.97.2.1"]
realm = "TANDBERG"
user = ["alice:wonderland"]
allow_peer = ["10.97.2.0/24"]
relay_range = "40000-40999"
admin = "127.0.0.1:4470"
log_level = "warn"
TOML
  if [ "$1" = true ]; then echo 'xdp_interface = ["bxc1", "bxp1"]'; fi
}
config false >"$work/user.toml"
config true >"$work/xdp.toml"

start() { # name
  case $1 in
    user) ip netns exec $S "$CW" serve --config "$work/user.toml" >"$work/$1.out" 2>"$work/$1.log" & ;;
    xdp) ip netns exec $S "$CW" serve --config "$work/xdp.toml" >"$work/$1.out" 2>"$work/$1.log" & ;;
    coturn) ip netns exec $S turnserver -n --no-cli --no-tls --no-dtls --listening-ip 10.97.1.1 \
        --listening-port 3478 --relay-ip 10.97.2.1 --min-port 40000 --max-port 40999 \
        --lt-cred-mech --realm TANDBERG --user alice:wonderland --fingerprint \
        --no-stdout-log --log-file "$work/coturn.log" --simple-log >/dev/null 2>&1 & ;;
  esac
  server_pid=$!
  sleep 1.5
}
stop() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=; sleep 0.5; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Every live process's user + system time, and what this script's reaped
# children (the load generator) used.
machine_ticks() {
  local live reaped
  live=$(awk '{ sub(/.*\) /, ""); s += $12 + $13 } END { print s }' /proc/[0-9]*/stat 2>/dev/null)
  reaped=$(awk '{ sub(/.*\) /, ""); print $14 + $15 }' /proc/$$/stat)
  echo $((live + reaped))
}
tick=$(getconf CLK_TCK)
declare -A R
add() { R[$1]=$(awk -v a="${R[$1]:-0}" -v b="$2" -v n="$ROUNDS" 'BEGIN { printf "%.2f", a + b / n }'); }
per_packet() { awk -v t="$1" -v hz="$tick" -v n="$2" 'BEGIN { if (n > 0) printf "%.3f", t / hz * 1e6 / (2 * n); else print 0 }'; }

# The XDP program's statistics: bpf_runs.
. examples/causeway/bench/xdp-stats.sh
bpf_stats_on

round() { # name
  local name=$1 t0 t1 m0 m1 q0 q1 out received b0 b1
  start "$name"
  read -r -a b0 < <(bpf_runs)
  t0=$(cpu_ticks "$server_pid"); m0=$(machine_ticks)
  out=$(ip netns exec $C "$CW" load --server 10.97.1.1:3478 --user alice:wonderland \
        --peer 10.97.2.2:3480 --clients "$CLIENTS" --rate "$RATE" --duration "$DURATION" \
        --size "$SIZE")
  t1=$(cpu_ticks "$server_pid"); m1=$(machine_ticks)
  read -r -a b1 < <(bpf_runs)
  stop
  if [ "$name" = xdp ]; then
    add "$name.bpf_ns" "$(awk -v t=$((b1[0] - b0[0])) -v n=$((b1[1] - b0[1])) \
      'BEGIN { if (n > 0) printf "%.1f", t / n; else print 0 }')"
    add "$name.bpf_runs" "$(( (b1[1] - b0[1]) / DURATION ))"
  fi
  echo "$name: $out"
  received=$(sed -E 's/.* received=([0-9]+).*/\1/' <<<"$out")
  add "$name.pps" "$(sed -E 's/.* rate=([0-9]+).*/\1/' <<<"$out")"
  add "$name.loss" "$(sed -E 's/.* loss=([0-9.]+)%.*/\1/' <<<"$out")"
  add "$name.corrupt" "$(sed -E 's/.* corrupt=([0-9]+).*/\1/' <<<"$out")"
  add "$name.p50" "$(sed -E 's/.* rtt_p50_us=([0-9]+).*/\1/' <<<"$out")"
  add "$name.p99" "$(sed -E 's/.* rtt_p99_us=([0-9]+).*/\1/' <<<"$out")"
  # Each echo is two relayed packets: client to peer, and peer to client.
  add "$name.cpu" "$(per_packet $((t1 - t0)) "$received")"
  add "$name.machine" "$(per_packet $((m1 - m0)) "$received")"
}

for r in $(seq 1 "$ROUNDS"); do
  echo "round $r"
  round user
  round xdp
  round coturn
done
grep -h "kernel fast path" "$work/xdp.log" | tail -1 || true

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "| metric | causeway userspace | causeway XDP | coturn $(dpkg-query -W -f='${Version}' coturn 2>/dev/null) | userspace / coturn | XDP / coturn |"
echo "|---|---|---|---|---|---|"
row() { # label key
  echo "| $1 | ${R[user.$2]} | ${R[xdp.$2]} | ${R[coturn.$2]} | $(ratio "${R[user.$2]}" "${R[coturn.$2]}") | $(ratio "${R[xdp.$2]}" "${R[coturn.$2]}") |"
}
row "echo packets/s received ($CLIENTS clients x $RATE pkt/s, $SIZE B)" pps
row "loss %" loss
row "payloads not byte-exact" corrupt
row "server-process CPU µs per relayed packet" cpu
row "machine-wide CPU µs per relayed packet" machine
row "RTT p50 µs" p50
row "RTT p99 µs" p99
echo
echo "XDP program: ${R[xdp.bpf_ns]:-0} ns per packet it ran on (bpf_stats), ${R[xdp.bpf_runs]:-0} runs/s (every packet on the server's veth ends, relayed or passed)"
