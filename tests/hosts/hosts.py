"""make check-hosts: flare across real links. Each host is a network
namespace with its own interface on a bridge (the bridge in a namespace of
its own: the machine's network is untouched), addressed from 198.18.0.0/24
only: a control host running the manager, three replica hosts each with a
monitor, an agent and an rr-server under flare-run, and a client host with
its monitor, agent and an rr-client under flare-run dialing the service's
virtual address. Failures are injected where they happen in production (a
process, a host's power, a link, a route) and each client reply is checked
(rr-client: its own id echoed, or it exits non-zero).

Needs root (namespaces); without it, it says so and fails. Everything it
creates (namespaces, interfaces with them, processes by PID, shared-memory
tables) is removed on exit, also after a failure or a signal.

Usage: python3 tests/hosts/hosts.py BUILD [--json FILE]"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "scripts"))
import deploy  # noqa: E402

BUILD = deploy.configure(sys.argv[1] if len(sys.argv) > 1 else "build")
TAG = "fh%d" % (os.getpid() % 100000)
NET = "198.18.0."
HOSTS = {"ctl": 10, "r1": 11, "r2": 12, "r3": 13, "c1": 20}
REPLICA_HOSTS = ["r1", "r2", "r3"]
SVC = NET + "100:7000"  # virtual: nobody listens there
MPORT = 7400
_namespaces = []
results = []


def sh(*args, check=True):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def ns(host):
    return "%s-%s" % (TAG, host)


def in_ns(host, *args, check=True):
    return sh("ip", "netns", "exec", ns(host), *args, check=check)


def cleanup():
    deploy.cleanup()
    for n in reversed(_namespaces):
        subprocess.run(["ip", "netns", "del", n], capture_output=True)
    _namespaces.clear()


def on_signal(signum, _frame):
    cleanup()
    sys.exit(128 + signum)


def network():
    """The bridge namespace and one namespace per host, each with an
    interface on the bridge."""
    sh("ip", "netns", "add", ns("br"))
    _namespaces.append(ns("br"))
    sh("ip", "-n", ns("br"), "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", ns("br"), "link", "set", "br0", "up")
    for i, (h, last) in enumerate(HOSTS.items()):
        sh("ip", "netns", "add", ns(h))
        _namespaces.append(ns(h))
        a, b = "%sa%d" % (TAG, i), "%sb%d" % (TAG, i)
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "netns", ns(h))
        sh("ip", "link", "set", b, "netns", ns("br"))
        sh("ip", "-n", ns(h), "link", "set", a, "name", "eth0")
        sh("ip", "-n", ns("br"), "link", "set", b, "name", "p-" + h)
        sh("ip", "-n", ns("br"), "link", "set", "p-" + h, "master", "br0")
        sh("ip", "-n", ns("br"), "link", "set", "p-" + h, "up")
        sh("ip", "-n", ns(h), "addr", "add", "%s%d/24" % (NET, last), "dev", "eth0")
        sh("ip", "-n", ns(h), "link", "set", "eth0", "up")
        sh("ip", "-n", ns(h), "link", "set", "lo", "up")


class Fleet:
    """One deployment over the hosts: config, daemons, servers."""

    def __init__(self, name, service_extra=""):
        self.dir = tempfile.mkdtemp(prefix="flare-hosts-")
        deploy._dirs.append(self.dir)
        self.name = name
        self.procs = {}
        hosts = ",\n".join('  { name = "%s"; utilization = "file:%s/%s.util"; }'
                           % (h, self.dir, h) for h in HOSTS)
        reps = ",\n".join('      { name = "A-%s"; host = "%s"; address = "%s%d:7001"; }'
                          % (h, h, NET, HOSTS[h]) for h in REPLICA_HOSTS)
        conf = """
manager = { addresses = [ "%s%d:%d" ]; report_interval_ms = 50;
            heartbeat_interval_ms = 50; heartbeat_timeout_ms = 300; };
monitor = { probe_interval_ms = 100; probe_timeout_ms = 100; };
agent = { shm = "/%s"; stale_ms = 1000; };
hosts = (
%s
);
services = (
  { name = "A"; address = "%s"; connect_timeout_ms = 200; user_timeout_ms = 500;
    request_timeout_ms = 250; replay = "request-reply"; %s
    replicas = (
%s ); }
);
""" % (NET, HOSTS["ctl"], MPORT, TAG, hosts, SVC, service_extra, reps)
        self.conf = os.path.join(self.dir, "flare.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        for i, h in enumerate(HOSTS):
            with open(os.path.join(self.dir, h + ".util"), "w") as f:
                f.write("%.2f\n" % (0.1 + 0.1 * i))

    def shm(self, host):
        return "/%s-%s-%s" % (TAG, self.name, host)

    def start(self, host, name, args):
        log = open(os.path.join(self.dir, "%s-%s.log" % (host, name)), "w")
        p = subprocess.Popen(["ip", "netns", "exec", ns(host)] + args, stdout=log,
                             stderr=subprocess.STDOUT, env=dict(os.environ, FLARE_LOG="info"))
        deploy.track(p)
        self.procs[(host, name)] = p
        return p

    def up(self):
        self.start("ctl", "manager", [BUILD + "/flare-manager", "-c", self.conf, "-f"])
        for h in HOSTS:
            if h == "ctl":
                continue
            deploy.track_shm(self.shm(h))
            self.start(h, "monitor", [BUILD + "/flare-monitor", "-c", self.conf, "--host", h,
                                      "-f"])
            self.start(h, "agent", [BUILD + "/flare-agent", "-c", self.conf, "-f", "--shm",
                                    self.shm(h)])
        for h in REPLICA_HOSTS:
            self.server(h)
        deploy.wait_for(lambda: self.alive_in("c1") == set(REPLICA_HOSTS), 15, step=0.05,
                        what="every replica alive in the client host's table")

    def server(self, h):
        return self.start(h, "server", [BUILD + "/flare-run", "--shm", self.shm(h), "--",
                                        BUILD + "/rr-server", "-l", "%s%d:7001" % (NET, HOSTS[h]),
                                        "--tag", h])

    def table(self, host):
        r = subprocess.run([BUILD + "/flarectl", "table", "--shm", self.shm(host), "--json"],
                           capture_output=True, text=True, timeout=10)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def alive_in(self, host):
        t = self.table(host)
        if not t or not t.get("services"):
            return set()
        return {r["name"][2:] for r in t["services"][0]["replicas"] if r["alive"]}

    def client(self, seconds=4.0, hz=200):
        self.log = os.path.join(self.dir, "client.lat")
        self.stats = os.path.join(self.dir, "client.stats")
        p = subprocess.Popen(["ip", "netns", "exec", ns("c1"), BUILD + "/flare-run", "--shm",
                              self.shm("c1"), "--", BUILD + "/rr-client", "-c", SVC, "-r",
                              str(hz), "-n", str(int(seconds * hz)), "--log", self.log],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, FLARE_LOG="info", FLARE_STATS=self.stats))
        deploy.track(p)
        p.started = time.monotonic()
        return p

    def serving(self):
        """The replica host the client is connected to now."""
        out = in_ns("c1", "ss", "-Htn", "state", "established").stdout
        for h in REPLICA_HOSTS:
            if "%s%d:7001" % (NET, HOSTS[h]) in out:
                return h
        return None

    def freeze(self, host, sig=signal.SIGSTOP):
        for (h, _), p in self.procs.items():
            if h == host and p.poll() is None:
                p.send_signal(sig)


def restore_network():
    """Every link up, no blackhole route, no filter, no shaping: the next
    scenario starts from a whole network."""
    for h in HOSTS:
        sh("ip", "-n", ns("br"), "link", "set", "p-" + h, "up", check=False)
        for line in in_ns(h, "ip", "route", "show", "type", "blackhole", check=False) \
                .stdout.splitlines():
            in_ns(h, "ip", "route", "del", *line.split(), check=False)
        in_ns(h, "nft", "flush", "ruleset", check=False)
        in_ns(h, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)


def latencies(path):
    """(send time in ms since the client started, latency in ms) per reply"""
    out = []
    with open(path) as f:
        for line in f:
            cols = line.split()
            if len(cols) >= 3:
                out.append((float(cols[0]), float(cols[2]) / 1000.0))
    return out


def scenario(name, goal_ms, inject, extra="", restore=None, after=1.5, seconds=4.0,
             seen_at_once=False):
    """A fresh fleet, the client at 200 Hz; inject(fleet, victim host) after
    `after` s; returns and records the figures. seen_at_once: the failure
    reaches the client at once (a reset or EOF), so the goal is judged on
    the library's own heal time, not on the client's reply time, which a
    shared machine's scheduling moves by milliseconds."""
    f = Fleet(name.split()[0].replace(",", ""), extra)
    try:
        f.up()
        c = f.client(seconds)
        deploy.wait_for(lambda: f.serving() is not None, 5, step=0.02, what="client connected")
        victim = f.serving()
        time.sleep(after)
        at_ms = (time.monotonic() - c.started) * 1000.0
        detail = inject(f, victim) or ""
        out, err = c.communicate(timeout=seconds + 30)
        lat = latencies(f.log)
        before = max([l for t, l in lat if t < at_ms - 50] or [0])
        # the requests in flight at the failure or sent in the second after it
        hit = max([l for t, l in lat if t + l >= at_ms and t < at_ms + 1000] or [0])
        heals = [float(x.split(" us")[0].rsplit("in ", 1)[1]) / 1000.0
                 for x in err.splitlines() if "replayed, in " in x or "replay once connected, in "
                 in x]
        st = deploy.library_stats(f.stats)
        failed = 0 if c.returncode == 0 and "errors=0" in out else 1
        res = {"scenario": name, "victim": victim, "worst_before_ms": round(before, 2),
               "worst_after_failure_ms": round(hit, 2),
               "heal_ms": round(max(heals), 3) if heals else None, "replies": len(lat),
               "failed_requests": failed, "heals": st["failovers"], "goal_ms": goal_ms,
               "detail": detail}
        # the goal is judged on the request that met the failure (or, seen at
        # once, on the heal); twice the goal fails the suite. Both allow for
        # the machine's own stalls, the worst request in the second before
        # (a heal of 3 ms once failed a run whose requests already took 6 ms)
        if goal_ms is None:
            in_time = True
        elif seen_at_once:
            in_time = bool(heals) and max(heals) <= 2 * goal_ms + before
        else:
            in_time = hit <= 2 * goal_ms + before
        ok = failed == 0 and in_time
        res["ok"] = ok
        if not ok:
            res["client"] = (out + err)[-800:]
        if restore:
            restore(f, victim)
        return res
    finally:
        for p in f.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
        deploy.cleanup()
        restore_network()


def kill_server(f, victim):
    f.procs[(victim, "server")].kill()


def power_off(f, victim):
    sh("ip", "-n", ns("br"), "link", "set", "p-" + victim, "down")
    f.freeze(victim)


def lose_path(f, victim):
    """The client's route to the replica's host is gone; the control plane
    still sees the host (no report changes)."""
    in_ns("c1", "ip", "route", "add", "blackhole", "%s%d/32" % (NET, HOSTS[victim]))


def partition_manager_from(hosts):
    def inject(f, victim):
        for h in hosts(victim):
            in_ns("ctl", "ip", "route", "add", "blackhole", "%s%d/32" % (NET, HOSTS[h]))
            in_ns(h, "ip", "route", "add", "blackhole", "%s%d/32" % (NET, HOSTS["ctl"]))
        return "manager cut from %s" % ",".join(hosts(victim))
    return inject


def partition_all_then_kill(f, victim):
    """No manager for anyone; the tables go stale (stale_ms 1 s); then the
    serving replica's process dies: clients fail over on the last ranking."""
    partition_manager_from(lambda v: [h for h in HOSTS if h != "ctl"])(f, victim)
    time.sleep(1.3)
    stale = f.table("c1")
    f.procs[(victim, "server")].kill()
    return "tables stale, then the serving process killed (table readable: %s)" % bool(stale)


def lossy(f, victim):
    rules = ("add table inet flare\n"
             "add chain inet flare out { type filter hook output priority 0; }\n"
             "add rule inet flare out ip daddr %s%d numgen random mod 100 < 5 drop\n"
             % (NET, HOSTS[victim]))
    r = subprocess.run(["ip", "netns", "exec", ns("c1"), "nft", "-f", "-"], input=rules,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("nft: %s" % r.stderr.strip())
    return "5% of the client's packets to the replica dropped"


def slow(f, victim):
    in_ns("c1", "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "400kbit",
          "burst", "1600", "latency", "200ms")
    return "client's link limited to 400 kbit/s (tbf; this kernel has no netem for a delay)"


def main():
    if os.geteuid() != 0:
        print("check-hosts: needs root (it creates network namespaces); run it as root")
        print("0 passed, 1 failed")
        sys.exit(1)
    for tool in ("ip", "nft", "tc", "ss"):
        if not shutil.which(tool):
            print("check-hosts: %s is missing (make check-hosts installs it)" % tool)
            print("0 passed, 1 failed")
            sys.exit(1)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    out_json = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    passed = failed = 0
    try:
        network()
        plan = [
            ("process killed (SIGKILL of the serving rr-server)", 1, kill_server, True),
            ("host powered off (link down, processes frozen)", 1000, power_off),
            ("client's path to the replica's host lost", 1000, lose_path),
            ("manager partitioned from the serving host", None,
             partition_manager_from(lambda v: [v])),
            ("manager partitioned from every host, then the process killed", None,
             partition_all_then_kill),
            ("lossy link client -> replica (5% loss)", None, lossy),
            ("slow link (400 kbit/s)", None, slow),
        ]
        for name, goal, inject, *at_once in plan:
            start = time.monotonic()
            try:
                res = scenario(name, goal, inject, seen_at_once=bool(at_once and at_once[0]))
            except Exception as e:  # noqa: BLE001 - report and go on
                res = {"scenario": name, "ok": False, "error": str(e)}
            results.append(res)
            if res.get("ok"):
                passed += 1
                print("ok   %s: the request that met it %.2f ms (worst before %.2f), heal "
                      "%s ms, %d replies, %d failed (%.1fs)"
                      % (name, res["worst_after_failure_ms"], res["worst_before_ms"],
                         res["heal_ms"], res["replies"], res["failed_requests"],
                         time.monotonic() - start), flush=True)
            else:
                failed += 1
                print("FAIL %s: %s" % (name, json.dumps(res)[:1500]), flush=True)
    finally:
        cleanup()
    if out_json:
        with open(out_json, "w") as f:
            json.dump(results, f, indent=1)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
