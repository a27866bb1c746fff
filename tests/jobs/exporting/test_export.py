"""Exported TSN graphs (ONNX, TorchScript) against an eager TSN computed by hand: normalisation, consensus,
dynamic batch; `verify` passing on honest files and failing on tampered ones; the recipe's default input."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from jobs.exporting.formats import export_model, read_spec
from jobs.exporting.spec import VerifyFailed, spec_for
from jobs.exporting.verify import real_clips, verify
from jobs.exporting.wrapper import load_tsn, wrap
from jobs.recipes.config import load_config
from jobs.runtime.checkpoint import CheckpointError
from jobs.runtime.weights import build_model
from tests.helpers import synthetic_overrides

RGB, FLOW = "tsn_r18_synthetic_rgb", "tsn_r18_synthetic_flow"
# x and y normalised differently, so a wrong channel order of the flow (x, y) pair shows (the recipe has 128 / 128)
FLOW_NORM = ["normalize.mean=[120.0, 136.0]", "normalize.std=[100.0, 140.0]"]
# (recipe, arch, format, views, size (None: the recipe's 56), dynamic batch, batch, input). Both archs, both
# modalities (flow: 10 channels = 2 x clip_len 5) and both formats appear; each file is exported once per module.
CASES = {
    "r18-rgb-onnx": (RGB, "resnet18", "onnx", 3, None, True, 1, "uint8"),
    "r50-flow-onnx": (FLOW, "resnet50", "onnx", 2, (64, 64), True, 1, "uint8"),
    "r18-flow-torchscript-float": (FLOW, "resnet18", "torchscript", 2, (64, 64), False, 2, "float"),
    "r50-rgb-torchscript": (RGB, "resnet50", "torchscript", 2, (112, 112), True, 1, "uint8"),
}


def random_checkpoint(path, recipe, arch, seed=0):
    torch.manual_seed(seed)
    model = build_model(load_config(recipe, [f"model.arch={arch}"]).model)
    with torch.no_grad():       # non-trivial BN statistics, so the eval-mode BN is really exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    made = {}

    def get(name):
        if name not in made:
            recipe, arch, fmt, views, size, dynamic, batch, kind = CASES[name]
            root = tmp_path_factory.mktemp(name)
            ckpt = random_checkpoint(root / "random.pth", recipe, arch)
            cfg = load_config(recipe, [f"model.arch={arch}"] + (FLOW_NORM if recipe == FLOW else []))
            tsn = load_tsn(cfg, str(ckpt))
            spec = spec_for(cfg, fmt, views=views, batch=batch, size=size, input=kind, dynamic_batch=dynamic)
            path = export_model(wrap(tsn, cfg, kind), spec, root / ("model.onnx" if fmt == "onnx" else "model.pt"))
            made[name] = (cfg, tsn, spec, path, ckpt)
        return made[name]
    return get


def run_file(path, fmt, clips: np.ndarray) -> np.ndarray:
    """The exported file run by its own runtime, not through jobs.exporting."""
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: clips})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path))
    with torch.no_grad():
        return module(torch.from_numpy(clips)).numpy()


def hand_logits(tsn, clips: np.ndarray, mean, std, normalise: bool) -> np.ndarray:
    """Eager TSN written out: per-channel (v - mean) / std in numpy (flow: the (x, y) pair alternates over the
    channels), every view through the backbone, global average pool, mean over views, then the FC."""
    b, v, c, h, w = clips.shape
    x = clips.astype(np.float64)
    if normalise:
        m = np.array([mean[i % len(mean)] for i in range(c)]).reshape(1, 1, c, 1, 1)
        s = np.array([std[i % len(std)] for i in range(c)]).reshape(1, 1, c, 1, 1)
        x = (x - m) / s
    with torch.no_grad():
        feats = tsn.backbone(torch.from_numpy(x.astype(np.float32)).reshape(b * v, c, h, w))   # (B*V, F, h', w')
        pooled = feats.mean(dim=(2, 3)).reshape(b, v, -1)                                        # (B, V, F)
        return tsn.head.fc(pooled.mean(dim=1)).numpy()                                           # (B, K)


@pytest.mark.parametrize("name", list(CASES))
def test_exported_graph_matches_hand_computed_eager(exported, name):
    cfg, tsn, spec, path, _ = exported(name)
    b = spec.batch + 2 if spec.dynamic_batch else spec.batch          # dynamic: another B than the traced one
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (b, *spec.shape[1:]), dtype=np.uint8)
    if spec.input == "uint8":
        got, want = run_file(path, spec.format, pixels), hand_logits(tsn, pixels, spec.mean, spec.std, True)
    else:                        # float input: the caller normalises, the graph must not do it again
        m = np.array([spec.mean[i % len(spec.mean)] for i in range(spec.channels)]).reshape(1, 1, -1, 1, 1)
        s = np.array([spec.std[i % len(spec.std)] for i in range(spec.channels)]).reshape(1, 1, -1, 1, 1)
        x = ((pixels - m) / s).astype(np.float32)
        got, want = run_file(path, spec.format, x), hand_logits(tsn, x, spec.mean, spec.std, False)
    assert got.shape == (b, cfg.model.num_classes)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert np.abs(want).max() > 1e-3          # the comparison is not between two near-zero arrays


@pytest.mark.parametrize("name", list(CASES))
def test_verify_passes_and_metadata_round_trips(exported, name):
    cfg, tsn, spec, path, _ = exported(name)
    checks = verify(path, spec, tsn, cfg.normalize)
    assert [c.batch for c in checks] == ([1, 3] if spec.dynamic_batch else [spec.batch])
    assert all(c.ok and c.max_abs_diff <= 1e-4 * c.scale for c in checks)
    assert read_spec(path, spec.format) == spec


def test_onnx_signature_is_uint8_clips_with_a_free_batch(exported):
    *_, path, _ = exported("r50-flow-onnx")
    graph = onnx.load(str(path)).graph
    (clips,), (logits,) = graph.input, graph.output
    dims = clips.type.tensor_type.shape.dim
    assert clips.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert dims[0].dim_param and not dims[0].dim_value                       # symbolic batch
    assert [d.dim_value for d in dims[1:]] == [2, 10, 64, 64]                # V, C = 2 * clip_len 5, H, W
    assert logits.type.tensor_type.shape.dim[1].dim_value == 12


def _scale_first_conv_onnx(src, dst, factor):
    model = onnx.load(str(src))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    init = next(i for i in model.graph.initializer if i.name == conv.input[1])
    weight = onnx.numpy_helper.to_array(init) * factor
    init.CopyFrom(onnx.numpy_helper.from_array(weight.astype(np.float32), init.name))
    onnx.save(model, str(dst))


def test_tampered_onnx_weights_fail_verify(exported, tmp_path):
    cfg, tsn, spec, path, _ = exported("r18-rgb-onnx")
    bad = tmp_path / "tampered.onnx"
    _scale_first_conv_onnx(path, bad, 1.05)
    with pytest.raises(VerifyFailed, match="max abs difference") as err:
        verify(bad, spec, tsn, cfg.normalize)
    assert str(bad) in str(err.value)


def test_tampered_torchscript_weights_fail_verify(exported, tmp_path):
    cfg, tsn, _, path, _ = exported("r50-rgb-torchscript")
    extra = {"tsn.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), _extra_files=extra)
        with torch.no_grad():
            module.tsn.head.fc.bias.add_(0.5)          # shifts every logit of class k by the same amount
        bad = tmp_path / "tampered.pt"
        torch.jit.save(module, str(bad), _extra_files=extra)
    with pytest.raises(VerifyFailed, match="max abs difference 0.5"):
        verify(bad, read_spec(bad, "torchscript"), tsn, cfg.normalize)


def test_real_clip_from_the_test_loader(exported, synthetic_root):
    _, tsn, spec, path, _ = exported("r18-rgb-onnx")       # exported at the recipe's 56 x 56, 3 of its 25 views
    cfg = load_config(RGB, synthetic_overrides(synthetic_root))
    real, note = real_clips(cfg, spec)
    assert real is not None, note
    assert real.dtype == torch.uint8 and tuple(real.shape) == (1, 3, 3, 56, 56)
    assert int(real.max()) > int(real.min())                # real pixels, not padding
    checks = verify(path, spec, tsn, cfg.normalize, real=real)
    assert checks[-1].name == "real clip" and checks[-1].ok


def test_real_clip_skipped_without_data(exported, tmp_path):
    _, _, spec, _, _ = exported("r18-rgb-onnx")
    missing = tmp_path / "no_list.txt"
    real, note = real_clips(load_config(RGB, [f"data.test_list={missing}"]), spec)
    assert real is None and "skipped" in note and str(missing) in note


@pytest.mark.parametrize("recipe, views, channels, side", [
    ("tsn_r50_test_256p_1x1x25_10crop_100e_kinetics400_rgb", 25, 3, 224),    # 25 clips x 1 frame, per crop set
    ("tsn_r50_320p_1x1x8_110e_kinetics400_flow", 25, 10, 224),               # 25 clips of 5 flow frames
    ("tsn_r50_1x1x3_100e_kinetics400_rgb", 25, 3, 224),
    (RGB, 25, 3, 56),
])
def test_default_input_follows_the_recipe_test_protocol(recipe, views, channels, side):
    spec = spec_for(load_config(recipe), "onnx")
    assert (spec.views, spec.channels, spec.height, spec.width, spec.batch) == (views, channels, side, side, 1)
    assert spec.input == "uint8" and not spec.dynamic_batch


def test_checkpoint_errors_name_the_file_and_the_cause(exported, tmp_path):
    *_, ckpt = exported("r18-rgb-onnx")
    r50 = load_config(RGB, ["model.arch=resnet50"])
    with pytest.raises(CheckpointError, match=f"{ckpt}: does not fit the model \\(resnet50"):
        load_tsn(r50, str(ckpt))                                  # an r18 checkpoint does not fit an r50 recipe
    missing = tmp_path / "none.pth"
    with pytest.raises(CheckpointError, match=f"^{missing}: checkpoint not found$"):
        load_tsn(load_config(RGB), str(missing))
