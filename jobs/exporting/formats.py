"""Per format: write the graph with its ExportSpec inside, read the spec back, and run the file.

ONNX: torch.onnx.export (the torch.export-based exporter), weights inside the one .onnx file, the spec as the
model's metadata_props["tsn"]; run with onnxruntime's CPU provider. TorchScript: torch.jit.trace (TSN has no
data-dependent control flow), the spec as the extra file "tsn.json"; run with torch.jit.load.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from jobs.exporting.spec import ExportError, ExportSpec
from jobs.exporting.wrapper import ExportedTSN

METADATA_KEY = "tsn"          # ONNX metadata_props key
EXTRA_FILE = "tsn.json"       # TorchScript extra file
INPUT_NAME, OUTPUT_NAME = "clips", "logits"


@contextlib.contextmanager
def _quiet():
    """torch.jit warns it is deprecated on every call and the ONNX exporter prints its progress: keep the
    command's output to its own lines."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def example_input(spec: ExportSpec, batch: int | None = None, seed: int = 0) -> torch.Tensor:
    """Random clips of the spec's shape and dtype: uint8 pixels in [0, 255], or float32 N(0, 1) (normalised)."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch or spec.batch, *spec.shape[1:])
    if spec.input == "uint8":
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    return torch.randn(shape, generator=g)


def export_model(module: ExportedTSN, spec: ExportSpec, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    x = example_input(spec)
    with torch.no_grad(), _quiet():
        if spec.format == "onnx":
            _export_onnx(module, spec, x, out)
        else:
            traced = torch.jit.trace(module, (x,))
            torch.jit.save(traced, str(out), _extra_files={EXTRA_FILE: spec.to_json()})
    return out


def _export_onnx(module: ExportedTSN, spec: ExportSpec, x: torch.Tensor, out: Path):
    import onnx
    dynamic = ({0: torch.export.Dim("batch", min=1)},) if spec.dynamic_batch else None
    try:
        program = torch.onnx.export(module, (x,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=dynamic, external_data=False, verbose=False, dynamo=True)
    except Exception as err:   # the exporter raises many types; say which model failed and why
        raise ExportError(f"{out}: torch.onnx.export failed: {err}") from err
    model = program.model_proto
    onnx.helper.set_model_props(model, {METADATA_KEY: spec.to_json()})
    onnx.save_model(model, str(out))


def read_spec(path: str | Path, fmt: str) -> ExportSpec:
    """The ExportSpec stored in an exported file (written by export_model)."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such exported model")
    if fmt == "onnx":
        import onnx
        try:
            model = onnx.load_model(str(path), load_external_data=False)
        except Exception as err:     # protobuf DecodeError and friends
            raise ExportError(f"{path}: not an ONNX model ({err})") from None
        props = {p.key: p.value for p in model.metadata_props}
        if METADATA_KEY not in props:
            raise ExportError(f"{path}: no '{METADATA_KEY}' metadata; not written by `tsn export`")
        return ExportSpec.from_json(props[METADATA_KEY], str(path))
    files = {EXTRA_FILE: ""}
    try:
        with _quiet():
            torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    except (RuntimeError, ValueError) as err:
        raise ExportError(f"{path}: not a TorchScript archive ({err})") from None
    if not files[EXTRA_FILE]:
        raise ExportError(f"{path}: no {EXTRA_FILE} inside; not written by `tsn export`")
    return ExportSpec.from_json(files[EXTRA_FILE].decode(), str(path))


def load_runner(path: str | Path, fmt: str) -> Callable[[np.ndarray], np.ndarray]:
    """The exported file as a function (B, V, C, H, W) array -> (B, K) float32 logits."""
    if fmt == "onnx":
        import onnxruntime as ort
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda clips: session.run(None, {name: clips})[0]
    with _quiet():
        module = torch.jit.load(str(path), map_location="cpu")

    def run(clips: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(clips)).numpy()
    return run
