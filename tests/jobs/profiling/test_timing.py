"""The profiler's arithmetic on a fake clock: latencies, throughput, percentiles and stage shares by hand.

jobs/profiling/timing.py measures with time.perf_counter; here the clock is a list of readings, so every number
`tsn profile` derives (jobs/profiling/data.py `rates`, `breakdown`) has a value written out below.
"""
from __future__ import annotations

import pytest

from jobs.profiling import timing
from jobs.profiling.data import PER_OP_NOTE, breakdown, rates
from jobs.profiling.timing import Timing, time_batches, time_calls
from pipelines.variants.device import DeviceResample
from pipelines.variants.host import HostResample


@pytest.fixture
def clock(monkeypatch):
    """Install a fake perf_counter that returns the given readings in order."""
    def install(readings):
        it = iter(readings)
        monkeypatch.setattr(timing.time, "perf_counter", lambda: next(it))
    return install


def test_time_batches_skips_warmup_and_times_each_gap(clock):
    # 2 warm-up batches (sizes 9, 9: not counted), then 3 timed ones of sizes 4, 4, 2.
    # Clock: 10.0 when timing starts, then 10.5, 11.5, 11.75 after each timed batch.
    clock([10.0, 10.5, 11.5, 11.75])
    worked = []
    t = time_batches(iter([[0] * 9, [0] * 9, [0] * 4, [0] * 4, [0] * 2]), warmup=2, count=3, size=len,
                     work=worked.append)
    assert len(worked) == 5                                   # work() runs for warm-up and timed batches
    assert (t.batches, t.items) == (3, 10)
    assert t.seconds == pytest.approx(1.75)
    assert t.latencies == pytest.approx((0.5, 1.0, 0.25))
    assert t.per_second == pytest.approx(40 / 7)              # 10 items / 1.75 s


def test_time_calls_times_only_the_calls(clock):
    # warm-up call untimed; 3 timed calls of 0.1, 0.3, 0.2 s with idle gaps in between that must not count
    clock([0.0, 0.1, 1.0, 1.3, 2.0, 2.2])
    calls = []
    t = time_calls(lambda: calls.append(1), warmup=1, count=3, items_per_call=2)
    assert len(calls) == 4
    assert (t.batches, t.items) == (3, 6)
    assert t.seconds == pytest.approx(0.6) and t.per_second == pytest.approx(10.0)
    assert t.latencies == pytest.approx((0.1, 0.3, 0.2))


def test_rates_of_a_loader():
    # 10 clips in 1.75 s over 3 batches, 25 frames and 250 views per clip (25 clips x TenCrop)
    t = Timing(batches=3, items=10, seconds=1.75, latencies=(0.5, 1.0, 0.25))
    r = rates(t, frames_per_clip=25, views_per_clip=250)
    assert (r["batches"], r["clips"], r["seconds"]) == (3, 10, 1.75)
    assert r["clips_per_s"] == pytest.approx(5.714285714)
    assert r["frames_per_s"] == pytest.approx(142.857142857)
    assert r["views_per_s"] == pytest.approx(1428.571428571)
    assert r["ms_per_batch"] == pytest.approx(583.333333333)
    assert r["latency_ms"]["p50"] == pytest.approx(500.0)


def timing_of(seconds: float, items: int) -> Timing:
    return Timing(batches=1, items=items, seconds=seconds, latencies=(seconds,))


def test_breakdown_shares_by_hand():
    # per clip: loader 0.2 s, full graph 0.15 s, decode-only graph 0.1 s, source alone 0.05 s
    b = breakdown(timing_of(2.0, 10), timing_of(1.5, 10), timing_of(1.0, 10), timing_of(1.0, 20),
                  HostResample().host_work)
    assert b["ms_per_clip"] == pytest.approx({"loader": 200.0, "graph": 150.0, "decode": 100.0, "source": 50.0})
    # decode 0.1 / 0.2; augment (0.15 - 0.1) / 0.2; host (0.2 - 0.15) / 0.2; source 0.05 / 0.2
    assert b["share"] == pytest.approx({"decode": 0.5, "augment": 0.25, "host": 0.25, "source_one_process": 0.25})
    assert b["host_work"] == "cut + resample every box + flip + copy to torch" and b["note"] == PER_OP_NOTE


def test_breakdown_clips_overlap_to_the_unit_interval():
    # a graph timed alone can be slower per clip than the prefetching loader (0.24 vs 0.2 s): host share
    # (0.2 - 0.24) / 0.2 = -0.2 -> 0; a decode-only graph at 0.3 s per clip: 1.5 -> 1; augment (0.24 - 0.3) -> 0
    b = breakdown(timing_of(2.0, 10), timing_of(2.4, 10), timing_of(3.0, 10), timing_of(1.0, 10),
                  DeviceResample().host_work)
    assert b["share"] == pytest.approx({"decode": 1.0, "augment": 0.0, "host": 0.0, "source_one_process": 0.5})
    assert b["host_work"] == "copy to torch"
