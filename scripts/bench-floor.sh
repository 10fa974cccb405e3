#!/usr/bin/env bash
# Issue 21's floor: hookcast's fan-out against the least a push server can do on this machine
# (target/release/hookcast-floor: one mio loop, a fixed SSE head, one write of one 200-byte frame
# per subscriber per event, no HTTP parser, no hub), both driven by the same hookcast-load fanout
# on loopback. For 1 000 and 10 000 SSE subscribers: delivery latency p50/p99 and the server's CPU
# per delivery over the publish phase, each as a ratio to the floor's. Runs alternate between the
# two servers, BF_REPS times (default 3); medians and ranges. Raw lines in
# bench/results/floor-<date>.tsv, the table in bench/results/floor-<date>.md (printed).
#
# usage: scripts/bench-floor.sh [--quick]     --quick: 1 000 subscribers only, 1 run
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

quick=0
for arg in "$@"; do
    case $arg in
        --quick) quick=1 ;;
        *) echo "usage: scripts/bench-floor.sh [--quick]" >&2; exit 2 ;;
    esac
done
reps=${BF_REPS:-3} sizes=(1000 10000) events=100
((quick)) && reps=1 sizes=(1000)
bin="$root/target/release/hookcast" floor="$root/target/release/hookcast-floor" load="$root/target/release/hookcast-load"
[[ -x $bin && -x $floor && -x $load ]] || cargo build --release --quiet --bins

tmp=$(mktemp -d)
server=''
stop_server() {
    if [[ -n $server ]]; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
        server=''
    fi
}
trap 'stop_server; rm -rf "$tmp"' EXIT
log() { printf '[bench-floor %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
field() { grep -o " $1=[^ ]*" <<<" $2" | head -1 | cut -d= -f2; }

# Starts `hookcast` or `floor` on a free port: sets server and port.
start() {
    local log_file="$tmp/$1.log" i
    : >"$log_file"
    if [[ $1 == floor ]]; then
        "$floor" --listen 127.0.0.1:0 2>"$log_file" &
    else
        cat >"$tmp/hookcast.json" <<'JSON'
{ "listen": "127.0.0.1:0", "log_level": "warn",
  "limits": { "max_connections": 30000, "max_connections_per_ip": 30000 },
  "public": [ { "topics": ["bench"], "scopes": ["subscribe", "publish"], "from": ["127.0.0.0/8"] } ] }
JSON
        HOOKCAST_LOG=info "$bin" serve --config "$tmp/hookcast.json" 2>"$log_file" &
    fi
    server=$!
    for ((i = 0; i < 200; i++)); do
        port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$log_file" | grep -o '[0-9]*$' || true)
        [[ -n $port ]] && return 0
        sleep 0.05
    done
    log "$1 did not start"
    return 1
}

day=$(date -u +%Y-%m-%d)
mkdir -p bench/results
base="bench/results/floor-$day"
((quick)) && base+="-quick"
tsv="$base.tsv"
: >"$tsv"

run() { # server n
    local out="$tmp/fanout.out" interval=20 i c0 c1 line
    (($2 >= 10000)) && interval=100 # 100 000 deliveries/s: paced, not a saturated backlog
    start "$1" || return 1
    : >"$out"
    timeout 400 "$load" fanout --target "127.0.0.1:$port" --path '/events?topics=bench' --conns "$2" \
        --events "$events" --interval-ms "$interval" --publish-path /publish/bench --wait 10 >"$out" 2>>"$tmp/load.err" &
    local job=$!
    for ((i = 0; i < 6000; i++)); do
        grep -q 'subscribers established' "$out" && break
        kill -0 "$job" 2>/dev/null || break
        sleep 0.05
    done
    c0=$(awk '{print $14 + $15}' "/proc/$server/stat")
    wait "$job" || true
    c1=$(awk '{print $14 + $15}' "/proc/$server/stat")
    line=$(grep '^fanout ' "$out" || true)
    local kv=() f received
    for f in p50_ms p99_ms max_ms lost received; do kv+=("$f=$(field "$f" "$line")"); done
    received=$(field received "$line")
    kv+=("cpu_us_per_delivery=$(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v r="${received:-0}" \
        'BEGIN { if (r > 0) printf "%.2f", d * 1000000 / hz / r; else print "n/a" }')")
    (IFS=$'\t'; echo "$1	$2	interval_ms=$interval	${kv[*]}" >>"$tsv")
    log "$1 $2: ${kv[*]}"
    stop_server
}

for n in "${sizes[@]}"; do
    for ((r = 0; r < reps; r++)); do
        run floor "$n"
        run hookcast "$n"
    done
done

python3 - "$tsv" "$base.md" "$events" <<'PY'
import statistics, sys
tsv, md, events = sys.argv[1:]
rows = {}
for line in open(tsv):
    server, n, *kv = line.rstrip("\n").split("\t")
    d = dict(x.split("=", 1) for x in kv)
    rows.setdefault((server, int(n)), []).append(d)
def med(server, n, f):
    v = [float(d[f]) for d in rows.get((server, n), []) if d.get(f, "n/a") not in ("", "n/a")]
    return (statistics.median(v), min(v), max(v)) if v else None
out = ["# hookcast against the floor", "",
       f"{events} events of 200 bytes to N SSE subscribers on loopback, driven by hookcast-load fanout; the floor is "
       "target/release/hookcast-floor (one write per subscriber per event, nothing else). Median (range) of the runs; "
       "ratio = hookcast / floor (1.00 is the floor; issue 21's target is at most 1.25).", "",
       "| subscribers | figure | floor | hookcast | ratio |", "|---|---|---|---|---|"]
for n in sorted({k[1] for k in rows}):
    interval = rows[("floor", n)][0].get("interval_ms", "?") if ("floor", n) in rows else "?"
    for f, label in [("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("cpu_us_per_delivery", "server CPU µs per delivery"), ("lost", "lost")]:
        a, b = med("floor", n, f), med("hookcast", n, f)
        fmt = lambda m: "n/a" if m is None else (f"{m[0]:.2f}" if m[1] == m[2] else f"{m[0]:.2f} ({m[1]:.2f}–{m[2]:.2f})")
        ratio = "n/a" if not a or not b or a[0] == 0 else f"{b[0] / a[0]:.2f}"
        out.append(f"| {n:,} ({interval} ms apart) | {label} | {fmt(a)} | {fmt(b)} | {ratio} |")
out += ["", "Reproduce: `scripts/bench-floor.sh` (raw runs in the .tsv beside this file)."]
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
