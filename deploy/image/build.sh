#!/bin/sh
# Builds causeway's image FROM scratch, offline: a static build for
# x86_64-unknown-linux-musl (Debian's musl-tools for ring's C code), copied
# with the example configuration into a build context for podman (or
# buildah, or docker).
#
#   deploy/image/build.sh                 # localhost/causeway:static, release
#   IMAGE=registry.example/causeway:1 PROFILE=dev deploy/image/build.sh
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
image=${IMAGE:-localhost/causeway:static}
profile=${PROFILE:-release}
target=x86_64-unknown-linux-musl
builder=${BUILDER:-podman}

rustup target list --installed | grep -qx "$target" || rustup target add "$target"
command -v musl-gcc >/dev/null || {
    echo "build.sh: musl-gcc is missing: apt-get install musl-tools" >&2
    exit 1
}
cd "$root"
cargo build --locked -p causeway --target "$target" --profile "$profile"
dir=$profile
[ "$profile" = dev ] && dir=debug

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "target/$target/$dir/causeway" "$ctx/causeway"
strip "$ctx/causeway"
cp deploy/causeway.toml "$ctx/causeway.toml"
mkdir "$ctx/run"
"$builder" build --quiet -f "$root/deploy/image/Containerfile" -t "$image" "$ctx" >/dev/null
echo "built $image"
