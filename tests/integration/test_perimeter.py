"""The perimeter: nothing a local user or an unauthenticated peer does can
crash, steer or starve flare's clients and daemons. The local attacker is
a real process running as `nobody`; the network attacker opens real
connections to the real manager. Each test runs a real client through the
attack and checks its every reply."""
import os
import re
import resource
import socket
import struct
import subprocess
import sys
import threading
import time

from harness import (BUILD, all_alive, check, frame, rr_client, rr_deployment, run,
                     serving_replica, start_rr, wait_for)

NOBODY = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--"]


def as_nobody(code, *args):
    """Python code run as nobody; its stdout."""
    r = subprocess.run(NOBODY + [sys.executable, "-c", code] + list(args), capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 0, "the attacker ran: %r" % r.stderr[-400:])
    return r.stdout


def parse(out):
    m = re.search(r"requests=(\d+) errors=(\d+)", out)
    check(m, "no summary in: %r" % out)
    return int(m.group(1)), int(m.group(2))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


# Truncates, then scribbles over, every segment of the deployment it can
# see, for as long as it is told; prints how many tries were refused and
# how many went through.
SCRIBBLER = r'''
import os, sys, time
base, until = sys.argv[1], time.monotonic() + float(sys.argv[2])
denied = done = 0
while time.monotonic() < until:
    for e in os.listdir("/dev/shm"):
        if not e.startswith(base):
            continue
        p = "/dev/shm/" + e
        for how in ("truncate", "write"):
            try:
                if how == "truncate":
                    os.truncate(p, 0)
                else:
                    with open(p, "r+b") as f:
                        f.write(b"\xff" * 4096)
                done += 1
            except OSError:
                denied += 1
    time.sleep(0.005)
print("denied=%d done=%d" % (denied, done))
'''


def test_local_user_cannot_fault_or_skew_clients():
    """`nobody` truncates and scribbles over the table and every user's
    segment while round-robin clients run: every try is refused, and the
    clients finish with every reply right (before: SIGBUS, rc -7)."""
    s = rr_deployment(service_extra='balance = "round-robin"; binding = "request";')
    start_rr(s)
    clients = [rr_client(s, ["-n", "3000", "-r", "2000"], wait=False) for _ in range(3)]
    time.sleep(0.3)
    got = as_nobody(SCRIBBLER, os.path.basename(s.shm), "2")
    m = re.search(r"denied=(\d+) done=(\d+)", got)
    check(m and int(m.group(1)) > 0 and int(m.group(2)) == 0,
          "every write and truncation refused: %r" % got)
    segs = sorted(e for e in os.listdir("/dev/shm") if e.startswith(os.path.basename(s.shm)))
    check(any(".user." in e for e in segs) and not any(e.endswith((".rr", ".stats"))
                                                     for e in segs),
          "a user segment and no segment shared by all users: %r" % segs)
    for p in clients:
        out, err = p.communicate(timeout=90)
        n, errors = parse(out)
        check(p.returncode == 0 and n == 3000 and errors == 0,
              "client intact: rc %d %r %r" % (p.returncode, out, err[-300:]))


def test_squatted_table_is_not_trusted():
    """`nobody` makes the table's name first, with a copy of a real table:
    the library does not follow it (it passes through, as without flare,
    and says why once), and an agent refuses that name."""
    s = rr_deployment()
    start_rr(s)
    squat = s.shm + "-squat"
    # the attacker's copy points at live replicas: following it would work,
    # which is what must not happen
    as_nobody("import shutil,sys; shutil.copyfile('/dev/shm'+sys.argv[1], '/dev/shm'+sys.argv[2])",
              s.shm, squat)
    try:
        check(os.stat("/dev/shm" + squat).st_uid != 0, "the squat is nobody's")
        r = subprocess.run([BUILD + "/flare-run", "--shm", squat, "--", BUILD + "/rr-client", "-c",
                            "127.0.0.1:%d" % s.svc, "-n", "3"], capture_output=True, text=True,
                           timeout=30, env=dict(os.environ, FLARE_LOG="warn"))
        check(r.returncode != 0 and "belongs to uid" in r.stderr and
              r.stderr.count("belongs to uid") == 1,
              "passed through (the service address has no listener) with one warning: "
              "rc %d %r" % (r.returncode, r.stderr[-400:]))
        # flarectl reads it as a client would: refused, exit 1
        t = subprocess.run([BUILD + "/flarectl", "table", "--shm", squat], capture_output=True,
                           text=True, timeout=30)
        check(t.returncode == 1 and "untrusted" in t.stderr,
              "flarectl table on the squat: rc %d %r" % (t.returncode, t.stderr[-300:]))
        a = subprocess.run([BUILD + "/flare-agent", "-c", s.conf, "--shm", squat, "-f"],
                           capture_output=True, text=True, timeout=30)
        check(a.returncode != 0 and "someone else holds the name" in a.stderr,
              "the agent refuses the name: rc %d %r" % (a.returncode, a.stderr[-400:]))
        # the deployment's own clients are untouched
        r = rr_client(s, ["-n", "100"])
        check(r.returncode == 0, "the real table still serves")
    finally:
        try:
            os.unlink("/dev/shm" + squat)
        except OSError:
            pass


def flood_conf(s, handshake_ms, port):
    with open(s.conf) as f:
        text = f.read()
    text = text.replace("manager = { addresses", "manager = { handshake_timeout_ms = %d; "
                        "max_pending_per_address = 64; metrics = [ \"127.0.0.1:%d\" ]; "
                        "addresses" % (handshake_ms, port))
    with open(s.conf, "w") as f:
        f.write(text)


def test_floods_leave_failover_and_memory_intact():
    """Oversized auth frames, slow-loris handshakes, 1,500 connections from
    one address and a metrics flood, all at once from 127.0.0.3, while a
    client fails over: its every reply is right, the monitors keep their
    hosts alive, and the manager's memory stays bounded."""
    from harness import free_ports
    mport = free_ports(1)[0]
    s = rr_deployment(auth=True)
    flood_conf(s, 500, mport)
    start_rr(s)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    mpid = s.procs["manager1"].pid
    rss0 = rss_kib(mpid)
    stop = time.monotonic() + 4
    counts = {"big": 0, "loris_closed": 0, "conns": 0, "http": 0}

    def dial(port=None):
        c = socket.socket()
        c.bind(("127.0.0.3", 0))
        c.settimeout(2)
        c.connect(("127.0.0.1", port or s.mports[0]))
        return c

    def big():
        while time.monotonic() < stop:
            try:
                c = dial()
                c.sendall(struct.pack(">HBBI", 0xF1A3, 1, 11, 16 << 20) + b"x" * 65536)
                c.close()
                counts["big"] += 1
            except OSError:
                pass

    def loris():
        socks = []
        for _ in range(40):
            try:
                c = dial()
                c.sendall(struct.pack(">HBBI", 0xF1A3, 1, 11, 35))  # the header, then a trickle
                socks.append(c)
            except OSError:
                pass
        while time.monotonic() < stop:
            for c in list(socks):
                try:
                    c.send(b"\x02")
                except OSError:
                    socks.remove(c)
                    counts["loris_closed"] += 1
            time.sleep(0.1)

    def many():
        socks = []
        for _ in range(1500):
            try:
                socks.append(dial())
                counts["conns"] += 1
            except OSError:
                pass
        while time.monotonic() < stop:
            time.sleep(0.1)
        for c in socks:
            c.close()

    def http():
        socks = []
        while time.monotonic() < stop:
            try:
                c = dial(mport)
                c.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")  # never ends its headers
                socks.append(c)
                counts["http"] += 1
            except OSError:
                pass
            time.sleep(0.002)
        for c in socks:
            c.close()

    threads = [threading.Thread(target=f) for f in (big, loris, many, http)]
    p = rr_client(s, ["-n", "3000", "-r", "1000"], wait=False)
    for t in threads:
        t.start()
    time.sleep(1.0)
    peak = rss_kib(mpid)
    s.kill("rr%d" % serving_replica(s))
    for _ in range(20):
        time.sleep(0.1)
        peak = max(peak, rss_kib(mpid))
    for t in threads:
        t.join(20)
    out, err = p.communicate(timeout=90)
    n, errors = parse(out)
    check(p.returncode == 0 and n == 3000 and errors == 0,
          "the client failed over through the flood: %r %r" % (out, err[-300:]))
    check(counts["loris_closed"] >= 30, "slow handshakes closed at the deadline: %r" % counts)
    st = s.status()
    check(st and all(h["alive"] for h in st["hosts"]), "every monitor kept its host alive")
    # a scrape still answers, and the manager counted what it refused
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10) as r:
        body = r.read().decode()
    refused = re.search(r"^flare_connections_refused_total (\d+)", body, re.M)
    check(refused and int(refused.group(1)) > 0, "refusals counted: %r" % body[-300:])
    grown = peak - rss0
    print("    manager VmRSS %d KiB before, %d KiB at the peak (+%d KiB); flood %r"
          % (rss0, peak, grown, counts), flush=True)
    check(grown < 32 * 1024, "the manager's memory stayed bounded: +%d KiB" % grown)


def authpeer(s, key, role, name, *verb):
    r = subprocess.run([BUILD + "/tests/progs/authpeer", "127.0.0.1", str(s.mports[0]), key,
                        role, name] + list(verb), capture_output=True, text=True, timeout=20)
    return r.returncode, r.stdout.strip()


def role_key(s, name, *args):
    path = os.path.join(s.dir, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    r = subprocess.run([BUILD + "/flarectl", "-c", s.conf, "key"] + list(args),
                       stdout=fd, stderr=subprocess.PIPE, text=True, timeout=10)
    os.close(fd)
    check(r.returncode == 0, "flarectl key %s: %r" % (" ".join(args), r.stderr))
    return path


def host_util(s, name):
    st = s.status() or {}
    return {h["name"]: h["util"] for h in st.get("hosts", [])}.get(name)


def drained(s, i):
    return s.status()["services"][0]["replicas"][i]["drained"]


def test_role_keys_hold_to_their_role():
    """A monitor's key reports only for its own host and cannot drain; an
    agent's cannot drain; an operator's can. Each try goes through the real
    authentication with a real derived key."""
    s = rr_deployment(auth=True)
    start_rr(s)
    mon0 = role_key(s, "mon-h0.key", "monitor", "h0")
    agent = role_key(s, "agent.key", "agent")
    op = role_key(s, "operator.key", "operator")
    before = host_util(s, "h1")
    rc, out = authpeer(s, mon0, "monitor", "h1", "report", "h1")
    check(rc == 4 and "closed" in out, "h0's key reporting for h1: closed: %d %r" % (rc, out))
    rc, out = authpeer(s, mon0, "operator", "", "drain", "A-1")
    check(rc == 4, "h0's monitor key draining: closed: %d %r" % (rc, out))
    rc, out = authpeer(s, agent, "agent", "", "drain", "A-1")
    check(rc == 4, "an agent key draining: closed: %d %r" % (rc, out))
    time.sleep(0.3)
    check(host_util(s, "h1") == before, "h1 unchanged: %r -> %r" % (before, host_util(s, "h1")))
    check(not drained(s, 0), "A-1 not drained")
    log = s.read_log("manager1")
    check("with the key of monitor h0" in log, "the manager says why: %r" % log[-600:])
    # a first request larger than the pre-HELLO record bound still goes
    # through: the HELLO travels in a record of its own
    rc, out = authpeer(s, op, "operator", "", "drain", "X" * 700)
    check(rc == 3, "a long command after HELLO answered (refused, not closed): %d %r"
          % (rc, out[:120]))
    # the operator's key drains, through flarectl itself
    r = subprocess.run([BUILD + "/flarectl", "-c", s.conf, "--key", op, "drain", "A-1"],
                       capture_output=True, text=True, timeout=10)
    check(r.returncode == 0, "the operator drains: %r %r" % (r.stdout, r.stderr))
    wait_for(lambda: drained(s, 0), 5, what="A-1 drained")
    # a daemon refuses a key that is not its role's
    with open(s.conf) as f:
        text = f.read()
    for name, args, want in (
            ("mon.conf", [BUILD + "/flare-monitor", "--host", "h1"], "not monitor h1's"),
            ("mgr.conf", [BUILD + "/flare-manager"], "needs the deployment's secret")):
        path = os.path.join(s.dir, name)
        with open(path, "w") as f:
            f.write(text.replace('"auth.key"', '"%s"' % mon0))
        r = subprocess.run(args + ["-c", path, "-f"], capture_output=True, text=True,
                           timeout=10)
        check(r.returncode == 1 and want in r.stderr, "%s refuses: %r" % (name, r.stderr))


def test_stale_segments_listed_removed_and_reclaimed():
    """A killed agent's table stays; flarectl segments says it is stale and
    removes it; the next agent reclaims what older agents left."""
    s = rr_deployment()
    start_rr(s)
    rr_client(s, ["-n", "10"])
    s.kill("agent")
    base = "/dev/shm" + s.shm
    legacy = [base + ".rr", base + ".stats", base + ".new.999999.0"]
    for p in legacy:
        with open(p, "wb") as f:
            f.write(b"\0" * 64)
    r = subprocess.run([BUILD + "/flarectl", "segments", "--shm", s.shm], capture_output=True,
                       text=True, timeout=10)
    check(r.returncode == 0 and re.search(r"%s\s+table.*stale \(its agent" % re.escape(s.shm),
                                          r.stdout), "the dead agent's table is stale: %r"
          % r.stdout)
    check(".user.0" in r.stdout and "legacy" in r.stdout, "user and legacy segments listed: %r"
          % r.stdout)
    s.agent()
    wait_for(lambda: not any(os.path.exists(p) for p in legacy), 5,
             what="the next agent reclaimed the leftovers")
    check("reclaimed" in s.read_log("agent"), "it says so")
    s.kill("agent")
    r = subprocess.run([BUILD + "/flarectl", "segments", "--shm", s.shm, "--remove-stale"],
                       capture_output=True, text=True, timeout=10)
    check(r.returncode == 0 and "removed" in r.stdout and not os.path.exists(base),
          "--remove-stale removed the table: %r" % r.stdout)


if __name__ == "__main__":
    run([test_local_user_cannot_fault_or_skew_clients, test_squatted_table_is_not_trusted,
         test_floods_leave_failover_and_memory_intact, test_role_keys_hold_to_their_role,
         test_stale_segments_listed_removed_and_reclaimed])
