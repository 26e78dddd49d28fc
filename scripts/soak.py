#!/usr/bin/env python3
"""make soak: SIGKILLs of a serving replica at random points, under load from
several clients, every reply checked.

Three rr-server replicas run under flare-run; blocking rr-clients (two
threads each) and edge-triggered epoll clients (tests/bench/nbclient) run
in rounds of ROUND seconds. Within a round the loop picks a replica that
clients are connected to (from /proc/net/tcp), SIGKILLs it after a random
0-20 ms, restarts it at once and waits until it accepts again, so two
replicas at least are always up. Every client checks that each reply is
its own request's (ids and checksums): a failed, duplicated, lost or mixed
reply fails the client and the soak.

usage: soak.py BUILD [--kills N] [--round SECONDS] [--blocking N] [--epoll N]
"""
import argparse
import os
import random
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy  # noqa: E402
from deploy import (client_env, library_stats, rr_deployment, rr_server,  # noqa: E402
                    start_rr)


def established_ports():
    """Local ports of ESTABLISHED TCP sockets on 127.0.0.1 (server sides)."""
    ports = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] != "01":
                continue
            port = int(parts[1].split(":")[1], 16)
            ports[port] = ports.get(port, 0) + 1
    return ports


def start_clients(s, build, args):
    env_add, stats = client_env(s)
    env = dict(os.environ, FLARE_LOG="warn", **env_add)
    procs = []
    for i in range(args.blocking):
        procs.append(("blocking", subprocess.Popen(
            [build + "/flare-run", "--shm", s.shm, "--", build + "/rr-client",
             "-c", "127.0.0.1:%d" % s.svc, "-n", "100000000", "--threads", "2",
             "--duration", str(args.round), "--first-id", str(1 + i * 10 ** 9)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)))
    for _ in range(args.epoll):
        procs.append(("epoll", subprocess.Popen(
            [build + "/flare-run", "--shm", s.shm, "--", build + "/bench/nbclient", "epoll",
             "127.0.0.1", str(s.svc), "1000000000", str(args.round)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)))
    return procs, stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--kills", type=int, default=10000)
    ap.add_argument("--round", type=float, default=60.0)
    ap.add_argument("--blocking", type=int, default=3)
    ap.add_argument("--epoll", type=int, default=2)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()
    build = deploy.configure(args.build)
    deploy.install_cleanup()
    rng = random.Random(args.seed)
    s = rr_deployment(n=3, name="soak")
    start_rr(s)
    kills = requests = failed = rounds = 0
    lib = {}
    t0 = time.monotonic()
    print("soak: %d kills wanted, rounds of %.0f s, %d blocking + %d epoll clients, seed %d"
          % (args.kills, args.round, args.blocking, args.epoll, args.seed), flush=True)
    try:
        while kills < args.kills:
            rounds += 1
            procs, stats = start_clients(s, build, args)
            end = time.monotonic() + args.round - 1.5
            round_kills = 0
            while time.monotonic() < end and kills < args.kills:
                busy = established_ports()
                serving = [i for i, p in enumerate(s.ports) if busy.get(p)]
                if not serving:
                    time.sleep(0.005)
                    continue
                victim = rng.choice(serving)
                time.sleep(rng.uniform(0, 0.02))
                s.kill("rr%d" % victim)
                kills += 1
                round_kills += 1
                rr_server(s, victim)
                limit = time.monotonic() + 5
                while not deploy.accepts(s.ports[victim], timeout=0.2):
                    if time.monotonic() > limit:
                        raise RuntimeError("replica %d did not come back" % victim)
                    time.sleep(0.002)
            for kind, p in procs:
                out, err = p.communicate(timeout=args.round + 60)
                m = re.search(r"requests=(\d+)", out)
                n = int(m.group(1)) if m else 0
                e = re.search(r"errors=(\d+)", out)
                requests += n
                if p.returncode != 0 or (e and int(e.group(1))) or not m:
                    failed += 1
                    sys.stderr.write("soak: %s client failed (rc %d): %s %s\n"
                                     % (kind, p.returncode, out.strip(), err.strip()[-800:]))
            for k, v in library_stats(stats).items():
                lib[k] = lib.get(k, 0) + v
            print("round %d: %d kills (%d in all), %d requests in all, %d client failures, "
                  "%.0f s" % (rounds, round_kills, kills, requests, failed,
                              time.monotonic() - t0), flush=True)
    finally:
        deploy.cleanup()
    took = time.monotonic() - t0
    print("soak: %d SIGKILLs of a serving replica, %d requests checked, %d client failures, "
          "in %.0f s (%d rounds)" % (kills, requests, failed, took, rounds))
    print("soak: library: %s" % " ".join("%s=%d" % kv for kv in sorted(lib.items())
                                         if kv[0] != "pid"))
    print("%d passed, %d failed" % (1 if failed == 0 else 0, 1 if failed else 0))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
