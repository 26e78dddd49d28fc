"""Chaos: the control plane and the clients with both cores busy, and with
its daemons and replicas killed, restarted and stopped while real clients
run. CHAOS_SECONDS sets how long each part runs (make check: 15 s; make
chaos: 60 s); CHAOS_SEED the order of the faults."""
import os
import random
import signal
import subprocess
import time

from harness import (all_alive, all_registered, check, library_stats, rr_client, rr_deployment,
                     rr_server, run, connected_replicas, start_rr, track, wait_for)

SECONDS = float(os.environ.get("CHAOS_SECONDS", "15"))
SEED = int(os.environ.get("CHAOS_SEED", "1"))


def burners():
    """One busy process per core, and one more: the machine is full"""
    n = (os.cpu_count() or 2) + 1
    return [track(subprocess.Popen(["sh", "-c", "while :; do :; done"])) for _ in range(n)]


def stop_all(procs):
    for p in procs:
        p.kill()
        p.wait()


def summary(out):
    f = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
    return int(f.get("requests", -1)), int(f.get("errors", -1))


def test_full_load_blames_nobody():
    """Both cores (and one more burner) busy for CHAOS_SECONDS with every
    replica alive: no replica or host is declared dead by anyone, no
    request is healed or replayed (so none runs twice), and every one of
    the client's replies is right."""
    s = rr_deployment()
    start_rr(s)
    wait_for(lambda: all_registered(s), 10, what="every server registered")
    daemons = [n for n in s.procs if n.startswith(("manager", "monitor", "agent"))]
    start_of = {n: len(s.read_log(n)) for n in daemons}
    burn = burners()
    deaths = 0
    try:
        p = rr_client(s, ["-n", "100000000", "-r", "200", "--duration", str(SECONDS)],
                      wait=False, timeout=SECONDS + 60)
        end = time.monotonic() + SECONDS
        while time.monotonic() < end and p.poll() is None:
            t = s.table()
            if t:
                deaths += sum(1 for sv in t["services"] for r in sv["replicas"]
                              if not r["alive"])
            time.sleep(0.1)
        out, err = p.communicate(timeout=SECONDS + 60)
    finally:
        stop_all(burn)
    n, errors = summary(out)
    st = library_stats(p.stats)
    print("     %.0f s with %d burners: %d requests, %d errors; failovers %d, replays %d" % (
        SECONDS, len(burn), n, errors, st["failovers"], st["replays"]))
    check(p.returncode == 0 and n > 0 and errors == 0, "client: %s %s" % (out, err[-600:]))
    check(deaths == 0, "a live replica was seen dead in the table %d time(s)" % deaths)
    check(st["failovers"] == 0 and st["replays"] == 0 and st["table_dead_wakeups"] == 0,
          "the library moved a live connection: %r" % st)
    for name in daemons:
        log = s.read_log(name)[start_of[name]:]
        for word in ("is dead", "dead (", "silent past its timeout", "wake: ended"):
            check(word not in log, "%s under load: %r\n%s" % (name, word, log[-1500:]))


def pick_replica(s, rnd):
    """A replica the client is connected to half the time, else any"""
    serving = connected_replicas(s)
    if serving and rnd.random() < 0.5:
        return rnd.choice(serving)
    return rnd.randrange(s.n)


def test_daemons_and_replicas_chaos():
    """For CHAOS_SECONDS, a fault every 0.3-0.8 s, in a seeded order: a
    monitor, the agent or the manager SIGKILLed and restarted, or stopped
    for half a second; a serving replica SIGKILLed and restarted, or
    stopped for a second. A blocking client and an epoll client run
    throughout; every reply they get is right, and they end well."""
    s = rr_deployment()
    start_rr(s)
    wait_for(lambda: all_registered(s), 10, what="every server registered")
    rnd = random.Random(SEED)
    blocking = rr_client(s, ["-n", "100000000", "-r", "100", "--duration", str(SECONDS)],
                         wait=False, timeout=SECONDS + 60)
    faults = []
    end = time.monotonic() + SECONDS
    while time.monotonic() < end:
        time.sleep(rnd.uniform(0.3, 0.8))
        kind = rnd.choice(["monitor", "agent", "manager", "stop-daemon", "replica",
                           "stop-replica"])
        if kind == "monitor":
            h = rnd.randrange(s.n)
            s.kill("monitor-h%d" % h)
            s.monitor("h%d" % h)
        elif kind == "agent":
            s.kill("agent")
            s.agent()
        elif kind == "manager":
            s.kill("manager1")
            s.manager(1)
        elif kind == "stop-daemon":
            name = rnd.choice(["manager1", "agent", "monitor-h%d" % rnd.randrange(s.n)])
            s.procs[name].send_signal(signal.SIGSTOP)
            time.sleep(0.5)
            s.procs[name].send_signal(signal.SIGCONT)
        elif kind == "replica":
            i = pick_replica(s, rnd)
            s.kill("rr%d" % i)
            rr_server(s, i)
        else:
            i = pick_replica(s, rnd)
            s.procs["rr%d" % i].send_signal(signal.SIGSTOP)
            time.sleep(1.0)
            s.procs["rr%d" % i].send_signal(signal.SIGCONT)
        faults.append(kind)
        # the deployment must still have a live replica for the client
        wait_for(lambda: any(r["alive"] for r in (s.table() or {"services": [{"replicas": []}]})
                             ["services"][0]["replicas"]), 10, what="a live replica")
    out, err = blocking.communicate(timeout=SECONDS + 60)
    n, errors = summary(out)
    st = library_stats(blocking.stats)
    print("     %d faults (%s): %d requests, %d errors; failovers %d, replays %d" % (
        len(faults), ", ".join("%s %d" % (k, faults.count(k)) for k in sorted(set(faults))),
        n, errors, st["failovers"], st["replays"]))
    check(blocking.returncode == 0 and n > 0 and errors == 0,
          "blocking client: rc %d %s %s" % (blocking.returncode, out, err[-800:]))
    wait_for(lambda: all_alive(s), 10, what="every replica alive after the chaos")


if __name__ == "__main__":
    run([test_full_load_blames_nobody, test_daemons_and_replicas_chaos])
