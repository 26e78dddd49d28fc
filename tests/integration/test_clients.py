"""More real, unmodified clients under flare-run, each through a SIGKILL of
the replica serving it: ab against nginx, libmemcached's memcslap and a
Node.js raw-socket client against memcached, Node's http keep-alive agent
against nginx, and pgbench and psql against PostgreSQL. Every response must
be correct and the exit code that of a run without failure; for
PostgreSQL, a session protocol, the failure of an established session
surfaces exactly as without flare (the same clean error, no hang) while
new connections fail over."""
import os
import re
import shutil
import signal
import subprocess
import time

from harness import (BUILD, all_alive, busiest_replica, check, client_env, connected,
                     flare_run_for_others, library_stats, rr_deployment, run, serving_replica,
                     start_rr, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
PG_BIN = "/usr/lib/postgresql/15/bin"


def become_subreaper():
    """Orphans of the servers this test crashes (PostgreSQL's backends)
    are re-parented to this process, which reaps them (reap_orphans)."""
    import ctypes
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def reap_orphans():
    for _ in range(1000):
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def under_flare(s, cmd, env=None):
    """cmd under flare-run, with the library's counters in a file."""
    senv, stats = client_env(s)
    e = dict(os.environ, FLARE_LOG="info", **senv)
    e.update(env or {})
    return [BUILD + "/flare-run", "--shm", s.shm, "--"] + cmd, e, stats


def run_killing(s, cmd, after, victim=None, kill=None, env=None, timeout=120, preload=True):
    """Runs cmd under flare-run (or, without preload, as it is) and kills
    the serving replica after `after` seconds: victim, else the one the
    client's connections are on then (on a loaded machine the table's
    first may have changed while the client connected); returns (rc,
    stdout, stderr, the library's counters, seconds)."""
    if preload:
        argv, e, stats = under_flare(s, cmd, env)
    else:
        argv, e, stats = cmd, dict(os.environ, **(env or {})), None
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                         stdin=subprocess.DEVNULL)
    # `after` counts from the client's first connection: on a busy machine
    # its start alone can take longer (a client whose connections are
    # another process's is given 10 s, then the kill goes ahead)
    end = time.monotonic() + 10
    while time.monotonic() < end and p.poll() is None and not connected(p.pid):
        time.sleep(0.01)
    time.sleep(after)
    if p.poll() is not None:
        raise AssertionError("%s ended before the kill (%.1f s): make the run longer"
                             % (cmd[0], after))
    if victim is None:
        victim = busiest_replica(s)
        victim = serving_replica(s) if victim is None else victim
    (kill or (lambda v: s.kill("rr%d" % v)))(victim)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError("%s hung: killed after %d s\n%s" % (cmd[0], timeout,
                                                                 err.decode()[-1500:]))
    return (p.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
            library_stats(stats) if stats else None, time.monotonic() - t0)


def start_replicas(s, start):
    for i in range(s.n):
        start(i)
    wait_for(lambda: all_alive(s), 20, what="every replica alive")


# ---- nginx ----

NGINX_CONF = """daemon off; master_process off; worker_processes 1;
pid {dir}/nginx{i}.pid; error_log {dir}/nginx{i}.err warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/t{i}/body; proxy_temp_path {dir}/t{i}/proxy;
  fastcgi_temp_path {dir}/t{i}/fcgi; uwsgi_temp_path {dir}/t{i}/uwsgi;
  scgi_temp_path {dir}/t{i}/scgi;
  keepalive_requests 1000000; keepalive_timeout 60s;
  server {{ listen 127.0.0.1:{port}; root {dir}/www; }}
}}
"""


def nginx_deployment():
    s = rr_deployment(name="nginx")
    start_rr(s, servers=False)
    os.makedirs(os.path.join(s.dir, "www"))
    page = "".join("line %04d of the page every replica serves\n" % k for k in range(40))
    with open(os.path.join(s.dir, "www", "index.html"), "w") as f:
        f.write(page)

    def start(i):
        os.makedirs(os.path.join(s.dir, "t%d" % i), exist_ok=True)
        conf = os.path.join(s.dir, "nginx%d.conf" % i)
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=s.dir, i=i, port=s.ports[i]))
        s.start("rr%d" % i, [BUILD + "/flare-run", "--shm", s.shm, "--", "nginx", "-c", conf,
                             "-p", s.dir])
    start_replicas(s, start)
    s.restart = start
    s.page = page
    return s


def test_ab_keepalive_nginx():
    """ab's error branch closed the descriptor a read had just healed, and
    hung for its timeout with requests never completed."""
    s = nginx_deployment()
    rc, out, err, st, secs = run_killing(
        s, ["ab", "-k", "-n", "100000", "-c", "4", "-s", "20",
            "http://127.0.0.1:%d/index.html" % s.svc], 0.4, timeout=90)
    complete = re.search(r"Complete requests:\s+(\d+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    check(rc == 0 and complete and complete.group(1) == "100000" and failed and
          failed.group(1) == "0" and "Non-2xx" not in out,
          "ab: rc %d in %.1f s\n%s\n%s" % (rc, secs, out[-1200:], err[-1500:]))
    check(st["failovers"] > 0, "the kill landed mid-run and was healed: %r" % st)
    length = re.search(r"Document Length:\s+(\d+)", out)
    check(length and int(length.group(1)) == len(s.page), "every response whole: %r" % out)


def test_node_http_keepalive():
    """Node's http.Agent with keep-alive: 3,000 requests in sequence over
    one kept-alive socket, every body checked."""
    s = nginx_deployment()
    script = os.path.join(s.dir, "http-client.js")
    with open(script, "w") as f:
        f.write(NODE_HTTP)
    rc, out, err, st, secs = run_killing(s, ["node", script, str(s.svc), "20000",
                                             str(len(s.page))], 0.8)
    check(rc == 0 and out.strip() == "ok 20000",
          "node http: rc %d in %.1f s %r %s" % (rc, secs, out, err[-1500:]))
    # a kill while a request waits is healed; one between two requests
    # closes an idle socket, which the agent replaces by itself
    check(st["failovers"] > 0 or st["managed"] >= 2, "healed or reconnected: %r" % st)


NODE_HTTP = r"""
const http = require('http');
const [port, n, length] = process.argv.slice(2).map(Number);
const agent = new http.Agent({keepAlive: true, maxSockets: 1});
let done = 0;
function next() {
  if (done === n) { console.log('ok ' + done); agent.destroy(); return; }
  const req = http.get({host: '127.0.0.1', port, path: '/index.html', agent}, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (c) => { body += c; });
    res.on('end', () => {
      if (res.statusCode !== 200 || body.length !== length) {
        console.log('bad response ' + done + ': ' + res.statusCode + ' ' + body.length);
        process.exit(1);
      }
      done++;
      setImmediate(next);
    });
  });
  req.on('error', (e) => { console.log('error after ' + done + ': ' + e.message); process.exit(1); });
}
next();
"""


# ---- memcached ----

def memcached_deployment():
    s = rr_deployment(name="memcached")
    start_rr(s, servers=False)

    def start(i):
        s.start("rr%d" % i, [BUILD + "/flare-run", "--shm", s.shm, "--", "memcached", "-l",
                             "127.0.0.1", "-p", str(s.ports[i]), "-U", "0", "-t", "2", "-u",
                             "root", "-m", "64"])
    start_replicas(s, start)
    return s


def test_memcslap():
    """libmemcached reads SO_ERROR after its poll instead of reading the
    socket: no heal ever started, and it reported CONNECTION FAILURE."""
    s = memcached_deployment()
    rc, out, err, st, secs = run_killing(
        s, ["memcslap", "-s", "127.0.0.1:%d" % s.svc, "-c", "4", "-e", "40000", "-t", "get"],
        0.6)
    text = out + err
    check(rc == 0 and "FAILURE" not in text and "failure" not in text.lower(),
          "memcslap: rc %d in %.1f s %s" % (rc, secs, text[-1500:]))
    check(st["failovers"] > 0, "the kill landed mid-run and was healed: %r" % st)


NODE_NET = r"""
const net = require('net');
const [port, n] = process.argv.slice(2).map(Number);
const sock = net.connect({host: '127.0.0.1', port});
let sent = 0, answered = 0, buf = '';
function send() {
  sent++;
  const v = 'v' + sent;
  sock.write('set k' + (sent % 100) + ' 0 0 ' + v.length + '\r\n' + v + '\r\n');
}
sock.on('connect', send);
sock.on('data', (d) => {
  buf += d.toString();
  let i;
  while ((i = buf.indexOf('\r\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 2);
    if (line !== 'STORED') { console.log('bad reply ' + answered + ': ' + line); process.exit(1); }
    answered++;
    if (answered === n) { console.log('ok ' + answered); sock.end(); return; }
    send();
  }
});
sock.on('error', (e) => { console.log('error after ' + answered + ': ' + e.message); process.exit(1); });
sock.on('close', () => { if (answered !== n) { console.log('closed after ' + answered); process.exit(1); } });
"""


def test_node_net_memcached():
    """A raw net.Socket speaking the memcached text protocol: libuv read
    HUP plus a short read as the end of the stream."""
    s = memcached_deployment()
    script = os.path.join(s.dir, "net-client.js")
    with open(script, "w") as f:
        f.write(NODE_NET)
    rc, out, err, st, secs = run_killing(s, ["node", script, str(s.svc), "80000"], 0.8)
    check(rc == 0 and out.strip() == "ok 80000",
          "node net: rc %d in %.1f s %r %s" % (rc, secs, out, err[-1500:]))
    check(st["failovers"] > 0, "the kill landed mid-run and was healed: %r" % st)


# ---- PostgreSQL ----

def pg_available():
    return os.path.exists(PG_BIN + "/postgres") and shutil.which("runuser") is not None


def pg_deployment(ssl=None):
    """Two PostgreSQL replicas (initdb'd as the postgres user), each with
    pgbench's tables, under flare-run; with ssl = (certificate, key), each
    serves TLS with them."""
    s = rr_deployment(n=2, name="pg")
    start_rr(s, servers=False)
    sockdir = os.path.join(s.dir, "pgsock")
    os.makedirs(sockdir)
    os.chmod(s.dir, 0o755)
    shutil.chown(sockdir, "postgres")

    def data(i):
        return os.path.join(s.dir, "pg%d" % i)

    for i in range(2):
        os.makedirs(data(i))
        shutil.chown(data(i), "postgres")
        subprocess.run(["runuser", "-u", "postgres", "--", PG_BIN + "/initdb", "-D", data(i),
                        "-A", "trust", "-U", "postgres", "--no-sync"], check=True,
                       capture_output=True, timeout=120)

    # the postgres user may not enter the checkout (root's home is 0700):
    # it runs copies of flare-run and the library from the deployment's dir
    run_as_other = flare_run_for_others(s)
    tls = []
    if ssl:
        # PostgreSQL takes a key only if its own user alone may read it
        for src, name in zip(ssl, ("server.crt", "server.key")):
            dst = os.path.join(s.dir, name)
            shutil.copy(src, dst)
            shutil.chown(dst, "postgres")
            os.chmod(dst, 0o600)
        tls = ["-c", "ssl=on", "-c", "ssl_cert_file=" + os.path.join(s.dir, "server.crt"),
               "-c", "ssl_key_file=" + os.path.join(s.dir, "server.key")]

    def start(i, init=True):
        s.start("rr%d" % i, run_as_other + ["runuser", "-u", "postgres", "--",
                             os.path.join(s.dir, "bin", "flare-run"), "--shm",
                             s.shm, "--", PG_BIN + "/postgres", "-D", data(i), "-p",
                             str(s.ports[i]), "-h", "127.0.0.1", "-k", sockdir, "-c",
                             "fsync=off", "-c", "max_connections=20"] + tls)
        wait_for(lambda: subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p",
                                         str(s.ports[i])], capture_output=True).returncode == 0,
                 30, what="postgres %d up" % i)
        if init:
            subprocess.run(["pgbench", "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p",
                            str(s.ports[i]), "-U", "postgres", "postgres"], check=True,
                           capture_output=True, timeout=120)

    def restart(i):
        """The crashed replica comes back (crash recovery) for the next run."""
        if "rr%d" % i not in s.procs:
            start(i, init=False)
            wait_for(lambda: all_alive(s), 20, what="replica %d alive again" % i)
    start_replicas(s, start)
    s.data = data
    s.restart_pg = restart
    return s


def pg_kill(s):
    """SIGKILLs a replica: its postmaster and every backend (the host's
    postgres crashing), by the PIDs this test started or they forked."""
    def kill(i):
        pm = postmaster(s, i)
        pids = [pm] if pm else []
        try:
            for t in os.listdir("/proc/%d/task" % pm):
                with open("/proc/%d/task/%s/children" % (pm, t)) as f:
                    pids += [int(x) for x in f.read().split()]
        except (OSError, TypeError):
            pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p = s.procs.pop("rr%d" % i, None)
        if p:
            p.wait(timeout=10)
    return kill


PG_ENV = {"PGUSER": "postgres", "PGDATABASE": "postgres", "PGCONNECT_TIMEOUT": "5"}


def pg_run(s, cmd, port, preload, after, victim):
    """Runs a libpq client (with or without flare) and crashes the victim
    replica after `after` seconds."""
    return run_killing(s, cmd + ["-h", "127.0.0.1", "-p", str(port)], after, victim=victim,
                       kill=pg_kill(s), env=PG_ENV, preload=preload)


def test_pgbench_and_psql_sessions():
    """A session protocol: pgbench and psql with persistent sessions. The
    library had healed the query onto a fresh connection, which the replica
    rejected, over and over, forever. Now the crash surfaces as without
    flare (same exit code, same error) and promptly; new connections go to
    the surviving replica."""
    if not pg_available():
        raise AssertionError("PostgreSQL 15 server binaries not installed (scripts/deps.sh)")
    s = pg_deployment()
    try:
        pg_sessions(s)
    finally:
        pg_stop(s)


def postmaster(s, i):
    try:
        with open(os.path.join(s.data(i), "postmaster.pid")) as f:
            return int(f.readline())
    except (OSError, ValueError):
        return None


def pg_stop(s):
    """A fast shutdown of every replica, so that PostgreSQL removes its
    shared memory itself; a crashed one is started first (its crash
    recovery removes what the crash left). SIGKILL after 15 s."""
    for i in range(s.n):
        try:
            s.restart_pg(i)
        except Exception:  # noqa: BLE001 - stop the others all the same
            pass
    for i in range(s.n):
        pm = postmaster(s, i)
        if not pm or not os.path.exists("/proc/%d" % pm):
            continue
        os.kill(pm, signal.SIGINT)
        end = time.monotonic() + 15
        while os.path.exists("/proc/%d" % pm) and time.monotonic() < end:
            time.sleep(0.05)
        if os.path.exists("/proc/%d" % pm):
            pg_kill(s)(i)
    reap_orphans()


def pg_sessions(s):
    victim = serving_replica(s)
    sql = os.path.join(s.dir, "slow.sql")
    with open(sql, "w") as f:
        f.write("SELECT pg_sleep(0.02);\n" * 400)
    results = {}
    for preload in (False, True):
        s.restart_pg(victim)
        port = s.svc if preload else s.ports[victim]
        results[preload] = {
            "pgbench": pg_run(s, ["pgbench", "-n", "-c", "1", "-T", "30", "-S"], port, preload,
                              1.0, victim),
        }
        s.restart_pg(victim)
        results[preload]["psql"] = pg_run(s, ["psql", "-X", "-q", "-f", sql], port, preload, 1.0,
                                          victim)
    for tool in ("pgbench", "psql"):
        direct, flare = results[False][tool], results[True][tool]
        check(flare[0] == direct[0] and flare[0] != 0,
              "%s: exit %d with flare, %d without\n%s" % (tool, flare[0], direct[0],
                                                           flare[2][-1500:]))
        check(flare[4] < 20, "%s: the failure surfaced after %.1f s" % (tool, flare[4]))
        check(flare[3]["replays"] == 0, "%s: no query replayed: %r" % (tool, flare[3]))
    # psql's own words for the lost connection, whichever way the race
    # went (without flare too, one run in six with both cores busy): the
    # query in flight met the crash, or libpq saw the connection end
    # between two queries; both end with the same line
    err = results[True]["psql"][2]
    check("connection to server was lost" in err and
          ("server closed the connection unexpectedly" in err or
           "no connection to the server" in err),
          "psql's own error: %r" % err[-600:])
    # pgbench aborts the client: the backend died mid-query ("perhaps the
    # backend died"), or said so first ("unexpected postmaster exit")
    check(re.search(r"client 0 .*aborted", results[True]["pgbench"][2]),
          "pgbench's own error: %r" % results[True]["pgbench"][2][-600:])
    # a new session fails over to the surviving replica
    wait_for(lambda: not s.replica("A-%d" % (victim + 1))["alive"], 10, what="crash seen")
    argv, e, _ = under_flare(s, ["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(s.svc), "-c",
                                 "SELECT 6 * 7"], PG_ENV)
    r = subprocess.run(argv, capture_output=True, text=True, env=e, timeout=60)
    check(r.returncode == 0 and r.stdout.strip() == "42", "new session: %r %r" % (r.stdout,
                                                                              r.stderr))


if __name__ == "__main__":
    become_subreaper()
    run([test_ab_keepalive_nginx, test_node_http_keepalive, test_memcslap,
         test_node_net_memcached, test_pgbench_and_psql_sessions])
