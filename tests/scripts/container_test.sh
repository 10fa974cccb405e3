#!/usr/bin/env bash
# The container image, for real: scripts/container.sh builds it (a static musl binary FROM
# scratch), podman runs it as README.md shows (a published port, a named volume for the state, the
# config mounted read-only), and the daemon must answer /healthz on the published port, keep its
# journal in the volume, pass `hookcast check` on the image's config and exit 0 on `podman stop`.
# Run by scripts/test.sh:
#
#   tests/scripts/container_test.sh [--bin FILE]   FILE: a static binary (default: a musl build)
#
# It removes its container, volume and image on any exit. Only where podman is missing does it
# skip, loudly.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

fail() { echo "container_test: FAILED: $*" >&2; exit 1; }
say() { echo "container_test: $*"; }

if ! command -v podman >/dev/null; then
    {
        echo "################################################################"
        echo "container_test: SKIPPED: podman is not here (apt-get install podman):"
        echo "container_test: the container image was NOT built or run."
        echo "################################################################"
    } >&2
    exit 0
fi
command -v python3 >/dev/null || fail "python3 is needed to ask the daemon /healthz (apt-get install python3)"

bin_args=()
if [[ $# -gt 0 ]]; then
    [[ $1 == --bin && $# -eq 2 ]] || fail "usage: $0 [--bin FILE]"
    bin_args=(--bin "$2")
fi

name=hookcast-test-$$
tag=localhost/$name:test
tmp=$(mktemp -d)
cleanup() {
    podman rm -f "$name" >/dev/null 2>&1 || true
    podman volume rm -f "$name" >/dev/null 2>&1 || true
    podman rmi -f "$tag" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# What this machine's podman needs to start any container at all, and only that:
# - podman raises RLIMIT_NOFILE and RLIMIT_NPROC to its own defaults (about a million), which a
#   container host that is itself sandboxed refuses (crun: "setrlimit `RLIMIT_NOFILE`: Operation
#   not permitted"): ask for limits every host allows.
# - crun refuses a cgroup v1 + v2 hybrid host whose v2 hierarchy has controllers ("cgroups in
#   hybrid mode not supported"); runc runs there.
run_args=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
if [[ -n $(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null) ]]; then
    command -v runc >/dev/null || fail "this host's cgroups are hybrid, which crun refuses: apt-get install runc"
    run_args+=(--runtime runc)
fi

tag=$(bash scripts/container.sh "${bin_args[@]}" --tag "$tag" | tail -n 1)
say "built $tag ($(podman image inspect --format '{{.Size}}' "$tag") bytes)"

out=$(podman run --rm "${run_args[@]}" "$tag" check --config /etc/hookcast/hookcast.json 2>&1) ||
    fail "hookcast check in the image: $out"
cmp -s <(podman run --rm "${run_args[@]}" "$tag" --version) <(echo "hookcast $(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)") ||
    fail "hookcast --version in the image does not say Cargo.toml's version"

# A free loopback port for the published one.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bash scripts/install.sh --starter-config >"$tmp/hookcast.json"
chmod 0644 "$tmp/hookcast.json"
podman run -d --name "$name" "${run_args[@]}" -p "127.0.0.1:$port:9000" -v "$name:/var/lib/hookcast" \
    -v "$tmp/hookcast.json:/etc/hookcast/hookcast.json:ro" "$tag" >/dev/null ||
    fail "podman run of the image failed"
health=""
for _ in $(seq 200); do
    health=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
        "http://127.0.0.1:$port/healthz" 2>/dev/null) && break
    [[ $(podman inspect --format '{{.State.Running}}' "$name") == true ]] || { podman logs "$name" >&2; fail "the container exited"; }
    sleep 0.05
done
[[ $health == '{"status":"ok"}' ]] || { podman logs "$name" >&2; fail "GET /healthz on the published port: ${health:-no answer}"; }
podman logs "$name" 2>&1 | grep -q 'listening on http://0.0.0.0:9000' || { podman logs "$name" >&2; fail "the daemon did not say where it listens"; }
say "the daemon answers /healthz on 127.0.0.1:$port"

podman stop --time 20 "$name" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
[[ $code == 0 ]] || { podman logs "$name" >&2; fail "the daemon exited $code on podman stop (SIGTERM)"; }
volume=$(podman volume inspect --format '{{.Mountpoint}}' "$name")
[[ -d $volume/journal ]] || fail "no journal in the state volume ($volume)"
[[ $(stat -c %u "$volume/journal") == 65532 ]] || fail "the journal in the volume belongs to uid $(stat -c %u "$volume/journal"), not 65532"
say "stopped with exit code 0; the journal is in the volume"
say "ok"
