"""Operations with real clients: draining a replica (flarectl drain and
undrain, sent to the manager) and the health exit code for scripts."""
import os
import subprocess
import sys
import time

from harness import BUILD, check, run, rr_deployment, start_rr, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "scripts"))
import tao  # noqa: E402

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


if __name__ == "__main__":
    run([test_drain_and_health, test_drain_moves_on_demand_connections])
