"""The fusion table (rows of jobs/evaluation/fusion.fuse) as files: JSON for machines, Markdown for the README."""
from __future__ import annotations

import json
from pathlib import Path


def fusion_markdown(rows: list[dict]) -> str:
    """A Markdown table, accuracies in percent with two decimals (the model zoo's style)."""
    lines = ["| scores | top1 acc | top5 acc | mean class acc |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {r['name']} | {100 * r['top1_acc']:.2f} | {100 * r['top5_acc']:.2f} | "
              f"{100 * r['mean_class_accuracy']:.2f} |" for r in rows]
    return "\n".join(lines) + "\n"


def write_fusion(rows: list[dict], out_dir: str | Path, stem: str = "fusion") -> tuple[Path, Path]:
    """<out_dir>/<stem>.json (the rows, fractions) and <out_dir>/<stem>.md (the table); returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    as_json, as_md = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    as_json.write_text(json.dumps(rows, indent=2) + "\n")
    as_md.write_text(fusion_markdown(rows))
    return as_json, as_md
