"""Deployable TSN graphs: ONNX and TorchScript exports of a checkpoint, and their check against PyTorch eager.

The exported model takes the pipeline's clip layout `(B, V, C, H, W)` (uint8 by default, normalised inside the
graph with the recipe's mean/std) and returns logits `(B, num_classes)` with TSN's segment consensus inside
(docs/EXPORT.md). Library code for `tsn export` (jobs/export.py): spec.py (what is exported, torch-free),
wrapper.py (the model in its export wrapper), formats.py (writing and reading the files), verify.py (the checks).
"""
