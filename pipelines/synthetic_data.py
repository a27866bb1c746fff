"""Synthetic two-stream action dataset in the real MMAction2 on-disk formats.

Each video shows one textured disc drifting in a straight line over a static, noisy,
textured background. The class is the pair (colour c, direction d) with
``label = c * num_directions + d`` and name ``f"{colour}_{direction}"``. The design makes
the two TSN streams complementary:

* RGB: a single frame is equally likely under every direction (same shape for every class,
  start position uniform on a torus and the disc wraps around the borders, so position says
  nothing), so an order-less average over sparse frames sees colour but not direction.
* Flow: the flow is the true geometric displacement and ignores colour; speed (2-3 px per
  frame), radius (12-16 % of the short side) and angle (+-8 deg) jitter are drawn the same way
  for all colours, so flow sees direction only. Colour gets mild jitter, the background is
  smooth grey-ish blobs plus grain, and every frame gets fresh luma noise.

Flow frame t pairs RGB frames t and t+1 (both 1-based on disk). Its value is the object's
displacement ``(dx, dy)`` in image coordinates (x right, y down) inside the object region
of frame t and 0 elsewhere, quantised like TV-L1/denseflow output with bound 20:
``round((clip(f, -20, 20) + 20) * 255 / 40)``, so zero motion maps to 128. (MMAction2's
``tools/flow_extraction.py`` truncates instead, giving 127; rounding is deliberate here.)

Layout (paths inside lists are relative to ``out/rawframes`` or ``out/videos``)::

    classes.txt
    rawframes/<vid>/img_00001.jpg ...          RGB, start_index 1, template img_{:05}.jpg
    rawframes/<vid>/x_00001.jpg, y_00001.jpg   flow, template {}_{:05d}.jpg, num_frames-1 each
    videos/<vid>.mp4  videos/<vid>.webm        H.264 (B-frames, GOP 12) and VP9, 25 fps
    {train,val}_list_rawframes.txt  "<vid> <num_frames> <label>"
    {train,val}_list_flow.txt       "<vid> <num_frames-1> <label>"
    {train,val}_list_videos.txt     "<vid>.mp4 <label>"
    {train,val}_list_videos_vp9.txt "<vid>.webm <label>"
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from .spawn import spawn_map

FLOW_BOUND = 20.0
FPS = 25
GOP = 12
JPEG_QUALITY = 90
SPEED_RANGE = (2.0, 3.0)  # px/frame: flow 141..147 vs 128, clearly non-zero after JPEG
ANGLE_JITTER_DEG = 8.0  # small enough that the direction class stays unambiguous
NOISE_SIGMA = 2.0  # per-frame sensor noise; more mostly inflates the encoded videos
SPLITS = ("train", "val")

PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (220, 40, 40)),
    ("green", (40, 190, 60)),
    ("blue", (50, 80, 230)),
    ("yellow", (230, 210, 40)),
    ("magenta", (210, 50, 210)),
    ("cyan", (40, 200, 210)),
    ("orange", (240, 140, 30)),
    ("purple", (120, 50, 190)),
)
# Angles in degrees, counter-clockwise from "right" as seen on screen (y up for naming only).
COMPASS = {0: "right", 45: "upright", 90: "up", 135: "upleft", 180: "left",
           225: "downleft", 270: "down", 315: "downright"}


@dataclass(frozen=True)
class SyntheticSpec:
    seed: int = 0
    num_colours: int = 3
    num_directions: int = 4
    train_per_class: int = 16
    val_per_class: int = 6
    num_frames: int = 24  # RGB frames per video (flow has num_frames - 1)
    width: int = 80
    height: int = 64
    videos: bool = True  # also write H.264 .mp4 and VP9 .webm

    def __post_init__(self):
        if not 1 <= self.num_colours <= len(PALETTE):
            raise ValueError(f"num_colours must be in 1..{len(PALETTE)}")
        if self.num_directions < 1:
            raise ValueError("num_directions must be >= 1")
        if self.train_per_class < 1 or self.val_per_class < 0:
            raise ValueError("need train_per_class >= 1 and val_per_class >= 0")
        if self.num_frames < 2:
            raise ValueError("num_frames must be >= 2 (flow needs a frame pair)")
        # yuv420p halves both axes, so the codecs need even sizes.
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError("width and height must be even and >= 16")

    @property
    def num_classes(self) -> int:
        return self.num_colours * self.num_directions


@dataclass(frozen=True)
class VideoParams:
    """Everything that defines one video; the flow test reads velocity/start from here."""

    vid: str
    split: str
    label: int
    colour: tuple[float, float, float]  # jittered RGB albedo
    radius: float
    start: tuple[float, float]  # disc centre (x, y) in frame 0, pixels
    velocity: tuple[float, float]  # (dx, dy) per frame, image coordinates (y down)
    render_entropy: tuple[int, ...]  # seeds the background/texture/noise generator


def direction_angle(d: int, num_directions: int) -> float:
    return 360.0 * d / num_directions


def direction_name(d: int, num_directions: int) -> str:
    deg = direction_angle(d, num_directions)
    return COMPASS.get(int(deg), f"deg{deg:g}") if deg.is_integer() else f"deg{deg:g}"


def class_names(spec: SyntheticSpec) -> list[str]:
    return [f"{PALETTE[c][0]}_{direction_name(d, spec.num_directions)}"
            for c in range(spec.num_colours) for d in range(spec.num_directions)]


def quantise_flow(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """denseflow-style 8-bit flow with rounding: 0 px -> 128, -bound -> 0, +bound -> 255."""
    return np.round((np.clip(flow, -bound, bound) + bound) * 255.0 / (2 * bound)).astype(np.uint8)


def plan_videos(spec: SyntheticSpec) -> list[VideoParams]:
    """Deterministic per-video parameters; each video has its own seed stream, so the result
    does not depend on generation order or on how the work is split across processes."""
    videos = []
    for split_id, split in enumerate(SPLITS):
        per_class = spec.train_per_class if split == "train" else spec.val_per_class
        labels = np.repeat(np.arange(spec.num_classes), per_class)
        # Shuffle so video index does not reveal the label (and lists are not sorted by class).
        labels = np.random.default_rng([spec.seed, split_id, 1 << 20]).permutation(labels)
        for i, label in enumerate(labels.tolist()):
            rng = np.random.default_rng([spec.seed, split_id, i, 0])
            c, d = divmod(label, spec.num_directions)
            base = np.array(PALETTE[c][1], dtype=np.float64)
            colour = np.clip(base * rng.uniform(0.85, 1.1) + rng.uniform(-15, 15, 3), 0, 255)
            # Jitter stays within a quarter of the class spacing, so directions never overlap.
            jitter = min(ANGLE_JITTER_DEG, 90.0 / spec.num_directions)
            angle = math.radians(direction_angle(d, spec.num_directions)
                                 + rng.uniform(-jitter, jitter))
            speed = rng.uniform(*SPEED_RANGE)
            short = min(spec.width, spec.height)
            videos.append(VideoParams(
                vid=f"{split}_{i:04d}", split=split, label=label,
                colour=tuple(float(v) for v in colour),
                radius=float(rng.uniform(0.12, 0.16) * short),
                start=(float(rng.uniform(0, spec.width)), float(rng.uniform(0, spec.height))),
                # Screen "up" is negative y in image coordinates.
                velocity=(speed * math.cos(angle), -speed * math.sin(angle)),
                render_entropy=(spec.seed, split_id, i, 1)))
    return videos


def object_centres(p: VideoParams, spec: SyntheticSpec) -> np.ndarray:
    """(num_frames, 2) disc centres (x, y), wrapped onto the frame torus."""
    t = np.arange(spec.num_frames, dtype=np.float64)[:, None]
    pos = np.array(p.start) + t * np.array(p.velocity)
    return np.mod(pos, [spec.width, spec.height])


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    # Smooth low-saturation blobs plus static grain: texture without a colour cue.
    lw, lh = max(2, w // 8), max(2, h // 8)
    lum = rng.uniform(70, 180, (lh, lw, 1))
    tint = rng.uniform(-12, 12, (lh, lw, 3))
    low = np.clip(lum + tint, 0, 255).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), dtype=np.float32)
    return smooth + rng.normal(0, 6, (h, w, 1)).astype(np.float32)


def render_video(p: VideoParams, spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    """Returns RGB (T, H, W, 3) uint8 and quantised flow (T-1, H, W, 2) uint8 (x, y)."""
    rng = np.random.default_rng(list(p.render_entropy))
    w, h, t_len = spec.width, spec.height, spec.num_frames
    bg = _background(rng, w, h)
    centres = object_centres(p, spec)
    # Signed offsets to the nearest (wrapped) copy of the centre, per frame; kept separable
    # (T, 1, W) and (T, H, 1) so the trigonometry below runs on small arrays.
    du = np.mod(np.arange(w)[None, None, :] - centres[:, 0, None, None] + w / 2, w) - w / 2
    dv = np.mod(np.arange(h)[None, :, None] - centres[:, 1, None, None] + h / 2, h) - h / 2
    du, dv = du.astype(np.float32), dv.astype(np.float32)
    dist = np.sqrt(du * du + dv * dv)  # (T, H, W)
    coverage = np.clip(p.radius + 0.5 - dist, 0.0, 1.0)  # anti-aliased edge
    # Texture that moves with the disc so real flow estimators would have something to track;
    # it is brightness-only so the hue (the colour class) is preserved.
    k1, k2 = 2 * np.pi / rng.uniform(5, 9, 2)
    ph1, ph2 = rng.uniform(0, 2 * np.pi, 2)
    shade = (0.875 + 0.125 * np.sin(k1 * du + ph1) * np.sin(k2 * dv + ph2)).astype(np.float32)
    # Luma-only uniform sensor noise with std NOISE_SIGMA (uniform and one plane: Gaussian RGB
    # noise was the slowest step), +0.5 so the uint8 cast rounds; the true flow ignores it.
    noise = (rng.random((t_len, h, w), dtype=np.float32) - 0.5) * (NOISE_SIGMA * 12**0.5) + 0.5
    rgb = np.empty((t_len, h, w, 3), dtype=np.uint8)
    for c in range(3):  # one channel plane at a time: ~7x faster than broadcasting over (..., 3)
        plane = bg[..., c] + coverage * (shade * np.float32(p.colour[c]) - bg[..., c])
        plane += noise
        rgb[..., c] = np.clip(plane, 0, 255, out=plane)

    # Flow of frame t: the disc's displacement inside its region at frame t, 0 elsewhere
    # (the background is static). Quantising the two constants first is exact and cheap.
    flow = np.empty((t_len - 1, h, w, 2), dtype=np.uint8)
    flow[:] = quantise_flow(np.zeros(2))
    flow[dist[:-1] <= p.radius] = quantise_flow(np.array(p.velocity))
    return rgb, flow


def _encode(path: Path, codec: str, options: dict[str, str], rgb: np.ndarray) -> None:
    with av.open(str(path), "w", options=CONTAINER_OPTIONS) as container:
        stream = container.add_stream(codec, rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = rgb.shape[2], rgb.shape[1], "yuv420p"
        for i, img in enumerate(rgb):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i  # constant frame rate: one tick of 1/FPS per frame
            container.mux(stream.encode(frame))
        container.mux(stream.encode())  # flush delayed (B-)frames


# Bit-exact output across runs, all measured: threads=1; rc-lookahead=0 and mbtree=0 because
# with x264's lookahead the stream of these small frames differed run to run (also gone with
# asm=0, so likely SIMD reads of uninitialised row padding); container "+bitexact" drops the
# random Matroska UIDs. b-adapt=0
# gives a fixed I B B P pattern, so B-frames are guaranteed whatever the content, and
# scenecut=0 keeps the GOP at exactly 12. (preset ultrafast would disable B-frames.)
H264_OPTIONS = {"preset": "veryfast", "crf": "18", "bf": "2", "g": str(GOP), "sc_threshold": "0",
                "threads": "1", "x264-params": "rc-lookahead=0:mbtree=0:b-adapt=0"}
VP9_OPTIONS = {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8",
               "g": str(GOP), "threads": "1"}
CONTAINER_OPTIONS = {"fflags": "+bitexact"}


def _write_video(out: str, spec: SyntheticSpec, p: VideoParams) -> None:
    rgb, flow = render_video(p, spec)
    frame_dir = Path(out) / "rawframes" / p.vid
    frame_dir.mkdir(parents=True, exist_ok=True)
    for t, img in enumerate(rgb, start=1):
        Image.fromarray(img).save(frame_dir / f"img_{t:05d}.jpg", quality=JPEG_QUALITY)
    for t, f in enumerate(flow, start=1):
        for axis, name in enumerate("xy"):
            Image.fromarray(f[..., axis]).save(frame_dir / f"{name}_{t:05d}.jpg", quality=JPEG_QUALITY)
    if spec.videos:
        vdir = Path(out) / "videos"
        _encode(vdir / f"{p.vid}.mp4", "libx264", H264_OPTIONS, rgb)
        _encode(vdir / f"{p.vid}.webm", "libvpx-vp9", VP9_OPTIONS, rgb)


def _write_chunk(out: str, spec: SyntheticSpec, chunk: list[VideoParams]) -> None:
    for p in chunk:
        _write_video(out, spec, p)


def _write_lists(out: Path, spec: SyntheticSpec, videos: list[VideoParams]) -> dict[str, str]:
    paths = {}
    for split in SPLITS:
        vs = [p for p in videos if p.split == split]
        lines = {
            "rawframes": [f"{p.vid} {spec.num_frames} {p.label}" for p in vs],
            "flow": [f"{p.vid} {spec.num_frames - 1} {p.label}" for p in vs],
        }
        if spec.videos:
            lines["videos"] = [f"{p.vid}.mp4 {p.label}" for p in vs]
            lines["videos_vp9"] = [f"{p.vid}.webm {p.label}" for p in vs]
        for kind, rows in lines.items():
            path = out / f"{split}_list_{kind}.txt"
            path.write_text("".join(r + "\n" for r in rows))
            paths[f"{split}_{kind}"] = str(path)
    return paths


def make_synthetic_dataset(out: str | Path, spec: SyntheticSpec = SyntheticSpec(),
                           *, workers: int = 1) -> dict:
    """Writes the dataset under ``out`` (created if needed; existing files are overwritten,
    unrelated ones left alone) and returns a summary: root, classes, list paths, counts.

    ``workers > 1`` renders and encodes in that many spawned processes. The output is
    byte-identical for any worker count (every video has its own seed), but spawn re-imports
    the caller's ``__main__``, so a calling script needs an ``if __name__ == "__main__"``
    guard; the default stays in-process because the default spec takes only seconds.
    """
    out = Path(out)
    (out / "rawframes").mkdir(parents=True, exist_ok=True)
    if spec.videos:
        (out / "videos").mkdir(parents=True, exist_ok=True)
    names = class_names(spec)
    (out / "classes.txt").write_text("".join(n + "\n" for n in names))
    videos = plan_videos(spec)

    workers = max(1, min(workers, len(videos) // 8))  # tiny jobs: process start-up dominates
    chunks = [videos[i::workers] for i in range(workers)]
    # the one spawn pool (pipelines/spawn.py): callers may already hold CUDA contexts, DALI or torch thread pools
    for _ in spawn_map(functools.partial(_write_chunk, str(out), spec), chunks, workers):
        pass

    return {
        "root": str(out), "classes_file": str(out / "classes.txt"), "classes": names,
        "num_classes": spec.num_classes, "num_frames": spec.num_frames,
        "rawframes_root": str(out / "rawframes"),
        "videos_root": str(out / "videos") if spec.videos else None,
        "lists": _write_lists(out, spec, videos),
        "counts": {s: sum(p.split == s for p in videos) for s in SPLITS},
    }
