"""The CPU host-resample path of RGB frame pipelines: integer crop boxes are resampled by the loader, not by DALI.

On the CPU backend DALI's resize cost more than JPEG decoding itself, while torch's uint8 bilinear kernel does the
same arithmetic several times cheaper (docs/PERFORMANCE.md). So, per crop box and sample:
  * a fractional box (RandomResizedCrop after a resize, a truncated CenterCrop) is still resampled in the graph, once,
    unflipped, at the output size;
  * an integer box leaves the graph as decoded pixels plus its corner/extent, and `assemble` cuts and resamples it
    here with OpenCV's INTER_LINEAR: bilinear, half-pixel centres, no antialias (DALI's rule too);
  * every view is flipped by its own flag while it is written into the batch.
`pipelines.graph.plan_graph` is the one place that chooses this path; this module holds both halves of it (the graph
branch and the loader's assembly) so that the meaning of its outputs is defined once.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from nvidia.dali import fn, types

from .layout import ClipLayout

PER_BOX = ("resized", "sliced", "corner", "extent")


def output_names(layout: ClipLayout) -> tuple[str, ...]:
    """frames (N, H, W, 3) as decoded; per box u: resized{u} (N, out_h, out_w, 3) or a 1 x 1 placeholder, sliced{u}
    (N,) bool, corner{u} (N, 2) xy, extent{u} (N, 2) wh; per crop c: mirror{c} (N,); index (N,)."""
    boxes = range(len(layout.groups))
    names = ["frames"] + [f"{kind}{u}" for kind in PER_BOX for u in boxes]
    return (*names, *(f"mirror{c}" for c in range(layout.crops)), "index")


def graph_outputs(images, nodes: dict, layout: ClipLayout) -> dict:
    """The graph half: every output above except index, as DALI nodes."""
    out = {"frames": images}
    for u in range(len(layout.groups)):
        # Each branch binds one name: DALI's conditionals merge names. An integer box still has to yield a node: a
        # 1 x 1 placeholder the loader ignores.
        if nodes[f"sliced{u}"]:
            resized = fn.slice(images, nodes[f"corner{u}"], [1, 1], axes=[1, 0])
        else:
            resized = fn.resize(images, roi_start=nodes[f"roi_start{u}"], roi_end=nodes[f"roi_end{u}"],
                                resize_x=layout.out_w, resize_y=layout.out_h, interp_type=types.INTERP_LINEAR,
                                antialias=False)
        out[f"resized{u}"] = resized
        for kind in ("sliced", "corner", "extent"):
            out[f"{kind}{u}"] = nodes[f"{kind}{u}"]
    for c in range(layout.crops):
        out[f"mirror{c}"] = nodes[f"mirror{c}"]
    return out


def _numpy(tensor_list) -> np.ndarray:
    """A zero-copy (N, ...) view of a dense CPU output; valid until the next run()."""
    return torch.from_dlpack(tensor_list.as_tensor()).numpy()


def _resample(hwc: np.ndarray, w: int, h: int) -> np.ndarray:
    """(h_i, w_i, 3) uint8 -> (3, h, w) uint8 (a transposed view when the size already matches).

    OpenCV's INTER_LINEAR is the resample MMAction2 itself uses (mmcv.imresize, cv2 backend): half-pixel centres, no
    antialias, fixed-point uint8; measured 2x cheaper than torch's uint8 bilinear kernel on 224 x 224 outputs."""
    if hwc.shape[:2] == (h, w):
        return hwc.transpose(2, 0, 1)
    return cv2.resize(hwc, (w, h), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)


def assemble(named: dict, layout: ClipLayout, videos: int) -> torch.Tensor:
    """The loader half: named CPU outputs of one batch -> (B, V, 3, H, W) uint8 clips.

    Each view is written once, transposed, into its slot (one strided numpy copy: measured 2.5x cheaper than torch's
    permuted copy_ here). Multi-crop protocols transpose each frame once and copy plain blocks out of it (25 x 10
    views: 20.6 -> 27.4 videos/s measured).
    """
    w, h, vpc = layout.out_w, layout.out_h, layout.views_per_crop
    frames = named["frames"]
    flags = [_numpy(named[f"mirror{c}"]).reshape(-1).tolist() for c in range(layout.crops)]
    per_box = [tuple(_numpy(named[f"{kind}{u}"]) for kind in ("sliced", "corner", "extent"))
               for u in range(len(layout.groups))]
    resized = [named[f"resized{u}"] for u in range(len(layout.groups))]
    out = torch.empty((videos, layout.crops, vpc, 3, h, w), dtype=torch.uint8)
    dst = out.numpy()
    # One sample at a time, one thread: parallel kernels would only spin on 224 x 224 images (measured: 2x the CPU
    # with torch's intra-op threads); DALI's threads and workers already use the other cores.
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for i in range(videos * vpc):
            video, frame = divmod(i, vpc)
            chw = None          # the frame transposed once when several views are cut from it (3x faster)
            for u, members in enumerate(layout.groups):
                cut, xy, wh = per_box[u]
                if not cut[i]:
                    pixels = np.asarray(resized[u][i]).transpose(2, 0, 1)
                elif layout.crops > 1 and tuple(wh[i]) == (w, h):
                    if chw is None:
                        chw = np.ascontiguousarray(np.asarray(frames[i]).transpose(2, 0, 1))
                    x, y = xy[i]
                    pixels = chw[:, y:y + h, x:x + w]
                else:
                    (x, y), (bw, bh) = xy[i], wh[i]
                    pixels = _resample(np.asarray(frames[i])[y:y + bh, x:x + bw], w, h)
                for c in members:
                    np.copyto(dst[video, c, frame], pixels[:, :, ::-1] if flags[c][i] else pixels)
    finally:
        cv2.setNumThreads(threads)
    return out.view(videos, layout.views, 3, h, w)


def cut_views(frames: list[np.ndarray], views, layout: ClipLayout) -> list[list[np.ndarray]]:
    """The views of one video's decoded frames, cut where they were decoded (a DALI Python worker): per crop, one
    (out_h, out_w, 3) uint8 array per frame, already flipped. pipelines/plan.py chooses this for PyAV frames.

    The same arithmetic as the rest of this module and the graph: a plain integer crop is sliced, another integer box
    is cut and resampled with OpenCV's INTER_LINEAR, a fractional box is resampled straight from source coordinates
    (cv2.warpAffine with half-pixel centres: src = box_start + (dst + 0.5) * scale - 0.5, edge pixels repeated, as
    DALI's ROI resize does). Views that share a box (TenCrop's mirrored copies) are resampled once.
    """
    w, h = layout.out_w, layout.out_h
    out = [[] for _ in range(layout.crops)]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)          # the worker processes are the parallelism
    try:
        for frame in frames:
            for members in layout.groups:
                view = views[members[0]]
                pixels = _cut(frame, view.box, w, h)
                for c in members:
                    out[c].append(np.ascontiguousarray(pixels[:, ::-1]) if views[c].mirror else pixels)
    finally:
        cv2.setNumThreads(threads)
    return out


def _cut(frame: np.ndarray, box, w: int, h: int) -> np.ndarray:
    x1, y1, x2, y2 = box
    if all(float(v).is_integer() for v in box):
        x1, y1, x2, y2 = (int(v) for v in box)
        crop = frame[y1:y2, x1:x2]
        if crop.shape[:2] == (h, w):
            return np.ascontiguousarray(crop)
        return cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
    sx, sy = (x2 - x1) / w, (y2 - y1) / h
    m = np.float32([[sx, 0, x1 + 0.5 * sx - 0.5], [0, sy, y1 + 0.5 * sy - 0.5]])
    return cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
