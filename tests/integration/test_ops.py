"""Operations with real clients: draining a replica (flarectl drain and
undrain, sent to the manager), the health exit code for scripts, and the
manager's Prometheus metrics read by a real parser."""
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import urllib.request
import subprocess
import sys
import time

from harness import (BUILD, check, client_env, free_ports, library_stats, run, rr_deployment,
                     start_rr, track, wait_for)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "scripts"))
import tao  # noqa: E402
from deploy import manager_status  # noqa: E402

from test_balance import served_by, under_flare  # noqa: E402


def flarectl(s, *args):
    r = subprocess.run([BUILD + "/flarectl", "-c", s.conf] + list(args), capture_output=True,
                       text=True, timeout=20)
    return r.returncode, r.stdout + r.stderr


def connect_many(s, n):
    seen = {}
    for _ in range(n):
        r, _ = under_flare(s, [BUILD + "/rr-client", "-c", "127.0.0.1:%d" % s.svc, "-n", "1"])
        check(r.returncode == 0, "client: %s" % r.stderr[-300:])
        for k, v in served_by(r.stdout).items():
            seen[k] = seen.get(k, 0) + v
    return seen


def test_drain_and_health():
    """A drained replica gets no new connection while another lives, takes
    them when nothing else does, and comes back with undrain; health says
    why it fails."""
    s = rr_deployment(n=3, service_extra='balance = "random"; slow_start_ms = 0;')
    start_rr(s)
    rc, out = flarectl(s, "health")
    check(rc == 0 and "healthy" in out, "healthy at start: %d %s" % (rc, out))
    rc, out = flarectl(s, "top", "--count", "3", "--interval", "0.1")
    check(rc == 0 and out.count("LAST REPORT") == 3, "top: three views: %d %s" % (rc, out[-300:]))
    rc, out = flarectl(s, "drain", "A-2")
    check(rc == 0 and "A-2 drained" in out, "drain: %d %s" % (rc, out))
    rc, out = flarectl(s, "drain", "A-9")
    check(rc == 1 and "no replica" in out, "a name that is none is refused: %d %s" % (rc, out))
    wait_for(lambda: s.status()["services"][0]["replicas"][1]["drained"], 5, what="drained")
    seen = connect_many(s, 30)
    check("A-2" not in seen and set(seen) == {"A-1", "A-3"}, "no new connection to A-2: %r"
          % seen)
    s.kill("rr0")
    s.kill("rr2")
    wait_for(lambda: not s.replica("A-1")["alive"] and not s.replica("A-3")["alive"], 10,
             what="A-1 and A-3 dead")
    seen = connect_many(s, 3)
    check(seen == {"A-2": 3}, "nothing else lives: the drained replica serves: %r" % seen)
    rc, out = flarectl(s, "health")
    check(rc == 1 and "service A has no live replica" in out, "unhealthy: %d %s" % (rc, out))
    rc, out = flarectl(s, "undrain", "A-2")
    check(rc == 0 and "A-2 undrained" in out, "undrain: %d %s" % (rc, out))
    wait_for(lambda: flarectl(s, "health")[0] == 0, 5, what="healthy again")


def test_drain_moves_on_demand_connections():
    """Under on-demand binding the drained replica's connections move off at
    request boundaries, every reply still checked by its client."""
    s = tao.deployment("least-loaded", "on-demand", name="drain")
    procs = []
    for k in range(8):
        procs.append(tao.client(s, 100 if k % 2 == 0 else 50, 8, "c%d" % k))
        time.sleep(0.02)
    time.sleep(3)
    t_drain = time.monotonic()
    rc, out = flarectl(s, "drain", "R1")
    check(rc == 0, "drain: %s" % out)
    bad = tao.finish(procs, 40)
    check(not bad, "every reply its own, none failed: %r" % bad)
    ev = tao.replies(procs)
    late = [tag for t, tag in ev if t > t_drain + 3.5]
    check(late and "R1" not in late, "R1 serves nothing 3.5 s after the drain: %d of %d"
          % (late.count("R1"), len(late)))


# Debian's parser (python3-prometheus-client), in Debian's interpreter: the
# families it reads, as JSON {family: {"type": t, "samples": [[name, labels, value]]}}
PARSE = r"""
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    out[fam.name] = {"type": fam.type,
                     "samples": [[s.name, s.labels, s.value] for s in fam.samples]}
print(json.dumps(out))
"""


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        check(r.headers["Content-Type"].startswith("text/plain; version=0.0.4"),
              "content type %r" % r.headers["Content-Type"])
        text = r.read().decode()
    p = subprocess.run(["/usr/bin/python3", "-c", PARSE], input=text, capture_output=True,
                       text=True, timeout=30)
    check(p.returncode == 0, "the Prometheus parser rejects the page: %s\n%s"
          % (p.stderr[-800:], text[:600]))
    return json.loads(p.stdout)


def value(fams, name, **labels):
    for fam in fams.values():
        for sname, lab, v in fam["samples"]:
            if sname == name and all(lab.get(k) == v2 for k, v2 in labels.items()):
                return v
    raise AssertionError("no sample %s %r" % (name, labels))


def test_drains_outlive_managers_and_agree():
    """A drain survives its manager's restart (the state directory), and a
    manager that was down when an operator changed a drain takes the other
    managers' later word when it starts. A damaged line in the file is
    said, with its line, and skipped. flarectl config shows the file a manager
    runs while it is the one loaded, and says when it is not."""
    s = rr_deployment(n=3, name="intent", managers=2, auth=True)
    state = {i: os.path.join(s.dir, "state%d" % i) for i in (1, 2)}
    for i in (1, 2):
        os.mkdir(state[i])
    only = {}
    with open(s.conf) as f:
        text = f.read()
    addrs = re.search(r"addresses = \[ *([^,\]]+), *([^\]]+?) *\]", text)
    for i in (1, 2):  # flarectl asks the first manager that answers: one each
        only[i] = os.path.join(s.dir, "only%d.conf" % i)
        with open(only[i], "w") as f:
            f.write(text.replace(addrs.group(0), "addresses = [ %s ]" % addrs.group(i)))

    def manager(i):
        s.start("manager%d" % i, [BUILD + "/flare-manager", "-c", s.conf, "-f", "--id", str(i),
                                  "--state-dir", state[i]])
        wait_for(lambda: manager_status(only[i]) is not None, 10, what="manager %d up" % i)

    def drained(i):
        st = manager_status(only[i])
        return {r["name"] for r in st["services"][0]["replicas"] if r["drained"]}

    def ctl(*args):
        return subprocess.run([BUILD + "/flarectl", "-c", s.conf] + list(args),
                              capture_output=True, text=True, timeout=30)
    manager(1)
    manager(2)
    r = ctl("drain", "A-2")
    check(r.returncode == 0 and r.stdout.count("A-2 drained") == 2, "drain: %r" % r.stdout)
    s.kill("manager1")
    manager(1)
    check(drained(1) == {"A-2"}, "manager 1 kept the drain over its restart: %r" % drained(1))
    check("1 drained replica(s) restored" in s.read_log("manager1"), "said at start")
    s.kill("manager2")
    r = ctl("undrain", "A-2")
    check(r.returncode != 0 and "A-2 undrained" in r.stdout
          and "manager %s: Connection refused" % addrs.group(2).strip('"') in r.stderr,
          "undrain with manager 2 down: reached one, said so: %r %r" % (r.stdout, r.stderr))
    with open(os.path.join(state[2], "manager-2.drains"), "a") as f:
        f.write("A-3 half-drained 12\n")
    manager(2)
    check(drained(2) == set(), "manager 2 took manager 1's later undrain: %r" % drained(2))
    log = s.read_log("manager2")
    check(re.search(r"manager-2\.drains:3: not \"NAME drained\|undrained STAMP\": ignored", log),
          "the damaged line named: %s" % log[-600:])
    with open(os.path.join(state[2], "manager-2.drains")) as f:
        check("A-2 undrained" in f.read(), "manager 2's file rewritten with the merge")
    # flarectl config: the file the manager runs, and a note when this one differs
    r = ctl("config")
    check(r.returncode == 0 and r.stdout.startswith("# manager 1: %s as loaded at " % s.conf)
          and r.stdout.split("\n", 1)[1] == text and not r.stderr,
          "config in use: %r %r" % (r.stdout[:200], r.stderr))
    other = os.path.join(s.dir, "other-host.conf")  # another host's copy, edited
    with open(other, "w") as f:
        f.write(text + "# edited here\n")
    r = subprocess.run([BUILD + "/flarectl", "-c", other, "config"], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0 and "other-host.conf here differs from the config in use"
          in r.stderr, "a copy that differs is said: %r" % r.stderr)
    with open(s.conf, "a") as f:
        f.write("# edited, not reloaded\n")
    r = ctl("config")
    check(r.returncode == 1 and "has changed since it was loaded" in r.stderr
          and not r.stdout, "the manager's own file edited, not reloaded: %r" % r.stderr)
    s.procs["manager1"].send_signal(signal.SIGHUP)
    wait_for(lambda: ctl("config").returncode == 0, 10, what="the reloaded file shown")
    s.procs["manager1"].send_signal(signal.SIGHUP)  # a reload keeps the drains' file
    r = ctl("drain", "A-3")
    wait_for(lambda: "A-3 drained" in open(os.path.join(state[1], "manager-1.drains")).read(),
             10, what="a drain after reloads saved")


def test_manager_metrics_scraped():
    """GET /metrics on manager.metrics: a real parser accepts it, and it
    follows a replica's death and a drain."""
    port = free_ports(1)[0]
    s = rr_deployment(n=3, name="metrics")
    with open(s.conf) as f:
        conf = f.read().replace("manager = { addresses = [ ",
                                'manager = { metrics = [ "127.0.0.1:%d" ]; addresses = [ ' % port)
    with open(s.conf, "w") as f:
        f.write(conf)
    start_rr(s)
    wait_for(lambda: flarectl(s, "health")[0] == 0, 10, what="healthy")
    fams = scrape(port)
    check(fams["flare_rankings"]["type"] == "counter", "counters are counters: %r"
          % fams["flare_rankings"])
    check(value(fams, "flare_monitors_connected") == 3 and
          value(fams, "flare_agents_connected") == 1, "peers counted")
    check(all(value(fams, "flare_host_up", host="h%d" % i) == 1 for i in range(3)), "hosts up")
    check(value(fams, "flare_host_utilization_ratio", host="h2") == 0.3, "utilization")
    check(value(fams, "flare_replica_up", replica="A-2") == 1, "A-2 up")
    s.kill("rr1")
    wait_for(lambda: not s.replica("A-2")["alive"], 10, what="A-2 dead")
    flarectl(s, "drain", "A-3")
    fams = scrape(port)
    check(value(fams, "flare_replica_up", replica="A-2") == 0, "A-2 down after its death")
    check(value(fams, "flare_replica_drained", replica="A-3") == 1, "A-3 drained")
    check(value(fams, "flare_rankings_total") >= 2, "rankings counted")


def test_agent_metrics_count_the_library():
    """agent.metrics: what the library did on the host, per service, from
    the slots its processes claimed (no thread, no syscall in them),
    parsed by a real Prometheus parser; a process that exited is folded
    into the totals, which only grow."""
    port = free_ports(1)[0]
    s = rr_deployment(n=3, name="agentm")
    with open(s.conf) as f:
        conf = f.read().replace('agent = { shm = "', 'agent = { metrics = "127.0.0.1:%d"; shm = "'
                                % port)
    with open(s.conf, "w") as f:
        f.write(conf)
    start_rr(s)
    senv, stats = client_env(s)
    p = subprocess.Popen([BUILD + "/flare-run", "--shm", s.shm, "--", BUILD + "/rr-client", "-c",
                          "127.0.0.1:%d" % s.svc, "-r", "400", "-n", "800"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, **senv))
    track(p)
    time.sleep(0.8)
    fams = scrape(port)
    check(value(fams, "flare_library_processes") >= 1, "the running client has a slot")
    check(value(fams, "flare_library_connections_total", service="A") >= 1, "counted live")
    victim = [i for i in range(s.n) if "A-%d" % (i + 1) in s.order("A")[:1]]
    s.kill("rr%d" % victim[0])
    out, err = p.communicate(timeout=60)
    check(p.returncode == 0 and "errors=0" in out, "client: %s %s" % (out, err[-300:]))
    st = library_stats(stats)
    fams = scrape(port)
    check(value(fams, "flare_library_processes") == 0, "the exited client's slot is free")
    check(value(fams, "flare_library_connections_total", service="A") == st["managed"] and
          value(fams, "flare_library_heals_total", service="A") == st["failovers"] and
          value(fams, "flare_library_replays_total", service="A") == st["replays"],
          "the agent's totals are the process's own: %r" % st)
    check(st["failovers"] >= 1, "the kill met the client: %r" % st)
    check(value(fams, "flare_agent_subscribed") == 1 and value(fams, "flare_agent_tables_total")
          >= 1, "the agent's own counters")


def test_systemd_units_and_readiness():
    """The units (dist/systemd) pass systemd-analyze verify with this build's
    binaries; each daemon tells systemd it is ready (Type=notify) once it
    is up, over $NOTIFY_SOCKET."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    s = rr_deployment(n=1, name="units")
    d = tempfile.mkdtemp(prefix="flare-units-", dir=s.dir)
    shutil.copy(s.conf, os.path.join(d, "flare.conf"))
    units = []
    for name in sorted(os.listdir(os.path.join(root, "dist", "systemd"))):
        with open(os.path.join(root, "dist", "systemd", name)) as f:
            text = f.read().replace("@BINDIR@", BUILD).replace("@CONFDIR@", d)
        inst = name.replace("@.", "@1." if "manager" in name else "@h0.")
        with open(os.path.join(d, inst), "w") as f:
            f.write(text)
        units.append(os.path.join(d, inst))
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify", "--man=no"] + units,
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, "systemd-analyze verify: %s %s" % (r.stdout, r.stderr))
    else:
        print("     (systemd-analyze not installed: units not verified)")
    # readiness: a datagram socket stands in for systemd
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = os.path.join(s.dir, "notify.sock")
    sock.bind(path)
    sock.settimeout(10)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    for name, args in (("manager1", [BUILD + "/flare-manager", "-c", s.conf, "-f"]),
                       ("monitor-h0", [BUILD + "/flare-monitor", "-c", s.conf, "--host", "h0",
                                       "-f"]),
                       ("agent", [BUILD + "/flare-agent", "-c", s.conf, "-f"])):
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        s.procs[name] = p
        track(p)
        msg = sock.recv(64)
        check(msg == b"READY=1", "%s said %r" % (name, msg))
    sock.close()


def test_units_need_no_instance_name():
    """The packaged units run the manager and the monitor without --id or
    --host: the manager takes the first of manager.addresses that is an
    address of this machine (none: it says so and ends, exit 0); the
    monitor the host named as this machine, or the only one."""
    s = rr_deployment(n=1, name="noinst")
    port = free_ports(1)[0]
    with open(s.conf) as f:
        text = f.read()
    addrs = re.search(r"addresses = \[([^\]]*)\]", text)
    two = os.path.join(s.dir, "two.conf")
    with open(two, "w") as f:
        f.write(text.replace(addrs.group(0), 'addresses = [ "198.18.251.1:%d", "127.0.0.1:%d" ]'
                             % (port, port)))
    r = subprocess.run([BUILD + "/flare-manager", "-c", two, "--check"], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0 and "(manager 2:" in r.stdout, "the local address picked: %r" % r.stdout)
    none = os.path.join(s.dir, "none.conf")
    with open(none, "w") as f:
        f.write(text.replace(addrs.group(0), 'addresses = [ "198.18.251.1:%d" ]' % port))
    r = subprocess.run([BUILD + "/flare-manager", "-c", none, "-f"], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0 and "no manager runs here" in r.stderr,
          "no local address: ends cleanly: %d %r" % (r.returncode, r.stderr[-300:]))
    r = subprocess.run([BUILD + "/flare-monitor", "-c", s.conf, "--check"], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0 and "(host h0)" in r.stdout, "the only host: %r %r" % (r.stdout,
                                                                                 r.stderr))
    many = os.path.join(s.dir, "many.conf")
    with open(many, "w") as f:
        f.write(text.replace("hosts = (\n", 'hosts = (\n  { name = "other-host"; '
                             'utilization = "proc"; },\n', 1))
    r = subprocess.run([BUILD + "/flare-monitor", "-c", many, "--check"], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode != 0 and "none named '%s' (this machine): give --host NAME"
          % socket.gethostname().split(".")[0] in r.stderr, "two hosts: %r" % r.stderr)


def test_source_address():
    """--source IP: a host's monitor and agent connect to the manager from
    that address (a multi-homed host; a manager's per-address bounds count
    per host); anything but an IP address is refused with why."""
    s = rr_deployment(n=1, name="source")
    s.manager()
    s.start("monitor-h0", [BUILD + "/flare-monitor", "-c", s.conf, "--host", "h0", "--source",
                           "127.0.0.7", "-f"])
    s.start("agent", [BUILD + "/flare-agent", "-c", s.conf, "--source", "127.0.0.8", "-f"])
    mport = re.search(r'addresses = \[ "127.0.0.1:(\d+)"', open(s.conf).read()).group(1)

    def sources():
        r = subprocess.run(["ss", "-Htn", "state", "established", "( dport = :%s )" % mport],
                           capture_output=True, text=True)
        return {line.split()[2].rsplit(":", 1)[0] for line in r.stdout.splitlines()}
    wait_for(lambda: sources() == {"127.0.0.7", "127.0.0.8"}, 10,
             what="the monitor from 127.0.0.7 and the agent from 127.0.0.8")
    r = subprocess.run([BUILD + "/flare-agent", "-c", s.conf, "--source", "eth0", "--check"],
                       capture_output=True, text=True, timeout=10)
    check(r.returncode == 2 and "--source 'eth0': not an IPv4 or IPv6 address" in r.stderr,
          "bad --source: %r" % r.stderr)


def test_staged_install():
    """make install into a staging root: the binaries, the library where
    flare-run finds it, man pages that groff renders without a warning,
    units pointing at the installed binaries; the installed flare-run
    manages a connection."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    s = rr_deployment(n=2, name="inst")
    start_rr(s)
    stage = os.path.join(s.dir, "stage")
    r = subprocess.run(["make", "-s", "-C", root, "install", "BUILD=" + BUILD,
                        "DESTDIR=" + stage, "PREFIX=/usr"], capture_output=True, text=True,
                       timeout=300)
    check(r.returncode == 0, "make install: %s" % r.stderr[-800:])
    for f in ("usr/bin/flare-run", "usr/bin/flarectl", "usr/lib/flare/libflare.so",
              "usr/share/man/man5/flare.conf.5", "usr/lib/systemd/system/flare-agent.service",
              "usr/lib/systemd/system/flare-manager.service", "usr/libexec/flare/rr-client",
              "etc/flare/flare.conf"):
        check(os.path.exists(os.path.join(stage, f)), "installed: %s" % f)
    check(not os.path.exists(os.path.join(stage, "usr/bin/rr-client")), "demo programs not in bin")
    r = subprocess.run([BUILD + "/flare-monitor", "-c", os.path.join(stage, "etc/flare/flare.conf"),
                        "--check"], capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and "flare.key: cannot open the key file" in r.stderr,
          "the single-host config parses, and needs the key the package makes: %r" % r.stderr)
    with open(os.path.join(stage, "usr/lib/systemd/system/flare-manager@.service")) as f:
        check("ExecStart=/usr/bin/flare-manager -c /etc/flare/flare.conf --id %i -f" in f.read(),
              "the unit runs the installed manager")
    for sec, page in (("1", "flare-run"), ("1", "flarectl"), ("5", "flare.conf"),
                      ("8", "flare-manager"), ("8", "flare-monitor"), ("8", "flare-agent")):
        g = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z",
                            os.path.join(stage, "usr/share/man/man%s/%s.%s" % (sec, page, sec))],
                           capture_output=True, text=True)
        check(g.returncode == 0 and not g.stderr.strip(), "%s(%s): %s" % (page, sec, g.stderr))
    senv, stats = client_env(s)
    env = dict(os.environ, FLARE_STATS=stats)
    env.pop("FLARE_LIB", None)  # the installed flare-run finds its own library
    r = subprocess.run([os.path.join(stage, "usr/bin/flare-run"), "--shm", s.shm, "--",
                        BUILD + "/rr-client", "-c", "127.0.0.1:%d" % s.svc, "-n", "5"],
                       capture_output=True, text=True, env=env, timeout=60)
    check(r.returncode == 0 and library_stats(stats)["managed"] == 1,
          "the installed flare-run manages the connection: %s %s" % (r.stdout, r.stderr))


def test_reload_under_load():
    """SIGHUP to every daemon while a client runs: a new host and replica
    (listed first) appear in the manager's picture and the clients' table,
    the agent's subscription and the client's connection stay, no request
    fails; a bad config is refused with FILE:LINE and the old one kept."""
    s = rr_deployment(n=3, name="reload")
    start_rr(s)
    senv, stats = client_env(s)
    client = subprocess.Popen([BUILD + "/flare-run", "--shm", s.shm, "--", BUILD + "/rr-client",
                               "-c", "127.0.0.1:%d" % s.svc, "-r", "500", "-n", "2500"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, **senv))
    track(client)
    time.sleep(0.5)
    with open(s.conf) as f:
        old = f.read()
    port = free_ports(1)[0]
    with open(os.path.join(s.dir, "h3.util"), "w") as f:
        f.write("0.05\n")
    new = old.replace('hosts = (\n', 'hosts = (\n  { name = "h3"; utilization = "file:%s/h3.util"; '
                      'monitor_socket = "%s/h3.sock"; },\n' % (s.dir, s.dir))
    new = new.replace("replicas = (\n", 'replicas = (\n      { name = "A-4"; host = "h3"; '
                      'address = "127.0.0.1:%d"; load = 0.2; },\n' % port)
    new = new.replace("connect_timeout_ms = 200;", "connect_timeout_ms = 150;")
    with open(s.conf, "w") as f:
        f.write(new)
    for name, p in list(s.procs.items()):
        if name.startswith(("manager", "monitor", "agent")):
            p.send_signal(signal.SIGHUP)
    s.monitor("h3")
    s.start("rr3", [BUILD + "/flare-run", "--shm", s.shm, "--", BUILD + "/rr-server", "-l",
                    "127.0.0.1:%d" % port, "--tag", "A-4"])
    wait_for(lambda: (s.replica("A-4") or {}).get("alive"), 10, what="A-4 alive in the table")
    # a bad config: refused, the one in use kept
    with open(s.conf, "w") as f:
        f.write(new.replace("connect_timeout_ms = 150;", "connect_timeout_ms = -5;"))
    s.procs["manager1"].send_signal(signal.SIGHUP)
    wait_for(lambda: "keeping the config in use" in s.read_log("manager1"), 5,
             what="the bad config refused")
    with open(s.conf, "w") as f:  # flarectl below reads it too
        f.write(new)
    out, err = client.communicate(timeout=60)
    check(client.returncode == 0 and "errors=0" in out and "requests=2500" in out,
          "the client through the reloads: %s %s" % (out, err[-500:]))
    check(library_stats(stats)["managed"] == 1, "one connection, never dropped")
    log = s.read_log("manager1")
    check(log.count("(agent): subscribed") == 1, "the agent stayed subscribed")
    check("flare.conf:" in log.split("keeping the config in use")[0].splitlines()[-1],
          "the refusal names FILE:LINE: %s" % log[-400:])
    st = s.status()
    check(len(st["services"][0]["replicas"]) == 4 and len(st["hosts"]) == 4,
          "the manager uses the reloaded config: %r" % [r["name"] for r in
                                                         st["services"][0]["replicas"]])
    check(st["services"][0]["replicas"][0]["name"] == "A-4", "A-4 first, as the new config has it")


def test_flare_run_fails_open():
    """No problem of flare's keeps a client program from running: a config
    with a typo (an unknown key), a config that is not there, an agent.user
    that does not exist, FLARE_LIB naming no library. The program runs and
    answers as without flare, after one warning naming where and why."""
    s = rr_deployment()
    start_rr(s)
    bad = os.path.join(s.dir, "typo.conf")
    with open(s.conf) as f, open(bad, "w") as g:
        g.write(f.read().replace("agent = {", "agent = { colour = 3;", 1))
    nouser = os.path.join(s.dir, "nouser.conf")
    with open(s.conf) as f, open(nouser, "w") as g:
        g.write(f.read().replace("agent = {", 'agent = { user = "no-such-user-flare";', 1))
    client = [BUILD + "/rr-client", "-c", "127.0.0.1:%d" % s.ports[0], "-n", "3"]
    cases = [
        (["-c", bad], {}, "typo.conf:"),
        (["-c", os.path.join(s.dir, "missing.conf")], {}, "missing.conf:0: no such file"),
        (["-c", nouser], {}, "agent.user 'no-such-user-flare': no such user"),
        (["--shm", s.shm], {"FLARE_LIB": "/nonexistent/libflare.so"},
         "FLARE_LIB=/nonexistent/libflare.so: No such file or directory"),
    ]
    for args, env, says in cases:
        r = subprocess.run([BUILD + "/flare-run"] + args + ["--"] + client, capture_output=True,
                           text=True, timeout=30, env=dict(os.environ, **env))
        warnings = [l for l in r.stderr.splitlines() if l.startswith("flare-run: warning")]
        check(r.returncode == 0 and "requests=3 errors=0" in r.stdout,
              "%s: the program did not run: rc %d %s %s" % (args, r.returncode, r.stdout,
                                                            r.stderr[-400:]))
        check(len(warnings) == 1 and says in warnings[0],
              "%s: one warning saying %r: %r" % (args, says, r.stderr[-400:]))
    # a typo outside agent and library: the daemons refuse the file on reload
    # and keep serving their last good config's table, so the program runs
    # with flare, its connection managed, after one warning naming the line
    svctypo = os.path.join(s.dir, "svctypo.conf")
    with open(s.conf) as f, open(svctypo, "w") as g:
        g.write(f.read().replace("replicas = (", "retries = 3; replicas = (", 1))
    senv, stats = client_env(s)
    senv.pop("FLARE_SHM", None)  # from the file's agent.shm
    r = subprocess.run([BUILD + "/flare-run", "-c", svctypo, "--", BUILD + "/rr-client", "-c",
                        "127.0.0.1:%d" % s.svc, "-n", "3"], capture_output=True, text=True,
                       timeout=30, env=dict(os.environ, **senv))
    warnings = [l for l in r.stderr.splitlines() if l.startswith("flare-run: warning")]
    check(r.returncode == 0 and "requests=3 errors=0" in r.stdout
          and library_stats(stats)["managed"] == 1,
          "service typo: the program runs managed: %s %s" % (r.stdout, r.stderr[-400:]))
    check(len(warnings) == 1 and re.search(r"svctypo\.conf:\d+: unknown key 'retries'", warnings[0])
          and "runs with flare" in warnings[0], "service typo: one warning: %r" % r.stderr)
    # a file that is there but cannot be run is said so (126), not "not found"
    noexec = os.path.join(s.dir, "noexec.sh")
    open(noexec, "w").close()
    r = subprocess.run([BUILD + "/flare-run", "--", noexec], capture_output=True, text=True)
    check(r.returncode == 126 and "Permission denied" in r.stderr, "noexec: %r" % r.stderr)
    # a set-user-ID program of the caller's own user is preloaded: no warning
    own = os.path.join(s.dir, "suid-true")
    shutil.copy("/bin/true", own)
    os.chmod(own, 0o4755)
    r = subprocess.run([BUILD + "/flare-run", "--", own], capture_output=True, text=True)
    check(r.returncode == 0 and "set-user" not in r.stderr, "own set-user-ID: %r" % r.stderr)


def test_no_manager_is_said_at_the_default_level():
    """A monitor and an agent whose manager is not there say so at the
    default log level (warn), once and not once per attempt."""
    s = rr_deployment()  # its manager is never started
    env = {k: v for k, v in os.environ.items() if k != "FLARE_LOG"}
    logs = {}
    for name, args in (("agent", [BUILD + "/flare-agent", "-c", s.conf, "-f"]),
                       ("monitor", [BUILD + "/flare-monitor", "-c", s.conf, "--host", "h0", "-f"])):
        p = track(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, env=env))
        time.sleep(2.0)  # several attempts with backoff
        p.terminate()
        logs[name] = p.communicate(timeout=10)[1]
    for name, log in logs.items():
        said = [l for l in log.splitlines() if "no manager reached" in l and " warn: " in l]
        check(len(said) == 1, "%s: %d warning(s) about the missing manager:\n%s" % (
            name, len(said), log[-1200:]))


def test_library_logs_to_syslog():
    """library.log = "syslog" (or FLARE_LOG_TARGET=syslog): the library's
    lines leave the program's stderr and go to syslog (/dev/log, seen with
    strace); FLARE_DISABLE=no does not disable flare, FLARE_DISABLE=yes does."""
    s = rr_deployment()
    start_rr(s)
    conf = os.path.join(s.dir, "syslog.conf")
    with open(s.conf) as f, open(conf, "w") as g:
        g.write(f.read() + 'library = { log = "syslog"; };\n')
    trace = os.path.join(s.dir, "syslog.trace")
    senv, stats = client_env(s)
    env = dict(os.environ, FLARE_LOG="info", **senv)
    r = subprocess.run(["strace", "-f", "-e", "trace=connect", "-o", trace,
                        BUILD + "/flare-run", "-c", conf, "--", BUILD + "/rr-client", "-c",
                        "127.0.0.1:%d" % s.svc, "-n", "3"], capture_output=True, text=True,
                       timeout=30, env=env)
    check(r.returncode == 0 and "requests=3 errors=0" in r.stdout, "client: %s" % r.stderr)
    check("libflare" not in r.stderr, "the library wrote to the program's stderr: %r" % r.stderr)
    check("/dev/log" in open(trace).read(), "no connect to syslog: %s" % open(trace).read())
    for value, managed in (("no", 1), ("0", 1), ("yes", 0), ("1", 0)):
        r = subprocess.run([BUILD + "/flare-run", "--shm", s.shm, "--", BUILD + "/rr-client",
                            "-c", "127.0.0.1:%d" % s.svc, "-n", "1"], capture_output=True,
                           text=True, timeout=30, env=dict(env, FLARE_DISABLE=value))
        # disabled, the connect goes to the service address itself, where
        # nothing listens: refused, as without flare
        said = "1 managed connection" in r.stderr
        check(said == bool(managed) and (r.returncode == 0) == bool(managed),
              "FLARE_DISABLE=%s: managed %s: %s" % (value, said, r.stderr[-300:]))


def test_log_level_at_run_time():
    """A daemon started at warn logs debug lines after SIGUSR1 twice (and
    says so), and is back at warn after SIGUSR2. (An agent with no
    manager: each attempt to reach one is a debug line.)"""
    s = rr_deployment()
    env = dict(os.environ, FLARE_LOG="warn")
    log = os.path.join(s.dir, "levels.log")
    with open(log, "w") as out:
        p = track(subprocess.Popen([BUILD + "/flare-agent", "-c", s.conf, "-f"],
                                   stdout=out, stderr=out, env=env))
    time.sleep(0.5)
    before = open(log).read()
    check(" debug: " not in before and " info: " not in before, "not at warn: %s" % before)
    for _ in range(2):
        p.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
    time.sleep(1.5)  # attempts to reach the manager, with backoff
    mid = open(log).read()[len(before):]
    check("log level debug" in mid and " debug: " in mid, "no debug after SIGUSR1: %s" % mid)
    p.send_signal(signal.SIGUSR2)
    time.sleep(0.3)
    mark = len(open(log).read())
    time.sleep(1.5)
    after = open(log).read()[mark:]
    check("log level warn" in open(log).read() and " debug: " not in after,
          "SIGUSR2 did not bring it back to warn: %s" % after)
    p.terminate()
    p.wait(timeout=10)


if __name__ == "__main__":
    run([test_drain_and_health, test_drain_moves_on_demand_connections,
         test_drains_outlive_managers_and_agree,
         test_manager_metrics_scraped, test_systemd_units_and_readiness,
         test_units_need_no_instance_name, test_source_address, test_staged_install,
         test_reload_under_load,
         test_agent_metrics_count_the_library,
         test_flare_run_fails_open, test_no_manager_is_said_at_the_default_level,
         test_library_logs_to_syslog, test_log_level_at_run_time])
