"""make bench: every figure measured side by side in one run on this
machine, printed as a table. Ratios are medians of interleaved rounds
(A B C A B C ...), with min and max; see docs/MEASURING.md."""
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import deploy  # noqa: E402
from deploy import Stack, free_ports, rr_deployment, spawn, start_rr, wait_for  # noqa: E402

BUILD = deploy.configure(sys.argv[1] if len(sys.argv) > 1 else "build")
deploy.install_cleanup()

QUICK = "--quick" in sys.argv
# --only a,b: just those sections (ranking, overhead, loops, instructions, protocols, tls,
# balancing, penalty, memory, propagation, daemons, fleet), for iterating on one figure
ONLY = next((a.split("=", 1)[1].split(",") for a in sys.argv if a.startswith("--only=")), None)


def wanted(section):
    return ONLY is None or section in ONLY

# at least five interleaved pairs, quick or not (MEASURING.md): a median of
# three moved the connect loop's row by 0.04 between runs
ROUNDS = 5 if QUICK else 7
REQS = 5000 if QUICK else 30000
rows = []


def row(section, what, value, goal=""):
    rows.append((section, what, value, goal))
    print("  %-34s %-52s %s" % (section, what, value), flush=True)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def ratio_summary(values):
    return "%.3f (min %.3f, max %.3f)" % (statistics.median(values), min(values), max(values))


def client_stats(out):
    m = re.search(r"requests=(\d+) errors=(\d+) mean_us=([\d.]+) p50_us=([\d.]+) p99_us=([\d.]+)"
                  r".*rps=(\d+)", out)
    if not m:
        raise RuntimeError("client output: %r" % out)
    sd = re.search(r"sd_us=([\d.]+)", out)
    return {"n": int(m.group(1)), "errors": int(m.group(2)), "mean": float(m.group(3)),
            "p50": float(m.group(4)), "p99": float(m.group(5)), "rps": float(m.group(6)),
            "sd": float(sd.group(1)) if sd else float("nan")}


def pinned(cmd):
    return ["taskset", "-c", "0"] + cmd


HAPROXY_CFG = """global
    nbthread 1
    maxconn 1000
defaults
    mode tcp
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
    balance first
%s
"""


def start_haproxy(s):
    """HAProxy from Debian in TCP mode in front of the same replicas, with
    health checks every 100 ms: the per-request forwarding architecture."""
    port = free_ports(1)[0]
    servers = "\n".join("    server A-%d 127.0.0.1:%d check inter 100 fall 2 rise 1" % (i + 1, p)
                        for i, p in enumerate(s.ports))
    cfg = os.path.join(s.dir, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(HAPROXY_CFG % (port, servers))
    s.start("haproxy", pinned(["haproxy", "-db", "-f", cfg]))
    wait_for(lambda: subprocess.run([BUILD + "/rr-client", "-c", "127.0.0.1:%d" % port, "-n", "1"],
                                    capture_output=True).returncode == 0, 10, step=0.05,
             what="haproxy forwarding")
    return port


def nowake_deployment():
    """One replica behind an agent without CAP_NET_ADMIN: no kernel wake,
    blocking reads wait in slices (docs/DESIGN.md, "The kernel wake")"""
    t = rr_deployment(n=1, name="nowake")
    start_rr(t, servers=False, agent_prefix=["setpriv", "--bounding-set", "-net_admin", "--"])
    t.start("rr0", pinned([BUILD + "/rr-server", "-l", "127.0.0.1:%d" % t.ports[0], "--tag",
                           "A-1"]))
    wait_for(lambda: deploy.all_alive(t), 10, what="the no-wake replica alive")
    return t


def syscalls_per_request(cmd, n):
    """The I/O system calls per request of cmd (strace -c -f): reads,
    writes and waits, over n requests"""
    out = os.path.join(BUILD, "bench-strace.txt")
    subprocess.run(["strace", "-f", "-c", "-o", out] + cmd + ["-n", str(n)],
                   capture_output=True, text=True, timeout=300)
    io = ("read", "write", "recvfrom", "sendto", "recvmsg", "sendmsg", "poll", "ppoll")
    calls = 0
    for line in open(out):
        f = line.split()
        if len(f) >= 5 and f[-1] in io and f[3].isdigit():
            calls += int(f[3])
    return calls / n


def overhead(s):
    """The CORBA load-balancing paper's overhead experiment (its Figures 3
    and 4): 64-byte request/response over one connection, client, server and
    any proxy pinned to CPU 0: direct, the library with an unmanaged
    destination, the library managed, and HAProxy in TCP mode."""
    rep_port = s.ports[0]
    hp = start_haproxy(s) if shutil.which("haproxy") else None
    rr = [BUILD + "/rr-client", "-c"]
    variants = {
        "direct": rr + ["127.0.0.1:%d" % rep_port],
        "unmanaged": [BUILD + "/flare-run", "--shm", s.shm, "--"] + rr + ["127.0.0.1:%d" % rep_port],
        "managed": [BUILD + "/flare-run", "--shm", s.shm, "--"] + rr + ["127.0.0.1:%d" % s.svc],
    }
    t = nowake_deployment() if shutil.which("setpriv") else None
    if t:
        variants["managed, no wake"] = [BUILD + "/flare-run", "--shm", t.shm, "--"] + rr + \
            ["127.0.0.1:%d" % t.svc]
    if hp:
        variants["haproxy"] = rr + ["127.0.0.1:%d" % hp]
    res = {k: [] for k in variants}
    for _ in range(ROUNDS):
        for k, cmd in variants.items():
            r = subprocess.run(pinned(cmd + ["-n", str(REQS)]), capture_output=True, text=True,
                               timeout=300)
            st = client_stats(r.stdout)
            if st["errors"] or st["n"] != REQS:
                raise RuntimeError("%s: %s %s" % (k, r.stdout, r.stderr))
            res[k].append(st)
    sec = "overhead"
    for k in [v for v in variants if v != "direct"]:
        goal = {"unmanaged": "goal <= 1.01", "managed": "goal <= 1.03"}.get(k, "")
        for what, key in (("mean latency", "mean"), ("p50 latency", "p50"),
                          ("p99 latency", "p99"), ("jitter (latency s.d.)", "sd")):
            ratios = [res[k][i][key] / res["direct"][i][key] for i in range(ROUNDS)]
            g = goal if key == "mean" else ""
            if k == "managed" and key == "p50":
                g = "goal <= 1.02 (with the kernel wake)"
            row(sec, "%s: %s / direct" % (k, what), ratio_summary(ratios), g)
        thr = [res[k][i]["rps"] / res["direct"][i]["rps"] for i in range(ROUNDS)]
        row(sec, "%s: throughput / direct" % k, ratio_summary(thr),
            "goal >= 0.98" if k == "managed" else "")
    for k in variants:
        med = lambda key: statistics.median(r[key] for r in res[k])  # noqa: E731
        row(sec, "%s: mean/p50/p99/jitter, rps (%d x %d req)" % (k, ROUNDS, REQS),
            "%.1f / %.1f / %.1f / %.1f us, %.0f/s" % (med("mean"), med("p50"), med("p99"),
                                                      med("sd"), med("rps")))
    per_call = [res["managed"][i]["mean"] - res["direct"][i]["mean"] for i in range(ROUNDS)]
    row(sec, "library per request (managed - direct mean latency)",
        "%.2f us (min %.2f, max %.2f)" % (statistics.median(per_call), min(per_call),
                                          max(per_call)))
    if shutil.which("strace"):
        n = 2000
        per = {k: syscalls_per_request(variants[k], n) for k in ("direct", "managed")}
        if t:
            per["managed, no wake"] = syscalls_per_request(variants["managed, no wake"], n)
        row(sec, "I/O system calls per request (strace -c, %d requests)" % n,
            ", ".join("%s %.2f" % (k, v) for k, v in per.items()), "managed = direct")
    if t:
        for p in list(t.procs):
            t.kill(p, signal.SIGTERM)
    if not hp:
        row(sec, "haproxy", "not installed: skipped")
    else:
        s.kill("haproxy", signal.SIGTERM)


def event_loops(s):
    """Issue 5's overhead: a curl-style loop (non-blocking connect, poll,
    SO_ERROR, one request, close) and an epoll-driven connection, each
    direct and managed, pinned to CPU 0, interleaved. The connect loop also
    runs as its floor: direct plus the two system calls a managed
    connection makes whatever happens (its socket's cookie, the vfork
    check at close; tests/bench/nbclient.c)."""
    modes = {"connect-loop": 2000 if QUICK else 6000, "epoll": REQS}
    for mode, count in modes.items():
        kinds = ("direct", "floor", "managed") if mode == "connect-loop" else ("direct", "managed")
        res = {k: [] for k in kinds}
        for _ in range(ROUNDS):
            for k in kinds:
                pre = [BUILD + "/flare-run", "--shm", s.shm, "--"] if k == "managed" else []
                port = s.svc if k == "managed" else s.ports[0]
                m_arg = "connect-floor" if k == "floor" else mode
                r = subprocess.run(pinned(pre + [BUILD + "/bench/nbclient", m_arg, "127.0.0.1",
                                                 str(port), str(count)]),
                                   capture_output=True, text=True, timeout=300)
                m = re.search(r"mean_us=([\d.]+)", r.stdout)
                if r.returncode != 0 or not m:
                    raise RuntimeError("%s %s: %s %s" % (mode, k, r.stdout, r.stderr))
                res[k].append(float(m.group(1)))
        ratios = [res["managed"][i] / res["direct"][i] for i in range(ROUNDS)]
        row("event loops", "%s: managed mean latency / direct" % mode, ratio_summary(ratios),
            "goal <= 1.03")
        if "floor" in res:
            fl = [res["floor"][i] / res["direct"][i] for i in range(ROUNDS)]
            row("event loops", "%s: floor (direct + cookie + getpid) / direct" % mode,
                ratio_summary(fl), "the proof's two system calls")
            own = [res["managed"][i] / res["floor"][i] for i in range(ROUNDS)]
            row("event loops", "%s: managed / floor" % mode, ratio_summary(own))
        row("event loops", "%s: direct mean per request (pinned)" % mode,
            "%.1f us" % statistics.median(res["direct"]))


def callgrind_ir(cmd):
    """Instructions the program executed under callgrind (the exec'd
    program's, when flare-run execs it)"""
    d = os.path.join(BUILD, "bench-callgrind")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    r = subprocess.run(["valgrind", "--tool=callgrind", "--trace-children=yes",
                        "--callgrind-out-file=" + d + "/cg.%p"] + cmd,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError("callgrind %s: %s" % (cmd, r.stderr[-2000:]))
    best = 0
    for name in os.listdir(d):
        with open(os.path.join(d, name)) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    best = max(best, int(line.split()[1]))
    return best


def instructions(s):
    """Instructions per request (callgrind) of each client, direct and
    managed: the difference of two run lengths, so start-up cancels out."""
    clients = {
        "rr-client (blocking)": (lambda port, n: [BUILD + "/rr-client", "-c",
                                                  "127.0.0.1:%d" % port, "-n", str(n)], 500),
        "connect-loop": (lambda port, n: [BUILD + "/bench/nbclient", "connect-loop",
                                          "127.0.0.1", str(port), str(n)], 200),
        "epoll": (lambda port, n: [BUILD + "/bench/nbclient", "epoll", "127.0.0.1", str(port),
                                   str(n)], 500),
    }
    for name, (mk, n) in clients.items():
        per = {}
        for k in ("direct", "managed"):
            pre = [BUILD + "/flare-run", "--shm", s.shm, "--"] if k == "managed" else []
            port = s.svc if k == "managed" else s.ports[0]
            per[k] = (callgrind_ir(pre + mk(port, 3 * n)) - callgrind_ir(pre + mk(port, n))) \
                / (2.0 * n)
        row("instructions", "%s: per request, direct / managed (callgrind)" % name,
            "%.0f / %.0f (+%.0f)" % (per["direct"], per["managed"],
                                     per["managed"] - per["direct"]))


NGINX_CONF = """daemon off; master_process off; worker_processes 1;
pid {dir}/nginx.pid; error_log {dir}/nginx.err warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/t/body; proxy_temp_path {dir}/t/proxy;
  fastcgi_temp_path {dir}/t/fcgi; uwsgi_temp_path {dir}/t/uwsgi; scgi_temp_path {dir}/t/scgi;
  keepalive_requests 100000000; keepalive_timeout 60s;
  server {{ listen 127.0.0.1:{port}; root {dir}/www; }}
}}
"""


def protocols():
    """Issue 12's overhead: the framers on, managed against direct, one
    replica pinned with its client to CPU 0. Redis GET at -P 1 and -P 16
    and small HTTP GETs over keep-alive (nginx), each two ways: the paired
    client (protoclient: batches alternating between a managed and a
    direct connection, a few milliseconds apart, so that the machine's
    noise cancels), and the real clients (redis-benchmark, ab) in
    interleaved rounds. And the framers' own cost per request."""
    r = subprocess.run([BUILD + "/bench/framecost", "1000000"], capture_output=True, text=True)
    m = re.search(r"redis_ns=([\d.]+) http_ns=([\d.]+)", r.stdout)
    row("protocols", "framer cost per request+reply: Redis GET", "%s ns" % m.group(1))
    row("protocols", "framer cost per request+reply: HTTP GET (6 headers each)", "%s ns" % m.group(2))
    have = {t: shutil.which(t) for t in ("redis-server", "redis-benchmark", "nginx", "ab")}
    s = rr_deployment(n=1, name="proto", service_extra='protocol = "auto";')
    start_rr(s, servers=False)
    port = s.ports[0]
    clients = {}
    if have["redis-server"] and have["redis-benchmark"]:
        s.start("rr0", pinned([BUILD + "/flare-run", "--shm", s.shm, "--", "redis-server",
                               "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"]))
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "SET", "key:__rand_int__",
                                         "x" * 32], capture_output=True).returncode == 0, 10,
                 what="redis up")
        n = 20000 if QUICK else 40000
        for pipe in (1, 16):
            clients["redis GET -P %d, redis-benchmark" % pipe] = (
                lambda p, pipe=pipe, n=n * (8 if pipe > 1 else 1): [
                    "redis-benchmark", "-p", str(p), "-c", "1", "-n", str(n), "-P", str(pipe),
                    "-t", "get", "-q"], r"GET: ([\d.]+) requests per second")
        wait_for(lambda: deploy.all_alive(s), 10, what="redis replica alive")
        for pipe in (1, 16):
            paired_rounds(s, port, "redis GET -P %d" % pipe, "redis", pipe)
        # a blocking client: each read waits for its reply in the library's
        # poll(2) slices, the one system call user-space slicing adds
        paired_rounds(s, port, "redis GET -P 1, blocking reads", "redis-blocking", 1)
        run_protocol_rounds(s, port, clients)
        s.kill("rr0")
    else:
        row("protocols", "redis-server/redis-benchmark", "not installed: skipped")
    if have["nginx"] and have["ab"]:
        os.makedirs(os.path.join(s.dir, "www"))
        os.makedirs(os.path.join(s.dir, "t"))
        with open(os.path.join(s.dir, "www", "index.html"), "w") as f:
            f.write("hello from nginx\n" * 8)
        conf = os.path.join(s.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=s.dir, port=port))
        s.start("rr0", pinned([BUILD + "/flare-run", "--shm", s.shm, "--", "nginx", "-c", conf,
                               "-p", s.dir]))
        wait_for(lambda: deploy.all_alive(s), 10, what="nginx replica alive")
        paired_rounds(s, port, "HTTP GET keep-alive (136 B)", "http", 1)
        n = 20000 if QUICK else 40000
        run_protocol_rounds(s, port, {"HTTP GET keep-alive (ab -k, 136 B)": (
            lambda p: ["ab", "-q", "-k", "-n", str(n), "-c", "1",
                       "http://127.0.0.1:%d/index.html" % p],
            r"Requests per second:\s+([\d.]+)")})
    else:
        row("protocols", "nginx/ab", "not installed: skipped")


def paired_rounds(s, port, name, proto, pipe):
    """protoclient runs, each the median of its pairs of batches."""
    pairs, per = (41, 200 * pipe) if QUICK else (101, 200 * pipe)
    ratios, direct = [], []
    for _ in range(3 if QUICK else 5):
        r = subprocess.run(pinned([BUILD + "/flare-run", "--shm", s.shm, "--",
                                   BUILD + "/bench/protoclient", proto, str(s.svc), str(port),
                                   str(pipe), str(pairs), str(per)]),
                           capture_output=True, text=True, timeout=600)
        m = re.search(r"ratio=([\d.]+) direct_rps=(\d+)", r.stdout)
        if r.returncode != 0 or not m:
            raise RuntimeError("protoclient %s: %s %s" % (name, r.stdout, r.stderr))
        ratios.append(float(m.group(1)))
        direct.append(float(m.group(2)))
    row("protocols", "%s, paired client: managed / direct" % name, ratio_summary(ratios),
        "goal >= 0.97")
    row("protocols", "%s, paired client: direct requests/s" % name,
        "%.0f" % statistics.median(direct))


# Neighbours on a shared machine move single runs by 10% and more, and
# only ever slow a run down: a round takes each side's better of two
# back-to-back runs, and many short rounds give the median something to
# stand on.
PROTO_ROUNDS = 5 if QUICK else 11
PROTO_BEST_OF = 2


def run_protocol_rounds(s, port, clients, section="protocols"):
    for name, (cmd, pattern) in clients.items():
        res = {"direct": [], "managed": []}
        for _ in range(PROTO_ROUNDS):
            best = {"direct": 0.0, "managed": 0.0}
            for _ in range(PROTO_BEST_OF):
                for k in ("direct", "managed"):
                    pre = [BUILD + "/flare-run", "--shm", s.shm, "--"] if k == "managed" else []
                    r = subprocess.run(pinned(pre + cmd(s.svc if k == "managed" else port)),
                                       capture_output=True, text=True, timeout=600)
                    m = re.search(pattern, r.stdout)
                    if r.returncode != 0 or not m:
                        raise RuntimeError("%s %s: %s %s" % (name, k, r.stdout[-500:], r.stderr))
                    best[k] = max(best[k], float(m.group(1)))
            for k in best:
                res[k].append(best[k])
        ratios = [res["managed"][i] / res["direct"][i] for i in range(PROTO_ROUNDS)]
        row(section, "%s: managed throughput / direct" % name, ratio_summary(ratios),
            "goal >= 0.97")
        row(section, "%s: direct requests/s (pinned)" % name,
            "%.0f" % statistics.median(res["direct"]))


def redis_tls_server(s, i, cert, key, pin=True):
    cmd = [BUILD + "/flare-run", "--shm", s.shm, "--", "redis-server", "--port", "0",
           "--tls-port", str(s.ports[i]), "--bind", "127.0.0.1", "--tls-cert-file", cert,
           "--tls-key-file", key, "--tls-auth-clients", "no", "--save", "", "--appendonly", "no"]
    s.start("rr%d" % i, pinned(cmd) if pin else cmd)


def tls():
    """Issue 24: TLS sessions healed inside the program's OpenSSL. The
    interposed SSL calls' cost: redis-benchmark --tls (GET, one connection,
    -P 1) managed against direct in interleaved rounds, pinned with its
    server to CPU 0. And the heal's own cost, a new connection and a full
    handshake plus the replay, as the library timed it over repeated kills
    of the serving replica (redis-cli --tls, blocking)."""
    from tlscerts import make_ca, make_cert
    if not (shutil.which("redis-server") and shutil.which("redis-benchmark")):
        row("tls", "redis-server/redis-benchmark", "not installed: skipped")
        return
    s = rr_deployment(n=3, name="tls", service_extra='protocol = "auto";')
    start_rr(s, servers=False)
    ca = make_ca(s.dir)
    cert, key = make_cert(s.dir, "svc", "svc.test")
    cli = ["--tls", "--cacert", ca, "--sni", "svc.test"]
    redis_tls_server(s, 0, cert, key)
    wait_for(lambda: subprocess.run(["redis-cli"] + cli + ["-p", str(s.ports[0]), "SET",
                                     "key:__rand_int__", "x" * 32],
                                    capture_output=True).returncode == 0, 10, what="redis up")
    # the paired client: batches alternating between a managed session and
    # a direct one a few milliseconds apart, so that the machine's noise
    # cancels (protoclient's method, over OpenSSL)
    pairs, per = (41, 200) if QUICK else (101, 200)
    # "passthrough": the same client under the library, its session
    # dialed straight to the replica's port (not a service: no connection
    # of the library's), so only the interposed calls' cost is measured
    for mode in ("nonblocking", "blocking", "passthrough"):
        ratios, direct = [], []
        for _ in range(3 if QUICK else 5):
            r = subprocess.run(pinned([BUILD + "/flare-run", "--shm", s.shm, "--",
                                       BUILD + "/bench/tlsclient",
                                       "blocking" if mode == "passthrough" else mode, ca,
                                       "svc.test",
                                       str(s.ports[0] if mode == "passthrough" else s.svc),
                                       str(s.ports[0]), str(pairs), str(per)]),
                               capture_output=True, text=True, timeout=600)
            m = re.search(r"ratio=([\d.]+) direct_rps=(\d+)", r.stdout)
            if r.returncode != 0 or not m:
                raise RuntimeError("tlsclient: %s %s" % (r.stdout, r.stderr))
            ratios.append(float(m.group(1)))
            direct.append(float(m.group(2)))
        # a blocking read that waits pays the library's poll(2) slice, as
        # a plaintext one does (protocols: "blocking reads")
        if mode == "passthrough":
            row("tls", "redis GET over TLS, blocking, session not managed: library / direct",
                ratio_summary(ratios), "the floor: interposed calls alone")
            continue
        row("tls", "redis GET over TLS, %s, paired: managed / direct" % mode,
            ratio_summary(ratios), "goal >= 0.98" if mode == "blocking" else "goal >= 0.97")
        row("tls", "redis GET over TLS, %s, paired: direct requests/s" % mode,
            "%.0f" % statistics.median(direct))
    n = 20000 if QUICK else 40000
    run_protocol_rounds(s, s.ports[0], {"redis GET -P 1 over TLS, redis-benchmark --tls": (
        lambda p: ["redis-benchmark"] + cli + ["-p", str(p), "-c", "1", "-n", str(n), "-P", "1",
                                               "-t", "get", "-q"],
        r"GET: ([\d.]+) requests per second")}, section="tls")
    # the heal's cost: the library logs each one's time
    for i in (1, 2):
        redis_tls_server(s, i, cert, key, pin=False)
    s.kill("rr0")
    redis_tls_server(s, 0, cert, key, pin=False)
    wait_for(lambda: deploy.all_alive(s), 15, what="TLS replicas alive")
    log = os.path.join(s.dir, "tls-heals.log")
    with open(log, "w") as lf:
        p = subprocess.Popen([BUILD + "/flare-run", "--shm", s.shm, "--", "redis-cli"] + cli +
                             ["-p", str(s.svc), "-r", "1000000", "-i", "0.002", "GET", "k"],
                             stdout=subprocess.DEVNULL, stderr=lf,
                             env=dict(os.environ, FLARE_LOG="info"))
    heal = re.compile(r"a new TLS session, \d+ request byte\(s\) replayed, in (\d+) us")
    kills = 8 if QUICK else 30
    try:
        for k in range(kills):
            time.sleep(0.3)
            victim = deploy.busiest_replica(s)
            if victim is None:
                continue
            s.kill("rr%d" % victim)
            wait_for(lambda: len(heal.findall(open(log).read())) > k, 10, what="heal %d" % k)
            redis_tls_server(s, victim, cert, key, pin=False)
            wait_for(lambda: deploy.all_alive(s), 15, what="replica back")
    finally:
        p.kill()
        p.wait()
    us = sorted(float(x) for x in heal.findall(open(log).read()))
    row("tls", "heal: new connection + full handshake + replay (%d kills)" % len(us),
        "p50 %.0f us, p99 %.0f us" % (pct(us, 0.5), pct(us, 0.99)))


HAPROXY_HTTP_CFG = """global
    nbthread 1
    maxconn 1000
defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
    balance roundrobin
%s
"""


def lb_stack(name, binding, ports):
    """A control plane for two replicas at ports (started elsewhere, found
    by probes) behind a virtual service address, round-robin."""
    mport, svc = free_ports(2)
    hosts = ",\n".join('  { name = "h%d"; utilization = "file:@DIR@/h.util"; }' % i
                       for i in range(len(ports)))
    reps = ",\n".join('    { name = "A-%d"; host = "h%d"; address = "127.0.0.1:%d"; }'
                      % (i + 1, i, p) for i, p in enumerate(ports))
    s = Stack("""manager = { addresses = [ "127.0.0.1:%d" ]; };
agent = { shm = "@SHM@"; };
hosts = (
%s
);
services = ( { name = "A"; address = "127.0.0.1:%d"; balance = "round-robin";
  binding = "%s"; slow_start_ms = 0; replay = "request-reply"; replicas = (
%s ); } );
""" % (mport, hosts, svc, binding, reps), name)
    with open(os.path.join(s.dir, "h.util"), "w") as f:
        f.write("0.1\n")
    s.svc = svc
    s.manager(1)
    for i in range(len(ports)):
        s.monitor("h%d" % i)
    s.agent()
    wait_for(lambda: deploy.all_alive(s), 10, what="replicas alive (%s)" % name)
    return s


def balancing():
    """TAO's overhead experiment (its Figures 3 and 4) for the binding
    granularities: one client over one connection, two replicas, client,
    servers and proxy pinned to CPU 0, interleaved rounds. Direct to one
    replica; flare per-session (round-robin at connect); flare per-request
    (round-robin: every request on the other replica, switched inside the
    client); HAProxy in HTTP mode balancing every request (the forwarding
    proxy of TAO's per-request architecture). Two workloads: rr-client
    (blocking, 64-byte request/reply) and ab -k against nginx (epoll)."""
    ports = free_ports(4)
    base = Stack("", "lbsrv")
    for i in range(2):
        base.start("rr%d" % i, pinned([BUILD + "/rr-server", "-l", "127.0.0.1:%d" % ports[i],
                                       "--tag", "A-%d" % (i + 1)]))
    have_web = shutil.which("nginx") and shutil.which("ab")
    if have_web:
        os.makedirs(os.path.join(base.dir, "www"))
        with open(os.path.join(base.dir, "www", "index.html"), "w") as f:
            f.write("hello from nginx\n" * 8)
        for i in range(2):
            d = os.path.join(base.dir, "n%d" % i)
            os.makedirs(os.path.join(d, "t"))
            os.symlink(os.path.join(base.dir, "www"), os.path.join(d, "www"))
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(dir=d, port=ports[2 + i]))
            base.start("web%d" % i, pinned(["nginx", "-c", conf, "-p", d]))
    sess = {"rr": lb_stack("lbs", "session", ports[:2]), "web": None}
    req = {"rr": lb_stack("lbr", "request", ports[:2]), "web": None}
    if have_web:
        sess["web"] = lb_stack("lbsw", "session", ports[2:])
        req["web"] = lb_stack("lbrw", "request", ports[2:])
    hp = None
    if shutil.which("haproxy") and have_web:
        hp = free_ports(1)[0]
        cfg = os.path.join(base.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(HAPROXY_HTTP_CFG % (hp, "\n".join(
                "    server A-%d 127.0.0.1:%d" % (i + 1, ports[2 + i]) for i in range(2))))
        base.start("haproxy", pinned(["haproxy", "-db", "-f", cfg]))
        wait_for(lambda: subprocess.run(["curl", "-sf", "http://127.0.0.1:%d/index.html" % hp],
                                        capture_output=True).returncode == 0, 10, step=0.05,
                 what="haproxy forwarding")

    def flare(st):
        return [BUILD + "/flare-run", "--shm", st.shm, "--"]
    n = 5000 if QUICK else 30000
    rr = [BUILD + "/rr-client", "-n", str(n), "-c"]
    work = {"rr-client (blocking)": (
        {"direct": rr + ["127.0.0.1:%d" % ports[0]],
         # the client alternating two connections itself: per-request
         # balancing without a library, what the switch adds to
         "by hand": rr + ["127.0.0.1:%d" % ports[0], "--alternate", "127.0.0.1:%d" % ports[1]],
         "per-session": flare(sess["rr"]) + rr + ["127.0.0.1:%d" % sess["rr"].svc],
         "per-request": flare(req["rr"]) + rr + ["127.0.0.1:%d" % req["rr"].svc]},
        lambda out: client_stats(out))}
    if have_web:
        ab = ["ab", "-k", "-c", "1", "-n", str(n)]

        def ab_stats(out):
            rps = re.search(r"Requests per second:\s+([\d.]+)", out)
            failed = re.search(r"Failed requests:\s+(\d+)", out)
            if not rps or not failed or failed.group(1) != "0":
                raise RuntimeError("ab: %r" % out[-600:])
            return {"rps": float(rps.group(1)), "mean": 1e6 / float(rps.group(1)), "errors": 0}
        v = {"direct": ab + ["http://127.0.0.1:%d/index.html" % ports[2]],
             "per-session": flare(sess["web"]) + ab +
             ["http://127.0.0.1:%d/index.html" % sess["web"].svc],
             "per-request": flare(req["web"]) + ab +
             ["http://127.0.0.1:%d/index.html" % req["web"].svc]}
        if hp:
            v["haproxy per-request"] = ab + ["http://127.0.0.1:%d/index.html" % hp]
        work["ab -k nginx (epoll)"] = (v, ab_stats)
    for wname, (variants, parse) in work.items():
        res = {k: [] for k in variants}
        for _ in range(ROUNDS):
            for k, cmd in variants.items():
                r = subprocess.run(pinned(cmd), capture_output=True, text=True, timeout=300)
                st = parse(r.stdout)
                if st["errors"]:
                    raise RuntimeError("%s %s: %s %s" % (wname, k, r.stdout, r.stderr))
                res[k].append(st)
        for k in [v for v in variants if v != "direct"]:
            goal = {"per-session": "goal >= 0.99", "per-request": "goal >= 0.90"}.get(k, "")
            thr = [res[k][i]["rps"] / res["direct"][i]["rps"] for i in range(ROUNDS)]
            lat = [res[k][i]["mean"] / res["direct"][i]["mean"] for i in range(ROUNDS)]
            row("balancing", "%s, %s: throughput / direct" % (wname, k), ratio_summary(thr),
                goal)
            row("balancing", "%s, %s: mean latency / direct" % (wname, k), ratio_summary(lat))
        if "by hand" in variants:
            thr = [res["per-request"][i]["rps"] / res["by hand"][i]["rps"] for i in range(ROUNDS)]
            row("balancing", "%s, per-request: throughput / alternating by hand" % wname,
                ratio_summary(thr))
        if "haproxy per-request" in variants:
            thr = [res["per-request"][i]["rps"] / res["haproxy per-request"][i]["rps"]
                   for i in range(ROUNDS)]
            row("balancing", "%s, per-request: throughput / haproxy's" % wname,
                ratio_summary(thr))
        row("balancing", "%s: direct mean latency, requests/s" % wname,
            "%.1f us, %.0f/s" % (statistics.median(r["mean"] for r in res["direct"]),
                                statistics.median(r["rps"] for r in res["direct"])))
    for st in [base] + [x for x in list(sess.values()) + list(req.values()) if x]:
        for name in list(st.procs):
            st.kill(name, signal.SIGTERM)


def arm_crash(s, t):
    """Restarts the serving replica so that it kills itself on receiving
    request N (varied by trial); returns (its index, N)."""
    victim = deploy.serving_replica(s)
    s.kill("rr%d" % victim)
    n = 100 + (t * 37) % 200
    deploy.rr_server(s, victim, ["--crash-after", str(n)])
    wait_for(lambda: s.replica("A-%d" % (victim + 1))["alive"], 10, what="alive")
    return victim, n


def revive(s, victim):
    s.procs.pop("rr%d" % victim, None)
    deploy.rr_server(s, victim)
    wait_for(lambda: s.replica("A-%d" % (victim + 1))["alive"], 10, what="alive")


def penalty_trial(s, t):
    """One server crash under load: the extra latency of the request that
    met the crash over the run's median, in us."""
    victim, n = arm_crash(s, t)
    log = os.path.join(s.dir, "pen.log")
    r = deploy.rr_client(s, ["-n", str(n + 100), "-r", "2000", "--log", log])
    st = client_stats(r.stdout)
    if st["errors"] or st["n"] != n + 100:
        raise RuntimeError("penalty trial: %s %s" % (r.stdout, r.stderr))
    lats = {}
    with open(log) as f:
        for line in f:
            parts = line.split()
            lats[int(parts[1])] = float(parts[2])
    med = statistics.median(lats.values())
    revive(s, victim)
    return lats[n + 1] - med


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * q))]


def failover_penalty(s):
    """FLARe's Figure 4: the extra latency of the request that meets a
    server's SIGKILL, for each failover strategy, trials interleaved over
    three deployments that differ only in `failover`."""
    stacks = {"proactive": s}
    for name in ("static", "reactive"):
        st = rr_deployment(service_extra='failover = "%s";' % name, name=name)
        start_rr(st)
        stacks[name] = st
    pens = {k: [] for k in stacks}
    trials = 10 if QUICK else 40
    for t in range(trials):
        for name, st in stacks.items():
            pens[name].append(penalty_trial(st, t))
    # the same crash without the library: how long the client waits to see
    # it (the kernel's part of the penalty, not flare's)
    detect = []
    for t in range(trials // 2):
        victim, n = arm_crash(s, t)
        r = deploy.rr_client(s, ["-n", str(n + 100), "-r", "2000"], preload=False,
                              port=s.ports[victim])
        m = re.search(r"failed after ([\d.]+) us", r.stderr)
        if m:
            detect.append(float(m.group(1)))
        revive(s, victim)
    for name in ("static", "reactive"):
        for p in list(stacks[name].procs):
            stacks[name].kill(p, signal.SIGTERM)
    if detect:
        row("failover delay", "without flare: request to the crashed server -> error, p50",
            "%.0f us" % pct(detect, 0.5))
    for name in ("static", "reactive", "proactive"):
        row("failover delay", "%s: extra latency of the failed request, p50 / p99 (%d)"
            % (name, trials), "%.0f / %.0f us" % (pct(pens[name], 0.5), pct(pens[name], 0.99)),
            "goal < 1 ms" if name == "proactive" else "")
    srv_rss = rss_kib(s.procs["rr0"].pid)
    row("failover delay", "server size (VmRSS of rr-server), unpinned", "%d KiB" % srv_rss)


def smaps_groups(pid):
    """Resident KiB of a process by where the pages are: libflare.so's
    text, its other mappings, the shared tables, libc, and anonymous
    memory (heap, stacks, the library's own tables)"""
    groups = {"libflare text": 0, "libflare data": 0, "shared tables": 0, "libc": 0, "anon": 0,
              "other": 0}
    cur = "other"
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            p = line.split()
            if p and "-" in p[0] and not p[0].endswith(":"):
                path = p[5] if len(p) > 5 else ""
                if path.endswith("libflare.so"):
                    cur = "libflare text" if "x" in p[1] else "libflare data"
                elif path.startswith("/dev/shm/"):
                    cur = "shared tables"
                elif "/libc.so" in path:
                    cur = "libc"
                elif not path or path.startswith("["):
                    cur = "anon"
                else:
                    cur = "other"
            elif p and p[0] == "Rss:":
                groups[cur] += int(p[1])
    return groups


def memory(s):
    """Added VmRSS of the library in a small client, paired runs, and where
    the added pages go (each group's managed - direct, medians)."""
    diffs, parts = [], []
    for _ in range(9 if QUICK else 15):
        vals, groups = [], []
        for pre in (False, True):
            p = deploy.rr_client(s, ["-n", "100000", "-r", "50"], preload=pre, wait=False,
                                  port=None if pre else s.ports[0])
            time.sleep(0.6)
            vals.append(rss_kib(p.pid))
            groups.append(smaps_groups(p.pid))
            p.kill()
            p.wait()
        diffs.append(vals[1] - vals[0])
        parts.append({k: groups[1][k] - groups[0][k] for k in groups[0]})
    row("footprint", "added VmRSS of libflare.so in rr-client (median of %d pairs)" % len(diffs),
        "%d KiB (min %d, max %d)" % (statistics.median(diffs), min(diffs), max(diffs)),
        "goal < 256 KiB")
    row("footprint", "where the added pages go (median KiB of each)",
        ", ".join("%s %d" % (k, statistics.median(pp[k] for pp in parts)) for k in parts[0]))


def propagation(s):
    """SIGKILL of a registered server -> its replica dead in the agent's
    shared table, read as a client reads it."""
    kills = 20 if QUICK else 120
    helper = subprocess.Popen([BUILD + "/bench/propagation", s.shm, "0", "0"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deploy.track(helper)
    times = []
    for _ in range(kills):
        if "rr0" in s.procs:
            s.kill("rr0")
        p = deploy.rr_server(s, 0)
        # registered (not merely probed): wait for the registration
        wait_for(lambda: s.status()["services"][0]["replicas"][0]["registered"], 10,
                 what="registered")
        helper.stdin.write("wait-alive\n")
        helper.stdin.flush()
        if helper.stdout.readline().strip() != "alive":
            raise RuntimeError("replica never alive")
        helper.stdin.write("kill %d\n" % p.pid)
        helper.stdin.flush()
        line = helper.stdout.readline().split()
        times.append(float(line[1]))
        p.wait()
        s.procs.pop("rr0")
    times.sort()
    row("propagation", "SIGKILL -> dead in the shared table, p50",
        "%.0f us" % times[len(times) // 2])
    row("propagation", "SIGKILL -> dead in the shared table, p99 (%d kills)" % kills,
        "%.0f us" % times[min(len(times) - 1, int(len(times) * 0.99))], "goal p99 < 5 ms")


def big_config(path, mport):
    hosts, services = [], []
    for h in range(1000):
        hosts.append('{ name = "h%d"; utilization = "file:%s.util"; }' % (h, path))
    port = 20000
    for o in range(10000):
        reps = []
        for j in range(3):
            reps.append('{ name = "o%d-%d"; host = "h%d"; address = "127.1.%d.%d:%d"; load = 0.1; }'
                        % (o, j, (o + j * 7919) % 1000, (o // 250) % 250, o % 250 + 1, port + j))
        services.append('{ name = "o%d"; address = "127.2.%d.%d:%d"; replicas = ( %s ); }'
                        % (o, (o // 250) % 250, o % 250 + 1, port, ", ".join(reps)))
    with open(path, "w") as f:
        f.write('manager = { addresses = [ "127.0.0.1:%d" ]; };\n' % mport)
        f.write('agent = { shm = "@SHM@"; };\n')
        f.write("hosts = ( %s );\nservices = ( %s );\n" % (",\n".join(hosts), ",\n".join(services)))
    with open(path + ".util", "w") as f:
        f.write("0.3\n")


# 1,000 (the goal) saturates this 2-core machine, 200 already strains it: a
# monitor wakes 60 times a second at a 100 ms report interval, each wake-up
# ~150 us of this VM's CPU (docs/EVALUATION.md). FLEET_HOSTS=N tries another
# size, FLEET_REPORT_MS and FLEET_HEARTBEAT_MS (the heartbeat timeout five
# of them) other intervals, FLEET_TRACE=1 prints each trial's spread, the
# pushes until all connected and what takes the CPU at rest
FLEET_HOSTS = int(os.environ.get("FLEET_HOSTS", "100"))
FLEET_REPORT_MS = int(os.environ.get("FLEET_REPORT_MS", "100"))
FLEET_HEARTBEAT_MS = int(os.environ.get("FLEET_HEARTBEAT_MS", "100"))


def fleet_config(d, tag, mports):
    """FLEET_HOSTS hosts, one service per host with two replicas (on the
    host and on the one half the fleet away), the managers' connection
    bounds sized for a fleet that connects at once (README: sizing)."""
    hosts = ['{ name = "h%d"; utilization = "file:%s/util"; }' % (h, d)
             for h in range(FLEET_HOSTS)]
    services = []
    for o in range(FLEET_HOSTS):
        reps = ['{ name = "o%d-%d"; host = "h%d"; address = "%s:%d"; load = 0.01; }'
                % (o, j, (o + j * FLEET_HOSTS // 2) % FLEET_HOSTS, fleet_ip(1, o), 20000 + j)
                for j in range(2)]
        services.append('{ name = "o%d"; address = "%s:20000"; replicas = ( %s ); }'
                        % (o, fleet_ip(2, o), ", ".join(reps)))
    path = os.path.join(d, "fleet-%d.conf" % len(mports))
    with open(path, "w") as f:
        f.write('manager = { addresses = [ %s ]; report_interval_ms = %d;\n'
                '  heartbeat_interval_ms = %d; heartbeat_timeout_ms = %d;\n'
                '  max_pending = %d; };\n' % (", ".join('"127.0.0.1:%d"' % p for p in mports),
                                               FLEET_REPORT_MS, FLEET_HEARTBEAT_MS,
                                               5 * FLEET_HEARTBEAT_MS, 4 * FLEET_HOSTS))
        # hung_ms = 0: no sock_diag dump of every connection per pass. On a
        # host it is two dumps a second; here a thousand monitors would each
        # walk this one kernel's whole connection hash (it is global, every
        # namespace's), a cost of the emulation, not of a fleet
        f.write('monitor = { probe_interval_ms = 1000; hung_ms = 0; };\n')
        f.write('agent = { shm = "/%s"; };\n' % tag)
        f.write("hosts = ( %s );\nservices = ( %s );\n" % (",\n".join(hosts),
                                                         ",\n".join(services)))
    with open(os.path.join(d, "util"), "w") as f:
        f.write("0.3\n")
    return path


def fleet_ip(net, i):
    """127.NET.x.y: host i's own loopback address (net 10: its daemons'
    source, 1: its replicas, 2: its service)"""
    return "127.%d.%d.%d" % (net, i // 250, i % 250 + 1)


def accept_all(listeners, stop):
    import selectors
    sel = selectors.DefaultSelector()
    for ls in listeners:
        sel.register(ls, selectors.EVENT_READ)
    while not stop.is_set():
        for key, _ in sel.select(timeout=0.2):
            try:
                key.fileobj.accept()[0].close()
            except OSError:
                pass
    sel.close()


def proc_cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def fleet(_s):
    """The control plane at fleet size, every daemon a real process: one
    flare-monitor and one flare-agent per host for FLEET_HOSTS hosts, each
    host's two connecting from its own loopback address (--source
    127.10.x.y), against one manager and then two. Replicas are listening
    sockets this process holds (the monitors probe them), but for the
    victims: rr-servers under flare-run, registered with their host's
    monitor. A victim's SIGKILL to its death in every agent's table (each
    agent's shared memory, read as a client reads it), p50 and p99 over
    agents x deaths; the managers' CPU and memory at rest."""
    import resource
    import socket
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    victims = 4
    trials = 5 if QUICK else 20
    for n_managers in [int(n) for n in os.environ.get("FLEET_MANAGERS", "1,2").split(",")]:
        st = Stack("", "fleet%d" % n_managers)
        d, tag = st.dir, st.shm.lstrip("/")
        mports = free_ports(n_managers)
        path = fleet_config(d, tag, mports)
        listeners = []
        for o in range(FLEET_HOSTS):
            for j in range(2):
                if j == 0 and o < victims:
                    continue  # the victims' own servers listen there
                ls = socket.socket()
                ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                ls.bind((fleet_ip(1, o), 20000 + j))
                ls.listen(64)
                ls.setblocking(False)
                listeners.append(ls)
        # the monitors' probes accepted and closed at once, as a server
        # would: left in the accept queues they would pile up by thousands
        # and every monitor's sock_diag pass would read them all
        stop_accepting = threading.Event()
        acceptor = threading.Thread(target=accept_all, args=(listeners, stop_accepting),
                                    daemon=True)
        acceptor.start()
        quiet = {"FLARE_LOG": "warn"}
        mgrs = [spawn([BUILD + "/flare-manager", "-c", path, "-f", "--id", str(i + 1)],
                      log=os.path.join(d, "manager%d.log" % (i + 1)), env=quiet)
                for i in range(n_managers)]
        for p in mports:
            wait_for(lambda: deploy.accepts(p), 30, what="fleet manager listening")
        drops0 = loopback_drops()
        t_start = time.monotonic()
        tables = []
        for h in range(FLEET_HOSTS):
            src = fleet_ip(10, h)
            # a host sees its own processes: a monitor in a PID namespace of
            # its own (a /proc of its own) walks its host's few, not this
            # machine's thousands; the victims' hosts share this one
            own = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL"] \
                if h >= victims else []
            spawn(own + [BUILD + "/flare-monitor", "-c", path, "--host", "h%d" % h, "--source",
                         src, "-f"], log=os.path.join(d, "monitor-h%d.log" % h), env=quiet)
            table = "/%s-h%d" % (tag, h)
            deploy.track_shm(table)
            tables.append(table)
            spawn([BUILD + "/flare-agent", "-c", path, "--shm", table, "--source", src, "-f"],
                  log=os.path.join(d, "agent-h%d.log" % h), env=quiet)
        deploy.track_shm("/" + tag)

        # one config per manager, to ask each (flarectl asks the first)
        each = []
        with open(path) as f:
            text = f.read()
        for i, p in enumerate(mports):
            each.append(os.path.join(d, "manager%d-only.conf" % (i + 1)))
            with open(each[-1], "w") as f:
                f.write(re.sub(r"addresses = \[[^\]]*\]", 'addresses = [ "127.0.0.1:%d" ]' % p,
                               text, count=1))

        def everyone():
            # an agent follows the first manager it gets: count them all;
            # every manager hears every monitor
            try:
                sts = [deploy.manager_status(c) for c in each]
            except subprocess.TimeoutExpired:
                return False  # a manager too busy to answer within 10 s: not yet
            return all(sts) and sum(x["manager"]["agents"] for x in sts) == FLEET_HOSTS and \
                all(sum(1 for h in x["hosts"] if h["alive"]) == FLEET_HOSTS for x in sts)
        wait_for(everyone, 300, step=1.0, what="every monitor and agent connected")
        up_s = time.monotonic() - t_start
        if os.environ.get("FLEET_TRACE"):
            print("pushes until all connected: %s" % [deploy.manager_status(c)["manager"].get("pushes") for c in each], flush=True)
        list_path = os.path.join(d, "tables")
        with open(list_path, "w") as f:
            f.write("\n".join(tables) + "\n")
        watch = subprocess.Popen([BUILD + "/bench/fleetwatch", list_path], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        deploy.track(watch)

        def ask(line):
            watch.stdin.write(line + "\n")
            watch.stdin.flush()
            return watch.stdout.readline().split()

        def victim(k):
            return spawn([BUILD + "/flare-run", "--shm", tables[k], "--", BUILD + "/rr-server",
                          "-l", "%s:20000" % fleet_ip(1, k), "--tag", "o%d-0" % k],
                         log=os.path.join(d, "victim%d.log" % k))
        procs = [victim(k) for k in range(victims)]
        lat, missed = [], 0
        for t in range(trials):
            k = t % victims
            got = ask("wait-alive %d 0" % k)
            if got[:2] != ["alive", str(FLEET_HOSTS)]:
                raise RuntimeError("fleet: o%d-0 not alive everywhere: %r" % (k, got))
            got = ask("kill %d %d 0" % (procs[k].pid, k))
            if not got or got[0] != "dead":
                raise RuntimeError("fleet: %r" % got)
            missed += FLEET_HOSTS - int(got[1])
            lat += [int(v) for v in got[2:]]
            if os.environ.get("FLEET_TRACE"):
                v = sorted(int(x) for x in got[2:])
                print("trial %d: first %d us, median %d, last %d" % (t, v[0], v[len(v)//2], v[-1]), flush=True)
            procs[k].wait(timeout=10)
            procs[k] = victim(k)
        drops = loopback_drops() - drops0
        # at rest: every monitor reporting every 100 ms
        cpu0, t0 = [proc_cpu_s(m.pid) for m in mgrs], time.monotonic()
        if os.environ.get("FLEET_TRACE"):
            def by_comm():
                tot = {}
                for pid in os.listdir("/proc"):
                    try:
                        with open("/proc/%s/stat" % pid) as f:
                            t = f.read()
                    except OSError:
                        continue
                    comm = t[t.index("(") + 1:t.rindex(")")]
                    v = t.rsplit(")", 1)[1].split()
                    tot[comm] = tot.get(comm, 0) + int(v[11]) + int(v[12])
                return tot
            a0 = by_comm()
            time.sleep(5)
            a1 = by_comm()
            for k in sorted(a1, key=lambda k: a0.get(k, 0) - a1[k])[:8]:
                print("rest: %s %.1f%% of a core" % (k, (a1[k] - a0.get(k, 0)) / 5.0 / os.sysconf("SC_CLK_TCK") * 100), flush=True)
        time.sleep(3 if QUICK else 10)
        cpu = [100.0 * (proc_cpu_s(m.pid) - c) / (time.monotonic() - t0)
               for m, c in zip(mgrs, cpu0)]
        rss = [rss_kib(m.pid) for m in mgrs]
        watch.stdin.close()
        watch.wait(timeout=10)
        lat.sort()
        label = "%d agents + %d monitors, %d manager%s" % (FLEET_HOSTS, FLEET_HOSTS, n_managers,
                                                         "s" if n_managers > 1 else "")
        row("fleet", "%s: all connected after" % label, "%.1f s" % up_s)
        row("fleet", "%s: SIGKILL -> dead in every agent's table, p50" % label,
            "%.1f ms" % (pct(lat, 0.50) / 1000.0))
        row("fleet", "%s: same, p99 (%d samples, %d missed)" % (label, len(lat), missed),
            "%.1f ms" % (pct(lat, 0.99) / 1000.0), "goal p99 <= 50 ms")
        row("fleet", "%s: packets the kernel dropped meanwhile" % label, "%d" % drops)
        row("fleet", "%s: each manager at rest: CPU, RSS" % label,
            ", ".join("%.0f%% of a core, %.1f MiB" % (c, r / 1024.0) for c, r in zip(cpu, rss)),
            "goal RSS <= 20 MiB")
        stop_accepting.set()
        acceptor.join(timeout=10)
        for ls in listeners:
            ls.close()
        deploy.cleanup()


def loopback_drops():
    """Packets the kernel dropped from its receive backlogs (all CPUs): on
    loopback a dropped packet costs its TCP connection a retransmission
    timeout (200 ms and up)"""
    with open("/proc/net/softnet_stat") as f:
        return sum(int(line.split()[1], 16) for line in f)


def daemon_memory(small):
    for name in ("manager1", "monitor-h0", "agent"):
        row("daemon memory", "%s VmRSS at rest (3 replicas)" % name.split("-")[0].rstrip("1"),
            "%d KiB" % rss_kib(small.procs[name].pid))
    mport = free_ports(1)[0]
    tmp = Stack("", "big")
    path = os.path.join(tmp.dir, "big.conf")
    big_config(path, mport)
    with open(path) as f:
        text = f.read().replace("@SHM@", tmp.shm)
    with open(tmp.conf, "w") as f:
        f.write(text)
    tmp.manager()
    tmp.monitor("h0")
    tmp.agent()
    wait_for(lambda: tmp.status() and tmp.status()["manager"]["agents"] == 1, 60,
             what="big deployment up", step=0.2)
    time.sleep(1.0)
    st = tmp.status()
    for name in ("manager1", "monitor-h0", "agent"):
        row("daemon memory", "%s VmRSS, 1,000 hosts / 30,000 replicas" %
            name.split("-")[0].rstrip("1"), "%d KiB" % rss_kib(tmp.procs[name].pid),
            "goal <= 20 MiB" if name == "manager1" else "")
    row("ranking cost", "manager's last full re-rank, 1,000 hosts / 10,000 objects x 3",
        "%.1f ms" % (st["manager"]["rank_us"] / 1000), "goal < 50 ms")
    monitor_busy_host()


def monitor_busy_host():
    """A monitor's CPU on a host with many connections that are none of
    its replicas' (its sock_diag pass every probe interval, 100 ms here):
    held open by this process, 2 x pairs established loopback sockets."""
    import resource
    import socket as sk
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    pairs = min(6000, (hard - 200) // 2)
    if soft < 2 * pairs + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * pairs + 200), hard))
    t = rr_deployment(n=1, name="busy", monitor_extra="hung_ms = 2000; ")
    start_rr(t)
    lst = sk.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4096)
    keep = []
    try:
        for _ in range(pairs):
            c = sk.create_connection(lst.getsockname())
            a, _ = lst.accept()
            keep += [c, a]
        pid = t.procs["monitor-h0"].pid
        time.sleep(1)
        c0, t0 = proc_cpu_s(pid), time.monotonic()
        if os.environ.get("FLEET_TRACE"):
            def by_comm():
                tot = {}
                for pid in os.listdir("/proc"):
                    try:
                        with open("/proc/%s/stat" % pid) as f:
                            t = f.read()
                    except OSError:
                        continue
                    comm = t[t.index("(") + 1:t.rindex(")")]
                    v = t.rsplit(")", 1)[1].split()
                    tot[comm] = tot.get(comm, 0) + int(v[11]) + int(v[12])
                return tot
            a0 = by_comm()
            time.sleep(5)
            a1 = by_comm()
            for k in sorted(a1, key=lambda k: a0.get(k, 0) - a1[k])[:8]:
                print("rest: %s %.1f%% of a core" % (k, (a1[k] - a0.get(k, 0)) / 5.0 / os.sysconf("SC_CLK_TCK") * 100), flush=True)
        time.sleep(3 if QUICK else 10)
        c1, t1 = proc_cpu_s(pid), time.monotonic()
        row("daemon memory", "monitor CPU, host with %d other connections (100 ms passes)"
            % (2 * pairs), "%.0f%% of a core" % (100 * (c1 - c0) / (t1 - t0)))
    finally:
        for x in keep:
            x.close()
        lst.close()
        for p in list(t.procs):
            t.kill(p, signal.SIGTERM)


def main():
    print("flare benchmarks (%s)" % ("quick" if QUICK else "full"), flush=True)
    if wanted("ranking"):
        r = subprocess.run([BUILD + "/bench/rankcost", "1000", "10000", "3", "11"],
                           capture_output=True, text=True)
        m = re.search(r"median_ms=([\d.]+) min_ms=([\d.]+)", r.stdout)
        row("ranking cost", "Algorithm 1, 1,000 hosts / 10,000 objects x 3 (median of 11)",
            "%s ms (min %s)" % (m.group(1), m.group(2)), "goal < 50 ms")
        r = subprocess.run([BUILD + "/bench/rankcost", "10000", "100000", "3", "5"],
                           capture_output=True, text=True)
        m = re.search(r"median_ms=([\d.]+) min_ms=([\d.]+)", r.stdout)
        row("ranking cost", "Algorithm 1, 10,000 hosts / 100,000 objects x 3 (median of 5)",
            "%s ms (min %s)" % (m.group(1), m.group(2)), "goal <= 100 ms")
    s = rr_deployment()
    start_rr(s, servers=False)
    for i in range(s.n):
        s.start("rr%d" % i, pinned([BUILD + "/rr-server", "-l", "127.0.0.1:%d" % s.ports[i],
                                    "--tag", "A-%d" % (i + 1)]))
    wait_for(lambda: deploy.all_alive(s), 10, what="replicas alive")
    if wanted("overhead") or wanted("loops") or wanted("instructions"):
        for i in (1, 2):  # the overhead runs use one replica only
            s.kill("rr%d" % i)
        wait_for(lambda: s.order("A")[0] == "A-1" and not s.replica("A-2")["alive"], 10,
                 what="only A-1 alive")
        if wanted("overhead"):
            overhead(s)
        if wanted("loops"):
            event_loops(s)
        if wanted("instructions") and shutil.which("valgrind"):
            instructions(s)
        elif wanted("instructions"):
            row("instructions", "valgrind", "not installed: skipped")
        for i in (1, 2):
            deploy.rr_server(s, i)
        s.kill("rr0")
        deploy.rr_server(s, 0)
        wait_for(lambda: deploy.all_alive(s), 10, what="replicas alive")
    if wanted("protocols"):
        protocols()
    if wanted("tls"):
        tls()
    if wanted("balancing"):
        balancing()
    for name, fn in (("penalty", failover_penalty), ("memory", memory),
                     ("propagation", propagation), ("daemons", daemon_memory), ("fleet", fleet)):
        if wanted(name):
            fn(s)
    print("\n%-18s | %-62s | %-34s | %s" % ("section", "measure", "value", "goal"))
    print("-" * 140)
    for sec, what, value, goal in rows:
        print("%-18s | %-62s | %-34s | %s" % (sec, what, value, goal))
    with open(os.path.join(BUILD, "bench-results.txt"), "w") as f:
        for sec, what, value, goal in rows:
            f.write("%s | %s | %s | %s\n" % (sec, what, value, goal))


if __name__ == "__main__":
    main()
