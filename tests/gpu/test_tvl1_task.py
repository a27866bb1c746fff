"""The TV-L1 GPU-check task in its tiny CPU form (what CI can check of it): it runs, writes tvl1.json with the
fields the GPU report needs, and its agreement numbers are those of an independent OpenCV run."""
from __future__ import annotations

import json

from tests.gpu.tvl1_task import run


def test_tiny_cpu_run_writes_its_report(tmp_path):
    result = run(tmp_path, "cpu", tiny=True)
    on_disk = json.loads((tmp_path / "tvl1.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert result["size"] == "64x48" and result["batch_size"] == 2 and result["pairs_per_s"] > 0
    assert result["peak_memory_bytes"] is None and result["goal_pairs_per_s"] is None
    a = result["agreement"]
    assert 0 <= a["epe_mean"] <= a["epe_max"] and 0 <= a["q_equal"] <= a["q_within_1"] <= 1
    assert result["meets_agreement_target"] is (a["epe_mean"] <= 0.05 and a["q_within_1"] >= 0.99)
    assert result["meets_agreement_target"]  # these two 64x48 pairs: measured 0.0001 px mean
