#!/usr/bin/env bash
# Web proxy benchmark: causeway and nginx as the same TLS reverse proxy (HTTPS and
# WSS, upstream TLS verified against the same CA) in front of the same stand-in
# web bridge, same machine, same run, same load tool (examples/proxy_load.rs).
#
# Usage: examples/causeway/bench/nginx-compare.sh   (needs Debian's nginx)
# Knobs: CONNS (16), SECS (10).
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck source=nginx-proxy.sh
. examples/causeway/bench/nginx-proxy.sh
CONNS=${CONNS:-16}
SECS=${SECS:-10}
command -v nginx >/dev/null || { echo "nginx is not installed: apt-get install nginx" >&2; exit 2; }

cargo build --release -q -p causeway --example bridge_standin --example proxy_load
cargo build --release -q -p causeway
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; nginx -c "$work/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

target/release/examples/bridge_standin "$work" >"$work/bridge.port" &
pids+=($!)
while [ ! -s "$work/bridge.port" ]; do sleep 0.1; done
bport=$(cat "$work/bridge.port")
CW_PORT=${CW_PORT:-24301}
NG_PORT=${NG_PORT:-24302}

target/release/causeway serve --listen 127.0.0.1:0 --admin 127.0.0.1:0 --user a:b \
  --tls-listen "127.0.0.1:$CW_PORT" --cert "$work/front.pem" --key "$work/front.key" \
  --upstream-ca "$work/ca.pem" --proxy "join.example.test=https://localhost:$bport" \
  --log-level warn >"$work/cw.out" 2>"$work/cw.log" &
pids+=($!)

nginx_proxy_conf "$work" "$NG_PORT" "$bport" 4096 "$work/nginx.err"
nginx -c "$work/nginx.conf"
sleep 1

load() { target/release/examples/proxy_load "127.0.0.1:$1" "$work/ca.pem" "$2" "$CONNS" "$SECS" | sed -E 's/^[a-z]+: ([0-9]+)\/s.*/\1/'; }
cw_https=$(load "$CW_PORT" https); ng_https=$(load "$NG_PORT" https)
cw_wss=$(load "$CW_PORT" wss); ng_wss=$(load "$NG_PORT" wss)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo "| metric ($CONNS connections, $SECS s) | causeway | nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') | causeway / nginx |"
echo "|---|---|---|---|"
echo "| HTTPS requests/s (keep-alive GET) | $cw_https | $ng_https | $(ratio "$cw_https" "$ng_https") |"
echo "| WSS messages/s (100 B echo) | $cw_wss | $ng_wss | $(ratio "$cw_wss" "$ng_wss") |"
