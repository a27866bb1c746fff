"""log.jsonl -> runs, summary numbers computed by hand from a written log, curves drawn from the right points."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from jobs.reporting import ReportError, fusion_markdown, plot_curves, read_run, summarize, write_fusion

# Two epochs of 5 iterations logged every 2: lines at iter 2, 4, 5 (covering 2, 2 and 1 iterations).
TRAIN = [  # (epoch, iter, lr, loss, time, data_time)
    (1, 2, 0.02, 2.50, 0.30, 0.10), (1, 4, 0.02, 2.30, 0.20, 0.05), (1, 5, 0.02, 2.20, 0.26, 0.02),
    (2, 2, 0.002, 2.00, 0.40, 0.20), (2, 4, 0.002, 1.90, 0.22, 0.04), (2, 5, 0.002, 1.80, 0.24, 0.01),
]
VAL = [(1, 0.25, 0.60), (2, 0.50, 0.60)]   # (epoch, top1_acc, mean_class_accuracy)


def train_line(epoch, it, lr, loss, t, d):
    return {"mode": "train", "epoch": epoch, "iter": it, "lr": lr, "loss": loss, "time": t, "data_time": d,
            "memory": 0}


def val_line(epoch, top1, mca):
    return {"mode": "val", "epoch": epoch, "top1_acc": top1, "top5_acc": 1.0, "mean_class_accuracy": mca}


def write_log(work_dir, entries, tail=""):
    work_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(e) + "\n" for e in entries) + tail
    (work_dir / "log.jsonl").write_text(text)
    return work_dir


def standard_log(work_dir):
    t = [train_line(*r) for r in TRAIN]
    v = [val_line(*r) for r in VAL]
    return write_log(work_dir, t[:3] + v[:1] + t[3:] + v[1:])


def test_summary_matches_hand_computation(tmp_path):
    run = read_run(standard_log(tmp_path / "rgb"))
    s = summarize(run)
    # The first line of each epoch is left out (MMAction2's outlier rule): (0.20, 0.05) x 2 iterations,
    # (0.26, 0.02) x 1, (0.22, 0.04) x 2, (0.24, 0.01) x 1 -> 6 iterations.
    step = (0.20 * 2 + 0.26 + 0.22 * 2 + 0.24) / 6            # 1.34 / 6
    data = (0.05 * 2 + 0.02 + 0.04 * 2 + 0.01) / 6            # 0.21 / 6
    assert s.iterations == 6
    assert s.step_time == pytest.approx(step) and s.data_time == pytest.approx(data)
    assert s.iter_time == pytest.approx(1.55 / 6)
    assert s.data_share == pytest.approx(0.21 / 1.55)
    # per-epoch iteration time: epoch 1 (0.25 x 2 + 0.28) / 3 = 0.26, epoch 2 (0.26 x 2 + 0.25) / 3 = 0.2567
    assert (s.slowest_epoch, s.fastest_epoch) == (1, 2)
    assert (s.metric, s.best_value, s.best_epoch, s.epochs) == ("top1_acc", 0.5, 2, 2)


def test_summary_with_outliers_and_another_metric(tmp_path):
    run = read_run(standard_log(tmp_path / "rgb"))
    s = summarize(run, metric="mean_class_accuracy", include_outliers=True)
    # every line: step sum 1.34 + 0.30 x 2 + 0.40 x 2 = 2.74, data sum 0.21 + 0.10 x 2 + 0.20 x 2 = 0.81, 10 iters
    assert s.iterations == 10
    assert s.step_time == pytest.approx(0.274) and s.data_time == pytest.approx(0.081)
    assert s.data_share == pytest.approx(0.81 / 3.55)
    assert (s.best_value, s.best_epoch) == (0.60, 1)          # a tie: the first epoch that reached it
    with pytest.raises(ReportError, match="top3_acc"):
        summarize(run, metric="top3_acc")


def test_resumed_log_replaces_the_redone_records(tmp_path):
    t = [train_line(*r) for r in TRAIN]
    v = [val_line(*r) for r in VAL]
    # epoch 2 was cut after its first line and rerun from the epoch-1 checkpoint (all of epoch 2 logged again)
    crashed = train_line(2, 2, 0.002, 9.0, 9.0, 9.0)
    run = read_run(write_log(tmp_path / "w", t[:3] + v[:1] + [crashed] + t[3:] + v[1:]))
    assert [(r.epoch, r.iter, r.loss) for r in run.train] == [(e, i, loss) for e, i, _, loss, _, _ in TRAIN]
    assert [r.epoch for r in run.val] == [1, 2]
    # a fresh run in the same dir (epoch 1 again) drops everything before it
    fresh = read_run(write_log(tmp_path / "f", t + v + t[:2]))
    assert [(r.epoch, r.iter) for r in fresh.train] == [(1, 2), (1, 4)] and fresh.val == ()


def test_cut_lines_are_skipped_and_a_torn_line_inside_is_named(tmp_path):
    warnings = []
    run = read_run(write_log(tmp_path / "live", [train_line(*r) for r in TRAIN[:2]], tail='{"mode": "tr'),
                   warn=warnings.append)
    assert len(run.train) == 2 and run.name == "live" and warnings == []      # a live run's unfinished last line
    # A run killed mid-write, then resumed: the torn line is ended by the next run's first line, inside the file.
    torn = write_log(tmp_path / "torn", [train_line(*TRAIN[0])],
                     tail='{"mode": "tr\n' + json.dumps(train_line(*TRAIN[1])) + "\n" + json.dumps(val_line(*VAL[0])))
    run = read_run(torn, warn=warnings.append)
    assert [(r.epoch, r.iter) for r in run.train] == [TRAIN[0][:2], TRAIN[1][:2]] and len(run.val) == 1
    assert len(warnings) == 1 and "torn/log.jsonl" in warnings[0] and warnings[0].endswith("line 2")
    with pytest.raises(ReportError, match=r"log.jsonl:1.*'loss'"):
        read_run(write_log(tmp_path / "noloss", [{"mode": "train", "epoch": 1, "iter": 1, "lr": 0.1, "time": 1,
                                                   "data_time": 0}]))
    with pytest.raises(ReportError, match="no such log"):
        read_run(tmp_path / "nowhere")


def test_curves_draw_each_run_at_its_epochs(tmp_path):
    rgb = read_run(standard_log(tmp_path / "rgb"))
    flow = read_run(write_log(tmp_path / "flow", [train_line(1, 5, 0.02, 3.0, 0.1, 0.1), val_line(1, 0.75, 0.7)]))
    out = tmp_path / "curves.png"
    fig = plot_curves([rgb, flow], out)
    loss, lr, top1, mca = fig.axes[:4]
    (rgb_loss, flow_loss) = loss.get_lines()
    assert rgb_loss.get_label() == "rgb" and flow_loss.get_label() == "flow"
    # x = epoch - 1 + iter / 5 (5 iterations an epoch)
    assert list(rgb_loss.get_xdata()) == pytest.approx([0.4, 0.8, 1.0, 1.4, 1.8, 2.0])
    assert list(rgb_loss.get_ydata()) == [2.50, 2.30, 2.20, 2.00, 1.90, 1.80]
    assert list(lr.get_lines()[0].get_ydata()) == [0.02] * 3 + [0.002] * 3
    assert list(top1.get_lines()[0].get_xdata()) == [1, 2] and list(top1.get_lines()[0].get_ydata()) == [0.25, 0.5]
    assert list(mca.get_lines()[1].get_ydata()) == [0.7]
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 0 and img.size[1] > 0


def test_fusion_files(tmp_path):
    rows = [{"name": "rgb", "top1_acc": 0.5, "top5_acc": 0.875, "mean_class_accuracy": 0.4583},
            {"name": "two-stream [1:1]", "top1_acc": 0.75, "top5_acc": 1.0, "mean_class_accuracy": 0.7}]
    as_json, as_md = write_fusion(rows, tmp_path / "demo")
    assert json.loads(as_json.read_text()) == rows
    lines = as_md.read_text().splitlines()
    assert lines[2] == "| rgb | 50.00 | 87.50 | 45.83 |" and lines[3] == "| two-stream [1:1] | 75.00 | 100.00 | 70.00 |"
    assert fusion_markdown(rows) == as_md.read_text()
