"""Real, unmodified programs under flare-run against three replicas; the
replica serving them is killed with SIGKILL mid-run; each must finish with
exit status 0 and the output of a run without failure."""
import os
import signal
import subprocess
import sys
import time

from harness import (BUILD, all_alive, busiest_replica, check, client_env, library_stats,
                     rr_deployment, run, serving_replica, start_rr, wait_for)

# HTTP/1.1 keep-alive file server; each request waits 15 ms before any byte
# of the reply, so a kill lands between a request and its reply
HTTP_SERVER = r'''
import http.server, sys, time, os
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def send_head(self):
        time.sleep(0.015)
        return super().send_head()
    def log_message(self, *a):
        pass
os.chdir(sys.argv[2])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''

N_FILES = 40


def http_deployment():
    s = rr_deployment()
    start_rr(s, servers=False)
    www = os.path.join(s.dir, "www")
    os.makedirs(www)
    for i in range(N_FILES):
        with open(os.path.join(www, "f%02d.txt" % i), "w") as f:
            f.write(("file %d line\n" % i) * (200 + 37 * i))
    script = os.path.join(s.dir, "httpd.py")
    with open(script, "w") as f:
        f.write(HTTP_SERVER)
    s.http = lambda i: s.start("rr%d" % i, [BUILD + "/flare-run", "--shm", s.shm, "--",
                                            sys.executable, script, str(s.ports[i]), www])
    for i in range(s.n):
        s.http(i)
    wait_for(lambda: all_alive(s), 15, what="web replicas alive")
    expected = b"".join(open(os.path.join(www, "f%02d.txt" % i), "rb").read()
                        for i in range(N_FILES))
    urls = ["http://127.0.0.1:%d/f%02d.txt" % (s.svc, i) for i in range(N_FILES)]
    return s, urls, expected


def run_killing(s, cmd, after):
    """Runs cmd under flare-run, SIGKILLs the serving replica after `after`
    seconds, returns (rc, stdout, stderr, the library's counters)."""
    senv, stats = client_env(s)
    p = subprocess.Popen([BUILD + "/flare-run", "--shm", s.shm, "--"] + cmd,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, FLARE_LOG="info", **senv))
    start = time.monotonic()
    # a program slow to start (a sanitizer runtime, a loaded machine) is
    # given the time to connect: the kill must find it talking
    wait_for(lambda: busiest_replica(s) is not None or p.poll() is not None, 30,
             what="the program connected")
    time.sleep(max(0.1, after - (time.monotonic() - start)))
    # where the client really is (the table's first may have changed since
    # it connected), else the table's first
    victim = busiest_replica(s)
    s.kill("rr%d" % (victim if victim is not None else serving_replica(s)))
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err.decode(errors="replace"), library_stats(stats)


def test_curl_keepalive():
    s, urls, expected = http_deployment()
    rc, out, err, st = run_killing(s, ["curl", "-s", "--fail"] + urls, 0.3)
    check(rc == 0 and out == expected, "curl: rc %d, %d of %d bytes\n%s" %
          (rc, len(out), len(expected), err[-2000:]))
    # HTTP is framed: a kill while a request waits and a kill between two
    # requests (an idle connection at a reply boundary) are both healed by
    # flare on curl's one connection; curl never has to reconnect itself
    check(st["failovers"] > 0 and st["managed"] == 1,
          "healed by flare on one connection: %r %r" % (st, err[-500:]))


def test_wget_keepalive():
    s, urls, expected = http_deployment()
    rc, out, err, st = run_killing(s, ["wget", "-q", "-O", "-"] + urls, 0.3)
    check(rc == 0 and out == expected, "wget: rc %d, %d of %d bytes\n%s" %
          (rc, len(out), len(expected), err[-2000:]))


ASYNCIO_CLIENT = r'''
import asyncio, struct, sys
async def main(port, n):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    for i in range(n):
        req = struct.pack("<Q", i) + b"\0" * 20 + bytes((i + k) % 256 for k in range(36))
        w.write(req)
        await w.drain()
        rep = await r.readexactly(64)
        if rep[:12] != req[:12] or rep[28:] != req[28:]:
            raise SystemExit("request %d: wrong reply" % i)
    print("ok", n)
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
'''


def test_python_asyncio_epoll():
    s = rr_deployment()
    start_rr(s)
    script = os.path.join(s.dir, "aclient.py")
    with open(script, "w") as f:
        f.write(ASYNCIO_CLIENT)
    # back-to-back requests: the kill finds one outstanding (an idle
    # connection's EOF is passed through: see the README's limits)
    rc, out, err, st = run_killing(s, [sys.executable, script, str(s.svc), "20000"], 0.5)
    check(rc == 0 and out == b"ok 20000\n", "asyncio: rc %d %r %s" % (rc, out, err[-2000:]))
    check(st["failovers"] > 0, "a failover happened: %r %r" % (st, err[-500:]))


def test_native_epoll_edge_triggered():
    """A C client on one non-blocking connection driven by edge-triggered
    epoll: the heal is asynchronous (EAGAIN while the new socket connects,
    the request replayed once it is writable) and the registration follows
    the new socket."""
    s = rr_deployment()
    start_rr(s)
    rc, out, err, st = run_killing(s, [BUILD + "/bench/nbclient", "epoll", "127.0.0.1", str(s.svc),
                                   "60000"], 0.4)
    check(rc == 0 and b"requests=60000" in out, "epoll client: rc %d %r %s" % (rc, out,
                                                                             err[-1500:]))
    check(st["heals_async"] > 0, "healed asynchronously: %r %r" % (st, err[-600:]))


def redis_deployment():
    s = rr_deployment()
    start_rr(s, servers=False)

    def start(i):
        s.start("rr%d" % i, [BUILD + "/flare-run", "--shm", s.shm, "--", "redis-server", "--port",
                             str(s.ports[i]), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"])
        # the same key on every replica, so every answer is the same
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(s.ports[i]), "SET", "greeting",
                                         "hello-flare"], capture_output=True).stdout.strip()
                 == b"OK", 10, what="redis replica %d up" % i)
    for i in range(s.n):
        start(i)
    wait_for(lambda: all_alive(s), 15, what="redis replicas alive")
    return s


def test_redis_cli():
    s = redis_deployment()
    rc, out, err, st = run_killing(s, ["redis-cli", "-h", "127.0.0.1", "-p", str(s.svc), "-r", "1000",
                                   "-i", "0.001", "GET", "greeting"], 0.6)
    check(rc == 0 and out == b"hello-flare\n" * 1000,
          "redis-cli: rc %d, %d lines\n%s" % (rc, out.count(b"\n"), err[-1500:]))
    check(st["failovers"] > 0, "a failover happened: %r %r" % (st, err[-500:]))


def test_redis_benchmark():
    s = redis_deployment()
    rc, out, err, st = run_killing(s, ["redis-benchmark", "-h", "127.0.0.1", "-p", str(s.svc), "-c",
                                   "1", "-n", "20000", "-t", "ping,get", "-q"], 0.5)
    # timings differ from run to run; every test must complete
    done = out.decode(errors="replace").split("\r")[-1]
    check(rc == 0 and "GET:" in done and "requests per second" in done,
          "redis-benchmark: rc %d %r %s" % (rc, done, err[-1500:]))
    check(st["failovers"] > 0, "a failover happened: %r %r" % (st, err[-500:]))


if __name__ == "__main__":
    run([test_curl_keepalive, test_wget_keepalive, test_python_asyncio_epoll,
         test_native_epoll_edge_triggered, test_redis_cli, test_redis_benchmark])
