"""Named test protocols (`tsn test --protocol ...`), as changes to a recipe's test split
(the test pipelines of MMAction2 v0.7.0 configs/recognition/tsn/*.py)."""
from __future__ import annotations

import dataclasses

from jobs.recipes.config import Config, Split
from pipelines.geometry import Augment
from pipelines.sampling import Sampler

PROTOCOLS = ("recipe", "center", "tencrop25", "threecrop25", "dense")


def with_protocol(cfg: Config, protocol: str) -> Config:
    """The recipe's test split replaced by a model-zoo protocol; the clip length (RGB 1, flow 5) is kept.

    center      the recipe's val protocol (what training-time validation reports)
    tencrop25   25 segment-centre clips x TenCrop 224 after short side 256 (250 views)
    threecrop25 25 clips x ThreeCrop 256 after short side 256 (75 views)
    dense       DenseSampleFrames 8 clips x 10 positions, CenterCrop 224 (80 views)
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "recipe":
        return cfg
    if protocol == "center":
        return dataclasses.replace(cfg, test=cfg.val)
    clip_len = cfg.test.sampler.clip_len
    if protocol == "dense":
        sampler = Sampler(clip_len=clip_len, num_clips=8, test_mode=True, dense=True)
        augment = Augment(resize="short_side", short_side=256, crop="center", crop_size=224)
    else:
        sampler = Sampler(clip_len=clip_len, num_clips=25, test_mode=True)
        ten = protocol == "tencrop25"
        augment = Augment(resize="short_side", short_side=256, crop="ten" if ten else "three",
                          crop_size=224 if ten else 256)
    return dataclasses.replace(cfg, test=Split(sampler, augment, cfg.test.steps))
