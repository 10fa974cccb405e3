#!/usr/bin/env bash
# Runs every test hookcast has: unit and property tests, the integration tests against the
# real binary (with the independent clients they need installed first), and the Autobahn
# WebSocket conformance suite. This is the README's test command.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v node >/dev/null || { echo "test.sh: node is needed for the EventSource client (apt-get install nodejs npm)" >&2; exit 1; }
if [[ ! -d tests/js/node_modules/eventsource ]]; then
    npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
fi

# The providers' own SDKs that sign the webhook tests' deliveries (tests/sdk/README.md): the
# Python ones at the versions pinned in requirements.txt (installed only when one is missing or
# at another version, so reruns stay fast), the npm ones like tests/js.
command -v python3 >/dev/null || { echo "test.sh: python3 (3.9+) with pip is needed for tests/sdk" >&2; exit 1; }
sdk_pins_installed() {
    python3 - tests/sdk/requirements.txt <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

for line in open(sys.argv[1], encoding="utf-8"):
    name, _, want = line.split("#")[0].strip().partition("==")
    if not name:
        continue
    try:
        if want and version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}
if ! sdk_pins_installed; then
    python3 -m pip install -q --disable-pip-version-check -r tests/sdk/requirements.txt
fi
if [[ ! -d tests/sdk/node_modules/@octokit/webhooks-methods ]]; then
    npm ci --prefix tests/sdk --no-audit --no-fund --loglevel=error
fi

cargo test --all-targets
bash tests/scripts/says_test.sh

# The status page in headless Chromium (tests/browser/README.md): the system's browser driven by
# playwright-core from npm, against the debug binary cargo test just built.
[[ -x /usr/bin/chromium ]] || { echo "test.sh: /usr/bin/chromium is needed for the status page's browser test (apt-get install chromium)" >&2; exit 1; }
if [[ ! -d tests/browser/node_modules/playwright-core ]]; then
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi
node tests/browser/status.mjs "${CARGO_TARGET_DIR:-target}/debug/hookcast"
node tests/browser/csrf.mjs "${CARGO_TARGET_DIR:-target}/debug/hookcast"
scripts/autobahn.sh
