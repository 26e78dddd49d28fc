"""TLS sessions healed inside the program's OpenSSL: real clients (curl,
redis-cli, psql, Python's ssl) against real TLS servers (nginx,
redis-server, PostgreSQL) the test starts with certificates from a CA it
makes; the serving replica is SIGKILLed mid-run. A replica whose
certificate does not match the session's is never used."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

from harness import (BUILD, all_alive, busiest_replica, check, client_env, library_stats,
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


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def nginx_tls_deployment(wrong=()):
    """Three nginx replicas with TLS, each in front of a slow backend of its
    own; the replicas in `wrong` present a certificate for another name
    (signed by the same CA)."""
    s = rr_deployment(name="nginx", service_extra='protocol = "http";')
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
    wait_for(lambda: all_alive(s) and all(listening(p) for p in backends), 20,
             what="nginx replicas and their backends up")
    s.files = [open(os.path.join(www, "f%03d.txt" % k), "rb").read() for k in range(N_FILES)]
    return s


def held(s):
    """The replica whose backend holds the /hold request, or None."""
    for i in range(s.n):
        if os.path.exists(s.posts[i] + ".hold"):
            return i
    return None


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
        try:
            wait_for(lambda: held(s) is not None, 30, what="the held request")
        except Exception:
            p.kill()
            p.communicate()
            raise
        s.kill("rr%d" % held(s))
    out, err = p.communicate(timeout=120)
    with open(os.path.join(s.dir, "curl.err"), "wb") as f:
        f.write(err)
    with open("/tmp/tt/curl.err", "wb") as f:
        f.write(err)
    with open("/tmp/tt/curl.out", "wb") as f:
        f.write(out)
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


if __name__ == "__main__":
    run([test_curl_https_keepalive_healed])
