"""`tsn --help`, `tsn configs` and every `tsn <command> --help` start without torch, DALI, OpenCV or PyAV: the group
loads commands lazily (jobs/cli.py) and commands load those libraries only when they run.

One fresh interpreter runs them all, then reads sys.modules: none of the heavy libraries may have been imported by
any of them. The same interpreter then runs a command that does need torch (`tsn configs NAME` does not; importing
the test command's scorer does), so the check is seen to fail where it should.
"""
from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT

HEAVY = ("torch", "nvidia.dali", "cv2", "av")

DRIVER = """
import json, sys
import click
from jobs.cli import COMMANDS, cli
runs = [["--help"], ["configs"], ["configs", "tsn_r18_synthetic_rgb"]]
for name in COMMANDS:
    runs.append([name, "--help"])
    command = cli.get_command(click.Context(cli), name)
    runs += [[name, sub, "--help"] for sub in getattr(command, "commands", {})]
codes, outputs = [], []
for args in runs:
    try:
        cli.main(args, prog_name="tsn", standalone_mode=False)
        codes.append(0)
    except SystemExit as exc:
        codes.append(exc.code)
light = [m for m in %r if m in sys.modules]
import jobs.evaluation.scoring  # a module that runs the model: it must load torch, or the check proves nothing
heavy = [m for m in %r if m in sys.modules]
print("RESULT" + json.dumps({"runs": runs, "codes": codes, "light": light, "heavy": heavy}))
"""


def test_help_and_configs_import_no_torch_dali_opencv_or_pyav():
    result = subprocess.run([sys.executable, "-c", DRIVER % (HEAVY, HEAVY)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.rsplit("RESULT", 1)[1])
    assert all(code in (0, None) for code in report["codes"]), list(zip(report["runs"], report["codes"]))
    assert len(report["runs"]) > 20 and ["prepare", "check", "--help"] in report["runs"]
    assert report["light"] == [], f"loaded by help or `tsn configs`: {report['light']}"
    assert "torch" in report["heavy"] and "nvidia.dali" in report["heavy"]
    assert "tsn_r18_synthetic_rgb" in result.stdout and '"num_classes": 12' in result.stdout
