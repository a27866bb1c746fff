"""Read a frame's size from its header, and refuse files that are not whole images.

The crop geometry of a video is decided before DALI decodes anything, so the source needs (w, h) per frame
folder; reading it from the SOF marker costs microseconds. The same scan rejects empty, truncated and non-image
files with a reason, because a bad buffer inside a DALI batch would fail the whole batch.

Frames are recognised by their content, not their name, as MMAction2 does (v0.24.1 RawFrameDecode ->
mmcv.imfrombytes -> cv2.imdecode): a PNG saved as `img_00001.jpg` is a PNG. DALI's image decoders
(`fn.decoders.image` / `image_slice`, CPU and mixed) also decode by content: JPEG, PNG, BMP, TIFF, WebP, PNM and
JPEG 2000. So `image_size` reads JPEG and PNG headers itself (the common cases, microseconds) and asks PIL for the
header of any other format; a file none of them recognises is refused.
"""
from __future__ import annotations

import io

import numpy as np

# Start-of-frame markers that carry the image size (baseline, extended, progressive, lossless...; not DHT/JPG/DAC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Formats DALI's image decoders read besides JPEG and PNG (PIL's names for them).
OTHER_FORMATS = {"BMP", "TIFF", "WEBP", "PPM", "JPEG2000"}


class BadJpeg(ValueError):
    """Not a decodable frame: empty, truncated, or not an image format the decoder reads."""


def _bytes_view(buf: np.ndarray | bytes) -> memoryview:
    """The buffer's bytes without a copy (a 32 KB frame's tobytes() was a fifth of reading it): indexing gives ints,
    slices compare equal to bytes, as with bytes itself."""
    view = memoryview(np.ascontiguousarray(buf) if isinstance(buf, np.ndarray) else buf)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def image_size(buf: np.ndarray | bytes) -> tuple[int, int]:
    """(width, height) of an encoded frame, by its content (module docstring); raises BadJpeg with a reason."""
    data = _bytes_view(buf)
    if data[:2] == b"\xff\xd8" or not data:
        return jpeg_size(data)
    if data[:8] == PNG_SIGNATURE:
        return png_size(data)
    try:
        from PIL import Image
        with Image.open(io.BytesIO(data)) as image:       # reads the header only
            if image.format in OTHER_FORMATS and image.width > 0 and image.height > 0:
                return image.size
    except Exception:                                       # PIL raises many types for arbitrary bytes
        pass
    raise BadJpeg("not a JPEG (no SOI marker), nor a PNG or another image format the decoder reads")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk (PNG spec 11.2.2: the first chunk, width and height big-endian u32),
    refusing a file cut short (it must end with the IEND chunk)."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise BadJpeg("corrupt PNG header (no IHDR chunk)")
    if data[-8:-4] != b"IEND":
        raise BadJpeg("truncated PNG (no IEND chunk at the end)")
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if w == 0 or h == 0:
        raise BadJpeg("PNG with zero width or height")
    return w, h


def jpeg_size(buf: np.ndarray | bytes) -> tuple[int, int]:
    """(width, height) from the first SOF marker of a JPEG byte buffer; raises BadJpeg with a reason."""
    data = _bytes_view(buf)
    n = len(data)
    if n == 0:
        raise BadJpeg("empty file")
    if data[:2] != b"\xff\xd8":
        raise BadJpeg("not a JPEG (no SOI marker)")
    if bytes(data[max(0, n - 64):]).rfind(b"\xff\xd9") < 0:
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
