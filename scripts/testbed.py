"""make demo: the FLARe paper's testbed experiment (its Table 1 and Figure 3)
on one machine, under the static, proactive and reactive strategies.

Five hosts (TANGO, ALPHA, BETA, LAMBADA, CHARLIE) are five CPU budgets:
cgroups with a CFS quota where this machine lets us make them; otherwise
each host's utilization is the CPU time its server processes really used,
read from /proc, against the same budget, with nothing enforcing the
budget (the summary says which). Each object is an rr-server that burns
the CPU time per request that gives Table 1's utilization at its client's
rate; clients are rr-clients under flare-run. DY-1 and DY-2 start a third
of the way in; TANGO's server processes (A-1 and B-1) are SIGKILLed at two
thirds.

usage: testbed.py BUILD [--seconds N] [--strategies static,proactive,reactive] [--out DIR]
"""
import json
import re
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
import deploy  # noqa: E402 - beside this script
from deploy import free_ports, spawn, wait_for  # noqa: E402
from deploy import manager_status as status  # noqa: E402

BUILD = deploy.configure(sys.argv[1] if len(sys.argv) > 1 else "build")
deploy.install_cleanup()

HOSTS = ["TANGO", "ALPHA", "BETA", "LAMBADA", "CHARLIE"]
BUDGET = 0.2  # CPUs per emulated host
PERIOD_US = 10000  # CFS period: a short one keeps throttling stalls short
# service, replicas (name, host) in configured order, client, rate Hz,
# the object's utilization of its host (Table 1), starts at one third
OBJECTS = [
    ("A", [("A-1", "TANGO"), ("A-3", "LAMBADA"), ("A-2", "ALPHA")], "CL-1", 10, 0.40, False),
    ("B", [("B-1", "TANGO"), ("B-3", "CHARLIE"), ("B-2", "BETA")], "CL-2", 5, 0.30, False),
    ("C", [("C-1", "ALPHA")], "CL-3", 2, 0.20, False),
    ("D", [("D-1", "BETA")], "CL-4", 1, 0.10, False),
    ("DY1", [("DY-1", "LAMBADA")], "CL-5", 5, 0.50, True),
    ("DY2", [("DY-2", "CHARLIE")], "CL-6", 10, 0.50, True),
]
STRATEGIES = {  # name: (ranking strategy, failover)
    "static": ("static", "static"),
    "proactive": ("least-loaded", "proactive"),
    "reactive": ("least-loaded", "reactive"),
}
SETTLE = 2.0  # seconds after an event before a "before"/"after" window opens


def arg(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


# ---- CPU budgets ----

class Budgets:
    """One CPU budget per host: cgroup v2, v1, or /proc accounting."""

    def __init__(self, tag):
        self.tag, self.kind, self.dirs = tag, None, {}
        v1 = "/sys/fs/cgroup/cpu"
        v2 = "/sys/fs/cgroup"
        try:
            if os.environ.get("FLARE_DEMO_NO_CGROUPS"):
                raise OSError("FLARE_DEMO_NO_CGROUPS is set")
            if os.path.exists(v2 + "/cgroup.controllers"):
                if "cpu" not in open(v2 + "/cgroup.controllers").read().split():
                    raise OSError("no cpu controller")
                top = os.path.join(v2, tag)
                os.mkdir(top)
                self.dirs["top"] = [top]
                with open(v2 + "/cgroup.subtree_control", "w") as f:
                    f.write("+cpu")
                with open(top + "/cgroup.subtree_control", "w") as f:
                    f.write("+cpu")
                for h in HOSTS:
                    d = os.path.join(top, h)
                    os.mkdir(d)
                    with open(d + "/cpu.max", "w") as f:
                        f.write("%d %d" % (BUDGET * PERIOD_US, PERIOD_US))
                    self.dirs[h] = [d]
                self.kind = "cgroup v2"
            elif os.path.exists(v1 + "/cgroup.procs") and os.path.exists(
                    "/sys/fs/cgroup/cpuacct/cgroup.procs"):
                for root in (v1, "/sys/fs/cgroup/cpuacct"):
                    os.mkdir(os.path.join(root, tag))
                    self.dirs.setdefault("top", []).append(os.path.join(root, tag))
                for h in HOSTS:
                    ds = [os.path.join(root, tag, h) for root in (v1, "/sys/fs/cgroup/cpuacct")]
                    for d in ds:
                        os.mkdir(d)
                    with open(ds[0] + "/cpu.cfs_period_us", "w") as f:
                        f.write(str(PERIOD_US))
                    with open(ds[0] + "/cpu.cfs_quota_us", "w") as f:
                        f.write(str(int(BUDGET * PERIOD_US)))
                    self.dirs[h] = ds
                self.kind = "cgroup v1"
        except OSError as e:
            self.remove()
            self.reason = str(e)
        if not self.kind:
            self.kind = "proc"
            self.reason = getattr(self, "reason", "no writable cgroup hierarchy")

    def describe(self):
        if self.kind == "proc":
            return ("no cgroups here (%s): each host's utilization is its servers' CPU time "
                    "from /proc against a %.1f-CPU budget that nothing enforces, so overload "
                    "does not slow requests down" % (self.reason, BUDGET))
        return ("%s: each host is a cgroup with a CFS quota of %.1f CPU (%d us every %d us)"
                % (self.kind, BUDGET, BUDGET * PERIOD_US, PERIOD_US))

    def util_source(self, host, tmpdir):
        if self.kind == "proc":
            return "file:%s/%s.util" % (tmpdir, host)
        return "cgroup:%s/%s" % (self.tag, host)

    def place(self, host, pid):
        for d in self.dirs.get(host, []):
            with open(d + "/cgroup.procs", "w") as f:
                f.write(str(pid))

    def remove(self):
        for h in HOSTS + ["top"]:
            for d in self.dirs.get(h, []):
                for _ in range(50):  # the killed processes leave it shortly
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)
        self.dirs = {}


class ProcUtil(threading.Thread):
    """Without cgroups: every 100 ms, each host's utilization is the CPU time
    its server processes used (from /proc) over the budget, written to the
    file its monitor reads."""

    def __init__(self, tmpdir):
        super().__init__(daemon=True)
        self.tmpdir, self.pids, self.stop = tmpdir, {h: [] for h in HOSTS}, False
        self.hz = os.sysconf("SC_CLK_TCK")
        for h in HOSTS:
            self.write(h, 0.0)

    def write(self, host, u):
        path = os.path.join(self.tmpdir, host + ".util")
        with open(path + ".tmp", "w") as f:
            f.write("%.4f\n" % min(1.0, u))
        os.replace(path + ".tmp", path)

    def ticks(self, pids):
        t = 0
        for p in pids:
            try:
                with open("/proc/%d/stat" % p) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                t += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
        return t

    def run(self):
        window = []  # (time, {host: ticks}) over the last second
        while not self.stop:
            now = time.monotonic()
            window.append((now, {h: self.ticks(self.pids[h]) for h in HOSTS}))
            while len(window) > 1 and now - window[0][0] > 1.0:
                window.pop(0)
            if len(window) > 1:
                (t0, a), (t1, b) = window[0], window[-1]
                for h in HOSTS:
                    self.write(h, max(0, b[h] - a[h]) / self.hz / (t1 - t0) / BUDGET)
            time.sleep(0.1)


# ---- one run ----

def config(strategy, failover, budgets, tmpdir, ports, shm):
    hosts = ",\n".join('  { name = "%s"; utilization = "%s"; monitor_socket = "@%s-%s"; }'
                       % (h, budgets.util_source(h, tmpdir), shm[1:], h) for h in HOSTS)
    svcs = []
    for svc, reps, _, _, util, _ in OBJECTS:
        rs = ",\n".join('      { name = "%s"; host = "%s"; address = "127.0.0.1:%d"; load = %.2f; }'
                        % (name, host, ports[name], util) for name, host in reps)
        # the service is known by its primary's address: as in the paper, a
        # client holds a reference to the primary, and the ranking only
        # decides where it goes when the primary fails
        svcs.append('  { name = "%s"; address = "127.0.0.1:%d"; strategy = "%s"; '
                    'failover = "%s"; replay = "request-reply";\n    replicas = (\n%s ); }'
                    % (svc, ports[reps[0][0]], strategy, failover, rs))
    return """
manager = { addresses = [ "127.0.0.1:%d" ]; report_interval_ms = 250;
            heartbeat_interval_ms = 100; heartbeat_timeout_ms = 500; rank_threshold = 0.05; };
agent = { shm = "%s"; };
hosts = (
%s
);
services = (
%s
);
""" % (ports["manager"], shm, hosts, ",\n".join(svcs))


def run_strategy(name, seconds, outdir, budgets_tag):
    strategy, failover = STRATEGIES[name]
    tmpdir = os.path.join(outdir, name)
    os.makedirs(tmpdir, exist_ok=True)
    names = ["manager"] + [r[0] for o in OBJECTS for r in o[1]]
    ports = dict(zip(names, free_ports(len(names))))
    shm = "/flare-demo-%d-%s" % (os.getpid(), name)
    deploy.track_shm(shm)
    budgets = Budgets("%s-%s" % (budgets_tag, name))
    procutil = ProcUtil(tmpdir) if budgets.kind == "proc" else None
    conf = os.path.join(tmpdir, "flare.conf")
    with open(conf, "w") as f:
        f.write(config(strategy, failover, budgets, tmpdir, ports, shm))
    procs = []

    def start(label, args, env=None):
        p = spawn(args, log=os.path.join(tmpdir, label + ".log"), env=env)
        procs.append(p)
        return p

    servers = {}
    try:
        start("manager", [BUILD + "/flare-manager", "-c", conf, "-f"])
        for h in HOSTS:
            start("monitor-" + h, [BUILD + "/flare-monitor", "-c", conf, "--host", h, "-f"])
        start("agent", [BUILD + "/flare-agent", "-c", conf, "-f"])
        for svc, reps, _, rate, util, _ in OBJECTS:
            cpu_us = int(util * BUDGET * 1e6 / rate)
            for rep, host in reps:
                p = start(rep, [BUILD + "/flare-run", "-c", conf, "--", BUILD + "/rr-server",
                                "-l", "127.0.0.1:%d" % ports[rep], "--tag", rep, "--cpu-us",
                                str(cpu_us)])
                budgets.place(host, p.pid)
                if procutil:
                    procutil.pids[host].append(p.pid)
                servers[rep] = p
        if procutil:
            procutil.start()
        wait_for(lambda: (lambda st: st and all(r["alive"] and r["registered"]
                                                   for s in st["services"]
                                                   for r in s["replicas"]))(status(conf)),
                 15, step=0.1, what="every replica registered and alive")
        samples, stop = [], threading.Event()
        t0 = time.monotonic()

        def sample():
            while not stop.is_set():
                st = status(conf)
                if st:
                    samples.append((time.monotonic() - t0, {h["name"]: h["util"]
                                                            for h in st["hosts"]}))
                stop.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        clients = {}

        def client(cl, svc, rate, dur):
            primary = next(o[1][0][0] for o in OBJECTS if o[0] == svc)
            log = os.path.join(tmpdir, cl + ".lat")
            p = subprocess.Popen(
                [BUILD + "/flare-run", "-c", conf, "--", BUILD + "/rr-client", "-c",
                 "127.0.0.1:%d" % ports[primary], "-n", str(int(rate * dur)), "-r", str(rate),
                 "--log", log], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env=dict(os.environ, FLARE_LOG="info"))
            deploy.track(p)
            clients[cl] = (p, time.monotonic() - t0, log)

        for svc, _, cl, rate, _, late in OBJECTS:
            if not late:
                client(cl, svc, rate, seconds)
        dy_at, kill_at = seconds / 3.0, 2 * seconds / 3.0
        time.sleep(max(0, dy_at - (time.monotonic() - t0)))
        for svc, _, cl, rate, _, late in OBJECTS:
            if late:
                client(cl, svc, rate, seconds - dy_at)
        time.sleep(max(0, kill_at - (time.monotonic() - t0)))
        before_kill = status(conf)
        for rep in ("A-1", "B-1"):
            servers[rep].send_signal(signal.SIGKILL)
        kill_t = time.monotonic() - t0
        results = {}
        for cl, (p, started, log) in clients.items():
            out, err = p.communicate(timeout=seconds * 3 + 60)
            with open(os.path.join(tmpdir, cl + ".err"), "w") as f:
                f.write(err)
            results[cl] = {"rc": p.returncode, "out": out.strip(), "err": err,
                           "started": started, "log": log}
        stop.set()
        sampler.join(timeout=5)
        return {"name": name, "budgets": budgets.describe(), "dy_at": dy_at, "kill_at": kill_t,
                "seconds": seconds, "clients": results, "samples": samples,
                "order_before": before_kill, "dir": tmpdir}
    finally:
        if procutil:
            procutil.stop = True
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        budgets.remove()


# ---- analysis ----

def latencies(res, cl):
    """(time since the run started in s, latency ms, replica) per request."""
    c = res["clients"][cl]
    rows = []
    with open(c["log"]) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4:
                rows.append((c["started"] + float(parts[0]) / 1000, float(parts[2]) / 1000,
                             parts[3]))
    return rows


def window_mean(rows, a, b):
    v = [lat for t, lat, _ in rows if a <= t < b]
    return statistics.mean(v) if v else float("nan")


def host_mean(samples, host, a, b):
    v = [u[host] for t, u in samples if a <= t < b and host in u]
    return statistics.mean(v) if v else float("nan")


def analyse(res):
    dy, kill, end = res["dy_at"], res["kill_at"], res["seconds"]
    out = {"clients": {}, "hosts": {}, "went_to": {}}
    for svc, _, cl, rate, _, _ in OBJECTS:
        c = res["clients"][cl]
        rows = latencies(res, cl)
        before = window_mean(rows, dy + SETTLE, kill)
        after = window_mean(rows, kill + SETTLE, end)
        gap = heal = float("nan")
        if svc in ("A", "B"):
            # the request that met the failure: the first one to finish
            # after the kill (its response time; throttling noise on these
            # emulated hosts is tens of ms, the heal itself well under one)
            gap = next((lat for t, lat, _ in rows if t + lat / 1000 >= kill), gap)
            m = re.search(r"replayed, in ([\d.]+) us", c["err"])
            heal = float(m.group(1)) / 1000 if m else float("nan")
        errors = "requests=" not in c["out"] or " errors=0 " not in c["out"] + " "
        out["clients"][cl] = {"svc": svc, "before": before, "after": after, "gap": gap,
                              "heal": heal,
                              "ok": c["rc"] == 0 and not errors, "n": len(rows)}
        if svc in ("A", "B"):
            after_reps = [r for t, _, r in rows if t >= kill + 0.5]
            out["went_to"][svc] = max(set(after_reps), key=after_reps.count) \
                if after_reps else "?"
    for h in HOSTS:
        out["hosts"][h] = (host_mean(res["samples"], h, dy + SETTLE, kill),
                           host_mean(res["samples"], h, kill + SETTLE, end))
    return out


def plot(res, outdir):
    """Figure 3 of the paper for one strategy: response times (top) and
    utilizations (bottom) over time."""
    d = res["dir"]
    for svc, _, cl, _, _, _ in OBJECTS:
        with open(os.path.join(d, cl + ".dat"), "w") as f:
            for t, lat, _ in latencies(res, cl):
                f.write("%.3f %.3f\n" % (t, lat))
    with open(os.path.join(d, "util.dat"), "w") as f:
        f.write("t " + " ".join(HOSTS) + "\n")
        for t, u in res["samples"]:
            f.write("%.3f %s\n" % (t, " ".join("%.4f" % (100 * u.get(h, 0)) for h in HOSTS)))
    png = os.path.join(outdir, "figure3-%s.png" % res["name"])
    lines = ["set terminal pngcairo size 1000,800 font ',10'",
             "set output '%s'" % png,
             "set multiplot layout 2,1 title 'flare, %s failover: FLARe Figure 3 on one "
             "machine'" % res["name"],
             "set grid", "set key outside right",
             "set arrow 1 from %.2f, graph 0 to %.2f, graph 1 nohead dt 2" % (res["dy_at"],
                                                                          res["dy_at"]),
             "set arrow 2 from %.2f, graph 0 to %.2f, graph 1 nohead dt 2 lc 'red'"
             % (res["kill_at"], res["kill_at"]),
             "set ylabel 'response time (ms)'", "set logscale y",
             "plot " + ", ".join("'%s/%s.dat' using 1:2 with lines title '%s'" % (d, cl, cl)
                                 for _, _, cl, _, _, _ in OBJECTS),
             "unset logscale y",
             "set ylabel 'CPU utilization (%% of a %.1f-CPU host)'" % BUDGET,
             "set xlabel 'time (s); dashed: DY-1/DY-2 start, red: TANGO killed'",
             "set yrange [0:110]",
             "plot " + ", ".join("'%s/util.dat' using 1:%d with lines title '%s'" % (d, i + 2, h)
                                 for i, h in enumerate(HOSTS)),
             "unset multiplot"]
    script = os.path.join(d, "figure3.gp")
    with open(script, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = subprocess.run(["gnuplot", script], capture_output=True, text=True)
    if r.returncode != 0:
        print("gnuplot failed for %s: %s" % (res["name"], r.stderr.strip()[-300:]))
        return None
    return png


def fmt(v, unit=""):
    if v != v:
        return "   -  "
    return ("%6.1f%s" if abs(v) >= 1 or v == 0 else "%6.2f%s") % (v, unit)


def main():
    seconds = float(arg("--seconds", os.environ.get("DEMO_SECONDS", "36")))
    names = arg("--strategies", "static,proactive,reactive").split(",")
    for n in names:
        if n not in STRATEGIES:
            sys.exit("testbed: unknown strategy '%s' (static, proactive, reactive)" % n)
    outdir = os.path.abspath(arg("--out", os.path.join(
        "results", time.strftime("demo-%Y%m%d-%H%M%S"))))
    os.makedirs(outdir, exist_ok=True)
    tag = "flare-demo-%d" % os.getpid()
    print("FLARe's testbed on this machine: 5 hosts, Table 1's six clients, %.0f s per strategy "
          "(DY-1/DY-2 from %.0f s, TANGO's servers SIGKILLed at %.0f s)"
          % (seconds, seconds / 3, 2 * seconds / 3), flush=True)
    runs, analysed = [], {}
    for n in names:
        print("-- %s: running" % n, flush=True)
        res = run_strategy(n, seconds, outdir, tag)
        runs.append(res)
        analysed[n] = analyse(res)
        plot(res, outdir)
        a = analysed[n]
        print("   A -> %s, B -> %s; %s" % (a["went_to"].get("A"), a["went_to"].get("B"),
                                          "every request answered" if all(
                                              c["ok"] for c in a["clients"].values())
                                          else "SOME CLIENT FAILED"), flush=True)
    print("\nemulation: %s" % runs[0]["budgets"])
    print("\nper client (ms): mean response time before / after the failover; for A and B, "
          "the response time of the request that\nmet the failure (hit) and the library's heal "
          "inside it (reconnect + replay, from its log)")
    print("%-6s %-4s" % ("client", "obj") + "".join(
        " | %-31s" % (n + ": before after  hit  heal") for n in names))
    for _, _, cl, _, _, _ in OBJECTS:
        row = "%-6s %-4s" % (cl, analysed[names[0]]["clients"][cl]["svc"])
        for n in names:
            c = analysed[n]["clients"][cl]
            row += " | %s %s %s %s %s" % (fmt(c["before"]), fmt(c["after"]), fmt(c["gap"]),
                                           fmt(c["heal"], ""), "ok " if c["ok"] else "ERR")
        print(row)
    print("\nper host: CPU utilization before / after the failover (%% of its %.1f-CPU budget)"
          % BUDGET)
    print("%-8s" % "host" + "".join(" | %-15s" % n for n in names))
    for h in HOSTS:
        print("%-8s" % h + "".join(" | %s %s" % (fmt(100 * analysed[n]["hosts"][h][0], "%"),
                                                 fmt(100 * analysed[n]["hosts"][h][1], "%"))
                                   for n in names))
    print("\nwhere the failed objects went:")
    host_of = {r: h for _, reps, _, _, _, _ in OBJECTS for r, h in reps}
    for n in names:
        w = analysed[n]["went_to"]
        print("  %-9s A-1 -> %s (%s), B-1 -> %s (%s)" % (
            n, w.get("A"), host_of.get(w.get("A"), "?"), w.get("B"),
            host_of.get(w.get("B"), "?")))
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump({"seconds": seconds, "emulation": runs[0]["budgets"],
                   "strategies": analysed}, f, indent=1, default=str)
    failed = [n for n in names if not all(c["ok"] for c in analysed[n]["clients"].values())]
    print("\nresults (plots figure3-*.png, logs, summary.json): %s" % outdir)
    if failed:
        print("client requests failed under: %s" % ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
