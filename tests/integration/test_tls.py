"""TLS sessions healed inside the program's OpenSSL: real clients (curl,
redis-cli, psql, Python's ssl) against real TLS servers (nginx,
redis-server, PostgreSQL) the test starts with certificates from a CA it
makes; the serving replica is SIGKILLed mid-run. A replica whose
certificate does not match the session's is never used."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from harness import (BUILD, accepts, all_alive, busiest_replica, check, client_env, library_stats,
                     rr_deployment, run, start_rr, wait_for)
from tlscerts import make_ca, make_cert

N_FILES = 200

NGINX_TLS = """daemon off; master_process off; worker_processes 1;
pid {dir}/nginx{i}.pid; error_log {dir}/nginx{i}.err warn;
events {{ worker_connections 1024; }}
http {{
  access_log {dir}/nginx{i}.access;
  client_body_temp_path {dir}/t{i}/body; proxy_temp_path {dir}/t{i}/proxy;
  fastcgi_temp_path {dir}/t{i}/fcgi; uwsgi_temp_path {dir}/t{i}/uwsgi;
  scgi_temp_path {dir}/t{i}/scgi;
  keepalive_requests 1000000; keepalive_timeout 60s;
  server {{
    listen 127.0.0.1:{port} ssl; server_name svc.test;
    ssl_certificate {cert}; ssl_certificate_key {key};
    root {dir}/www;
    location /slow/ {{ proxy_pass http://127.0.0.1:{backend}/; proxy_http_version 1.1; }}
  }}
}}
"""

# the replicas' slow backend: each request waits before its reply, so that
# a kill of the nginx in front lands between a request and its reply
BACKEND = r'''
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/hold":
            # the request the test kills its replica under
            open(sys.argv[2] + ".hold", "w").close()
            time.sleep(1.0)
        time.sleep(0.002)
        body = (self.path + "\n").encode() * 20
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        with open(sys.argv[2], "a") as f:
            f.write("p")
        time.sleep(0.5)
        body = b"created\n"
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''


def nginx_tls_deployment(wrong=(), primary=False, service_extra=""):
    """Three nginx replicas with TLS, each in front of a slow backend of its
    own; the replicas in `wrong` present a certificate for another name
    (signed by the same CA). With primary, the service address is A-1's."""
    s = rr_deployment(name="nginx", service_extra='protocol = "http"; ' + service_extra,
                      primary=primary)
    start_rr(s, servers=False)
    s.ca = make_ca(s.dir)
    good = make_cert(s.dir, "svc", "svc.test")
    other = make_cert(s.dir, "other", "other.test")
    www = os.path.join(s.dir, "www")
    os.makedirs(www)
    for k in range(N_FILES):
        with open(os.path.join(www, "f%03d.txt" % k), "w") as f:
            f.write(("file %d line\n" % k) * (20 + k % 50))
    script = os.path.join(s.dir, "backend.py")
    with open(script, "w") as f:
        f.write(BACKEND)
    from deploy import free_ports
    taken = set(s.ports) | {s.svc}
    backends = [p for p in free_ports(s.n + 8) if p not in taken][:s.n]
    s.posts = [os.path.join(s.dir, "posts%d" % i) for i in range(s.n)]
    for i in range(s.n):
        os.makedirs(os.path.join(s.dir, "t%d" % i), exist_ok=True)
        cert, key = other if i in wrong else good
        conf = os.path.join(s.dir, "nginx%d.conf" % i)
        with open(conf, "w") as f:
            f.write(NGINX_TLS.format(dir=s.dir, i=i, port=s.ports[i], cert=cert, key=key,
                                     backend=backends[i]))
        s.start("be%d" % i, [sys.executable, script, str(backends[i]), s.posts[i]])
        s.start("rr%d" % i, [BUILD + "/flare-run", "--shm", s.shm, "--", "nginx", "-c", conf,
                             "-p", s.dir])
    wait_for(lambda: all_alive(s) and all(accepts(p) for p in backends), 20,
             what="nginx replicas and their backends up")
    s.files = [open(os.path.join(www, "f%03d.txt" % k), "rb").read() for k in range(N_FILES)]
    return s


def held(s):
    """The replica whose backend holds the /hold request, or None."""
    for i in range(s.n):
        if os.path.exists(s.posts[i] + ".hold"):
            return i
    return None


def kill_holder(s, p, what="the held request"):
    """SIGKILLs the replica holding the /hold request once it does; p (the
    client) is killed when none comes."""
    try:
        wait_for(lambda: held(s) is not None, 30, what=what)
    except Exception:
        p.kill()
        p.communicate()
        raise
    victim = held(s)
    s.kill("rr%d" % victim)
    return victim


def curl(s, urls, extra=(), kill_held=False):
    """curl -v over HTTPS to the service under flare-run (the CA trusted,
    svc.test resolved to the service address); with kill_held, SIGKILLs the
    replica holding the /hold request. Returns (rc, stdout, stderr,
    counters)."""
    senv, stats = client_env(s)
    cmd = [BUILD + "/flare-run", "--shm", s.shm, "--", "curl", "-sS", "-v", "--http1.1",
           "--cacert", s.ca, "--resolve", "svc.test:%d:127.0.0.1" % s.svc] + list(extra) + urls
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, FLARE_LOG="info", **senv))
    if kill_held:
        kill_holder(s, p)
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err.decode(errors="replace"), library_stats(stats)


def test_curl_https_keepalive_healed():
    """GETs over one kept-alive HTTPS connection, the serving nginx killed
    mid-run: every body right, healed by flare inside curl's own session
    (curl connected once and never retried)."""
    s = nginx_tls_deployment()
    paths = ["f%03d" % k for k in range(N_FILES // 2)] + ["hold"] + \
        ["f%03d" % k for k in range(N_FILES // 2, N_FILES)]
    urls = ["https://svc.test:%d/slow/%s" % (s.svc, p) for p in paths]
    rc, out, err, st = curl(s, urls, kill_held=True)
    expected = b"".join(("/%s\n" % p).encode() * 20 for p in paths)
    check(rc == 0 and out == expected, "curl: rc %d, %d of %d bytes\n%s" % (
        rc, len(out), len(expected), err[-2500:]))
    connects = len(re.findall(r"Connected to ", err))
    check(connects == 1 and "retrying" not in err.lower() and "Connection died" not in err,
          "curl connected once and never retried: %d connects\n%s" % (connects, err[-1500:]))
    check(st["tls_linked"] == 1 and st["tls_heals"] >= 1 and st["failovers"] >= 1,
          "healed by flare: %r" % dict(st))


def posts(s):
    out = []
    for i in range(s.n):
        try:
            out.append(len(open(s.posts[i]).read()))
        except OSError:
            out.append(0)
    return out


def test_s_client_goes_on_after_a_heal():
    """openssl s_client -quiet -ign_eof, one keep-alive session, requests
    typed one after another; the replica serving the second dies while it
    is held. After the heal, s_client asks its own SSL whether the
    handshake is done before it watches its terminal again: the state
    queries answer for the session in use, and every later request goes
    out and is answered in order (it stopped watching anything before)."""
    s = nginx_tls_deployment()
    senv, stats = client_env(s)
    p = subprocess.Popen([BUILD + "/flare-run", "--shm", s.shm, "--", "openssl", "s_client",
                          "-quiet", "-ign_eof", "-connect", "127.0.0.1:%d" % s.svc,
                          "-servername", "svc.test", "-CAfile", s.ca],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, FLARE_LOG="info", **senv))
    paths = ["a", "hold", "b", "c", "d"]
    out = []
    reader = threading.Thread(target=lambda: out.append(p.stdout.read()), daemon=True)
    reader.start()

    def feed():
        for path in paths:
            p.stdin.write(b"GET /slow/%s HTTP/1.1\r\nHost: svc.test\r\n\r\n" % path.encode())
            p.stdin.flush()
            time.sleep(0.4)
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    kill_holder(s, p)
    feeder.join(10)
    time.sleep(2.5)  # the last replies (0.3 s each, held ones 1 s)
    p.kill()
    p.wait()
    reader.join(5)
    text = (out[0] if out else b"").decode(errors="replace")
    err = p.stderr.read().decode(errors="replace")
    got = [line[1:] for line in text.splitlines() if line.startswith("/")][::20]
    check(got == paths, "replies in order %s (want %s): %s" % (got, paths, err[-800:]))
    check(err.count("a new TLS session") == 1, "one TLS heal: %s" % err[-800:])


def test_curl_https_post_not_replayed():
    """A POST the killed replica's backend received surfaces as it would
    without flare, and runs nowhere else."""
    s = nginx_tls_deployment()
    senv, stats = client_env(s)
    p = subprocess.Popen([BUILD + "/flare-run", "--shm", s.shm, "--", "curl", "-sS", "--http1.1",
                          "--cacert", s.ca, "--resolve", "svc.test:%d:127.0.0.1" % s.svc,
                          "-X", "POST", "-d", "hello", "https://svc.test:%d/slow/order" % s.svc],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, FLARE_LOG="info", **senv))
    try:
        wait_for(lambda: sum(posts(s)) == 1, 20, what="the POST received")
    except Exception:
        p.kill()
        p.communicate()
        raise
    s.kill("rr%d" % [i for i, n in enumerate(posts(s)) if n][0])
    out, err = p.communicate(timeout=30)
    time.sleep(0.8)  # a replayed POST would have reached a backend by now
    st = library_stats(stats)
    check(p.returncode != 0 and out == "", "curl saw the failure: rc %d %r %s" % (
        p.returncode, out, err[-600:]))
    check(sum(posts(s)) == 1, "the POST ran once: %r" % posts(s))
    check(st["tls_linked"] == 1 and st["tls_heals"] == 0 and st["passed_errors"] >= 1,
          "not healed: %r" % dict(st))


BLOCKING_POST = r"""
import http.client, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx)  # blocking
c.request("GET", "/slow/f000")  # the session's first exchange, answered
c.getresponse().read()
c.request("POST", "/slow/order", body=b"hello")  # 0.5 s to its answer
r = c.getresponse()
print(r.status, r.read().decode().strip())
"""


def test_tls_slow_post_left_alone():
    """request_timeout_ms passes while a POST waits (a blocking read) for
    its slow reply: a POST is not replayed, so the library leaves the
    session's socket as it is and the answer comes, as without flare (it
    used to shut the socket for reading, and the POST failed)."""
    s = nginx_tls_deployment(service_extra="request_timeout_ms = 150;")
    script = os.path.join(s.dir, "post.py")
    with open(script, "w") as f:
        f.write(BLOCKING_POST)
    senv, stats = client_env(s)
    r = subprocess.run([BUILD + "/flare-run", "--shm", s.shm, "--", sys.executable, script,
                        str(s.svc), s.ca], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, FLARE_LOG="info", **senv))
    st = library_stats(stats)
    check(r.returncode == 0 and r.stdout.strip() == "201 created",
          "python: rc %d %r %s" % (r.returncode, r.stdout, r.stderr[-800:]))
    check(sum(posts(s)) == 1 and st["tls_linked"] == 1 and st["tls_heals"] == 0 and
          "shut for reading" not in r.stderr,
          "the POST ran once, its session untouched: %r %r" % (posts(s), dict(st)))


def test_tls_replica_with_another_certificate_refused():
    """Every replica curl could be moved to presents a certificate for
    another name, from the same CA: OpenSSL's own check passes it (curl
    checks the name itself, after its handshake), flare's does not. None
    is used: no request reaches them, and the failure surfaces."""
    s = nginx_tls_deployment(wrong=(1, 2), primary=True)
    paths = ["f%03d" % k for k in range(20)] + ["hold"] + ["f%03d" % k for k in range(20, 40)]
    urls = ["https://svc.test:%d/slow/%s" % (s.svc, p) for p in paths]
    rc, out, err, st = curl(s, urls, kill_held=True)
    check(rc != 0, "curl saw the failure: rc %d\n%s" % (rc, err[-1500:]))
    check(st["tls_heals"] == 0 and st["tls_refused"] >= 2,
          "both replicas refused by flare: %r" % dict(st))
    check("presents another certificate" in err, "refused for its certificate: %s" % err[-1500:])
    for i in (1, 2):
        log = open(os.path.join(s.dir, "nginx%d.access" % i)).read()
        check("GET" not in log and "POST" not in log,
              "no request reached A-%d: %r" % (i + 1, log[-300:]))


# ---- Redis with TLS ----

def redis_tls_deployment(password, service_extra="", primary=False):
    """Three redis-server replicas serving TLS only, with requirepass, that
    require a client certificate (redis-cli's, from the test's CA); k is
    "zero" in database 0 and "one" in database 1 on each."""
    s = rr_deployment(name="redis", service_extra=service_extra, primary=primary)
    start_rr(s, servers=False)
    s.ca = make_ca(s.dir)
    cert, key = make_cert(s.dir, "svc", "svc.test")
    ccert, ckey = make_cert(s.dir, "client", "client.test", ip=None)
    s.cli = ["redis-cli", "--tls", "--cacert", s.ca, "--sni", "svc.test", "--cert", ccert,
             "--key", ckey, "-a", password, "--no-auth-warning"]
    for i in range(s.n):
        s.start("rr%d" % i, [BUILD + "/flare-run", "--shm", s.shm, "--", "redis-server", "--port",
                             "0", "--tls-port", str(s.ports[i]), "--bind", "127.0.0.1",
                             "--tls-cert-file", cert, "--tls-key-file", key,
                             "--tls-ca-cert-file", s.ca, "--tls-auth-clients", "yes",
                             "--requirepass", password, "--save", "", "--appendonly", "no"])

        def loaded(i=i):
            run_ = lambda *a: subprocess.run(s.cli + ["-p", str(s.ports[i])] + list(a),
                                             capture_output=True, text=True, timeout=10)
            return (run_("SET", "k", "zero").stdout.strip() == "OK" and
                    run_("-n", "1", "SET", "k", "one").stdout.strip() == "OK")
        wait_for(loaded, 15, what="redis replica %d loaded" % i)
    wait_for(lambda: all_alive(s), 15, what="redis replicas alive")
    return s


def redis_cli_killing(s, stop=False):
    """redis-cli --tls -n 1 -a ... -r 300 GET k under flare-run; the serving
    replica SIGKILLed (or, with stop, SIGSTOPped: it hangs) 1 s in.
    Returns (rc, stdout lines, stderr, counters)."""
    senv, stats = client_env(s)
    p = subprocess.Popen([BUILD + "/flare-run", "--shm", s.shm, "--"] + s.cli +
                         ["-p", str(s.svc), "-n", "1", "-r", "300", "-i", "0.01", "GET", "k"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, FLARE_LOG="debug", **senv))
    time.sleep(1.0)
    check(p.poll() is None, "redis-cli ended before the kill")
    v = busiest_replica(s)
    v = v if v is not None else 0
    if stop:
        s.procs["rr%d" % v].send_signal(signal.SIGSTOP)
    else:
        s.kill("rr%d" % v)
    try:
        out, err = p.communicate(timeout=120)
    finally:
        if stop:
            s.procs["rr%d" % v].send_signal(signal.SIGCONT)
    return p.returncode, out.split(), err, library_stats(stats)


def test_redis_cli_tls_session_replayed():
    """redis-cli --tls -n 1 -a, with a client certificate the replicas
    require: a heal makes a new TLS session (the program's context's
    certificate offered again), replays AUTH and SELECT 1 through it, then
    the GET: every reply is database 1's, and no NOAUTH."""
    s = redis_tls_deployment("s3cret")
    rc, lines, err, st = redis_cli_killing(s)
    check(rc == 0 and len(lines) == 300 and set(lines) == {"one"},
          "redis-cli: rc %d, %d lines, %r\n%s" % (rc, len(lines), sorted(set(lines))[:5],
                                                  err[-1500:]))
    check(st["tls_linked"] == 1 and st["tls_heals"] >= 1 and st["managed"] == 1,
          "healed by flare on redis-cli's one connection: %r\n%s" % (dict(st), err[-800:]))
    # no key material in what the library logs (at debug) or counts
    logs = err + "".join(open(s.log("rr%d" % i), errors="replace").read() for i in range(s.n))
    for name in ("client.key", "svc.key"):
        body = [l for l in open(os.path.join(s.dir, name)).read().splitlines()
                if l and not l.startswith("-----")]
        check(body and not any(l in logs for l in body), "%s's key bytes logged" % name)


def test_redis_cli_tls_hung_replica():
    """The serving replica hangs (SIGSTOP: its kernel still acknowledges,
    nothing answers). request_timeout_ms passes; the library cannot move a
    TLS session's socket, so it shuts its reading side: OpenSSL meets the
    end in redis-cli's blocking read, and the session is healed there."""
    s = redis_tls_deployment("s3cret", service_extra="request_timeout_ms = 400;")
    rc, lines, err, st = redis_cli_killing(s, stop=True)
    check(rc == 0 and len(lines) == 300 and set(lines) == {"one"},
          "redis-cli: rc %d, %d lines, %r\n%s" % (rc, len(lines), sorted(set(lines))[:5],
                                                  err[-1500:]))
    check(st["tls_heals"] >= 1 and st["request_timeouts"] >= 1 and "shut for reading" in err,
          "healed after the timeout: %r\n%s" % (dict(st), err[-800:]))


def test_redis_cli_tls_next_replicas_hung():
    """A-1 dies while A-2 and A-3 accept and never answer (SIGSTOPped).
    redis-cli blocks, so its own call makes the whole heal: each hung
    replica's handshake is given up after twice the connect timeout, and
    the failure surfaces in bounded time instead of a read that never
    ends."""
    s = redis_tls_deployment("s3cret", primary=True)
    senv, stats = client_env(s)
    errlog = os.path.join(s.dir, "redis-cli.err")
    with open(errlog, "w") as ef:
        p = subprocess.Popen([BUILD + "/flare-run", "--shm", s.shm, "--"] + s.cli +
                             ["-p", str(s.svc), "-n", "1", "-r", "200", "-i", "0.01", "GET",
                              "k"], stdout=subprocess.DEVNULL, stderr=ef,
                             env=dict(os.environ, FLARE_LOG="info", **senv))
    hung = [s.procs["rr1"], s.procs["rr2"]]
    try:
        time.sleep(0.8)
        for h in hung:
            h.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        s.kill("rr0")
        gave_up = lambda: "no replica could take over the TLS session" in open(errlog).read()
        wait_for(gave_up, 10, what="the heal given up")
        took = time.monotonic() - t0
    finally:
        for h in hung:
            h.send_signal(signal.SIGCONT)
        p.kill()
        p.wait()
    err = open(errlog).read()
    print("     both hung replicas left, the failure surfaced after %.2f s" % took)
    check(err.count("not used: no handshake in time") == 2,
          "each hung replica left for its silence: %s" % err[-1500:])
    # two attempts of 2 x 200 ms each, and the kill reaching the client
    check(took < 3.0, "bounded: %.2f s" % took)


# ---- Python's ssl, non-blocking, over asyncio ----

ASYNCIO_TLS = r'''
import asyncio, re, socket, ssl, sys

async def main(port, ca, paths):
    loop = asyncio.get_running_loop()
    ctx = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setblocking(False)
    s = ctx.wrap_socket(raw, server_hostname="svc.test", do_handshake_on_connect=False)

    async def ready(add, remove):
        fut = loop.create_future()
        add(s.fileno(), lambda: fut.done() or fut.set_result(None))
        try:
            await asyncio.wait_for(fut, 30)
        finally:
            remove(s.fileno())

    async def io(fn, *a):
        while True:
            try:
                return fn(*a)
            except ssl.SSLWantReadError:
                await ready(loop.add_reader, loop.remove_reader)
            except ssl.SSLWantWriteError:
                await ready(loop.add_writer, loop.remove_writer)

    await io(s.do_handshake)
    buf = b""
    for p in paths:
        req = ("GET /slow/%s HTTP/1.1\r\nHost: svc.test\r\n\r\n" % p).encode()
        sent = 0
        while sent < len(req):
            sent += await io(s.send, req[sent:])
        while b"\r\n\r\n" not in buf:
            more = await io(s.recv, 65536)
            if not more:
                sys.exit("EOF before the reply to " + p)
            buf += more
        head, buf = buf.split(b"\r\n\r\n", 1)
        n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        while len(buf) < n:
            more = await io(s.recv, 65536)
            if not more:
                sys.exit("EOF inside the reply to " + p)
            buf += more
        body, buf = buf[:n], buf[n:]
        if body != ("/%s\n" % p).encode() * 20:
            sys.exit("wrong body for %s: %r" % (p, body[:60]))
    print("ok", len(paths))

asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3:]))
'''


def test_python_ssl_nonblocking_asyncio():
    """Python's ssl on a non-blocking socket in asyncio's event loop
    (epoll): SSLWantReadError and SSLWantWriteError while the heal goes on,
    never a blocked loop; every body checked. One replica presents a
    certificate for another name: Python's own host name check (in
    OpenSSL's verification parameters, copied to the new session) fails
    there, so it is never used."""
    s = nginx_tls_deployment(wrong=(1,), primary=True)
    script = os.path.join(s.dir, "tlsclient.py")
    with open(script, "w") as f:
        f.write(ASYNCIO_TLS)
    paths = ["f%03d" % k for k in range(60)] + ["hold"] + ["f%03d" % k for k in range(60, 120)]
    senv, stats = client_env(s)
    p = subprocess.Popen([BUILD + "/flare-run", "--shm", s.shm, "--", sys.executable, script,
                          str(s.svc), s.ca] + paths, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, FLARE_LOG="info", **senv))
    kill_holder(s, p)
    out, err = p.communicate(timeout=60)
    st = library_stats(stats)
    check(p.returncode == 0 and out.strip() == "ok %d" % len(paths),
          "python: rc %d %r\n%s" % (p.returncode, out, err[-1500:]))
    check(st["tls_heals"] >= 1 and st["heals_async"] >= 1 and st["managed"] == 1,
          "healed without blocking, on its one connection: %r" % dict(st))
    log = open(os.path.join(s.dir, "nginx1.access")).read()
    check("GET" not in log, "no request reached the replica with another name: %r" % log[-300:])
    if st["tls_refused"]:
        check("A-2 not used: its TLS handshake failed: hostname mismatch" in err,
              "A-2 refused by the program's own verification: %s" % err[-1200:])


# ---- TLS libraries flare does not interpose: the socket rules ----

NODE_HTTPS = r"""
const https = require('https'), fs = require('fs');
const [port, ca, ...paths] = process.argv.slice(2);
const agent = new https.Agent({keepAlive: true, maxSockets: 1});
let i = 0, got = 0;
function next() {
  if (i === paths.length) { console.log('ok ' + got); process.exit(0); }
  const p = paths[i++];
  https.get({host: '127.0.0.1', port: +port, path: '/slow/' + p, agent, ca: fs.readFileSync(ca)},
    res => { let b = ''; res.on('data', d => b += d); res.on('end', () => {
      if (b !== ('/' + p + '\n').repeat(20)) { console.log('wrong ' + p); process.exit(2); }
      got++; next(); }); })
    .on('error', e => { console.log('error after ' + got + ': ' + e.code); process.exit(1); });
}
next();
"""


def test_other_tls_libraries_keep_the_socket_rules():
    """wget (GnuTLS) and Node.js (its own OpenSSL, linked in): no OpenSSL
    call of theirs reaches the library, so their sessions are never linked:
    a kill while a request is held surfaces as without flare."""
    s = nginx_tls_deployment()
    script = os.path.join(s.dir, "https.js")
    with open(script, "w") as f:
        f.write(NODE_HTTPS)
    paths = ["f%03d" % k for k in range(10)] + ["hold"] + ["f%03d" % k for k in range(10, 20)]
    programs = {
        "wget": ["wget", "-q", "-O", "-", "--tries=1", "--ca-certificate=" + s.ca] +
                ["https://127.0.0.1:%d/slow/%s" % (s.svc, p) for p in paths],
        "node": ["node", script, str(s.svc), s.ca] + paths,
    }
    for name, cmd in programs.items():
        for path in s.posts:
            if os.path.exists(path + ".hold"):
                os.unlink(path + ".hold")
        senv, stats = client_env(s)
        p = subprocess.Popen([BUILD + "/flare-run", "--shm", s.shm, "--"] + cmd,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, FLARE_LOG="info", **senv))
        v = kill_holder(s, p, what="%s's held request" % name)
        out, err = p.communicate(timeout=60)
        st = library_stats(stats)
        check(p.returncode != 0, "%s: the failure surfaced: rc %d %r" % (name, p.returncode,
                                                                          out[-200:]))
        # (a later connection of the program may be healed before the
        # server's first byte: its ClientHello replayed, the socket rule)
        check(st["tls_linked"] == 0 and st["tls_heals"] == 0 and st["passed_errors"] >= 1,
              "%s: not linked, the session's failure passed through: %r" % (name, dict(st)))
        s.start("rr%d" % v, [BUILD + "/flare-run", "--shm", s.shm, "--", "nginx", "-c",
                             os.path.join(s.dir, "nginx%d.conf" % v), "-p", s.dir])
        wait_for(lambda: all_alive(s), 20, what="the replica back")


# ---- PostgreSQL with sslmode=require ----

def test_psql_sslmode_require_surfaces():
    """psql with sslmode=require: PostgreSQL's TLS starts after a plaintext
    SSLRequest, so the session is not the connection's alone and is not
    linked; a crash after startup surfaces as without flare (same exit
    code, no query replayed), as for plaintext."""
    import test_clients as tc
    if not tc.pg_available():
        raise AssertionError("PostgreSQL 15 server binaries not installed (scripts/deps.sh)")
    ca_dir = tempfile.mkdtemp(prefix="flare-pgca-")
    try:
        make_ca(ca_dir)
        s = tc.pg_deployment(ssl=make_cert(ca_dir, "svc", "svc.test"))
    finally:
        shutil.rmtree(ca_dir, ignore_errors=True)
    try:
        victim = tc.serving_replica(s)
        sql = os.path.join(s.dir, "slow.sql")
        with open(sql, "w") as f:
            f.write("SELECT pg_sleep(0.02);\n" * 400)
        env = dict(tc.PG_ENV, PGSSLMODE="require")
        res = {}
        for preload in (False, True):
            s.restart_pg(victim)
            port = s.svc if preload else s.ports[victim]
            res[preload] = tc.run_killing(s, ["psql", "-X", "-q", "-f", sql, "-h", "127.0.0.1",
                                              "-p", str(port)], 1.0, victim=victim,
                                          kill=tc.pg_kill(s), env=env, preload=preload)
        direct, flare = res[False], res[True]
        check(flare[0] == direct[0] and flare[0] != 0, "psql: exit %d with flare, %d without\n%s"
              % (flare[0], direct[0], flare[2][-1500:]))
        check(flare[3]["replays"] == 0 and flare[3]["tls_linked"] == 0 and
              flare[3]["tls_heals"] == 0, "not linked, nothing replayed: %r" % dict(flare[3]))
        check("began with other bytes" in flare[2], "said why: %s" % flare[2][-1500:])
        check("SSL" in direct[2] or "server closed" in direct[2], "psql's own error: %r" %
              direct[2][-400:])
    finally:
        tc.pg_stop(s)


# ---- a TLS record whose body comes after its header ----

# the replica: each reply one TLS record, its 5-byte header written alone
# and the rest 150 ms later (SSLObject over memory BIOs: the test decides
# where TCP's segments end)
SPLIT_SERVER = r"""
import socket, ssl, sys, threading, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(16)

def serve(c):
    rb, wb = ssl.MemoryBIO(), ssl.MemoryBIO()
    t = ctx.wrap_bio(rb, wb, server_side=True)
    def flush(split):
        out = wb.read()
        if split and len(out) > 5:
            c.sendall(out[:5])
            time.sleep(0.15)
            out = out[5:]
        c.sendall(out)
    def more():
        d = c.recv(65536)
        if not d:
            raise EOFError
        rb.write(d)
    try:
        while True:
            try:
                t.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush(False)
                more()
        flush(False)
        line = b""
        while True:
            try:
                line += t.read(65536)
            except ssl.SSLWantReadError:
                flush(False)
                more()
                continue
            while b"\n" in line:
                req, line = line.split(b"\n", 1)
                t.write(b"x" * int(req.split()[1]) + b"\n")
                flush(True)
    except (EOFError, OSError, ssl.SSLError):
        c.close()

while True:
    c, _ = ls.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

def test_tls_record_body_after_its_header():
    """A blocking SSL_read whose record's body arrives 150 ms after its
    header: the library reads the rest of a record without a wake
    registration when it is there (MSG_DONTWAIT), and when it is not, the
    program's read still waits for it, as without flare (never an EAGAIN
    a blocking socket would not give)."""
    s = rr_deployment(name="split")
    start_rr(s, servers=False)
    ca = make_ca(s.dir)
    cert, key = make_cert(s.dir, "svc", "svc.test")
    server = os.path.join(s.dir, "split_server.py")
    with open(server, "w") as f:
        f.write(SPLIT_SERVER)
    for i in range(s.n):
        s.start("rr%d" % i, [sys.executable, server, str(s.ports[i]), cert, key])
    wait_for(lambda: all_alive(s), 15, what="split replicas alive")
    client = [BUILD + "/tests/progs/tlsread", ca, "svc.test"]
    direct = subprocess.run(client + [str(s.ports[0]), "100", "3000", "7"], capture_output=True,
                            text=True, timeout=30)
    senv, stats = client_env(s)
    r = subprocess.run([BUILD + "/flare-run", "--shm", s.shm, "--"] + client +
                       [str(s.svc), "100", "3000", "7"], capture_output=True, text=True,
                       timeout=30, env=dict(os.environ, **senv))
    st = library_stats(stats)
    want = "101 True True\n3001 True True\n8 True True\n"
    check(direct.stdout == want, "without flare: %r %s" % (direct.stdout, direct.stderr[-500:]))
    check(r.returncode == 0 and r.stdout == want,
          "under flare, as without: rc %d %r %s" % (r.returncode, r.stdout, r.stderr[-800:]))
    check(st["tls_linked"] == 1, "the session was linked (the path under test): %r" % dict(st))


if __name__ == "__main__":
    import test_clients
    test_clients.become_subreaper()  # PostgreSQL's orphans are reaped here
    run([test_curl_https_keepalive_healed, test_s_client_goes_on_after_a_heal,
         test_curl_https_post_not_replayed,
         test_tls_slow_post_left_alone, test_tls_replica_with_another_certificate_refused,
         test_redis_cli_tls_session_replayed,
         test_redis_cli_tls_hung_replica, test_redis_cli_tls_next_replicas_hung,
         test_python_ssl_nonblocking_asyncio, test_other_tls_libraries_keep_the_socket_rules,
         test_psql_sslmode_require_surfaces, test_tls_record_body_after_its_header])
