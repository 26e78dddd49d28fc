"""make demo's experiment, short: FLARe's testbed under static and proactive
failover must send the failed objects where the paper says, load the hosts
as the paper says, and lose no client request."""
import json
import os
import subprocess
import sys
import tempfile

from harness import BUILD, check, run

HERE = os.path.dirname(os.path.abspath(__file__))


def test_testbed_static_vs_proactive():
    out = tempfile.mkdtemp(prefix="flare-testbed-")
    r = subprocess.run([sys.executable, os.path.join(HERE, "..", "..", "scripts", "testbed.py"),
                        BUILD, "--seconds", "12", "--strategies", "static,proactive", "--out",
                        out], capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, "testbed rc %d:\n%s\n%s" % (r.returncode, r.stdout[-2000:],
                                                         r.stderr[-2000:]))
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)["strategies"]
    check(s["static"]["went_to"] == {"A": "A-3", "B": "B-3"}, "static: %r" % s["static"]["went_to"])
    check(s["proactive"]["went_to"] == {"A": "A-2", "B": "B-2"},
          "proactive: %r" % s["proactive"]["went_to"])
    # after the failover: static overloads LAMBADA (0.5 + 0.4) and CHARLIE
    # (0.5 + 0.3); proactive keeps every host below them
    st, pr = s["static"]["hosts"], s["proactive"]["hosts"]
    check(st["LAMBADA"][1] > 0.75 and st["CHARLIE"][1] > 0.65, "static utilizations: %r" % st)
    check(max(u[1] for u in pr.values()) < 0.72, "proactive utilizations: %r" % pr)
    for name in ("static", "proactive"):
        bad = [c for c, v in s[name]["clients"].items() if not v["ok"]]
        check(not bad, "%s: clients with failed requests: %r" % (name, bad))
    for name in ("static", "proactive"):
        check(os.path.getsize(os.path.join(out, "figure3-%s.png" % name)) > 10000,
              "plot for %s" % name)


if __name__ == "__main__":
    run([test_testbed_static_vs_proactive])
