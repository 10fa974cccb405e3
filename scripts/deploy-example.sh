#!/usr/bin/env bash
# deploy-example.sh — a git-pull-and-restart deploy, to run as a hookcast `execute-command`.
#
# In order: fetch the pushed branch from origin, move the checkout to exactly what was pushed
# (`git reset --hard`, so a stray edit on the server never blocks a deploy), run the build step,
# restart the service. Every step logs one line to stdout (errors to stderr); hookcast streams
# them live on `$runs/{run_id}` and keeps them in the run's log (`GET /api/runs/{id}`).
#
# Arguments (each falls back to an environment variable, then to a default):
#   $1  the git checkout to deploy   HOOKCAST_REPO_DIR   (required)
#   $2  the branch                   HOOKCAST_BRANCH     main  ("refs/heads/" is stripped, so a
#                                                              payload's `ref` can be passed as is)
#   $3  the systemd service          HOOKCAST_SERVICE    (none: no restart)
# Settings:
#   DEPLOY_BUILD_CMD    the build, run in the checkout and split into words (not run by a shell);
#                       default: ./build.sh when it is executable, else `make` when there is a
#                       Makefile, else no build
#   DEPLOY_RESTART_CMD  the restart, split into words; default: see "The restart" below
#   DEPLOY_RESTART_DIR  trigger files of hookcast-restart@.path; default /var/lib/hookcast/restart
#   DEPLOY_FORCE=1      build and restart even when the checkout is already at the pushed commit
#
# The restart. hookcast.service runs with NoNewPrivileges=yes, so sudo (setuid) cannot work in a
# deploy; two ways that do (systemd/README.md, "Restarting another service from a deploy"):
#  - a path unit, shipped in systemd/ and installed by scripts/install.sh: once
#      sudo systemctl enable --now hookcast-restart@myapp.path
#    this script writes DEPLOY_RESTART_DIR/myapp (when that directory exists) and systemd restarts
#    myapp.service as root; the deploy holds no privilege at all, and cannot see the outcome
#    (journalctl -u hookcast-restart@myapp).
#  - otherwise `systemctl restart SERVICE`, which a polkit rule allows for user hookcast and
#    that one unit; its exit status is the deploy's.
#
# A hook running it (hookcast config; the fields are adnanh/webhook's; scripts/install.sh
# installs this file as /usr/local/lib/hookcast/deploy-example.sh — copy it to change it):
#   {"id": "deploy-myapp", "provider": "github", "secrets": [{"env": "GITHUB_WEBHOOK_SECRET"}],
#    "events": ["push"], "branches": ["main"], "timeout": 600,
#    "execute-command": "/usr/local/lib/hookcast/deploy-example.sh",
#    "pass-arguments-to-command": [
#      {"source": "string", "name": "/srv/myapp"},
#      {"source": "payload", "name": "ref"},
#      {"source": "string", "name": "myapp.service"}]}
# hookcast runs one deploy per hook at a time and coalesces pushes that arrive meanwhile into one
# follow-up run, so this script does not lock; run by hand alongside hookcast, it takes a lock.
set -euo pipefail

log() { printf 'deploy: %s\n' "$*"; }
die() {
    printf 'deploy: error: %s\n' "$*" >&2
    exit 1
}

repo_dir=${1:-${HOOKCAST_REPO_DIR:-}}
branch=${2:-${HOOKCAST_BRANCH:-main}}
branch=${branch#refs/heads/}
service=${3:-${HOOKCAST_SERVICE:-}}

[[ -n $repo_dir ]] || die "no checkout given: pass it as the first argument or set HOOKCAST_REPO_DIR"
[[ -d $repo_dir/.git ]] || die "$repo_dir is not a git checkout"
# The branch may come from a payload: it is data, never an option or a revision expression.
if [[ $branch == -* ]] || ! git check-ref-format --branch "$branch" >/dev/null 2>&1; then
    die "not a valid branch name: $branch"
fi

cd "$repo_dir"
if command -v flock >/dev/null; then
    exec 9>".git/deploy.lock"
    flock -n 9 || die "another deploy of $repo_dir is running"
fi

log "run ${HOOKCAST_RUN:-manual} (delivery ${HOOKCAST_DELIVERY:-none}): deploying $branch in $repo_dir"
before=$(git rev-parse --verify --quiet HEAD || echo none)
log "fetching $branch from $(git remote get-url origin)"
git fetch --quiet --prune origin "+refs/heads/$branch:refs/remotes/origin/$branch"
target=$(git rev-parse --verify "refs/remotes/origin/$branch^{commit}")
if [[ $before == "$target" && ${DEPLOY_FORCE:-0} != 1 ]]; then
    log "already at ${target:0:12}: nothing to do (DEPLOY_FORCE=1 deploys anyway)"
    exit 0
fi
# Be on the branch (a fresh clone may sit on another), then exactly at what was pushed.
git checkout --quiet --force -B "$branch" "origin/$branch"
git reset --quiet --hard "origin/$branch"
log "moved ${before:0:12} -> ${target:0:12}: $(git log -1 --format=%s)"

build=()
if [[ -n ${DEPLOY_BUILD_CMD:-} ]]; then
    read -r -a build <<<"$DEPLOY_BUILD_CMD"
elif [[ -x build.sh ]]; then
    build=(./build.sh)
elif [[ -f Makefile ]]; then
    build=(make)
fi
if ((${#build[@]})); then
    log "building: ${build[*]}"
    started=$SECONDS
    "${build[@]}"
    log "build done in $((SECONDS - started)) s"
else
    log "no build step (no DEPLOY_BUILD_CMD, ./build.sh or Makefile)"
fi

if [[ -z $service ]]; then
    log "no service given: not restarting anything"
else
    name=${service%.service}
    # The name becomes a file name and a unit instance: nothing that leaves the directory.
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9:_.@-]*$ ]] || die "not a service name: $service"
    trigger_dir=${DEPLOY_RESTART_DIR:-/var/lib/hookcast/restart}
    if [[ -n ${DEPLOY_RESTART_CMD:-} ]]; then
        read -r -a restart <<<"$DEPLOY_RESTART_CMD"
        log "restarting $service: ${restart[*]}"
        "${restart[@]}"
    elif [[ -d $trigger_dir ]]; then
        # Written and closed: hookcast-restart@$name.path sees it and restarts the service.
        printf '%s run %s\n' "$target" "${HOOKCAST_RUN:-manual}" >"$trigger_dir/$name"
        log "asked hookcast-restart@$name.path to restart $name.service (journalctl -u hookcast-restart@$name)"
    else
        log "restarting $service: systemctl restart $name.service (allowed by a polkit rule)"
        systemctl restart "$name.service"
    fi
fi
log "deployed ${target:0:12} to $repo_dir"
