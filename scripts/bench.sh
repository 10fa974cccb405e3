#!/usr/bin/env bash
# hookcast's own figures: release binary size, idle RSS, start-to-ready time, and user-space
# memory per idle subscriber (SSE and WebSocket, 1 000 and 10 000 connections), measured with
# the repo's load tool (hookcast-load) on loopback. Writes a Markdown table to
# bench/results/hookcast-<date>.md and prints it.
#
# usage: scripts/bench.sh [--quick]     (--quick: 1 000 connections only)
# Peers (Nchan, Pushpin, adnanh/webhook, websocketd) are not measured here yet.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
sizes=(1000 10000)
[[ "${1:-}" == "--quick" ]] && sizes=(1000)

cargo build --release --quiet --bins
bin=target/release/hookcast
load=target/release/hookcast-load
out="bench/results/hookcast-$(date -u +%Y-%m-%d).md"
mkdir -p bench/results

start_daemon() { # prints "PID PORT"
    local log
    log="$(mktemp)"
    "$bin" serve --listen 127.0.0.1:0 2>"$log" &
    local pid=$!
    local addr=""
    for _ in $(seq 1 200); do
        addr="$(grep -o 'listening on http://[0-9.:]*' "$log" | sed 's|.*:||' || true)"
        [[ -n "$addr" ]] && break
        sleep 0.01
    done
    rm -f "$log"
    echo "$pid $addr"
}

ready_ms() { # median of 11 starts: exec to the "listening" log line
    python3 - "$bin" <<'PY'
import subprocess, sys, time, statistics
times = []
for _ in range(11):
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.argv[1], "serve", "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if "listening on" in line:
            times.append((time.perf_counter() - t0) * 1000)
            break
    p.terminate(); p.wait()
print(f"{statistics.median(times):.1f}")
PY
}

size_kib=$(( $(stat -c %s "$bin") / 1024 ))
read -r pid _ < <(start_daemon)
sleep 0.3
idle_rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
kill "$pid"; wait "$pid" 2>/dev/null || true
ready=$(ready_ms)

rows=()
for n in "${sizes[@]}"; do
    for transport in sse ws; do
        read -r pid port < <(start_daemon)
        if [[ $transport == ws ]]; then path='/ws?topics=demo'; flag=--ws; else path='/events?topics=demo'; flag=; fi
        line=$("$load" idle --target "127.0.0.1:$port" --path "$path" $flag --conns "$n" --pid "$pid" | grep '^idle ')
        kill "$pid"; wait "$pid" 2>/dev/null || true
        bpc=$(grep -o ' bytes_per_conn=[0-9]*' <<<"$line" | cut -d= -f2)
        est=$(grep -o ' established=[0-9]*' <<<"$line" | cut -d= -f2)
        rows+=("| idle $transport subscribers | $n | $est established | **$bpc B** per connection (RssAnon delta / N) |")
    done
done

{
    echo "# hookcast benchmark — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); $($bin --version)."
    echo "Command: \`scripts/bench.sh\`. Load client on the same cores, loopback only."
    echo
    echo "| figure | value |"
    echo "|---|---|"
    echo "| release binary (stripped) | $size_kib KiB |"
    echo "| idle RSS after start | $idle_rss kB |"
    echo "| start to ready (median of 11) | $ready ms |"
    echo
    echo "| memory | connections | result | figure |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} | tee "$out"
