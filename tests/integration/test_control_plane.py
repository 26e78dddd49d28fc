"""Control plane end to end: manager + monitors on file: sources + an agent,
with real server processes, checked through the shared table."""
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

from harness import (BUILD, Stack, accepts, track, all_alive, all_registered, check, client_env, free_ports, frame, library_stats,
                     registering_server, rr_deployment, rr_server, run, serving_replica,
                     start_rr, wait_for)

REPORT_MS = 100
HB_TIMEOUT_MS = 500


def deployment():
    mport, a1, a2, a3, svc = free_ports(5)
    conf = """
manager = { addresses = [ "127.0.0.1:%d" ]; report_interval_ms = %d;
            heartbeat_interval_ms = 100; heartbeat_timeout_ms = %d; };
monitor = { probe_interval_ms = 100; probe_timeout_ms = 100; util_threshold = 0.05; };
agent = { shm = "@SHM@"; };
hosts = (
  { name = "alpha"; utilization = "file:@DIR@/alpha.util"; monitor_socket = "@DIR@/alpha.sock"; },
  { name = "beta";  utilization = "file:@DIR@/beta.util";  monitor_socket = "@DIR@/beta.sock"; },
  { name = "gamma"; utilization = "file:@DIR@/gamma.util"; monitor_socket = "@DIR@/gamma.sock"; }
);
services = (
  { name = "A"; address = "127.0.0.1:%d";
    replicas = (
      { name = "A-1"; host = "alpha"; address = "127.0.0.1:%d"; load = 0.30; },
      { name = "A-2"; host = "beta";  address = "127.0.0.1:%d"; load = 0.30; },
      { name = "A-3"; host = "gamma"; address = "127.0.0.1:%d"; load = 0.30; } ); }
);
""" % (mport, REPORT_MS, HB_TIMEOUT_MS, svc, a1, a2, a3)
    s = Stack(conf)
    s.mport = mport
    s.ports = {"A-1": a1, "A-2": a2, "A-3": a3}
    for host, u in (("alpha", 0.1), ("beta", 0.5), ("gamma", 0.3)):
        set_util(s, host, u)
    return s


def set_util(s, host, value):
    tmp = os.path.join(s.dir, host + ".util.tmp")
    with open(tmp, "w") as f:
        f.write("%.2f\n" % value)
    os.rename(tmp, os.path.join(s.dir, host + ".util"))


def start_all(s):
    s.manager()
    for h, rep in (("alpha", "A-1"), ("beta", "A-2"), ("gamma", "A-3")):
        s.monitor(h)
        registering_server(s, os.path.join(s.dir, h + ".sock"), "127.0.0.1", s.ports[rep],
                           "server-" + rep)
    s.agent()
    # alive can come from a probe before the registration is verified:
    # wait for both, so the tests start from registered servers
    wait_for(lambda: s.order("A") and all(r["alive"] for r in s.table()["services"][0]["replicas"])
             and all_registered(s), 10, what="all replicas alive in the table and registered")


def test_utilization_reorders_table():
    s = deployment()
    start_all(s)
    wait_for(lambda: s.order("A")[0] == "A-1", 5, what="A-1 (alpha, 0.1) ranked first")
    start = time.monotonic()
    set_util(s, "alpha", 0.9)
    wait_for(lambda: s.order("A")[0] == "A-3", 5, what="A-3 (gamma, 0.3) ranked first")
    took = (time.monotonic() - start) * 1000
    print("     utilization change -> table: %.0f ms (report interval %d ms)" % (took, REPORT_MS))
    # two report intervals, plus the polling loop's own granularity
    check(took <= 2 * REPORT_MS + 50, "reorder took %.0f ms" % took)
    # failover order of A-1 follows too: gamma (0.3) before beta (0.5)
    check(s.replica("A-1")["failover"] == ["A-3", "A-2"], "failover of A-1: %s" % s.replica("A-1"))


def test_sigkill_registered_server_marks_dead():
    s = deployment()
    start_all(s)
    before = s.status()["services"][0]["replicas"][1]
    check(before["registered"] and before["watched"] == "process" and before["reason"] == "none",
          "A-2 watched through its registration: %s" % before)
    start = time.monotonic()
    s.kill("server-A-2")
    wait_for(lambda: not s.replica("A-2")["alive"], 5, what="A-2 dead in the table")
    print("     SIGKILL -> dead in table: %.0f ms" % ((time.monotonic() - start) * 1000))
    after = s.status()["services"][0]["replicas"][1]
    check(after["reason"] == "exited" and 0 <= after["changed_ms"] < 2000
          and after["changed_ms"] < before["changed_ms"],
          "status after the death: %s (before: %s)" % (after, before))
    check(s.replica("A-1")["alive"] and s.replica("A-3")["alive"], "others still alive")
    check("A-2" not in s.replica("A-1")["failover"][:1], "A-1 no longer fails over to A-2")


def test_monitor_death_marks_host_dead():
    s = deployment()
    start_all(s)
    # a dead monitor process: its connection closes, the host is dead at once
    start = time.monotonic()
    s.kill("monitor-gamma")
    wait_for(lambda: not s.replica("A-3")["alive"], 5, what="A-3 dead after its monitor died")
    print("     monitor SIGKILL -> host dead: %.0f ms" % ((time.monotonic() - start) * 1000))
    st = s.status()
    check([h["alive"] for h in st["hosts"]] == [True, True, False], "host states %s" % st["hosts"])


def test_silent_monitor_marks_host_dead_after_timeout():
    s = deployment()
    start_all(s)
    # a silent host: the monitor is frozen, no FIN, no RST
    start = time.monotonic()
    s.procs["monitor-beta"].send_signal(signal.SIGSTOP)
    wait_for(lambda: not s.replica("A-2")["alive"], 5, what="A-2 dead after beta fell silent")
    took = (time.monotonic() - start) * 1000
    print("     monitor SIGSTOP -> host dead: %.0f ms (timeout %d ms)" % (took, HB_TIMEOUT_MS))
    check(took >= HB_TIMEOUT_MS - REPORT_MS, "host declared dead %.0f ms before its timeout" % took)
    check(took <= HB_TIMEOUT_MS * 3, "host death took %.0f ms" % took)
    s.procs["monitor-beta"].send_signal(signal.SIGCONT)
    wait_for(lambda: s.replica("A-2")["alive"], 5, what="A-2 alive again after beta resumed")


def test_manager_restart_resubscribes():
    s = deployment()
    start_all(s)
    s.kill("manager1")
    time.sleep(0.3)
    t = s.table()
    check(t is not None and len(t["services"][0]["replicas"]) == 3, "table kept without manager")
    s.manager()
    wait_for(lambda: s.status() and s.status()["manager"]["agents"] == 1, 10,
             what="agent resubscribed")
    wait_for(lambda: all(r["alive"] for r in s.table()["services"][0]["replicas"]), 10,
             what="table complete again")
    # the manager counts the agent before the agent has logged its table
    wait_for(lambda: "subscribed" in s.read_log("agent").split("lost", 1)[-1], 5,
             what="agent log shows resubscription")


def test_garbage_frames_rejected():
    s = deployment()
    start_all(s)
    # manager port: garbage, then a truncated frame, then a lying length
    for payload in (b"GET / HTTP/1.0\r\n\r\n", frame(4, b"\x00\x05alpha")[:9],
                    struct.pack(">HBBI", 0xF1A3, 1, 4, 0x7FFFFFFF)):
        c = socket.create_connection(("127.0.0.1", s.mport))
        c.sendall(payload)
        c.close()
    # a report before HELLO, and a well-framed report full of nonsense
    c = socket.create_connection(("127.0.0.1", s.mport))
    c.sendall(frame(4, b"\xff" * 40))
    c.close()
    # the monitor's registration socket
    for payload in (b"\x00" * 64, frame(3, b"\x00\x00\x00\x01\xff\xff")):
        u = socket.socket(socket.AF_UNIX)
        u.connect(os.path.join(s.dir, "beta.sock"))
        u.sendall(payload)
        u.close()
    time.sleep(0.3)
    mlog, blog = s.read_log("manager1"), s.read_log("monitor-beta")
    check("bad frame header" in mlog, "manager logged the garbage")
    # a report before HELLO is refused on its header, before it is buffered
    check("not a HELLO of its size" in mlog, "manager logged the report before HELLO")
    check("bad frame" in blog and "bad register frame" in blog, "monitor logged the garbage")
    # everyone still serves
    check(s.status()["manager"]["agents"] == 1, "manager still serves")
    set_util(s, "alpha", 0.95)
    wait_for(lambda: s.order("A")[0] == "A-3", 5, what="ranking still updates")
    registering_server(s, os.path.join(s.dir, "beta.sock"), "127.0.0.1", free_ports(1)[0], "x")
    check(all(p.poll() is None for p in s.procs.values()), "no daemon died")


def test_replicated_managers():
    """Two managers: monitors report to both, the agent follows the first.
    Killing it while a client fails over loses no request, and the agent
    moves to the second; a manager that restarts catches up on its
    monitors before it serves, so an agent that moves to it never
    publishes a table with every replica dead."""
    s = rr_deployment(managers=2)
    start_rr(s)
    victim = serving_replica(s)
    senv, stats = client_env(s)
    p = subprocess.Popen([BUILD + "/flare-run", "--shm", s.shm, "--", BUILD + "/rr-client", "-c",
                          "127.0.0.1:%d" % s.svc, "-n", "3000", "-r", "2000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, **senv))
    time.sleep(0.3)
    s.kill("manager1")
    time.sleep(0.3)
    s.kill("rr%d" % victim)
    # the death reaches the table through the second manager
    wait_for(lambda: not s.replica("A-%d" % (victim + 1))["alive"], 3,
             what="the death published by manager 2")
    out, err = p.communicate(timeout=60)
    m = re.search(r"requests=(\d+) errors=(\d+)", out)
    check(p.returncode == 0 and m and m.group(1) == "3000" and m.group(2) == "0",
          "no request lost: rc %d %r %s" % (p.returncode, out, err[-400:]))
    check(library_stats(stats)["failovers"] >= 1, "the client healed: %s" % err[-400:])
    st = s.status()  # manager 1 is gone: the second answers
    check(st and st["manager"]["id"] == 2 and st["manager"]["agents"] == 1,
          "the agent follows manager 2: %r" % (st or {}).get("manager"))
    # manager 1 comes back; at once manager 2 dies: the agent moves to a
    # manager that has just started, and the table must never say that
    # every replica died
    s.manager(1)
    s.kill("manager2")
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        t = s.table()
        if t and t["services"]:
            alive = [r["alive"] for r in t["services"][0]["replicas"]]
            check(any(alive), "a catching-up manager published every replica dead: %r" % t)
        time.sleep(0.01)
    def on_manager_1():
        st = s.status()
        return st and st["manager"]["id"] == 1 and st["manager"]["caught_up"] and \
            st["manager"]["agents"] == 1
    wait_for(on_manager_1, 5, what="the agent on manager 1, caught up")


def test_two_deployments_one_machine():
    """Two deployments with the same host names and default monitor
    sockets: each monitor listens on its own name (the deployment's table
    is in it), and each deployment's servers register with their own."""
    a = rr_deployment(name="one", monitor_sockets=False)
    b = rr_deployment(name="two", monitor_sockets=False)
    for s in (a, b):
        start_rr(s, servers=False)
        for i in range(s.n):
            rr_server(s, i)
    for s in (a, b):
        wait_for(lambda: all_alive(s), 10, what="%s: every replica registered" % s.shm)
        status = s.status()
        check(status is not None, "%s: the manager answers" % s.shm)
        for i in range(s.n):
            log = s.read_log("monitor-h%d" % i)
            check("cannot listen" not in log, "%s h%d: %s" % (s.shm, i, log[-400:]))
            check(("@flare-monitor%s-h%d" % (s.shm, i)) in log,
                  "%s h%d listens on its own name: %s" % (s.shm, i, log[-400:]))
    # killing a server of one deployment marks it dead there only
    a.kill("rr0")
    wait_for(lambda: not a.replica("A-1")["alive"], 5, what="A-1 dead in deployment one")
    check(b.replica("A-1")["alive"], "deployment two still has its A-1")


def test_stalled_machine_blames_nobody():
    """Every daemon unscheduled for three heartbeat timeouts at once (a
    loaded or paused machine): each finds its timers late when it runs
    again and gives its peers the time it lost, so no host, replica or
    manager is declared dead and the table never changes."""
    s = deployment()
    start_all(s)
    names = ["manager1", "monitor-alpha", "monitor-beta", "monitor-gamma", "agent"]
    for n in names:
        s.procs[n].send_signal(signal.SIGSTOP)
    time.sleep(3 * HB_TIMEOUT_MS / 1000)
    for n in names:
        s.procs[n].send_signal(signal.SIGCONT)
    end = time.monotonic() + 3 * HB_TIMEOUT_MS / 1000
    while time.monotonic() < end:
        t = s.table()
        check(t and all(r["alive"] for r in t["services"][0]["replicas"]),
              "a replica left the table after the stall: %s" % t)
        time.sleep(0.05)
    for n in names:
        log = s.read_log(n)
        check("silent past its timeout" not in log and "is dead" not in log,
              "%s blamed a peer for its own lateness:\n%s" % (n, log[-1500:]))
    check(all(h["alive"] for h in s.status()["hosts"]), "hosts %s" % s.status()["hosts"])


def one_replica(monitor_keys):
    """One host, one service, one replica P-1 nobody serves yet (s.port):
    for tests of how the monitor watches a replica no process registered"""
    mport, port, svc = free_ports(3)
    s = Stack("""
manager = { addresses = [ "127.0.0.1:%d" ]; report_interval_ms = 100; };
monitor = { probe_interval_ms = 100; %s };
agent = { shm = "@SHM@"; };
hosts = ( { name = "alpha"; utilization = "file:@DIR@/alpha.util";
            monitor_socket = "@DIR@/alpha.sock"; } );
services = ( { name = "P"; address = "127.0.0.1:%d";
    replicas = ( { name = "P-1"; host = "alpha"; address = "127.0.0.1:%d"; } ); } );
""" % (mport, monitor_keys, svc, port))
    s.port = port
    set_util(s, "alpha", 0.1)
    return s


def test_probe_fall_and_rise():
    """A probed replica whose probes time out a while (its accept queue
    full) stays alive for probe_fall - 1 failures, is dead (reason probe)
    after probe_fall, and alive again only after probe_rise good probes;
    a refused probe kills at once."""
    s = one_replica("probe_timeout_ms = 50; probe_fall = 3; probe_rise = 2;")
    port = s.port
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", port))
    lst.listen(0)
    s.manager()
    s.monitor("alpha")
    s.agent()
    wait_for(lambda: (s.replica("P-1") or {}).get("alive"), 10, what="P-1 alive")
    # fill the accept queue: the next SYNs are dropped, probes time out
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    log = lambda: s.read_log("monitor-alpha")
    wait_for(lambda: "(2 of 3 before it is dead)" in log(), 10, what="two failed probes")
    check((s.replica("P-1") or {}).get("alive"), "P-1 dead before probe_fall failures")
    wait_for(lambda: not (s.replica("P-1") or {}).get("alive", True), 5, what="P-1 dead")
    check(s.replica("P-1")["reason"] == "probe", "reason %s" % s.replica("P-1"))
    # drain the queue: probes connect again, and two in a row bring it back
    lst.setblocking(False)
    for c in fillers:
        c.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (s.replica("P-1") or {}).get("alive"):
        try:
            lst.accept()[0].close()
        except BlockingIOError:
            time.sleep(0.01)
    check("probe 1 of 2 to come back" in log(), "no rise counted:\n%s" % log()[-1500:])
    check(s.replica("P-1")["alive"], "P-1 not alive again")
    # nobody listening: the kernel refuses, which is proof at once
    lst.close()
    start = time.monotonic()
    wait_for(lambda: not s.replica("P-1")["alive"], 5, what="P-1 dead after its listener closed")
    check(time.monotonic() - start < 0.5, "a refused probe waited for probe_fall")
    check(s.replica("P-1")["reason"] == "refused", "reason %s" % s.replica("P-1"))


def test_unregistered_stopped_server_is_found():
    """A server not under flare-run (so never registered) is watched
    through its listening socket: the monitor finds the process holding
    it, and a SIGSTOP makes the replica dead (reason stopped) within a
    second, though the kernel still completes the probes' handshakes;
    SIGCONT brings it back."""
    s = one_replica("")
    port = s.port
    srv = track(subprocess.Popen([sys.executable, "-c", (
        "import socket,time\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', %d)); s.listen(64)\n"
        "time.sleep(60)\n") % port]))
    s.procs["plain-server"] = srv
    wait_for(lambda: accepts(port), 5, what="the plain server listening")
    s.manager()
    s.monitor("alpha")
    s.agent()

    def watched():
        st = s.status() or {}
        reps = [r for sv in st.get("services", []) for r in sv["replicas"]]
        return reps and reps[0]["watched"] == "found" and reps[0]["pid"] == srv.pid
    wait_for(watched, 10, what="P-1 watched through the process found behind it")
    # the manager's word is there; the agent's table follows
    wait_for(lambda: (s.replica("P-1") or {}).get("alive"), 10, what="P-1 alive in the table")
    srv.send_signal(signal.SIGSTOP)
    stop = time.monotonic()
    try:
        wait_for(lambda: not s.replica("P-1")["alive"], 1.0, what="the stopped P-1 dead within 1 s")
        took = time.monotonic() - stop
        check(s.replica("P-1")["reason"] == "stopped", "reason %r" % s.replica("P-1"))
        time.sleep(0.5)  # probes go on connecting: it stays dead
        check(not s.replica("P-1")["alive"], "a probe brought the stopped P-1 back")
    finally:
        srv.send_signal(signal.SIGCONT)
    print("     SIGSTOP of a server nobody registered -> dead: %.0f ms" % (took * 1000))
    wait_for(lambda: s.replica("P-1")["alive"], 2, what="P-1 alive again after SIGCONT")


if __name__ == "__main__":
    run([test_utilization_reorders_table, test_sigkill_registered_server_marks_dead,
         test_monitor_death_marks_host_dead, test_silent_monitor_marks_host_dead_after_timeout,
         test_manager_restart_resubscribes,
         test_garbage_frames_rejected, test_two_deployments_one_machine,
         test_replicated_managers, test_stalled_machine_blames_nobody,
         test_probe_fall_and_rise, test_unregistered_stopped_server_is_found])
