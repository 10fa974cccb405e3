#!/usr/bin/env bash
# Installs hookcast as a systemd service, idempotently: a second run changes nothing.
#
#   scripts/install.sh                  build (cargo build --release --features tls) and install; needs root
#   scripts/install.sh --no-build       install target/release/hookcast as already built
#   scripts/install.sh --bin FILE       install FILE as the binary (implies --no-build)
#   scripts/install.sh --prefix DIR     install into DIR as if it were / (for tests and packaging:
#                                       no user, no ownership changes, no systemctl)
#   scripts/install.sh --uninstall      remove the binary, units and docs; keep config and state
#   scripts/install.sh --uninstall --purge   also remove /etc/hookcast, /var/lib/hookcast, the user
#   scripts/install.sh --starter-config      print the starter /etc/hookcast/hookcast.json and exit
#                                       (the .deb's conffile is this text: scripts/package-deb.sh)
#
# What it installs (paths under --prefix when given):
#   /usr/local/bin/hookcast                         the binary
#   /etc/systemd/system/hookcast.{service,socket}   the units (systemd/)
#   /etc/systemd/system/hookcast-restart@.{path,service}   restarts a service when a deploy asks
#   /usr/local/lib/hookcast/deploy-example.sh       a git-pull-build-restart deploy to start from
#   /etc/hookcast/hookcast.json                     a starter config, only if there is none
#   /etc/hookcast/credentials/                      root-only sources for LoadCredential=
#   /var/lib/hookcast/                              state (journal) and $HOME of user hookcast
#   /var/lib/hookcast/restart/                      trigger files for hookcast-restart@.path
#   /usr/local/share/doc/hookcast/                  README, systemd and cloudflared notes
#   /usr/local/share/man/man1/hookcast.1            the man page (contrib/man)
#   /usr/local/share/{bash-completion/completions,zsh/site-functions,fish/vendor_completions.d}/
#                                                   the shell completions (contrib/completions)
# and the system user and group `hookcast`. Building as root is not needed: build as yourself,
# then `sudo scripts/install.sh --no-build`.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=""
BUILD=1
BINARY=""
UNINSTALL=0
PURGE=0

SVC_USER=hookcast
BIN=/usr/local/bin/hookcast
UNIT_DIR=/etc/systemd/system
CONF_DIR=/etc/hookcast
CONF=$CONF_DIR/hookcast.json
STATE_DIR=/var/lib/hookcast
DOC_DIR=/usr/local/share/doc/hookcast
# What contrib/ holds (made by `hookcast man` and `hookcast completions SHELL`) and where it goes.
EXTRAS=(
    "contrib/man/hookcast.1:/usr/local/share/man/man1/hookcast.1"
    "contrib/completions/hookcast.bash:/usr/local/share/bash-completion/completions/hookcast"
    "contrib/completions/_hookcast:/usr/local/share/zsh/site-functions/_hookcast"
    "contrib/completions/hookcast.fish:/usr/local/share/fish/vendor_completions.d/hookcast.fish"
)
LIB_DIR=/usr/local/lib/hookcast
UNITS=(hookcast.service hookcast.socket hookcast-restart@.path hookcast-restart@.service)

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}

say() {
    printf 'install.sh: %s\n' "$*"
}

# The starter config: written by install_all, shipped as the package's conffile.
starter_config() {
    cat <<'EOF'
{
  "listen": "127.0.0.1:9000",
  "log_level": "info",
  "trusted_proxies": ["127.0.0.1/32", "::1"],
  "cf_connecting_ip": true,
  "public": [
    { "topics": ["$deliveries", "$runs", "$runs/**"], "scopes": ["subscribe"], "from": ["127.0.0.0/8", "::1"] }
  ],
  "hooks": []
}
EOF
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --prefix)
            [[ $# -ge 2 && -n $2 ]] || die "--prefix needs a directory"
            PREFIX=$(mkdir -p "$2" && cd "$2" && pwd)
            shift 2
            ;;
        --no-build) BUILD=0; shift ;;
        --bin)
            [[ $# -ge 2 && -n $2 ]] || die "--bin needs a file"
            BINARY=$2
            BUILD=0
            shift 2
            ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        --starter-config) starter_config; exit 0 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ $PURGE -eq 0 || $UNINSTALL -eq 1 ]] || die "--purge goes with --uninstall"
if [[ -z $PREFIX && $(id -u) -ne 0 ]]; then
    die "installing into / needs root (or use --prefix DIR)"
fi

# The path of $1 in the tree being installed into.
at() {
    printf '%s%s' "$PREFIX" "$1"
}

# Whether systemd is the running init (sd_booted(3)), and we are installing for real.
systemd_here() {
    [[ -z $PREFIX && -d /run/systemd/system ]] && command -v systemctl >/dev/null
}

UNITS_CHANGED=0
BIN_CHANGED=0

# put SRC DEST MODE [OWNER:GROUP]: copy SRC to DEST unless DEST already has the same bytes,
# then make sure of the mode (and owner, when installing for real). Returns 0 when it wrote.
put() {
    local src=$1 dst mode=$3 owner=${4:-root:root} wrote=1
    dst=$(at "$2")
    if [[ -f $dst ]] && cmp -s "$src" "$dst"; then
        wrote=0
    else
        # install(1) unlinks the destination first, so a running binary can be replaced.
        install -D -m "$mode" "$src" "$dst"
        say "installed $2"
    fi
    if [[ $(stat -c %a "$dst") != "${mode#0}" ]]; then
        chmod "$mode" "$dst"
        say "mode $mode on $2"
    fi
    if [[ -z $PREFIX && $(stat -c %U:%G "$dst") != "$owner" ]]; then
        chown "$owner" "$dst"
        say "owner $owner on $2"
    fi
    return $((1 - wrote))
}

# dir PATH MODE [OWNER:GROUP]: create a directory, or fix its mode and owner.
dir() {
    local d mode=$2 owner=${3:-root:root}
    d=$(at "$1")
    if [[ ! -d $d ]]; then
        install -d -m "$mode" "$d"
        say "created $1"
    elif [[ $(stat -c %a "$d") != "${mode#0}" ]]; then
        chmod "$mode" "$d"
        say "mode $mode on $1"
    fi
    if [[ -z $PREFIX && $(stat -c %U:%G "$d") != "$owner" ]]; then
        chown "$owner" "$d"
        say "owner $owner on $1"
    fi
}

# gone PATH: remove a file if it is there.
gone() {
    local f
    f=$(at "$1")
    if [[ -e $f || -L $f ]]; then
        rm -f "$f"
        say "removed $1"
    fi
}

install_all() {
    local bin=${BINARY:-$REPO/target/release/hookcast} tmp
    if [[ $BUILD -eq 1 ]]; then
        command -v cargo >/dev/null || die "cargo not found: build first, then run with --no-build"
        say "cargo build --release --features tls"
        # tls: the client commands (hookcast send, tail, runs …) to an https:// URL.
        (cd "$REPO" && cargo build --release --features tls)
    fi
    [[ -x $bin ]] || die "no binary at $bin (build with cargo build --release, or give --bin FILE)"

    if [[ -z $PREFIX ]] && ! getent passwd "$SVC_USER" >/dev/null; then
        # A stable system user, not DynamicUser=: deploy scripts keep git checkouts and
        # ~/.ssh (in /var/lib/hookcast) that must belong to the same uid across restarts.
        useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "hookcast push daemon" "$SVC_USER"
        say "created system user $SVC_USER"
    fi

    if put "$bin" "$BIN" 0755; then BIN_CHANGED=1; fi
    for unit in "${UNITS[@]}"; do
        if put "$REPO/systemd/$unit" "$UNIT_DIR/$unit" 0644; then UNITS_CHANGED=1; fi
    done
    dir "$LIB_DIR" 0755
    put "$REPO/scripts/deploy-example.sh" "$LIB_DIR/deploy-example.sh" 0755 || true
    dir "$DOC_DIR" 0755
    put "$REPO/README.md" "$DOC_DIR/README.md" 0644 || true
    put "$REPO/systemd/README.md" "$DOC_DIR/systemd.md" 0644 || true
    put "$REPO/cloudflared/README.md" "$DOC_DIR/cloudflared.md" 0644 || true
    put "$REPO/cloudflared/config.yml" "$DOC_DIR/cloudflared-config.yml" 0644 || true
    local extra
    for extra in "${EXTRAS[@]}"; do
        put "$REPO/${extra%%:*}" "${extra#*:}" 0644 || true
    done

    dir "$CONF_DIR" 0750 "root:$SVC_USER"
    dir "$CONF_DIR/credentials" 0700
    dir "$STATE_DIR" 0750 "$SVC_USER:$SVC_USER"
    dir "$STATE_DIR/restart" 0750 "$SVC_USER:$SVC_USER"
    if [[ -e $(at "$CONF") ]]; then
        say "kept the existing $CONF"
    else
        tmp=$(mktemp)
        starter_config >"$tmp"
        put "$tmp" "$CONF" 0640 "root:$SVC_USER" || true
        rm -f "$tmp"
        "$(at "$BIN")" check --config "$(at "$CONF")" >/dev/null || die "the starter config fails hookcast check"
        say "wrote a starter $CONF (hookcast check: ok)"
    fi

    if systemd_here; then
        if [[ $UNITS_CHANGED -eq 1 ]]; then
            systemctl daemon-reload
            say "systemctl daemon-reload"
        fi
        if [[ $BIN_CHANGED -eq 1 ]] && systemctl is-active --quiet hookcast.service; then
            say "a new binary is installed: systemctl restart hookcast to run it"
        fi
        if ! systemctl is-enabled --quiet hookcast.service 2>/dev/null; then
            say "next: edit $CONF, then: systemctl enable --now hookcast.service"
            say "      (or socket activation: systemctl enable --now hookcast.socket)"
        fi
    elif [[ -z $PREFIX ]]; then
        say "systemd is not running here: units installed but not loaded"
    fi
}

uninstall_all() {
    if systemd_here; then
        local instances
        # The restart path units enabled per service (hookcast-restart@myapp.path, …).
        instances=$(systemctl list-units --all --plain --no-legend 'hookcast-restart@*.path' | awk '{print $1}')
        for unit in $instances hookcast.socket hookcast.service; do
            if systemctl is-enabled --quiet "$unit" 2>/dev/null || systemctl is-active --quiet "$unit"; then
                systemctl disable --now "$unit"
                say "systemctl disable --now $unit"
            fi
        done
    fi
    gone "$BIN"
    local had_units=0
    for unit in "${UNITS[@]}"; do
        if [[ -e $(at "$UNIT_DIR/$unit") ]]; then had_units=1; fi
        gone "$UNIT_DIR/$unit"
    done
    gone "$LIB_DIR/deploy-example.sh"
    if [[ -d $(at "$LIB_DIR") ]] && rmdir "$(at "$LIB_DIR")" 2>/dev/null; then
        say "removed $LIB_DIR"
    fi
    for doc in README.md systemd.md cloudflared.md cloudflared-config.yml; do
        gone "$DOC_DIR/$doc"
    done
    local extra
    for extra in "${EXTRAS[@]}"; do
        gone "${extra#*:}"
    done
    # Only when empty: files someone else put there stay.
    if [[ -d $(at "$DOC_DIR") ]] && rmdir "$(at "$DOC_DIR")" 2>/dev/null; then
        say "removed $DOC_DIR"
    fi
    if [[ $had_units -eq 1 ]] && systemd_here; then
        systemctl daemon-reload
        say "systemctl daemon-reload"
    fi
    if [[ $PURGE -eq 1 ]]; then
        for d in "$CONF_DIR" "$STATE_DIR"; do
            if [[ -d $(at "$d") ]]; then
                rm -rf "$(at "$d")"
                say "removed $d"
            fi
        done
        if [[ -z $PREFIX ]] && getent passwd "$SVC_USER" >/dev/null; then
            userdel "$SVC_USER"
            say "removed user $SVC_USER"
        fi
    else
        say "kept $CONF_DIR and $STATE_DIR (--purge removes them and the user)"
    fi
}

if [[ $UNINSTALL -eq 1 ]]; then
    uninstall_all
else
    install_all
fi
