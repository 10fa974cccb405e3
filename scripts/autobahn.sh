#!/usr/bin/env bash
# Runs Autobahn|Testsuite's fuzzingclient (RFC 6455 conformance) against hookcast's WebSocket
# echo endpoint on loopback, with the repository's own runner (tests/autobahn/run.sh: the suite
# at pinned versions in a virtual environment it makes).
#
# usage: scripts/autobahn.sh [outdir]      (default: ./autobahn-out)
# env:   AUTOBAHN_CASES / AUTOBAHN_EXCLUDE / AUTOBAHN_TIMEOUT / AUTOBAHN_PYTHON2 are passed
#        through to tests/autobahn/run.sh;
#        by default every case outside 12.* and 13.* (permessage-deflate, not offered) runs.
# Exit status: 0 only when no case failed and none is missing from the report.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
outdir="${1:-$root/autobahn-out}"

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/hookcast"
"$bin" check --config "$root/examples/autobahn.json" >/dev/null

log="$(mktemp)"
HOOKCAST_LOG=info "$bin" serve --config "$root/examples/autobahn.json" --listen 127.0.0.1:0 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT
addr=""
for _ in $(seq 1 100); do
    addr="$(grep -o 'listening on http://[0-9.:]*' "$log" | sed 's|.*http://||' || true)"
    [[ -n "$addr" ]] && break
    sleep 0.05
done
[[ -n "$addr" ]] || { echo "autobahn.sh: hookcast did not start:" >&2; cat "$log" >&2; exit 2; }

status=0
"$root/tests/autobahn/run.sh" "ws://$addr/ws/echo" "$outdir" || status=$?
if ! kill -0 "$pid" 2>/dev/null; then
    echo "autobahn.sh: hookcast died during the run" >&2
    cat "$log" >&2
    status=1
fi
exit "$status"
