"""Views that leave the graph as one output per crop, view{c}: (N, H, W, c) images or (B, F, H, W, c) sequences,
and the loader's copy of them into the batch (variants device.py and worker_views.py)."""
from __future__ import annotations

import torch

from ..layout import ClipLayout


def view_names(layout: ClipLayout) -> tuple[str, ...]:
    return tuple(f"view{c}" for c in range(layout.crops))


def output_names(layout: ClipLayout) -> tuple[str, ...]:
    return view_names(layout) + ("index",)


def torch_view(tensor_list) -> torch.Tensor:
    """A zero-copy torch view of a DALI output; valid until the next run() (DALI reuses its buffers)."""
    return torch.from_dlpack(tensor_list.as_tensor())


def assemble(named: dict, layout: ClipLayout, videos: int) -> torch.Tensor:
    """view{c} outputs of one batch -> (B, V, C, H, W) uint8 on the pipeline's device.

    The images of one view are k consecutive samples: k = 2 * clip_len grey flow images (x, y, x, y, ...) or k = 1
    RGB frame. Each crop's (B, views, k, H, W, c) is written once, transposed, into its slot of
    (B, crops, views, k, c, H, W) = (B, crops * views, k * c, H, W): crop-major like MMAction2's lists, flow channels
    [x_t, y_t, x_t+1, ...]. One copy out of DALI's buffers, no stack / clone.
    """
    b = videos
    views = [named[name] for name in view_names(layout)]
    first = torch_view(views[0])                                   # each (N, H, W, c) or (B, F, H, W, c)
    h, w = first.shape[-3:-1]
    k, vpc = layout.images_per_view, layout.views_per_crop
    c = layout.channels // k
    out = torch.empty((b, layout.crops, vpc, k, c, h, w), dtype=first.dtype, device=first.device)
    for i, view in enumerate(views):
        src = first if i == 0 else torch_view(view)
        out[:, i].copy_(src.reshape(b, vpc, k, h, w, c).permute(0, 1, 2, 5, 3, 4))
    return out.view(b, -1, layout.channels, h, w)
