#!/usr/bin/env bash
# Builds coturn's turnserver from source (a release tag, 4.17.1 by default) for
# the benchmarks, beside Debian's older package: coturn 4.17 has batched UDP
# (recvmmsg, sendmmsg with --multiplex-peer, UDP GSO with --udp-gso) that
# Debian's 4.6.1 lacks. Prints the turnserver's path; give it to the
# benchmarks as COTURN_BIN.
#
# Usage: examples/causeway/bench/coturn-build.sh
# Knobs: VERSION (4.17.1), COTURN_SRC (a checkout of that version; without it
# the tag is cloned from github.com/coturn/coturn), OUT (target/coturn-VERSION).
# Needs: build-essential pkg-config libevent-dev libssl-dev (apt-get install).
set -euo pipefail
cd "$(dirname "$0")/../../.."
VERSION=${VERSION:-4.17.1}
OUT=${OUT:-$PWD/target/coturn-$VERSION}
SRC=${COTURN_SRC:-}
for p in libevent-dev libssl-dev pkg-config; do
  dpkg -s "$p" >/dev/null 2>&1 || { echo "missing $p: apt-get install build-essential pkg-config libevent-dev libssl-dev" >&2; exit 2; }
done
if [ -x "$OUT/bin/turnserver" ]; then echo "$OUT/bin/turnserver"; exit 0; fi
if [ -z "$SRC" ]; then
  SRC=$PWD/target/coturn-src-$VERSION
  [ -d "$SRC" ] || git clone -q --depth 1 --branch "$VERSION" https://github.com/coturn/coturn "$SRC"
fi
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp -a "$SRC/." "$build/"
(
  cd "$build"
  # No database back ends: the benchmarks use the command line's users.
  ./configure --prefix="$OUT" --turndbdir="$OUT/var/db" --disable-rpath >"$build/configure.log" 2>&1 \
    || { tail -30 "$build/configure.log" >&2; exit 1; }
  make -j"$(nproc)" >"$build/make.log" 2>&1 || { tail -30 "$build/make.log" >&2; exit 1; }
  make install >"$build/install.log" 2>&1 || { tail -30 "$build/install.log" >&2; exit 1; }
)
"$OUT/bin/turnserver" --version 2>&1 | head -1 >&2 || true
echo "$OUT/bin/turnserver"
