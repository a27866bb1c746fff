"""`tsn profile --variant`: the recipe and override sets of it timed in one run, one row per variant.

No timing thresholds: the rows exist, and their numbers agree with each other (share = clips/s over the base's,
clips/s x ms/batch = clips per batch).
"""
from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from jobs.cli import cli
from jobs.profiling.report import format_variants
from jobs.profiling.variants import Variant, parse_variant, split_overrides
from jobs.recipes.config import ConfigError
from tests.helpers import synthetic_overrides

RECIPE = "tsn_r18_synthetic_rgb"
SMALL = ["data.videos_per_gpu=4", "data.workers=1"]
GRAY = "train.steps=[{kind='grayscale', p=0.5}]"


def test_parse_variant():
    assert parse_variant(GRAY) == Variant(GRAY, (GRAY,))
    assert parse_variant("jitter: train.steps=[{kind='color_jitter', order=['hue', 'brightness', 'contrast', "
                         "'saturation']}]; data.workers=4") == Variant(
        "jitter", ("train.steps=[{kind='color_jitter', order=['hue', 'brightness', 'contrast', 'saturation']}]",
                   "data.workers=4"))
    # A ':' after the first '=' is part of a value (a user step's import path), not a name.
    assert parse_variant("train.steps=[{kind='my.steps:negative'}]").name == "train.steps=[{kind='my.steps:negative'}]"
    assert split_overrides('a=1;b="x;y" ; c=[1; 2]') == ["a=1", 'b="x;y"', "c=[1; 2]"]
    for bad in ("name:", "justaword", "a=1; nothing"):
        with pytest.raises(ConfigError, match="--variant"):
            parse_variant(bad)


def test_cli_times_base_and_variants(synthetic_root, tmp_path):
    out = tmp_path / "variants.json"
    args = ["profile", RECIPE, "--warmup", "1", "--iters", "2", "--out", str(out), "--variant", GRAY,
            "--variant", "jitter: train.steps=[{kind='color_jitter', brightness=0.4}]"]
    for o in synthetic_overrides(synthetic_root) + SMALL:
        args += ["--cfg-options", o]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["modes"] == [] and "data" not in report          # --variant alone: only the comparison
    rows = report["variants"]
    assert [r["variant"] for r in rows] == ["base", "base, device graph", GRAY, "jitter"]
    assert [r["graph"].split()[0] for r in rows] == ["host", "device", "device", "device"]
    base = rows[0]["clips_per_s"]
    for r in rows:
        assert r["split"] == "train" and r["batches"] == 2 and r["clips_per_s"] > 0
        assert math.isclose(r["share"], r["clips_per_s"] / base)
        assert math.isclose(r["clips_per_s"] * r["ms_per_batch"] / 1e3, r["batch"])     # full batches of 4
    assert rows[0]["share"] == 1.0 and rows[3]["overrides"] == ["train.steps=[{kind='color_jitter', brightness=0.4}]"]
    table = format_variants(rows)
    assert "share of base" in result.output and table in result.output
    for r in rows:
        assert f"{100 * r['share']:.0f}%" in table and r["variant"] in table


def test_cli_refuses_a_bad_variant_before_timing(synthetic_root):
    args = ["profile", RECIPE, "--variant", "train.steps=[{kind='grayscale', p=3}]"]
    for o in synthetic_overrides(synthetic_root) + SMALL:
        args += ["--cfg-options", o]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert "train.steps[0].p: a probability must be in [0, 1]" in str(result.exception) + result.output
    assert "[variants/" not in result.output
