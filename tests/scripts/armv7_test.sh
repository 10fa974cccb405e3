#!/usr/bin/env bash
# The 32-bit build a Raspberry Pi OS (armv7) runs, tested under qemu-user: the unit tests, and
# the journal's crash test and durability tests against the armv7 daemon. 64-bit hosts cannot
# see what this catches: a u64 setting wrapped into a 32-bit usize (4 GiB of history became 0),
# a token range past 2^32, a test that took usize for u64.
#
# Needs (as .ci/run installs them): rustup's armv7-unknown-linux-gnueabihf target, Debian's
# gcc-arm-linux-gnueabihf, libc6-dev-armhf-cross and qemu-user-static, and root to register
# qemu with binfmt_misc when it is not (the integration tests start the ARM binary directly).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

target=armv7-unknown-linux-gnueabihf
sysroot=/usr/arm-linux-gnueabihf
fail() { echo "armv7_test: $*" >&2; exit 1; }
rustup target list --installed 2>/dev/null | grep -qx "$target" || fail "rustup target add $target"
command -v arm-linux-gnueabihf-gcc >/dev/null || fail "apt-get install gcc-arm-linux-gnueabihf"
command -v qemu-arm-static >/dev/null || fail "apt-get install qemu-user-static"
[[ -d $sysroot/lib ]] || fail "apt-get install libc6-dev-armhf-cross"

binfmt=/proc/sys/fs/binfmt_misc
if [[ ! -e $binfmt/qemu-arm ]]; then
    [[ $(id -u) -eq 0 ]] || fail "qemu-arm is not registered with binfmt_misc, and registering it needs root"
    [[ -e $binfmt/register ]] || mount binfmt_misc -t binfmt_misc "$binfmt"
    [[ -e $binfmt/qemu-arm ]] || cat /usr/lib/binfmt.d/qemu-arm.conf >"$binfmt/register"
fi

export QEMU_LD_PREFIX=$sysroot
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm-static -L $sysroot"
cargo test --target "$target" --features tls --lib -q
cargo test --target "$target" --features tls --test integration -q -- durable::crash_test_under_fsync_never durable::publish_is_acknowledged_only_after_the_fsync retain::
echo "armv7_test: ok"
