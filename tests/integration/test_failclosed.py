"""The library fails closed: on every path it does not fully see or
understand it passes the program's calls through exactly as the kernel
would, and a failure it cannot heal exactly surfaces as it would without
flare. Each test here is one way the library broke programs before; each
runs real processes on real sockets, and most SIGKILL the serving replica
mid-session. A test that shows a heal also shows it gave no wrong answer;
a test that shows a failure compares it with the same program run without
the library."""
import os
import signal
import subprocess
import sys
import time

from harness import (BUILD, accepts, track, all_alive, check, client_env, library_stats, rr_deployment, run,
                     start_rr, wait_for)
from lineserver import line_deployment, logged, wait_logged

def client(s, code, args=(), preload=True, env=None):
    """A Python client (code) under flare-run against the service (or, with
    preload False, straight to a replica's port in args); a Popen whose
    .stats is the library's counters file."""
    script = os.path.join(s.dir, "client%d.py" % time.monotonic_ns())
    with open(script, "w") as f:
        f.write(code)
    senv, stats = client_env(s)
    cmd = [sys.executable, script] + [str(a) for a in args]
    if preload:
        cmd = [BUILD + "/flare-run", "--shm", s.shm, "--"] + cmd
    p = track(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, FLARE_LOG="info", **senv, **(env or {}))))
    p.stats = stats
    return p


def finish(p, timeout=60):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def kill_replica(s, i):
    s.procs.pop("rr%d" % i).kill()


# ---- kernel state the program can see ----

STDIO_CLIENT = r'''
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
int main(int argc, char **argv)
{
	int n = atoi(argv[2]), ok = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) { perror("connect"); return 2; }
	FILE *f = fdopen(fd, "r+");
	char line[256], want[64];
	for (int i = 0; i < n; i++) {
		fprintf(f, "REQ %d\n", i);
		fflush(f);
		if (!fgets(line, sizeof(line), f)) {
			printf("replies=%d error=%s\n", ok, ferror(f) ? "read" : "eof");
			perror("fgets");
			return 1;
		}
		snprintf(want, sizeof(want), " REQ %d ", i);
		if (!strstr(line, want)) { printf("WRONG %d: %s", i, line); return 3; }
		ok++;
	}
	printf("replies=%d\n", ok);
	return 0;
}
'''


def stdio_client(s):
    exe = os.path.join(s.dir, "stdioclient")
    src = exe + ".c"
    with open(src, "w") as f:
        f.write(STDIO_CLIENT)
    subprocess.run(["cc", "-O1", "-o", exe, src], check=True)
    return exe


def test_stdio_client_slow_replies():
    """A C client that wraps its socket in stdio (glibc reads through its
    internal read, which no hook sees), against replies 200 ms slow: every
    reply arrives (the library sets no receive timeout on the socket)."""
    s = line_deployment(delay=0.2)
    exe = stdio_client(s)
    senv, stats = client_env(s)
    r = subprocess.run([BUILD + "/flare-run", "--shm", s.shm, "--", exe, str(s.svc), "5"],
                       capture_output=True, text=True, timeout=30, env=dict(os.environ, **senv))
    check(r.returncode == 0 and "replies=5" in r.stdout,
          "rc %d %r %r" % (r.returncode, r.stdout, r.stderr[-300:]))


def test_stdio_client_replica_killed():
    """The same client, its replica SIGKILLed while a request waits: the
    socket went to stdio, so the failure surfaces exactly as without flare
    (EOF from fgets), never a wrong answer."""
    s = line_deployment(delay=0.3)
    exe = stdio_client(s)
    outcomes = []
    for preload in (False, True):
        senv, stats = client_env(s)
        cmd = [exe, str(s.svc if preload else s.ports[0]), "5"]
        if preload:
            cmd = [BUILD + "/flare-run", "--shm", s.shm, "--"] + cmd
        open(s.lines, "w").close()
        p = track(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, **senv)))
        victim = wait_logged(s, "REQ 2")
        kill_replica(s, victim)
        out, err = p.communicate(timeout=30)
        outcomes.append((p.returncode, out.strip()))
        if not preload:
            # a fresh replica 0 for the managed run
            s.procs["rr0"] = track(subprocess.Popen(
                [BUILD + "/flare-run", "--shm", s.shm, "--", sys.executable, s.script,
                 str(s.ports[0]), "A-1", s.lines], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=dict(os.environ, DELAY="0.3")))
            wait_for(lambda: all_alive(s), 15, what="replica 0 back")
    check(outcomes[0] == outcomes[1] == (1, "replies=2 error=eof"),
          "without flare %r, with flare %r" % tuple(outcomes))


HANDOFF_CLIENT = r'''
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"REQ handoff\n")
os.dup2(s.fileno(), 0)
os.execvp("head", ["head", "-n", "1"])
'''


def test_exec_child_inherits_socket():
    """inetd-style hand-off: the client writes a request and execs a program
    that reads the reply from its stdin (the inherited managed socket). The
    reply takes 200 ms; the child's plain blocking read waits for it."""
    s = line_deployment(delay=0.2)
    p = client(s, HANDOFF_CLIENT, [s.svc])
    rc, out, err = finish(p, 30)
    check(rc == 0 and " REQ handoff 1" in out, "rc %d %r %r" % (rc, out, err[-300:]))


MSG_WAITALL_CLIENT = r'''
import os, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"REQ waitall\n")
t = time.monotonic()
peek = s.recv(8, socket.MSG_PEEK)  # waits for the first half, takes nothing
got = s.recv(40, socket.MSG_WAITALL)
assert got.startswith(peek), (peek, got)
print(len(got), round(time.monotonic() - t, 2), got[:24])
# the next request's reply sits in the kernel (0.6 s) when the zero-length
# reads come: each returns 0 at once, and none of them is an EOF
s.sendall(b"REQ zero\n")
time.sleep(0.6)
z = [s.recv(0), s.recvmsg(0)[0], s.recv_into(bytearray(0)), s.recvfrom(0)[0],
     os.readv(s.fileno(), [bytearray(0)])]
print("zero", z, s.recv(40, socket.MSG_WAITALL)[:21])
'''


def test_msg_waitall_and_zero_length_reads():
    """recv(MSG_WAITALL) of a reply sent in two halves 300 ms apart returns
    all 40 bytes, as the kernel does (after a MSG_PEEK that takes nothing);
    zero-length reads of every family on
    the healthy connection return 0 bytes and heal nothing (the request
    runs once)."""
    s = line_deployment(opts=("split",))
    p = client(s, MSG_WAITALL_CLIENT, [s.svc])
    rc, out, err = finish(p, 30)
    first = out.splitlines()[0].split() if out else []
    check(rc == 0 and first and first[0] == "40" and float(first[1]) >= 0.25,
          "MSG_WAITALL: rc %d %r %r" % (rc, out, err[-300:]))
    check("zero [b'', b'', 0, b'', 0] b'250 A-" in out and "REQ zero" in out,
          "zero-length reads: %r" % out)
    st = library_stats(p.stats)
    runs = [x for x in logged(s) if x[2] in ("REQ waitall", "REQ zero")]
    check(st["failovers"] == 0 and len(runs) == 2, "heals %r, runs %r" % (st, runs))


EINTR_CLIENT = r'''
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static void on_alarm(int sig) { (void)sig; }
int main(int argc, char **argv)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = atoi(argv[2]) ? SA_RESTART : 0;
	sigaction(SIGALRM, &sa, NULL);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) { perror("connect"); return 2; }
	send(fd, "REQ eintr\n", 10, 0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	alarm(1);
	char buf[64];
	ssize_t n = recv(fd, buf, sizeof(buf), 0);
	int e = errno;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("%s %.0f\n", n > 0 ? "reply" : n == 0 ? "eof" : strerror(e), s);
	return 0;
}
'''


def test_eintr_as_the_program_set_it():
    """A blocking recv interrupted by SIGALRM after 1 s, the reply due at
    1.5 s: restarted when the handler has SA_RESTART (the reply at 2 s), or
    EINTR at 1 s without it; the same with and without flare."""
    s = line_deployment(delay=1.5)
    exe = os.path.join(s.dir, "eintr")
    with open(exe + ".c", "w") as f:
        f.write(EINTR_CLIENT)
    subprocess.run(["cc", "-O1", "-o", exe, exe + ".c"], check=True)
    got = {}
    for restart in (1, 0):
        for preload in (False, True):
            senv, _ = client_env(s)
            cmd = [exe, str(s.svc if preload else s.ports[0]), str(restart)]
            if preload:
                cmd = [BUILD + "/flare-run", "--shm", s.shm, "--"] + cmd
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                               env=dict(os.environ, **senv))
            got[(restart, preload)] = r.stdout.strip()
    print("     SA_RESTART: %s / %s; without: %s / %s (direct / flare)" % (
        got[(1, False)], got[(1, True)], got[(0, False)], got[(0, True)]))
    check(got[(1, False)] == got[(1, True)] == "reply 2", "restarted: %r" % got)
    check(got[(0, False)] == got[(0, True)] == "Interrupted system call 1", "EINTR: %r" % got)


SELECT_CLIENT = r'''
import select, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"REQ idle\n")
s.recv(100)
t = time.monotonic()
for _ in range(2000):
    select.select([], [], [], 0.0005)
sel = time.monotonic() - t
p = select.poll()
t = time.monotonic()
for _ in range(200):
    p.poll(1)
print("%.3f %.3f" % (sel, time.monotonic() - t))
'''


def test_sub_millisecond_select():
    """With a managed connection open, 2,000 select(0.5 ms) calls sleep
    about a second in all, as without flare (not a busy loop)."""
    s = line_deployment()
    p = client(s, SELECT_CLIENT, [s.svc])
    rc, out, err = finish(p, 60)
    check(rc == 0, "rc %d %r" % (rc, err[-300:]))
    sel, pl = (float(x) for x in out.split())
    print("     2000 x select(0.5 ms): %.3f s; 200 x poll(1 ms): %.3f s" % (sel, pl))
    check(sel >= 0.9 and pl >= 0.19, "select %.3f s, poll %.3f s" % (sel, pl))


# ---- what a heal may replay ----

SMTP_CLIENT = r'''
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
def expect(cmd):
    if cmd:
        s.sendall(cmd + b"\r\n")
    line = f.readline()
    if not line:
        print("EOF after", cmd)
        sys.exit(1)
    word = cmd.split(b" ")[0] if cmd else b"ready"
    if word not in line:
        print("WRONG answer to", cmd, line)
        sys.exit(3)
try:
    expect(b"")
    for cmd in (b"HELO me", b"MAIL from", b"RCPT to", b"DATA x", b"QUIT now"):
        expect(cmd)
except ConnectionError as e:
    print("ERROR", type(e).__name__)
    sys.exit(1)
print("done")
'''


def test_server_first_protocol_not_replayed():
    """A server that greets first (SMTP-like): the replica is killed while
    MAIL waits for its answer. A replay on a new replica would be answered
    by its greeting, every later reply one off; the library knows the
    server spoke first and lets the failure surface, as without flare."""
    s = line_deployment(opts=("greet",), delay=0.3)
    outcomes = []
    for preload in (False, True):
        open(s.lines, "w").close()
        p = client(s, SMTP_CLIENT, [s.svc if preload else s.ports[0]], preload=preload)
        victim = wait_logged(s, "MAIL")
        kill_replica(s, victim)
        rc, out, err = finish(p, 30)
        outcomes.append((rc, out.strip()))
        if not preload:
            s.procs["rr0"] = track(subprocess.Popen(
                [BUILD + "/flare-run", "--shm", s.shm, "--", sys.executable, s.script,
                 str(s.ports[0]), "A-1", s.lines, "greet"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=dict(os.environ, DELAY="0.3")))
            wait_for(lambda: all_alive(s), 15, what="replica 0 back")
    check(outcomes[0] == outcomes[1] and outcomes[1][1].startswith("EOF after b'MAIL"),
          "without flare %r, with flare %r" % tuple(outcomes))
    check(len([x for x in logged(s) if x[2].startswith("MAIL")]) == 1, "MAIL ran once")


OPAQUE_CLIENT = r'''
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
out = []
try:
    for i in range(int(sys.argv[2])):
        s.sendall(b"REQ %d\n" % i)
        line = f.readline()
        if not line:
            print("EOF at", i)
            sys.exit(1)
        if b" REQ %d " % i not in line:
            print("WRONG", i, line)
            sys.exit(3)
        out.append(line.split()[1].decode())
except ConnectionError as e:
    print("ERROR at", i, type(e).__name__)
    sys.exit(1)
print("ok", " ".join(out))
'''


def test_opaque_default_heals_first_request_only():
    """An opaque service that does not declare replay = "request-reply":
    its first request is healed (the replay is the connection's whole
    history); a later one surfaces, since the new replica would lack what
    the connection built up."""
    s = line_deployment(delay=0.3, service_extra='replay = "auto";')
    p = client(s, OPAQUE_CLIENT, [s.svc, 1])
    kill_replica(s, wait_logged(s, "REQ 0"))
    rc, out, err = finish(p, 30)
    check(rc == 0 and out.startswith("ok"), "first request healed: rc %d %r %r" % (
        rc, out, err[-300:]))
    check(library_stats(p.stats)["failovers"] == 1, "one heal")
    open(s.lines, "w").close()
    p = client(s, OPAQUE_CLIENT, [s.svc, 4])
    kill_replica(s, wait_logged(s, "REQ 2"))
    rc, out, err = finish(p, 30)
    check(rc == 1 and out.strip() == "EOF at 2", "later request surfaces: rc %d %r" % (rc, out))
    check(library_stats(p.stats)["failovers"] == 0, "no heal")


LOGIN_CLIENT = r'''
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
errs = 0
try:
    for i, cmd in enumerate([b"LOGIN me"] + [b"Q %d" % i for i in range(20)]):
        s.sendall(cmd + b"\n")
        line = f.readline()
        if not line:
            print("EOF at", i, "errs", errs)
            sys.exit(1)
        if line.startswith(b"ERR"):
            errs += 1
except ConnectionError as e:
    print("ERROR at", i, "errs", errs)
    sys.exit(1)
print("done errs", errs)
'''


def test_refused_replay_ends_healing():
    """A service wrongly declared stateless whose replicas need a LOGIN
    first: after the kill, the replayed query is refused (an error, then a
    close). The connection is then not healed again: the program sees the
    failure once and could reconnect; never a heal per query."""
    s = line_deployment(opts=("login",), delay=0.05)
    p = client(s, LOGIN_CLIENT, [s.svc])
    kill_replica(s, wait_logged(s, "Q 5"))
    rc, out, err = finish(p, 30)
    st = library_stats(p.stats)
    check(rc == 1 and "errs 1" in out, "rc %d %r %s" % (rc, out, err[-400:]))
    check(st["failovers"] == 1 and st["passed_errors"] >= 1, "one heal, then none: %r" % st)


FORK_CLIENT = r'''
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
who = set()
for i in range(int(sys.argv[2])):
    s.sendall(b"REQ %d\n" % i)
    line = f.readline()
    if b" REQ %d " % i not in line:
        print("WRONG", i, line)
        sys.exit(3)
    who.add(line.split()[1])
    time.sleep(0.05)
print("ok", b" ".join(sorted(who)).decode())
'''


def forking_listener_dies(delay, n):
    """A forking server (replies delay s late) whose listening parent is
    SIGKILLed while a client makes n requests on one connection."""
    s = line_deployment(opts=("fork",), delay=delay)
    p = client(s, FORK_CLIENT, [s.svc, n])
    victim = wait_logged(s, "REQ 2")
    kill_replica(s, victim)
    wait_for(lambda: not s.replica("A-%d" % (victim + 1))["alive"], 10,
             what="the listener dead in the table")
    rc, out, err = finish(p, 60)
    reqs = [x for x in logged(s) if x[2].startswith("REQ")]
    for rep, pid, _ in reqs:  # the orphaned children, by pid
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    check(rc == 0 and out.strip() == "ok A-%d" % (victim + 1),
          "rc %d %r %s" % (rc, out, err[-400:]))
    check(len(reqs) == n and len({x[2] for x in reqs}) == n, "each request once: %r" % reqs)
    check(library_stats(p.stats)["failovers"] == 0, "no heal")
    return s


def test_forking_server_listener_dies():
    """A forking server whose listening parent is SIGKILLed: the table marks
    the replica dead, but the child serving the connection lives on. The
    connection never failed, so it is not healed: every request runs once,
    on the child, whose replies keep coming (even one that takes 200 ms
    while the table says dead)."""
    forking_listener_dies(0.2, 12)


def test_forking_server_slow_reply_is_a_reply():
    """The same with replies 1 s late, past the 300 ms a stopped replica's
    reply may be overdue: the table says why the replica died (its process
    exited), and an exited process's connections speak for themselves, so
    the late replies are waited for and nothing runs twice. (Before the
    death reasons, each overdue reply was taken for a death: the request
    ran on the child and on the next replica.)"""
    s = forking_listener_dies(1.0, 4)
    reason = s.replica([r for r in ("A-1", "A-2", "A-3") if not s.replica(r)["alive"]][0])
    check(reason.get("reason") == "exited", "the table's reason: %r" % reason)


SENDFILE_CLIENT = r'''
import os, socket, sys, time
path = sys.argv[2]
with open(path, "wb") as f:
    f.write(b"REQ sendfile\n")
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(3)
with open(path, "rb") as f:
    os.sendfile(s.fileno(), f.fileno(), 0, 13)
t = time.monotonic()
try:
    got = s.recv(100)
    what = "eof" if not got else "reply"
except ConnectionError as e:
    what = type(e).__name__
except socket.timeout:
    what = "timeout"
print(what, "%.1f" % (time.monotonic() - t))
'''


def test_sendfile_request_surfaces():
    """A request sent with sendfile, its replica killed before answering:
    the library never saw the request's bytes, so there is nothing to
    replay; the program reads EOF at once, as without flare (not a wait for
    a reply nobody was asked for)."""
    s = line_deployment(delay=1.0)
    p = client(s, SENDFILE_CLIENT, [s.svc, os.path.join(s.dir, "req.txt")])
    kill_replica(s, wait_logged(s, "REQ sendfile"))
    rc, out, err = finish(p, 30)
    what, secs = out.split()
    check(rc == 0 and what in ("eof", "ConnectionResetError") and float(secs) < 1.5,
          "rc %d %r %s" % (rc, out, err[-300:]))
    check(library_stats(p.stats)["failovers"] == 0, "nothing replayed")


EPOLL_CLIENT = r'''
import select, socket, sys, time
s = socket.socket()
s.setblocking(False)
ep = select.epoll()
ep.register(s.fileno(), select.EPOLLIN | select.EPOLLONESHOT)  # before connect
s.connect_ex(("127.0.0.1", int(sys.argv[1])))
select.select([], [s], [], 5)
def reply(i):
    t, buf = time.monotonic(), b""
    while not buf.endswith(b"\r\n") and time.monotonic() - t < 5:
        try:
            buf += s.recv(100)
        except BlockingIOError:
            select.select([s], [], [], 1)
    return buf.split()[1].decode() if b" REQ %d " % i in buf else repr(buf)
s.send(b"REQ 0\n")
print("first", len(ep.poll(5)), reply(0))          # the one-shot fired: disarmed
s.send(b"REQ 1\n")                                # the replica dies on this one
print("disarmed", ep.poll(1.5))                    # healed meanwhile, still disarmed
ep.modify(s.fileno(), select.EPOLLIN | select.EPOLLONESHOT)
print("rearmed", len(ep.poll(3.0)), reply(1))
'''


def test_epoll_registration_before_connect():
    """An epoll registration made before connect(), one-shot: it fires for
    the first reply and is disarmed. The replica dies on the second
    request; the heal's new socket carries the registration exactly as the
    kernel held it: still disarmed (no event while the program has not
    re-armed it), and re-armed it fires for the replayed request's reply."""
    s = line_deployment(delay=0.3)
    p = client(s, EPOLL_CLIENT, [s.svc])
    victim = wait_logged(s, "REQ 1")
    kill_replica(s, victim)
    rc, out, err = finish(p, 30)
    lines = out.splitlines()
    check(rc == 0 and len(lines) == 3, "rc %d %r %s" % (rc, out, err[-400:]))
    first = "A-%d" % (victim + 1)
    check(lines[0] == "first 1 " + first and lines[1] == "disarmed []",
          "one-shot state kept: %r" % lines)
    check(lines[2].startswith("rearmed 1 A-") and not lines[2].endswith(first),
          "re-armed, the reply from another replica: %r" % lines)
    check(library_stats(p.stats)["failovers"] == 1, "healed once")


ASYNC_REDIS_CLIENT = r'''
import asyncio, sys, time
async def main(port, n):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    async def call(*args):
        w.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        await w.drain()
        return await r.readline()
    assert await call(b"SELECT", b"1") == b"+OK\r\n"
    open(sys.argv[3], "w").close()  # connected and selected: the test may kill now
    worst, stop = [0.0], [False]
    async def ticker():
        while not stop[0]:
            t = time.monotonic()
            await asyncio.sleep(0.005)
            worst[0] = max(worst[0], time.monotonic() - t)
    tick = asyncio.ensure_future(ticker())
    wrong = 0
    for i in range(n):
        head = await call(b"GET", b"k")
        body = await r.readline()
        if body != b"one\r\n":
            wrong += 1
        await asyncio.sleep(0.002)
    stop[0] = True
    await tick
    print("wrong=%d worst_ms=%.0f" % (wrong, worst[0] * 1000))
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
'''


# accepts, reads and never answers: a replica alive to every check
BLACK_HOLE = r'''
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
def drain(c):
    while c.recv(4096):
        pass
while True:
    c = s.accept()[0]
    threading.Thread(target=drain, args=(c,), daemon=True).start()
'''


def async_redis_kill(failover, hung_second=False, freeze_agent=False):
    """Three Redis replicas, the asyncio client above on database 1, the
    first replica killed 0.3 s after the client selected its database; with
    hung_second the next one in the order is a process that accepts and
    never answers (running, not registered: alive). (rc, stdout, stderr,
    counters, worst stall ms)."""
    s = rr_deployment(service_extra='failover = "%s"; protocol = "redis";' % failover)
    start_rr(s, servers=False)

    def redis(i, preload=True):
        args = ["redis-server", "--port", str(s.ports[i]), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no"]
        s.procs["rr%d" % i] = track(subprocess.Popen(
            ([BUILD + "/flare-run", "--shm", s.shm, "--"] if preload else []) + args,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def loaded():
            run = lambda *a: subprocess.run(["redis-cli", "-p", str(s.ports[i])] + list(a),
                                            capture_output=True, text=True).stdout.strip()
            return run("SET", "k", "zero") == "OK" and run("-n", "1", "SET", "k", "one") == "OK"
        wait_for(loaded, 10, what="redis %d loaded" % i)
    for i in range(s.n):
        if hung_second and i == 1:
            s.procs["rr1"] = track(subprocess.Popen([sys.executable, "-c", BLACK_HOLE,
                                                     str(s.ports[1])]))
            wait_for(lambda: accepts(s.ports[1]), 10, what="the black hole listening")
        else:
            redis(i)
    stopped = []
    try:
        wait_for(lambda: all_alive(s), 15, what="every replica alive")
        if freeze_agent:
            stopped.append(s.procs["agent"])
        for p in stopped:
            p.send_signal(signal.SIGSTOP)
        ready = os.path.join(s.dir, "client.ready")
        p = client(s, ASYNC_REDIS_CLIENT, [s.svc, 300, ready])
        wait_for(lambda: os.path.exists(ready) or p.poll() is not None, 30,
                 what="the client connected")
        time.sleep(0.3)
        kill_replica(s, 0)
        rc, out, err = finish(p, 60)
    finally:
        for q in stopped:
            q.send_signal(signal.SIGCONT)
    print("     " + out.strip())
    worst = float(out.split("worst_ms=")[1]) if "worst_ms=" in out else 1e9
    return rc, out, err, library_stats(p.stats), worst


def test_nonblocking_session_heal_never_blocks():
    """An asyncio Redis client (non-blocking, epoll) that selected database
    1; its replica is killed, and the next replica in the order accepts but
    never answers. The heal replays SELECT there without blocking the
    program's event loop, gives up on it after the service's timeouts and
    goes on to the third: every reply from database 1, the loop never
    stalled for the hung replica (it was, for the whole connect timeout,
    while session replays were synchronous)."""
    rc, out, err, st, worst = async_redis_kill("static", hung_second=True)
    check(rc == 0 and out.startswith("wrong=0 "), "rc %d %r %s" % (rc, out, err[-600:]))
    check(worst < 100, "the event loop stalled %.0f ms" % worst)
    check(st["heals_async"] >= 1 and st["connect_failovers"] >= 1,
          "healed asynchronously, and moved on from the hung replica: %r" % st)


def test_nonblocking_reactive_heal_uses_the_table():
    """failover = "reactive" with the agent frozen: a blocking program's
    heal asks and waits (test_failover.py); a non-blocking one's never asks
    inside its wait: it takes the table's ranking at once."""
    rc, out, err, st, worst = async_redis_kill("reactive", freeze_agent=True)
    check(rc == 0 and out.startswith("wrong=0 "), "rc %d %r %s" % (rc, out, err[-600:]))
    check(worst < 100, "the event loop stalled %.0f ms" % worst)
    check(st["heals_async"] >= 1 and st["queries_failed"] == 0 and
          st["queries_answered"] == 0, "healed from the table, nothing asked: %r" % st)


if __name__ == "__main__":
    run([test_stdio_client_slow_replies, test_stdio_client_replica_killed,
         test_exec_child_inherits_socket, test_msg_waitall_and_zero_length_reads,
         test_eintr_as_the_program_set_it,
         test_sub_millisecond_select, test_server_first_protocol_not_replayed,
         test_opaque_default_heals_first_request_only, test_refused_replay_ends_healing,
         test_forking_server_listener_dies, test_forking_server_slow_reply_is_a_reply,
         test_sendfile_request_surfaces,
         test_epoll_registration_before_connect, test_nonblocking_session_heal_never_blocks,
         test_nonblocking_reactive_heal_uses_the_table])
