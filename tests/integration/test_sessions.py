"""Session protocols through a SIGKILL of the serving replica: TLS (curl
over HTTPS keep-alive against nginx, openssl s_client), MariaDB (the CLI
with --reconnect, and PyMySQL) and SSH (sshd killed whole, and only its
listener). A new connection cannot carry such a session's bytes, so the
library never replays them: each run either ends right or fails exactly
as the same program fails without flare, never with a wrong answer, never
hanging; and the program's own reconnect gets connect-time failover. (A
TLS session inside OpenSSL is healed with a new session of its own, its
plaintext replayed: test_tls.py.)"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from test_clients import NGINX_CONF  # noqa: E402
from harness import (BUILD, track, all_alive, check, client_env, library_stats, rr_deployment, run,
                     start_rr, wait_for)


def replicas(s, start, what):
    s.restart = start
    for i in range(s.n):
        start(i)
    wait_for(lambda: all_alive(s), 40, what=what)


def under(s, cmd, preload):
    senv, stats = client_env(s)
    e = dict(os.environ, FLARE_LOG="info", **senv)
    return ([BUILD + "/flare-run", "--shm", s.shm, "--"] + cmd if preload else cmd), e, stats


def killing(s, cmd, after, victim, preload=True, stdin=subprocess.DEVNULL, feed=None,
            timeout=60, kill=None):
    """cmd (under flare-run with preload) with replica victim killed after
    `after` s; (rc, stdout, stderr, the library's counters)."""
    argv, e, stats = under(s, cmd, preload)
    p = track(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                         stdin=subprocess.PIPE if feed else stdin))
    if feed:
        feed(p.stdin, after, lambda: (kill or (lambda v: s.procs.pop("rr%d" % v).kill()))(victim))
        try:
            p.stdin.close()
        except BrokenPipeError:
            pass
        p.stdin = None
    else:
        time.sleep(after)
        check(p.poll() is None, "%s ended before the kill" % cmd[0])
        (kill or (lambda v: s.procs.pop("rr%d" % v).kill()))(victim)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError("%s hung (%d s): %s" % (cmd[0], timeout, err[-800:]))
    return (p.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
            library_stats(stats))


def connected_to(s):
    """The replica index with an established connection from a client."""
    out = subprocess.run(["ss", "-Htn", "state", "established"], capture_output=True,
                         text=True).stdout
    for i, p in enumerate(s.ports):
        if re.search(r"127\.0\.0\.1:%d\s+127\.0\.0\.1:\d+" % p, out):
            return i
    return None


# ---- TLS: nginx with a certificate the test makes ----

# test_clients' nginx replica, its listener speaking TLS with a certificate
# the test makes
NGINX_TLS = NGINX_CONF.replace(
    "listen 127.0.0.1:{port};",
    "listen 127.0.0.1:{port} ssl;\n           ssl_certificate {dir}/cert.pem; "
    "ssl_certificate_key {dir}/key.pem;")
assert NGINX_TLS != NGINX_CONF
N_FILES = 30


def tls_deployment():
    s = rr_deployment(name="tls")
    start_rr(s, servers=False)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", os.path.join(s.dir, "key.pem"),
                    "-out", os.path.join(s.dir, "cert.pem")], check=True, capture_output=True)
    os.makedirs(os.path.join(s.dir, "www"))
    s.files = []
    for k in range(N_FILES):
        body = ("file %d line\n" % k) * (20000 + 97 * k)
        with open(os.path.join(s.dir, "www", "f%02d" % k), "w") as f:
            f.write(body)
        s.files.append(body.encode())

    def start(i):
        os.makedirs(os.path.join(s.dir, "t%d" % i), exist_ok=True)
        conf = os.path.join(s.dir, "nginx%d.conf" % i)
        with open(conf, "w") as f:
            f.write(NGINX_TLS.format(dir=s.dir, i=i, port=s.ports[i]))
        s.procs["rr%d" % i] = track(subprocess.Popen(
            [BUILD + "/flare-run", "--shm", s.shm, "--", "nginx", "-c", conf, "-p", s.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    replicas(s, start, "TLS replicas alive")
    return s


def test_curl_https_keepalive():
    """curl fetches 30 files over one HTTPS keep-alive connection, 8 MB/s,
    and its replica dies mid-transfer. Without flare: a partial transfer,
    curl's error. With flare the same error (a reply half read is never
    healed), or, when the kill lands between two files, every byte right
    (healed inside curl's TLS session, or curl reconnects by itself); never
    a TLS record replayed to a server that never saw the handshake: every
    replay is a new session's plaintext (test_tls.py)."""
    s = tls_deployment()
    expected = b"".join(s.files)
    results = []
    for preload in (False, True):
        port = s.svc if preload else s.ports[0]
        urls = ["https://127.0.0.1:%d/f%02d" % (port, k) for k in range(N_FILES)]
        victim = 0
        if preload:
            victim = None
        cmd = ["curl", "-s", "--fail", "--cacert", os.path.join(s.dir, "cert.pem"),
               "--limit-rate", "8M"] + urls
        argv, e, stats = under(s, cmd, preload)
        p = track(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e))
        time.sleep(0.5)
        victim = connected_to(s) if victim is None else victim
        check(victim is not None and p.poll() is None, "curl connected and running")
        s.procs.pop("rr%d" % victim).kill()
        out, err = p.communicate(timeout=60)
        check(out == expected[:len(out)], "%s: the bytes curl wrote are a prefix of the files" %
              ("flare" if preload else "direct"))
        results.append((p.returncode, len(out), library_stats(stats)))
        s.restart(victim)
        wait_for(lambda: all_alive(s), 20, what="the replica back")
    (rc0, n0, _), (rc1, n1, st) = results
    print("     without flare: rc %d after %d bytes; with flare: rc %d after %d bytes" % (
        rc0, n0, rc1, n1))
    check(rc0 != 0, "without flare the transfer fails (rc %d)" % rc0)
    check(rc1 == rc0 or (rc1 == 0 and n1 == len(expected)),
          "with flare: as without (rc %d), or whole: rc %d, %d of %d bytes" % (
              rc0, rc1, n1, len(expected)))
    check(st["replays"] <= st["tls_heals"], "no TLS record replayed: %r" % st)


def feed_lines(lines, linger=0.0):
    """A feed for killing(): one line every 50 ms into the program's stdin
    (each a request awaiting its answer), the kill after `after` s (or at
    the end), then `linger` s for the program to write what it got. A
    program that ended stops the feed: its output says why."""
    def feed(w, after, kill):
        t0, killed = time.monotonic(), False
        for line in lines:
            try:
                w.write(line)
                w.flush()
            except BrokenPipeError:
                break
            time.sleep(0.05)
            if not killed and time.monotonic() - t0 >= after:
                kill()
                killed = True
        if not killed:
            kill()
        time.sleep(linger)
    return feed


def test_openssl_s_client():
    """openssl s_client sends a GET every 50 ms over one TLS session; the
    replica is killed after 0.5 s, while the session idles between two
    answered GETs. With flare as without: s_client reads the end of an
    idle session (a heal there would leave its read waiting for bytes no
    new replica sends), so the session ends with s_client's own error,
    every response before it whole."""
    s = tls_deployment()
    reqs = [b"GET /f01 HTTP/1.1\r\nHost: x\r\n\r\n"] * 40
    outcomes = []
    for preload in (False, True):
        port = s.svc if preload else s.ports[0]
        cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-quiet",
               "-CAfile", os.path.join(s.dir, "cert.pem"), "-verify_return_error"]
        victim = 0 if not preload else None

        def kill(v, preload=preload):
            v = connected_to(s) if preload else 0
            s.procs.pop("rr%d" % v).kill()
            kill.victim = v
        rc, out, err, st = killing(s, cmd, 0.5, victim, preload=preload,
                                   feed=feed_lines(reqs, linger=0.5), kill=kill)
        n = out.count("HTTP/1.1 200 OK")
        check(n >= 1 and out.count(s.files[1].decode()) in (n, n - 1),
              "whole responses only: %d heads" % n)
        outcomes.append((rc, n, st))
        s.restart(kill.victim)
        wait_for(lambda: all_alive(s), 20, what="the replica back")
    print("     s_client: without flare rc %d after %d responses, with flare rc %d after %d" % (
        outcomes[0][0], outcomes[0][1], outcomes[1][0], outcomes[1][1]))
    check(outcomes[0][0] == outcomes[1][0], "the same exit status: %r" % (outcomes,))
    check(outcomes[1][2]["replays"] <= outcomes[1][2]["tls_heals"], "no TLS record replayed")


# ---- MariaDB ----

def mariadb_deployment():
    s = rr_deployment(name="maria")
    start_rr(s, servers=False)
    # one data directory made, copied for the others (before any server runs)
    first = os.path.join(s.dir, "db0")
    r = subprocess.run(["mariadb-install-db", "--no-defaults", "--datadir=" + first,
                        "--user=root", "--auth-root-authentication-method=normal",
                        "--skip-test-db"], capture_output=True, text=True)
    check(r.returncode == 0, "mariadb-install-db: %s" % (r.stdout + r.stderr)[-600:])
    for i in range(1, s.n):
        shutil.copytree(first, os.path.join(s.dir, "db%d" % i))

    def start(i):
        d = os.path.join(s.dir, "db%d" % i)
        s.procs["rr%d" % i] = track(subprocess.Popen(
            [BUILD + "/flare-run", "--shm", s.shm, "--", "/usr/sbin/mariadbd", "--no-defaults",
             "--datadir=" + d, "--port=%d" % s.ports[i], "--bind-address=127.0.0.1",
             "--socket=" + os.path.join(d, "sock"), "--pid-file=" + os.path.join(d, "pid"),
             "--user=root", "--skip-grant-tables", "--skip-log-bin",
             "--innodb-buffer-pool-size=16M", "--log-error=" + os.path.join(d, "err")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    replicas(s, start, "MariaDB replicas alive")
    return s


QUERIES = "".join("SELECT %d AS q, @@port AS port, SLEEP(0.02) AS s;\n" % k for k in range(80))


def maria_cli(s, preload):
    """The CLI on 80 queries from stdin, its replica killed after 0.6 s:
    (rc, answered rows, the error codes in order, the library's counters)."""
    port = s.svc if preload else s.ports[0]
    cmd = ["mariadb", "-h", "127.0.0.1", "-P", str(port), "-u", "root", "--reconnect",
           "--force", "-N", "-B"]
    victim = []

    def kill(_):
        victim.append(connected_to(s) if preload else 0)
        s.procs.pop("rr%d" % victim[0]).kill()

    def feed(w, after, do_kill):
        w.write(QUERIES.encode())
        w.flush()
        time.sleep(after)
        do_kill()
    rc, out, err, st = killing(s, cmd, 0.6, None, preload=preload, feed=feed, kill=kill)
    rows = [line.split("\t") for line in out.splitlines() if line.count("\t") == 2]
    check(all(r[0] == str(k) for k, r in enumerate(rows)), "rows in order, each its query's")
    check("out of order" not in err, "no packets out of order: %s" % err[-400:])
    s.restart(victim[0])
    wait_for(lambda: all_alive(s), 30, what="the replica back")
    return rc, len(rows), re.findall(r"ERROR (\d+)", err), st


def test_mariadb_cli_reconnect():
    """The mariadb CLI with --reconnect and --force runs 80 queries from
    its input; the serving replica dies. The same run straight to a replica
    shows what the program does without flare: one query lost (2013), then
    "server has gone away" (2006) for the rest, as batch mode does not
    reconnect. Under flare the same, never "packets out of order", never a
    heal per query: a session is not healed after its greeting."""
    s = mariadb_deployment()
    rc0, n0, errs0, _ = maria_cli(s, False)
    rc1, n1, errs1, st = maria_cli(s, True)
    print("     mariadb --reconnect --force: without flare %d rows, errors %s...; with flare "
          "%d rows, errors %s..." % (n0, errs0[:3], n1, errs1[:3]))
    shape = lambda errs: (errs[:1], set(errs[1:]))  # noqa: E731
    check(rc0 == rc1 and shape(errs0) == shape(errs1) == (["2013"], {"2006"}),
          "the same failure: %r / %r" % ((rc0, errs0[:4]), (rc1, errs1[:4])))
    check(n1 + len(errs1) == 80 and 10 <= n1 < 80, "every query answered or failed: %d + %d" % (
        n1, len(errs1)))
    check(st["replays"] == 0, "nothing replayed into the session: %r" % st)


PYMYSQL_CLIENT = r'''
import sys, time, pymysql
port = int(sys.argv[1])
c = pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=5)
ok, lost, wrong, ports = 0, 0, 0, set()
for k in range(int(sys.argv[2])):
    try:
        with c.cursor() as cur:
            cur.execute("SELECT %d, @@port, SLEEP(0.02)" % k)
            row = cur.fetchone()
            if row[0] != k:
                wrong += 1
            ports.add(row[1])
            ok += 1
    except pymysql.err.OperationalError as e:
        lost += 1
        try:
            c.ping(reconnect=True)
        except pymysql.err.OperationalError:
            time.sleep(0.05)
    except pymysql.err.InternalError as e:
        print("internal", e)
        wrong += 1
print("ok=%d lost=%d wrong=%d ports=%d" % (ok, lost, wrong, len(ports)))
'''


def test_pymysql_reconnect():
    """PyMySQL, a client library: 80 queries with a reconnect on error; the
    serving replica dies. One query is lost (as without flare), the
    library's reconnect fails over, no answer is wrong."""
    s = mariadb_deployment()
    script = os.path.join(s.dir, "pm.py")
    with open(script, "w") as f:
        f.write(PYMYSQL_CLIENT)
    # Debian's python3, where python3-pymysql is installed
    cmd = ["/usr/bin/python3", script, str(s.svc), "80"]
    rc, out, err, st = killing(s, cmd, 0.6, None,
                               kill=lambda v: s.procs.pop("rr%d" % connected_to(s)).kill())
    print("     PyMySQL through a kill: " + out.strip())
    check(rc == 0 and "lost=1 wrong=0 ports=2" in out and "ok=79" in out,
          "rc %d %r %s" % (rc, out, err[-500:]))
    # a fresh connection the dying replica accepted may move (nothing to replay)
    check(st["replays"] == 0 and st["managed"] >= 2, "nothing replayed: %r" % st)


# ---- SSH ----

SSHD_CONF = """Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/host_key
PidFile {dir}/sshd{i}.pid
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel ERROR
"""


def ssh_deployment():
    os.makedirs("/run/sshd", exist_ok=True)
    s = rr_deployment(name="ssh")
    start_rr(s, servers=False)
    for name in ("host_key", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        os.path.join(s.dir, name)], check=True)
    shutil.copy(os.path.join(s.dir, "id.pub"), os.path.join(s.dir, "authorized_keys"))

    def start(i):
        conf = os.path.join(s.dir, "sshd%d.conf" % i)
        with open(conf, "w") as f:
            f.write(SSHD_CONF.format(port=s.ports[i], dir=s.dir, i=i))
        s.procs["rr%d" % i] = track(subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", conf],
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
    replicas(s, start, "sshd replicas alive")
    return s


def ssh_cmd(s, port, remote="for i in $(seq 1 30); do echo line $i; sleep 0.1; done"):
    return ["ssh", "-i", os.path.join(s.dir, "id"), "-p", str(port), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "root@127.0.0.1", remote]


def session_children(pid):
    """The sshd processes serving sessions: the listener's children."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(x) for x in out.split()]


def test_ssh_listener_killed():
    """Only sshd's listener is SIGKILLed while the program types into the
    session (remote cat echoes every line): the table marks the replica
    dead, but the session's own sshd lives on. The connection never
    failed: the session runs to its end, every line echoed, as without
    flare (a heal had replayed SSH packets to a new server: "Bad packet
    length ... Connection corrupted")."""
    s = ssh_deployment()
    expected = "".join("line %d\n" % i for i in range(1, 61))
    rc, out, err, st = killing(s, ssh_cmd(s, s.svc, "cat"), 0.8, None,
                               feed=feed_lines(expected.encode().splitlines(keepends=True)),
                               kill=lambda v: s.procs.pop("rr%d" % connected_to(s)).kill())
    check(not all_alive(s), "the listener dead in the table")
    check(rc == 0 and out == expected, "rc %d, %d lines %s" % (rc, out.count("\n"), err[-400:]))
    check(st["failovers"] == 0, "no heal: %r" % st)


def test_ssh_server_killed():
    """The whole sshd (listener and the session's process) SIGKILLed: ssh
    fails as it does without flare (exit 255), never hangs, never reads a
    new server's bytes as the old session's."""
    s = ssh_deployment()
    outcomes = []
    for preload in (False, True):
        victim = [None]

        def kill(v, preload=preload):
            i = connected_to(s) if preload else 0
            p = s.procs.pop("rr%d" % i)
            for c in session_children(p.pid):
                try:
                    os.kill(c, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # a child that ended between the listing and the kill
            p.kill()
            victim[0] = i
        rc, out, err, st = killing(s, ssh_cmd(s, s.svc if preload else s.ports[0]), 1.0, None,
                                   preload=preload, kill=kill)
        lines = out.splitlines()
        check(lines == ["line %d" % i for i in range(1, len(lines) + 1)], "lines in order")
        outcomes.append((rc, st))
        s.restart(victim[0])
        wait_for(lambda: all_alive(s), 20, what="sshd back")
    check(outcomes[0][0] == outcomes[1][0] == 255, "exit 255 both ways: %r" % (outcomes,))
    check(outcomes[1][1]["failovers"] == 0, "no heal")


if __name__ == "__main__":
    run([test_curl_https_keepalive, test_openssl_s_client, test_mariadb_cli_reconnect,
         test_pymysql_reconnect, test_ssh_listener_killed, test_ssh_server_killed])
