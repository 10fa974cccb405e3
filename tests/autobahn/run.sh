#!/usr/bin/env bash
# Autobahn|Testsuite (RFC 6455 conformance, `wstest -m fuzzingclient`) against a WebSocket echo
# endpoint on loopback, with the suite installed at pinned versions in a virtual environment this
# script makes (tests/autobahn/.venv27). Called by scripts/autobahn.sh, which starts hookcast.
#
# usage: tests/autobahn/run.sh ws://127.0.0.1:PORT/PATH OUTDIR
# env:   AUTOBAHN_CASES    comma-separated case patterns (default '*')
#        AUTOBAHN_EXCLUDE  patterns to skip (default '12.*,13.*': permessage-deflate, not offered)
#        AUTOBAHN_TIMEOUT  seconds for the whole run, install included (default 900)
#        AUTOBAHN_PYTHON2  a CPython 2.7 interpreter (default: pyenv's 2.7.x, then python2.7)
#
# Why CPython 2.7: the suite (PyPI autobahntestsuite 25.10.1) is still Python 2 code; on
# Python 3 `pip install` "succeeds" and `wstest` dies on import. Its sdist also leaves out its
# dependencies, so requirements-py27.txt pins upstream's list. The venv is made by virtualenv
# 20.21.1 (the last release able to create Python 2 environments), run from tests/.venv.
#
# Exit: 0 when no case failed (missing cases count as failed); 1 failures; 2 setup problem;
# 3 out of time. The last line is "autobahn: N ok, M failed, K non-strict".
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=scripts/lib/venv.sh
source "$root/scripts/lib/venv.sh"
deadline=$(($(date +%s) + ${AUTOBAHN_TIMEOUT:-900}))
venv27="$here/.venv27"
suite_version=25.10.1

give_up() { # CODE MESSAGE
    echo "autobahn: $2" >&2
    echo "autobahn: 0 ok, 1 failed, 0 non-strict"
    exit "$1"
}
left() { echo $((deadline - $(date +%s))); }

[[ $# -eq 2 ]] || give_up 2 "usage: $0 ws://127.0.0.1:PORT/PATH OUTDIR"
url=$1
outdir=$2
[[ $url =~ ^ws://(127\.[0-9.]+|localhost|\[::1\]):[0-9]+(/.*)?$ ]] || give_up 2 "only a loopback ws:// URL is allowed: $url"

find_python2() {
    if [[ -n ${AUTOBAHN_PYTHON2:-} ]]; then
        echo "$AUTOBAHN_PYTHON2"
        return
    fi
    local cand
    for cand in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python2.7 "$(command -v python2.7 || true)"; do
        [[ -n $cand && -x $cand ]] && { echo "$cand"; return; }
    done
}

venv27_ready() {
    [[ -f $venv27/.ready && "$(cat "$venv27/.ready")" == "$(sha256sum <"$here/requirements-py27.txt")" ]] &&
        "$venv27/bin/wstest" -a 2>/dev/null | grep -q "AutobahnTestSuite $suite_version"
}

build_venv27() {
    local py2 tools
    py2="$(find_python2)"
    [[ -n $py2 ]] || give_up 2 "no CPython 2.7 found. The Autobahn suite is Python 2 code: install python2.7 (Ubuntu 22.04: apt-get install python2.7; elsewhere pyenv install 2.7.18) or set AUTOBAHN_PYTHON2. To run every other test without it: HOOKCAST_SKIP_AUTOBAHN=1 scripts/test.sh"
    tools="$(test_venv "$root")" || give_up 2 "could not make the test venv"
    echo "autobahn: building $venv27 with $py2" >&2
    rm -rf "$venv27"
    (
        set -e
        timeout "$(left)" "$tools/bin/python3" -m virtualenv -q -p "$py2" "$venv27"
        # Twisted 19.10's setup needs these first, and cannot build in isolation.
        timeout "$(left)" "$venv27/bin/pip" install -q --disable-pip-version-check 'setuptools==44.0.0' 'incremental==16.10.1'
        timeout "$(left)" "$venv27/bin/pip" install -q --disable-pip-version-check --no-build-isolation -r "$here/requirements-py27.txt"
    ) 2>&1 | grep -v -e DEPRECATION -e 'WARNING: Running pip as' >&2
    [[ ${PIPESTATUS[0]} -eq 0 ]] || give_up 2 "building the wstest venv failed"
    sha256sum <"$here/requirements-py27.txt" >"$venv27/.ready"
    venv27_ready || give_up 2 "wstest in $venv27 does not run"
}

exec 9>"$here/.venv27.lock"
flock -w "$(left)" 9 || give_up 3 "timed out waiting for $here/.venv27.lock"
venv27_ready || build_venv27
flock -u 9

mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
rm -rf "$outdir/reports"
"$venv27/bin/python" - "$outdir" "$url" "${AUTOBAHN_CASES:-*}" "${AUTOBAHN_EXCLUDE-12.*,13.*}" >"$outdir/spec.json" <<'PY'
import json, sys
outdir, url, cases, exclude = sys.argv[1:]
split = lambda s: [p.strip() for p in s.split(",") if p.strip()]
print(json.dumps({"outdir": outdir + "/reports", "servers": [{"agent": "hookcast", "url": url}],
                  "cases": split(cases) or ["*"], "exclude-cases": split(exclude),
                  "exclude-agent-cases": {}}, indent=2))
PY
t=$(left)
((t > 5)) || give_up 3 "no time left for wstest"
echo "autobahn: wstest fuzzingclient -> $url (log $outdir/wstest.log, report $outdir/reports/index.html)"
(cd "$outdir" && exec timeout -k 10 "$t" "$venv27/bin/wstest" -m fuzzingclient -s spec.json) >"$outdir/wstest.log" 2>&1
rc=$?
[[ $rc -eq 124 || $rc -eq 137 ]] && give_up 3 "wstest ran out of time (it writes its report only at the end)"
python3 "$here/summary.py" "$outdir/reports" "$outdir/wstest.log"
verdict=$?
[[ $rc -ne 0 && $verdict -eq 0 ]] && { echo "autobahn: wstest exited $rc (see $outdir/wstest.log)" >&2; verdict=2; }
exit "$verdict"
