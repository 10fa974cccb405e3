#!/usr/bin/env bash
# Two hookcast builds side by side under the same load tool, alternating, so a refactor's
# before/after comes from one run on one machine: user-space memory per idle subscriber (SSE and
# WebSocket), fan-out latency to 1 000 subscribers, burst delivery rate, and publish throughput
# without a journal. Prints one line per figure and round; loopback only.
#
# usage: scripts/compare-builds.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]   (default 3 rounds)
#   e.g. git worktree add /tmp/before <commit> && (cd /tmp/before && cargo build --release)
#        scripts/compare-builds.sh /tmp/before/target/release/hookcast target/release/hookcast
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $# -ge 2 ]] || { sed -n 2,9p "${BASH_SOURCE[0]}" >&2; exit 2; }
declare -A bins=([before]=$1 [after]=$2)
rounds=${3:-3}
(cd "$root" && cargo build --release --quiet --bin hookcast-load)
load="${CARGO_TARGET_DIR:-$root/target}/release/hookcast-load"
cfg="$(mktemp)"
trap 'rm -f "$cfg"' EXIT
# Every load connection comes from loopback: lift the per-address limit.
printf '{"public":[{"topics":["demo","bench"],"scopes":["subscribe","publish"],"from":["127.0.0.0/8"]}],"limits":{"max_connections":30000,"max_connections_per_ip":30000}}\n' >"$cfg"

start() { # BINARY: prints "PID PORT"
    local log pid addr=""
    log="$(mktemp)"
    "$1" serve --listen 127.0.0.1:0 --config "$cfg" 2>"$log" &
    pid=$!
    for _ in $(seq 1 200); do
        addr="$(grep -o 'listening on http://[0-9.:]*' "$log" | sed 's|.*:||' || true)"
        [[ -n $addr ]] && break
        sleep 0.01
    done
    rm -f "$log"
    echo "$pid $addr"
}
fields() { # LINE NAME...: NAME=value for each NAME found in LINE
    local line=$1
    shift
    for f in "$@"; do grep -o " $f=[0-9.]*" <<<"$line" | head -1 | tr -d ' '; done | tr '\n' ' '
}
measure() { # ROUND WHICH BINARY
    local pid port line
    for t in sse ws; do
        read -r pid port < <(start "$3")
        if [[ $t == ws ]]; then
            line=$("$load" idle --target "127.0.0.1:$port" --path '/ws?topics=demo' --ws --conns 10000 --pid "$pid" | grep '^idle ')
        else
            line=$("$load" idle --target "127.0.0.1:$port" --path '/events?topics=demo' --conns 10000 --pid "$pid" | grep '^idle ')
        fi
        kill "$pid"; wait "$pid" 2>/dev/null || true
        echo "$1 $2 idle_${t}_10000 $(fields "$line" bytes_per_conn established)"
    done
    read -r pid port < <(start "$3")
    line=$("$load" fanout --target "127.0.0.1:$port" --path '/events?topics=bench' --conns 1000 --events 200 --interval-ms 10 --publish-path /publish/bench | grep '^fanout ')
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$1 $2 fanout_sse_1000 $(fields "$line" p50_ms p99_ms lost)"
    read -r pid port < <(start "$3")
    line=$("$load" fanout --target "127.0.0.1:$port" --path '/events?topics=bench' --conns 1000 --events 2000 --interval-ms 0 --publish-path /publish/bench | grep '^fanout ')
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$1 $2 burst_sse_1000 $(fields "$line" deliveries_per_s p99_ms lost)"
    read -r pid port < <(start "$3")
    line=$("$load" publish --target "127.0.0.1:$port" --topic bench --conns 16 --seconds 5 | grep '^publish ')
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$1 $2 publish_16_no_journal $(fields "$line" per_sec p99_ms)"
}
for round in $(seq 1 "$rounds"); do
    for which in before after; do
        measure "$round" "$which" "${bins[$which]}"
    done
done
