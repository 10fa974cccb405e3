#!/usr/bin/env bash
# hookcast's own figures: release binary size, idle RSS, start-to-ready time, user-space
# memory per idle subscriber (SSE and WebSocket, 1 000 and 10 000 connections), and publish
# throughput under each journal.fsync policy (always, batch, never, and no journal), measured
# with the repo's load tool (hookcast-load) on loopback. Writes a Markdown table to
# bench/results/hookcast-<date>.md and prints it.
#
# usage: scripts/bench.sh [--quick] [--publish-only]
#   --quick          1 000 connections only; 3 s per publish run instead of 5
#   --publish-only   only the publish-throughput table (bench/results/hookcast-publish-<date>.md)
# The journals live in a temporary directory under $BENCH_STATE_PARENT (default: $TMPDIR or
# /tmp): point it at the disk a real state_dir would be on, since fsync costs what that disk says.
#
# Then, side by side (the sbs_* section below): hookcast against Nchan, Pushpin, adnanh/webhook
# and websocketd, installed from Debian's packages when missing; writes
# bench/results/side-by-side-<date>.{md,svg,tsv}.
#   scripts/bench.sh --side-by-side [--quick]   only the side-by-side comparison
#   SBS_ONLY=intake,fanout   only those figures (alone, idle, allin, fanout, burst, intake,
#                            storm), into
#                            side-by-side-<date>-only-<figures>.*
#   SBS_REPS=N SBS_BIG_REPS=N   repetitions of the timed figures (3), and of the 10 000 fan-out (3)
#   SBS_STORM_N=N            subscribers in the reconnect storm (10 000; 1 000 with --quick);
#                            SBS_STORM_REPS (1), SBS_STORM_RATE (50 publishes/s), SBS_STORM_SECS
#                            (15 s of publishing), SBS_STORM_AFTER (restart 3 s into it),
#                            SBS_STORM_SPREAD_MS (reconnects spread over 1000 ms)
#
# scripts/bench.sh --soak: the churn soak (10 minutes by default; its knobs are SOAK_*, described
# where its section starts); writes bench/results/soak-<date>.{md,tsv}.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib/says.sh
source scripts/lib/says.sh

# Start-to-ready of BINARY over 11 starts (exec to its "listening" log line), in ms:
# "median min max". Both hookcast's own table and the side-by-side one use it.
ready_ms() { # binary
    python3 - "$1" <<'PY'
import statistics, subprocess, sys, time
times = []
for _ in range(11):
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.argv[1], "serve", "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if "listening on" in line:
            times.append((time.perf_counter() - t0) * 1000)
            break
    p.terminate()
    p.wait()
print(f"{statistics.median(times):.1f} {min(times):.1f} {max(times):.1f}")
PY
}

# =============================================================================================
# Side by side (issue 8): hookcast against the servers users would pick instead — Nchan on
# nginx, Pushpin (with a GRIP backend), adnanh/webhook and websocketd — installed from Debian's
# packages, each started on loopback with equivalent settings, driven by hookcast-load and wrk,
# stopped again. Raw runs go to bench/results/side-by-side-<date>.tsv; the Markdown table and
# the SVG chart are rendered from them (medians and ranges over the repeated runs).
# Everything in this section is named sbs_*; it needs target/release/{hookcast,hookcast-load}.
# =============================================================================================

sbs_log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# Installs what is missing, one package at a time, so one missing peer does not sink the rest;
# a peer that cannot be installed is recorded in sbs_na and shows as n/a in the table.
declare -A sbs_na=()
# Figures that could not be measured (the run then ends with status 1, after writing the table).
sbs_failures=()
sbs_install_peers() {
    local pkgs=(nginx libnginx-mod-nchan pushpin webhook websocketd wrk) missing=() p updated=0
    for p in "${pkgs[@]}"; do
        # shellcheck disable=SC2016 # ${Status} is dpkg-query's field, not a shell expansion
        says 'install ok installed' dpkg-query -W -f='${Status}' "$p" || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
        for p in "${missing[@]}"; do sbs_na[$p]="not installed (needs root and apt-get)"; done
        return 0
    fi
    # Keep postinst scripts from starting system-wide nginx/pushpin on ports 80 and 7999.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    for p in "${missing[@]}"; do
        if ! says 'Candidate: [0-9]' apt-cache policy "$p" && ((updated == 0)); then
            sbs_log "apt-get update (for $p)"
            apt-get update -qq >/dev/null 2>&1 || sbs_log "apt-get update failed"
            updated=1
        fi
        if ! says 'Candidate: [0-9]' apt-cache policy "$p"; then
            sbs_na[$p]="no Debian package candidate (apt-cache policy $p)"
            sbs_log "PEER NOT AVAILABLE: $p has no install candidate; its figures will be n/a"
            continue
        fi
        sbs_log "installing $p"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1; then
            sbs_na[$p]="apt-get install $p failed"
            sbs_log "PEER NOT INSTALLED: apt-get install $p failed; its figures will be n/a"
        fi
    done
    ((made_policy)) && rm -f "$policy"
    return 0
}

sbs_have() { # peer name -> 0 if usable
    case $1 in
        nchan) [[ -z ${sbs_na[nginx]:-}${sbs_na[libnginx-mod-nchan]:-} ]] && command -v nginx >/dev/null ;;
        pushpin) [[ -z ${sbs_na[pushpin]:-} ]] && command -v pushpin >/dev/null ;;
        webhook) [[ -z ${sbs_na[webhook]:-} ]] && command -v webhook >/dev/null ;;
        websocketd) [[ -z ${sbs_na[websocketd]:-} ]] && command -v websocketd >/dev/null ;;
        wrk) [[ -z ${sbs_na[wrk]:-} ]] && command -v wrk >/dev/null ;;
        *) return 1 ;;
    esac
}

sbs_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

sbs_wait_port() { # port [seconds]
    local i
    for ((i = 0; i < ${2:-10} * 20; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    sbs_log "port $1 did not open"
    return 1
}

# User-space memory of a set of processes in kB: the sum of Pss_Anon + Pss_Shmem
# (/proc/PID/smaps_rollup), so memory a master shares with its workers (copy-on-write pages,
# Nchan's shared-memory zone) counts once in total rather than once per process.
sbs_mem_kb() {
    local p total=0 v
    for p in "$@"; do
        v=$(awk '/^Pss_Anon:|^Pss_Shmem:/ {s += $2} END {print s + 0}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# The server under test, set by sbs_start_*: its port, the processes whose memory counts, the
# processes to stop, and how to publish to it.
sbs_port='' sbs_pids=() sbs_kill=() sbs_sub_path='' sbs_ws_path='' sbs_pub=()

sbs_pids_refresh() { # websocketd forks a child per connection, nginx its workers: they count
    local root=${sbs_kill[0]}
    if [[ $sbs_server == websocketd || $sbs_server == nchan ]]; then
        mapfile -t sbs_pids < <(echo "$root"; pgrep -P "$root" || true)
    fi
}

# With sbs_state_dir set, hookcast keeps a journal there; with sbs_same_port set, it listens on
# the port of the previous start (a restart, for the storm).
sbs_start_hookcast() { # [keepalive_ms] [hooks file]
    sbs_server=hookcast
    [[ -n ${sbs_same_port:-} ]] || sbs_port=$(sbs_free_port)
    local cfg="$sbs_tmp/hookcast.json" hooks=() state=''
    [[ -n ${2:-} ]] && hooks=(--hooks "$2")
    [[ -n ${sbs_state_dir:-} ]] && state="\"state_dir\": \"$sbs_state_dir\","
    cat >"$cfg" <<EOF
{
  "listen": "127.0.0.1:$sbs_port", $state
  "log_level": "warn",
  "limits": { "max_connections": 30000, "max_connections_per_ip": 30000 },
  "sse": { "keepalive_ms": ${1:-15000} },
  "public": [ { "topics": ["bench"], "scopes": ["subscribe", "publish"], "from": ["127.0.0.0/8"] } ]
}
EOF
    "$sbs_bin" serve --config "$cfg" "${hooks[@]}" 2>>"$sbs_tmp/hookcast.log" &
    sbs_kill=($!) sbs_pids=($!)
    sbs_sub_path='/events?topics=bench' sbs_ws_path='/ws?topics=bench'
    sbs_pub=(--publish-path /publish/bench)
    sbs_wait_port "$sbs_port"
}

# nginx with the nchan module: one worker (hookcast is one event loop on one core), access log
# off, pings at hookcast's default intervals (SSE comment every 15 s, WebSocket ping every 30 s).
sbs_start_nchan() { # sbs_same_port: as for hookcast
    sbs_server=nchan
    [[ -n ${sbs_same_port:-} ]] || sbs_port=$(sbs_free_port)
    local d="$sbs_tmp/nginx"
    mkdir -p "$d"
    cat >"$d/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
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
  server {
    listen 127.0.0.1:$sbs_port backlog=4096;
    location = /sub {
      nchan_subscriber;
      nchan_channel_id \$arg_id;
      nchan_eventsource_ping_interval 15;
      nchan_websocket_ping_interval 30;
    }
    location = /pub { nchan_publisher; nchan_channel_id \$arg_id; }
  }
}
EOF
    rm -f "$d/nginx.pid"
    nginx -q -p "$d" -c "$d/nginx.conf" -g 'daemon on; master_process on;' || return 1
    local i master=''
    for ((i = 0; i < 100; i++)); do
        [[ -s $d/nginx.pid ]] && master=$(cat "$d/nginx.pid") && break
        sleep 0.05
    done
    [[ -n $master ]] || return 1
    sbs_wait_port "$sbs_port" || return 1
    # The port answers as soon as the master listens; its worker may not be forked yet, and a
    # list without it would measure the master alone.
    for ((i = 0; i < 100; i++)); do
        pgrep -P "$master" >/dev/null && break
        sleep 0.05
    done
    mapfile -t sbs_pids < <(echo "$master"; pgrep -P "$master")
    sbs_kill=("$master")
    sbs_sub_path='/sub?id=bench' sbs_ws_path='/sub?id=bench'
    sbs_pub=(--publish-path '/pub?id=bench')
}

# Pushpin from Debian's pushpin.conf with only paths and ports changed (plus zurl, which the
# packaged config leaves out although the proxy needs it to reach the backend), log level 1,
# and — unless SBS_PUSHPIN_DEFAULT_RATE is set — the handler's rate limit (message_rate 2500/s,
# message_hwm 25000) lifted so it is not the thing measured. The GRIP backend is a few lines of
# Python: every GET is held as an SSE stream on channel "bench" with a 15 s keep-alive comment.
sbs_start_pushpin() {
    sbs_server=pushpin
    sbs_port=$(sbs_free_port)
    local d="$sbs_tmp/pushpin" backend pub
    backend=$(sbs_free_port)
    pub=$(sbs_free_port)
    mkdir -p "$d/run" "$d/log"
    cat >"$d/grip.py" <<'EOF'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Hold(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Grip-Hold", "stream")
        self.send_header("Grip-Channel", "bench")
        self.send_header("Grip-Keep-Alive", ":\\n\\n; format=cstring; timeout=15")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer.request_queue_size = 4096
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Hold).serve_forever()
EOF
    local rate=10000000
    [[ -n ${SBS_PUSHPIN_DEFAULT_RATE:-} ]] && rate=''
    sed -e "s|^include=.*|include=/usr/lib/pushpin/internal.conf|" \
        -e "s|^rundir=.*|rundir=$d/run|" -e "s|^logdir=.*|logdir=$d/log|" -e 's|^log_level=.*|log_level=1|' \
        -e 's|^services=.*|services=condure,zurl,pushpin-proxy,pushpin-handler|' \
        -e "s|^http_port=.*|http_port=127.0.0.1:$sbs_port|" -e "s|^routesfile=.*|routesfile=$d/routes|" \
        -e "s|^push_in_spec=.*|push_in_spec=ipc://$d/run/push-in|" \
        -e "s|^push_in_sub_specs=.*|push_in_sub_specs=ipc://$d/run/push-in-sub|" \
        -e "s|^command_spec=.*|command_spec=ipc://$d/run/command|" \
        -e "s|^push_in_http_port=.*|push_in_http_port=$pub|" \
        ${rate:+-e "s|^message_rate=.*|message_rate=$rate|" -e "s|^message_hwm=.*|message_hwm=$rate|"} \
        -e '/^\[proxy\]/a zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in\nzurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream\nzurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out' \
        /etc/pushpin/pushpin.conf >"$d/pushpin.conf"
    echo "* 127.0.0.1:$backend" >"$d/routes"
    python3 "$d/grip.py" "$backend" 2>>"$d/grip.log" &
    sbs_backend_pid=$!
    pushpin --config "$d/pushpin.conf" >>"$d/pushpin.out" 2>&1 &
    local runner=$!
    sbs_kill=("$runner" "$sbs_backend_pid")
    sbs_wait_port "$backend" && sbs_wait_port "$sbs_port" && sbs_wait_port "$pub" || return 1
    local i code=''
    for ((i = 0; i < 50; i++)); do # the whole chain: condure -> proxy -> zurl -> backend
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 0.5 "http://127.0.0.1:$sbs_port/sub" || true)
        [[ $code == 200 ]] && break
        sleep 0.1
    done
    [[ $code == 200 ]] || { sbs_log "pushpin: the GRIP route does not answer 200 ($code)"; return 1; }
    mapfile -t sbs_pids < <(echo "$runner"; pgrep -P "$runner")
    sbs_sub_path='/sub' sbs_ws_path=''
    sbs_pub=(--publish-path /publish/ --publish-target "127.0.0.1:$pub" --pushpin-channel bench)
}

sbs_start_websocketd() {
    sbs_server=websocketd
    sbs_port=$(sbs_free_port)
    websocketd --address=127.0.0.1 --port="$sbs_port" --loglevel=error /bin/cat 2>>"$sbs_tmp/websocketd.log" &
    sbs_kill=($!) sbs_pids=($!)
    sbs_sub_path='' sbs_ws_path='/'
    sbs_pub=()
    sbs_wait_port "$sbs_port"
}

sbs_start_webhook() { # hooks file
    sbs_server=webhook
    sbs_port=$(sbs_free_port)
    webhook -hooks "$1" -ip 127.0.0.1 -port "$sbs_port" ${SBS_WEBHOOK_VERBOSE:+-verbose} \
        >>"$sbs_tmp/webhook.log" 2>&1 &
    sbs_kill=($!) sbs_pids=($!)
    sbs_wait_port "$sbs_port"
}

# The floor (src/bin/hookcast-floor.rs) as the trivial listener of the all-in figure: one mio
# loop that accepts, registers each socket in its epoll, answers a fixed SSE head and holds. Its
# end of a connection is the same kernel objects as the client's end (a TCP socket, its file,
# inode, dentry and epoll entries), so half of what N idle connections to it cost the kernel is
# the client's share, which is taken off every server's total (sbs_render).
sbs_start_floor() {
    sbs_server=floor
    sbs_port=$(sbs_free_port)
    "$root/target/release/hookcast-floor" --listen "127.0.0.1:$sbs_port" 2>>"$sbs_tmp/floor.log" &
    sbs_kill=($!) sbs_pids=($!)
    sbs_sub_path='/events' sbs_ws_path=''
    # It takes any POST with a body as an event to fan out (the fan-out figure's floor).
    sbs_pub=(--publish-path /publish/bench)
    sbs_wait_port "$sbs_port"
}

# Kernel memory of the machine at one moment: /proc/net/sockstat (TCP sockets and the pages
# charged to their buffers) and /proc/slabinfo (objects and their sizes, root only). sockstat6
# is left out: every connection here is IPv4 loopback.
sbs_kernel_snap() { # file
    {
        cat /proc/net/sockstat
        [[ -r /proc/slabinfo ]] && awk 'NR > 2 {print "slab", $1, $2, $4}' /proc/slabinfo 2>/dev/null
    } >"$1" || true
}

# What N connections cost the kernel, both ends together, per connection: the growth of the
# slab caches that hold something per TCP socket (SOCKET_CACHES below: the socket, its inode,
# file and dentry, epoll entries, conntrack entry, queued buffers) at active_objs x objsize, plus
# sockstat's TCP `mem` pages. Other caches that grew by N/4 objects or more are listed
# (others=) but not counted: on this shared machine they are other work (proc inodes of
# someone's /proc walk, TIME_WAIT of earlier runs). Prints key=value words for sbs_row;
# kernel_bytes=n/a with kernel_why when it cannot be measured.
sbs_kernel_delta() { # before after n
    python3 - "$@" <<'PY'
import os, sys
before, after, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def parse(path):
    tcp, slab = {}, {}
    for line in open(path):
        f = line.split()
        if f and f[0] == "TCP:":
            tcp = {f[i]: int(f[i + 1]) for i in range(1, len(f) - 1, 2)}
        elif f and f[0] == "slab" and len(f) == 4:
            slab[f[1]] = (int(f[2]), int(f[3]))
    return tcp, slab
(t0, s0), (t1, s1) = parse(before), parse(after)
if not t0 or not t1 or "mem" not in t1:
    print("kernel_bytes=n/a kernel_why=no_TCP_line_in_/proc/net/sockstat"); sys.exit()
if not s0 or not s1:
    print("kernel_bytes=n/a kernel_why=/proc/slabinfo_not_readable_(needs_root)"); sys.exit()
if n <= 0:
    print("kernel_bytes=n/a kernel_why=no_connection"); sys.exit()
import re
SOCKET_CACHES = re.compile(r"^(TCP|request_sock_TCP|tcp_bind_bucket|sock_inode_cache|filp|dentry|eventpoll_epi|"
                           r"eventpoll_pwq|ep_head|nf_conntrack|skbuff_\w+|lsm_inode_cache|lsm_file_cache)$")
page = os.sysconf("SC_PAGE_SIZE")
counted, others = [], []
for name, (objs, size) in s1.items():
    d = objs - s0.get(name, (0, size))[0]
    if SOCKET_CACHES.match(name):
        if d != 0:
            counted.append((name, d, size))
    elif d >= n / 4:
        others.append((name, d, size))
slab = sum(d * size for _, d, size in counted)
mem = (t1["mem"] - t0["mem"]) * page
show = lambda gs: "+".join(f"{name}:{d / n:.2f}x{size}" for name, d, size in sorted(gs, key=lambda g: -abs(g[1]) * g[2])) or "-"
print(f"kernel_bytes={(slab + mem) // n} slab_bytes={slab // n} sock_mem_bytes={mem // n} "
      f"tcp_inuse_delta={t1['inuse'] - t0['inuse']} tcp_mem_pages_delta={t1['mem'] - t0['mem']} "
      f"caches={show(counted)} others={show(others)}")
PY
}

sbs_stop() { # TERM, then KILL after 5 s; waits for every process of the server to go
    local p i alive
    for p in "${sbs_kill[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for ((i = 0; i < 100; i++)); do
        alive=0
        for p in "${sbs_kill[@]}" "${sbs_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.05
    done
    for p in "${sbs_kill[@]}" "${sbs_pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for p in "${sbs_kill[@]}"; do wait "$p" 2>/dev/null || true; done
    sbs_kill=() sbs_pids=()
}

sbs_row() { # figure server transport n key=value...  -> one raw TSV line
    local IFS=$'\t'
    echo "$*" >>"$sbs_tsv"
}

sbs_field() { # name line -> value of name=value
    grep -o " $1=[^ ]*" <<<" $2" | head -1 | cut -d= -f2
}

# (1) memory per idle subscriber: RSS delta over all processes of the server, measured while
# hookcast-load holds N connections open (2 s after the last one was established).
sbs_idle() { # server transport n
    local server=$1 transport=$2 n=$3 path wsflag=() batch=500 out="$sbs_tmp/idle.out"
    if [[ $transport == ws ]]; then path=$sbs_ws_path wsflag=(--ws); else path=$sbs_sub_path; fi
    [[ $server == pushpin ]] && batch=50 # its 502s above ~100 proxied requests in flight
    sleep 0.5
    sbs_pids_refresh
    local before backend_before=0 established line after backend_after=0 solo_before solo_after kernel
    sbs_kernel_snap "$sbs_tmp/kernel.before"
    before=$(sbs_mem_kb "${sbs_pids[@]}")
    solo_before=$(sbs_mem_kb "${sbs_pids[0]}")
    [[ $server == pushpin ]] && backend_before=$(sbs_mem_kb "$sbs_backend_pid")
    : >"$out"
    timeout 300 "$sbs_load" idle --target "127.0.0.1:$sbs_port" --path "$path" "${wsflag[@]}" --conns "$n" \
        --hold 6 --batch "$batch" >"$out" 2>>"$sbs_tmp/load.err" &
    local load=$! i
    for ((i = 0; i < 3000; i++)); do
        grep -q '^idle ' "$out" && break
        kill -0 "$load" 2>/dev/null || break
        sleep 0.1
    done
    line=$(grep '^idle ' "$out" || true)
    sleep 2 # let the server settle, as `hookcast-load idle --pid` does
    sbs_pids_refresh
    sbs_kernel_snap "$sbs_tmp/kernel.after"
    after=$(sbs_mem_kb "${sbs_pids[@]}")
    solo_after=$(sbs_mem_kb "${sbs_pids[0]}")
    [[ $server == pushpin ]] && backend_after=$(sbs_mem_kb "$sbs_backend_pid")
    local procs=${#sbs_pids[@]}
    wait "$load" || true
    established=$(sbs_field established "$line")
    if [[ -z $established || $established == 0 ]]; then
        sbs_log "idle $server $transport $n: no connection established"
        sbs_row idle "$server" "$transport" "$n" "bytes=n/a" "established=0"
        return
    fi
    local per=$(((after - before) * 1024 / established))
    kernel=$(sbs_kernel_delta "$sbs_tmp/kernel.before" "$sbs_tmp/kernel.after" "$established")
    if [[ $kernel == *kernel_bytes=n/a* ]]; then
        sbs_log "KERNEL SHARE NOT MEASURED (idle $server $transport $n): $kernel"
        sbs_failures+=("kernel share of idle $server $transport $n: $kernel")
    fi
    # shellcheck disable=SC2086 # $kernel is key=value words
    sbs_row idle "$server" "$transport" "$n" "bytes=$per" "established=$established" "procs=$procs" \
        "before_kb=$before" "after_kb=$after" "first_proc_bytes=$(((solo_after - solo_before) * 1024 / established))" \
        "backend_bytes=$(((backend_after - backend_before) * 1024 / established))" $kernel
    sbs_log "idle $server $transport $n: $per B per subscriber ($established established, $procs processes); kernel, both ends: $kernel"
}

sbs_cpu_ticks() { # pids... -> utime + stime summed, in clock ticks
    local p total=0 t
    for p in "$@"; do
        t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

# (2) and (3): fan-out and burst through hookcast-load fanout. Besides latency and loss, the
# CPU time all processes of the server spent from the end of the connect phase to the end of the
# run is divided by the deliveries: a figure the other work on a shared machine disturbs less.
sbs_fanout() { # figure server transport n events interval_ms
    local figure=$1 server=$2 transport=$3 n=$4 events=$5 interval=$6 path wsflag=() batch=500 line
    local out="$sbs_tmp/fanout.out" i c0='' c1
    if [[ $transport == ws ]]; then path=$sbs_ws_path wsflag=(--ws); else path=$sbs_sub_path; fi
    [[ $server == pushpin* ]] && batch=50
    : >"$out"
    timeout 400 "$sbs_load" fanout --target "127.0.0.1:$sbs_port" --path "$path" "${wsflag[@]}" \
        --conns "$n" --events "$events" --interval-ms "$interval" "${sbs_pub[@]}" --batch "$batch" --wait 20 \
        >"$out" 2>>"$sbs_tmp/load.err" &
    local load=$!
    # hookcast-load prints "# N of N ... established" and waits 500 ms before the first publish.
    for ((i = 0; i < 6000; i++)); do
        grep -q 'subscribers established' "$out" && break
        kill -0 "$load" 2>/dev/null || break
        sleep 0.05
    done
    c0=$(sbs_cpu_ticks "${sbs_pids[@]}")
    wait "$load" || true
    c1=$(sbs_cpu_ticks "${sbs_pids[@]}")
    line=$(grep '^fanout ' "$out" || true)
    if [[ -z $line ]]; then
        sbs_log "$figure $server $transport $n: no result"
        sbs_row "$figure" "$server" "$transport" "$n" "p50=n/a"
        return
    fi
    local f kv=() received cpu_us
    for f in p50_ms p99_ms max_ms lost established received published deliveries_per_s window_ms; do
        kv+=("$f=$(sbs_field "$f" "$line")")
    done
    received=$(sbs_field received "$line")
    cpu_us=$(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v r="${received:-0}" \
        'BEGIN { if (r > 0) printf "%.2f", d * 1000000 / hz / r; else print "n/a" }')
    kv+=("cpu_us_per_delivery=$cpu_us")
    sbs_row "$figure" "$server" "$transport" "$n" "events=$events" "interval_ms=$interval" "${kv[@]}"
    sbs_log "$figure $server $transport $n: ${kv[*]}"
}

# (4) webhook intake with wrk: keep-alive POSTs of the signed GitHub push body.
sbs_make_hooks() {
    python3 - "$root/tests/fixtures/providers/github-push.json" "$sbs_tmp" <<'EOF'
import hashlib, hmac, json, sys
fixture, out = sys.argv[1], sys.argv[2]
body = json.load(open(fixture))["body"]
# The fixture is a real push to master; the rule asks for main.
body = body.replace('"ref":"refs/heads/master"', '"ref":"refs/heads/main"', 1).encode()
open(f"{out}/push.json", "wb").write(body)
secret = "hookcast-bench-secret"
sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
rule = {"and": [
    {"match": {"type": "payload-hmac-sha256", "secret": secret,
               "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}},
    {"match": {"type": "value", "value": "refs/heads/main",
               "parameter": {"source": "payload", "name": "ref"}}},
]}
hooks = [
    {"id": "cmd", "execute-command": "/bin/true", "response-message": "ok\n", "trigger-rule": rule},
    {"id": "nocmd", "response-message": "ok\n", "trigger-rule": rule},
]
json.dump(hooks, open(f"{out}/hooks.json", "w"), indent=2)
# No X-GitHub-Delivery: a repeated delivery id would be answered as a duplicate by hookcast.
open(f"{out}/push.lua", "w").write(f'''wrk.method = "POST"
local f = assert(io.open("{out}/push.json", "rb"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "GitHub-Hookshot/bench"
wrk.headers["X-GitHub-Event"] = "push"
wrk.headers["X-Hub-Signature-256"] = "{sig}"
''')
EOF
}

sbs_to_ms() { # wrk latency (850.00us, 3.21ms, 1.02s) -> ms
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; else if (v ~ /m$/) n *= 60000; printf "%.2f", n }'
}

sbs_intake() { # server hook seconds
    local server=$1 hook=$2 secs=$3 out="$sbs_tmp/wrk.out" sampler c0 c1
    # Largest RSS and open files of the server while the flood lasts.
    echo "0 0" >"$sbs_tmp/sampler"
    c0=$(sbs_cpu_ticks "${sbs_pids[@]}")
    (
        local max_rss=0 max_fd=0 r f p=${sbs_pids[0]}
        while kill -0 "$p" 2>/dev/null; do
            r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
            f=$(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
            ((${r:-0} > max_rss)) && max_rss=$r
            ((f > max_fd)) && max_fd=$f
            echo "$max_rss $max_fd" >"$sbs_tmp/sampler"
            sleep 0.25
        done
    ) &
    sampler=$!
    # wrk on the last core: left to the scheduler it sometimes shares the server's core, which
    # moved hookcast's figure by 40 % between runs. The servers themselves are not pinned.
    local pin=()
    command -v taskset >/dev/null && (($(nproc) > 1)) && pin=(taskset -c "$(($(nproc) - 1))")
    timeout $((secs + 30)) "${pin[@]}" wrk -t1 -c50 -d"${secs}s" --latency -s "$sbs_tmp/push.lua" \
        "http://127.0.0.1:$sbs_port/hooks/$hook" >"$out" 2>&1 || true
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    c1=$(sbs_cpu_ticks "${sbs_pids[@]}")
    local rps p50 p99 non2xx errors rss fds total cpu_us
    rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
    p50=$(sbs_to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    p99=$(sbs_to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    errors=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")
    read -r rss fds <"$sbs_tmp/sampler" || true
    total=$(awk '/requests in/ {print $1}' "$out")
    cpu_us=$(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v r="${total:-0}" \
        'BEGIN { if (r > 0) printf "%.1f", d * 1000000 / hz / r; else print "n/a" }')
    sbs_row intake "$server" "$hook" 50 "rps=${rps:-n/a}" "p50=$p50" "p99=$p99" "non2xx=${non2xx:-0}" \
        "socket_errors=${errors:-0}" "max_rss_kb=${rss:-0}" "max_fds=${fds:-0}" "cpu_us_per_request=$cpu_us"
    sbs_log "intake $server $hook: ${rps:-n/a} req/s, p99 $p99 ms, non-2xx ${non2xx:-0}, RSS ${rss:-?} kB, fds ${fds:-?}"
}

# (6) reconnect storm (issue 21): SBS_STORM_N SSE subscribers on one topic and a publisher at
# SBS_STORM_RATE events/s (each event retried until acknowledged); SBS_STORM_AFTER seconds into
# the publishing the server is restarted (SIGTERM, wait until every process is gone, start
# again on the same port: hookcast with its journal in a fresh state_dir, nginx with the same
# configuration), and every subscriber comes back within SBS_STORM_SPREAD_MS with
# Last-Event-ID (hookcast-load storm; its help defines lost, resume_ms and the rest). Peak
# RSS = VmHWM summed over the restarted server's processes, read at the end of the run: the
# most they held at once since they started, the storm included.
sbs_storm() { # server
    local server=$1 n=${SBS_STORM_N:-$sbs_storm_n} rate=${SBS_STORM_RATE:-50} secs=${SBS_STORM_SECS:-15}
    local out="$sbs_tmp/storm.out" i line status=0 peak=0 p v
    sbs_state_dir=''
    [[ $server == hookcast ]] && sbs_state_dir="$sbs_tmp/storm-state" && rm -rf "$sbs_state_dir"
    if ! "sbs_start_$server"; then
        sbs_storm_failed "$server" "$n" "the server did not start"
        return
    fi
    : >"$out"
    timeout $((secs + 300)) "$sbs_load" storm --target "127.0.0.1:$sbs_port" --path "$sbs_sub_path" --conns "$n" \
        "${sbs_pub[@]}" --rate "$rate" --seconds "$secs" --spread-ms "${SBS_STORM_SPREAD_MS:-1000}" --settle 5 \
        --batch 500 >"$out" 2>>"$sbs_tmp/load.err" &
    local load=$!
    for ((i = 0; i < 6000; i++)); do
        grep -q '^# storm: publishing' "$out" && break
        kill -0 "$load" 2>/dev/null || break
        sleep 0.05
    done
    if ! grep -q '^# storm: publishing' "$out"; then
        wait "$load" || true
        sbs_stop
        sbs_storm_failed "$server" "$n" "hookcast-load never started publishing (see $sbs_tmp/load.err)"
        return
    fi
    sleep "${SBS_STORM_AFTER:-3}"
    sbs_log "storm $server $n: restarting the server"
    sbs_stop
    if ! sbs_same_port=1 "sbs_start_$server"; then
        kill "$load" 2>/dev/null || true
        wait "$load" || true
        sbs_storm_failed "$server" "$n" "the server did not start again on port $sbs_port"
        return
    fi
    wait "$load" || status=$?
    sbs_pids_refresh
    for p in "${sbs_pids[@]}"; do
        v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        peak=$((peak + ${v:-0}))
    done
    sbs_stop
    sbs_state_dir=''
    line=$(grep '^storm ' "$out" || true)
    if [[ -z $line ]] || ((peak == 0)); then
        sbs_storm_failed "$server" "$n" "no result (hookcast-load exit $status; see $sbs_tmp/load.err)"
        return
    fi
    local f kv=()
    for f in lost duplicates resets resume_ms reconnect_ms down_ms established disconnected unresumed published \
        publish_attempts unacked_delivered reconnects refused; do
        kv+=("$f=$(sbs_field "$f" "$line")")
    done
    sbs_row storm "$server" sse "$n" "rate=$rate" "peak_rss_kb=$peak" "${kv[@]}"
    sbs_log "storm $server $n: ${kv[*]} peak_rss_kb=$peak"
    if ((status != 0)); then
        sbs_failures+=("storm $server $n: hookcast-load exit $status ($(tail -1 "$sbs_tmp/load.err"))")
    fi
    if [[ $server == hookcast && $(sbs_field lost "$line") != 0 ]]; then
        sbs_failures+=("storm hookcast $n: $(sbs_field lost "$line") acknowledged deliveries lost")
    fi
}

sbs_storm_failed() { # server n why
    sbs_log "STORM NOT MEASURED: $1 $2: $3"
    sbs_row storm "$1" sse "$2" "lost=n/a"
    sbs_failures+=("storm $1 $2: $3")
}

# (5) hookcast alone.
sbs_hookcast_alone() {
    local size pid rss ready
    size=$(stat -c %s "$sbs_bin")
    sbs_row alone hookcast - - "binary_bytes=$size" "stripped=$(says 'not stripped' file -b "$sbs_bin" && echo no || echo yes)"
    ready=$(ready_ms "$sbs_bin")
    sbs_start_hookcast
    sleep 0.3
    pid=${sbs_pids[0]}
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    sbs_stop
    read -r r_med r_min r_max <<<"$ready"
    sbs_row alone hookcast - - "idle_rss_kb=$rss" "ready_ms=$r_med" "ready_min=$r_min" "ready_max=$r_max"
    sbs_log "hookcast alone: binary $size B, idle RSS $rss kB, ready $r_med ms"
    # CPU with 10 000 idle SSE subscribers and keep-alive comments every 5 s (a third of the
    # default 15 s, so two rounds fall in the window), over 10 s of /proc/PID/stat.
    local n=$sbs_big out="$sbs_tmp/cpu.out" i t0 t1 tick
    sbs_start_hookcast 5000
    pid=${sbs_pids[0]}
    "$sbs_load" idle --target "127.0.0.1:$sbs_port" --path "$sbs_sub_path" --conns "$n" --hold 14 \
        >"$out" 2>>"$sbs_tmp/load.err" &
    local load=$!
    for ((i = 0; i < 3000; i++)); do
        grep -q '^idle ' "$out" && break
        sleep 0.1
    done
    sleep 1
    tick=$(getconf CLK_TCK)
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    sleep 10
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    wait "$load" || true
    sbs_stop
    local cpu
    cpu=$(awk -v d=$((t1 - t0)) -v hz="$tick" 'BEGIN {printf "%.2f", d / hz / 10 * 100}')
    sbs_row alone hookcast sse "$n" "cpu_pct=$cpu" "established=$(sbs_field established "$(grep '^idle ' "$out")")"
    sbs_log "hookcast CPU with $n idle SSE subscribers (keep-alive every 5 s): $cpu %"
}

# Renders the raw runs (TSV) as the Markdown table and the SVG chart: medians and ranges over
# the repeated runs, ratios, the DESIGN.md targets, and hand-written SVG bars.
sbs_render() { # tsv md svg
    python3 - "$@" <<'PY'
import html, statistics, sys
from collections import defaultdict

tsv, md_path, svg_path = sys.argv[1:4]
meta = defaultdict(list)
runs = defaultdict(list)  # (figure, server, transport, n) -> [dict]
for line in open(tsv):
    line = line.rstrip("\n")
    if not line:
        continue
    parts = line.split("\t")
    if line.startswith("# "):
        meta[parts[0][2:]].append(parts[1:])
        continue
    fig, server, transport, n, *kv = parts
    runs[(fig, server, transport, n)].append(dict(x.split("=", 1) for x in kv if "=" in x))


def values(key, field):
    out = []
    for r in runs.get(key, []):
        try:
            out.append(float(r.get(field, "n/a")))
        except ValueError:
            pass
    return out


def med(key, field):
    v = values(key, field)
    return statistics.median(v) if v else None


def fmt_num(x, unit):
    if x is None:
        return "n/a"
    if unit == "B":
        return f"{x / 1024:.1f} KiB" if abs(x) >= 1024 else f"{x:.0f} B"
    if unit == "ms":
        return f"{x:.1f} ms" if x >= 10 else f"{x:.2f} ms"
    if unit == "/s":
        return f"{x:,.0f}/s"
    if unit == "%":
        return f"{x:.2f} %"
    if unit == "us":
        return f"{x:.1f} µs" if x >= 10 else f"{x:.2f} µs"
    if unit == "kB":
        return f"{x / 1024:.1f} MiB"
    return f"{x:,.0f}"


def cell(key, field, unit):
    v = values(key, field)
    if not v:
        return "n/a"
    m = statistics.median(v)
    s = fmt_num(m, unit)
    if len(v) > 1:
        s += f" ({fmt_num(min(v), unit)}–{fmt_num(max(v), unit)}, {len(v)} runs)"
    return s


def ratio(h, p, lower_is_better):
    if h is None or p is None:
        return "n/a"
    if lower_is_better:
        if h <= 0:
            return "∞" if p > 0 else "—"
        return f"{p / h:.1f}×"
    if p <= 0:
        return "∞"
    return f"{h / p:.1f}×"


names = {
    "hookcast": "hookcast", "nchan": "Nchan", "pushpin": "Pushpin", "websocketd": "websocketd",
    "webhook": "adnanh/webhook", "pushpin-default-rate": "Pushpin (Debian default rate limits)",
}
versions = dict(v[0].split("=", 1) for v in meta["version"] if v)
rows = []  # figure, n, transport, hookcast value, peer, peer value, ratio


def compare(fig, transport, n, field, unit, lower, peers, label):
    hk = (fig, "hookcast", transport, str(n))
    for p in peers:
        pk = (fig, p, transport, str(n))
        if pk not in runs and (hk not in runs or p != "nchan"):
            continue
        rows.append((label, cell(hk, field, unit), names[p], cell(pk, field, unit),
                     ratio(med(hk, field), med(pk, field), lower)))


for n in (1000, 10000):
    compare("idle", "sse", n, "bytes", "B", True, ["nchan", "pushpin"], f"memory per idle SSE subscriber, {n:,}")
    compare("idle", "ws", n, "bytes", "B", True, ["nchan", "websocketd"], f"memory per idle WS subscriber, {n:,}")


def kernel_server(server, t, n):
    """The server's end of an idle connection in kernel memory: the total of both ends less the
    client's end, which is half of what the same connections to the floor cost."""
    total = med(("idle", server, t, str(n)), "kernel_bytes")
    floor = med(("idle", "floor", "sse", str(n)), "kernel_bytes")
    return None if total is None or floor is None else total - floor / 2


def all_in(server, t, n):
    k, u = kernel_server(server, t, n), med(("idle", server, t, str(n)), "bytes")
    return None if k is None or u is None else k + u


for n in (1000, 10000):
    if ("idle", "floor", "sse", str(n)) not in runs:
        continue
    for t in ("sse", "ws"):
        for what, f in (("kernel memory, the server's end", kernel_server), ("all-in memory (user space + kernel)", all_in)):
            h, nc = f("hookcast", t, n), f("nchan", t, n)
            rows.append((f"{what} per idle {t.upper()} subscriber, {n:,}", fmt_num(h, "B"), "Nchan", fmt_num(nc, "B"),
                         ratio(h, nc, True)))
for n in (1000, 10000):
    for t in ("sse", "ws"):
        for field, what in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
            compare("fanout", t, n, field, "ms", True, ["nchan", "pushpin"] if t == "sse" else ["nchan"],
                    f"fan-out {t.upper()} {n:,} subscribers, {what} latency")
        compare("fanout", t, n, "lost", "", True, ["nchan", "pushpin"] if t == "sse" else ["nchan"],
                f"fan-out {t.upper()} {n:,} subscribers, lost deliveries")
        compare("fanout", t, n, "cpu_us_per_delivery", "us", True, ["nchan", "pushpin"] if t == "sse" else ["nchan"],
                f"fan-out {t.upper()} {n:,} subscribers, server CPU per delivery")
for field, what, unit, lower in (("deliveries_per_s", "deliveries/s", "/s", False), ("p99_ms", "p99 latency", "ms", True),
                                  ("lost", "lost deliveries", "", True),
                                  ("cpu_us_per_delivery", "server CPU per delivery", "us", True)):
    compare("burst", "sse", 1000, field, unit, lower, ["nchan", "pushpin"], f"burst 1,000 events → 1,000 SSE, {what}")
for hook, what in (("nocmd", "no command"), ("cmd", "command /bin/true")):
    compare("intake", hook, 50, "rps", "/s", False, ["webhook"], f"signed webhook intake ({what}), requests/s")
    compare("intake", hook, 50, "p99", "ms", True, ["webhook"], f"signed webhook intake ({what}), p99")
    compare("intake", hook, 50, "cpu_us_per_request", "us", True, ["webhook"],
            f"signed webhook intake ({what}), server CPU per request")
    compare("intake", hook, 50, "max_rss_kb", "kB", True, ["webhook"], f"signed webhook intake ({what}), peak RSS")
storm_sizes = sorted({int(k[3]) for k in runs if k[0] == "storm"})
for n in storm_sizes:
    for field, what, unit in (("lost", "acknowledged events lost", ""), ("resume_ms", "time until all resumed", "ms"),
                              ("reconnect_ms", "time until all reconnected", "ms"),
                              ("peak_rss_kb", "peak RSS of the restarted server", "kB"),
                              ("resets", "reset events", ""), ("duplicates", "duplicate deliveries", "")):
        compare("storm", "sse", n, field, unit, True, ["nchan"], f"reconnect storm, {n:,} SSE subscribers, {what}")


def only(fig, server, t, n, field, unit):
    return cell((fig, server, t, str(n)), field, unit)


big = max((int(k[3]) for k in runs if k[0] == "alone" and k[3] != "-"), default=10000)
alone = [
    ("release binary, stripped", only("alone", "hookcast", "-", "-", "binary_bytes", "B"), "≤ 2 MiB",
     med(("alone", "hookcast", "-", "-"), "binary_bytes"), 2 * 1024 * 1024),
    ("idle RSS after start", only("alone", "hookcast", "-", "-", "idle_rss_kb", "kB"), "≤ 3 MiB",
     med(("alone", "hookcast", "-", "-"), "idle_rss_kb"), 3 * 1024),
    ("start to ready (median of 11)", only("alone", "hookcast", "-", "-", "ready_ms", "ms"), "≤ 20 ms",
     med(("alone", "hookcast", "-", "-"), "ready_ms"), 20),
    (f"CPU with {big:,} idle SSE subscribers, keep-alive every 5 s", only("alone", "hookcast", "sse", big, "cpu_pct", "%"),
     "—", None, None),
]

# Targets (DESIGN.md), judged on the medians.
def verdict(ok):
    return "n/a" if ok is None else ("**holds**" if ok else "**missed**")


def lt(a, b):
    return None if a is None or b is None else a < b


targets = []
for t in ("sse", "ws"):
    h = med(("idle", "hookcast", t, "10000"), "bytes")
    nc = med(("idle", "nchan", t, "10000"), "bytes")
    targets.append((f"≤ 1 KiB per idle {t.upper()} connection at 10,000", fmt_num(h, "B"), verdict(None if h is None else h <= 1024)))
    targets.append((f"≥ 5× less than Nchan per idle {t.upper()} connection at 10,000", ratio(h, nc, True),
                    verdict(None if h is None or nc is None or h <= 0 else nc / h >= 5)))
h, nc = med(("fanout", "hookcast", "sse", "10000"), "p99_ms"), med(("fanout", "nchan", "sse", "10000"), "p99_ms")
targets.append(("fan-out to 10,000 SSE: p99 below Nchan's", f"{fmt_num(h, 'ms')} vs {fmt_num(nc, 'ms')}", verdict(lt(h, nc))))
h, nc = med(("burst", "hookcast", "sse", "1000"), "deliveries_per_s"), med(("burst", "nchan", "sse", "1000"), "deliveries_per_s")
targets.append(("burst deliveries/s above Nchan's", f"{fmt_num(h, '/s')} vs {fmt_num(nc, '/s')}", verdict(lt(nc, h))))
pp = med(("burst", "pushpin", "sse", "1000"), "deliveries_per_s")
if pp is not None:
    targets.append(("burst deliveries/s at least Pushpin's (issue 21)", f"{fmt_num(h, '/s')} vs {fmt_num(pp, '/s')}",
                    verdict(None if h is None else h >= pp)))
h, nc = med(("burst", "hookcast", "sse", "1000"), "p99_ms"), med(("burst", "nchan", "sse", "1000"), "p99_ms")
if nc is not None:
    targets.append(("burst p99 no worse than Nchan's (issue 21)", f"{fmt_num(h, 'ms')} vs {fmt_num(nc, 'ms')}",
                    verdict(None if h is None else h <= nc)))
# Issue 21: the fan-out within 1.25× of the floor, in latency and in CPU per delivery.
floor_rows = []
for n in (1000, 10000):
    for field, what, unit in (("p50_ms", "p50", "ms"), ("p99_ms", "p99", "ms"), ("cpu_us_per_delivery", "server CPU per delivery", "us")):
        fk, hk = ("fanout", "floor", "sse", str(n)), ("fanout", "hookcast", "sse", str(n))
        f, h = med(fk, field), med(hk, field)
        if f is None or h is None or f <= 0:
            continue
        floor_rows.append((f"fan-out SSE {n:,} subscribers, {what}", cell(fk, field, unit), cell(hk, field, unit), f"{h / f:.2f}×"))
        targets.append((f"fan-out SSE {n:,}, {what}: within 1.25× of the floor (issue 21)", f"{h / f:.2f}×",
                        verdict(h / f <= 1.25)))
for hook, what in (("nocmd", "no command"), ("cmd", "command /bin/true")):
    h, w = med(("intake", "hookcast", hook, "50"), "rps"), med(("intake", "webhook", hook, "50"), "rps")
    targets.append((f"≥ 3× adnanh/webhook's signed requests/s ({what})", ratio(h, w, False),
                    verdict(None if h is None or not w else h / w >= 3)))
for label, value, target, m, limit in alone[:3]:
    targets.append((f"{label} {target}", value, verdict(None if m is None else m <= limit)))
for n in storm_sizes[-1:]:
    # Every run must lose nothing, not the median one.
    lost = values(("storm", "hookcast", "sse", str(n)), "lost")
    unresumed = values(("storm", "hookcast", "sse", str(n)), "unresumed")
    nc = values(("storm", "nchan", "sse", str(n)), "lost")
    ok = None if not lost else max(lost) == 0 and max(unresumed or [0]) == 0
    measured = "n/a" if not lost else f"{max(lost):,.0f} lost (worst of {len(lost)} runs)"
    if nc:
        measured += f"; Nchan {max(nc):,.0f}"
    targets.append((f"reconnect storm ({n:,} SSE subscribers, journal): 0 lost", measured, verdict(ok)))

started = meta["started"][0][0] if meta["started"] else "?"
finished = meta["finished"][0][0] if meta["finished"] else "?"
machine = meta["machine"][0][0] if meta["machine"] else "?"
command = meta["command"][0][0] if meta["command"] else "scripts/bench.sh"
reps = meta["reps"][0][0] if meta["reps"] else "1"
svg_name = svg_path.rsplit("/", 1)[-1]
tsv_name = tsv.rsplit("/", 1)[-1]
out = []
out.append(f"# hookcast side by side — {started}")
out.append("")
out.append(f"Machine: {machine}. Run {started} → {finished}, command `{command}`; raw runs in [{tsv_name}]({tsv_name}), chart in [{svg_name}]({svg_name}).")
out.append("")
vs = ", ".join(f"{k} {v}" for k, v in versions.items())
out.append(f"Versions: {vs}.")
for na in meta["na"]:
    out.append(f"- **n/a: {na[0]}** — {na[1]}")
out.append("")
out.append(
    f"Each cell is the median over the runs (repetitions: {reps}), with the range and run count when "
    "there were several. The machine has 2 cores shared "
    "with the load client and with other work, so latencies and rates are noisy. Ratio = how many times "
    "better hookcast is (peer ÷ hookcast for memory and latency, hookcast ÷ peer for rates); below 1× "
    "the peer is better.")
out.append("")
out.append("![hookcast vs peers](" + svg_name + ")")
out.append("")
out.append("| figure | hookcast | peer | peer's value | ratio |")
out.append("|---|---|---|---|---|")
for r in rows:
    out.append("| " + " | ".join(r) + " |")
d = runs.get(("fanout", "pushpin-default-rate", "sse", "1000"))
if d:
    k = ("fanout", "pushpin-default-rate", "sse", "1000")
    out.append(f"| fan-out SSE 1,000, Pushpin with Debian's default rate limits (message_rate 2500/s, message_hwm 25000) | | Pushpin | p50 {cell(k, 'p50_ms', 'ms')}, p99 {cell(k, 'p99_ms', 'ms')}, lost {cell(k, 'lost', '')} | |")
if floor_rows:
    out.append("")
    out.append("Against the floor (`hookcast-floor`: one mio loop writing the event to every subscriber with one write "
               "each, nothing else; the same fan-out, same client; hookcast ÷ floor, 1.00× is the floor):")
    out.append("")
    out.append("| figure | floor | hookcast | hookcast ÷ floor |")
    out.append("|---|---|---|---|")
    for r in floor_rows:
        out.append("| " + " | ".join(r) + " |")
out.append("")
out.append("hookcast alone:")
out.append("")
out.append("| figure | value | target |")
out.append("|---|---|---|")
for label, value, target, _, _ in alone:
    out.append(f"| {label} | {value} | {target} |")
out.append("")
out.append("Targets (DESIGN.md and issue 21), on the medians above:")
out.append("")
out.append("| target | measured | verdict |")
out.append("|---|---|---|")
for t in targets:
    out.append("| " + " | ".join(t) + " |")
out.append("")
notes = []
c = runs.get(("commands", "webhook", "cmd", "50"))
if c:
    notes.append(f"- adnanh/webhook under the flood (a separate `-verbose` run with the `/bin/true` hook): "
                 f"{c[0].get('failed')} of {c[0].get('executing')} command starts failed "
                 f"({c[0].get('emfile')} with \"too many open files\") while every request was answered 200.")
rk = ("runs", "hookcast", "cmd", "50")
if rk in runs:
    notes.append(f"- hookcast with the `/bin/true` hook ran {cell(rk, 'runs', '')} command(s) per run: it keeps at "
                 "most one run per hook and coalesces the deliveries that arrive meanwhile into one follow-up "
                 "run (its default `coalesce` policy), where adnanh starts one process per request.")
wd = ("idle", "websocketd", "ws", "1000")
if wd in runs:
    notes.append(f"- websocketd starts one process per connection; the websocketd row counts them "
                 f"(`/bin/cat` here). websocketd's own process alone: {cell(wd, 'first_proc_bytes', 'B')} per "
                 "connection. At 10,000 connections it would need 40,000 descriptors (socket + three pipes "
                 "each), twice the open-file limit of this machine, so it is measured at 1,000 only.")
pp = [k for k in runs if k[0] == "idle" and k[1] == "pushpin"]
if pp:
    notes.append("- Pushpin counts its runner, condure, zurl, pushpin-proxy and pushpin-handler; the GRIP backend "
                 "(a Python http.server, part of the application rather than of the push server) is left out; "
                 "it grew per subscriber by "
                 + ", ".join(f"{cell(k, 'backend_bytes', 'B')} at {int(k[3]):,}" for k in sorted(pp)) + ".")
for hook, what in (("nocmd", "no command"), ("cmd", "/bin/true")):
    hk, wk = ("intake", "hookcast", hook, "50"), ("intake", "webhook", hook, "50")
    hc, hr, wc, wr = med(hk, "cpu_us_per_request"), med(hk, "rps"), med(wk, "cpu_us_per_request"), med(wk, "rps")
    if None not in (hc, hr, wc, wr):
        notes.append(f"- Intake ({what}): hookcast kept {hc * hr / 1e6:.2f} cores busy (one event loop), "
                     f"adnanh/webhook {wc * wr / 1e6:.2f} (Go runtime threads on both cores); per request "
                     f"hookcast spent {ratio(hc, wc, True)} less CPU ({fmt_num(hc, 'us')} vs {fmt_num(wc, 'us')}).")
if ("intake", "hookcast", "nocmd", "50") in runs:
    notes.append("- hookcast's peak RSS under the intake flood is bounded memory, not a leak: the recent deliveries "
                 "kept for replay (up to `journal.max_delivery_bytes`), the idempotency window of delivery ids "
                 "(capped by count) and the event history; in a 12 s flood it levelled off at 65–70 MiB.")
notes.append("- Memory per subscriber = growth of Σ(Pss_Anon + Pss_Shmem) over all processes of the server "
             "(/proc/PID/smaps_rollup), divided by the connections established, taken 2 s after the last one; "
             "nginx counts master + worker (1 worker, like hookcast's one loop) and Nchan's shared-memory zone "
             "once. A fresh server for every run. Kernel memory is not in this figure; it has rows of its own when measured.")
floors = sorted(k for k in runs if k[0] == "idle" and k[1] == "floor")
if floors:
    shares = ", ".join(f"{fmt_num((med(k, 'kernel_bytes') or 0) / 2, 'B')} at {int(k[3]):,}" for k in floors)
    hk = [runs[k][0] for k in sorted(runs) if k[0] == "idle" and k[1] == "hookcast" and "caches" in runs[k][0]]
    caches = hk[0]["caches"].replace("+", ", ").replace(":", " ") if hk else "n/a"
    notes.append(
        "- Kernel memory per idle connection (the kernel and all-in rows): /proc/net/sockstat's TCP `mem` pages and the growth "
        "of the /proc/slabinfo caches that hold something per TCP socket (TCP, sock_inode_cache, filp, dentry, eventpoll_epi/pwq, "
        "nf_conntrack, skbuff_*, lsm_*; active_objs × objsize, slab page overhead not counted; other caches that grew are "
        "listed in the .tsv as `others` and not counted), "
        "before and 2 s after the N connections, taken with the user-space figure. Both ends of a loopback connection are "
        "on this machine, so the total counts the client's socket too. The client's end is measured, not assumed: the "
        "same client holds N connections to `hookcast-floor`, whose accepted sockets are the same kernel objects as the "
        "client's (a TCP socket, file, inode, dentry, epoll entries, empty queues), so half that total is the client's "
        f"end ({shares}), and it is taken off every server's total. Caches that grew with hookcast's SSE connections, "
        f"objects per connection × bytes: {caches}. sockstat's `mem` is kept in per-CPU batches of up to 1 MiB "
        "(256 pages), so a jump of 256 pages in a run is one batch moving, not the connections; idle sockets with empty "
        "queues hold no buffer pages.")
    odd = [f"{k[1]} {k[2]} {int(k[3]):,}: {r.get('tcp_inuse_delta')}" for k in sorted(runs) if k[0] == "idle"
           for r in runs[k] if r.get("tcp_inuse_delta") not in (None, "n/a")
           and abs(int(r["tcp_inuse_delta"]) - 2 * int(r.get("established", 0))) > 0.1 * int(r.get("established", 1))]
    if odd:
        notes.append("- **Disturbed kernel figures**: sockstat's TCP inuse should grow by 2 per connection (both ends); "
                     "other work on the machine moved it by more than 10 % of N in: " + "; ".join(odd) + ".")
notes.append("- Fan-out: 20 events of 200 bytes, 150 ms apart, each carrying its publish time; latency = arrival − "
             "publish time at the subscriber. Burst: 1,000 events published back to back on one keep-alive "
             "connection (each publish waits for its response); deliveries/s = deliveries ÷ (last delivery − first publish).")
if storm_sizes:
    notes.append("- Reconnect storm: `hookcast-load storm` opens the subscribers on one topic and publishes 200-byte events "
                 "(50/s unless SBS_STORM_RATE says otherwise), each retried until acknowledged; 3 s in, the server is "
                 "restarted (SIGTERM, wait until it is gone, start it again on the same port: hookcast with its journal, "
                 "`state_dir` set, nginx with its in-memory Nchan store) and each subscriber reconnects after a random "
                 "delay below 1 s with `Last-Event-ID` (the last SSE id it saw), retrying refused attempts after 100–500 ms. "
                 "Lost = acknowledged events a subscriber never received, summed over subscribers; time until all resumed = "
                 "from the first reconnection the restarted server answered to the last subscriber's first event on its "
                 "new stream; peak RSS = VmHWM of the restarted server's processes at the end of the run.")
notes.append("- Intake: wrk (pinned to the last core with taskset; the servers are not pinned), 1 thread, 50 keep-alive connections, POSTs of the 7.7 KB GitHub push fixture with a valid "
             "X-Hub-Signature-256 to a hook (same adnanh-format hooks.json for both) whose trigger rule checks the "
             "HMAC and `ref == refs/heads/main`; no X-GitHub-Delivery header, so hookcast does not answer repeats as duplicates.")
out.append("Notes:")
out.append("")
out.extend(notes)
open(md_path, "w").write("\n".join(out) + "\n")

# ---- SVG: one panel per figure, horizontal bars, hand-written.
panels = []


def panel(title, unit, bars, lower_better):
    bars = [(label, v) for label, v in bars if v is not None]
    if bars:
        panels.append((title, unit, bars, lower_better))


panel("Memory per idle subscriber, 10,000 connections (KiB, lower is better)", "KiB", [
    ("hookcast SSE", (med(("idle", "hookcast", "sse", "10000"), "bytes") or 0) / 1024 or None),
    ("Nchan SSE", (med(("idle", "nchan", "sse", "10000"), "bytes") or 0) / 1024 or None),
    ("Pushpin SSE", (med(("idle", "pushpin", "sse", "10000"), "bytes") or 0) / 1024 or None),
    ("hookcast WS", (med(("idle", "hookcast", "ws", "10000"), "bytes") or 0) / 1024 or None),
    ("Nchan WS", (med(("idle", "nchan", "ws", "10000"), "bytes") or 0) / 1024 or None),
    ("websocketd WS (1,000)", (med(("idle", "websocketd", "ws", "1000"), "bytes") or 0) / 1024 or None),
], True)
panel("Fan-out to 10,000 SSE subscribers, p99 latency (ms, lower is better)", "ms", [
    ("hookcast", med(("fanout", "hookcast", "sse", "10000"), "p99_ms")),
    ("Nchan", med(("fanout", "nchan", "sse", "10000"), "p99_ms")),
    ("Pushpin", med(("fanout", "pushpin", "sse", "10000"), "p99_ms")),
], True)
def burst_label(server, name):
    p99 = med(("burst", server, "sse", "1000"), "p99_ms")
    return name if p99 is None else f"{name} (p99 {p99:,.0f} ms)"


panel("Burst: 1,000 events to 1,000 SSE subscribers (deliveries/s, higher is better)", "/s", [
    (burst_label("hookcast", "hookcast"), med(("burst", "hookcast", "sse", "1000"), "deliveries_per_s")),
    (burst_label("nchan", "Nchan"), med(("burst", "nchan", "sse", "1000"), "deliveries_per_s")),
    (burst_label("pushpin", "Pushpin"), med(("burst", "pushpin", "sse", "1000"), "deliveries_per_s")),
], False)
for n in storm_sizes[-1:]:
    panel(f"Reconnect storm, {n:,} SSE subscribers: time until all resumed (ms, lower is better)", "ms", [
        ("hookcast", med(("storm", "hookcast", "sse", str(n)), "resume_ms")),
        ("Nchan", med(("storm", "nchan", "sse", str(n)), "resume_ms")),
    ], True)
panel("Signed webhook intake, 7.7 KB GitHub push (requests/s, higher is better)", "/s", [
    ("hookcast, no command", med(("intake", "hookcast", "nocmd", "50"), "rps")),
    ("adnanh/webhook, no command", med(("intake", "webhook", "nocmd", "50"), "rps")),
    ("hookcast, /bin/true", med(("intake", "hookcast", "cmd", "50"), "rps")),
    ("adnanh/webhook, /bin/true", med(("intake", "webhook", "cmd", "50"), "rps")),
], False)

W, left, right, bar_h, gap = 820, 200, 120, 18, 6
y = 40
parts = []
for title, unit, bars, _ in panels:
    parts.append(f'<text x="10" y="{y}" font-weight="bold">{html.escape(title)}</text>')
    y += 10
    top = max(v for _, v in bars) or 1
    for label, v in bars:
        w = max(2, (W - left - right) * v / top)
        color = "#d9480f" if label.startswith("hookcast") else "#868e96"
        text = f"{v:,.2f} {unit}" if unit in ("KiB", "ms") else f"{v:,.0f} {unit}"
        parts.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{html.escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 13}">{html.escape(text)}</text>')
        y += bar_h + gap
    y += 28
H = y
head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="sans-serif" font-size="12">')
caption = f'<text x="10" y="18" font-size="14">hookcast vs peers — {html.escape(started)} — medians, {html.escape(machine.split(";")[0])}</text>'
bg = f'<rect width="{W}" height="{H}" fill="white"/>'
open(svg_path, "w").write("\n".join([head, bg, caption] + parts + ["</svg>"]) + "\n")
PY
}

sbs_versions() {
    local p v
    for p in nginx libnginx-mod-nchan pushpin condure zurl webhook websocketd wrk; do
        v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo "not installed")
        printf '%s=%s\n' "$p" "$v"
    done
    printf 'hookcast=%s\n' "$("$sbs_bin" --version 2>/dev/null | awk '{print $2}')"
    printf 'rustc=%s\n' "$(rustc --version 2>/dev/null | awk '{print $2}')"
}

# SBS_ONLY=fanout,intake (any of alone, idle, allin, fanout, burst, intake, storm) runs only those figures,
# into side-by-side-<date>-only-<figures>.* so the full run's files stay.
sbs_want() { [[ -z ${SBS_ONLY:-} || ,$SBS_ONLY, == *",$1,"* ]]; }

sbs_main() {
    # Repetitions: memory is steady from run to run, so one run each; the timing figures are not
    # (2 shared cores), so fan-out, burst and intake are repeated and reported as medians.
    local quick=0 reps=${SBS_REPS:-3} big_reps=${SBS_BIG_REPS:-3} mem_reps=1 intake_secs=3
    [[ ${1:-} == --quick ]] && quick=1 reps=1 big_reps=1
    sbs_bin="$root/target/release/hookcast" sbs_load="$root/target/release/hookcast-load"
    [[ -x $sbs_bin && -x $sbs_load ]] || cargo build --release --quiet --bins
    sbs_tmp=$(mktemp -d)
    trap 'sbs_stop; rm -rf "$sbs_tmp"' EXIT
    sbs_install_peers
    local day sizes=(1000 10000)
    day=$(date -u +%Y-%m-%d)
    sbs_big=10000 sbs_storm_n=10000 sbs_failures=()
    ((quick)) && sizes=(1000) sbs_big=1000 sbs_storm_n=1000
    mkdir -p "$root/bench/results"
    local base="$root/bench/results/side-by-side-$day"
    ((quick)) && base+="-quick"
    [[ -n ${SBS_ONLY:-} ]] && base+="-only-${SBS_ONLY//,/-}"
    sbs_tsv="$base.tsv"
    {
        printf '# started\t%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)"
        printf '# machine\t%s cores (%s), %s GiB, %s; load average at start %s\n' "$(nproc)" \
            "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
            "$(free -g | awk '/^Mem:/ {print $2}')" "$(uname -sr)" "$(cut -d' ' -f1-3 /proc/loadavg)"
        printf '# command\t%s\n' "${sbs_command:-scripts/bench.sh}"
        printf '# reps\t%s (fan-out at %s connections: %s; memory: %s)\n' "$reps" "$sbs_big" "$big_reps" "$mem_reps"
        sbs_versions | sed 's/^/# version\t/'
        for p in "${!sbs_na[@]}"; do printf '# na\t%s\t%s\n' "$p" "${sbs_na[$p]}"; done
    } >"$sbs_tsv"
    local n r t
    # (5) hookcast alone
    sbs_want alone && sbs_hookcast_alone
    # (1) idle memory: a fresh server for every run (freed memory is not always given back).
    # `allin` is the same measurement for hookcast, Nchan and the floor only (user space and the
    # kernel's share; the floor's run gives the client's share of the kernel's).
    (sbs_want idle || sbs_want allin) && for n in "${sizes[@]}"; do
        for ((r = 0; r < mem_reps; r++)); do
            for t in sse ws; do
                sbs_start_hookcast && sbs_idle hookcast "$t" "$n"
                sbs_stop
                if sbs_have nchan; then
                    sbs_start_nchan && sbs_idle nchan "$t" "$n"
                    sbs_stop
                fi
            done
            sbs_start_floor && sbs_idle floor sse "$n"
            sbs_stop
            sbs_want idle || continue
            if sbs_have pushpin; then
                sbs_start_pushpin && sbs_idle pushpin sse "$n"
                sbs_stop
            fi
            # websocketd holds 4 descriptors per connection (socket + 3 pipes to its child):
            # 10 000 connections need 40 000, twice the open-file limit here.
            if sbs_have websocketd && ((n * 4 < 20000)); then
                sbs_start_websocketd && sbs_idle websocketd ws "$n"
                sbs_stop
            fi
        done
    done
    # (2) fan-out, paced: 20 events 150 ms apart.
    sbs_want fanout && for n in "${sizes[@]}"; do
        local nreps=$reps
        ((n > 1000)) && nreps=$big_reps
        for ((r = 0; r < nreps; r++)); do
            for t in sse ws; do
                sbs_start_hookcast && sbs_fanout fanout hookcast "$t" "$n" 20 150
                sbs_stop
                if sbs_have nchan; then
                    sbs_start_nchan && sbs_fanout fanout nchan "$t" "$n" 20 150
                    sbs_stop
                fi
            done
            if sbs_have pushpin; then
                sbs_start_pushpin && sbs_fanout fanout pushpin sse "$n" 20 150
                sbs_stop
            fi
            # The floor: what the same fan-out costs when nothing but the writes is done.
            sbs_start_floor && sbs_fanout fanout floor sse "$n" 20 150
            sbs_stop
        done
    done
    if sbs_want fanout && sbs_have pushpin && ((quick == 0)); then # once, to show what Debian's defaults do
        SBS_PUSHPIN_DEFAULT_RATE=1 sbs_start_pushpin && sbs_fanout fanout pushpin-default-rate sse 1000 20 150
        sbs_stop
    fi
    # (3) burst: 1 000 events back to back to 1 000 subscribers.
    sbs_want burst && for ((r = 0; r < reps; r++)); do
        sbs_start_hookcast && sbs_fanout burst hookcast sse 1000 1000 0
        sbs_stop
        if sbs_have nchan; then
            sbs_start_nchan && sbs_fanout burst nchan sse 1000 1000 0
            sbs_stop
        fi
        if sbs_have pushpin; then
            sbs_start_pushpin && sbs_fanout burst pushpin sse 1000 1000 0
            sbs_stop
        fi
    done
    # (4) webhook intake.
    sbs_make_hooks
    if sbs_want intake && sbs_have wrk; then
        for ((r = 0; r < reps; r++)); do
            local hook
            for hook in nocmd cmd; do
                sbs_start_hookcast 15000 "$sbs_tmp/hooks.json" && sbs_intake hookcast "$hook" "$intake_secs"
                if [[ $hook == cmd ]]; then
                    local runs
                    runs=$(curl -s "http://127.0.0.1:$sbs_port/metrics" |
                        awk '/^hookcast_run_duration_seconds_count/ {s += $2} END {print s + 0}')
                    sbs_row runs hookcast cmd 50 "runs=$runs"
                fi
                sbs_stop
                if sbs_have webhook; then
                    sbs_start_webhook "$sbs_tmp/hooks.json" && sbs_intake webhook "$hook" "$intake_secs"
                    sbs_stop
                fi
            done
        done
        if sbs_have webhook && ((quick == 0)); then # how many of adnanh's commands failed to start
            : >"$sbs_tmp/webhook.log"
            SBS_WEBHOOK_VERBOSE=1 sbs_start_webhook "$sbs_tmp/hooks.json" && sbs_intake webhook-verbose cmd 3
            sbs_stop
            sleep 1
            local started failed
            started=$(grep -c 'executing /bin/true' "$sbs_tmp/webhook.log" || true)
            failed=$(grep -c 'error occurred' "$sbs_tmp/webhook.log" || true)
            sbs_row commands webhook cmd 50 "executing=$started" "failed=$failed" \
                "emfile=$(grep -c 'too many open files' "$sbs_tmp/webhook.log" || true)"
            sbs_log "adnanh/webhook (verbose run): $failed of $started command starts failed"
        fi
    fi
    # (6) reconnect storm.
    if sbs_want storm; then
        for ((r = 0; r < ${SBS_STORM_REPS:-1}; r++)); do
            sbs_storm hookcast
            sbs_have nchan && sbs_storm nchan
        done
    fi
    printf '# finished\t%s (load average at the end %s)\n' "$(date -u +%Y-%m-%dT%H:%MZ)" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$sbs_tsv"
    sbs_render "$sbs_tsv" "$base.md" "$base.svg"
    cat "$base.md"
    if ((${#sbs_failures[@]})); then
        sbs_log "FAILED (not measured, or a target that must hold did not):"
        printf '  %s\n' "${sbs_failures[@]}" >&2
        return 1
    fi
}

# =============================================================================================
# Churn soak (issue 21): `scripts/bench.sh --soak`. hookcast (release, a journal in a temporary
# state_dir, a GitHub-signed hook running /bin/true, info log to a file) under a steady churn from
# `hookcast-load churn`: subscribers connecting and leaving at a fixed rate over SSE, WebSocket and
# long poll (some resuming, some filtered), publishes and signed webhooks in between. Every
# SOAK_SAMPLE_SECS the daemon's VmRSS, open descriptors, history bytes and events and open
# connections are sampled; after the warm-up each series gets a least-squares slope and a
# flat / not-flat verdict (hookcast-load churn --help defines it). Every memory bound is set small
# enough to be reached during the warm-up, so what is tested is that they hold, not that a 10-minute
# run was too short to fill them. Writes bench/results/soak-<date>.{md,tsv}; exits 1 when the
# verdict fails (an error seen by a subscriber, a series not flat, a warn or error in the log).
# Knobs (environment), defaults for the 10-minute run:
#   SOAK_SECS=600 SOAK_SAMPLE_SECS=10 SOAK_WARMUP_SECS=(SOAK_SECS/5) SOAK_CONNECT_RATE=20 (a second)
#   SOAK_HOLD_MS=1000-10000 SOAK_MIX=sse=2,ws=2,poll=1 SOAK_RESUME_PCT=30 SOAK_FILTER_PCT=20
#   SOAK_PUBLISH_RATE=10 SOAK_WEBHOOK_RATE=2 (a second) SOAK_FLAT_PCT=1
# =============================================================================================

soak_main() {
    local secs=${SOAK_SECS:-600} sample=${SOAK_SAMPLE_SECS:-10}
    local warmup=${SOAK_WARMUP_SECS:-$((${SOAK_SECS:-600} / 5))}
    local bin="$root/target/release/hookcast" load="$root/target/release/hookcast-load"
    local tmp port day base secret=soak-bench-secret history_total=98304
    tmp=$(mktemp -d "${BENCH_STATE_PARENT:-${TMPDIR:-/tmp}}/hookcast-soak.XXXXXX")
    # shellcheck disable=SC2064 # expand now: the trap must remove this run's directory
    trap "kill -TERM \$soak_pid 2>/dev/null || true; wait \$soak_pid 2>/dev/null || true; rm -rf '$tmp'" EXIT
    port=$(sbs_free_port)
    day=$(date -u +%Y-%m-%d)
    base="$root/bench/results/soak-$day"
    mkdir -p "$root/bench/results" "$tmp/state"
    # The bounds, each reached early: history (96 KiB in all, 64 KiB a topic), the deliveries
    # kept for replay (128 KiB), finished runs (50), the idempotency window (60 s of ids), the
    # journal on disk (1 MiB in 256 KiB segments: it deletes its first segment about a minute in).
    cat >"$tmp/hookcast.json" <<EOF
{
  "listen": "127.0.0.1:$port",
  "state_dir": "$tmp/state",
  "log_level": "info",
  "log_format": "json",
  "limits": { "max_connections": 30000, "max_connections_per_ip": 30000 },
  "history": { "max_events_per_topic": 1000, "max_bytes_per_topic": 65536, "max_bytes_total": $history_total },
  "journal": { "segment_bytes": 262144, "max_bytes": 1048576, "max_delivery_bytes": 131072 },
  "runner": { "keep_runs": 50 },
  "dedup_window_secs": 60,
  "public": [ { "topics": ["soak", "hooks/soak"], "scopes": ["subscribe", "publish"], "from": ["127.0.0.0/8"] } ],
  "hooks": [ { "id": "soak", "provider": "github", "secrets": ["$secret"], "events": ["push"],
               "execute-command": "/bin/true" } ]
}
EOF
    "$bin" check --config "$tmp/hookcast.json" >/dev/null || { sbs_log "soak: the generated config does not check"; return 1; }
    "$bin" serve --config "$tmp/hookcast.json" 2>"$tmp/hookcast.log" &
    soak_pid=$!
    sbs_wait_port "$port" || { sbs_log "soak: hookcast did not start"; cat "$tmp/hookcast.log" >&2; return 1; }
    sbs_log "soak: hookcast pid $soak_pid on port $port for $secs s (samples every $sample s, warm-up $warmup s)"
    local load_rc=0
    "$load" churn --target "127.0.0.1:$port" --seconds "$secs" --topic soak --also hooks/soak \
        --connect-rate "${SOAK_CONNECT_RATE:-20}" --hold-ms "${SOAK_HOLD_MS:-1000-10000}" \
        --mix "${SOAK_MIX:-sse=2,ws=2,poll=1}" --resume-pct "${SOAK_RESUME_PCT:-30}" \
        --filter-pct "${SOAK_FILTER_PCT:-20}" --publish-rate "${SOAK_PUBLISH_RATE:-10}" \
        --webhook-rate "${SOAK_WEBHOOK_RATE:-2}" --hook-path /hooks/soak --hook-secret "$secret" \
        --pid "$soak_pid" --sample-secs "$sample" --warmup-secs "$warmup" --flat-pct "${SOAK_FLAT_PCT:-1}" \
        --history-limit "$history_total" --samples "$base.tsv" >"$tmp/churn.out" 2>"$tmp/churn.err" || load_rc=$?
    kill -0 "$soak_pid" 2>/dev/null || { sbs_log "soak: hookcast died during the run"; load_rc=1; }
    kill -TERM "$soak_pid" 2>/dev/null || true
    wait "$soak_pid" 2>/dev/null || true
    cat "$tmp/churn.err" >&2
    if [[ ! -s $base.tsv ]] || ! grep -q '^churn ' "$tmp/churn.out"; then
        sbs_log "soak: no samples or no churn summary: nothing measured"
        return 1
    fi
    local verdict_rc=0
    python3 - "$tmp/churn.out" "$tmp/hookcast.log" "$base.tsv" "$base.md" "$load_rc" \
        "scripts/bench.sh --soak (SOAK_SECS=$secs SOAK_SAMPLE_SECS=$sample SOAK_WARMUP_SECS=$warmup)" \
        "$(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -sr); $("$bin" --version)" \
        "$tmp/hookcast.json" <<'PY' || verdict_rc=$?
import json, sys
from collections import Counter
out_path, log_path, tsv_path, md_path, load_rc, command, machine, cfg_path = sys.argv[1:9]
lines = open(out_path).read().splitlines()
kv = lambda l: dict(x.split("=", 1) for x in l.split()[1:] if "=" in x)
churn = next(kv(l) for l in lines if l.startswith("churn "))
series = [kv(l) for l in lines if l.startswith("series ")]
history = next((kv(l) for l in lines if l.startswith("history ")), None)
errors = [l.split(" ", 2)[1:] for l in lines if l.startswith("error ")]
levels, msgs, bad = Counter(), Counter(), 0
for raw in open(log_path, errors="replace"):
    try:
        rec = json.loads(raw)
    except ValueError:
        levels["(not JSON)"] += 1
        msgs[("?", raw.strip()[:160])] += 1
        bad += 1
        continue
    lvl = rec.get("level", "?")
    levels[lvl] += 1
    if lvl in ("warn", "error"):
        msgs[(lvl, rec.get("msg", "?"))] += 1
        bad += 1
rows = [l.rstrip("\n").split("\t") for l in open(tsv_path)]
flat_ok = all(s.get("flat") == "yes" for s in series) and bool(series)
checks_ok = int(load_rc) == 0
ok = checks_ok and flat_ok and bad == 0
o = []
o.append(f"# hookcast churn soak — {rows and __import__('datetime').datetime.utcnow().strftime('%Y-%m-%dT%H:%MZ')}")
o.append("")
o.append(f"Machine: {machine}. Command `{command}`; samples in [{tsv_path.rsplit('/',1)[-1]}]({tsv_path.rsplit('/',1)[-1]}).")
o.append("")
o.append(f"**Verdict: {'PASS' if ok else 'FAIL'}** — subscriber checks {'clean' if int(churn.get('errors','1')) == 0 and int(churn.get('missing','1')) == 0 else 'NOT clean'}, "
         f"series {'all flat' if flat_ok else 'NOT all flat'}, {bad} warn/error line(s) in the daemon's log.")
o.append("")
o.append("Load (`hookcast-load churn`): " + ", ".join(f"{k} {v}" for k, v in churn.items()) + ".")
if errors:
    o.append("")
    o.append("Errors the load tool saw:")
    o.append("")
    for count, what in errors:
        o.append(f"- {count} × {what}")
o.append("")
o.append("## Slopes after the warm-up")
o.append("")
o.append("Least squares over the samples after the warm-up. drift = |slope| × the window; noise = the residuals' "
         "standard deviation (one sample's scatter around the line); flat when drift ≤ max(noise, SOAK_FLAT_PCT % of the mean, "
         "2 standard errors of the drift): no change over the run that can be told from the samples' scatter.")
o.append("")
o.append("| series | samples | mean | slope per minute | % of mean per hour | drift over window | noise | threshold | flat |")
o.append("|---|---|---|---|---|---|---|---|---|")
for s in series:
    if s.get("flat") == "unmeasured":
        o.append(f"| {s['name']} | {s.get('n')} | n/a | n/a | n/a | n/a | n/a | n/a | **unmeasured** |")
        continue
    o.append(f"| {s['name']} | {s['n']} | {float(s['mean']):,.1f} | {float(s['slope_per_min']):+,.3f} | {float(s['pct_per_hour']):+.3f} % | "
             f"{float(s['drift']):,.1f} (over {s['window_s']} s) | {float(s['noise']):,.1f} | {float(s['threshold']):,.1f} | **{s['flat']}** |")
if history:
    o.append("")
    o.append(f"History bound: `history.max_bytes_total` = {int(history['limit']):,} bytes; history_bytes reached 90 % of it at "
             f"{history['reached_at_s']} s (before the warm-up ended: {history['before_warmup_end']}), so the plateau is tested.")
o.append("")
o.append("## The daemon's log")
o.append("")
o.append("Lines by level: " + ", ".join(f"{k} {v}" for k, v in sorted(levels.items())) + ".")
if msgs:
    o.append("")
    for (lvl, m), c in msgs.most_common():
        o.append(f"- {c} × {lvl}: `{m}`")
else:
    o.append("No warn or error line.")
o.append("")
o.append("## Samples")
o.append("")
o.append("| " + " | ".join(rows[0]) + " |")
o.append("|" + "---|" * len(rows[0]))
for r in rows[1:]:
    o.append("| " + " | ".join(r) + " |")
o.append("")
o.append("rss_kb: VmRSS; fds: entries of /proc/PID/fd; history_bytes / history_events / conns_server: hookcast_history_bytes, "
         "hookcast_history_events and hookcast_connections_active (all transports) from /metrics; subs_client: subscribers the "
         "load tool held at that moment.")
o.append("")
o.append("The configuration (every memory bound small enough to be reached during the warm-up):")
o.append("")
o.append("```json")
o.append(open(cfg_path).read().rstrip())
o.append("```")
open(md_path, "w").write("\n".join(o) + "\n")
print("\n".join(o[:o.index("## Samples")]))
sys.exit(0 if ok else 1)
PY
    if ((verdict_rc != 0)); then
        sbs_log "soak: FAIL (see $base.md)"
        return 1
    fi
    sbs_log "soak: PASS ($base.md)"
}

if [[ " $* " == *" --soak "* ]]; then
    [[ $# == 1 ]] || { echo "usage: scripts/bench.sh --soak   (knobs: SOAK_* in the environment)" >&2; exit 2; }
    cargo build --release --quiet --bins
    soak_pid=''
    (soak_main)
    exit
fi

# `--side-by-side [--quick]`: only the comparison with the peers.
if [[ " $* " == *" --side-by-side "* ]]; then
    sbs_quick=()
    for arg in "$@"; do
        case "$arg" in
            --side-by-side) ;;
            --quick) sbs_quick=(--quick) ;;
            *) echo "usage: scripts/bench.sh --side-by-side [--quick]" >&2; exit 2 ;;
        esac
    done
    cargo build --release --quiet --bins
    sbs_command="scripts/bench.sh $*"
    (sbs_main "${sbs_quick[@]}")
    exit
fi
# =============================================================================================

args="$*"
sizes=(1000 10000)
pub_secs=5
publish_only=false
for arg in "$@"; do
    case "$arg" in
        --quick) sizes=(1000); pub_secs=3 ;;
        --publish-only) publish_only=true ;;
        *) echo "usage: scripts/bench.sh [--quick] [--publish-only]" >&2; exit 2 ;;
    esac
done

cargo build --release --quiet --bins
bin=target/release/hookcast
load=target/release/hookcast-load
out="bench/results/hookcast-$(date -u +%Y-%m-%d).md"
$publish_only && out="bench/results/hookcast-publish-$(date -u +%Y-%m-%d).md"
mkdir -p bench/results

start_daemon() { # [SERVE ARGS...]: prints "PID PORT"
    local log
    log="$(mktemp)"
    "$bin" serve --listen 127.0.0.1:0 "$@" 2>"$log" &
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

size_kib=$(( $(stat -c %s "$bin") / 1024 ))
idle_rss=n/a
ready=n/a
if ! $publish_only; then
    read -r pid _ < <(start_daemon)
    sleep 0.3
    idle_rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    read -r ready _ <<<"$(ready_ms "$bin")"
fi

rows=()
$publish_only && sizes=()
# Every load connection comes from loopback: lift the per-address limit (a tenth of
# max_connections by default) for the idle figures.
idle_cfg="$(mktemp)"
printf '{"public":[{"topics":["demo"],"scopes":["subscribe"],"from":["127.0.0.0/8"]}],"limits":{"max_connections":30000,"max_connections_per_ip":30000}}\n' >"$idle_cfg"
for n in "${sizes[@]}"; do
    for transport in sse ws; do
        read -r pid port < <(start_daemon --config "$idle_cfg")
        if [[ $transport == ws ]]; then path='/ws?topics=demo'; flag=--ws; else path='/events?topics=demo'; flag=; fi
        line=$("$load" idle --target "127.0.0.1:$port" --path "$path" $flag --conns "$n" --pid "$pid" | grep '^idle ')
        kill "$pid"; wait "$pid" 2>/dev/null || true
        bpc=$(grep -o ' bytes_per_conn=[0-9]*' <<<"$line" | cut -d= -f2)
        est=$(grep -o ' established=[0-9]*' <<<"$line" | cut -d= -f2)
        rows+=("| idle $transport subscribers | $n | $est established | **$bpc B** per connection (RssAnon delta / N) |")
    done
done

# Publish throughput per journal.fsync policy: C keep-alive publishers POST 200-byte JSON events
# as fast as they are answered; hookcast answers a publish once its journal record is durable
# under the policy, so acknowledged/s is the durable rate. "none" runs without a state_dir.
state_parent="${BENCH_STATE_PARENT:-${TMPDIR:-/tmp}}"
state_root="$(mktemp -d "$state_parent/hookcast-bench.XXXXXX")"
trap 'rm -rf "$state_root"' EXIT
state_fs="$(df -T "$state_root" | awk 'NR == 2 {print $2 " on " $1}')"
fsyncs() { # PORT: the journal's fsync counter (0 without a journal)
    curl -fsS "http://127.0.0.1:$1/metrics" | awk '$1 == "hookcast_journal_fsyncs_total" {print $2; found=1} END {if (!found) print 0}'
}
field() { # NAME: a field of the last `publish` line
    grep -o " $1=[0-9.a-z/]*" <<<"$line" | cut -d= -f2
}
pub_rows=()
for policy in always batch never none; do
    case "$policy" in
        always) journal='{"fsync":"always"}' ;;
        batch) journal='{"fsync":"batch","fsync_delay_ms":10}' ;;
        *) journal='{"fsync":"never"}' ;;
    esac
    cfg="$state_root/$policy.json"
    printf '{"public":[{"topics":["bench"],"scopes":["publish"],"from":["127.0.0.0/8"]}],"journal":%s}\n' "$journal" >"$cfg"
    for conns in 1 16; do
        state=()
        [[ $policy != none ]] && state=(--state-dir "$state_root/$policy-$conns")
        read -r pid port < <(start_daemon --config "$cfg" "${state[@]}")
        before=$(fsyncs "$port")
        line=$("$load" publish --target "127.0.0.1:$port" --topic bench --conns "$conns" --seconds "$pub_secs" | grep '^publish ')
        after=$(fsyncs "$port")
        kill "$pid"; wait "$pid" 2>/dev/null || true
        acked=$(field acked)
        per_fsync=n/a
        (( after > before )) && per_fsync=$(awk -v a="$acked" -v f="$((after - before))" 'BEGIN {printf "%.1f", a / f}')
        label=$policy
        [[ $policy == batch ]] && label="batch (10 ms)"
        [[ $policy == none ]] && label="none (no state_dir)"
        pub_rows+=("| $label | $conns | **$(field per_sec)** | $(field p50_ms) / $(field p99_ms) ms | $per_fsync |")
    done
done

{
    echo "# hookcast benchmark — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); $($bin --version)."
    echo "Command: \`scripts/bench.sh${args:+ $args}\`. Load client on the same cores, loopback only."
    echo
    if ! $publish_only; then
        echo "| figure | value |"
        echo "|---|---|"
        echo "| release binary (stripped) | $size_kib KiB |"
        echo "| idle RSS after start | $idle_rss kB |"
        echo "| start to ready (median of 11) | $ready ms |"
        echo
        echo "| memory | connections | result | figure |"
        echo "|---|---|---|---|"
        printf '%s\n' "${rows[@]}"
        echo
    fi
    echo "Publish throughput: \`hookcast-load publish --conns C --seconds $pub_secs\` (200-byte JSON"
    echo "bodies, keep-alive); a publish is acknowledged once durable under journal.fsync. Journal on"
    echo "$state_fs. Records per fsync = acknowledged publishes / fsync calls (group commit)."
    echo
    echo "| journal.fsync | publishers | acknowledged/s | latency p50 / p99 | records per fsync |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${pub_rows[@]}"
} | tee "$out"

# The side-by-side comparison with the peers (the sbs_* section above), in a subshell so that its
# clean-up trap leaves this script's own alone.
if ! $publish_only; then
    sbs_quick=()
    [[ " $* " == *" --quick "* ]] && sbs_quick=(--quick)
    sbs_command="scripts/bench.sh${*:+ $*}"
    (sbs_main "${sbs_quick[@]}")
fi
