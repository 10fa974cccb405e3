# shellcheck shell=bash
# Sourced by the scripts. `cmd | grep -q re` under `set -o pipefail` fails whenever grep has
# matched and exited before cmd finished writing (cmd dies of SIGPIPE): with apt-cache's longer
# output that made the side-by-side benchmark report installable peers as "not available".

# says REGEX COMMAND [ARG...]: whether COMMAND's standard output matches REGEX (bash =~).
says() {
    local re=$1 out
    shift
    out=$("$@" 2>/dev/null) || true
    [[ $out =~ $re ]]
}
