#!/usr/bin/env bash
# Tests scripts/lib/says.sh under the scripts' own shell options. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/lib/says.sh
source scripts/lib/says.sh

# A writer that is still writing when the match comes: what apt-cache policy can be.
chatty() {
    echo "Candidate: 1.22.1"
    head -c 1048576 /dev/zero | tr '\0' 'x'
    echo
}
fail() { echo "says_test: $*" >&2; exit 1; }

# The pattern that was replaced loses the race under pipefail.
if chatty 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    fail "expected the grep -q pipeline to fail under pipefail (SIGPIPE); the test no longer shows the bug"
fi
says 'Candidate: [0-9]' chatty || fail "says missed a match in long output"
! says 'Candidate: \(none\)' chatty || fail "says matched what is not there"
! says 'anything' false || fail "a failing command's empty output matched"
says 'install ok installed' printf 'install ok installed' || fail "short output"
echo "says_test: ok"
