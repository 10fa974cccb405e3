#!/usr/bin/env bash
# Builds hookcast's container image with podman: a static musl binary FROM scratch
# (packaging/Containerfile).
#
#   scripts/container.sh               cargo build --release --target <arch>-unknown-linux-musl, then
#                                      podman build
#   scripts/container.sh --bin FILE    put FILE (a static binary) in the image instead of building
#   scripts/container.sh --tag NAME    the image's name (default localhost/hookcast:<version>)
#
# Prints the image's name last. Building needs the musl target of Rust's standard library:
#   rustup target add x86_64-unknown-linux-musl
# The image's binary is built without the `tls` feature: the daemon never speaks TLS, and the image
# has no CA certificates for the client commands' https:// URLs.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BINARY=""
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -n 1)
TAG=localhost/hookcast:$VERSION

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

die() {
    printf 'container.sh: %s\n' "$*" >&2
    exit 1
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --bin)
            [[ $# -ge 2 && -n $2 ]] || die "--bin needs a file"
            BINARY=$2
            shift 2
            ;;
        --tag)
            [[ $# -ge 2 && -n $2 ]] || die "--tag needs a name"
            TAG=$2
            shift 2
            ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
command -v podman >/dev/null || die "podman not found (apt-get install podman)"

if [[ -z $BINARY ]]; then
    target=$(uname -m)-unknown-linux-musl
    command -v cargo >/dev/null || die "cargo not found: build a static binary first, then give --bin FILE"
    if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
        die "the $target target is not installed: rustup target add $target"
    fi
    (cd "$REPO" && cargo build --release --target "$target")
    BINARY=${CARGO_TARGET_DIR:-$REPO/target}/$target/release/hookcast
fi
[[ -f $BINARY && -x $BINARY ]] || die "no executable at $BINARY"
# FROM scratch has no dynamic loader and no libc: a dynamic binary would not even start.
if readelf -l "$BINARY" | grep -q 'INTERP' || readelf -d "$BINARY" | grep -q '(NEEDED)'; then
    die "$BINARY is dynamically linked: the image needs a static binary (the musl target)"
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
install -m 0755 "$BINARY" "$context/hookcast"
# The same starter config as install.sh and the .deb.
bash "$REPO/scripts/install.sh" --starter-config >"$context/hookcast.json"
chmod 0644 "$context/hookcast.json"
mkdir "$context/state"
podman build --quiet --layers=false --file "$REPO/packaging/Containerfile" --build-arg "VERSION=$VERSION" --tag "$TAG" "$context" >/dev/null
echo "$TAG"
