"""What one video's sampled frames look like before DALI sees them: encoded JPEGs, decoded frames, or a video file.

Each reader turns (record, frame indices) into a `Clip`. The three kinds (`ReaderKind`) differ in where decoding
happens:
  FrameFolderReader  JPEG      image files (JPEG, or PNG etc. by content) -> DALI image decoder (CPU libjpeg-turbo or
                               nvJPEG); one sample per frame.
  PyAVReader         DECODED   video file -> frames decoded here with keyframe seeking (CPU); one sample per frame.
  VideoFileReader    VIDEO     video file bytes + indices -> DALI video decoder (NVDEC, or the CPU backend for
                               VP8/VP9/MJPEG); one sample per video (a sequence).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from . import packed
from .annotations import FrameLayout, VideoRecord
from .errors import UserError
from .jpeg import BadJpeg, image_size


class BadSample(UserError, RuntimeError):
    """A video that cannot be loaded; the message names the file."""


class ReaderKind(enum.Enum):
    """What a reader hands DALI, which fixes the graph's decoder stage (pipelines/variants/parts.py) and how many
    DALI samples one video is."""

    JPEG = "jpeg"          # encoded JPEG frames, one sample per image: DALI's image decoder
    DECODED = "decoded"    # (H, W, 3) uint8 frames decoded in the Python workers (PyAV), one sample per frame
    VIDEO = "video"        # one encoded file plus its frame indices per video: DALI's video decoder, (F, H, W, 3)

    def samples_per_video(self, layout) -> int:
        """DALI samples per video for a `ClipLayout`: one sequence, or one per decoded image."""
        return 1 if self is ReaderKind.VIDEO else layout.frames_per_video


@dataclass
class Clip:
    data: list[np.ndarray]       # per frame: 1-D encoded JPEG or (H, W, 3) uint8; per video: [1-D encoded file]
    width: int
    height: int
    frames: np.ndarray | None = None   # (F,) int32 indices for the video decoder; None for frame-level clips


def _read_file(path: str) -> np.ndarray:
    """A frame or video file's bytes, 1-D uint8 (read-only; packed.read_bytes), each failure a BadSample naming
    the file."""
    try:
        return packed.read_bytes(path)
    except packed.PackedError as err:       # names the shard and the member
        raise BadSample(str(err)) from None
    except FileNotFoundError:
        raise BadSample(f"missing file {path}") from None
    except OSError as err:
        raise BadSample(f"cannot read {path}: {err}") from None


@dataclass(frozen=True)
class FrameFolderReader:
    layout: FrameLayout
    kind = ReaderKind.JPEG

    @property
    def gray(self) -> bool:
        return self.layout.is_flow

    def read(self, record: VideoRecord, indices: np.ndarray) -> Clip:
        files = self.layout.frame_paths(record, indices)
        data = [_read_file(p) for p in files]
        size = None
        for path, buf in zip(files, data):
            try:
                wh = image_size(buf)   # by content: a PNG named .jpg is a PNG
            except BadJpeg as err:
                raise BadSample(f"{path}: {err}") from None
            if size is not None and wh != size:
                raise BadSample(f"{path}: frame size {wh} differs from {size} in the same folder")
            size = wh
        return Clip(data, size[0], size[1])


def video_indices(record: VideoRecord, indices: np.ndarray) -> np.ndarray:
    """Sampled indices -> frame indices of the file: a record may stand for the sub-range [offset, offset +
    total_frames) of a video (a window of a long video, jobs/evaluation/timeline.py), as rawframe lists' offsets do."""
    return np.asarray(indices, dtype=np.int64) + record.offset


@dataclass(frozen=True)
class PyAVReader:
    timeout_s: float = 30.0
    # path -> (codec, regular packet table) from the video index (video_index.packet_tables): those reads skip the demux
    tables: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)
    kind = ReaderKind.DECODED

    def read(self, record: VideoRecord, indices: np.ndarray) -> Clip:
        from .pyav_decode import decode_frame_list
        from .timeout import DecodeTimeout, call_with_timeout
        from .video_index import indexed_table
        table = indexed_table(self.tables, record.path)
        try:
            frames = call_with_timeout(decode_frame_list, self.timeout_s, record.path,
                                       video_indices(record, indices), table=table)
        except DecodeTimeout:
            raise BadSample(f"{record.path}: decoding took longer than {self.timeout_s:g} s") from None
        except FileNotFoundError:
            raise BadSample(f"missing file {record.path}") from None
        except Exception as err:  # PyAV raises many types (InvalidDataError, EOFError, ValueError...)
            raise BadSample(f"{record.path}: {type(err).__name__}: {err}") from None
        h, w = frames[0].shape[:2] if frames else (0, 0)
        return Clip(frames, w, h)


@dataclass(frozen=True)
class VideoFileReader:
    sizes: dict[str, tuple[int, int]]   # path -> (w, h), from the video index
    kind = ReaderKind.VIDEO

    def read(self, record: VideoRecord, indices: np.ndarray) -> Clip:
        if record.path not in self.sizes:
            raise BadSample(f"{record.path}: not in the video index (unreadable or unsupported)")
        w, h = self.sizes[record.path]
        data = _read_file(record.path)
        if data.size == 0:
            raise BadSample(f"{record.path}: empty file")
        return Clip([data], w, h, video_indices(record, indices).astype(np.int32))
