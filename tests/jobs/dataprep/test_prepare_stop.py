"""`tsn prepare frames` stopped mid-run (SIGKILL or SIGTERM to the command): its spawned pool workers end within
10 s, no shared memory they held is left in /dev/shm, and the hidden temp folders they were writing are removed (a worker gets SIGTERM when its parent dies and
unwinds its task before leaving, pipelines/workers.py pool_initializer)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT
from tests.jobs.dataprep.test_prepare_media import make_video
from tests.processes import assert_nothing_left, process_tree, reaped, shared_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG")


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    """Four copies of one 1200-frame video: seconds of work per task, so the workers are caught mid-task."""
    root = tmp_path_factory.mktemp("long")
    make_video(root / "cls_a" / "v0.mp4", 1200, 192, 144)
    for i in range(1, 4):
        shutil.copy(root / "cls_a" / "v0.mp4", root / "cls_a" / f"v{i}.mp4")
    return root


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_stopped_prepare_leaves_no_worker_and_no_temp_folder(long_videos, tmp_path, sig):
    dst = tmp_path / "frames"
    proc = subprocess.Popen([sys.executable, "jobs/cli.py", "prepare", "frames", str(long_videos), str(dst),
                             "--workers", "2"], cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    with reaped(proc):
        deadline = time.monotonic() + 300
        # a worker is mid-task once a hidden temp folder holds frames
        while not any(any(p.iterdir()) for p in dst.glob("*/.*.part")):
            assert proc.poll() is None, f"prepare ended (rc {proc.returncode}) before a worker was seen mid-task"
            assert time.monotonic() < deadline, "no worker started within 300 s"
            time.sleep(0.05)
        tree = process_tree(proc.pid)
        shm = shared_memory(tree)
        assert len(tree) >= 3                       # the command and its 2 pool workers
        os.kill(proc.pid, sig)
        proc.wait(timeout=60)
        assert_nothing_left(tree, shm)
    assert list(dst.glob("*/.*.part")) == []
