"""Integration test runner: the deployment helpers of scripts/deploy.py,
with the build folder taken from argv[1], every process and table cleaned
up at exit, on SIGINT/SIGTERM and after each test, and the runner's
one-line-per-test output ending in "N passed, N failed"."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import deploy  # noqa: E402
from deploy import *  # noqa: E402,F401,F403 - the tests use the helpers by name

BUILD = deploy.configure(sys.argv[1] if len(sys.argv) > 1 else "build")
deploy.install_cleanup()
_results = {"passed": 0, "failed": 0}


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def run(tests):
    """Runs test functions, prints one line each and the summary line.
    FLARE_TESTS=name,name runs only those."""
    only = os.environ.get("FLARE_TESTS")
    if only:
        tests = [t for t in tests if t.__name__ in only.split(",")]
    for t in tests:
        start = time.monotonic()
        try:
            t()
            _results["passed"] += 1
            print("ok   %s (%.1fs)" % (t.__name__, time.monotonic() - start), flush=True)
        except Exception as e:  # noqa: BLE001 - report any failure and go on
            _results["failed"] += 1
            print("FAIL %s: %s" % (t.__name__, e), flush=True)
        finally:
            deploy.cleanup()
    print("%d passed, %d failed" % (_results["passed"], _results["failed"]))
    sys.exit(1 if _results["failed"] else 0)


