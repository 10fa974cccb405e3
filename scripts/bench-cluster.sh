#!/usr/bin/env bash
# Issue 15's benchmark: several hookcast nodes on one Redis, side by side with Nchan in its
# Redis mode on the same Redis, in one run, everything on loopback:
#   a. 3 hookcast nodes (cluster) on one redis-server; N SSE subscribers on each node; one
#      publisher on node 1; the delivery latency, losses and burst rate are measured at the
#      subscribers of nodes 2 and 3 (node 1's are held open and read, not measured);
#   b. the same with 3 nginx + Nchan instances sharing that Redis (nchan_redis_pass);
#   c. one hookcast node with and without `cluster`: publish throughput and paced fan-out to N
#      local subscribers (the price of going through Redis);
#   d. idle memory per SSE subscriber of one node with and without `cluster`;
#   e. reuse_port: 2 nodes sharing one port vs 1 node, burst to N subscribers on that port.
# The timed figures are repeated (BC_REPS, default 3) and reported as median and range; every
# server is started fresh (and Redis flushed) for each run. Raw lines go to
# bench/results/cluster-<date>.tsv, the table to bench/results/cluster-<date>.md (printed).
#
# usage: scripts/bench-cluster.sh [--quick]
#   --quick   500 subscribers per node, 20 paced and 50 burst events, 1 run each, 2 s publishes
# BC_REPS=N: runs of each timed figure (default 3).
# Needs redis-server, nginx with the nchan module (Debian: libnginx-mod-nchan) and
# target/release/{hookcast,hookcast-load} (built when missing).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

quick=0
for arg in "$@"; do
    case $arg in
        --quick) quick=1 ;;
        *) echo "usage: scripts/bench-cluster.sh [--quick]" >&2; exit 2 ;;
    esac
done

# Paced events come 200 ms apart: 3 x 3 000 subscribers at 20 ms apart would ask 450 000
# deliveries/s of 2 cores, more than any server here manages (see the burst figure), and the
# "latency" would be queueing behind the backlog.
n=3000 paced=50 interval=200 burst=200 reps=${BC_REPS:-3} pub_conns=4 pub_secs=5
((quick)) && n=500 paced=20 burst=50 reps=1 pub_secs=2

bin="$root/target/release/hookcast" load="$root/target/release/hookcast-load"
[[ -x $bin && -x $load ]] || cargo build --release --quiet --bins
command -v redis-server >/dev/null || { echo "bench-cluster: redis-server is not installed" >&2; exit 1; }
nchan_mod=/usr/lib/nginx/modules/ngx_nchan_module.so
have_nchan=1
nchan_na=''
if ! command -v nginx >/dev/null || [[ ! -f $nchan_mod ]]; then
    have_nchan=0 nchan_na="nginx or $nchan_mod not installed"
fi

tmp=$(mktemp -d)
# Every process this script starts: background children by pid, nginx masters by pid file.
bc_pids=() bc_nginx_dirs=()

bc_log() { printf '[bench-cluster %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

bc_kill_wait() { # pids...: TERM, KILL after 5 s, reap
    local p i alive
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for ((i = 0; i < 100; i++)); do
        alive=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.05
    done
    for p in "$@"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}

bc_stop_nginx() {
    local d master workers=()
    for d in "${bc_nginx_dirs[@]}"; do
        [[ -s $d/nginx.pid ]] || continue
        master=$(cat "$d/nginx.pid")
        mapfile -t workers < <(pgrep -P "$master" || true)
        bc_kill_wait "$master" "${workers[@]}"
        rm -f "$d/nginx.pid"
    done
    bc_nginx_dirs=()
}

bc_stop_all() { # everything but Redis
    bc_stop_nginx
    ((${#bc_pids[@]})) && bc_kill_wait "${bc_pids[@]}"
    bc_pids=()
}

redis_pid=''
bc_cleanup() {
    trap - EXIT INT TERM
    bc_stop_all
    [[ -n $redis_pid ]] && bc_kill_wait "$redis_pid"
    rm -rf "$tmp"
}
trap bc_cleanup EXIT
trap 'bc_log "interrupted"; bc_cleanup; exit 130' INT TERM

bc_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

bc_wait_port() { # port [seconds]
    local i
    for ((i = 0; i < ${2:-10} * 20; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    bc_log "port $1 did not open"
    return 1
}

bc_field() { # name line -> value of name=value
    grep -o " $1=[^ ]*" <<<" $2" | head -1 | cut -d= -f2
}

bc_cpu_ticks() { # pids... -> utime + stime summed, in clock ticks
    local p total=0 t
    for p in "$@"; do
        t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

bc_sockets() { # pid -> open sockets
    find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' 2>/dev/null | wc -l
}

bc_row() { # figure server n key=value...
    local IFS=$'\t'
    echo "$*" >>"$tsv"
}

# ---------------------------------------------------------------------------------------------
# Redis: one, for the whole run, flushed before each run.

redis_port=$(bc_free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    --maxclients 10000 >"$tmp/redis.log" 2>&1 &
redis_pid=$!
bc_wait_port "$redis_port"

bc_flush() {
    # A hand-made RESP FLUSHALL on bash's /dev/tcp, since redis-cli is not necessarily installed.
    local reply=''
    exec 4<>"/dev/tcp/127.0.0.1/$redis_port"
    # shellcheck disable=SC2016 # RESP's $8 is a length, not an expansion
    printf '*1\r\n$8\r\nFLUSHALL\r\n' >&4
    IFS= read -r -t 5 reply <&4 || true
    exec 4<&-
    [[ $reply == +OK* ]] || { bc_log "FLUSHALL answered: ${reply:-nothing}"; return 1; }
}

# ---------------------------------------------------------------------------------------------
# Servers. bc_nodes: pids of the hookcast nodes started; bc_ports: their ports.

bc_nodes=() bc_ports=()

bc_start_node() { # name port cluster(0|1) reuse_port(0|1)
    local name=$1 port=$2 cluster=$3 reuse=$4 cfg="$tmp/$1.json" extra=''
    ((cluster)) && extra+=", \"cluster\": { \"redis\": \"redis://127.0.0.1:$redis_port/0\", \"name\": \"bench\", \"node\": \"$name\" }"
    ((reuse)) && extra+=', "reuse_port": true'
    cat >"$cfg" <<EOF
{
  "listen": "127.0.0.1:$port",
  "log_level": "warn",
  "limits": { "max_connections": 30000, "max_connections_per_ip": 30000 },
  "public": [ { "topics": ["bench"], "scopes": ["subscribe", "publish"], "from": ["127.0.0.0/8"] } ]$extra
}
EOF
    "$bin" serve --config "$cfg" 2>>"$tmp/$name.log" &
    bc_pids+=($!) bc_nodes+=($!) bc_ports+=("$port")
    bc_wait_port "$port" || return 1
    if ((cluster)); then # linked to Redis (both links) before anything is measured
        local i
        for ((i = 0; i < 100; i++)); do
            curl -s --max-time 1 "http://127.0.0.1:$port/metrics" | grep -qx 'hookcast_redis_up 1' && return 0
            sleep 0.1
        done
        bc_log "node $name did not link to Redis"
        return 1
    fi
}

bc_start_hookcast_cluster() { # count
    local i
    bc_nodes=() bc_ports=()
    bc_flush
    for ((i = 1; i <= $1; i++)); do bc_start_node "n$i" "$(bc_free_port)" 1 0 || return 1; done
    sub_path='/events?topics=bench' pub_path=/publish/bench
}

# Nchan in its Redis mode: like scripts/bench.sh's sbs_start_nchan (one worker, access log off,
# the same ping intervals), with every channel stored in the shared Redis through an upstream
# block (`nchan_redis_pass`; Nchan 1.3 calls `nchan_redis_url` + `nchan_use_redis` discouraged).
bc_start_nchan() { # index port
    local d="$tmp/nginx$1" master='' i
    mkdir -p "$d"
    cat >"$d/nginx.conf" <<EOF
load_module $nchan_mod;
user root;
worker_processes 1;
worker_rlimit_nofile 30000;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 30000; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $d/body; proxy_temp_path $d/proxy; fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
  nchan_shared_memory_size 256M;
  upstream bench_redis { nchan_redis_server "redis://127.0.0.1:$redis_port"; }
  server {
    listen 127.0.0.1:$2 backlog=4096;
    location = /sub {
      nchan_subscriber;
      nchan_channel_id \$arg_id;
      nchan_redis_pass bench_redis;
      nchan_eventsource_ping_interval 15;
      nchan_websocket_ping_interval 30;
    }
    location = /pub { nchan_publisher; nchan_channel_id \$arg_id; nchan_redis_pass bench_redis; }
  }
}
EOF
    rm -f "$d/nginx.pid"
    bc_nginx_dirs+=("$d")
    nginx -q -p "$d" -c "$d/nginx.conf" -g 'daemon on; master_process on;' 2>>"$d/start.err" || {
        bc_log "nginx $1 did not start: $(tail -1 "$d/start.err")"
        return 1
    }
    for ((i = 0; i < 100; i++)); do
        [[ -s $d/nginx.pid ]] && master=$(cat "$d/nginx.pid") && break
        sleep 0.05
    done
    [[ -n $master ]] && bc_wait_port "$2" || return 1
    local workers=()
    mapfile -t workers < <(pgrep -P "$master" || true)
    bc_nodes+=("$master" "${workers[@]}")
    bc_ports+=("$2")
    for ((i = 0; i < 100; i++)); do # "Redis upstream bench_redis: ready" (notice level, not logged at warn)
        curl -s --max-time 1 -o /dev/null -w '%{http_code}' -X POST -d warmup \
            "http://127.0.0.1:$2/pub?id=warmup" | grep -q '^20' && return 0
        sleep 0.1
    done
    bc_log "nginx $1: Nchan's publisher does not answer 2xx (Redis link?): $(tail -2 "$d/error.log")"
    return 1
}

bc_start_nchan_cluster() { # count
    local i
    bc_nodes=() bc_ports=()
    bc_flush
    for ((i = 1; i <= $1; i++)); do bc_start_nchan "$i" "$(bc_free_port)" || return 1; done
    sub_path='/sub?id=bench' pub_path='/pub?id=bench'
}

# ---------------------------------------------------------------------------------------------
# Measurements.

# Holds N subscribers on a port open, reading (and dropping) what arrives, until stopped.
bc_hold() { # port n
    local out="$tmp/hold.out" i
    : >"$out"
    "$load" idle --target "127.0.0.1:$1" --path "$sub_path" --conns "$2" --hold 600 --sources 127.0.0.3 >"$out" 2>>"$tmp/load.err" &
    bc_pids+=($!)
    local holder=$!
    for ((i = 0; i < 1200; i++)); do
        grep -q '^idle ' "$out" && break
        kill -0 "$holder" 2>/dev/null || break
        sleep 0.1
    done
    hold_established=$(bc_field established "$(grep '^idle ' "$out" || true)")
    bc_log "holding ${hold_established:-0} of $2 subscribers on port $1"
}

# One `hookcast-load fanout` run: subscribers on the given ports (round-robin), publisher on
# pub_port. CPU of bc_nodes (+ Redis) from connected to done, per delivery. Writes one row.
bc_fanout() { # figure server events interval_ms conns pub_port sub_port...
    local figure=$1 server=$2 events=$3 interval=$4 conns=$5 pub_port=$6 out="$tmp/fanout.out" i
    shift 6
    local targets=() p
    for p in "$@"; do targets+=(--target "127.0.0.1:$p"); done
    local cpu_pids=("${bc_nodes[@]}")
    [[ $server == single-plain ]] || cpu_pids+=("$redis_pid")
    : >"$out"
    local load1
    load1=$(cut -d' ' -f1 /proc/loadavg)
    timeout 400 "$load" fanout "${targets[@]}" --path "$sub_path" --conns "$conns" --events "$events" \
        --interval-ms "$interval" --publish-target "127.0.0.1:$pub_port" --publish-path "$pub_path" \
        --wait 10 >"$out" 2>>"$tmp/load.err" &
    local run=$! c0 c1 spread=''
    bc_pids+=("$run")
    for ((i = 0; i < 6000; i++)); do
        grep -q 'subscribers established' "$out" && break
        kill -0 "$run" 2>/dev/null || break
        sleep 0.05
    done
    c0=$(bc_cpu_ticks "${cpu_pids[@]}")
    if [[ $figure == reuse* ]]; then # how the kernel spread the connections over the nodes
        for p in "${bc_nodes[@]}"; do spread+="${spread:+/}$(bc_sockets "$p")"; done
    fi
    wait "$run" || true
    c1=$(bc_cpu_ticks "${cpu_pids[@]}")
    local line f kv=() received
    line=$(grep '^fanout ' "$out" || true)
    if [[ -z $line ]]; then
        bc_log "$figure $server: no result ($(tail -1 "$tmp/load.err"))"
        bc_row "$figure" "$server" "$conns" "p50_ms=n/a" "load1=$load1"
        return
    fi
    for f in p50_ms p99_ms max_ms lost established received published publish_errors deliveries_per_s window_ms; do
        kv+=("$f=$(bc_field "$f" "$line")")
    done
    received=$(bc_field received "$line")
    kv+=("cpu_us_per_delivery=$(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v r="${received:-0}" \
        'BEGIN { if (r > 0) printf "%.2f", d * 1000000 / hz / r; else print "n/a" }')")
    [[ -n $spread ]] && kv+=("sockets_per_node=$spread")
    if [[ $server == hookcast* && $figure == cross* ]]; then # holes each node saw: should be 0
        local holes=0 h
        for p in "${bc_ports[@]}"; do
            h=$(curl -s --max-time 2 "http://127.0.0.1:$p/metrics" | awk '$1 == "hookcast_cluster_holes_total" {print $2}')
            holes=$((holes + ${h:-0}))
        done
        kv+=("holes=$holes")
    fi
    bc_row "$figure" "$server" "$conns" "events=$events" "interval_ms=$interval" "${kv[@]}" "load1=$load1"
    bc_log "$figure $server $conns: ${kv[*]} load1=$load1"
}

bc_publish() { # server port
    local line load1
    load1=$(cut -d' ' -f1 /proc/loadavg)
    line=$(timeout 60 "$load" publish --target "127.0.0.1:$2" --topic bench --conns "$pub_conns" \
        --seconds "$pub_secs" 2>>"$tmp/load.err" | grep '^publish ' || true)
    local f kv=()
    for f in acked per_sec p50_ms p99_ms max_ms errors; do kv+=("$f=$(bc_field "$f" "$line")"); done
    bc_row publish "$1" "$pub_conns" "seconds=$pub_secs" "${kv[@]}" "load1=$load1"
    bc_log "publish $1: ${kv[*]}"
}

bc_idle() { # server port pid
    local line
    line=$(timeout 300 "$load" idle --target "127.0.0.1:$2" --path "$sub_path" --conns "$n" --pid "$3" \
        2>>"$tmp/load.err" | grep '^idle ' || true)
    local f kv=()
    for f in established bytes_per_conn rss_before_kb rss_after_kb vmrss_bytes_per_conn pss_bytes_per_conn; do
        kv+=("$f=$(bc_field "$f" "$line")")
    done
    bc_row idle "$1" "$n" "${kv[@]}"
    bc_log "idle $1: ${kv[*]}"
}

# ---------------------------------------------------------------------------------------------
# The run.

day=$(date -u +%Y-%m-%d)
mkdir -p bench/results
base="bench/results/cluster-$day"
((quick)) && base+="-quick"
tsv="$base.tsv" md="$base.md"
command_line="scripts/bench-cluster.sh${*:+ $*}"
[[ -n ${BC_REPS:-} ]] && command_line="BC_REPS=$BC_REPS $command_line"
started_s=$(date +%s)
{
    printf '# started\t%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)"
    printf '# machine\t%s cores (%s), %s GiB, %s; load average at start %s\n' "$(nproc)" \
        "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
        "$(free -g | awk '/^Mem:/ {print $2}')" "$(uname -sr)" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '# command\t%s\n' "$command_line"
    printf '# sizes\tn=%s paced=%s interval_ms=%s burst=%s reps=%s publish=%sx%ss\n' \
        "$n" "$paced" "$interval" "$burst" "$reps" "$pub_conns" "$pub_secs"
    printf '# version\thookcast\t%s (%s)\n' "$("$bin" --version | awk '{print $2}')" "$(git rev-parse --short HEAD)"
    printf '# version\tredis\t%s\n' "$(redis-server --version)"
    if ((have_nchan)); then
        printf '# version\tnginx\t%s\n' "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
        printf '# version\tnchan\t%s\n' "$(dpkg-query -W -f='libnginx-mod-nchan ${Version}' libnginx-mod-nchan 2>/dev/null ||
            strings "$nchan_mod" | grep -m1 -o 'nchan/[0-9.]*' || echo unknown)"
    fi
    [[ -n $nchan_na ]] && printf '# na\tnchan\t%s\n' "$nchan_na"
} >"$tsv"

for ((r = 1; r <= reps; r++)); do
    bc_log "=== run $r of $reps"
    # (a) 3 hookcast nodes: paced and burst, measured on nodes 2 and 3.
    for kind in paced burst; do
        ev=$paced iv=$interval
        [[ $kind == burst ]] && ev=$burst iv=0
        if bc_start_hookcast_cluster 3; then
            bc_hold "${bc_ports[0]}" "$n"
            bc_fanout "cross-$kind" hookcast "$ev" "$iv" $((2 * n)) "${bc_ports[0]}" "${bc_ports[1]}" "${bc_ports[2]}"
        else
            bc_row "cross-$kind" hookcast $((2 * n)) "p50_ms=n/a" "error=start"
        fi
        bc_stop_all
    done
    # (b) 3 Nchan instances on the same Redis.
    if ((have_nchan)); then
        for kind in paced burst; do
            ((have_nchan)) || break
            ev=$paced iv=$interval
            [[ $kind == burst ]] && ev=$burst iv=0
            if bc_start_nchan_cluster 3; then
                bc_hold "${bc_ports[0]}" "$n"
                bc_fanout "cross-$kind" nchan "$ev" "$iv" $((2 * n)) "${bc_ports[0]}" "${bc_ports[1]}" "${bc_ports[2]}"
            else
                nchan_na="Nchan in Redis mode did not start: $(cat "$tmp"/nginx*/start.err "$tmp"/nginx*/error.log 2>/dev/null | tail -3 | tr '\t\n' '  ')"
                printf '# na\tnchan\t%s\n' "$nchan_na" >>"$tsv"
                have_nchan=0
            fi
            bc_stop_all
        done
    fi
    # (c) one node with and without cluster: publish throughput, paced fan-out.
    for c in 0 1; do
        server=single-plain
        ((c)) && server=single-cluster
        bc_nodes=() bc_ports=()
        ((c)) && bc_flush
        p=$(bc_free_port)
        if bc_start_node n1 "$p" "$c" 0; then
            sub_path='/events?topics=bench' pub_path=/publish/bench
            bc_publish "$server" "$p"
        fi
        bc_stop_all
        bc_nodes=() bc_ports=()
        ((c)) && bc_flush
        p=$(bc_free_port)
        if bc_start_node n1 "$p" "$c" 0; then
            bc_fanout single-paced "$server" "$paced" "$interval" "$n" "$p" "$p"
        fi
        bc_stop_all
    done
    # (e) reuse_port: 1 vs 2 nodes (both in the cluster) on one port, burst.
    for k in 1 2; do
        bc_nodes=() bc_ports=()
        bc_flush
        p=$(bc_free_port)
        ok=1
        for ((i = 1; i <= k; i++)); do bc_start_node "n$i" "$p" 1 1 || ok=0; done
        sub_path='/events?topics=bench' pub_path=/publish/bench
        ((ok)) && bc_fanout "reuse-burst-$k" hookcast "$burst" 0 "$n" "$p" "$p"
        bc_stop_all
    done
done
# (d) idle memory, with and without cluster: memory is steady run to run, so once each.
for c in 0 1; do
    server=single-plain
    ((c)) && server=single-cluster
    bc_nodes=() bc_ports=()
    ((c)) && bc_flush
    p=$(bc_free_port)
    sub_path='/events?topics=bench'
    bc_start_node n1 "$p" "$c" 0 && bc_idle "$server" "$p" "${bc_nodes[0]}"
    bc_stop_all
done
printf '# finished\t%s (%d s; load average at the end %s)\n' "$(date -u +%Y-%m-%dT%H:%MZ)" \
    $(($(date +%s) - started_s)) "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$tsv"

# ---------------------------------------------------------------------------------------------
# The table: medians and ranges over the runs.
python3 - "$tsv" "$md" <<'PY'
import statistics, sys
from collections import defaultdict

tsv, md = sys.argv[1:3]
meta = defaultdict(list)
runs = defaultdict(list)
for line in open(tsv):
    parts = line.rstrip("\n").split("\t")
    if not parts[0]:
        continue
    if parts[0].startswith("# "):
        meta[parts[0][2:]].append(parts[1:])
        continue
    fig, server, n, *kv = parts
    runs[(fig, server)].append(dict(x.split("=", 1) for x in kv if "=" in x))


def vals(key, field):
    out = []
    for r in runs.get(key, []):
        try:
            out.append(float(r.get(field, "n/a")))
        except ValueError:
            pass
    return out


def fmt(v, digits):
    return f"{v:,.{digits}f}"


def cell(key, field, digits=1, unit=""):
    v = vals(key, field)
    if not v:
        return "n/a"
    m = statistics.median(v)
    s = f"**{fmt(m, digits)}**{unit}"
    if len(v) > 1:
        s += f" ({fmt(min(v), digits)}–{fmt(max(v), digits)})"
    return s


def total(key, field):
    v = vals(key, field)
    return "n/a" if not v else f"{int(sum(v))} in {len(v)} run(s)"


def n_of(key):
    for line in open(tsv):
        p = line.split("\t")
        if len(p) > 2 and (p[0], p[1]) == key:
            return p[2]
    return "?"


m = lambda k: meta.get(k, [[""]])
sizes = dict(x.split("=", 1) for x in m("sizes")[0][0].split())
nsub, reps = sizes.get("n", "?"), sizes.get("reps", "?")
out = []
w = out.append
w(f"# hookcast cluster benchmark — {m('started')[0][0]}")
w("")
w(f"Machine: {m('machine')[0][0]}. Everything on loopback; the load tool, Redis and the servers share")
w("the cores, and others may use them too (medians of the runs, range in brackets; each run's")
w("1-minute load average at its start is `load1` in the .tsv).")
w("")
w("Versions: " + "; ".join(f"{v[0]}: {v[1]}" for v in meta.get("version", [])) + ".")
w("")
w(f"Command: `{m('command')[0][0]}` ({reps} run(s) of each timed figure; every server started fresh and")
w("Redis flushed before each run)." + (f" Finished {m('finished')[0][0]}." if meta.get("finished") else ""))
w("")
for na in meta.get("na", []):
    w(f"**{na[0]}: n/a** — {na[1]}")
    w("")
paced, iv, burst = sizes.get("paced"), sizes.get("interval_ms"), sizes.get("burst")
w(f"### Three nodes on one Redis, {nsub} SSE subscribers on each, one publisher on node 1")
w("")
w(f"Paced: {paced} events of 200 bytes, {iv} ms apart; burst: {burst} events back to back. Latency,")
w("losses and rate are measured at the subscribers of nodes 2 and 3 (the cross-node path: node 1 →")
w("Redis → nodes 2, 3); node 1's subscribers are held open and read but not measured. CPU: all")
w("server processes and Redis, per delivery measured. The pacing keeps the paced rows below the")
w("box's delivery capacity (the burst rows), so they show latency rather than queueing.")
w("")
w("| server | measured subscribers | paced p50 | paced p99 | paced max | paced lost | burst deliveries/s | burst p99 | burst lost | CPU µs/delivery (paced) |")
w("|---|---|---|---|---|---|---|---|---|---|")
for server, label in (("hookcast", "hookcast, 3 nodes"), ("nchan", "Nchan (Redis mode), 3 nginx")):
    kp, kb = ("cross-paced", server), ("cross-burst", server)
    w(f"| {label} | {n_of(kp)} | {cell(kp, 'p50_ms', 2, ' ms')} | {cell(kp, 'p99_ms', 2, ' ms')} | "
      f"{cell(kp, 'max_ms', 1, ' ms')} | {total(kp, 'lost')} | {cell(kb, 'deliveries_per_s', 0)} | "
      f"{cell(kb, 'p99_ms', 1, ' ms')} | {total(kb, 'lost')} | {cell(kp, 'cpu_us_per_delivery', 2)} |")
holes = vals(("cross-paced", "hookcast"), "holes") + vals(("cross-burst", "hookcast"), "holes")
if holes:
    w("")
    w(f"hookcast's `hookcast_cluster_holes_total` summed over the nodes after each run: {int(sum(holes))}.")
w("")
w("### One node with and without `cluster` (the price of going through Redis)")
w("")
w(f"Publish: `hookcast-load publish --conns {sizes.get('publish', '?').split('x')[0]} --seconds "
  f"{sizes.get('publish', 'x?s').split('x')[1].rstrip('s')}` (200-byte bodies; no state_dir, so without")
w("`cluster` an acknowledgement is in memory, with it once Redis has the entry). Fan-out: "
  f"{paced} events {iv} ms apart to {nsub} local subscribers.")
w("")
w("| node | publishes acknowledged/s | publish p50 | publish p99 | fan-out p50 | fan-out p99 | fan-out max | lost |")
w("|---|---|---|---|---|---|---|---|")
for server, label in (("single-plain", "without cluster"), ("single-cluster", "with cluster (Redis)")):
    kp, kf = ("publish", server), ("single-paced", server)
    w(f"| {label} | {cell(kp, 'per_sec', 0)} | {cell(kp, 'p50_ms', 2, ' ms')} | {cell(kp, 'p99_ms', 2, ' ms')} | "
      f"{cell(kf, 'p50_ms', 2, ' ms')} | {cell(kf, 'p99_ms', 2, ' ms')} | {cell(kf, 'max_ms', 1, ' ms')} | {total(kf, 'lost')} |")
w("")
w(f"### Idle memory per SSE subscriber, {nsub} subscribers (target: unchanged, ≤ 1 KiB)")
w("")
w("RssAnon delta / established (`hookcast-load idle --pid`), one run each.")
w("")
w("| node | bytes per subscriber | established |")
w("|---|---|---|")
for server, label in (("single-plain", "without cluster"), ("single-cluster", "with cluster")):
    k = ("idle", server)
    w(f"| {label} | {cell(k, 'bytes_per_conn', 0, ' B')} | {cell(k, 'established', 0)} |")
w("")
w(f"### reuse_port: nodes sharing one port on one box, burst of {burst} events to {nsub} subscribers")
w("")
w("Subscribers and the publisher all connect to the one port; the kernel spreads the connections")
w("(sockets per node as seen at the start of each run). Both rows run with `cluster`.")
w("")
w("| nodes on the port | burst deliveries/s | p50 | p99 | lost | sockets per node |")
w("|---|---|---|---|---|---|")
for k in ("1", "2"):
    key = (f"reuse-burst-{k}", "hookcast")
    spread = ", ".join(r.get("sockets_per_node", "?") for r in runs.get(key, []))
    w(f"| {k} | {cell(key, 'deliveries_per_s', 0)} | {cell(key, 'p50_ms', 1, ' ms')} | {cell(key, 'p99_ms', 1, ' ms')} | "
      f"{total(key, 'lost')} | {spread or 'n/a'} |")
open(md, "w").write("\n".join(out) + "\n")
PY
cat "$md"
bc_log "raw runs: $tsv; table: $md"
