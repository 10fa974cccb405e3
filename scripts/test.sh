#!/usr/bin/env bash
# Runs every test hookcast has: unit and property tests, the integration tests against the
# real binary (with the independent clients they need installed first), and the Autobahn
# WebSocket conformance suite. This is the README's test command.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v node >/dev/null || { echo "test.sh: node is needed for the EventSource client (apt-get install nodejs npm)" >&2; exit 1; }
# npm_ready DIR: installs DIR's locked npm packages when they are missing or older than the lock.
npm_ready() {
    if [[ ! -f $1/node_modules/.package-lock.json || $1/package-lock.json -nt $1/node_modules/.package-lock.json ]]; then
        npm ci --prefix "$1" --no-audit --no-fund --loglevel=error
    fi
}
npm_ready tests/js

# The providers' own SDKs that sign the webhook tests' deliveries (tests/sdk/README.md): the
# Python ones at the versions pinned in requirements.txt, in the test venv tests/.venv that
# scripts/lib/venv.sh makes (never the system's Python), the npm ones like tests/js.
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
venv="$(test_venv "$PWD")"
export HOOKCAST_TEST_PYTHON="$venv/bin/python3"
npm_ready tests/sdk

# Tests that need a tool cargo does not bring (shellcheck, systemd-analyze, …) are #[ignore]d
# so a bare `cargo test` lists them as ignored instead of passing them unchecked; here they run,
# and fail when their tool is missing.
# --features tls: the client commands' https:// test (tests/integration/cli.rs) needs it.
cargo test --all-targets --features tls -- --include-ignored
bash tests/scripts/says_test.sh
bash tests/scripts/self_contained_test.sh
# The .deb installed, checked, removed and purged on this machine (root; skipped without dpkg).
bash tests/scripts/deb_test.sh --bin "${CARGO_TARGET_DIR:-target}/debug/hookcast"
# The container image built (a static musl release build) and run with podman (skipped without it).
bash tests/scripts/container_test.sh
# The 32-bit armv7 build (Raspberry Pi OS), under qemu-user: what a 64-bit host cannot see.
bash tests/scripts/armv7_test.sh

# The status page in headless Chromium (tests/browser/README.md): the system's browser driven by
# playwright-core from npm, against the debug binary cargo test just built.
[[ -x /usr/bin/chromium ]] || { echo "test.sh: /usr/bin/chromium is needed for the status page's browser test (apt-get install chromium)" >&2; exit 1; }
npm_ready tests/browser
node tests/browser/status.mjs "${CARGO_TARGET_DIR:-target}/debug/hookcast"
node tests/browser/eventsource.mjs "${CARGO_TARGET_DIR:-target}/debug/hookcast"
node tests/browser/csrf.mjs "${CARGO_TARGET_DIR:-target}/debug/hookcast"
node tests/browser/inspect.mjs "${CARGO_TARGET_DIR:-target}/debug/hookcast"
node tests/browser/cluster.mjs "${CARGO_TARGET_DIR:-target}/debug/hookcast"
node tests/browser/jwt.mjs "${CARGO_TARGET_DIR:-target}/debug/hookcast"
node tests/browser/client.mjs "${CARGO_TARGET_DIR:-target}/debug/hookcast"
# Autobahn needs a CPython 2.7 (tests/autobahn/run.sh says why); HOOKCAST_SKIP_AUTOBAHN=1 runs
# everything else on a machine that has none, and says so.
if [[ -n "${HOOKCAST_SKIP_AUTOBAHN:-}" ]]; then
    echo "test.sh: SKIPPED the Autobahn WebSocket conformance suite (HOOKCAST_SKIP_AUTOBAHN is set)" >&2
else
    scripts/autobahn.sh
fi
