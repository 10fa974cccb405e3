#!/usr/bin/env bash
# The test command must pass on a fresh clone of this repository alone (issue 13): nothing it runs
# may read the team's workspace folder beside the repository, and no script may pip-install into
# the system's Python, which Debian 12 refuses. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
fail() { echo "self_contained_test: $*" >&2; exit 1; }

scripts=()
while IFS= read -r f; do scripts+=("$f"); done < <(git ls-files '*.sh' '*.mjs' '*.py' '*.rs' .ci/run)
((${#scripts[@]} > 10)) || fail "found only ${#scripts[@]} scripts: not run from a git checkout?"
# The workspace folder's relative path, put together so this file does not name it itself.
workspace="../""shared"
for f in "${scripts[@]}"; do
    [[ $f == tests/scripts/self_contained_test.sh ]] && continue
    if grep -nF "$workspace" "$f"; then
        fail "$f reads $workspace, which a user's clone does not have"
    fi
    if grep -nE 'python3? -m pip install|(^|[[:space:]])pip3? install' "$f" | grep -v -e '/bin/pip' -e 'venv' -e 'tools/bin'; then
        fail "$f installs Python packages outside a virtual environment"
    fi
done
# The venv helper really makes a venv (a stand-in pin list keeps this fast and offline).
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/tests/sdk" "$tmp/tests/autobahn"
: >"$tmp/tests/sdk/requirements.txt"
: >"$tmp/tests/autobahn/requirements-tools.txt"
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
venv="$(test_venv "$tmp")"
[[ $venv == "$tmp/tests/.venv" ]] || fail "test_venv printed $venv"
"$venv/bin/python3" -c 'import sys; assert sys.prefix != sys.base_prefix' || fail "$venv is not a virtual environment"
echo "self_contained_test: ok (${#scripts[@]} files checked)"
