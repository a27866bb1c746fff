"""pytest plugin: run each test carrying a marker (default `gpu`) in its own subprocess, with a hard timeout.

The GPU paths (nvJPEG, NVDEC, CUDA) have native code that can segfault or hang inside a C++ call, where neither
pytest nor pytest-timeout can recover: one such test would end the whole session and lose every later result.
Here the parent session does not run the test; it re-runs its node id in a child `python -m pytest` and turns
the child's outcome into the parent's reports, so a crash or a hang becomes that test's failure and the session
goes on. (pytest-forked does this with fork(); fork is unsafe once CUDA or DALI threads exist, so: a subprocess.)

    python -m pytest -p tests.gpu.isolation --isolate [--isolate-timeout 300] [--isolate-log results.jsonl] -m gpu

Outcomes come from the child's JUnit XML; without one (the child died) the exit status says what happened: a
negative status names the signal (SIGSEGV, SIGABRT), a timeout kills the child's whole process group (DALI's
forked Python workers included). --isolate-log appends one JSON line per finished test, so results survive even
if the parent itself is killed by an outer timeout.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

CHILD_ENV = "TSN_ISOLATED_CHILD"      # set in the child so that it runs its test in-process
TAIL = 6000                           # characters of the child's output kept in a failure report


@dataclass(frozen=True)
class Outcome:
    nodeid: str
    outcome: str                      # "passed" | "failed" | "skipped"
    status: str                       # "passed" | "failed" | "error" | "skipped" | "crashed" | "timeout"
    message: str
    duration: float
    returncode: int | None


def pytest_addoption(parser):
    group = parser.getgroup("isolate", "run marked tests in subprocesses")
    group.addoption("--isolate", action="store_true", help="run each marked test in its own subprocess")
    group.addoption("--isolate-marker", default="gpu", help="marker of the tests to isolate (default: gpu)")
    group.addoption("--isolate-timeout", type=float, default=300.0,
                    help="seconds before an isolated test's process group is killed (default: 300)")
    group.addoption("--isolate-log", default=None, help="append one JSON line per isolated test to this file")


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _tail(path: Path) -> str:
    text = path.read_text(errors="replace") if path.is_file() else ""
    return text[-TAIL:]


def _from_junit(xml: Path) -> tuple[str, str] | None:
    """(status, message) of the child's test from its JUnit XML; None if there is no usable file."""
    try:
        cases = ET.parse(xml).getroot().iter("testcase")
    except (OSError, ET.ParseError):
        return None
    status, message = None, ""
    rank = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
    for case in cases:
        for tag, name in (("error", "error"), ("failure", "failed"), ("skipped", "skipped")):
            node = case.find(tag)
            if node is not None:     # a skip's text repeats its message; a failure's text is the traceback
                text = "" if name == "skipped" or not node.text else "\n" + node.text
                found = (name, (node.get("message") or "") + text)
                break
        else:
            found = ("passed", "")
        if status is None or rank[found[0]] > rank[status]:
            status, message = found
    return None if status is None else (status, message.strip())


def run_isolated(nodeid: str, rootdir: Path, timeout: float, inifile: Path | None = None) -> Outcome:
    """Runs one test node in a child pytest; never raises for what happens inside the child."""
    with tempfile.TemporaryDirectory(prefix="isolate-") as tmp:
        xml, log = Path(tmp) / "junit.xml", Path(tmp) / "output.txt"
        argv = [sys.executable, "-m", "pytest", nodeid, "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                f"--rootdir={rootdir}", "-o", "addopts="]
        if inifile is not None:
            argv += ["-c", str(inifile)]
        start = time.monotonic()
        # Output to a file, not a pipe: a grandchild that outlives the child (a DALI worker) would hold a pipe
        # open and block the read. Its own session, so that one killpg reaches every process it started.
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=rootdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, CHILD_ENV: "1"}, start_new_session=True)
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)     # the child and anything it left behind
                except ProcessLookupError:
                    pass
                proc.wait()
        duration = time.monotonic() - start
        tail = _tail(log)
        if timed_out:
            return Outcome(nodeid, "failed", "timeout", f"killed after {timeout:g} s (hang?)\n{tail}", duration, None)
        rc = proc.returncode
        if rc < 0:
            return Outcome(nodeid, "failed", "crashed", f"child died with {_signal_name(rc)}\n{tail}", duration, rc)
        parsed = _from_junit(xml)
        if parsed is None:
            return Outcome(nodeid, "failed", "error", f"child exited {rc} without a result\n{tail}", duration, rc)
        status, message = parsed
        outcome = {"passed": "passed", "skipped": "skipped"}.get(status, "failed")
        if outcome == "failed":
            message = f"{message}\n--- child output (tail) ---\n{tail}"
        return Outcome(nodeid, outcome, status, message, duration, rc)


def _reports(item, result: Outcome) -> list[pytest.TestReport]:
    keywords = {k: 1 for k in item.keywords}
    now = time.time()

    def report(when, outcome, longrepr=None, duration=0.0):
        return pytest.TestReport(item.nodeid, item.location, keywords, outcome, longrepr, when,
                                 duration=duration, start=now - duration, stop=now)

    if result.outcome == "skipped":     # pytest reports a skip at setup, with (path, line, reason)
        path, line, _ = item.location
        return [report("setup", "skipped", (str(path), (line or 0) + 1, result.message or "skipped")),
                report("teardown", "passed")]
    longrepr = None if result.outcome == "passed" else f"[isolated: {result.status}] {result.message}"
    return [report("setup", "passed"), report("call", result.outcome, longrepr, result.duration),
            report("teardown", "passed")]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    config = item.config
    if (not config.getoption("isolate") or os.environ.get(CHILD_ENV)
            or item.get_closest_marker(config.getoption("isolate_marker")) is None):
        return None                               # the normal in-process protocol
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    result = run_isolated(item.nodeid, config.rootpath, config.getoption("isolate_timeout"), config.inipath)
    for rep in _reports(item, result):
        item.ihook.pytest_runtest_logreport(report=rep)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    log = config.getoption("isolate_log")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(result)) + "\n")
    return True
