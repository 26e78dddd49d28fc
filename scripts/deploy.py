"""Starting and stopping flare deployments from Python: real daemons and
helper processes on loopback, tracked by PID, and shared-memory tables
tracked by name, so that cleanup() stops exactly what this process
started. Shared by the integration tests (tests/integration/harness.py),
make bench (tests/bench/bench.py) and make demo (scripts/testbed.py).

Importing it has no side effects: callers set the build folder with
configure() and decide themselves whether to install_cleanup() (atexit
and SIGINT/SIGTERM handlers)."""
import atexit
import collections
import json
import shutil
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

BUILD = os.path.abspath("build")
_procs = []
_shms = []
_dirs = []


def configure(build):
    """Where the binaries are (make's BUILD folder)."""
    global BUILD
    BUILD = os.path.abspath(build)
    return BUILD


def track(proc):
    """A process started elsewhere that cleanup() must stop too."""
    _procs.append(proc)
    return proc


def track_shm(name):
    """A shared-memory table that cleanup() must remove."""
    _shms.append(name)
    return name


def _shm_entries():
    try:
        return os.listdir("/dev/shm")
    except OSError:
        return []


def cleanup():
    """Kills every tracked process still running (by PID) and removes every
    tracked table; safe to call more than once."""
    for p in _procs:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass
    for p in _procs:
        try:
            p.wait(timeout=5)
        except Exception:
            pass
    for name in _shms:
        # the table, tables being made, each user's counters and turns
        segs = [name] + ["/" + e for e in _shm_entries() if e.startswith(name[1:] + ".")]
        for seg in segs:
            try:
                os.unlink("/dev/shm" + seg)
            except OSError:
                pass
    _procs.clear()
    # the deployments' folders (configs, logs): FLARE_KEEP=1 keeps them
    if not os.environ.get("FLARE_KEEP"):
        for d in _dirs:
            shutil.rmtree(d, ignore_errors=True)
        _dirs.clear()


def install_cleanup():
    """cleanup() at exit and on SIGINT/SIGTERM."""
    def on_signal(signum, _frame):
        cleanup()
        sys.exit(128 + signum)

    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def accepts(port, timeout=0.5):
    """Does something accept connections on 127.0.0.1:port now?"""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def spawn(args, log=None, env=None):
    out = open(log, "ab") if log else subprocess.DEVNULL
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT if log else None, env=e,
                         stdin=subprocess.DEVNULL)
    _procs.append(p)
    return p


def wait_for(pred, timeout, step=0.01, what="condition"):
    """Polls pred() until it returns a true value; bounded in time."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(step)


def manager_status(conf):
    """What the deployment's manager believes (flarectl status --json), or None."""
    r = subprocess.run([BUILD + "/flarectl", "-c", conf, "status", "--json"],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        sys.stderr.write("flarectl status: %s\n" % r.stderr.strip())
        return None
    return json.loads(r.stdout)


class Stack:
    """A deployment described by one config, with its daemons."""

    def __init__(self, conf_text, name="t"):
        self.dir = tempfile.mkdtemp(prefix="flare-it-")
        _dirs.append(self.dir)
        self.shm = "/flare-it-%d-%s" % (os.getpid(), name)
        _shms.append(self.shm)
        self.conf = os.path.join(self.dir, "flare.conf")
        with open(self.conf, "w") as f:
            f.write(conf_text.replace("@SHM@", self.shm).replace("@DIR@", self.dir))
        self.procs = {}

    def log(self, name):
        return os.path.join(self.dir, name + ".log")

    def start(self, name, args):
        self.procs[name] = spawn(args, log=self.log(name), env={"FLARE_LOG": "debug"})
        return self.procs[name]

    def manager(self, ident=1):
        return self.start("manager%d" % ident, [BUILD + "/flare-manager", "-c", self.conf, "-f",
                                                "--id", str(ident)])

    def monitor(self, host):
        return self.start("monitor-" + host, [BUILD + "/flare-monitor", "-c", self.conf,
                                              "--host", host, "-f"])

    def agent(self, prefix=()):
        """prefix: a command the agent runs under (setpriv dropping a capability)"""
        return self.start("agent", list(prefix) + [BUILD + "/flare-agent", "-c", self.conf, "-f"])

    def kill(self, name, sig=signal.SIGKILL):
        p = self.procs.pop(name)
        p.send_signal(sig)
        p.wait(timeout=10)

    def table(self):
        """The shared table as a client reads it, or None."""
        r = subprocess.run([BUILD + "/flarectl", "table", "--shm", self.shm, "--json"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            # absent: the agent has not written it yet (callers wait for it)
            if "absent" not in r.stderr:
                sys.stderr.write("flarectl table: %s\n" % r.stderr.strip())
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def status(self):
        return manager_status(self.conf)

    def replica(self, name):
        t = self.table()
        if not t:
            return None
        for s in t["services"]:
            for r in s["replicas"]:
                if r["name"] == name:
                    return r
        return None

    def order(self, service):
        t = self.table()
        for s in (t or {}).get("services", []):
            if s["name"] == service:
                return s["order"]
        return None

    def read_log(self, name):
        with open(self.log(name), errors="replace") as f:
            return f.read()


# ---- the wire protocol, for helper processes that speak it ----

def frame(ftype, payload):
    return struct.pack(">HBBI", 0xF1A3, 1, ftype, len(payload)) + payload


def hello(role, pid, name=b""):
    return frame(1, struct.pack(">BIH", role, pid, len(name)) + name)


def register(pid, addrs):
    body = struct.pack(">IH", pid, len(addrs))
    for host, port in addrs:
        body += struct.pack(">BH", 4, port) + socket.inet_aton(host)
    return frame(3, body)


# The start of the test servers' scripts: their arguments (monitor socket,
# host, port), and register(pid), which registers host:port with the
# monitor as libflare.so does (HELLO, then REGISTER) and returns the socket.
REGISTER_PY = r'''
import os, socket, struct, sys, time
path, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def frame(t, p): return struct.pack(">HBBI", 0xF1A3, 1, t, len(p)) + p
def register(pid=None):
    pid = pid or os.getpid()
    u = socket.socket(socket.AF_UNIX)
    u.connect("\0" + path[1:] if path.startswith("@") else path)
    u.sendall(frame(1, struct.pack(">BIH", 4, pid, 0)) +
              frame(3, struct.pack(">IH", pid, 1) + struct.pack(">BH", 4, port) +
                    socket.inet_aton(host)))
    return u
'''

REGISTERING_SERVER = REGISTER_PY + r'''
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((host, port)); srv.listen(16)
u = register()
print("ready", flush=True)
end = time.monotonic() + 120
while time.monotonic() < end:
    time.sleep(0.1)
'''


def registering_server(stack, monitor_socket, host, port, name):
    """A real server process that registers its address with a monitor the
    way libflare.so does, and listens on it."""
    script = os.path.join(stack.dir, "regsrv.py")
    with open(script, "w") as f:
        f.write(REGISTERING_SERVER)
    return stack.start(name, [sys.executable, script, monitor_socket, host, str(port)])


# ---- a replicated request/response service, for the library's tests ----

def rr_deployment(n=3, primary=False, service_extra="", stale_ms=10000, name="rr",
                  monitor_sockets=True, managers=1, auth=False, monitor_extra=""):
    """n replicas of service A (rr-server) on n hosts with file: utilization,
    the control plane (`managers` of them), and helpers to start servers and
    clients. Without monitor_sockets the monitors use their default
    (abstract) socket names. With auth, the deployment shares a fresh key
    (auth.key next to the config, mode 0600)."""
    # rr-server's protocol is stateless request/reply: the service says so,
    # and every request may be replayed (the default replays only a
    # connection's first)
    if "replay" not in service_extra:
        service_extra = 'replay = "request-reply"; ' + service_extra
    ports = free_ports(n + 1 + managers)
    mports, svc = ports[:managers], ports[managers]
    reps = ports[managers + 1:]
    if primary:
        svc = reps[0]
    hosts = ",\n".join('  { name = "h%d"; utilization = "file:@DIR@/h%d.util"; %s}'
                       % (i, i, 'monitor_socket = "@DIR@/h%d.sock"; ' % i
                          if monitor_sockets else "") for i in range(n))
    replicas = ",\n".join('      { name = "A-%d"; host = "h%d"; address = "127.0.0.1:%d"; '
                          'load = 0.2; }' % (i + 1, i, p) for i, p in enumerate(reps))
    conf = ('auth_key_file = "auth.key";\n' if auth else "") + """
manager = { addresses = [ %s ]; report_interval_ms = 50;
            heartbeat_interval_ms = 50; heartbeat_timeout_ms = 300; };
monitor = { probe_interval_ms = 100; probe_timeout_ms = 100; %s};
agent = { shm = "@SHM@"; stale_ms = %d; };
hosts = (
%s
);
services = (
  { name = "A"; address = "127.0.0.1:%d"; connect_timeout_ms = 200; %s
    replicas = (
%s ); }
);
""" % (", ".join('"127.0.0.1:%d"' % p for p in mports), monitor_extra, stale_ms, hosts, svc,
       service_extra, replicas)
    s = Stack(conf, name)
    if auth:
        write_key(os.path.join(s.dir, "auth.key"))
    s.managers = managers
    s.mports = mports
    s.svc = svc
    s.ports = reps
    s.n = n
    for i in range(n):
        with open(os.path.join(s.dir, "h%d.util" % i), "w") as f:
            f.write("%.2f\n" % (0.1 * (i + 1)))
    return s


def flare_run_for_others(s):
    """Copies flare-run and the library (FLARE_LIB's, else the build's) into
    s.dir/bin, which any user can read: another user (postgres) may not be
    able to enter the checkout. Returns the env prefix that points
    FLARE_LIB at the copy."""
    bindir = os.path.join(s.dir, "bin")
    os.makedirs(bindir, exist_ok=True)
    os.chmod(s.dir, 0o755)
    os.chmod(bindir, 0o755)
    lib = os.environ.get("FLARE_LIB") or os.path.join(BUILD, "libflare.so")
    for src, name in ((os.path.join(BUILD, "flare-run"), "flare-run"), (lib, "libflare.so")):
        shutil.copy(src, os.path.join(bindir, name))
        os.chmod(os.path.join(bindir, name), 0o755)
    return ["env", "FLARE_LIB=" + os.path.join(bindir, "libflare.so")]


def write_key(path):
    """A fresh random key file, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(32))


def start_rr(s, servers=True, agent_prefix=()):
    for ident in range(1, s.managers + 1):
        s.manager(ident)
    for i in range(s.n):
        s.monitor("h%d" % i)
    s.agent(agent_prefix)
    if servers:
        for i in range(s.n):
            rr_server(s, i)
        wait_for(lambda: all_alive(s), 10, what="every replica alive")


def all_alive(s):
    t = s.table()
    return bool(t and t["services"] and all(r["alive"] for r in t["services"][0]["replicas"]))


def rr_server(s, i, extra=()):
    return s.start("rr%d" % i, [BUILD + "/flare-run", "--shm", s.shm, "--", BUILD + "/rr-server",
                                "-l", "127.0.0.1:%d" % s.ports[i], "--tag", "A-%d" % (i + 1)]
                   + list(extra))


_stats_seq = [0]


def client_env(s):
    """The environment additions for a client program run under flare-run:
    FLARE_STATS (the library appends its counters there at exit) and, when
    FLARE_TEST_LIB names a sanitized libflare.so, that library behind its
    runtime. Returns (environment additions, the stats path)."""
    _stats_seq[0] += 1
    path = os.path.join(s.dir, "lib-%d.stats" % _stats_seq[0])
    env = {"FLARE_STATS": path}
    if os.environ.get("FLARE_TEST_LIB"):
        env["FLARE_LIB"] = os.environ["FLARE_TEST_LIB"]
        env["LD_PRELOAD"] = os.environ.get("FLARE_TEST_PRELOAD", "")
    return env, path


def library_stats(path):
    """The library's counters (FLARE_STATS lines), summed over every process
    that wrote one; a counter nobody wrote reads 0."""
    total = collections.defaultdict(int)
    try:
        with open(path) as f:
            for line in f:
                total["processes"] += 1
                for kv in line.split():
                    k, v = kv.split("=")
                    if k != "pid":
                        total[k] = total.get(k, 0) + int(v)
    except OSError:
        pass
    return total


def strace_counts(path):
    """{syscall: calls} from an strace -c summary"""
    counts = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and f[-1].isidentifier() and f[3].isdigit():
            counts[f[-1]] = int(f[3])
    return counts


def connected(pid, state="01"):
    """Does process pid hold an established TCP connection (IPv4)? For a
    test that must act once a client it started is connected. state: the
    kernel's hex TCP state to look for instead ("08": CLOSE_WAIT, the
    peer's FIN received)."""
    try:
        inodes = set()
        for fd in os.listdir("/proc/%d/fd" % pid):
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        with open("/proc/%d/net/tcp" % pid) as f:
            return any(ln.split()[3] == state and ln.split()[9] in inodes
                       for ln in list(f)[1:])
    except OSError:
        return False


def rr_client(s, args, preload=True, timeout=120, env=None, wait=True, port=None):
    """rr-client against the service (or port); the result (a Popen with
    wait=False) carries .stats, the library's FLARE_STATS file."""
    cmd = ([BUILD + "/flare-run", "--shm", s.shm, "--"] if preload else []) + \
        [BUILD + "/rr-client", "-c", "127.0.0.1:%d" % (port or s.svc)] + list(args)
    e = dict(os.environ)
    e.update({"FLARE_LOG": "info"})
    senv, stats = client_env(s)
    if not preload:
        senv = {"FLARE_STATS": stats}
    e.update(senv)
    e.update(env or {})
    if not wait:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
        _procs.append(p)
        p.stats = stats
        return p
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e)
    r.stats = stats
    return r


def all_registered(s):
    """Every replica's server registered with its monitor (the manager's
    status), not merely answering probes."""
    st = s.status()
    reps = [r for svc in (st or {}).get("services", []) for r in svc.get("replicas", [])]
    return bool(reps) and all(r.get("registered") for r in reps)


def busiest_replica(s):
    """Index of the replica with the most established client connections
    right now (ss), or None: where the clients really are, whatever the
    table's order says by then."""
    out = subprocess.run(["ss", "-Htn", "state", "established"], capture_output=True,
                         text=True).stdout
    counts = [0] * s.n
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 3:
            port = cols[2].rsplit(":", 1)[-1]
            for i, p in enumerate(s.ports):
                if port == str(p):
                    counts[i] += 1
    best = max(range(s.n), key=lambda i: counts[i])
    return best if counts[best] else None


def connected_replicas(s):
    """Indexes of the replicas with an established TCP connection on their
    port (from /proc/net/tcp): the ones clients are talking to now."""
    ports = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "01":
                ports.add(int(parts[1].split(":")[1], 16))
    return [i for i, p in enumerate(s.ports) if p in ports]


def serving_replica(s):
    """Index of the replica a new connection goes to (first in the order)."""
    order = s.order("A")
    return int(order[0].split("-")[1]) - 1
