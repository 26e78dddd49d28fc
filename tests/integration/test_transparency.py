"""The differential transparency fuzzer: random client programs
(tests/progs/difftrace, one per seed) run twice, straight to an "anon" line
server without the library and under flare-run against a replicated
service of the same servers, and their traces compared.

- A seed without a kill: the two traces are identical, call for call.
- A seed with a kill (every third): the replica serving the marked request
  is SIGKILLed before its reply (the server without the library likewise).
  The run under the library either goes on correctly (every reply answers
  its own request: the program checks; the trace ends in DONE) or its
  trace is the run without the library's, the failure seen the same way.
  Either way no request was answered twice (the servers log each answer).

    test_transparency.py BUILD                  the seed list (make check)
    test_transparency.py BUILD --seconds N      the list, then random seeds for N s
    test_transparency.py BUILD --seeds 1,2,3    those seeds

A seed that fails is printed with both traces: add it to SEEDS once
understood and fixed. Prints "N passed, N failed" (one per program) and how
many programs and calls ran."""
import collections
import os
import random
import subprocess
import sys
import time

from harness import (BUILD, accepts, all_alive, check, client_env, free_ports, track, wait_for,
                     deploy)
from lineserver import line_deployment, logged

PROG = os.path.join(BUILD, "tests", "progs", "difftrace")

# every finding of a run becomes a seed here; the rest cover each choice
SEEDS = list(range(1, 41)) + [704427363]


def kill_at(seed):
    """Every third seed kills the replica serving its k-th request (k),
    every fifth of the others has it reset by its server (-k)."""
    k = 1 + seed // 3 % 4
    return k if seed % 3 == 0 else -k if seed % 5 == 0 else 0


class Plain:
    """The anon line server without the library, restarted after a kill."""

    def __init__(self, s):
        self.s = s
        self.port = free_ports(1)[0]
        self.log = os.path.join(s.dir, "plain.log")
        self.start()

    def start(self):
        self.p = track(subprocess.Popen(
            [sys.executable, self.s.script, str(self.port), "P-1", self.log, "anon"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(lambda: accepts(self.port), 10, what="the plain line server")

    def killer(self, text):
        def kill():
            wait_for(lambda: os.path.exists(self.log) and text in open(self.log).read(), 10,
                     what="%r at the plain server" % text)
            self.p.kill()
            self.p.wait()
            kill.done = True
        kill.done = False
        return kill


def replica_killer(s, text):
    """Kills the replica that logged text; kill.victim is its index."""
    def kill():
        found = []

        def seen():
            for rep, _, line in logged(s):
                if text in line and not line.startswith("="):
                    found.append(int(rep.split("-")[1]) - 1)
                    return True
            return False
        wait_for(seen, 10, what="%r at a replica" % text)
        kill.victim = found[0]
        s.procs.pop("rr%d" % kill.victim).kill()
    kill.victim = None
    return kill


def trace(s, seed, port, killat, flare, on_kill):
    cmd = [PROG, str(seed), "127.0.0.1", str(port), str(killat)]
    env = dict(os.environ)
    if flare:
        senv, _ = client_env(s)
        env.update(senv, FLARE_LOG=os.environ.get("FLARE_LOG", "warn"))
        cmd = [BUILD + "/flare-run", "--shm", s.shm, "--"] + cmd
    # not tracked: waited for (or killed) here, its pipes closed, so that
    # hours of seeds hold no descriptor and no process object each
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    deadline = time.monotonic() + 60
    for line in p.stdout:
        if line.strip() == "KILL":
            on_kill()
            try:
                p.stdin.write("go\n")
                p.stdin.flush()
            except BrokenPipeError:
                pass  # it ended meanwhile: its trace says how
            continue
        lines.append(line.rstrip("\n"))
        if time.monotonic() > deadline:
            p.kill()
            break
    try:
        p.wait(timeout=max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        lines.append("TIMEOUT")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = p.stderr.read()
    for f in (p.stdin, p.stdout, p.stderr):
        try:
            f.close()
        except OSError:
            pass
    return p.returncode, lines, err


def answered_twice(s, seed):
    """Requests of this seed that the deployment's replicas answered more
    than once."""
    n = collections.Counter(line[2:] for _, _, line in logged(s)
                            if line.startswith("= REQ %d-" % seed))
    return [r for r, k in n.items() if k > 1]


def one(s, plain, seed):
    """None when the seed passes, else what went wrong."""
    k = kill_at(seed)
    text = "REQ %d-%d SLOW" % (seed, k)  # the kill's mark (a reset needs no help)
    pk = plain.killer(text)
    rc0, without, err0 = trace(s, seed, plain.port, k, False, pk)
    if pk.done:
        plain.start()
    rk = replica_killer(s, text)
    rc1, under, err1 = trace(s, seed, s.svc, k, True, rk)
    if rk.victim is not None:
        # dead in the table first, then back: the next seed meets a whole service
        name = "A-%d" % (rk.victim + 1)
        wait_for(lambda: not s.replica(name)["alive"], 15, what="%s dead in the table" % name)
        s.line_replica(rk.victim)
        wait_for(lambda: all_alive(s), 15, what="the killed replica alive again")
        one.kills += 1
    one.calls += len(under) + len(without)
    one.resets += k < 0
    twice = answered_twice(s, seed)
    if twice:
        return "answered twice: %s" % twice, without, under, err1
    if rc0 not in (0, 3) or (without and without[-1].startswith("WRONG")):
        return "the run without the library failed itself (rc %d)" % rc0, without, under, err0
    if not k:
        if under != without:
            return "traces differ", without, under, err1
        if rc1 != rc0:  # a sanitizer's report, a crash at exit
            return "exit status %d, without the library %d" % (rc1, rc0), without, under, err1
        return None
    # a failure: correct to the end, or as without the library
    if rc1 == 0 and under and under[-1].startswith("DONE"):
        one.healed += under != without
        return None
    if under == without:
        one.surfaced += 1
        return None
    return "neither correct nor as without the library (rc %d)" % rc1, without, under, err1


one.calls = 0
one.kills = one.resets = one.healed = one.surfaced = 0


def diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def main():
    args = sys.argv[2:]
    seeds = list(SEEDS)
    seconds = 0
    if "--seeds" in args:
        seeds = [int(x) for x in args[args.index("--seeds") + 1].split(",")]
    if "--seconds" in args:
        seconds = float(args[args.index("--seconds") + 1])
    s = line_deployment(opts=("anon",))
    plain = Plain(s)
    passed = failed = programs = 0
    findings = []
    start = time.monotonic()
    rnd = random.Random()

    def run_seed(seed):
        nonlocal passed, failed, programs
        programs += 1
        try:
            r = one(s, plain, seed)
        except Exception as e:  # noqa: BLE001 - a harness failure is a failed seed
            r = ("harness: %s" % e, [], [], "")
        if r is None:
            passed += 1
            return
        failed += 1
        why, without, under, err = r
        i = diff(without, under)
        findings.append(seed)
        print("FAIL seed %d (kill at %d): %s; first difference at call %d\n"
              "  without: %s ... %s\n  under:   %s ... %s\n  %s" % (
                  seed, kill_at(seed), why, i, without[max(0, i - 2):i + 3], without[-2:],
                  under[max(0, i - 2):i + 3], under[-2:],
                  err.strip()[-1500:].replace("\n", "\n  ")),
              flush=True)

    try:
        for seed in seeds:
            run_seed(seed)
        while seconds and time.monotonic() - start < seconds:
            run_seed(rnd.randrange(1000, 1 << 31))
    finally:
        deploy.cleanup()
    took = time.monotonic() - start
    print("transparency: %d programs (%d with a replica killed, %d with a reset), %d calls "
          "traced in %.0f s; failures healed %d, surfaced as without flare %d; findings: %s" % (
              programs, one.kills, one.resets, one.calls, took, one.healed, one.surfaced,
              findings or "none"))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    check(os.path.exists(PROG), "build %s first" % PROG)
    main()
