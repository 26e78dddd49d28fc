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
import time

from harness import BUILD, check, client_env, free_ports, library_stats, run, track, wait_for, accepts
from lineserver import line_deployment, logged, wait_logged

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
    # one run each under flare (the servers log as they read: give them a
    # moment), and never a third: the abandoned request was not replayed
    wait_for(lambda: len(runs_of(s, "REQ X")) >= 2, 5, what="REQ X at the replicas")
    time.sleep(0.3)
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


def test_io_uring_send_then_death_surfaces_at_once():
    """The same with the request sent through io_uring: the library healed
    this with nothing to replay and hid the hang-up (poll timed out)."""
    p = request_by_raw_call("uring", "REQ U")
    check(any("within 1 s: yes" in line for line in p.lines) and "unseen send: 6" in p.lines,
          "%s" % p.lines)


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


def test_connect_takes_o_nonblock_as_the_kernel_has_it():
    """connect() answers as the kernel would for every way a program sets
    or clears O_NONBLOCK before it (socket flags, fcntl, ioctl, a dup, a
    fork child, a raw system call no hook sees), and a non-blocking
    managed connect asks the kernel for no file flags: socket() and the
    hooks told the library."""
    s = line_deployment(delay=0.0)
    p = same_trace("nbflags", s)
    check(p.lines.count("socket(SOCK_NONBLOCK): connect Operation now in progress") == 1 and
          "cleared by a raw call: connect 0" in p.lines and
          "set by a raw call: connect Operation now in progress" in p.lines,
          "%s" % p.lines)
    check(len([x for x in p.lines if x.startswith("reply: REQ N")]) == 10, "%s" % p.lines)
    trace = os.path.join(s.dir, "nbplain.strace")
    senv, _ = client_env(s)
    r = subprocess.run(["strace", "-f", "-e", "trace=fcntl", "-o", trace, BUILD + "/flare-run",
                        "--shm", s.shm, "--", PROG, "nbplain", "127.0.0.1", str(s.svc)],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, **senv))
    check(r.returncode == 0 and "reply: REQ N0" in r.stdout, r.stdout + r.stderr[-800:])
    getfl = [x for x in open(trace) if "F_GETFL" in x]
    check(not getfl, "F_GETFL asked: %s" % getfl)


def test_connect_number_reused_before_its_failure():
    """A non-blocking connect to the service whose number the program
    closes and reuses with raw system calls for a connect to a port that
    refuses: the refusal is the program's, as without flare, whether it
    polls first or asks SO_ERROR at once. The library
    still takes the number for its connection, and moves a refused connect
    to the next replica on the program's numbers (dup3), so it first
    proves the number is still that connection's socket (its cookie); the
    old move put a replica's socket on the program's number and hid the
    refusal."""
    s = line_deployment(delay=0.0)
    p = same_trace("stale-connect", s)
    check(p.lines.count("the same number: yes") == 2 and
          "poll 1 POLLERR, SO_ERROR Connection refused" in p.lines and
          "SO_ERROR Connection refused" in p.lines, "%s" % p.lines)


def test_vfork_child_close_leaves_the_parent_alone():
    """A vfork child closing the managed number: the parent's own
    TCP_USER_TIMEOUT is not overwritten by the service's."""
    s = line_deployment(service_extra="user_timeout_ms = 500;")
    p = same_trace("vfork", s)
    check("TCP_USER_TIMEOUT: 12345" in p.lines, "%s" % p.lines)


# A module linked against a private OpenSSL (another soname, loaded with
# RTLD_LOCAL: what Python wheels vendor as libssl-<hash>.so.3): a TLS
# handshake between two of its SSL objects over a BIO pair, then a message
# each way. Every SSL_* call it makes meets the library's hooks first.
PRIVATE_SSL_MODULE = r'''
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
int run(const char *cert, const char *key)
{
	SSL_CTX *sc = SSL_CTX_new(TLS_server_method()), *cc = SSL_CTX_new(TLS_client_method());
	if (SSL_CTX_use_certificate_file(sc, cert, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM) != 1)
		return printf("certificate: refused\n"), 1;
	SSL *s = SSL_new(sc), *c = SSL_new(cc);
	BIO *cb, *sb;
	BIO_new_bio_pair(&cb, 0, &sb, 0);
	SSL_set_bio(c, cb, cb);
	SSL_set_bio(s, sb, sb);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	printf("alpn: %d\n", SSL_set_alpn_protos(c, (const unsigned char *)"\x08http/1.1", 9));
	int rc = 0, rs = 0;
	for (int i = 0; i < 100 && (rc != 1 || rs != 1); i++) {
		if (rc != 1)
			rc = SSL_do_handshake(c);
		if (rs != 1)
			rs = SSL_do_handshake(s);
	}
	printf("handshake: %d %d\n", rc, rs);
	char buf[16] = "";
	printf("write: %d\n", SSL_write(c, "ping", 4));
	printf("read: %d %.4s\n", SSL_read(s, buf, sizeof(buf)), buf);
	size_t n = 0;
	printf("write_ex: %d\n", SSL_write_ex(s, "pong", 4, &n));
	printf("read_ex: %d %.4s\n", SSL_read_ex(c, buf, sizeof(buf), &n), buf);
	printf("pending: %d\n", SSL_pending(c));
	SSL_shutdown(c);
	SSL_free(c);
	SSL_free(s);
	return 0;
}
'''

PRIVATE_SSL_MAIN = r'''
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv)
{
	void *m = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!m)
		return printf("dlopen: %s\n", dlerror()), 1;
	int (*run)(const char *, const char *) = (int (*)(const char *, const char *))dlsym(m, "run");
	return run(argv[2], argv[3]);
}
'''


def test_private_openssl_is_left_alone():
    """A module that calls a private OpenSSL (loaded RTLD_LOCAL under
    another soname) gets that OpenSSL's answers through the library's
    SSL_* definitions: with the library enabled, disabled, and with no
    table; such sessions are simply not healed."""
    import shutil
    import tlscerts
    from harness import rr_deployment
    s = rr_deployment()
    d = s.dir
    libssl = subprocess.run(["sh", "-c", "ldconfig -p | awk '/libssl.so.3 .*x86-64|libssl.so.3 /"
                             "{print $NF; exit}'"], capture_output=True, text=True).stdout.strip()
    check(libssl and os.path.exists(libssl), "the system libssl.so.3: %r" % libssl)
    private = os.path.join(d, "libssl-flaretest.so.3")
    shutil.copy(libssl, private)
    subprocess.run(["patchelf", "--set-soname", "libssl-flaretest.so.3", private], check=True)
    os.symlink(private, os.path.join(d, "libssl-flaretest.so"))
    for name, code in (("mod.c", PRIVATE_SSL_MODULE), ("main.c", PRIVATE_SSL_MAIN)):
        with open(os.path.join(d, name), "w") as f:
            f.write(code)
    mod = os.path.join(d, "mod.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", mod, os.path.join(d, "mod.c"), "-L" + d,
                    "-lssl-flaretest", "-lcrypto", "-Wl,-rpath," + d], check=True)
    main = os.path.join(d, "main")
    subprocess.run(["cc", "-o", main, os.path.join(d, "main.c"), "-ldl"], check=True)
    tlscerts.make_ca(d)
    cert, key = tlscerts.make_cert(d, "srv", "localhost")
    ldd = subprocess.run(["ldd", mod], capture_output=True, text=True).stdout
    check("libssl-flaretest.so.3" in ldd and "libssl.so.3" not in ldd, ldd)
    want = subprocess.run([main, mod, cert, key], capture_output=True, text=True)
    check(want.returncode == 0 and "read: 4 ping" in want.stdout and
          "read_ex: 1 pong" in want.stdout, "without flare: %s %s" % (want.stdout, want.stderr))
    for extra in ({}, {"FLARE_DISABLE": "1"}, {"FLARE_SHM": "/flare-no-such-table"}):
        senv, _ = client_env(s)
        env = dict(os.environ, FLARE_LOG="info", **senv, **extra)
        got = subprocess.run([BUILD + "/flare-run", "--shm", extra.get("FLARE_SHM", s.shm), "--",
                              main, mod, cert, key], capture_output=True, text=True, env=env)
        check(got.returncode == 0 and got.stdout == want.stdout, "%s:\n without: %s\n under: %s%s" % (
            extra, want.stdout, got.stdout, got.stderr[-800:]))


if __name__ == "__main__":
    run([test_closefrom_then_accept_on_the_number, test_sendto_with_address_is_a_write,
         test_zerocopy_notification_is_no_failure, test_raw_send_then_death_surfaces_at_once,
         test_io_uring_send_then_death_surfaces_at_once,
         test_raw_recv_then_death_replays_nothing, test_arguments_the_kernel_rejects,
         test_connect_takes_o_nonblock_as_the_kernel_has_it, test_connect_number_reused_before_its_failure,
         test_vfork_child_close_leaves_the_parent_alone, test_private_openssl_is_left_alone])
