#!/usr/bin/env bash
# Saturation: what one core of the server relays. Each server runs alone on
# core 0 (taskset; causeway with one worker), the load generator on core 1
# (`causeway load --threads 1 --peers N`: many UDP clients on channels from
# one event loop, each to an echo peer port of its own, served by one more
# thread: coturn's --multiplex-peer tells sessions apart by their peer). The offered load rises in steps; at each step each
# server in turn gets the same load, and the script reports echoes/s received,
# loss, the share of core 0 the server used, and its CPU per relayed packet.
# A step is held when loss <= 0.1 % and the generator sent at least 97 % of
# what was asked. For each server: the highest step held (every step below
# it held too), and the packets one
# core would relay at that per-packet cost (1 s / CPU per packet: where core 0
# was not yet full, an extrapolation, said so).
#
# DIRECTION=from-peer measures the reverse direction alone: the generator's
# peers send to the clients' relayed addresses (`causeway load --mode
# from-peer`), the server relays each datagram to its client as ChannelData;
# a step is then packets/s offered, each one relayed packet. BURST=N sends
# each client its datagrams N at a time in one GSO send (a video frame's
# packets): the generator then offers more than one `sendto` a datagram
# lets one core offer.
#
# Usage: examples/causeway/bench/saturation.sh
# Knobs: DIRECTION ("echo" or "from-peer"), BURST (1; from-peer), STEPS (echoes/s, or packets/s
# from peers, offered in all, "10000 20000 40000 60000 80000"),
# CLIENTS (64), DURATION (8 s), SIZE (160 B), COTURN_BIN (turnserver; a newer
# build: bench/coturn-build.sh) and COTURN_ARGS (its flags, e.g. "--udp-gso
# --multiplex-peer"), SERVERS ("causeway coturn").
set -euo pipefail
cd "$(dirname "$0")/../../.."

STEPS=${STEPS:-"10000 20000 40000 60000 80000"}
CLIENTS=${CLIENTS:-64}
DURATION=${DURATION:-8}
SIZE=${SIZE:-160}
DIRECTION=${DIRECTION:-echo}
case $DIRECTION in
  echo) per_step=2; mode=(--mode echo) ;;
  from-peer) per_step=1; mode=(--mode from-peer --burst "${BURST:-1}") ;;
  *) echo "DIRECTION is echo or from-peer" >&2; exit 2 ;;
esac
SERVERS=${SERVERS:-"causeway coturn"}
COTURN_BIN=${COTURN_BIN:-turnserver}
COTURN_ARGS=${COTURN_ARGS:-}
PORT_CW=${PORT_CW:-3480}
PORT_CT=${PORT_CT:-3490}
[ "$(nproc)" -ge 2 ] || { echo "needs two cores: one for the server, one for the load" >&2; exit 2; }
ulimit -n 65536 2>/dev/null || true

cargo build --release -q -p causeway
CW=$PWD/target/release/causeway
work=$(mktemp -d)
pids=()
# SIGINT: causeway stops at once (SIGTERM would drain it, still bound to its
# port for the next run); coturn stops on either.
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

declare -A PID PORT
if [[ " $SERVERS " == *" causeway "* ]]; then
  cat > "$work/causeway.toml" <<TOML
listen = ["127.0.0.1:$PORT_CW"]
realm = "TANDBERG"
user = ["alice:wonderland"]
allow_peer = ["127.0.0.0/8"]
relay_range = "20000-39999"
admin = "127.0.0.1:0"
threads = 1
log_level = "warn"
TOML
  taskset -c 0 "$CW" serve --config "$work/causeway.toml" >"$work/cw.out" 2>"$work/cw.log" &
  pids+=($!); PID[causeway]=$!; PORT[causeway]=$PORT_CW
fi
if [[ " $SERVERS " == *" coturn "* ]]; then
  # shellcheck disable=SC2086 # COTURN_ARGS is a list of flags
  taskset -c 0 "$COTURN_BIN" $COTURN_ARGS -n --no-cli --no-tls --no-dtls --listening-ip 127.0.0.1 \
    --listening-port "$PORT_CT" --relay-ip 127.0.0.1 --min-port 40000 --max-port 59999 \
    --lt-cred-mech --realm TANDBERG --user alice:wonderland --allow-loopback-peers \
    --no-stdout-log --log-file "$work/coturn.log" --simple-log --pidfile "$work/coturn.pid" \
    >/dev/null 2>&1 &
  pids+=($!); PID[coturn]=$!; PORT[coturn]=$PORT_CT
fi
sleep 1.5

tick=$(getconf CLK_TCK)
# Datagrams dropped in UDP receive buffers, by whose socket: the server's
# listener, its relay sockets, the generator's clients, the echo peers
# (/proc/net/udp's per-socket drops; sockets that closed take theirs along).
drops() { # listener-port relay-first relay-last
  python3 - "$@" <<'PY'
import sys
port, lo, hi = (int(a) for a in sys.argv[1:4])
d = {"listener": 0, "relay": 0, "clients": 0, "peers": 0}
for line in open("/proc/net/udp").read().splitlines()[1:]:
    f = line.split()
    ip, p = f[1].split(":")
    p, n = int(p, 16), int(f[-1])
    if ip == "0200007F":
        d["peers"] += n
    elif p == port:
        d["listener"] += n
    elif lo <= p <= hi:
        d["relay"] += n
    else:
        d["clients"] += n
print(d["listener"], d["relay"], d["clients"], d["peers"])
PY
}
declare -A RANGE=([causeway]="20000 39999" [coturn]="40000 59999")
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
field() { sed -nE "s/.* $1=([0-9.]+).*/\\1/p" <<<"$2"; }
declare -A BEST COST LOST
got=echoes/s; [ "$DIRECTION" = echo ] || got=delivered/s
printf '%-9s %8s %9s %9s %7s %7s %9s  %s\n' server offered sent/s "$got" loss% core0% us/pkt \
  "dropped in buffers: listener/relay/clients/peers"
for step in $STEPS; do
  for s in $SERVERS; do
    rate=$(( step / CLIENTS ))
    # shellcheck disable=SC2086 # the range is two numbers
    read -r -a d0 < <(drops "${PORT[$s]}" ${RANGE[$s]})
    t0=$(cpu_ticks "${PID[$s]}")
    out=$(taskset -c 1 "$CW" load "${mode[@]}" --server "127.0.0.1:${PORT[$s]}" --user alice:wonderland --peers "$CLIENTS" \
          --threads 1 --clients "$CLIENTS" --rate "$rate" --duration "$DURATION" --size "$SIZE")
    t1=$(cpu_ticks "${PID[$s]}")
    # shellcheck disable=SC2086
    read -r -a d1 < <(drops "${PORT[$s]}" ${RANGE[$s]})
    dropped="$((d1[0] - d0[0]))/$((d1[1] - d0[1]))/$((d1[2] - d0[2]))/$((d1[3] - d0[3]))"
    sent=$(field sent "$out"); received=$(field received "$out"); loss=$(field loss "$out")
    read -r sent_rate echo_rate busy us held < <(awk -v s="$sent" -v r="$received" -v d="$DURATION" \
      -v t=$((t1 - t0)) -v hz="$tick" -v l="$loss" -v want="$step" -v k="$per_step" '
      BEGIN {
        cpu = t / hz
        us = r > 0 ? cpu * 1e6 / (k * r) : 0
        held = (l <= 0.1 && s / d >= 0.97 * want) ? 1 : 0
        # Busy over the seconds of the load (the drain after it is idle).
        busy = 100 * cpu / d; if (busy > 100) busy = 100
        printf "%.0f %.0f %.0f %.2f %d\n", s / d, r / d, busy, us, held
      }')
    printf '%-9s %8s %9s %9s %7s %7s %9s  %s%s\n' "$s" "$step" "$sent_rate" "$echo_rate" "$loss" "$busy" \
      "$us" "$dropped" "$([ "$held" = 1 ] || echo '  (not held)')"
    # The highest step held with every step below it held too.
    if [ "$held" = 1 ] && [ -z "${LOST[$s]:-}" ]; then BEST[$s]=$step; COST[$s]=$us; fi
    [ "$held" = 1 ] || LOST[$s]=1
    sleep 1
  done
done
echo
if [ "$DIRECTION" = echo ]; then what="echoes/s, $SIZE B; 2 relayed packets each"; else what="packets/s from peers, $SIZE B"; fi
echo "| server | highest step held ($what) | CPU µs per relayed packet there | packets per core at that cost |"
echo "|---|---|---|---|"
for s in $SERVERS; do
  label=$s
  [ "$s" = coturn ] && label="coturn $("$COTURN_BIN" --version 2>/dev/null | head -1) $COTURN_ARGS"
  awk -v n="$label" -v b="${BEST[$s]:-0}" -v c="${COST[$s]:-0}" 'BEGIN {
    printf "| %s | %s | %s | %s |\n", n, b, c, (c > 0 ? sprintf("%.0f", 1e6 / c) : "n/a") }'
done
