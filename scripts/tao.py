"""The TAO load-balancing experiments at the socket level (make demo's second
part; the integration tests use the same functions on shorter runs).

Effectiveness (TAO's Figures 5 and 6): four replicas, eight clients dialing
one service address, four at 100 Hz and four at 50 Hz, started alternately.
Per-session round-robin binds them 100,50,100,50,... in turn: two replicas
get two 100 Hz clients (200 Hz) and two get two 50 Hz ones (100 Hz), and
nothing changes that. Least-loaded with on-demand rebinding moves live
connections at request boundaries until every replica serves 150 Hz.

Herding: 50 clients connect at once to four replicas of which one is idle
and three already serve background clients; least-loaded sends every new
client to the idle replica (they all read the same table), headroom spreads
them by spare capacity.

Every request's reply is checked by rr-client (its own id, echoed); the
rate each replica serves comes from the replies' tags in the clients'
logs. Usage: python3 scripts/tao.py BUILD [--seconds S] [--out DIR]
(make demo runs it after the FLARe testbed; TAO_ARGS passes options)."""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy  # noqa: E402

N_REPLICAS = 4


def deployment(balance, binding, extra_service="", capacity=0, name="tao"):
    """Four rr-server replicas on four hosts (file: utilization), the
    control plane measuring request rates every 100 ms."""
    ports = deploy.free_ports(N_REPLICAS + 2)
    mport, svc, reps = ports[0], ports[1], ports[2:]
    hosts = ",\n".join('  { name = "h%d"; utilization = "file:@DIR@/h%d.util"; }' % (i, i)
                       for i in range(N_REPLICAS))
    cap = "capacity = %d; " % capacity if capacity else ""
    replicas = ",\n".join('      { name = "R%d"; host = "h%d"; address = "127.0.0.1:%d"; %s}'
                          % (i + 1, i, p, cap) for i, p in enumerate(reps))
    conf = """
manager = { addresses = [ "127.0.0.1:%d" ]; report_interval_ms = 50;
            heartbeat_interval_ms = 50; heartbeat_timeout_ms = 500; load_smoothing_ms = 500; };
monitor = { probe_interval_ms = 100; probe_timeout_ms = 100; hung_ms = 0; };
agent = { shm = "@SHM@"; };
hosts = (
%s
);
services = (
  { name = "A"; address = "127.0.0.1:%d"; balance = "%s"; binding = "%s";
    rebind_interval_ms = 1000; replay = "request-reply"; %s
    replicas = (
%s ); }
);
""" % (mport, hosts, svc, balance, binding, extra_service, replicas)
    s = deploy.Stack(conf, name)
    s.svc, s.ports, s.n, s.managers = svc, reps, N_REPLICAS, 1
    for i in range(N_REPLICAS):
        with open(os.path.join(s.dir, "h%d.util" % i), "w") as f:
            f.write("0.10\n")
    s.manager(1)
    for i in range(N_REPLICAS):
        s.monitor("h%d" % i)
    s.agent()
    for i in range(N_REPLICAS):
        s.start("rr%d" % i, [deploy.BUILD + "/flare-run", "--shm", s.shm, "--",
                             deploy.BUILD + "/rr-server", "-l", "127.0.0.1:%d" % reps[i],
                             "--tag", "R%d" % (i + 1)])
    deploy.wait_for(lambda: deploy.all_alive(s), 10, what="every replica alive")
    deploy.wait_for(lambda: deploy.all_registered(s), 10, what="every replica registered")

    def ramped():  # past the replicas' slow start: the experiment starts from steady replicas
        st = s.status() or {}
        reps = st.get("services", [{}])[0].get("replicas", [])
        return len(reps) == N_REPLICAS and all(r["ramp"] >= 1 for r in reps)
    deploy.wait_for(ramped, 15, step=0.1, what="the replicas' slow start over")
    return s


def client(s, hz, seconds, tag):
    """An rr-client under flare-run at hz for seconds, logging each reply
    (its monotonic time and the replica that answered) for rates()."""
    log = os.path.join(s.dir, "client-%s.log" % tag)
    p = deploy.rr_client(s, ["-r", str(hz), "-n", str(int(hz * seconds) + 100),
                             "--duration", str(seconds), "--log", log, "--log-mono"],
                         wait=False)
    p.log, p.tag = log, tag
    return p


def finish(procs, timeout):
    """Waits for the clients; returns the failures (name: stderr tail)."""
    bad = {}
    for p in procs:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            err += " (timed out)"
        if p.returncode != 0:
            bad[p.tag] = err.strip()[-300:]
    return bad


def replies(procs):
    """(monotonic seconds, replica tag) of every reply the clients got."""
    out = []
    for p in procs:
        with open(p.log) as f:
            for line in f:
                cols = line.split()
                if len(cols) >= 4:
                    out.append((float(cols[0]) / 1000.0, cols[3]))
    out.sort()
    return out


def rates(events, t0, t1, step=0.25, window=1.0):
    """Per-replica request rates over sliding windows: [(t, {tag: Hz})]."""
    tags = ["R%d" % (i + 1) for i in range(N_REPLICAS)]
    series, i0, i1 = [], 0, 0
    t = t0 + window
    while t <= t1 + 1e-9:
        while i1 < len(events) and events[i1][0] < t:
            i1 += 1
        while i0 < i1 and events[i0][0] < t - window:
            i0 += 1
        counts = dict.fromkeys(tags, 0)
        for _, tag in events[i0:i1]:
            if tag in counts:
                counts[tag] += 1
        series.append((t - t0, {k: v / window for k, v in counts.items()}))
        t += step
    return series


def within(r, target, frac):
    return all(abs(v - target) <= frac * target for v in r.values())


def effectiveness(balance, binding, seconds, outdir=None):
    """Runs the eight clients; returns the figures of one policy."""
    s = deployment(balance, binding)
    procs = []
    rebinds0 = (s.status() or {}).get("manager", {}).get("rebinds", 0)
    t_start = time.monotonic()
    for k in range(8):
        hz = 100 if k % 2 == 0 else 50
        procs.append(client(s, hz, seconds, "c%d-%dHz" % (k, hz)))
        # they connect in this order (their turns are taken at connect):
        # each is connected before the next starts, however busy the machine
        deploy.wait_for(lambda: deploy.connected(procs[-1].pid), 5,
                        what="client %d connected" % k)
    samples = []
    while any(p.poll() is None for p in procs) and time.monotonic() < t_start + seconds + 20:
        st = s.status() or {}
        samples.append((time.monotonic() - t_start, st.get("manager", {}).get("rebinds", 0)))
        time.sleep(0.5)
    bad = finish(procs, 30)
    ev = replies(procs)
    series = rates(ev, t_start, t_start + seconds)
    target = 150.0
    # converged: the first 1-s window within 10% that the next second's
    # windows confirm (a client moving mid-window can make one window look
    # balanced by coincidence while the moves go on)
    conv = next((t for t, _ in series
                 if all(within(r2, target, 0.10) for t2, r2 in series if t <= t2 <= t + 1.0)),
                None)
    steady, unsteady = None, []
    if conv is not None:
        # every 2-s window after convergence within +-25%
        after = [(t, r) for t, r in rates(ev, t_start, t_start + seconds, 0.25, 2.0)
                 if t - 1.0 >= conv]
        unsteady = [(t, r) for t, r in after if not within(r, target, 0.25)]
        steady = not unsteady
    rebinds_after = None
    if conv is not None and samples:
        at = max([n for t, n in samples if t <= conv] or [rebinds0])
        rebinds_after = samples[-1][1] - at
    final = series[-1][1] if series else {}
    res = {"policy": "%s/%s" % (balance, binding), "failed": bad, "replies": len(ev),
           "convergence_s": conv, "steady": steady, "rebinds_after": rebinds_after,
           "rebinds": samples[-1][1] - rebinds0 if samples else 0,
           "final": final, "series": series, "unsteady": unsteady,
           "rebind_samples": samples}
    if outdir:
        write_series(res, outdir)
    deploy.cleanup()
    return res


def herding(balance, clients=50, seconds=4.0):
    """Three replicas already busy (background clients), one idle; `clients`
    new 20 Hz clients connect at once. Returns each replica's new clients."""
    s = deployment(balance, "session", capacity=1000)
    bg = []
    # background: 300 Hz on R2..R4 (the primary policy of this helper
    # service would do; here the clients pin by dialing the replicas)
    for i in range(1, N_REPLICAS):
        for k in range(3):
            p = subprocess.Popen([deploy.BUILD + "/rr-client", "-c",
                                  "127.0.0.1:%d" % s.ports[i], "-r", "100",
                                  "--duration", str(seconds + 8)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deploy.track(p)
            p.tag = "bg%d-%d" % (i, k)
            bg.append(p)
    # wait until the table shows the load (least-loaded's input)
    def loaded():
        st = s.status() or {}
        reps = st.get("services", [{}])[0].get("replicas", [])
        return len(reps) == N_REPLICAS and all(r["rate"] > 200 for r in reps[1:])
    deploy.wait_for(loaded, 15, step=0.1, what="background load in the table")
    # one process, one thread and one connection per client: they all
    # connect within a millisecond or two, before any report can move the table
    e = dict(os.environ)
    senv, _ = deploy.client_env(s)
    e.update(senv)
    p = subprocess.run([deploy.BUILD + "/flare-run", "--shm", s.shm, "--",
                        deploy.BUILD + "/rr-client", "-c", "127.0.0.1:%d" % s.svc,
                        "--threads", str(clients), "-r", "20", "--duration", str(seconds)],
                       capture_output=True, text=True, env=e, timeout=seconds + 60)
    bad = {} if p.returncode == 0 else {"new": (p.stdout + p.stderr)[-300:]}
    finish(bg, seconds + 30)
    served = dict(kv.split(":") for kv in
                  p.stdout.split("served_by=")[-1].split()[0].split(",") if ":" in kv) \
        if "served_by=" in p.stdout else {}
    total = sum(int(v) for v in served.values()) or 1
    # every client runs at the same rate: its replica's share of the
    # requests is its share of the clients
    counts = dict(("R%d" % (i + 1), round(clients * int(served.get("R%d" % (i + 1), 0)) / total))
                  for i in range(N_REPLICAS))
    loads = [counts["R%d" % (i + 1)] * 20 + (300 if i else 0) for i in range(N_REPLICAS)]
    deploy.cleanup()
    return {"policy": balance, "failed": bad, "new_clients": counts,
            "spread": max(loads) / (sum(loads) / len(loads))}


def write_series(res, outdir):
    os.makedirs(outdir, exist_ok=True)
    name = res["policy"].replace("/", "-")
    dat = os.path.join(outdir, "tao-%s.dat" % name)
    with open(dat, "w") as f:
        for t, r in res["series"]:
            f.write("%.2f %s\n" % (t, " ".join("%.1f" % r["R%d" % (i + 1)]
                                               for i in range(N_REPLICAS))))
    png = os.path.join(outdir, "tao-%s.png" % name)
    script = os.path.join(outdir, "tao-%s.gp" % name)
    with open(script, "w") as f:
        f.write("set terminal pngcairo size 900,500 font ',10'\n"
                "set output '%s'\n"
                "set title 'flare, %s: requests/s per replica (1-s windows; 8 clients, "
                "4 x 100 Hz + 4 x 50 Hz)'\n"
                "set xlabel 'seconds since the clients started'\nset ylabel 'requests/s'\n"
                "set yrange [0:360]\nset grid\n" % (png, res["policy"]))
        f.write("plot " + ", ".join("'%s' using 1:%d with lines lw 2 title 'R%d'"
                                    % (dat, i + 2, i + 1) for i in range(N_REPLICAS))
                + ", 150 with lines dt 2 lc rgb 'gray' title '150 Hz'\n")
    r = subprocess.run(["gnuplot", script], capture_output=True, text=True)
    if r.returncode != 0:
        print("gnuplot failed: %s" % r.stderr.strip()[-300:])
    else:
        res["plot"] = png


def fmt_rates(r):
    return " ".join("%s %5.1f" % (k, r[k]) for k in sorted(r))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--out", default=os.path.join(
        "results", time.strftime("tao-%Y%m%d-%H%M%S")))
    a = ap.parse_args()
    a.out = os.path.abspath(a.out)
    deploy.configure(a.build)
    deploy.install_cleanup()
    print("TAO effectiveness (Figures 5 and 6): 4 replicas, 8 clients (4 x 100 Hz, "
          "4 x 50 Hz), %.0f s each" % a.seconds)
    results = []
    for balance, binding in (("round-robin", "session"), ("least-loaded", "on-demand")):
        r = effectiveness(balance, binding, a.seconds, a.out)
        results.append(r)
        conv = "%.2f s" % r["convergence_s"] if r["convergence_s"] is not None else "never"
        print("  %-26s converged %-8s steady %-5s rebinds %3d (after convergence %s)  "
              "last window: %s  failed clients: %d  plot: %s"
              % (r["policy"], conv, r["steady"], r["rebinds"], r["rebinds_after"],
                 fmt_rates(r["final"]), len(r["failed"]), r.get("plot", "-")))
    print("Herding: 50 clients connect at once; R1 idle, R2-R4 at about 300 Hz each")
    for balance in ("least-loaded", "headroom"):
        h = herding(balance)
        results.append(h)
        print("  %-13s new clients per replica: %s  busiest replica / mean: %.2f  failed: %d"
              % (balance, " ".join("%s %d" % kv for kv in sorted(h["new_clients"].items())),
                 h["spread"], len(h["failed"])))
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump([dict((k, v) for k, v in r.items() if k != "series") for r in results],
                  f, indent=1)
    print("results (plots tao-*.png, summary.json): %s" % a.out)
    bad = any(r["failed"] for r in results)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
