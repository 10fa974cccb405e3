#!/usr/bin/env python3
"""Issue 12 item 8 reproduction: fill history to its byte cap (default history limits), then
replay it once per wire format (SSE raw, SSE envelope, WebSocket, /poll JSON) and print the
daemon's resident memory after each step.

usage: scripts/history-rss.py BINARY [plain|escapes]   (e.g. target/debug/hookcast)
"""
import base64, json, os, re, socket, subprocess, sys, tempfile, time

BIN = sys.argv[1]
KIND = sys.argv[2] if len(sys.argv) > 2 else "plain"
# 1000 bytes of data per event: plain text, or text where JSON escaping and SSE line splitting
# blow up the encodings (quotes, newlines, control characters).
DATA = ("x" * 1000) if KIND == "plain" else ('a"\n\x01' * 250)

cfg = {"public": [{"topics": ["**"], "scopes": ["subscribe", "publish"]}]}
d = tempfile.mkdtemp()
path = os.path.join(d, "hookcast.json")
open(path, "w").write(json.dumps(cfg))
p = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--config", path],
                     stderr=subprocess.PIPE, text=True)
port = None
for line in p.stderr:
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    if m:
        port = int(m.group(1))
        break
assert port, "daemon did not start"


def rss_mib():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1]) / 1024


def read_response(s, buf=b""):
    while b"\r\n\r\n" not in buf:
        c = s.recv(65536)
        assert c, "eof in head"
        buf += c
    head, rest = buf.split(b"\r\n\r\n", 1)
    n = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(rest) < n:
        rest += s.recv(65536)
    return head, rest[:n], rest[n:]


def get(path):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return read_response(s)[1]


def metric(name):
    for l in get("/metrics").decode().splitlines():
        if l.startswith(name + " "):
            return float(l.split()[1])
    return 0.0


# Fill: publish over one keep-alive connection until the history's byte count stops growing.
s = socket.create_connection(("127.0.0.1", port))
body = DATA.encode()
first = None
last = None
for i in range(40000):
    topic = f"fill/t{i % 40}"
    s.sendall(f"POST /publish/{topic} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    _, b, rest = read_response(s)
    assert not rest
    last = json.loads(b)["id"]
    first = first or last
s.close()
hist = metric("hookcast_history_bytes")
events = metric("hookcast_history_events")
print(f"data={KIND}: history {events:.0f} events, {hist / 2**20:.1f} MiB accounted; RSS after fill {rss_mib():.1f} MiB")


def sse(fmt):
    s = socket.create_connection(("127.0.0.1", port))
    q = "&format=json" if fmt else ""
    s.sendall(f"GET /events?topics=**{q} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {first - 1}\r\n\r\n".encode())
    got = b""
    needle = f"id: {last}\n".encode()
    while needle not in got[-200000:]:
        c = s.recv(1 << 20)
        assert c
        got += c
        got = got[-400000:]
    s.close()


def ws():
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws?topics=**&lastEventId={first - 1} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    buf = buf.split(b"\r\n\r\n", 1)[1]
    needle = f'"id":{last},'.encode()
    while True:
        while len(buf) < 2:
            buf += s.recv(1 << 20)
        n = buf[1] & 0x7F
        off = 2
        if n == 126:
            while len(buf) < 4:
                buf += s.recv(1 << 20)
            n, off = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            while len(buf) < 10:
                buf += s.recv(1 << 20)
            n, off = int.from_bytes(buf[2:10], "big"), 10
        while len(buf) < off + n:
            buf += s.recv(1 << 20)
        payload, buf = buf[off:off + n], buf[off + n:]
        if needle in payload:
            break
    s.close()


def poll():
    since = first - 1
    while True:
        v = json.loads(get(f"/poll?topics=**&since={since}&limit=1000"))
        since = v["next"]
        if not v.get("more"):
            break


for name, f in [("SSE", lambda: sse(False)), ("SSE envelope", lambda: sse(True)), ("WebSocket", ws), ("/poll JSON", poll)]:
    f()
    print(f"  after one {name} replay: RSS {rss_mib():.1f} MiB")
p.kill()
