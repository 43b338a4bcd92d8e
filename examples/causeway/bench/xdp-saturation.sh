#!/usr/bin/env bash
# Saturation of the kernel fast path: what one core relays, clients to peers,
# with causeway's XDP program, causeway in userspace and coturn, on veth pairs
# between three network namespaces this script makes (root):
#
#   client ns (sxc0) -- (sxc1) relay ns (sxp1) -- (sxp0) peer ns
#
# The generator, `causeway load --mode to-peer --burst N` in the client
# namespace, sends ChannelData from CLIENTS clients, each burst of a client in
# one GSO send; its channels are bound to PEERS ports of 10.98.2.2, where an
# XDP program on sxp0 (built here with clang) drops everything and the
# veth's own counters say how many arrived. Nothing is echoed back.
#
# GEN=wire moves the generator one hop back: it runs in a namespace of its
# own (sxg0), and the client namespace is a wire of two XDP programs that
# redirect every frame between sxg1 and sxc0. A frame a socket sends reaches
# a veth as an skb, which veth copies into a fresh page before XDP can run on
# it (perf on core 0 puts half of the XDP relay's time there with GEN=socket);
# redirected by XDP, it reaches sxc1 as an XDP frame, as a NIC hands its DMA'd
# frames to XDP. The copy is then made on core 1, by the wire, as a NIC's DMA
# would. A userspace relay gets an skb either way (built on core 0 from the
# frame). The wire runs all frames into one of sxc1's queues (a veth picks the
# queue by the sending core), and core 1 carries the generator, the wire and
# the sink, so it may saturate first: core 0's share says whether the relay did.
#
# Where the work runs: the relay's veth ends run their NAPI in a kernel
# thread each ("threaded" NAPI), pinned with the relay process to core 0:
# with XDP the program runs there (receive, rewrite, redirect into sxp0);
# in userspace the receive path into the server's socket runs there (GRO on
# sxc1 gives it a NAPI to thread), and the server's sends. The generator
# and the sink's NAPI thread are on core 1. So core 0 is the relay's core,
# whichever relay it is, and the script reports its share of core 0 and the
# relay's CPU per packet (the NAPI threads' run time plus the server
# process's, from /proc/PID/stat).
#
# The offered load rises in STEPS (packets/s in all); at each step each
# server in turn starts fresh, gets the load for DURATION s and stops. A step
# is held when the peer side got >= 99.9 % of what was sent and the generator
# sent >= 97 % of what was asked. The table gives, per relay, the highest
# step held (with every step below it held), its CPU per packet there (with
# XDP the program's own time per packet too, from bpf_stats, whose clock
# reads add a little to the relay's CPU), the most it delivered at any step,
# the relay's lowest CPU per packet at any step, and what a whole core would
# pass at that cost (the figure to compare when the generator, not the
# relay, ran out of core).
#
# The relay namespace forwards IPv4 (net.ipv4.ip_forward=1 there only): the
# sink never sends, so the program has not learned the way to it from its
# packets and takes it from the FIB (bpf_fib_lookup), once a second.
#
# Usage (root): examples/causeway/bench/xdp-saturation.sh
# Knobs: GEN (socket or wire), STEPS ("200000 400000 600000 800000 1000000"), SIZE (160 B), BURST (16),
# CLIENTS (64), PEERS (64: coturn --multiplex-peer refuses two allocations
# on one peer), DURATION (6 s), SERVERS ("xdp user coturn"), RELAY_NAPI
# (fifo or other for every relay; else fifo with XDP, other without), COTURN_BIN
# (target/coturn-4.17.1/bin/turnserver if built, else turnserver), COTURN_ARGS
# ("--udp-gso --multiplex-peer" for a 4.17 build).
set -euo pipefail
cd "$(dirname "$0")/../../.."

GEN=${GEN:-socket}
case $GEN in socket | wire) ;; *) echo "GEN is socket or wire" >&2; exit 2 ;; esac
STEPS=${STEPS:-"200000 400000 600000 800000 1000000"}
SIZE=${SIZE:-160}
BURST=${BURST:-16}
CLIENTS=${CLIENTS:-64}
PEERS=${PEERS:-64}
DURATION=${DURATION:-6}
QUEUES=${QUEUES:-4}
SERVERS=${SERVERS:-"xdp user coturn"}
if [ -z "${COTURN_BIN:-}" ]; then
  if [ -x target/coturn-4.17.1/bin/turnserver ]; then
    COTURN_BIN=$PWD/target/coturn-4.17.1/bin/turnserver
    COTURN_ARGS=${COTURN_ARGS-"--udp-gso --multiplex-peer"}
  else
    COTURN_BIN=turnserver
  fi
fi
COTURN_ARGS=${COTURN_ARGS:-}
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces, XDP)" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "needs two cores: one for the relay, one for the load" >&2; exit 2; }
for t in clang ethtool taskset; do
  command -v $t >/dev/null || { echo "$t is not installed" >&2; exit 2; }
done

cargo build --release -q -p causeway --features xdp
CW=$PWD/target/release/causeway
work=$(mktemp -d)
C=sxc S=sxs P=sxp G=sxg
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -INT "$server_pid" 2>/dev/null || true
  for ns in $G $C $S $P; do ip netns del $ns 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The sink: drop every frame; the veth counts them (rx_queue_0_xdp_drops).
cat >"$work/sink.c" <<'C'
#include <linux/bpf.h>
__attribute__((section("xdp"), used)) int sink(struct xdp_md *ctx) { return XDP_DROP; }
char LICENSE[] __attribute__((section("license"), used)) = "GPL";
C
clang -O2 -target bpf -I/usr/include/"$(uname -m)"-linux-gnu -c "$work/sink.c" -o "$work/sink.o"

for ns in $G $C $S $P; do ip netns del $ns 2>/dev/null || true; ip netns add $ns; ip -n $ns link set lo up; done
# The client side with QUEUES queues each way (the veth's ring per queue
# holds 256 frames; a NIC's holds more), each with its own NAPI: the
# clients' flows spread over them as a NIC's receive-side scaling would.
ip link add sxc0 netns $C numtxqueues "$QUEUES" numrxqueues "$QUEUES" type veth \
  peer name sxc1 netns $S numtxqueues "$QUEUES" numrxqueues "$QUEUES"
ip link add sxp1 netns $S type veth peer name sxp0 netns $P
# Where the clients are: sxc0, or with GEN=wire sxg0 (through the wire).
L=$C LDEV=sxc0
if [ "$GEN" = wire ]; then
  L=$G LDEV=sxg0
  ip link add sxg0 netns $G numtxqueues "$QUEUES" numrxqueues "$QUEUES" type veth \
    peer name sxg1 netns $C numtxqueues "$QUEUES" numrxqueues "$QUEUES"
  # Frames redirected back to sxg0 need its NAPI (GRO; enabled as sxg0
  # comes up, so sxg1 comes up after it: the other way round, frames
  # redirected to sxg0 were dropped here, as if it had none).
  ip netns exec $G ethtool -K sxg0 gro on >/dev/null
fi
ip -n $L addr add 10.98.1.2/24 dev $LDEV
ip -n $S addr add 10.98.1.1/24 dev sxc1
ip -n $S addr add 10.98.2.1/24 dev sxp1
ip -n $P addr add 10.98.2.2/24 dev sxp0
up="$C sxc0,$S sxc1,$S sxp1,$P sxp0"
[ "$GEN" = wire ] && up="$G sxg0,$C sxg1,$up"
IFS=, read -r -a up <<<"$up"
for x in "${up[@]}"; do set -- $x; ip -n "$1" link set "$2" up; done
ip -n $L route add default via 10.98.1.1
ip -n $P route add default via 10.98.2.1
ip netns exec $S sysctl -qw net.ipv4.ip_forward=1
# Full checksums from the client (the program updates them incrementally).
ip netns exec $L ethtool -K $LDEV tx off >/dev/null
# Through the wire, a frame's checksum must be whole: an skb's offloaded one
# is metadata an XDP redirect drops. (Only the relay's answers go that way.)
[ "$GEN" = wire ] && ip netns exec $S ethtool -K sxc1 tx off >/dev/null
# NAPI on the relay's ends (GRO, for userspace; XDP brings its own).
ip netns exec $S ethtool -K sxc1 gro on >/dev/null
ip netns exec $S ethtool -K sxp1 gro on >/dev/null
ip -n $P link set dev sxp0 xdp obj "$work/sink.o" sec xdp
# The sink's address resolved once (it never speaks to be resolved).
ip -n $S neigh replace 10.98.2.2 dev sxp1 nud permanent \
  lladdr "$(ip -n $P -br link show sxp0 | awk '{print $3}')"

# Threaded NAPI on an interface, its threads pinned to a core, and run
# before processes (fifo: SCHED_FIFO) as a softirq is, or beside them
# (other) as ksoftirqd is once softirqs overrun.
thread_napi() { # ns dev core fifo|other
  ip netns exec "$1" sh -c "echo 1 > /sys/class/net/$2/threaded"
  local t
  for t in $(pgrep "^napi/$2-" || true); do
    taskset -pc "$3" "$t" >/dev/null
    if [ "$4" = fifo ]; then chrt -f -p 50 "$t"; else chrt -o -p 0 "$t"; fi
  done
}
napi_pids() { pgrep "^napi/sx[cp]1-" | tr '\n' ' '; }
# The sink's before the generator: a frame it has not dropped yet is one
# the relay cannot hand over (the veth's ring holds 256).
thread_napi $P sxp0 1 fifo
if [ "$GEN" = wire ]; then
  # The wire: each end redirects every frame out of the other.
  wire() { # from to
    local to
    to=$(ip netns exec $C cat "/sys/class/net/$2/ifindex")
    cat >"$work/wire-$1.c" <<WIRE
#include <linux/bpf.h>
static long (*redirect)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect;
__attribute__((section("xdp"), used)) int wire(struct xdp_md *ctx) { return redirect($to, 0); }
char LICENSE[] __attribute__((section("license"), used)) = "GPL";
WIRE
    clang -O2 -target bpf -I/usr/include/"$(uname -m)"-linux-gnu -c "$work/wire-$1.c" -o "$work/wire-$1.o"
    ip -n $C link set dev "$1" xdp obj "$work/wire-$1.o" sec xdp
    thread_napi $C "$1" 1 fifo
  }
  wire sxg1 sxc0
  wire sxc0 sxg1
fi

config() { # xdp: true or false
  cat <<TOML
listen = ["10.98.1.1:3478"]
relay_ip = ["10.98.2.1"]
realm = "TANDBERG"
user = ["alice:wonderland"]
allow_peer = ["10.98.2.0/24"]
relay_range = "40000-40999"
admin = "127.0.0.1:4471"
threads = 1
log_level = "warn"
TOML
  if [ "$1" = true ]; then echo 'xdp_interface = ["sxc1", "sxp1"]'; fi
}
config false >"$work/user.toml"
config true >"$work/xdp.toml"

# Waits until UDP port 3478 is bound in the relay namespace.
listening() {
  for _ in $(seq 1 100); do
    ip netns exec $S ss -Hlun 'sport = :3478' | grep -q . && return 0
    sleep 0.1
  done
  echo "the server did not bind 10.98.1.1:3478" >&2; return 1
}
start() { # name
  case $1 in
    user | xdp) taskset -c 0 ip netns exec $S "$CW" serve --config "$work/$1.toml" \
        >"$work/$1.out" 2>"$work/$1.log" & ;;
    # shellcheck disable=SC2086 # COTURN_ARGS is a list of flags
    coturn) taskset -c 0 ip netns exec $S "$COTURN_BIN" $COTURN_ARGS -n --no-cli --no-tls --no-dtls \
        --listening-ip 10.98.1.1 --listening-port 3478 --relay-ip 10.98.2.1 --min-port 40000 \
        --max-port 40999 --lt-cred-mech --realm TANDBERG --user alice:wonderland \
        --no-stdout-log --log-file "$work/coturn.log" --simple-log >/dev/null 2>&1 & ;;
  esac
  server_pid=$!
  listening
  if [ "$1" = xdp ]; then
    for _ in $(seq 1 100); do grep -q "kernel fast path" "$work/xdp.log" && break; sleep 0.1; done
  fi
  # Attaching XDP remakes the NAPI, and its threads: (re)pin them now.
  # The XDP relay's threads run as softirqs (the relay process needs
  # little); a userspace relay's beside it, as ksoftirqd: before it they
  # starve it of the core past its limit (receive livelock), which a real
  # kernel's deferral to ksoftirqd prevents.
  local policy=other
  [ "$1" = xdp ] && policy=fifo
  thread_napi $S sxc1 0 "${RELAY_NAPI:-$policy}"
  thread_napi $S sxp1 0 "${RELAY_NAPI:-$policy}"
}
stop() { kill -INT "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=; }

ticks() { # pids...: their user + system time
  local s=0 p
  for p in "$@"; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo $s
}
core0() { awk '$1 == "cpu0" { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
arrived() { ip netns exec $P ethtool -S sxp0 | awk '/rx_queue_[0-9]+_xdp_drops/ { n += $2 } END { print n + 0 }'; }
field() { sed -nE "s/.* $1=([0-9.]+).*/\\1/p" <<<"$2"; }
tick=$(getconf CLK_TCK)
declare -A BEST COST MOST PROG LOST LEAST
# The XDP program's statistics: bpf_runs.
. examples/causeway/bench/xdp-stats.sh
bpf_stats_on

printf '%-7s %9s %9s %9s %8s %7s %8s %8s\n' relay offered sent/s peer_got/s loss% core0% us/pkt prog_ns
for step in $STEPS; do
  for s in $SERVERS; do
    start "$s"
    read -r -a napi <<<"$(napi_pids)"
    a0=$(arrived); c0=$(core0); t0=$(ticks "$server_pid" "${napi[@]}"); read -r -a b0 < <(bpf_runs)
    out=$(taskset -c 1 ip netns exec $L "$CW" load --mode to-peer --server 10.98.1.1:3478 \
      --user alice:wonderland --peer 10.98.2.2:9000 --peers "$PEERS" --clients "$CLIENTS" \
      --rate $((step / CLIENTS)) --burst "$BURST" --size "$SIZE" --duration "$DURATION")
    # What is still in a ring reaches the sink within the next moment.
    sleep 0.5
    a1=$(arrived); c1=$(core0); t1=$(ticks "$server_pid" "${napi[@]}"); read -r -a b1 < <(bpf_runs)
    stop
    if [ -n "${VERBOSE:-}" ]; then
      echo "$out"
      wire_ends=
      [ "$GEN" = wire ] && wire_ends="$C sxg1,$C sxc0,"
      IFS=, read -r -a ends <<<"$wire_ends$S sxc1,$S sxp1,$P sxp0"
      for x in "${ends[@]}"; do
        set -- $x; echo "$2: $(ip netns exec "$1" ethtool -S "$2" | grep -v ': 0$' | tr -s ' \n' ' ')"
      done
      ip -n $L -s link show $LDEV; ip -n $S -s link show sxc1
    fi
    sent=$(field sent "$out")
    read -r sent_rate got_rate loss busy us held < <(awk -v s="$sent" -v g=$((a1 - a0)) \
      -v d="$DURATION" -v c=$((c1 - c0)) -v t=$((t1 - t0)) -v hz="$tick" -v want="$step" '
      BEGIN {
        loss = s > 0 ? 100 * (s - g) / s : 100
        us = g > 0 ? (t / hz) * 1e6 / g : 0
        busy = 100 * (c / hz) / d; if (busy > 100) busy = 100
        held = (loss <= 0.1 && s / d >= 0.97 * want) ? 1 : 0
        printf "%.0f %.0f %.2f %.0f %.3f %d\n", s / d, g / d, loss, busy, us, held
      }')
    prog=$(awk -v t=$((b1[0] - b0[0])) -v n=$((b1[1] - b0[1])) 'BEGIN { if (n > 0) printf "%.0f", t / n; else print "-" }')
    printf '%-7s %9s %9s %9s %8s %7s %8s %8s%s\n' "$s" "$step" "$sent_rate" "$got_rate" "$loss" "$busy" "$us" \
      "$prog" "$([ "$held" = 1 ] || echo '  (not held)')"
    # The highest step held with every step below it held too.
    if [ "$held" = 1 ] && [ -z "${LOST[$s]:-}" ]; then BEST[$s]=$step; COST[$s]=$us; PROG[$s]=$prog; fi
    [ "$held" = 1 ] || LOST[$s]=1
    if [ "$got_rate" -gt "${MOST[$s]:-0}" ]; then MOST[$s]=$got_rate; fi
    if awk -v us="$us" -v least="${LEAST[$s]:-0}" 'BEGIN { exit !(us > 0 && (least == 0 || us < least)) }'; then
      LEAST[$s]=$us
    fi
  done
done
echo
echo "| relay (core 0) | highest step held, packets/s of $SIZE B | its CPU µs per packet there | XDP program ns per packet there | most delivered at any step, packets/s | lowest CPU µs per packet at any step | packets/s a core passes at that cost |"
echo "|---|---|---|---|---|---|---|"
for s in $SERVERS; do
  case $s in
    xdp) label="causeway, XDP" ;;
    user) label="causeway, userspace" ;;
    coturn) label="coturn $("$COTURN_BIN" --version 2>/dev/null | head -1) $COTURN_ARGS" ;;
  esac
  percore=$(awk -v us="${LEAST[$s]:-0}" 'BEGIN { if (us > 0) printf "%.0f", 1e6 / us; else print "-" }')
  echo "| $label | ${BEST[$s]:-none} | ${COST[$s]:-n/a} | ${PROG[$s]:--} | ${MOST[$s]:-0} | ${LEAST[$s]:--} | $percore |"
done
