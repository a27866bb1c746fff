"""Read a JPEG's size from its header, and refuse files that are not whole JPEGs.

The crop geometry of a video is decided before DALI decodes anything, so the source needs (w, h) per frame
folder; reading it from the SOF marker costs microseconds. The same scan rejects empty, truncated and non-JPEG
files with a reason, because a bad buffer inside a DALI batch would fail the whole batch.
"""
from __future__ import annotations

import numpy as np

# Start-of-frame markers that carry the image size (baseline, extended, progressive, lossless...; not DHT/JPG/DAC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class BadJpeg(ValueError):
    """Not a decodable JPEG: empty, truncated, or not a JPEG at all."""


def jpeg_size(buf: np.ndarray | bytes) -> tuple[int, int]:
    """(width, height) from the first SOF marker of a JPEG byte buffer; raises BadJpeg with a reason."""
    data = buf.tobytes() if isinstance(buf, np.ndarray) else bytes(buf)
    n = len(data)
    if n == 0:
        raise BadJpeg("empty file")
    if data[:2] != b"\xff\xd8":
        raise BadJpeg("not a JPEG (no SOI marker)")
    if data.rfind(b"\xff\xd9", max(0, n - 64)) < 0:
        raise BadJpeg("truncated JPEG (no EOI marker at the end)")
    pos = 2
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise BadJpeg(f"corrupt JPEG header at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:            # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in _SOF:
            if pos + 9 > n:
                break
            h = int.from_bytes(data[pos + 5:pos + 7], "big")
            w = int.from_bytes(data[pos + 7:pos + 9], "big")
            if w == 0 or h == 0:
                raise BadJpeg("JPEG with zero width or height")
            return w, h
        if marker == 0xDA:            # start of scan before any SOF
            break
        pos += 2 + length
    raise BadJpeg("corrupt JPEG header (no frame size marker)")
