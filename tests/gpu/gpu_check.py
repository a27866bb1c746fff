"""`make gpu-check`: one command that runs every GPU-side check and always writes one report (docs/GPU_CHECK.md).

    python -m tests.gpu.gpu_check [--dry-run] [--out DIR] [--budget SECONDS]

Writes DIR/report.json, DIR/report.md and DIR/logs.tar.gz (DIR: --out, else $GPU_CHECK_OUT, else
work_dirs/gpu_check). Sections: environment (versions, libraries, a first nvJPEG/NVDEC decode), data (synthetic
set, bar-coded long videos), gpu_tests (`pytest -m gpu tests/gpu`, every test in its own subprocess), parity (GPU
vs CPU loader pixels for each crop protocol), video (NVDEC vs PyAV, frame-exactness), nvdec_seek (does
fn.decoders.video seek on a 3,000-frame file), amp_train (2 AMP steps on CUDA), profile (`tsn profile` data /
model / step on the K400 R50 1x1x3 and 1x1x8 recipes).

Every task runs in a subprocess with its own timeout, and the whole run has a global budget: a task that crashes,
hangs or fails records that and the rest still run; tasks that no longer fit the budget are marked "not run".
--dry-run runs the same tasks on the CPU (device "cpu" standing in for "gpu", small sizes), so CI checks all of it.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV_OUT, DEFAULT_OUT = "GPU_CHECK_OUT", "work_dirs/gpu_check"
ENV_WORK, DEFAULT_WORK = "GPU_CHECK_WORK", "work_dirs/gpu_check_work"
RESERVE_S = 10.0          # kept back from the budget to write the report
MIN_START_S = 15.0        # a task is not started with less than this left
TAIL = 4000               # characters of a failed task's output kept in the report
SECTIONS = ("environment", "data", "gpu_tests", "parity", "video", "nvdec_seek", "amp_train", "profile")
PROFILE_RECIPES = ("tsn_r50_1x1x3_100e_kinetics400_rgb", "tsn_r50_256p_1x1x8_100e_kinetics400_rgb")
SMALL = ["data.workers=1", "data.videos_per_gpu=4", "data.val_videos_per_gpu=4", "data.test_videos_per_gpu=1"]

# (item, recipe, list kind, split, extra --cfg-options, tolerance on the mean abs diff in uint8 levels).
# JPEG: nvJPEG vs libjpeg-turbo differ in chroma upsampling and IDCT rounding, and the GPU resize vs the CPU
# path's torch resample by +-1 level; 3 levels of mean is the bound tests/gpu/test_gpu.py uses.
PROTOCOLS = (
    ("multiscale_crop", "tsn_r50_multiscalecrop_340x256_1x1x3_100e_kinetics400_rgb", "rawframes", "train", [], 3.0),
    ("random_resized_crop", "tsn_r50_randomresizedcrop_340x256_1x1x3_100e_kinetics400_rgb", "rawframes", "train",
     [], 3.0),
    ("center_crop", "tsn_r50_1x1x3_100e_kinetics400_rgb", "rawframes", "val", [], 3.0),
    ("three_crop", "tsn_r50_test_340x256_1x1x25_3crop_100e_kinetics400_rgb", "rawframes", "test",
     ["test.sampler.num_clips=3"], 3.0),
    ("ten_crop", "tsn_r50_test_340x256_1x1x25_10crop_100e_kinetics400_rgb", "rawframes", "test",
     ["test.sampler.num_clips=3"], 3.0),
    ("dense", "tsn_r50_dense_1x1x8_100e_kinetics400_rgb", "rawframes", "train", [], 3.0),
    ("flow_x_inversion", "tsn_r50_320p_1x1x3_110e_kinetics400_flow", "flow", "train", [], 3.0),
)


@dataclass(frozen=True)
class Plan:
    """Sizes of one run: the GPU run, or the dry run's small CPU stand-in."""

    device: str
    budget_s: float
    isolate: str                       # "item": one subprocess per task; "section": one per section (faster)
    parity_batches: int
    long_frames: int
    long_gop: int
    long_codecs: tuple[str, ...]
    seek_repeats: int
    data_workers: int
    amp_recipe: str
    amp_overrides: tuple[str, ...]
    profile_recipes: tuple[str, ...]
    profile_size: str
    profile_videos_per_class: int
    profile_repeat: int
    profile_args: tuple[str, ...]      # --warmup/--iters/... and --cfg-options for `tsn profile`
    test_timeout_s: float              # one isolated gpu test
    test_select: tuple[str, ...]       # extra pytest arguments (the dry run picks one test: each costs a process)
    timeouts: dict = field(default_factory=dict)


GPU_PLAN = Plan(
    device="gpu", budget_s=450.0, isolate="item", parity_batches=2, long_frames=3000, long_gop=250,
    long_codecs=("h264", "vp9"), seek_repeats=3, data_workers=8,
    amp_recipe=PROFILE_RECIPES[0], amp_overrides=("model.pretrained=none", "data.videos_per_gpu=8", "data.workers=2"),
    profile_recipes=PROFILE_RECIPES, profile_size="340x256", profile_videos_per_class=4, profile_repeat=20,
    profile_args=("--warmup", "3", "--iters", "20", "--model-iters", "20"),
    test_timeout_s=120.0, test_select=(),
    timeouts={"probe": 60, "data": 180, "smoke": 90, "parity": 90, "video": 90, "seek": 150, "amp": 120,
              "profile": 200, "gpu_tests": 330})

DRY_PLAN = Plan(
    device="cpu", budget_s=400.0, isolate="section", parity_batches=1, long_frames=300, long_gop=50,
    long_codecs=("vp9",), seek_repeats=1, data_workers=1,
    # CPU stand-ins sized for CI: the 56 px synthetic recipe for the AMP steps, one profiled recipe, a ResNet-18.
    amp_recipe="tsn_r18_synthetic_rgb", amp_overrides=("data.videos_per_gpu=2", "data.workers=1"),
    profile_recipes=PROFILE_RECIPES[:1], profile_size="96x72", profile_videos_per_class=1, profile_repeat=1,
    profile_args=("--warmup", "0", "--iters", "1", "--model-iters", "1", "--train-batch", "1", "--cfg-options",
                  "data.videos_per_gpu=1", "test.sampler.num_clips=1", "test.augment.crop=center",
                  "model.arch=resnet18"),
    test_timeout_s=120.0, test_select=("-k", "amp"),
    timeouts={"probe": 90, "data": 180, "smoke": 90, "parity": 120, "video": 120, "seek": 120, "amp": 120,
              "profile": 180, "gpu_tests": 180})


@dataclass(frozen=True)
class Task:
    section: str
    item: str
    timeout: float
    check: str | None = None           # a tests.gpu.checks task, run with `params`
    params: dict = field(default_factory=dict)
    argv: tuple[str, ...] = ()         # or a command, summarised by `parse`
    parse: Callable | None = None
    needs: tuple[str, ...] = ()        # "section/item" keys that must have status ok

    @property
    def key(self) -> str:
        return f"{self.section}/{self.item}"


# --- task list ----------------------------------------------------------------------------------------------------

def plan_tasks(plan: Plan, work: Path) -> list[Task]:
    """Every task in run order (cheap and fundamental first; the long profile and the pytest run last)."""
    dev, t, root = plan.device, plan.timeouts, str(work / "synthetic")
    data = ("data/synthetic",)
    tasks = [
        Task("environment", "probe", t["probe"], "probe_environment", {"device": dev}),
        Task("data", "synthetic", t["data"], "make_data",
             {"work": str(work), "long_frames": plan.long_frames, "long_gop": plan.long_gop,
              "long_codecs": list(plan.long_codecs), "profile_size": plan.profile_size,
              "profile_root": str(work / "profile_data"), "profile_videos_per_class": plan.profile_videos_per_class,
              "workers": plan.data_workers}),
        Task("environment", "dali_smoke", t["smoke"], "dali_smoke", {"root": root, "device": dev}, needs=data),
    ]
    for item, recipe, kind, split, extra, tol in PROTOCOLS:
        tasks.append(Task("parity", item, t["parity"], "loader_parity",
                          {"root": root, "recipe": recipe, "kind": kind, "split": split, "overrides": SMALL + extra,
                           "device": dev, "batches": plan.parity_batches, "tol": tol}, needs=data))
    for codec in ("h264", "vp9"):
        tasks.append(Task("video", codec, t["video"], "video_parity",
                          {"root": root, "codec": codec, "device": dev, "overrides": SMALL,
                           "batches": plan.parity_batches}, needs=data))
    for codec in plan.long_codecs:
        suffix = ".mp4" if codec == "h264" else ".webm"
        tasks.append(Task("nvdec_seek", codec, t["seek"], "nvdec_seek",
                          {"path": str(work / f"long_{codec}{suffix}"), "codec": codec, "device": dev,
                           "frames": plan.long_frames, "gop": plan.long_gop, "repeats": plan.seek_repeats},
                          needs=data))
    tasks.append(Task("amp_train", plan.amp_recipe, t["amp"], "amp_train",
                      {"root": root, "recipe": plan.amp_recipe, "device": dev, "iterations": 2,
                       "overrides": list(plan.amp_overrides)}, needs=data))
    for recipe in plan.profile_recipes:
        out = work / f"profile_{recipe}.json"
        argv = (sys.executable, "-m", "jobs.profile", recipe, "--device", "cuda" if dev == "gpu" else "cpu",
                "--mode", "data", "--mode", "model",
                "--mode", "step", "--synthetic", plan.profile_size, "--videos-per-class",
                str(plan.profile_videos_per_class), "--repeat", str(plan.profile_repeat), "--data-root",
                str(work / "profile_data"), "--out", str(out), *plan.profile_args)
        tasks.append(Task("profile", recipe, t["profile"], argv=argv, parse=_profile_parser(out), needs=data))
    log = work / "gpu_tests.jsonl"
    argv = (sys.executable, "-m", "pytest", "-p", "tests.gpu.isolation", "--isolate", "--isolate-timeout",
            str(plan.test_timeout_s), f"--isolate-log={log}", "-m", "gpu", "tests/gpu", "-q", "-p",
            "no:cacheprovider", "-o", "addopts=", f"--junitxml={work / 'gpu_tests.xml'}", *plan.test_select)
    tasks.append(Task("gpu_tests", "pytest", t["gpu_tests"], argv=argv, parse=_pytest_parser(log)))
    return tasks


# --- running ------------------------------------------------------------------------------------------------------

def run_process(argv, timeout: float, log: Path, env: dict | None = None) -> dict:
    """Runs argv with its output in `log`; kills its whole process group on timeout (and after it exits, so no
    forked DALI worker outlives it). Returns returncode (negative = signal), timed_out, wall_s, output tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(argv), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    text = log.read_text(errors="replace")
    return {"returncode": proc.returncode, "timed_out": timed_out, "wall_s": time.monotonic() - t0,
            "tail": text[-TAIL:]}


def _failure(proc: dict, what: str) -> dict:
    if proc["timed_out"]:
        return {"status": "timeout", "error": f"{what}: killed after {proc['wall_s']:.0f} s", "output_tail": proc["tail"]}
    rc = proc["returncode"]
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return {"status": "crashed", "error": f"{what}: died with {name}", "output_tail": proc["tail"]}
    return {"status": "error", "error": f"{what}: exited {rc} without a result", "output_tail": proc["tail"]}


def run_checks(group: list[Task], timeout: float, work: Path) -> dict[str, dict]:
    """tests.gpu.checks tasks in one subprocess; a task without a result file gets the process's fate."""
    results = work / "results"
    results.mkdir(parents=True, exist_ok=True)
    jobs = [{"task": t.check, "params": t.params, "out": str(results / f"{t.key.replace('/', '__')}.json")}
            for t in group]
    for j in jobs:
        Path(j["out"]).unlink(missing_ok=True)
    name = group[0].key.replace("/", "__") if len(group) == 1 else group[0].section
    spec = results / f"jobs_{name}.json"
    spec.write_text(json.dumps(jobs, indent=1))
    proc = run_process((sys.executable, "-m", "tests.gpu.checks", str(spec)), timeout, work / "logs" / f"{name}.log")
    out = {}
    for t, j in zip(group, jobs):
        path = Path(j["out"])
        if path.is_file():
            record = json.loads(path.read_text())
            if record["status"] == "error":
                record["output_tail"] = proc["tail"]
        else:
            record = {**_failure(proc, t.check), "wall_s": proc["wall_s"]}
        out[t.key] = record
    return out


def run_command(task: Task, timeout: float, work: Path) -> dict:
    proc = run_process(task.argv, timeout, work / "logs" / f"{task.key.replace('/', '__')}.log")
    try:
        result = task.parse(proc)
    except Exception as err:                   # no usable output: report the process's fate
        record = _failure(proc, " ".join(task.argv[2:4]))
        record["parse_error"] = f"{type(err).__name__}: {err}"
    else:
        record = {"status": "ok", "result": result}
        if proc["timed_out"] or proc["returncode"] not in result.get("_ok_returncodes", (0,)):
            record = {**_failure(proc, " ".join(task.argv[2:4])), "result": result}
        result.pop("_ok_returncodes", None)
    record["wall_s"] = proc["wall_s"]
    return record


def _profile_parser(path: Path):
    def parse(proc):
        return summarise_profile(json.loads(path.read_text()))
    return parse


def summarise_profile(report: dict) -> dict:
    """The numbers docs/GPU_CHECK.md explains, out of a `tsn profile --out` JSON."""
    out = {"config": report["config"], "device": report["device"], "gpu": report["machine"].get("gpu"),
           "data": []}
    for d in report.get("data", []):
        row = {"split": d["split"], "batch": d["batch"], "clips_per_s": d["dali"]["clips_per_s"],
               "frames_per_s": d["dali"]["frames_per_s"], "p50_ms": d["dali"]["latency_ms"]["p50"]}
        if "ceiling" in d:
            row.update(ceiling_clips_per_s=d["ceiling"]["clips_per_s"],
                       ceiling_images_per_s=d["ceiling"]["images_per_s"],
                       fraction_of_ceiling=d["fraction_of_ceiling"])
        if "breakdown" in d:
            row["share"] = d["breakdown"]["share"]
        out["data"].append(row)
    if "step" in report:
        s = report["step"]["dali"]
        out["step"] = {"batch": report["step"]["batch"], "clips_per_s": s["clips_per_s"],
                       "data_time_share": s["data_time_share"], "verdict": s["verdict"],
                       "step_ms": s["step_ms"]["mean"], "data_ms": s["data_ms"]["mean"]}
    if "model" in report:
        m = report["model"]
        out["model"] = {"inference_views": m["inference"]["views"],
                        "inference_videos_per_s": m["inference"]["videos_per_s"],
                        "inference_views_per_s": m["inference"]["views_per_s"],
                        "train_batch": m["train_step"]["batch"], "train_clips_per_s": m["train_step"]["clips_per_s"],
                        "train_step_ms": m["train_step"]["step_ms"]}
    return out


def _pytest_parser(log: Path):
    def parse(proc):
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
        if not rows and proc["returncode"] not in (0, 5):
            raise RuntimeError("pytest produced no results")
        tests = [{"nodeid": r["nodeid"], "status": r["status"], "outcome": r["outcome"],
                  "duration_s": r["duration"], "message": r["message"][-TAIL:]} for r in rows]
        counts = {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})}
        ran = [r for r in rows if r["outcome"] != "skipped"]
        # None (shown "ok") when every test was skipped (no CUDA): nothing passed or failed.
        passed = all(r["outcome"] == "passed" for r in ran) if ran else None
        # pytest exits 1 when a test failed: that is a result, not an error of the task.
        return {"tests": tests, "counts": counts, "pass": passed, "_ok_returncodes": (0, 1, 5)}
    return parse


def run_all(plan: Plan, work: Path, say=print) -> dict:
    tasks = plan_tasks(plan, work)
    start = time.monotonic()
    deadline = start + plan.budget_s
    records: dict[str, dict] = {}
    # Sections of checks tasks run as one subprocess in "section" mode; commands always run alone.
    groups: list[list[Task]] = []
    for t in tasks:
        same = (plan.isolate == "section" and groups and t.check and groups[-1][0].check
                and groups[-1][0].section == t.section and groups[-1][0].needs == t.needs)
        if same:
            groups[-1].append(t)
        else:
            groups.append([t])
    for group in groups:
        runnable = []
        for t in group:
            missing = [n for n in t.needs if records.get(n, {}).get("status") != "ok"]
            if missing:
                records[t.key] = {"status": "not_run", "reason": f"needs {', '.join(missing)}"}
            else:
                runnable.append(t)
        if not runnable:
            continue
        left = deadline - time.monotonic() - RESERVE_S
        if left < MIN_START_S:
            for t in runnable:
                records[t.key] = {"status": "not_run", "reason": f"global budget of {plan.budget_s:.0f} s used up"}
            continue
        timeout = min(sum(t.timeout for t in runnable), left)
        say(f"[gpu-check] {', '.join(t.key for t in runnable)} (timeout {timeout:.0f} s, "
            f"{deadline - time.monotonic():.0f} s of budget left)")
        if runnable[0].check:
            records.update(run_checks(runnable, timeout, work))
        else:
            records[runnable[0].key] = run_command(runnable[0], timeout, work)
        for t in runnable:
            r = records[t.key]
            say(f"[gpu-check]   {t.key}: {verdict(r)} ({r.get('wall_s', 0):.1f} s)")
    sections = {}
    for name in SECTIONS:
        items = {t.item: records[t.key] for t in tasks if t.section == name}
        sections[name] = {"verdict": worst(verdict(r) for r in items.values()), "items": items}
    return {"schema": 1, "mode": "dry-run" if plan.device == "cpu" else "gpu", "device": plan.device,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "wall_s": time.monotonic() - start, "budget_s": plan.budget_s, "plan": dataclasses.asdict(plan),
            "sections": sections}


# --- verdicts and the markdown report -----------------------------------------------------------------------------

RANK = {"ERROR": 5, "FAIL": 4, "not run": 3, "pass": 2, "ok": 1, "skipped": 0}


def verdict(record: dict) -> str:
    status = record.get("status")
    if status in ("error", "crashed", "timeout"):
        return "ERROR"
    if status == "not_run":
        return "not run"
    if status == "skipped":
        return "skipped"
    ok = record.get("result", {}).get("pass")
    return "ok" if ok is None else ("pass" if ok else "FAIL")


def worst(verdicts) -> str:
    vs = list(verdicts)
    return max(vs, key=RANK.__getitem__) if vs else "skipped"


def _f(v, digits=2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_f(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _env_md(env: dict) -> str:
    smi, torch, dali, codec, pyav = (env.get(k, {}) for k in ("nvidia_smi", "torch", "dali", "nvimgcodec", "pyav"))
    libs = env.get("libraries", {})
    lib = lambda n: ("loaded " + str(libs[n].get("path"))) if libs.get(n, {}).get("loaded") else \
        ("missing: " + str(libs.get(n, {}).get("error")))
    rows = [["GPU", smi.get("name") or torch.get("gpu")], ["driver", smi.get("driver")],
            ["driver CUDA", smi.get("driver_cuda")], ["torch", torch.get("version") or torch.get("error")],
            ["torch CUDA", torch.get("cuda")], ["cuda available", torch.get("cuda_available")],
            ["bf16", torch.get("bf16")], ["DALI", dali.get("version") or dali.get("error")],
            ["DALI built for CUDA", dali.get("built_for_cuda")], ["DALI wheel", dali.get("distribution")],
            ["nvImageCodec", codec.get("cu13") or codec.get("cu12") or codec.get("error")],
            ["PyAV", pyav.get("version") or pyav.get("error")],
            ["libavcodec (PyAV)", pyav.get("ffmpeg", {}).get("libavcodec")],
            ["libcuda.so.1", lib("libcuda.so.1")], ["libnvcuvid.so.1 (NVDEC)", lib("libnvcuvid.so.1")],
            ["libnvjpeg.so.13 files", ", ".join(env.get("libnvjpeg_candidates", [])) or "none found"],
            ["python", env.get("python")], ["CPUs", env.get("cpus")]]
    return table(["what", "value"], rows)


def _md_section(name: str, sec: dict) -> list[str]:
    items = sec["items"]
    out = [f"## {name}: {sec['verdict']}", ""]
    res = lambda r: r.get("result", {})
    if name == "environment":
        if items.get("probe", {}).get("status") == "ok":
            out.append(_env_md(res(items["probe"])))
        s = res(items.get("dali_smoke", {}))
        if s:
            out += ["", table(["first decode", "file", "shape", "mean abs diff vs reference"],
                              [["image (nvJPEG / CPU)", s["jpeg"]["file"], s["jpeg"]["shape"],
                                s["jpeg"]["mean_abs_diff_vs_pil"]],
                               ["video (NVDEC / CPU)", s["video"]["file"], s["video"]["shape"],
                                s["video"]["mean_abs_diff_vs_pyav"]]]),
                    "", "decoder libraries mapped: " + (", ".join(s.get("mapped_libraries", [])) or "none")]
    elif name == "data":
        d = res(items.get("synthetic", {}))
        if d:
            rows = [[k, v["frames"], v["gop"], v["num_keyframes"], v["keyframes"][:6], v["bytes"]]
                    for k, v in d.get("long", {}).items()]
            out += [f"synthetic set: {d['counts']} videos in {d['seconds_synthetic']:.1f} s", "",
                    table(["long video", "frames", "GOP", "keyframes", "first keyframes", "bytes"], rows)]
    elif name == "gpu_tests":
        r = res(items.get("pytest", {}))
        if r:
            out.append(table(["test", "status", "s", "message"],
                             [[t["nodeid"], t["status"], t["duration_s"], t["message"].splitlines()[0][:160]
                               if t["message"] else ""] for t in r["tests"]]))
    elif name == "parity":
        rows = [[k, res(r).get("recipe"), res(r).get("split"), verdict(r), res(r).get("shapes_equal"),
                 res(r).get("index_equal"), res(r).get("max_abs_diff"), res(r).get("mean_abs_diff"),
                 max((b.get("p99_abs_diff", 0) for b in res(r).get("batches", [])), default=None),
                 res(r).get("tolerance_mean_abs"), res(r).get("inverted_views")] for k, r in items.items()]
        out.append(table(["protocol", "recipe", "split", "verdict", "shapes", "indices", "max diff", "mean diff",
                          "p99 diff", "tol (mean)", "x-inverted views"], rows))
    elif name == "video":
        rows = []
        for k, r in items.items():
            x = res(r)
            e = x.get("decoder_exactness", {})
            rows.append([k, verdict(r), x.get("mean_abs_diff"), x.get("rolled_mean_abs_diff"), x.get("index_equal"),
                         e.get("exact"), e.get("min_margin"), e.get("closest") if e and not e.get("exact") else ""])
        out.append(table(["codec", "verdict", "loader mean diff vs PyAV", "rolled by 1 view", "indices",
                          "decoder frame-exact", "min margin", "closest (if not exact)"], rows))
    elif name == "nvdec_seek":
        rows = []
        for k, r in items.items():
            x = res(r)
            tm = x.get("times", {})
            ms = [tm.get(p, {}).get("median_ms") for p in ("first", "before_last_keyframe", "last_keyframe", "last")]
            rows.append([k, verdict(r), x.get("frames"), x.get("gop"), *ms, x.get("verdict"),
                         x.get("exactness", {}).get("exact")])
        out.append(table(["codec", "check", "frames", "GOP", "frame 0 ms", "before last key ms", "last key ms",
                          "last frame ms", "seeking", "frame-exact"], rows))
    elif name == "amp_train":
        for k, r in items.items():
            x = res(r)
            if x:
                out.append(table(["recipe", "device", "batch", "amp dtype", "GradScaler", "losses", "step ms",
                                  "peak GiB"], [[k, x["device"], x["batch_shape"], x["amp_dtype"], x["grad_scaler"],
                                                 ", ".join(f"{v:.4f}" for v in x["losses"]),
                                                 ", ".join(f"{v:.0f}" for v in x["step_ms"]),
                                                 x.get("peak_memory_gib")]]))
    elif name == "profile":
        rows = []
        for k, r in items.items():
            x = res(r)
            d = (x.get("data") or [{}])[0]
            s, m = x.get("step", {}), x.get("model", {})
            rows.append([k, verdict(r), d.get("clips_per_s"), d.get("ceiling_clips_per_s"),
                         d.get("fraction_of_ceiling"), s.get("clips_per_s"), s.get("data_time_share"),
                         s.get("verdict"), m.get("inference_videos_per_s"), m.get("train_clips_per_s")])
        out.append(table(["recipe", "run", "loader clips/s", "decode ceiling clips/s", "of ceiling",
                          "train loop clips/s", "data_time share", "bound", "inference videos/s",
                          "train step clips/s"], rows))
    problems = [(k, r) for k, r in items.items() if verdict(r) in ("ERROR", "not run", "skipped")]
    for k, r in problems:
        why = r.get("error") or r.get("reason") or ""
        out += ["", f"- **{k}**: {r['status']}: {_f(why)}"]
        tail = r.get("output_tail") or r.get("traceback")
        if tail:
            out += ["", "```", "\n".join(tail.strip().splitlines()[-25:]), "```"]
    return out + [""]


def render_markdown(report: dict) -> str:
    secs = report["sections"]
    out = [f"# GPU check report ({report['mode']})", "",
           f"started {report['started']}, {report['wall_s']:.0f} s of a {report['budget_s']:.0f} s budget, "
           f"device `{report['device']}`. How to read it: docs/GPU_CHECK.md.", "",
           table(["section", "verdict", "items"],
                 [[n, s["verdict"], ", ".join(f"{k}: {verdict(r)}" for k, r in s["items"].items())]
                  for n, s in secs.items()]), ""]
    for name, sec in secs.items():
        try:
            out += _md_section(name, sec)
        except Exception as err:          # an unexpected result shape must not cost the report: show it raw
            out += [f"## {name}: {sec['verdict']}", "", f"(not rendered: {type(err).__name__}: {err}; raw results)",
                    "", "```", json.dumps(sec["items"], indent=1, default=str)[:20000], "```", ""]
    return "\n".join(out)


def write_report(report: dict, out: Path, work: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md", out / "logs.tar.gz"]
    paths[0].write_text(json.dumps(report, indent=1, default=str) + "\n")
    paths[1].write_text(render_markdown(report) + "\n")
    with tarfile.open(paths[2], "w:gz") as tar:          # one file: the device returns at most 8
        for pattern in ("logs/*.log", "results/*.json", "profile_*.json", "gpu_tests.*"):
            for p in sorted(work.glob(pattern)):
                tar.add(p, arcname=str(p.relative_to(work)))
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU stand-in for every part (CI)")
    ap.add_argument("--out", help=f"report folder (default ${ENV_OUT} or {DEFAULT_OUT})")
    ap.add_argument("--work", help=f"scratch folder, emptied first (default ${ENV_WORK} or {DEFAULT_WORK})")
    ap.add_argument("--budget", type=float, help="global time budget in seconds (default 450 GPU, 400 dry run)")
    args = ap.parse_args(argv)
    plan = DRY_PLAN if args.dry_run else GPU_PLAN
    if args.budget:
        plan = dataclasses.replace(plan, budget_s=args.budget)
    out = Path(args.out or os.environ.get(ENV_OUT) or ROOT / DEFAULT_OUT)
    work = Path(args.work or os.environ.get(ENV_WORK) or ROOT / DEFAULT_WORK)
    for sub in ("logs", "results"):                        # old results must not pass for new ones
        for p in (work / sub).glob("*"):
            p.unlink()
    for p in list(work.glob("profile_*.json")) + list(work.glob("gpu_tests.*")):
        p.unlink()
    work.mkdir(parents=True, exist_ok=True)
    report = run_all(plan, work)
    paths = write_report(report, out, work)
    print(render_markdown(report))
    print(f"[gpu-check] report: {', '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
