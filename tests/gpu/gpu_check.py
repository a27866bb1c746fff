"""`make gpu-check`: one command that runs every GPU-side check and always writes one report (docs/GPU_CHECK.md).

    python -m tests.gpu.gpu_check [--dry-run] [--out DIR] [--budget SECONDS]
    python -m tests.gpu.gpu_check --prepare          # only the data sections (the parts-only calls 2-4)

Writes DIR/report.json, DIR/report.md and DIR/logs.tar.gz (DIR: --out, else $GPU_CHECK_OUT, else
work_dirs/gpu_check). Sections, in order of value (the budget cuts the last ones first): environment (versions,
libraries, one nvJPEG decode), data (the synthetic sets), profile (`tsn profile` on the K400 R50 1x1x3 and 1x1x8
recipes: loader, decode ceiling, data_time share, model at the recipe's batch and at 25x10 / 25x3 views, peak
memory), real_train (`tsn train` with validation and checkpoints, `--resume auto`, `tsn test` on the GPU and on the
CPU), gpu_tests (`pytest -m gpu tests/gpu`, each test in its own subprocess), parity (GPU vs CPU loader pixels for
each crop protocol), nvdec (NVDEC vs PyAV, frame-exactness, a video below NVDEC's minimum), nvdec_seek (does
fn.decoders.video seek on a 3,000-frame file), torch (the torch-only results of the parts-only calls 1-4,
tests/gpu/torch_tasks.py).

Tasks of one `proc` share a subprocess (one torch + DALI start-up); each subprocess has a timeout (the sum of its
tasks'), and the whole run has a budget that the timeouts add up to: a task that crashes, hangs or fails records
that and the rest still run; tasks that no longer fit are marked "not run". --dry-run runs the same tasks on the
CPU (device "cpu" standing in for "gpu", small sizes, the torch-only tasks at toy sizes), so CI checks all of it.
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
SECTIONS = ("environment", "data", "profile", "real_train", "gpu_tests", "parity", "nvdec", "nvdec_seek", "torch")
PROFILE_RECIPES = ("tsn_r50_1x1x3_100e_kinetics400_rgb", "tsn_r50_256p_1x1x8_100e_kinetics400_rgb")
TRAIN_RECIPE = "tsn_r18_synthetic_rgb"
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
    """Sizes of one run: the GPU run, or the dry run's small CPU stand-in. `timeouts` (seconds, per process) add
    up to at most budget_s - RESERVE_S (tests/gpu/test_gpu_check_dry_run.py checks it)."""

    device: str
    budget_s: float
    parity_batches: int
    long_frames: int
    long_gop: int
    long_codecs: tuple[str, ...]
    seek_repeats: int
    data_workers: int
    profile_recipes: tuple[str, ...]
    profile_size: str
    profile_videos_per_class: int
    profile_repeat: int
    profile_warmup: int
    profile_iters: int
    profile_overrides: tuple[str, ...]  # --cfg-options of the profiled recipes (the dry run's ResNet-18, batch 1)
    train_epochs: tuple[int, int]       # `tsn train` to the first, then `--resume auto` to the second
    train_overrides: tuple[str, ...]
    test_timeout_s: float               # one isolated gpu test
    test_select: tuple[str, ...]        # extra pytest arguments (the dry run picks one test: each costs a process)
    torch_parts: tuple[str, ...]        # torch_tasks parts the check runs itself (the GPU run collects calls 1-4's)
    tiny: bool                          # torch-only measurements at toy sizes
    timeouts: dict = field(default_factory=dict)


GPU_PLAN = Plan(
    device="gpu", budget_s=420.0, parity_batches=2, long_frames=3000, long_gop=250, long_codecs=("h264", "vp9"),
    seek_repeats=3, data_workers=12, profile_recipes=PROFILE_RECIPES, profile_size="340x256",
    profile_videos_per_class=4, profile_repeat=20, profile_warmup=3, profile_iters=20, profile_overrides=(),
    # 24 training videos / 8 = 3 iterations per epoch: 18 + 18 = 36 iterations, validation every 3 epochs.
    train_epochs=(6, 12), train_overrides=("data.videos_per_gpu=8", "data.workers=4", "runtime.amp=true",
                                           "runtime.eval_interval=3", "runtime.log_interval=3"),
    test_timeout_s=60.0, test_select=(), torch_parts=(), tiny=False,
    timeouts={"environment": 35, "data": 35, "profile_0": 50, "profile_1": 35, "real_train": 50, "test_on_cpu": 25,
              "gpu_tests": 80, "parity": 35, "nvdec": 35, "nvdec_seek": 30})

DRY_PLAN = Plan(
    device="cpu", budget_s=1100.0, parity_batches=1, long_frames=300, long_gop=50, long_codecs=("vp9",),
    seek_repeats=1, data_workers=1, profile_recipes=PROFILE_RECIPES[:1], profile_size="96x72",
    profile_videos_per_class=1, profile_repeat=1, profile_warmup=0, profile_iters=1,
    # CPU stand-ins sized for CI: one profiled recipe as a ResNet-18 at batch 1, 2 + 1 epochs of training.
    profile_overrides=("data.videos_per_gpu=1", "model.arch=resnet18"),
    train_epochs=(1, 2), train_overrides=("data.videos_per_gpu=8", "data.workers=1", "runtime.eval_interval=1",
                                          "runtime.log_interval=3", "test.sampler.num_clips=3"),
    test_timeout_s=120.0, test_select=("-k", "amp"), torch_parts=("1", "2", "3", "4"), tiny=True,
    # Sized for a loaded 2-core CI machine (a run there takes 4 to 7 minutes); the budget is what they add up to.
    timeouts={"environment": 45, "data": 90, "profile_0": 150, "real_train": 180, "test_on_cpu": 60,
              "gpu_tests": 90, "parity": 150, "nvdec": 60, "nvdec_seek": 60, "torch": 200})


@dataclass(frozen=True)
class Task:
    section: str
    item: str
    timeout: float                     # this task's share of its process's timeout
    check: str | None = None           # a tests.gpu.checks task, run with `params`
    params: dict = field(default_factory=dict)
    argv: tuple[str, ...] = ()         # or a command, summarised by `parse`
    parse: Callable | None = None
    needs: tuple[str, ...] = ()        # "section/item" keys that must have status ok
    proc: str = ""                     # checks tasks with the same proc (consecutive) share one subprocess
    env: dict = field(default_factory=dict)
    collect: Callable | None = None    # or no process at all: a record read from what earlier calls left

    @property
    def key(self) -> str:
        return f"{self.section}/{self.item}"


# --- task list ----------------------------------------------------------------------------------------------------

def plan_tasks(plan: Plan, work: Path) -> list[Task]:
    """Every task in run order: what users need most first (a budget that runs out cuts the end)."""
    dev, t = plan.device, plan.timeouts
    data_dir = work / "data"
    root, small, tests_root = (str(data_dir / n) for n in ("synthetic", "synthetic_small", "synthetic_tests"))
    data = ("data/synthetic",)
    tasks = [
        Task("environment", "probe", t["environment"] * 0.4, "probe_environment", {"device": dev}, proc="env"),
        Task("environment", "nvjpeg", t["environment"] * 0.6, "nvjpeg_smoke", {"device": dev}, proc="env"),
        Task("data", "synthetic", t["data"], "make_data",
             {"work": str(work), "profile_size": plan.profile_size, "profile_root": str(work / "profile_data"),
              "profile_videos_per_class": plan.profile_videos_per_class, "workers": plan.data_workers},
             proc="data"),
    ]
    for k, recipe in enumerate(plan.profile_recipes):
        tasks.append(Task("profile", recipe, t[f"profile_{k}"], "profile_recipe",
                          {"recipe": recipe, "device": dev, "size": plan.profile_size,
                           "data_root": str(work / "profile_data"), "videos_per_class": plan.profile_videos_per_class,
                           "repeat": plan.profile_repeat, "warmup": plan.profile_warmup, "iters": plan.profile_iters,
                           "overrides": list(plan.profile_overrides), "tiny": plan.tiny,
                           "out_json": str(work / f"profile_{recipe}.json")}, needs=data, proc=f"profile_{k}"))
    tasks += [
        Task("real_train", "train_resume_test", t["real_train"], "real_train",
             {"work": str(work), "root": root, "recipe": TRAIN_RECIPE, "device": dev,
              "epochs": list(plan.train_epochs), "overrides": list(plan.train_overrides)}, needs=data,
             proc="real_train"),
        Task("real_train", "test_on_cpu", t["test_on_cpu"], "test_on_cpu", {"work": str(work), "device": dev},
             needs=("real_train/train_resume_test",), proc="test_on_cpu"),
    ]
    log = work / "gpu_tests.jsonl"
    argv = (sys.executable, "-m", "pytest", "-p", "tests.gpu.isolation", "--isolate", "--isolate-timeout",
            str(plan.test_timeout_s), f"--isolate-log={log}", "-m", "gpu", "tests/gpu", "-q", "-p",
            "no:cacheprovider", "-o", "addopts=", f"--junitxml={work / 'gpu_tests.xml'}", *plan.test_select)
    # The isolated tests reuse tests/conftest.py's synthetic set made by the data section (one per test otherwise).
    tasks.append(Task("gpu_tests", "pytest", t["gpu_tests"], argv=argv, parse=_pytest_parser(log), needs=data,
                      env={"TSN_TEST_SYNTHETIC_ROOT": tests_root}))
    share = t["parity"] / len(PROTOCOLS)
    for item, recipe, kind, split, extra, tol in PROTOCOLS:
        tasks.append(Task("parity", item, share, "loader_parity",
                          {"root": root, "recipe": recipe, "kind": kind, "split": split, "overrides": SMALL + extra,
                           "device": dev, "batches": plan.parity_batches, "tol": tol}, needs=data, proc="parity"))
    for codec in ("h264", "vp9"):
        tasks.append(Task("nvdec", codec, t["nvdec"] * 0.3, "video_parity",
                          {"root": root, "codec": codec, "device": dev, "overrides": SMALL,
                           "batches": plan.parity_batches}, needs=data, proc="nvdec"))
    tasks.append(Task("nvdec", "too_small", t["nvdec"] * 0.25, "nvdec_too_small",
                      {"root": small, "device": dev, "overrides": SMALL}, needs=data, proc="nvdec"))
    # Last in the process: a native crash in the hand-made capability query costs only itself.
    tasks.append(Task("nvdec", "caps", t["nvdec"] * 0.15, "nvdec_caps", {"device": dev}, proc="nvdec"))
    seek = t["nvdec_seek"] / (1 + len(plan.long_codecs))
    tasks.append(Task("nvdec_seek", "long_videos", seek, "make_long",
                      {"work": str(work), "frames": plan.long_frames, "gop": plan.long_gop,
                       "codecs": list(plan.long_codecs)}, proc="nvdec_seek"))
    for codec in plan.long_codecs:
        suffix = ".mp4" if codec == "h264" else ".webm"
        tasks.append(Task("nvdec_seek", codec, seek, "nvdec_seek",
                          {"path": str(work / "long" / f"long_{codec}{suffix}"), "codec": codec, "device": dev,
                           "frames": plan.long_frames, "gop": plan.long_gop, "repeats": plan.seek_repeats},
                          needs=("nvdec_seek/long_videos",), proc="nvdec_seek"))
    from tests.gpu.torch_tasks import PARTS
    for part, names in PARTS.items():
        if part in plan.torch_parts:            # run here (the dry run): each part's tasks in one process
            share = t["torch"] / len(plan.torch_parts)
            argv = (sys.executable, "-m", "tests.gpu.torch_tasks", "--part", part, "--budget", str(share * 0.8),
                    "--device", "cuda" if dev == "gpu" else "cpu", *(["--tiny"] if plan.tiny else []))
            tasks.append(Task("torch", f"part{part}", share, argv=argv, parse=_torch_parser(work / "torch", names),
                              env={"GPU_CHECK_TORCH": str(work / "torch")}))
        else:                                   # left by the parts-only calls 1-4 (docs/GPU_CHECK.md)
            tasks.append(Task("torch", f"part{part}", 0.0, collect=_torch_collector(names)))
    return tasks


def check_prepare(plan: Plan, work: Path) -> list[Task]:
    """--prepare: the data the check needs that CPUs make (synthetic sets, profile frames, long videos), run by the
    parts-only calls 2-4 once PyAV is installed; the check of call 5 finds them made (checks._stamped)."""
    return [t for t in plan_tasks(plan, work) if t.check in ("make_data", "make_long")]


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
    name = group[0].key.replace("/", "__") if len(group) == 1 else group[0].proc
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
    proc = run_process(task.argv, timeout, work / "logs" / f"{task.key.replace('/', '__')}.log", task.env)
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


def _torch_records(folder: Path, names: tuple[str, ...]) -> dict:
    """{task: its torch_tasks record} of the part's tasks found in `folder`."""
    out = {}
    for name in names:
        path = folder / f"torch_{name}.json"
        if path.is_file():
            out[name] = json.loads(path.read_text())
    return out


def _torch_summary(records: dict) -> dict:
    passes = [r["result"].get("pass") for r in records.values() if r.get("status") == "ok"]
    judged = [p for p in passes if p is not None]
    return {"tasks": records, "pass": all(judged) if judged else None}


def _torch_parser(folder: Path, names: tuple[str, ...]):
    def parse(proc):
        records = _torch_records(folder, names)
        if not records:
            raise RuntimeError("no torch_*.json written")
        return _torch_summary(records)
    return parse


def _torch_collector(names: tuple[str, ...]):
    """The records the parts-only calls left in tests/gpu/torch_tasks.py's persistent folder, if any."""
    def collect() -> dict:
        from tests.gpu.torch_tasks import torch_dir
        records = _torch_records(torch_dir(), names)
        if not records:
            return {"status": "not_run", "reason": f"no torch_*.json of {', '.join(names)} in {torch_dir()}: the "
                                                   "parts-only calls 1-4 did not run them (docs/GPU_CHECK.md)"}
        return {"status": "ok", "result": {**_torch_summary(records), "from": str(torch_dir())}, "wall_s": 0.0}
    return collect


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


def group_tasks(tasks: list[Task]) -> list[list[Task]]:
    """Consecutive checks tasks of one `proc` share a subprocess; commands and collectors stand alone."""
    groups: list[list[Task]] = []
    for t in tasks:
        if t.check and groups and groups[-1][0].check and groups[-1][0].proc == t.proc:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups


def run_all(plan: Plan, work: Path, say=print, tasks: list[Task] | None = None) -> dict:
    tasks = plan_tasks(plan, work) if tasks is None else tasks
    start = time.monotonic()
    deadline = start + plan.budget_s
    records: dict[str, dict] = {}
    for group in group_tasks(tasks):
        runnable, here = [], {t.key for t in group}       # a need inside the group: the process runs it first
        for t in group:
            missing = [n for n in t.needs if n not in here and records.get(n, {}).get("status") != "ok"]
            if missing:
                records[t.key] = {"status": "not_run", "reason": f"needs {', '.join(missing)}"}
            elif t.collect:
                records[t.key] = t.collect()
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
        items = {t.item: records[t.key] for t in tasks if t.section == name and t.key in records}
        if items:
            sections[name] = {"verdict": worst(verdict(r) for r in items.values()), "items": items}
    return {"schema": 2, "mode": "dry-run" if plan.device == "cpu" else "gpu", "device": plan.device,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "wall_s": time.monotonic() - start, "budget_s": plan.budget_s, "plan": dataclasses.asdict(plan),
            "tasks": [{"key": t.key, "timeout_s": t.timeout, "proc": t.proc or t.key} for t in tasks],
            "timeouts_s": sum(t.timeout for t in tasks), "sections": sections}


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
            ["DALI / torch install problems", "; ".join(env.get("install", {}).get("problems", []))
             or env.get("install", {}).get("error") or "none"],
            ["python", env.get("python")], ["CPUs", env.get("cpus")]]
    return table(["what", "value"], rows)


def _gib(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _md_profile(items: dict) -> list[str]:
    res = lambda r: r.get("result", {})
    rows, model = [], []
    for k, r in items.items():
        x = res(r)
        d = (x.get("data") or [{}])[0]
        s = x.get("step", {})
        rows.append([k, verdict(r), d.get("batch"), d.get("clips_per_s"), d.get("ceiling_clips_per_s"),
                     d.get("fraction_of_ceiling"), s.get("clips_per_s"), s.get("data_time_share"), s.get("verdict"),
                     _gib(s.get("peak_memory_gib")), _gib(x.get("device_memory_used_gib"))])
        ts = x.get("train_step")
        if ts:
            model.append([k, f"train step, batch {ts['batch']}", ts["amp_dtype"], ts["clips_per_s"], "-",
                          ts["median_step_ms"], _gib(ts.get("peak_memory_gib"))])
        for i in x.get("inference", []):
            model.append([k, f"inference {i['protocol']} ({i['views']} views {i['input']})", i["amp_dtype"], "-",
                          i["videos_per_s"], sum(i["latency_ms"]) / len(i["latency_ms"]),
                          _gib(i.get("peak_memory_gib"))])
    return [table(["recipe", "run", "batch", "loader clips/s", "decode ceiling clips/s", "of ceiling",
                   "train loop clips/s", "data_time share", "bound", "step peak GiB", "device used GiB"], rows),
            "", table(["recipe", "model alone (random input)", "dtype", "clips/s", "videos/s", "ms", "peak GiB"],
                      model)]


def _md_real_train(items: dict) -> list[str]:
    out = []
    x = items.get("train_resume_test", {}).get("result", {})
    if x:
        rows = [[f"run {k + 1}" + (" (--resume auto)" if k else ""), r["epochs"], r["epoch"], r["iteration"],
                 r["best_metric"], r["seconds"]] for k, r in enumerate(x["runs"])]
        out += [table(["tsn train", "epochs asked", "epoch reached", "iterations", "best val metric", "s"], rows), "",
                f"resumed: {x['resumed']}; losses finite: {_f(x['losses_finite'])}, skipped steps "
                f"{x['skipped_steps']}; validations {len(x['val_log'])}; checkpoints {', '.join(x['checkpoints'])}; "
                f"tsn test on {x['device']}: {x['test']['evaluated']} of {x['test']['total']} videos, "
                + ", ".join(f"{k} {v:.4f}" for k, v in x["test"]["metrics"].items())]
    c = items.get("test_on_cpu", {}).get("result", {})
    if c:
        out += ["", table(["tsn test GPU vs CPU", "videos", "top-1 equal", "max abs logit diff", "mean abs logit diff",
                           "smallest CPU top-1 margin"],
                          [["scores", c["videos"], c["top1_equal"], c["max_abs_logit_diff"], c["mean_abs_logit_diff"],
                            c["min_cpu_top1_margin"]]])]
    return out


def _md_torch(items: dict) -> list[str]:
    rows = []
    for part, r in items.items():
        for name, rec in r.get("result", {}).get("tasks", {}).items():
            x = rec.get("result", {})
            for row in x.get("rows", []):
                what = ", ".join(f"{k}={row[k]}" for k in ("protocol", "amp_dtype", "channels_last", "cudnn_benchmark")
                                 if k in row)
                rate = row.get("clips_per_s") or row.get("videos_per_s")
                unit = "clips/s" if "clips_per_s" in row else "videos/s"
                rows.append([part, name, x.get("recipe") or row.get("recipe"), what, row.get("batch") or row.get("views"),
                             f"{rate:,.1f} {unit}", _gib(row.get("peak_memory_gib"))])
            if not x.get("rows"):
                brief = {k: v for k, v in x.items() if k in ("backend", "nccl_version", "ddp_step_loss", "present",
                                                                 "note", "pass")}
                rows.append([part, name, "-", rec.get("status") + " " + json.dumps(brief, default=str)[:200], "-", "-",
                             "-"])
    return [table(["part", "task", "recipe", "variant", "batch / views", "rate", "peak GiB"], rows)] if rows else []


def _md_section(name: str, sec: dict) -> list[str]:
    items = sec["items"]
    out = [f"## {name}: {sec['verdict']}", ""]
    res = lambda r: r.get("result", {})
    if name == "environment":
        if items.get("probe", {}).get("status") == "ok":
            out.append(_env_md(res(items["probe"])))
        s = res(items.get("nvjpeg", {}))
        if s:
            out += ["", table(["first decode", "shape", "mean abs diff vs PIL", "max abs diff", "ms"],
                              [["JPEG (mixed: nvJPEG; dry run: CPU)", s["shape"], s["mean_abs_diff_vs_pil"],
                                s["max_abs_diff_vs_pil"], s["first_ms"]]]),
                    "", "decoder libraries mapped: " + (", ".join(s.get("mapped_libraries", [])) or "none")]
    elif name == "data":
        d = res(items.get("synthetic", {}))
        rows = [[k, v.get("size"), v.get("counts"), v.get("seconds")] for k, v in d.items() if isinstance(v, dict)
                and "counts" in v]
        if rows:
            out += [f"made in this run: {_f(not d.get('reused'))}", "",
                    table(["set", "size", "videos", "s"], rows)]
    elif name == "profile":
        out += _md_profile(items)
    elif name == "real_train":
        out += _md_real_train(items)
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
    elif name == "nvdec":
        rows = []
        for k, r in items.items():
            if k in ("too_small", "caps"):
                continue
            x = res(r)
            e = x.get("decoder_exactness", {})
            rows.append([k, verdict(r), x.get("mean_abs_diff"), x.get("rolled_mean_abs_diff"), x.get("index_equal"),
                         e.get("exact"), e.get("min_margin"), e.get("closest") if e and not e.get("exact") else ""])
        out.append(table(["codec", "verdict", "loader mean diff vs PyAV", "rolled by 1 view", "indices",
                          "decoder frame-exact", "min margin", "closest (if not exact)"], rows))
        x = res(items.get("too_small", {}))
        if x:
            raw = x["raw_decode"]
            out += ["", table(["below NVDEC's minimum", "size", "VP9 minimum", "raw decode", "loader's decoder",
                               "batch", "on"],
                              [[x["file"], x["size"], x["nvdec_min_vp9"],
                                f"shape {raw['shape']}" if raw["decoded"] else f"error: {raw['error']}",
                                x["decoder"], x["batch_shape"], x["clips_on"]]])]
        x = res(items.get("caps", {}))
        if x:
            out += ["", table(["NVDEC caps (8-bit 4:2:0)", "supported", "NVDECs", "min", "max", "documented min",
                               "documented max", "agrees"],
                              [[c, r["supported"], r["nvdecs"], r["min"], r["max"], r["documented_min"],
                                r["documented_max"], r["agrees"]] for c, r in x["codecs"].items()])]
    elif name == "nvdec_seek":
        rows = []
        for k, r in items.items():
            if k == "long_videos":
                continue
            x = res(r)
            tm = x.get("times", {})
            ms = [tm.get(p, {}).get("median_ms") for p in ("first", "before_last_keyframe", "last_keyframe", "last")]
            rows.append([k, verdict(r), x.get("frames"), x.get("gop"), *ms, x.get("verdict"),
                         x.get("exactness", {}).get("exact")])
        out.append(table(["codec", "check", "frames", "GOP", "frame 0 ms", "before last key ms", "last key ms",
                          "last frame ms", "seeking", "frame-exact"], rows))
    elif name == "torch":
        out += _md_torch(items)
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
        for pattern in ("logs/*.log", "results/*.json", "profile_*.json", "gpu_tests.*", "torch/*.json",
                        "real_train/*.log", "real_train/*.jsonl", "real_train/*.json"):
            for p in sorted(work.glob(pattern)):
                tar.add(p, arcname=str(p.relative_to(work)))
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU stand-in for every part (CI)")
    ap.add_argument("--prepare", action="store_true",
                    help="only make the data (synthetic sets, long videos) for a later check; no report")
    ap.add_argument("--out", help=f"report folder (default ${ENV_OUT} or {DEFAULT_OUT})")
    ap.add_argument("--work", help=f"scratch folder (default ${ENV_WORK} or {DEFAULT_WORK}); its data is reused")
    ap.add_argument("--budget", type=float,
                    help=f"global time budget in seconds (default {GPU_PLAN.budget_s:.0f} GPU, "
                         f"{DRY_PLAN.budget_s:.0f} dry run)")
    args = ap.parse_args(argv)
    plan = DRY_PLAN if args.dry_run else GPU_PLAN
    if args.budget:
        plan = dataclasses.replace(plan, budget_s=args.budget)
    out = Path(args.out or os.environ.get(ENV_OUT) or ROOT / DEFAULT_OUT)
    work = Path(args.work or os.environ.get(ENV_WORK) or ROOT / DEFAULT_WORK)
    for sub in ("logs", "results", "torch"):               # old results must not pass for new ones
        for p in (work / sub).glob("*"):
            p.unlink()
    for p in list(work.glob("profile_*.json")) + list(work.glob("gpu_tests.*")):
        p.unlink()
    work.mkdir(parents=True, exist_ok=True)
    if args.prepare:
        report = run_all(plan, work, tasks=check_prepare(plan, work))
        print(json.dumps({k: verdict(r) for sec in report["sections"].values() for k, r in sec["items"].items()}))
        return 0
    report = run_all(plan, work)
    paths = write_report(report, out, work)
    print(render_markdown(report))
    print(f"[gpu-check] report: {', '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
