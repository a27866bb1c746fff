"""The subprocess isolation plugin (tests/gpu/isolation.py) on a throw-away test file: passes, failures, skips, a
segfault, an abort and a hang each end as that test's own result, and the session goes on after them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

from tests.helpers import ROOT

FAKE_TESTS = '''
import ctypes
import os
import time

import pytest


@pytest.mark.gpu
def test_passes():
    assert os.environ.get("TSN_ISOLATED_CHILD") == "1"      # it really ran in the child


@pytest.mark.gpu
def test_fails():
    assert 1 == 2, "deliberate failure"


@pytest.mark.gpu
def test_skips():
    pytest.skip("no device here")


@pytest.mark.gpu
def test_segfaults():
    ctypes.string_at(0)                                      # reads address 0: SIGSEGV


@pytest.mark.gpu
def test_aborts():
    os.abort()                                               # SIGABRT, as a failed C++ assertion does


@pytest.mark.gpu
def test_hangs():
    time.sleep(120)


@pytest.mark.gpu
def test_after_the_crashes():
    pass


def test_unmarked_stays_in_process():
    assert "TSN_ISOLATED_CHILD" not in os.environ
'''


def test_each_marked_test_gets_its_own_outcome(tmp_path):
    (tmp_path / "test_fake.py").write_text(FAKE_TESTS)
    (tmp_path / "pytest.ini").write_text(textwrap.dedent("""\
        [pytest]
        markers =
            gpu: isolated
    """))
    log, junit = tmp_path / "log.jsonl", tmp_path / "parent.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TSN_ISOLATED_CHILD", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.gpu.isolation", "--isolate",
                           "--isolate-timeout", "8", f"--isolate-log={log}", f"--junitxml={junit}",
                           "-p", "no:cacheprovider", "-q", "test_fake.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    rows = {json.loads(line)["nodeid"].split("::")[1]: json.loads(line) for line in log.read_text().splitlines()}
    # Seven marked tests were isolated, the unmarked one was not (it never reaches the log).
    assert set(rows) == {"test_passes", "test_fails", "test_skips", "test_segfaults", "test_aborts", "test_hangs",
                         "test_after_the_crashes"}
    status = {name: r["status"] for name, r in rows.items()}
    assert status == {"test_passes": "passed", "test_fails": "failed", "test_skips": "skipped",
                      "test_segfaults": "crashed", "test_aborts": "crashed", "test_hangs": "timeout",
                      "test_after_the_crashes": "passed"}
    assert rows["test_segfaults"]["returncode"] == -11 and "SIGSEGV" in rows["test_segfaults"]["message"]
    assert rows["test_aborts"]["returncode"] == -6 and "SIGABRT" in rows["test_aborts"]["message"]
    assert "deliberate failure" in rows["test_fails"]["message"]
    assert rows["test_skips"]["message"] == "no device here"
    assert 8 <= rows["test_hangs"]["duration"] < 60
    # The parent session reported all eight through the normal hooks: 3 passed, 4 failed, 1 skipped.
    assert proc.returncode == 1, proc.stdout[-3000:]
    suite = ET.parse(junit).getroot().find("testsuite")
    counts = {k: int(suite.get(k)) for k in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": 8, "failures": 4, "errors": 0, "skipped": 1}, proc.stdout[-3000:]
    assert "3 passed" in proc.stdout and "4 failed" in proc.stdout and "1 skipped" in proc.stdout
