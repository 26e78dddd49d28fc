"""The authenticated control plane (auth_key_file): the deployment works
and fails over as before, and no one without the key changes anything:
not a stranger speaking the plain protocol, not a real daemon with another
key, not a recording of a real session played back."""
import os
import re
import socket
import struct
import subprocess
import threading
import time

from harness import (BUILD, check, free_ports, frame, hello, rr_client, rr_deployment, run,
                     serving_replica, start_rr, wait_for, write_key)


def parse(out):
    m = re.search(r"requests=(\d+) errors=(\d+)", out)
    check(m, "no summary in: %r" % out)
    return int(m.group(1)), int(m.group(2))


def host_util(s, name):
    st = s.status() or {}
    return {h["name"]: h["util"] for h in st.get("hosts", [])}.get(name)


def rejected(s):
    st = s.status()
    return st["manager"]["auth_rejected"] if st else -1


def conf_variant(s, name, subs):
    with open(s.conf) as f:
        text = f.read()
    for a, b in subs:
        check(a in text, "config has %r" % a)
        text = text.replace(a, b)
    path = os.path.join(s.dir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def record_session(listen_port, target_port, got):
    """A one-connection TCP relay that keeps what the client sent."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port))
    srv.listen(1)
    srv.settimeout(10)

    def relay():
        c, _ = srv.accept()
        m = socket.create_connection(("127.0.0.1", target_port), timeout=10)
        c.settimeout(5)
        m.settimeout(5)
        sent = bytearray()

        def down():
            try:
                while True:
                    d = m.recv(65536)
                    if not d:
                        break
                    c.sendall(d)
            except OSError:
                pass
            c.close()
        t = threading.Thread(target=down)
        t.start()
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                sent += d
                m.sendall(d)
        except OSError:
            pass
        m.close()
        t.join(10)
        srv.close()
        got.append(bytes(sent))
    th = threading.Thread(target=relay)
    th.start()
    return th


def say_to_manager(s, data):
    """Sends data on a new connection to the manager; what came back
    before it closed (or 5 s passed)."""
    c = socket.create_connection(("127.0.0.1", s.mports[0]), timeout=5)
    c.sendall(data)
    answer = b""
    try:
        while True:
            d = c.recv(4096)
            if not d:
                break
            answer += d
    except OSError:
        pass
    c.close()
    return answer


def frames_of(data):
    out, off = [], 0
    while off + 8 <= len(data):
        _, _, t, n = struct.unpack(">HBBI", data[off:off + 8])
        out.append((t, n))
        off += 8 + n
    return out


def test_authenticated_control_plane():
    s = rr_deployment(auth=True)
    start_rr(s)
    st = s.status()
    check(st and st["manager"]["auth"] and st["manager"]["auth_rejected"] == 0,
          "authenticated and nothing rejected yet: %r" % (st or {}).get("manager"))
    wait_for(lambda: host_util(s, "h0") is not None and abs(host_util(s, "h0") - 0.1) < 0.01,
             10, what="h0 reported at 0.1")
    # failover works as without a key
    p = rr_client(s, ["-n", "1000", "-r", "2000"], wait=False)
    time.sleep(0.3)
    s.kill("rr%d" % serving_replica(s))
    out, err = p.communicate(timeout=60)
    n, errors = parse(out)
    check(p.returncode == 0 and n == 1000 and errors == 0, "failover: %r %s" % (out, err[-400:]))

    # 1. a stranger speaking the plain protocol as h0's monitor
    before = rejected(s)
    answer = say_to_manager(s, hello(1, os.getpid(), b"h0") + frame(2, struct.pack(">QQ", 1, 1)))
    check([t for t, _ in frames_of(answer)] == [11], "only the manager's nonce came back, "
          "then the close: %r" % frames_of(answer))
    wait_for(lambda: rejected(s) >= before + 1, 5, what="the stranger counted")

    # 2. a real monitor for h0 holding another key, claiming h0 is busy
    write_key(os.path.join(s.dir, "wrong.key"))
    with open(os.path.join(s.dir, "rogue.util"), "w") as f:
        f.write("0.99\n")
    rogue = conf_variant(s, "rogue.conf", [('"auth.key"', '"wrong.key"'),
                                           ("h0.util", "rogue.util"), ("h0.sock", "rogue.sock")])
    s.start("rogue", [BUILD + "/flare-monitor", "-c", rogue, "--host", "h0", "-f"])
    wait_for(lambda: rejected(s) >= before + 3, 10, what="the rogue monitor rejected (twice)")
    check(abs(host_util(s, "h0") - 0.1) < 0.01, "h0's utilization unchanged: %r" %
          host_util(s, "h0"))

    # 3. a recorded flarectl session, played back on a new connection
    relay_port = free_ports(1)[0]
    via = conf_variant(s, "via.conf", [('"127.0.0.1:%d"' % s.mports[0],
                                        '"127.0.0.1:%d"' % relay_port)])
    got = []
    th = record_session(relay_port, s.mports[0], got)
    r = subprocess.run([BUILD + "/flarectl", "-c", via, "status"], capture_output=True,
                       text=True, timeout=10)
    th.join(10)
    check(r.returncode == 0 and "authentication on" in r.stdout, "flarectl through the relay: "
          "%r %r" % (r.stdout[:200], r.stderr))
    check(got and [t for t, _ in frames_of(got[0])][:2] == [11, 12],
          "recorded a nonce and sealed frames: %r" % frames_of(got[0] if got else b""))
    before = rejected(s)
    answer = say_to_manager(s, got[0])
    check([t for t, _ in frames_of(answer)] == [11], "the replay got no answer: %r"
          % frames_of(answer))
    wait_for(lambda: rejected(s) >= before + 1, 5, what="the replay counted")
    log = s.read_log("manager1")
    check("does not authenticate" in log and "no auth frame first" in log,
          "the manager says why it rejected: %r" % log[-800:])

    # 4. flarectl without the key, and with another key, is refused
    nokey = conf_variant(s, "nokey.conf", [('auth_key_file = "auth.key";', "")])
    r = subprocess.run([BUILD + "/flarectl", "-c", nokey, "status"], capture_output=True,
                       text=True, timeout=10)
    check(r.returncode != 0 and "requires authentication" in r.stderr, "no key: %r" % r.stderr)
    r = subprocess.run([BUILD + "/flarectl", "-c", rogue, "status"], capture_output=True,
                       text=True, timeout=10)
    check(r.returncode != 0 and "keys differ" in r.stderr, "wrong key: %r" % r.stderr)

    # 5. a key file others can read is refused at start, naming the line
    # (root's file: its group may read it, as the package's root:flare 0640)
    os.chmod(os.path.join(s.dir, "auth.key"), 0o644)
    r = subprocess.run([BUILD + "/flare-manager", "-c", s.conf, "--check"], capture_output=True,
                       text=True, timeout=10)
    check(r.returncode != 0 and re.search(r"flare\.conf:1: auth_key_file .*chmod 640", r.stderr),
          "open key file: %r" % r.stderr)
    os.chmod(os.path.join(s.dir, "auth.key"), 0o640)
    r = subprocess.run([BUILD + "/flare-manager", "-c", s.conf, "--check"], capture_output=True,
                       text=True, timeout=10)
    check(r.returncode == 0, "root's key file read by its group: %r" % r.stderr)
    os.chmod(os.path.join(s.dir, "auth.key"), 0o600)


def test_no_key_warns_once():
    s = rr_deployment()
    s.manager()
    wait_for(lambda: "listening" in s.read_log("manager1"), 10, what="the manager listening")
    log = s.read_log("manager1")
    check(log.count("sets no auth_key_file") == 1, "one warning: %r" % log[-600:])
    st = s.status()
    check(st and st["manager"]["auth"] is False, "status says auth is off: %r" %
          (st or {}).get("manager"))


if __name__ == "__main__":
    run([test_authenticated_control_plane, test_no_key_warns_once])
