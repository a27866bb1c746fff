"""Deployable TSN graphs: ONNX and TorchScript exports of a checkpoint, and their check against PyTorch eager.

The exported model takes the pipeline's clip layout `(B, V, C, H, W)` (uint8 by default, normalised inside the
graph with the recipe's mean/std) and returns logits `(B, num_classes)` with TSN's segment consensus inside
(docs/EXPORT.md). Library code for `tsn export` (jobs/export.py).
"""
from jobs.exporting.formats import export_model, read_spec
from jobs.exporting.spec import FORMATS, INPUTS, ExportError, ExportSpec, VerifyFailed, spec_for
from jobs.exporting.verify import DEFAULT_RTOL, Check, real_clips, verify
from jobs.exporting.wrapper import ExportedTSN, load_tsn, wrap

__all__ = ["DEFAULT_RTOL", "FORMATS", "INPUTS", "Check", "ExportError", "ExportSpec", "ExportedTSN",
           "VerifyFailed", "export_model", "load_tsn", "read_spec", "real_clips", "spec_for", "verify", "wrap"]
