#!/usr/bin/env bash
# Builds a Debian package of hookcast with dpkg-deb alone (no cargo-deb, no debhelper).
#
#   scripts/package-deb.sh                  cargo build --release --features tls, then package it
#   scripts/package-deb.sh --bin FILE       package FILE as the binary (no build)
#   scripts/package-deb.sh --target TRIPLE  cargo build --release --features tls --target TRIPLE
#                                           (a cross build: README.md, "Packages", says which work)
#   scripts/package-deb.sh --out DIR        write the package into DIR (default target/deb)
#
# Writes DIR/hookcast_<version>_<arch>.deb and prints its path last: the version is Cargo.toml's,
# the architecture is the binary's (dpkg --print-architecture for a native build). Building as
# root is not needed (dpkg-deb --root-owner-group).
#
# What the package installs:
#   /usr/bin/hookcast
#   /lib/systemd/system/hookcast.{service,socket}   systemd/'s units, paths moved to /usr/bin and
#                                                   /usr/share/doc (never enabled or started)
#   /etc/hookcast/hookcast.json                     a conffile: `scripts/install.sh --starter-config`
#   /usr/share/man/man1/hookcast.1.gz               contrib/man
#   /usr/share/{bash-completion/completions,zsh/vendor-completions,fish/vendor_completions.d}/
#                                                   contrib/completions
#   /usr/share/doc/hookcast/                        README, systemd and cloudflared notes,
#                                                   copyright (LICENSE-* when present), changelog
# and, from packaging/deb/'s maintainer scripts, the system user hookcast, /etc/hookcast (0750
# root:hookcast), /etc/hookcast/credentials (0700) and /var/lib/hookcast (0750 hookcast:hookcast).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BINARY=""
TARGET=""
OUT=$REPO/target/deb
# Debian needs a Maintainer with an address; a rebuilder sets their own (as for dch).
MAINTAINER="${DEBFULLNAME:-hookcast packagers} <${DEBEMAIL:-packages@hookcast.invalid}>"

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

die() {
    printf 'package-deb.sh: %s\n' "$*" >&2
    exit 1
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --bin)
            [[ $# -ge 2 && -n $2 ]] || die "--bin needs a file"
            BINARY=$2
            shift 2
            ;;
        --target)
            [[ $# -ge 2 && -n $2 ]] || die "--target needs a Rust target triple"
            TARGET=$2
            shift 2
            ;;
        --out)
            [[ $# -ge 2 && -n $2 ]] || die "--out needs a directory"
            OUT=$2
            shift 2
            ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ -z $BINARY || -z $TARGET ]] || die "--bin and --target do not go together"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (apt-get install dpkg)"

if [[ -z $BINARY ]]; then
    command -v cargo >/dev/null || die "cargo not found: build first, then give --bin FILE"
    # tls: the client commands (hookcast send, tail, runs …) to an https:// URL.
    if [[ -n $TARGET ]]; then
        (cd "$REPO" && cargo build --release --features tls --target "$TARGET")
        BINARY=${CARGO_TARGET_DIR:-$REPO/target}/$TARGET/release/hookcast
    else
        (cd "$REPO" && cargo build --release --features tls)
        BINARY=${CARGO_TARGET_DIR:-$REPO/target}/release/hookcast
    fi
fi
[[ -f $BINARY && -x $BINARY ]] || die "no executable at $BINARY"

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -n 1)
[[ -n $VERSION ]] || die "no version in Cargo.toml"

# The Debian architecture and GNU triple of the binary itself, so that a cross build is labelled
# by what it is, not by the machine that packed it.
elf_header=$(readelf -h "$BINARY") || die "$BINARY is not an ELF file"
case $(sed -n 's/^ *Machine: *//p' <<<"$elf_header") in
    *X86-64*) ARCH=amd64 GNU=x86_64-linux-gnu ;;
    AArch64) ARCH=arm64 GNU=aarch64-linux-gnu ;;
    ARM)
        grep -q 'hard-float' <<<"$elf_header" || die "$BINARY is soft-float ARM (armel): not packaged here"
        ARCH=armhf GNU=arm-linux-gnueabihf
        ;;
    *) die "$BINARY: an architecture this script does not know ($(sed -n 's/^ *Machine: *//p' <<<"$elf_header"))" ;;
esac
HOST_ARCH=$(dpkg --print-architecture)

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
ROOT=$STAGE/root
DOC=$ROOT/usr/share/doc/hookcast

# put SRC DEST MODE: copy into the package tree.
put() {
    install -D -m "$3" "$1" "$ROOT$2"
}

put "$BINARY" /usr/bin/hookcast 0755
# A release build is stripped already (Cargo.toml's profile); a debug one is not.
if readelf -S "$ROOT/usr/bin/hookcast" | grep -q '\.symtab'; then
    strip_tool="strip"
    [[ $ARCH == "$HOST_ARCH" ]] || strip_tool="$GNU-strip"
    command -v "$strip_tool" >/dev/null || die "$BINARY is not stripped and $strip_tool is not here"
    "$strip_tool" --strip-unneeded "$ROOT/usr/bin/hookcast"
fi

# The units name /usr/local (scripts/install.sh's layout); the package's binary and docs are in /usr.
for unit in hookcast.service hookcast.socket; do
    install -d "$ROOT/lib/systemd/system"
    sed -e 's|/usr/local/bin/hookcast|/usr/bin/hookcast|g' \
        -e 's|/usr/local/share/doc/hookcast|/usr/share/doc/hookcast|g' \
        -e 's|scripts/install.sh to /etc/systemd/system/|the hookcast package to /lib/systemd/system/|' \
        "$REPO/systemd/$unit" >"$ROOT/lib/systemd/system/$unit"
    chmod 0644 "$ROOT/lib/systemd/system/$unit"
    if grep -n '/usr/local' "$ROOT/lib/systemd/system/$unit" >&2; then
        die "systemd/$unit still names /usr/local after the substitution (lines above)"
    fi
done
grep -qx 'ExecStart=/usr/bin/hookcast serve .*' "$ROOT/lib/systemd/system/hookcast.service" ||
    die "the packaged hookcast.service does not start /usr/bin/hookcast"

# The conffile: the very text scripts/install.sh writes, so the two cannot drift apart.
install -d -m 0755 "$ROOT/etc/hookcast"
bash "$REPO/scripts/install.sh" --starter-config >"$ROOT/etc/hookcast/hookcast.json"
chmod 0640 "$ROOT/etc/hookcast/hookcast.json"

install -d "$ROOT/usr/share/man/man1"
gzip -9n <"$REPO/contrib/man/hookcast.1" >"$ROOT/usr/share/man/man1/hookcast.1.gz"
chmod 0644 "$ROOT/usr/share/man/man1/hookcast.1.gz"
put "$REPO/contrib/completions/hookcast.bash" /usr/share/bash-completion/completions/hookcast 0644
put "$REPO/contrib/completions/_hookcast" /usr/share/zsh/vendor-completions/_hookcast 0644
put "$REPO/contrib/completions/hookcast.fish" /usr/share/fish/vendor_completions.d/hookcast.fish 0644

put "$REPO/README.md" /usr/share/doc/hookcast/README.md 0644
put "$REPO/systemd/README.md" /usr/share/doc/hookcast/systemd.md 0644
put "$REPO/cloudflared/README.md" /usr/share/doc/hookcast/cloudflared.md 0644
put "$REPO/cloudflared/config.yml" /usr/share/doc/hookcast/cloudflared-config.yml 0644

# copyright (machine-readable format): the licence files' own text when the repo has them, else
# the SPDX licences of Cargo.toml ("MIT OR Apache-2.0") with the standard MIT text.
indent() {
    sed -e 's/[[:space:]]*$//' -e 's/^$/./' -e 's/^/ /'
}
mit_text() {
    if [[ -f $REPO/LICENSE-MIT ]]; then
        cat "$REPO/LICENSE-MIT"
    else
        cat <<'EOF'
Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
EOF
    fi
}
# The years: the repository's first and last commits.
years=$(git -C "$REPO" log --format=%ad --date=format:%Y 2>/dev/null | sort -u | sed -n '1p;$p' | paste -sd- | sed 's/^\([0-9]*\)-\1$/\1/')
years=${years:-$(date +%Y)}
copyright_holder=""
if [[ -f $REPO/LICENSE-MIT ]]; then
    copyright_holder=$(sed -n 's/^Copyright *\((c)\|©\)\{0,1\} *//Ip' "$REPO/LICENSE-MIT" | head -n 1)
fi
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: hookcast"
    echo
    echo "Files: *"
    echo "Copyright: ${copyright_holder:-$years the hookcast contributors}"
    echo "License: MIT or Apache-2.0"
    echo
    echo "License: MIT"
    mit_text | indent
    echo
    echo "License: Apache-2.0"
    # Debian ships the Apache licence; a copy here is what lintian asks packages not to carry.
    echo " Licensed under the Apache License, Version 2.0 (the \"License\"); you may not use"
    echo " this software except in compliance with the License."
    echo " ."
    echo " On Debian systems, the complete text of the Apache License, Version 2.0 can be"
    echo " found in /usr/share/common-licenses/Apache-2.0."
} >"$DOC/copyright"
chmod 0644 "$DOC/copyright"

# A native package's changelog (the version has no Debian revision): one entry for this build.
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
    echo "hookcast ($VERSION) unstable; urgency=medium"
    echo
    echo "  * Built by scripts/package-deb.sh from commit $commit."
    echo
    echo " -- $MAINTAINER  $(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n >"$DOC/changelog.gz"
chmod 0644 "$DOC/changelog.gz"

# Depends: what the binary links against. dpkg-shlibdeps (dpkg-dev) knows every library's
# package; without it, or for another architecture (whose libraries dpkg does not have here),
# the ELF's own version needs: glibc and libgcc_s are all a Rust binary links.
shlib_depends() {
    if command -v dpkg-shlibdeps >/dev/null && [[ $ARCH == "$HOST_ARCH" ]]; then
        local dir=$STAGE/shlibs
        mkdir -p "$dir/debian"
        printf 'Source: hookcast\n\nPackage: hookcast\nArchitecture: any\n' >"$dir/debian/control"
        (cd "$dir" && dpkg-shlibdeps -O -e "$ROOT/usr/bin/hookcast" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
        return
    fi
    local needed lib deps=() glibc gcc
    needed=$(readelf -d "$ROOT/usr/bin/hookcast" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    for lib in $needed; do
        case $lib in
            libc.so.6 | libm.so.6 | libdl.so.2 | libpthread.so.0 | librt.so.1 | ld-linux*) ;;
            libgcc_s.so.1) ;;
            *) die "the binary needs $lib, which this script cannot map to a package without dpkg-shlibdeps" ;;
        esac
    done
    glibc=$(readelf -V "$ROOT/usr/bin/hookcast" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -n 1)
    [[ -n $glibc ]] && deps+=("libc6 (>= $glibc)")
    if grep -qx 'libgcc_s.so.1' <<<"$needed"; then
        gcc=$(readelf -V "$ROOT/usr/bin/hookcast" | grep -o 'GCC_[0-9][0-9.]*' | sed 's/GCC_//' | sort -Vu | tail -n 1)
        # Debian's shlibs name two components (GCC_4.2.0 → 4.2).
        deps+=("libgcc-s1 (>= $(cut -d. -f1-2 <<<"${gcc:-3.0}"))")
    fi
    local joined
    joined=$(printf '%s, ' "${deps[@]}")
    echo "${joined%, }"
}
DEPENDS=$(shlib_depends)
[[ $DEPENDS == *libc6* ]] || die "no libc6 dependency found for the binary (got: ${DEPENDS:-nothing})"

mkdir -p "$ROOT/DEBIAN"
for script in postinst prerm postrm; do
    install -m 0755 "$REPO/packaging/deb/$script" "$ROOT/DEBIAN/$script"
done
echo /etc/hookcast/hookcast.json >"$ROOT/DEBIAN/conffiles"
# The config holds the hooks' secrets (or points at them): 0640 from the start, root:hookcast
# from postinst on, not the 0644 lintian expects of /etc.
install -d "$ROOT/usr/share/lintian/overrides"
echo "hookcast: non-standard-file-perm 0640 != 0644 [etc/hookcast/hookcast.json]" >"$ROOT/usr/share/lintian/overrides/hookcast"
chmod 0644 "$ROOT/usr/share/lintian/overrides/hookcast"
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
    LC_ALL=C sort -z | xargs -0 md5sum) >"$ROOT/DEBIAN/md5sums"
installed_size=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
cat >"$ROOT/DEBIAN/control" <<EOF
Package: hookcast
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $installed_size
Depends: adduser, $DEPENDS
Recommends: ca-certificates
Section: net
Priority: optional
Description: push daemon: verified webhooks in, Server-Sent Events and WebSocket out
 hookcast receives webhooks (GitHub, GitLab, Gitea, Forgejo, Bitbucket, Stripe,
 Slack, Standard Webhooks, generic HMAC), checks their signatures, runs deploy
 commands and pushes every event to subscribers over Server-Sent Events,
 WebSocket and long polling, with an on-disk journal so that a client that was
 away gets exactly what it missed. One small binary on one event loop.
 .
 The package installs the systemd units but neither enables nor starts them:
 edit /etc/hookcast/hookcast.json, then run systemctl enable --now hookcast.
EOF

mkdir -p "$OUT"
DEB=$OUT/hookcast_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
echo "$DEB"
