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

cargo test --all-targets
scripts/autobahn.sh
