"""Frame pairs for comparing TV-L1 backends: synthetic shifts/rotations with known flow, and camera-like content.

No camera footage is available offline, so the "real-ish" content is made here and says what it is:
- a scene: 1/f ("pink") noise over five octaves (the spectrum of natural images) with an illumination gradient,
  plus 10 filled ellipses/rectangles/polygons of random grey levels carrying their own fine texture (sharp
  object edges), softened by a 0.7 px Gaussian (camera optics), in colour (per-channel gains);
- motion: the background moves by a global pan plus a smooth non-rigid field (two low-frequency sinusoids,
  up to ~1.5 px per frame), and one textured foreground ellipse moves with its own velocity (occlusions);
- sensor noise (Gaussian, sigma 2 levels) on every frame, then H.264 (libx264, constant QP 30, yuv420p) through PyAV
  and decoded back, so the pairs carry codec blocking and ringing; frames go to grey as `tsn prepare flow` does
  (cv2.COLOR_RGB2GRAY).
"""
from __future__ import annotations

import io

import numpy as np


def _cv2():
    import cv2

    return cv2


def textured_canvas(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w) float32 in 0..255: pink noise + gradient + textured shapes with sharp edges."""
    cv2 = _cv2()
    img = np.zeros((h, w), np.float32)
    for octave in range(5):
        cells = 2 ** (octave + 2)
        small = rng.standard_normal((cells * h // w + 2, cells + 2)).astype(np.float32)
        img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) / (octave + 1)
    img = (img - img.min()) / (np.ptp(img) + 1e-6) * 120 + 40
    img += np.linspace(0, 40, w, dtype=np.float32)[None, :]
    for _ in range(10):
        mask = np.zeros((h, w), np.uint8)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(max(4, min(h, w) // 12), max(6, min(h, w) // 4)))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.ellipse(mask, (cx, cy), (size, max(2, size // 2)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        elif kind == 1:
            cv2.rectangle(mask, (cx - size, cy - size // 2), (cx + size, cy + size // 2), 1, -1)
        else:
            pts = (np.array([cx, cy]) + rng.integers(-size, size, (5, 2))).astype(np.int32)
            cv2.fillPoly(mask, [pts], 1)
        fine = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.0) * 25
        img = np.where(mask > 0, float(rng.uniform(20, 235)) + fine, img)
    return cv2.GaussianBlur(np.clip(img, 0, 255), (0, 0), 0.7)


def photograph(h: int, w: int) -> np.ndarray:
    """(h, w) float32 grey 0..255: a real photograph (matplotlib's sample image grace_hopper.jpg, shipped with the
    package, so nothing is downloaded), centre-cropped to the aspect ratio and resized with INTER_AREA."""
    from matplotlib import cbook
    cv2 = _cv2()
    img = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_GRAYSCALE)
    ih, iw = img.shape
    ch, cw = (ih, int(ih * w / h)) if iw * h > ih * w else (int(iw * h / w), iw)
    y0, x0 = (ih - ch) // 2, (iw - cw) // 2
    return cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)


def camera_like_frames(h: int, w: int, n: int = 4, seed: int = 0, qp: int = 30,
                       photo: bool = False) -> list[np.ndarray]:
    """n grey (h, w) uint8 frames of the moving scene above, after H.264 encoding and decoding (h, w even).
    `photo`: the background is a real photograph (`photograph`) instead of the made texture."""
    import av

    cv2 = _cv2()
    rng = np.random.default_rng(seed)
    margin = 24 + n * 4
    canvas = textured_canvas(h + 2 * margin, w + 2 * margin, rng)
    if photo:
        canvas = photograph(h + 2 * margin, w + 2 * margin)
    obj = textured_canvas(h // 3 + 2, w // 3 + 2, rng)
    obj_mask = np.zeros(obj.shape, np.uint8)
    cv2.ellipse(obj_mask, (obj.shape[1] // 2, obj.shape[0] // 2), (obj.shape[1] // 2 - 1, obj.shape[0] // 2 - 1),
                0, 0, 360, 1, -1)
    pan = rng.uniform(-2.5, 2.5, 2)
    obj_velocity = rng.uniform(-4, 4, 2)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 4)
    field_x = 1.5 * np.sin(2 * np.pi * ys / (0.9 * h) + phase[0]) * np.cos(2 * np.pi * xs / (1.3 * w) + phase[1])
    field_y = 1.2 * np.cos(2 * np.pi * xs / (0.8 * w) + phase[2]) * np.sin(2 * np.pi * ys / (1.1 * h) + phase[3])
    gains = rng.uniform(0.85, 1.1, 3)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # Constant QP, one thread: with CRF's lookahead the bitstream of these tiny clips varied run to run.
        stream.options = {"qp": str(qp), "preset": "veryfast", "threads": "1"}
        for t in range(n):
            map_x = (xs + margin - t * (pan[0] + field_x)).astype(np.float32)
            map_y = (ys + margin - t * (pan[1] + field_y)).astype(np.float32)
            frame = cv2.remap(canvas, map_x, map_y, cv2.INTER_LINEAR)
            oy = int(h // 3 + t * obj_velocity[1])
            ox = int(w // 3 + t * obj_velocity[0])
            oh, ow = obj.shape
            region = frame[oy:oy + oh, ox:ox + ow]
            m = obj_mask[:region.shape[0], :region.shape[1]] > 0
            region[m] = obj[:region.shape[0], :region.shape[1]][m]
            frame = frame + rng.normal(0, 2, frame.shape).astype(np.float32)
            rgb = np.clip(frame[..., None] * gains, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = t  # explicit timestamps: without them the muxed order is not reproducible
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    buf.seek(0)
    with av.open(buf) as inp:
        return [cv2.cvtColor(f.to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY) for f in inp.decode(video=0)]


def moved_pair(h: int, w: int, shift=(0.0, 0.0), angle_deg: float = 0.0, seed: int = 0):
    """(first, second, true flow (h, w, 2)): a textured scene and the same scene moved by `shift` px and
    rotated by `angle_deg` about the centre; the true flow of pixel x is where x went in the second frame."""
    cv2 = _cv2()
    rng = np.random.default_rng(seed)
    canvas = textured_canvas(h, w, rng)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, 1.0)
    m[:, 2] += shift
    second = cv2.warpAffine(canvas, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    moved_x = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    moved_y = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    flow = np.stack([moved_x - xs, moved_y - ys], -1).astype(np.float32)
    def to_u8(a):
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)

    return to_u8(canvas), to_u8(second), flow


def agreement(ref: np.ndarray, other: np.ndarray, bound: float = 20.0) -> dict:
    """End-point difference (mean, p99, max) between two flows (..., H, W, 2), and the share of quantised
    uint8 pixels (both components, tsn prepare flow's quantisation) that are equal / within 1 level."""
    from jobs.dataprep.flow import quantize

    epe = np.linalg.norm(ref.astype(np.float64) - other, axis=-1)
    qd = np.abs(quantize(ref, bound).astype(int) - quantize(other, bound))
    return {"epe_mean": float(epe.mean()), "epe_p99": float(np.percentile(epe, 99)), "epe_max": float(epe.max()),
            "q_equal": float(np.mean(qd == 0)), "q_within_1": float(np.mean(qd <= 1))}
