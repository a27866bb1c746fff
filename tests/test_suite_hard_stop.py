"""The suite's last line of defence against a hang (tests/conftest.py): a test whose main thread waits where
pytest-timeout's SIGALRM cannot reach it still ends the run, with every thread's stack on stderr."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.helpers import ROOT

STUCK = '''
import signal, threading, pytest

@pytest.mark.timeout(1)
def test_stuck():
    # The alarm is blocked in this thread, so pytest-timeout's signal handler never runs here: the situation of a
    # main thread waiting in C while the alarm lands on another thread.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    held = threading.Lock()
    held.acquire()
    held.acquire()
'''


def test_a_test_stuck_past_its_timeout_ends_the_run_with_stacks(tmp_path):
    (tmp_path / "test_stuck.py").write_text(STUCK)
    env = {**os.environ, "TSN_TEST_HARD_STOP_S": "2"}
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                          "--rootdir", str(tmp_path), str(tmp_path / "test_stuck.py")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert time.monotonic() - start < 60
    assert "Timeout (0:00:03)!" in run.stderr
    assert "in test_stuck" in run.stderr        # the stuck frame is named
