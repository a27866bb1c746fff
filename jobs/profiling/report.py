"""A profile report (the dict `tsn profile` builds) as a readable table, a JSON file and a PNG bar chart."""
from __future__ import annotations

import json
from pathlib import Path


def _row(cells, widths) -> str:
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    lines = [_row(header, widths), _row(["-" * w for w in widths], widths)]
    return "\n".join(lines + [_row(r, widths) for r in cells[1:]])


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return str(v)


def _loader_row(name: str, r: dict) -> list:
    lat = r["latency_ms"]
    return [name, r["clips_per_s"], r["frames_per_s"], r.get("cpu_ms_per_clip", float("nan")), lat["p50"], lat["p90"],
            lat["p99"]]


def format_data(d: dict) -> str:
    head = (f"data / {d['split']}: batch {d['batch']} clips, {d['frames_per_clip']} frames and {d['views_per_clip']} "
            f"views per clip, DALI threads={d['threads']} py_workers={d['py_workers']} prefetch={d['prefetch']}, "
            f"{d['cpus']} CPUs")
    rows = [_loader_row("DALI loader", d["dali"])]
    for name, key in (("  full graph (run only)", "graph"), ("  decode only", "decode_only"),
                      ("  source only (1 process)", "source_only")):
        if key in d.get("stages", {}):
            rows.append(_loader_row(name, d["stages"][key]))
    for r in d.get("references", [d["reference"]] if "reference" in d else []):
        rows.append(_loader_row(f"reference DataLoader: {r.get('decoder', 'PIL/PyAV')} ({r['workers']} workers)", r)
                    + [f"{r['ratio']:.2f}x" if "ratio" in r else ""])
    rows = [r + [""] * (8 - len(r)) for r in rows]
    out = [head, table(["loader", "clips/s", "frames/s", "CPU ms/clip", "p50 ms", "p90 ms", "p99 ms", "DALI / this"],
                       rows)]
    for r in d.get("references", []):
        out.append(f"  {r['decoder']}: {r['what']}")
    out += [f"  {why}" for why in d.get("skipped_references", [])]
    if "memory_mb" in d:
        m = d["memory_mb"]
        private = m.get("workers_private", [])
        out.append(f"memory (RSS): main process {m['main']:,.0f} MiB, DALI workers "
                   + (", ".join(f"{w:,.0f}" for w in m["workers"]) + " MiB" if m["workers"] else "none")
                   + (" (private: " + ", ".join(f"{w:,.0f}" for w in private) + " MiB)" if private else ""))
    if "memory_by_epoch_mb" in d:
        rows = d["memory_by_epoch_mb"]

        def spans(key: str) -> str:
            return ", ".join(f"{min(r[key][k] for r in rows):,.0f}-{max(r[key][k] for r in rows):,.0f}"
                             for k in range(len(rows[0].get(key, []))))
        out.append(f"memory over {len(rows)} epochs (RSS after each): main process "
                   + " -> ".join(f"{r['main']:,.0f}" for r in rows) + " MiB; DALI workers "
                   + (spans("workers") + " MiB" if rows[0]["workers"] else "none")
                   + (f" (private: {spans('workers_private')} MiB)" if rows[0].get("workers_private") else ""))
    if "ceiling" in d:
        c = d["ceiling"]
        images = f"{c['images_per_s']:,.0f} JPEG/s = " if "images_per_s" in c else ""
        out.append(f"decode-only ceiling: {images}{c['clips_per_s']:,.1f} clips/s, {c['cpu_ms_per_clip']:.2f} CPU "
                   f"ms/clip ({c['what']}); DALI loader at {100 * d['fraction_of_ceiling']:.0f}% of it")
    if "breakdown" in d:
        s = d["breakdown"]["share"]
        out.append(f"share of the loader's time per clip: decode {100 * s['decode']:.0f}%, augment in DALI "
                   f"{100 * s['augment']:.0f}%, host side {100 * s['host']:.0f}% ({d['breakdown']['host_work']}); "
                   f"source alone, one process: {100 * s['source_one_process']:.0f}%")
        out.append(f"note: {d['breakdown']['note']}")
    if "ratio" in d:
        name = d["reference"].get("decoder", "reference DataLoader")
        note = "" if d.get("skipped_references") else ", the fastest peer in this run"
        out.append(f"DALI / reference DataLoader ({name}{note}): {d['ratio']:.2f}x clips/s")
    return "\n".join(out)


def format_model(m: dict) -> str:
    i, t = m["inference"], m["train_step"]
    rows = [[f"inference (1 video x {i['views']} views)", i["videos_per_s"], i["views_per_s"], i["latency_ms"]["p50"],
             i["latency_ms"]["p90"]],
            [f"training step ({t['batch']} videos x {t['views']} views)", t["clips_per_s"],
             t["clips_per_s"] * t["views"], t["latency_ms"]["p50"], t["latency_ms"]["p90"]]]
    return f"model on {m['device']} (random weights, no data I/O)\n" + table(
        ["work", "videos/s", "views/s", "p50 ms", "p90 ms"], rows)


def format_step(s: dict) -> str:
    rows = []
    for name in ("dali", "reference"):
        if name in s:
            r = s[name]
            rows.append([name, r["clips_per_s"], r["step_ms"]["mean"], r["data_ms"]["mean"],
                         f"{100 * r['data_time_share']:.0f}%", r["verdict"]])
    text = f"training loop on {s['device']}, batch {s['batch']}\n" + table(
        ["loader", "clips/s", "step ms", "data ms", "data share", "verdict"], rows)
    return text + (f"\nDALI / reference: {s['ratio']:.2f}x clips/s" if "ratio" in s else "")


def format_variants(rows: list[dict]) -> str:
    """One table per split: a row per variant, share = its clips/s over the base's."""
    out = []
    for split in dict.fromkeys(r["split"] for r in rows):
        mine = [r for r in rows if r["split"] == split]
        body = [[r["variant"], r["clips_per_s"], r["ms_per_batch"], f"{100 * r['share']:.0f}%", r["graph"]]
                for r in mine]
        out.append(f"variants / {split}: DALI loader, batch {mine[0]['batch']} clips\n"
                   + table(["variant", "clips/s", "ms/batch", "share of base", "graph"], body))
    return "\n\n".join(out)


def format_report(report: dict) -> str:
    parts = [f"tsn profile {report['config']} (device {report['device']})"]
    if "loader_settings" in report:     # the device defaults of pipelines/defaults.py, after the recipe's overrides
        parts[0] += "\nloader settings: " + ", ".join(f"{k}={v}" for k, v in report["loader_settings"].items())
    if "variants" in report:
        parts.append(format_variants(report["variants"]))
    parts += [format_data(d) for d in report.get("data", [])]
    if "model" in report:
        parts.append(format_model(report["model"]))
    if "step" in report:
        parts.append(format_step(report["step"]))
    return "\n\n".join(parts)


def write_json(report: dict, path: str | Path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2) + "\n")


def plot(report: dict, path: str | Path):
    """Bars of clips/s per loader and stage (one panel per profiled split), plus the decode ceiling."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = report.get("data", [])
    if not panels and "step" in report:
        panels = [{"split": "training loop", **report["step"]}]
    if not panels:
        raise ValueError("--plot needs a data or step profile")
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, d in zip(axes[0], panels):
        bars = [("DALI", d["dali"]["clips_per_s"])]
        # The source-alone rate is an order of magnitude above the rest: it would flatten every other bar.
        bars += [(k.replace("_", " "), v["clips_per_s"]) for k, v in d.get("stages", {}).items() if k != "source_only"]
        for r in d.get("references", [d["reference"]] if "reference" in d else []):
            bars.append((f"reference\n{r.get('decoder', 'DataLoader')}", r["clips_per_s"]))
        if "ceiling" in d:
            bars.append(("decode\nceiling", d["ceiling"]["clips_per_s"]))
        names, values = zip(*bars)
        ax.bar(range(len(values)), values, color=["tab:green"] + ["tab:gray"] * (len(values) - 1))
        ax.set_xticks(range(len(values)), names, fontsize=8)
        ax.set_ylabel("clips/s")
        ax.set_title(f"{report['config']}\n{d['split']}", fontsize=9)
        for x, v in enumerate(values):
            ax.annotate(f"{v:,.0f}", (x, v), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
