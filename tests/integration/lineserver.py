"""The line server the fail-closed and proof tests run as replicas: each
request line is logged (replica, pid, line) and answered."""
import os
import subprocess
import sys

from harness import BUILD, track, all_alive, rr_deployment, start_rr, wait_for

# A line server: each request line is logged (replica, pid, line), then
# answered "250 <replica> <line> <n>" (n counts lines on the connection).
# Options: greet (server speaks first; HELO must come before anything else),
# login (the first line must be LOGIN, else an error and a close), fork (a
# child per connection; the listener can die alone), split (the reply comes
# in two halves 300 ms apart), anon (the reply names no replica and no
# count, "250 <line>", and "= <line>" is logged once it is sent: the
# transparency fuzzer's server); DELAY seconds before each reply, and 0.4 s
# more before the reply to a line containing SLOW; a line containing RESET
# is answered by a reset, by the first server of those sharing the log;
# idleclose: SIGUSR1 closes every connection waiting for its next request
# (a graceful restart, a keep-alive timeout).
LINE_SERVER = r'''
import os, socket, sys, time
port, name, log = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
opts = set(sys.argv[4:])
delay = float(os.environ.get("DELAY", "0"))
def note(line):
    with open(log, "a") as f:
        f.write("%s %d %s\n" % (name.decode(), os.getpid(), line.decode(errors="replace")))
idle = set()
def close_idle(*_):
    for c in list(idle):
        try:
            c.shutdown(socket.SHUT_RDWR)  # the FIN; its thread's recv ends
        except OSError:
            pass
if "idleclose" in opts:
    import signal
    signal.signal(signal.SIGUSR1, close_idle)
def reset_once(line):
    # the first server sharing this log to see the line resets; the rest answer
    try:
        os.close(os.open("%s.reset.%s" % (log, line.hex()), os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False
def serve(c):
    if b"greet" in {o.encode() for o in opts}:
        c.sendall(b"220 " + name + b" ready\r\n")
    helo = "greet" not in opts
    logged = "login" not in opts
    n, buf = 0, b""
    while True:
        if not buf:
            idle.add(c)
        data = c.recv(65536)
        idle.discard(c)
        if not data:
            c.close()
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.strip()
            n += 1
            note(line)
            if delay:
                time.sleep(delay)
            if b"SLOW" in line:
                time.sleep(0.4)
            if b"RESET" in line and reset_once(line):  # a reset instead of the reply
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                c.close()
                return
            if not logged and not line.startswith(b"LOGIN"):
                c.sendall(b"ERR " + name + b" not logged in\r\n")
                c.close()
                return
            if not helo and not line.startswith(b"HELO"):
                c.sendall(b"503 " + name + b" need HELO\r\n")
                continue
            helo = helo or line.startswith(b"HELO")
            logged = logged or line.startswith(b"LOGIN")
            reply = b"250 %s %s %d\r\n" % (name, line, n)
            if "anon" in opts:
                c.sendall(b"250 %s\n" % line)
                note(b"= " + line)
            elif "split" in opts:
                reply = reply.ljust(40, b".")
                c.sendall(reply[:20])
                time.sleep(0.3)
                c.sendall(reply[20:])
            else:
                c.sendall(reply)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
while True:
    c, _ = srv.accept()
    if "fork" in opts:
        if os.fork() == 0:
            srv.close()
            try:
                serve(c)
            finally:
                os._exit(0)
        c.close()
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
    else:
        import threading
        threading.Thread(target=serve, args=(c,), daemon=True).start()
'''


def line_deployment(opts=(), delay=0.0, service_extra=""):
    """Three replicas of the line server under flare-run (so they register
    with their monitors), each logging into one shared file; s.line_replica(i)
    starts replica i (again)."""
    s = rr_deployment(service_extra=service_extra)
    start_rr(s, servers=False)
    s.script = os.path.join(s.dir, "lines.py")
    with open(s.script, "w") as f:
        f.write(LINE_SERVER)
    s.lines = os.path.join(s.dir, "lines.log")
    open(s.lines, "w").close()

    def line_replica(i):
        with open(s.log("rr%d" % i), "a") as err:  # the child keeps its own copy
            s.procs["rr%d" % i] = track(subprocess.Popen(
                [BUILD + "/flare-run", "--shm", s.shm, "--", sys.executable, s.script,
                 str(s.ports[i]), "A-%d" % (i + 1), s.lines] + list(opts),
                stdout=subprocess.DEVNULL, stderr=err, env=dict(os.environ, DELAY=str(delay))))
    s.line_replica = line_replica
    for i in range(s.n):
        line_replica(i)
    wait_for(lambda: all_alive(s), 15, what="every line replica alive")
    return s


def logged(s):
    """The server log's lines: (replica, pid, request line)."""
    with open(s.lines) as f:
        return [tuple(line.rstrip("\n").split(" ", 2)) for line in f if line.strip()]


def wait_logged(s, text, timeout=10):
    """The replica index that logged a request containing text."""
    found = []

    def seen():
        for rep, _, line in logged(s):
            if text in line:
                found.append(int(rep.split("-")[1]) - 1)
                return True
        return False
    wait_for(seen, timeout, what="%r at a replica" % text)
    return found[0]
