"""The shape of one video's clip, derived once from the sampler, the augmentation and the modality.

Everything that needs to know how many images a video decodes into, how they become network views, or the size of a
view asks a `ClipLayout` (the graph, the source, the loader, `tsn test`, `tsn predict`, the profiler) instead of
re-deriving it.

Legend: clips = sampler.num_offsets (segments, or dense positions x clips), L = clip_len, crops = 1 | 3 | 10.
  decoded images per video   clips * L       (RGB)     clips * L * 2 (flow: x and y images interleaved)
  views per crop             clips * L       (RGB: every frame is a view)   clips (flow: L frames stack into one)
  channels per view          3               (RGB)     2 * L (flow: [x_t, y_t, x_t+1, y_t+1, ...])
The loader's batch is (B, crops * views_per_crop, channels, out_h, out_w), crop-major like MMAction2's
`FormatShape('NCHW')` after TenCrop/ThreeCrop (mmaction/datasets/pipelines/formatting.py, v0.24.1).
"""
from __future__ import annotations

from dataclasses import dataclass

from .geometry import Augment, output_size
from .sampling import Sampler


def fixed_output_size(aug: Augment) -> tuple[int, int]:
    """(w, h) of every view (geometry.output_size), which must not follow the image: one shape per batch."""
    size = output_size(aug)
    if size is None:
        if aug.crop == "none":
            raise ValueError("crop 'none' gives one shape per batch only with resize 'fixed'")
        raise ValueError("multiscale / random_resized crops need out_size so a batch has one shape")
    return size


def box_groups(augment: Augment) -> tuple[tuple[int, ...], ...]:
    """Crop indices that share one box, in view order: TenCrop's (box, mirrored copy) pairs; one crop each otherwise.

    The graph resamples each box once and flips the copy: half the resampling work of a 10-crop test.
    """
    if augment.crop == "ten":
        return tuple((c, c + 1) for c in range(0, augment.num_crops, 2))
    return tuple((c,) for c in range(augment.num_crops))


@dataclass(frozen=True)
class ClipLayout:
    clips: int                  # temporal offsets per video (Sampler.num_offsets)
    clip_len: int
    crops: int                  # spatial views per frame: 1, 3 (ThreeCrop) or 10 (TenCrop)
    flow: bool
    out_w: int
    out_h: int
    groups: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, sampler: Sampler, augment: Augment, *, flow: bool) -> ClipLayout:
        w, h = fixed_output_size(augment)
        return cls(sampler.num_offsets, sampler.clip_len, augment.num_crops, flow, w, h, box_groups(augment))

    @property
    def images_per_view(self) -> int:
        """Decoded images stacked into one view: 2 * L grey flow images, or 1 RGB frame."""
        return 2 * self.clip_len if self.flow else 1

    @property
    def frames_per_video(self) -> int:
        """Images a frame-level reader hands DALI per video (one DALI sample each)."""
        return self.clips * self.clip_len * (2 if self.flow else 1)

    @property
    def views_per_crop(self) -> int:
        return self.clips * (1 if self.flow else self.clip_len)

    @property
    def views(self) -> int:
        return self.crops * self.views_per_crop

    @property
    def channels(self) -> int:
        return 2 * self.clip_len if self.flow else 3
