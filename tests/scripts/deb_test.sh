#!/usr/bin/env bash
# The .deb, for real: scripts/package-deb.sh builds it, lintian reviews it, dpkg installs it on
# this machine; then every file, mode, owner and the service user are checked, the packaged
# daemon runs as that user on its own config and state directory, a conffile edit survives a
# reinstall, `dpkg -r` keeps config and state, `dpkg -P` removes everything. Run by
# scripts/test.sh (as root, as CI runs):
#
#   tests/scripts/deb_test.sh [--bin FILE]   FILE: the binary to package (scripts/test.sh gives
#                                            target/debug/hookcast; without it, a release build)
#
# It leaves the machine as it found it (a purge on any exit), and refuses to start on a machine
# that already has a hookcast package, user or /etc/hookcast it would clobber. Only where dpkg
# is missing (not a Debian system) does it skip, loudly.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

fail() { echo "deb_test: FAILED: $*" >&2; exit 1; }
say() { echo "deb_test: $*"; }

if ! command -v dpkg >/dev/null; then
    {
        echo "################################################################"
        echo "deb_test: SKIPPED: dpkg is not here (not a Debian-based system):"
        echo "deb_test: the .deb was NOT built, installed, removed or purged."
        echo "################################################################"
    } >&2
    exit 0
fi
[[ $(id -u) -eq 0 ]] || fail "dpkg -i needs root: run as root (CI does), or sudo bash $0"
command -v lintian >/dev/null || fail "lintian is needed to review the package (apt-get install lintian)"
command -v systemd-analyze >/dev/null || fail "systemd-analyze is needed to verify the packaged units (apt-get install systemd)"
command -v python3 >/dev/null || fail "python3 is needed to ask the packaged daemon /healthz (apt-get install python3)"

bin_args=()
if [[ $# -gt 0 ]]; then
    [[ $1 == --bin && $# -eq 2 ]] || fail "usage: $0 [--bin FILE]"
    bin_args=(--bin "$2")
fi

# Someone's real installation is not ours to purge.
if dpkg-query -W -f='${db:Status-Status}' hookcast 2>/dev/null | grep -qv '^not-installed$'; then
    fail "a hookcast package is already on this machine ($(dpkg-query -W -f='${Status}' hookcast)): the test would replace and purge it"
fi
for thing in /etc/hookcast /var/lib/hookcast /usr/bin/hookcast; do
    [[ ! -e $thing ]] || fail "$thing already exists: the test would overwrite or remove it"
done
! getent passwd hookcast >/dev/null || fail "a user hookcast already exists: the purge would remove it"
! getent group hookcast >/dev/null || fail "a group hookcast already exists: the purge would remove it"

tmp=$(mktemp -d)
daemon=""
cleanup() {
    if [[ -n $daemon ]]; then kill "$daemon" 2>/dev/null || true; fi
    if dpkg-query -W -f='${db:Status-Status}' hookcast 2>/dev/null | grep -qv '^not-installed$'; then
        dpkg -P hookcast >/dev/null 2>&1 || echo "deb_test: cleanup: dpkg -P hookcast failed" >&2
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# mode_owner PATH MODE OWNER:GROUP [file|dir]
mode_owner() {
    local kind=${4:-file}
    if [[ $kind == dir ]]; then [[ -d $1 ]] || fail "$1: not a directory"; else [[ -f $1 ]] || fail "$1: not installed"; fi
    local got
    got=$(stat -c '%a %U:%G' "$1")
    [[ $got == "${2#0} $3" ]] || fail "$1: mode and owner are $got, expected ${2#0} $3"
}

deb=$(bash scripts/package-deb.sh "${bin_args[@]}" --out "$tmp" | tail -n 1)
[[ -f $deb ]] || fail "scripts/package-deb.sh made no package"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[[ $(basename "$deb") == "hookcast_${version}_$(dpkg --print-architecture).deb" ]] || fail "unexpected package name $(basename "$deb")"
say "built $(basename "$deb") ($(stat -c %s "$deb") bytes)"

# Errors fail the test; warnings and notes are shown (root: lintian grumbles but runs).
lintian_out=$(lintian -I "$deb" 2>&1 | grep -v '^running with root privileges') || true
if grep -q '^E:' <<<"$lintian_out"; then
    echo "$lintian_out" >&2
    fail "lintian found errors in the package"
fi
say "lintian: no errors${lintian_out:+; its other tags:}"
[[ -z $lintian_out ]] || echo "    ${lintian_out//$'\n'/$'\n'    }"

# The control fields, straight from the package.
field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Depends) =~ libc6\ \(\>=\ 2\.[0-9]+\) ]] || fail "Depends has no versioned libc6: $(field Depends)"
[[ $(field Recommends) == *ca-certificates* ]] || fail "Recommends: $(field Recommends)"
[[ $(field Section) == net && $(field Priority) == optional ]] || fail "Section/Priority: $(field Section)/$(field Priority)"

say "dpkg -i"
dpkg -i "$deb" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; fail "dpkg -i failed"; }
[[ $(dpkg-query -W -f='${Status}' hookcast) == "install ok installed" ]] || fail "status after dpkg -i: $(dpkg-query -W -f='${Status}' hookcast)"
verify=$(dpkg --verify hookcast) || true
[[ -z $verify ]] || fail "dpkg --verify: $verify"

# Everything the package says it installed is there.
while IFS= read -r path; do
    [[ -e $path ]] || fail "dpkg -L lists $path, which is not there"
done < <(dpkg -L hookcast)

mode_owner /usr/bin/hookcast 0755 root:root
mode_owner /lib/systemd/system/hookcast.service 0644 root:root
mode_owner /lib/systemd/system/hookcast.socket 0644 root:root
mode_owner /usr/share/man/man1/hookcast.1.gz 0644 root:root
mode_owner /usr/share/bash-completion/completions/hookcast 0644 root:root
mode_owner /usr/share/zsh/vendor-completions/_hookcast 0644 root:root
mode_owner /usr/share/fish/vendor_completions.d/hookcast.fish 0644 root:root
for doc in README.md copyright changelog.gz systemd.md cloudflared.md cloudflared-config.yml; do
    mode_owner "/usr/share/doc/hookcast/$doc" 0644 root:root
done
mode_owner /etc/hookcast 0750 root:hookcast dir
mode_owner /etc/hookcast/hookcast.json 0640 root:hookcast
mode_owner /etc/hookcast/credentials 0700 root:root dir
mode_owner /var/lib/hookcast 0750 hookcast:hookcast dir

# The packaged files are the repository's.
cmp -s <(gzip -dc /usr/share/man/man1/hookcast.1.gz) contrib/man/hookcast.1 || fail "the man page differs from contrib/man/hookcast.1"
cmp -s /usr/share/bash-completion/completions/hookcast contrib/completions/hookcast.bash || fail "bash completion differs"
cmp -s /usr/share/zsh/vendor-completions/_hookcast contrib/completions/_hookcast || fail "zsh completion differs"
cmp -s /usr/share/fish/vendor_completions.d/hookcast.fish contrib/completions/hookcast.fish || fail "fish completion differs"
cmp -s /etc/hookcast/hookcast.json <(bash scripts/install.sh --starter-config) || fail "the conffile is not install.sh's starter config"
[[ $(dpkg-query -W -f='${Conffiles}' hookcast) == *"/etc/hookcast/hookcast.json "* ]] || fail "hookcast.json is not a conffile"
grep -q '^License: MIT or Apache-2.0$' /usr/share/doc/hookcast/copyright || fail "copyright names no licence"

# The units start the packaged binary, and systemd accepts them (verify checks the binary exists).
# shellcheck disable=SC2016 # ${STATE_DIRECTORY} is systemd's, expanded by systemd.
grep -qx 'ExecStart=/usr/bin/hookcast serve --config /etc/hookcast/hookcast.json --state-dir ${STATE_DIRECTORY}' \
    /lib/systemd/system/hookcast.service || fail "hookcast.service's ExecStart does not start /usr/bin/hookcast"
grep -qx 'ExecStartPre=/usr/bin/hookcast check --config /etc/hookcast/hookcast.json' \
    /lib/systemd/system/hookcast.service || fail "hookcast.service's ExecStartPre does not run /usr/bin/hookcast"
! grep -n /usr/local /lib/systemd/system/hookcast.service /lib/systemd/system/hookcast.socket ||
    fail "a packaged unit names /usr/local"
systemd-analyze verify /lib/systemd/system/hookcast.service /lib/systemd/system/hookcast.socket ||
    fail "systemd-analyze verify rejects the packaged units"

# The user: a system account whose home is the state directory.
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd hookcast) || fail "no user hookcast"
[[ $home == /var/lib/hookcast && $shell == /usr/sbin/nologin ]] || fail "user hookcast: home $home, shell $shell"
((uid < 1000)) || fail "user hookcast is not a system user (uid $uid)"
[[ $(getent group hookcast | cut -d: -f3) == "$gid" ]] || fail "user hookcast's group is not hookcast"

[[ $(hookcast --version) == "hookcast $version" ]] || fail "hookcast --version says: $(hookcast --version)"
[[ $(command -v hookcast) == /usr/bin/hookcast ]] || fail "hookcast on PATH is $(command -v hookcast)"
if grep -rqs 'path-exclude=*/usr/share/man' /etc/dpkg/dpkg.cfg /etc/dpkg/dpkg.cfg.d; then
    echo "deb_test: NOT CHECKED: man -w (dpkg here excludes /usr/share/man, as minimal images do)" >&2
else
    [[ $(man -w hookcast) == /usr/share/man/man1/hookcast.1.gz ]] || fail "man -w hookcast: $(man -w hookcast 2>&1)"
fi
hookcast check --config /etc/hookcast/hookcast.json >/dev/null || fail "hookcast check rejects the packaged config"

# The daemon as the service user, on the packaged config and state directory: the modes let it
# read the one and write the other.
setpriv --reuid hookcast --regid hookcast --init-groups \
    hookcast serve --config /etc/hookcast/hookcast.json --state-dir /var/lib/hookcast --listen 127.0.0.1:0 \
    >"$tmp/serve.log" 2>&1 &
daemon=$!
addr=""
for _ in $(seq 200); do
    addr=$(sed -n 's|.*listening on http://\([^ ]*\).*|\1|p' "$tmp/serve.log" | head -n 1)
    [[ -n $addr ]] && break
    kill -0 "$daemon" 2>/dev/null || { cat "$tmp/serve.log" >&2; fail "the packaged daemon exited"; }
    sleep 0.05
done
[[ -n $addr ]] || { cat "$tmp/serve.log" >&2; fail "the packaged daemon never said where it listens"; }
health=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
    "http://$addr/healthz") || fail "GET /healthz from the packaged daemon failed"
[[ $health == '{"status":"ok"}' ]] || fail "GET /healthz from the packaged daemon: $health"
kill -TERM "$daemon"
wait "$daemon" || { cat "$tmp/serve.log" >&2; fail "the packaged daemon did not exit 0 on SIGTERM"; }
daemon=""
[[ -n $(find /var/lib/hookcast -mindepth 1 -user hookcast -print -quit) ]] || fail "the daemon wrote nothing in /var/lib/hookcast"
say "the daemon ran as hookcast on $addr: /healthz ok, state in /var/lib/hookcast"

# An edited conffile survives a reinstall, and keeps its mode and owner.
sed -i 's|"listen": "127.0.0.1:9000"|"listen": "127.0.0.1:9100"|' /etc/hookcast/hookcast.json
grep -q '127.0.0.1:9100' /etc/hookcast/hookcast.json || fail "could not edit the conffile"
say "dpkg -i again, over an edited conffile"
dpkg -i "$deb" >"$tmp/reinstall.log" 2>&1 || { cat "$tmp/reinstall.log" >&2; fail "the reinstall failed"; }
grep -q '127.0.0.1:9100' /etc/hookcast/hookcast.json || fail "the reinstall lost the edit to the conffile"
mode_owner /etc/hookcast/hookcast.json 0640 root:hookcast
mode_owner /var/lib/hookcast 0750 hookcast:hookcast dir

say "dpkg -r"
touch /etc/hookcast/credentials/secret /var/lib/hookcast/kept
dpkg -r hookcast >"$tmp/remove.log" 2>&1 || { cat "$tmp/remove.log" >&2; fail "dpkg -r failed"; }
[[ $(dpkg-query -W -f='${Status}' hookcast) == "deinstall ok config-files" ]] || fail "status after dpkg -r: $(dpkg-query -W -f='${Status}' hookcast)"
for gone in /usr/bin/hookcast /lib/systemd/system/hookcast.service /lib/systemd/system/hookcast.socket \
    /usr/share/man/man1/hookcast.1.gz /usr/share/bash-completion/completions/hookcast /usr/share/doc/hookcast; do
    [[ ! -e $gone ]] || fail "$gone is still there after dpkg -r"
done
grep -q '127.0.0.1:9100' /etc/hookcast/hookcast.json || fail "dpkg -r did not keep the config"
[[ -f /etc/hookcast/credentials/secret && -f /var/lib/hookcast/kept ]] || fail "dpkg -r did not keep credentials and state"
getent passwd hookcast >/dev/null || fail "dpkg -r removed the user"

say "dpkg -P"
dpkg -P hookcast >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; fail "dpkg -P failed"; }
dpkg-query -W -f='${db:Status-Status}' hookcast 2>/dev/null | grep -qvx 'not-installed' &&
    fail "status after dpkg -P: $(dpkg-query -W -f='${Status}' hookcast)"
for gone in /etc/hookcast /var/lib/hookcast; do
    [[ ! -e $gone ]] || fail "$gone is still there after dpkg -P"
done
! getent passwd hookcast >/dev/null || fail "dpkg -P left the user hookcast"
! getent group hookcast >/dev/null || fail "dpkg -P left the group hookcast"
say "ok"
