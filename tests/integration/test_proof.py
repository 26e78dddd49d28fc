"""The library acts only on proof (docs/DESIGN.md, "What the library never
does"): each test is one path the fail-closed lists did not name, run by
tests/progs/proofcase twice: straight to a line server without the
library, and under flare-run against the service. With no failure the
two traces are identical; where a replica dies, the run under the
library either answers every request with its own reply or sees what the
run without it saw, and no replica runs a request twice."""
import os
import subprocess
import sys

from harness import BUILD, check, client_env, free_ports, library_stats, run, track, wait_for, accepts
from lineserver import LINE_SERVER, line_deployment, logged, wait_logged

PROG = os.path.join(BUILD, "tests", "progs", "proofcase")


def plain_server(s, delay=0.0):
    """A line server of its own (no flare, no control plane), for the run
    without the library: its port, and its process as s.plain."""
    port = free_ports(1)[0]
    s.plain_log = os.path.join(s.dir, "plain.log")
    s.plain = track(subprocess.Popen([sys.executable, s.script, str(port), "P-1", s.plain_log],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=dict(os.environ, DELAY=str(delay))))
    wait_for(lambda: accepts(port), 10, what="the plain line server")
    return port


def runs_of(s, text):
    """The deployment's replicas' runs of request text (not the plain server's)."""
    return [e for e in logged(s) if e[2] == text and e[0] != "P-1"]


def run_case(s, case, port, flare, on_ready=None):
    """proofcase's trace; at READY, on_ready() runs (it kills a replica)."""
    cmd = [PROG, case, "127.0.0.1", str(port)]
    env = dict(os.environ)
    stats = None
    if flare:
        senv, stats = client_env(s)
        env.update(senv, FLARE_LOG=os.environ.get("FLARE_LOG", "info"))
        cmd = [BUILD + "/flare-run", "--shm", s.shm, "--"] + cmd
    p = track(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env))
    lines = []
    for line in p.stdout:
        if line.strip() == "READY":
            if on_ready:
                on_ready()
            p.stdin.write("go\n")
            p.stdin.flush()
            continue
        lines.append(line.rstrip("\n"))
    p.wait(timeout=30)
    err = p.stderr.read()
    p.lines, p.err, p.stats = lines, err, stats
    return p


def kill_serving(s, text):
    """SIGKILLs the replica that logged a request containing text."""
    def kill():
        i = wait_logged(s, text)
        s.procs.pop("rr%d" % i).kill()
        kill.victim = i
    return kill


def same_trace(case, s, delay=0.0):
    port = plain_server(s, delay)
    without = run_case(s, case, port, flare=False)
    under = run_case(s, case, s.svc, flare=True)
    check(without.returncode == 0 and under.returncode == 0,
          "rc %d/%d: %s" % (without.returncode, under.returncode, under.err[-800:]))
    check(under.lines == without.lines, "%s:\n without: %s\n under:   %s\n%s" % (
        case, without.lines, under.lines, under.err[-1200:]))
    return under


def test_closefrom_then_accept_on_the_number():
    """glibc's closefrom() closes a managed socket where no hook sees it;
    the program's listener accepts on the same number and its peer
    closes: an EOF, and getpeername names the real peer."""
    s = line_deployment(delay=0.0)
    for case in ("stale-accept", "stale-raw"):
        p = same_trace(case, s)
        check("accepted on the same number: yes" in p.lines, "%s: %s" % (case, p.lines))
        check("read: 0" in p.lines, "%s: %s" % (case, p.lines))
    # one run each under flare: the abandoned request was not replayed
    check(len(runs_of(s, "REQ X")) == 2, "REQ X runs: %s" % runs_of(s, "REQ X"))


def test_sendto_with_address_is_a_write():
    """sendto() with an address and sendmsg() with msg_name on a connected
    socket send bytes like send(): all three requests are replayed after
    the replica dies, and each reply answers its own request."""
    s = line_deployment(delay=1.5)
    p = run_case(s, "sendto", s.svc, flare=True, on_ready=kill_serving(s, "REQ A"))
    check(p.returncode == 0, "rc %d: %s" % (p.returncode, p.err[-800:]))
    check(p.lines[:2] == ["sendto: 6", "sendmsg with msg_name: 6"], "%s" % p.lines)
    check(p.lines[2:] == ["reply: REQ A 1", "reply: REQ B 2", "reply: REQ C 3"],
          "replies: %s\n%s" % (p.lines, p.err[-1200:]))


def test_zerocopy_notification_is_no_failure():
    """MSG_ZEROCOPY: the completion raises POLLERR with SO_ERROR 0; the
    connection is healthy and the request runs once."""
    s = line_deployment(delay=0.5)
    p = same_trace("zerocopy", s, delay=0.5)
    check(any(line.startswith("reply: REQ Z 1") for line in p.lines), "%s" % p.lines)
    runs = runs_of(s, "REQ Z")
    check(len(runs) == 1, "REQ Z ran %d times: %s" % (len(runs), runs))
    check(library_stats(p.stats)["failovers"] == 0, "healed a healthy connection")


def request_by_raw_call(case, text):
    s = line_deployment(delay=1.5)
    port = plain_server(s, delay=1.5)

    def kill_plain():
        wait_for(lambda: os.path.exists(s.plain_log) and text in open(s.plain_log).read(), 10,
                 what="the plain server got the request")
        s.plain.kill()
    without = run_case(s, case, port, flare=False, on_ready=kill_plain)
    under = run_case(s, case, s.svc, flare=True, on_ready=kill_serving(s, text))
    check(under.returncode == 0 and under.lines == without.lines,
          "%s:\n without: %s\n under:   %s\n%s" % (case, without.lines, under.lines,
                                                  under.err[-1200:]))
    runs = runs_of(s, text)
    check(len(runs) == 1, "%s ran %d times: %s" % (text, len(runs), runs))
    return under


def test_raw_send_then_death_surfaces_at_once():
    """A request sent by a raw system call (as io_uring's): the kernel
    counts bytes no hook saw, so the death is not healed with nothing to
    replay; poll() sees the hang-up at once, as without flare."""
    p = request_by_raw_call("rawsend", "REQ R")
    check(any("within 1 s: yes" in line for line in p.lines), "%s" % p.lines)


def test_raw_recv_then_death_replays_nothing():
    """The reply taken by a raw system call: the request is answered, and
    the death after it replays nothing."""
    p = request_by_raw_call("rawrecv", "REQ Q")
    check("reply: EOF" in p.lines, "%s" % p.lines)


def test_arguments_the_kernel_rejects():
    """readv(-1), 1,025 iovecs, null arrays: the kernel's own errors, and
    the connection still works."""
    s = line_deployment()
    p = same_trace("badargs", s)
    check("readv count -1: Invalid argument" in p.lines and
          "writev 1025 iovecs: Invalid argument" in p.lines, "%s" % p.lines)


def test_vfork_child_close_leaves_the_parent_alone():
    """A vfork child closing the managed number: the parent's own
    TCP_USER_TIMEOUT is not overwritten by the service's."""
    s = line_deployment(service_extra="user_timeout_ms = 500;")
    p = same_trace("vfork", s)
    check("TCP_USER_TIMEOUT: 12345" in p.lines, "%s" % p.lines)


if __name__ == "__main__":
    run([test_closefrom_then_accept_on_the_number, test_sendto_with_address_is_a_write,
         test_zerocopy_notification_is_no_failure, test_raw_send_then_death_surfaces_at_once,
         test_raw_recv_then_death_replays_nothing, test_arguments_the_kernel_rejects,
         test_vfork_child_close_leaves_the_parent_alone])
