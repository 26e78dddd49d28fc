"""Protocol-aware healing with real programs and real servers: the serving
replica is SIGKILLed mid-run and every reply is checked against the right
answer (session state, pipelining, transactions, idempotency), with
counters on the servers proving what ran and that failures were injected."""
import os
import subprocess
import sys
import time

from harness import (BUILD, all_alive, check, client_env, connected_replicas, library_stats,
                     rr_deployment, run, serving_replica, start_rr, wait_for)


def redis_cli(port, *args, password=None):
    cmd = ["redis-cli", "-p", str(port)]
    if password:
        cmd += ["-a", password, "--no-auth-warning"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=10)


def redis_deployment(password=None, service_extra=""):
    """Three redis-server replicas under flare-run, k = "zero" in database 0
    and k = "one" in database 1 on each."""
    s = rr_deployment(service_extra=service_extra)
    start_rr(s, servers=False)

    def start(i):
        args = [BUILD + "/flare-run", "--shm", s.shm, "--", "redis-server", "--port",
                str(s.ports[i]), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if password:
            args += ["--requirepass", password]
        s.start("rr%d" % i, args)

        def loaded():
            a = redis_cli(s.ports[i], "SET", "k", "zero", password=password).stdout.strip()
            b = redis_cli(s.ports[i], "-n", "1", "SET", "k", "one",
                          password=password).stdout.strip()
            return a == "OK" and b == "OK"
        wait_for(loaded, 10, what="redis replica %d loaded" % i)
    s.redis = start
    for i in range(s.n):
        start(i)
    wait_for(lambda: all_alive(s), 15, what="redis replicas alive")
    return s


def run_killing(s, cmd, after, stdin=None):
    """cmd under flare-run; the serving replica SIGKILLed after `after` s."""
    victim = serving_replica(s)
    senv, stats = client_env(s)
    p = subprocess.Popen([BUILD + "/flare-run", "--shm", s.shm, "--"] + cmd,
                         stdin=subprocess.PIPE if stdin else None, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, FLARE_LOG="info", **senv))
    if stdin:
        p.stdin.write(stdin)
        p.stdin.close()
    time.sleep(after)
    if p.poll() is not None:
        raise AssertionError("%s ended before the kill (%.1f s): make the run longer"
                             % (cmd[0], after))
    s.kill("rr%d" % victim)
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err, library_stats(stats)


def test_redis_selected_database():
    """redis-cli -n 1: the replacement connection selects database 1 before
    the request is replayed; without it half the replies came from 0."""
    s = redis_deployment()
    rc, out, err, st = run_killing(s, ["redis-cli", "-p", str(s.svc), "-n", "1", "-r", "300",
                                       "-i", "0.01", "GET", "k"], 1.0)
    lines = out.split()
    check(rc == 0 and len(lines) == 300, "redis-cli: rc %d, %d lines %s" % (rc, len(lines),
                                                                            err[-800:]))
    wrong = [x for x in lines if x != "one"]
    check(not wrong, "%d replies from the wrong database: %r" % (len(wrong), wrong[:5]))
    check(st["failovers"] >= 1, "a heal happened: %r %s" % (st, err[-500:]))


def test_redis_password():
    """requirepass on every replica: AUTH is replayed, no NOAUTH after a heal."""
    s = redis_deployment(password="s3cret")
    rc, out, err, st = run_killing(s, ["redis-cli", "-p", str(s.svc), "-a", "s3cret",
                                       "--no-auth-warning", "-r", "300", "-i", "0.01", "GET",
                                       "k"], 1.0)
    lines = out.split()
    check(rc == 0 and len(lines) == 300 and set(lines) == {"zero"},
          "redis-cli: rc %d, %d lines, %r %s" % (rc, len(lines), sorted(set(lines))[:5],
                                                 err[-800:]))
    check(st["failovers"] >= 1, "a heal happened: %r" % st)


def test_redis_session_reply_must_match():
    """A replica where the session does not come back the same (database 1
    does not exist there) is not used: the heal goes to one where it does."""
    s = redis_deployment()
    victim = serving_replica(s)
    # one replica with a single database: SELECT 1 fails there
    other = (victim + 1) % s.n
    s.kill("rr%d" % other)
    s.start("rr%d" % other, [BUILD + "/flare-run", "--shm", s.shm, "--", "redis-server",
                             "--port", str(s.ports[other]), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--databases", "1"])
    wait_for(lambda: redis_cli(s.ports[other], "SET", "k", "zero").stdout.strip() == "OK", 10,
             what="the one-database replica")
    wait_for(lambda: all_alive(s), 15, what="replicas alive")
    rc, out, err, st = run_killing(s, ["redis-cli", "-p", str(s.svc), "-n", "1", "-r", "200",
                                       "-i", "0.01", "GET", "k"], 0.8)
    lines = out.split()
    check(rc == 0 and lines and set(lines) == {"one"},
          "every reply from database 1: rc %d %r %s" % (rc, sorted(set(lines))[:4], err[-800:]))


def test_redis_benchmark_pipelined():
    """redis-benchmark -P 16: every request not answered is replayed in
    order; the benchmark sees every reply once."""
    s = redis_deployment()
    rc, out, err, st = run_killing(s, ["redis-benchmark", "-p", str(s.svc), "-c", "1", "-P",
                                       "16", "-n", "2000000", "-t", "get", "-q"], 0.8)
    check(rc == 0 and "GET:" in out and "requests per second" in out,
          "redis-benchmark: rc %d %r %s" % (rc, out[-400:], err[-800:]))
    check(st["failovers"] >= 1 and st["replays"] >= 1, "healed with a replay: %r" % st)


PIPELINE_CLIENT = r'''
import socket, sys
# one pipelined batch: INCR a, BLPOP (blocks 1 s), INCR b; the server sends
# the first reply when BLPOP blocks, the test kills it while it blocks
port = int(sys.argv[1])
def cmd(*a):
    return ("*%d\r\n" % len(a) + "".join("$%d\r\n%s\r\n" % (len(x), x) for x in a)).encode()
c = socket.create_connection(("127.0.0.1", port))
f = c.makefile("rb")
c.sendall(cmd("INCR", "a") + cmd("BLPOP", "nothing", "1") + cmd("INCR", "b"))
print("first", f.readline().strip().decode(), flush=True)
print("then", f.readline().strip().decode(), f.readline().strip().decode(), flush=True)
'''


def kill_after_first_reply(s, client, marker):
    """Runs the Python client under flare-run, and once its output shows
    marker (its first reply) SIGKILLs the one replica it is connected to.
    Returns (its output lines, stderr, the library's counters, the victim)."""
    script = os.path.join(s.dir, "client.py")
    with open(script, "w") as f:
        f.write(client)
    senv, stats = client_env(s)
    out = os.path.join(s.dir, "client.out")
    with open(out, "w") as o:
        p = subprocess.Popen([BUILD + "/flare-run", "--shm", s.shm, "--", sys.executable,
                              script, str(s.svc)], stdout=o, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, FLARE_LOG="info", **senv))
    try:
        wait_for(lambda: marker in open(out).read(), 10, what="the first reply")
        serving = connected_replicas(s)
        check(len(serving) == 1, "one replica serves the client: %r" % serving)
    except Exception:
        p.kill()
        p.communicate()
        raise
    s.kill("rr%d" % serving[0])
    _, err = p.communicate(timeout=30)
    return open(out).read().splitlines(), err, library_stats(stats), serving[0]


def test_redis_pipeline_broken_midway():
    """A pipelined batch whose first reply the program already has: only
    the unanswered requests are replayed, in order, on the new replica;
    the answered one is neither delivered nor run again."""
    s = redis_deployment()
    got, err, st, victim = kill_after_first_reply(s, PIPELINE_CLIENT, "first")
    check(got == ["first :1", "then *-1 :1"], "replies %r %s" % (got, err[-1500:]))
    # on the replica that took over: b ran once, a never
    check(st["replays"] == 1, "one replay: %r" % st)
    other = [i for i in range(s.n) if i != victim]
    runs = {i: (redis_cli(s.ports[i], "GET", "a").stdout.strip(),
                redis_cli(s.ports[i], "GET", "b").stdout.strip()) for i in other}
    check(sorted(runs.values()) == [("", ""), ("", "1")], "a never ran again, b once: %r" % runs)


TXN_CLIENT = r'''
import socket, sys, time
# MULTI / INCR n / EXEC in a loop over one connection; prints how many
# EXECs were answered, and exits 3 on the first failure it sees
port, rounds = int(sys.argv[1]), int(sys.argv[2])
c = socket.create_connection(("127.0.0.1", port))
def cmd(*a):
    return ("*%d\r\n" % len(a) + "".join("$%d\r\n%s\r\n" % (len(x), x) for x in a)).encode()
f = c.makefile("rb")
done = 0
try:
    for i in range(rounds):
        c.sendall(cmd("MULTI"))
        assert f.readline() == b"+OK\r\n"
        c.sendall(cmd("INCR", "n"))
        assert f.readline() == b"+QUEUED\r\n"
        time.sleep(0.002)
        c.sendall(cmd("EXEC"))
        line = f.readline()
        assert line == b"*1\r\n", line
        f.readline()
        done += 1
except Exception as e:
    print("failed after %d: %r" % (done, e), flush=True)
    sys.exit(3)
print("done %d" % done, flush=True)
'''


def test_redis_subscriber_not_healed():
    """A subscribed connection is never healed (a new one would silently
    lack the subscriptions): redis-cli SUBSCRIBE sees the close as it would
    without flare, and ends."""
    s = redis_deployment()
    publisher = lambda: redis_cli(s.svc, "PUBLISH", "news", "hello")  # noqa: E731
    rc, out, err, st = run_killing(s, ["redis-cli", "-p", str(s.svc), "SUBSCRIBE", "news"], 0.8)
    check(rc != 0 or "closed" in out + err, "redis-cli saw the close: rc %d %r %s" % (
        rc, out[-200:], err[-400:]))
    check(st["failovers"] == 0, "no heal of a subscriber: %r" % st)
    check(publisher() is not None, "the service still answers")


def test_redis_transaction_not_healed():
    """Inside MULTI ... EXEC there is no heal: the failure surfaces to the
    client (as without flare), and no transaction ran twice."""
    s = redis_deployment()
    script = os.path.join(s.dir, "txn.py")
    with open(script, "w") as f:
        f.write(TXN_CLIENT)
    victim = serving_replica(s)
    rc, out, err, st = run_killing(s, [sys.executable, script, str(s.svc), "3000"], 0.8)
    check(rc == 3 and "failed after" in out, "the failure surfaced: rc %d %r %s" % (
        rc, out, err[-600:]))
    done = int(out.split()[2].rstrip(":"))
    # the transactions ran on the victim only (the new connection never got one)
    counts = [int(redis_cli(p, "GET", "n").stdout.strip() or 0)
              for i, p in enumerate(s.ports) if i != victim]
    check(sum(counts) == 0, "no transaction went to another replica: %r" % counts)
    check(done > 0, "transactions ran before the kill: %d" % done)


# The test web server: GET bodies are the same on every replica (chunked
# under /chunked/), after X-Delay seconds (default 15 ms); POST counts
# itself in COUNTS/NAME.post, then waits X-Delay (default 0.5 s).
HTTP_SERVER = r"""
import http.server, os, sys, time
port, name, counts = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def reply(self, code, data, chunked=False):
        self.send_response(code)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 700):
                piece = data[i:i + 700]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
    def do_GET(self):
        time.sleep(float(self.headers.get("X-Delay", "0.015")))
        data = ("the answer to %s\n" % self.path).encode() * 100
        self.reply(200, data, chunked=self.path.startswith("/chunked"))
    def do_POST(self):
        payload = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(os.path.join(counts, name + ".post"), "a") as f:
            f.write("x")
        time.sleep(float(self.headers.get("X-Delay", "0.5")))
        self.reply(201, b"created " + payload + b"\n")
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def http_deployment(service_extra=""):
    s = rr_deployment(service_extra=service_extra)
    start_rr(s, servers=False)
    script = os.path.join(s.dir, "web.py")
    with open(script, "w") as f:
        f.write(HTTP_SERVER)
    s.counts = os.path.join(s.dir, "counts")
    os.makedirs(s.counts)
    for i in range(s.n):
        s.start("rr%d" % i, [BUILD + "/flare-run", "--shm", s.shm, "--", sys.executable, script,
                             str(s.ports[i]), "A-%d" % (i + 1), s.counts])
    wait_for(lambda: all_alive(s), 15, what="web replicas alive")
    return s


def posts(s):
    """POSTs each replica ran, by replica index."""
    out = {}
    for i in range(s.n):
        try:
            out[i] = len(open(os.path.join(s.counts, "A-%d.post" % (i + 1))).read())
        except OSError:
            out[i] = 0
    return out


FIRST = "the answer to /first\n" * 100


def post_while_killing(s, extra, keepalive=True):
    """curl GETs, then POSTs on the same kept-alive connection (or only
    POSTs); the replica that received the POST is SIGKILLed while it works
    on it. Returns curl's exit code, output, the POST counts and the
    library's counters."""
    senv, stats = client_env(s)
    get = ["http://127.0.0.1:%d/first" % s.svc, "--next"] if keepalive else []
    p = subprocess.Popen([BUILD + "/flare-run", "--shm", s.shm, "--", "curl", "-s"] + get +
                         ["-X", "POST", "-d", "hello"] + extra +
                         ["http://127.0.0.1:%d/order" % s.svc],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, FLARE_LOG="info", **senv))
    try:
        wait_for(lambda: sum(posts(s).values()) == 1, 10, what="the POST received")
    except Exception:
        p.kill()
        p.communicate()
        raise
    victim = [i for i, n in posts(s).items() if n][0]
    s.kill("rr%d" % victim)
    out, err = p.communicate(timeout=30)
    time.sleep(0.7)  # a replayed POST would be counted by now
    return p.returncode, out, err, posts(s), library_stats(stats)


def test_http_post_not_replayed():
    """A POST the dead replica may have run surfaces as it would without
    flare (curl: empty reply, exit 52) and runs nowhere else. On a fresh
    connection: on a reused one curl itself sends the POST again after such
    a failure, with or without flare."""
    s = http_deployment()
    rc, out, err, counts, st = post_while_killing(s, [], keepalive=False)
    check(rc == 52 and out == "", "curl saw the failure: rc %d %r %s" % (rc, out[-80:],
                                                                       err[-600:]))
    check(sum(counts.values()) == 1, "the POST ran once: %r" % counts)
    check(st["passed_errors"] >= 1 and st["failovers"] == 0, "not healed: %r" % st)


def test_http_post_with_idempotency_key_replayed():
    """With an Idempotency-Key (the server can deduplicate) the POST is
    replayed on another replica and curl gets its answer."""
    s = http_deployment()
    rc, out, err, counts, st = post_while_killing(s, ["-H", "Idempotency-Key: order-1"])
    check(rc == 0 and out == FIRST + "created hello\n", "curl: rc %d %r %s" % (
        rc, out[-80:], err[-600:]))
    check(sum(counts.values()) == 2 and st["replays"] == 1 and st["managed"] == 1,
          "replayed once by flare on the kept-alive connection: %r %r" % (counts, st))


def test_http_replay_unsafe_service():
    """replay_unsafe = true: the service says its POSTs may run twice."""
    s = http_deployment(service_extra="replay_unsafe = true;")
    rc, out, err, counts, st = post_while_killing(s, [])
    check(rc == 0 and out == FIRST + "created hello\n", "curl: rc %d %r %s" % (
        rc, out[-80:], err[-600:]))


HTTP_PIPELINE = r"""
import socket, sys
# three GETs pipelined on one connection (the second one slow); prints
# each reply's status and body length as it is read
port = int(sys.argv[1])
c = socket.create_connection(("127.0.0.1", port))
req = lambda path, delay: ("GET %s HTTP/1.1\r\nHost: x\r\nX-Delay: %s\r\n\r\n" % (path, delay)).encode()
c.sendall(req("/one", "0") + req("/two", "1") + req("/three", "0"))
f = c.makefile("rb")
for i in range(3):
    status = f.readline()
    length = 0
    while True:
        h = f.readline()
        if h in (b"\r\n", b""):
            break
        if h.lower().startswith(b"content-length:"):
            length = int(h.split(b":")[1])
    body = f.read(length)
    print(status.split()[1].decode() if status else "none", len(body),
          body.split(b"\n")[0].decode(), flush=True)
"""


def test_http_pipelined_gets():
    """Three pipelined GETs, the replica killed after the first reply: the
    second and third are replayed, in order, the first never again."""
    s = http_deployment()
    lines, err, st, _ = kill_after_first_reply(s, HTTP_PIPELINE, "/one")
    want = ["200 1900 the answer to /one", "200 1900 the answer to /two",
            "200 2100 the answer to /three"]
    check(lines == want, "replies %r %s" % (lines, err[-1200:]))
    check(st["replays"] == 1, "one replay: %r" % st)


IDLE_CLIENT = r"""
import http.client, select, socket, sys
# http.client on one keep-alive connection: a GET, then an idle wait in
# select() (the test kills the replica meanwhile), then the check urllib3
# makes before reusing a pooled connection (readable with nothing to read
# means dropped), then another GET.
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for path in ("/before", "/after"):
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    print(path, r.status, len(body), flush=True)
    if path == "/before":
        readable, _, _ = select.select([c.sock], [], [], 1.0)
        if readable and c.sock.recv(1, socket.MSG_PEEK) == b"":
            print("dropped while idle", flush=True)
            sys.exit(3)
"""


def test_http_idle_connection_healed():
    """The replica dies while a keep-alive connection is idle between two
    requests: the next request goes to a live replica on the same socket,
    where a client without retries would have failed."""
    s = http_deployment()
    lines, err, st, _ = kill_after_first_reply(s, IDLE_CLIENT, "/before")
    check(lines == ["/before 200 2200", "/after 200 2100"], "replies %r %s" % (lines, err[-1200:]))
    check(st["managed"] == 1 and st["failovers"] >= 1, "healed on its one connection: %r" % st)


def test_curl_chunked_keepalive():
    """curl over one keep-alive connection, chunked replies: the output is
    the same as without a failure."""
    s = http_deployment()
    urls = ["http://127.0.0.1:%d/chunked/%02d" % (s.svc, i) for i in range(40)]
    expected = "".join(("the answer to /chunked/%02d\n" % i) * 100 for i in range(40))
    rc, out, err, st = run_killing(s, ["curl", "-s", "--fail"] + urls, 0.3)
    check(rc == 0 and out == expected, "curl: rc %d, %d of %d bytes %s" % (
        rc, len(out), len(expected), err[-800:]))
    check(st["failovers"] >= 1 and st["managed"] == 1,
          "healed by flare on its one connection: %r" % st)


if __name__ == "__main__":
    run([test_redis_selected_database, test_redis_password, test_redis_session_reply_must_match,
         test_redis_benchmark_pipelined, test_redis_pipeline_broken_midway,
         test_redis_subscriber_not_healed, test_redis_transaction_not_healed,
         test_http_post_not_replayed,
         test_http_post_with_idempotency_key_replayed, test_http_replay_unsafe_service,
         test_http_pipelined_gets, test_http_idle_connection_healed,
         test_curl_chunked_keepalive])
