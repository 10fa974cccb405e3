#!/usr/bin/env bash
# Issue 17's benchmark: what server-side filters cost, on loopback.
#   fanout: 10 000 SSE subscribers on topic `bench`; 5 000 of them are measured by
#     `hookcast-load fanout` (no filter), the other 5 000 are held open by `hookcast-load idle`
#     either with no filter ("none": they receive every event) or with a filter the events never
#     match ("half-filtered": `where=level:error`; the bodies have no `level`, so the filter is
#     evaluated on every event and drops it). Reported: the measured half's delivery latency and
#     losses, the server's CPU time over the publish phase, and the messages it sent (from
#     /metrics: the filtered half must get none).
#   idle: user-space memory per idle subscriber, 10 000 of them, without and with a filter.
# Every run starts a fresh server. Runs alternate between the variants, BF_REPS times each
# (default 3), reported as median and range. Raw lines go to bench/results/filter-<date>.tsv, the
# table to bench/results/filter-<date>.md (printed).
#
# usage: scripts/bench-filter.sh [--quick] [--bin PATH --label NAME]
#   --quick       1 000 subscribers, 1 run of each
#   --bin PATH    the hookcast binary to measure (default target/release/hookcast), e.g. a build
#                 of a commit before filters, to compare the idle figure against (such a build
#                 ignores `where=`, so its "half-filtered" run is a run without filters)
#   --label NAME  appended to the result files' names (filter-<date>-NAME.*)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

quick=0 bin="$root/target/release/hookcast" label=''
while (($#)); do
    case $1 in
        --quick) quick=1 ;;
        --bin) bin=$(realpath "${2:?--bin needs a path}"); shift ;;
        --label) label=${2:?--label needs a name}; shift ;;
        *) echo "usage: scripts/bench-filter.sh [--quick] [--bin PATH --label NAME]" >&2; exit 2 ;;
    esac
    shift
done
n=10000 events=100 interval=20 reps=${BF_REPS:-3}
((quick)) && n=1000 reps=1
half=$((n / 2))
load="$root/target/release/hookcast-load"
[[ -x $bin && -x $load ]] || cargo build --release --quiet --bins
plain_path='/events?topics=bench'
filtered_path='/events?topics=bench&where=level:error'

tmp=$(mktemp -d)
pids=()
bf_log() { printf '[bench-filter %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
bf_stop() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
trap 'bf_stop; rm -rf "$tmp"' EXIT
trap 'bf_log interrupted; exit 130' INT TERM

bf_field() { grep -o " $1=[^ ]*" <<<" $2" | head -1 | cut -d= -f2; }
bf_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
bf_sent() { # port -> messages sent over every transport
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | awk '$1 ~ /^hookcast_messages_sent_total/ {s += $2} END {print s + 0}'
}

# Starts hookcast on a free port: sets server_pid and port.
bf_start() {
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$tmp/hookcast.json" <<EOF
{
  "listen": "127.0.0.1:$port",
  "log_level": "warn",
  "limits": { "max_connections": 30000, "max_connections_per_ip": 30000 },
  "public": [ { "topics": ["bench"], "scopes": ["subscribe", "publish"], "from": ["127.0.0.0/8"] } ]
}
EOF
    "$bin" serve --config "$tmp/hookcast.json" 2>>"$tmp/hookcast.log" &
    server_pid=$!
    pids+=("$server_pid")
    local i
    for ((i = 0; i < 200; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    bf_log "hookcast did not open port $port"
    return 1
}

day=$(date -u +%Y-%m-%d)
mkdir -p bench/results
base="bench/results/filter-$day"
((quick)) && base+="-quick"
[[ -n $label ]] && base+="-$label"
tsv="$base.tsv"
: >"$tsv"
bf_row() { local IFS=$'\t'; echo "$*" >>"$tsv"; }

# One fan-out run of a variant: hold the other half, then measure.
bf_fanout() { # variant
    local variant=$1 hold_path=$plain_path out="$tmp/fanout.out" held="$tmp/hold.out" i
    [[ $variant == half-filtered ]] && hold_path=$filtered_path
    bf_start || return 1
    : >"$held"
    "$load" idle --target "127.0.0.1:$port" --path "$hold_path" --conns "$half" --hold 600 \
        --sources 127.0.0.3 >"$held" 2>>"$tmp/load.err" &
    pids+=($!)
    for ((i = 0; i < 1200; i++)); do
        grep -q '^idle ' "$held" && break
        sleep 0.1
    done
    : >"$out"
    timeout 400 "$load" fanout --target "127.0.0.1:$port" --path "$plain_path" --conns "$half" \
        --events "$events" --interval-ms "$interval" --publish-path /publish/bench --wait 10 \
        --sources 127.0.0.4 >"$out" 2>>"$tmp/load.err" &
    local run=$! c0 c1 s0 s1
    for ((i = 0; i < 6000; i++)); do
        grep -q 'subscribers established' "$out" && break
        kill -0 "$run" 2>/dev/null || break
        sleep 0.05
    done
    c0=$(bf_ticks "$server_pid") s0=$(bf_sent "$port")
    wait "$run" || true
    c1=$(bf_ticks "$server_pid") s1=$(bf_sent "$port")
    local line f kv=()
    line=$(grep '^fanout ' "$out" || true)
    for f in p50_ms p99_ms max_ms lost established received published; do kv+=("$f=$(bf_field "$f" "$line")"); done
    kv+=("held=$(bf_field established "$(grep '^idle ' "$held" || true)")")
    kv+=("cpu_ms=$(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%d", d * 1000 / hz }')")
    kv+=("sent=$((s1 - s0))")
    bf_row fanout "$variant" "$n" "${kv[@]}"
    bf_log "fanout $variant: ${kv[*]}"
    bf_stop
}

bf_idle() { # variant
    local path=$plain_path line f kv=()
    [[ $1 == filtered ]] && path=$filtered_path
    bf_start || return 1
    line=$(timeout 300 "$load" idle --target "127.0.0.1:$port" --path "$path" --conns "$n" --pid "$server_pid" \
        2>>"$tmp/load.err" | grep '^idle ' || true)
    for f in established bytes_per_conn rss_before_kb rss_after_kb; do kv+=("$f=$(bf_field "$f" "$line")"); done
    bf_row idle "$1" "$n" "${kv[@]}"
    bf_log "idle $1: ${kv[*]}"
    bf_stop
}

for ((r = 0; r < reps; r++)); do
    bf_fanout none
    bf_fanout half-filtered
    bf_idle none
    bf_idle filtered
done

# Median and range per figure, variant and field.
python3 - "$tsv" "$base.md" "$n" "$events" "$interval" "$("$bin" --version 2>/dev/null || echo hookcast)" "$bin" <<'EOF'
import statistics, sys
tsv, md, n, events, interval, version, binary = sys.argv[1:]
rows = {}
for line in open(tsv):
    fig, variant, _, *kv = line.rstrip("\n").split("\t")
    d = dict(x.split("=", 1) for x in kv)
    rows.setdefault((fig, variant), []).append(d)
def stat(fig, variant, field):
    vals = []
    for d in rows.get((fig, variant), []):
        try:
            vals.append(float(d.get(field, "")))
        except ValueError:
            pass
    if not vals:
        return "n/a"
    m = statistics.median(vals)
    whole = all(v == int(v) for v in vals)
    fmt = (lambda v: f"{v:,.0f}") if whole or max(vals) >= 100 else (lambda v: f"{v:.1f}")
    return fmt(m) if len(vals) == 1 else f"{fmt(m)} ({fmt(min(vals))}–{fmt(max(vals))})"
out = [f"# Filters: fan-out and idle memory ({version}, {n} subscribers)", "",
       f"Fan-out: {events} events {interval} ms apart to topic `bench`; {int(n)//2} measured subscribers without a filter, "
       f"{int(n)//2} more held open either without a filter (none) or with `where=level:error`, which no event matches "
       "(half-filtered). CPU is the server's over the publish phase; sent is the messages it wrote (the filtered half gets none). "
       "Median (range) over the runs.", "", f"Binary: `{binary}` (a build without filters ignores `where=`: its half-filtered run has no filter).", "",
       "| variant | p50 ms | p99 ms | max ms | lost | server CPU ms | messages sent |", "|---|---|---|---|---|---|---|"]
for v in ["none", "half-filtered"]:
    out.append(f"| {v} | " + " | ".join(stat("fanout", v, f) for f in ["p50_ms", "p99_ms", "max_ms", "lost", "cpu_ms", "sent"]) + " |")
out += ["", f"Idle: {n} SSE subscribers held open, user-space memory (RssAnon) per subscriber.", "",
        "| variant | bytes per subscriber | RssAnon before kB | after kB |", "|---|---|---|---|"]
for v in ["none", "filtered"]:
    out.append(f"| {v} | " + " | ".join(stat("idle", v, f) for f in ["bytes_per_conn", "rss_before_kb", "rss_after_kb"]) + " |")
out += ["", "Reproduce: `scripts/bench-filter.sh` (raw runs in the .tsv beside this file)."]
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
EOF
