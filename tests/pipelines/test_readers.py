"""Video readers with a record offset: a record standing for frames [offset, offset + total_frames) of a file."""
from __future__ import annotations

import av
import numpy as np
import pytest

from pipelines.annotations import VideoRecord
from pipelines.readers import PyAVReader, VideoFileReader

N, W, H = 40, 96, 32


def numbered(i: int) -> np.ndarray:
    """Frame i as 6 bars of 16 px: bar b white when bit b of i is set."""
    img = np.zeros((H, W, 3), np.uint8)
    for b in range(6):
        if (i >> b) & 1:
            img[:, b * 16:(b + 1) * 16] = 255
    return img


def number_of(img: np.ndarray) -> int:
    return sum(1 << b for b in range(6) if img[:, b * 16 + 4:(b + 1) * 16 - 4].mean() > 128)


def test_pyav_reader_adds_the_offset(tmp_path):
    path = tmp_path / "numbered.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"bf": "2", "g": "12", "crf": "10"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(N):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(numbered(i), format="rgb24")))
        out.mux(stream.encode())
    record = VideoRecord(str(path), (0,), 10, offset=25)         # frames 25..34 of the file
    clip = PyAVReader().read(record, np.array([0, 4, 9, 4]))
    assert [number_of(f) for f in clip.data] == [25, 29, 34, 29]
    whole = PyAVReader().read(VideoRecord(str(path), (0,), N), np.array([0, 4, 9]))
    assert [number_of(f) for f in whole.data] == [0, 4, 9]


def test_pyav_reader_reads_with_the_index_packet_table(tmp_path, monkeypatch):
    """The loader hands the reader each file's packet table from the video index (`packet_tables`): the same frames
    come out, and the file is not demuxed again."""
    from pipelines import pyav_decode
    from pipelines.video_index import build_index, packet_tables

    path = tmp_path / "numbered.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"bf": "2", "g": "8", "keyint_min": "8", "crf": "10",
                                                             "sc_threshold": "0"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(N):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(numbered(i), format="rgb24")))
        out.mux(stream.encode())
    tables = packet_tables(build_index([str(path)], None, workers=1, progress=False))
    assert list(tables) == [str(path)] and tables[str(path)][0] == "h264"
    pyav_decode.clear_table_cache()
    monkeypatch.setattr(pyav_decode, "read_packet_table", lambda *a: pytest.fail("demuxed although given a table"))
    clip = PyAVReader(tables=tables).read(VideoRecord(str(path), (0,), 10, offset=25), np.array([0, 4, 9, 4]))
    assert [number_of(f) for f in clip.data] == [25, 29, 34, 29]


def test_video_file_reader_shifts_the_decoder_indices(tmp_path):
    path = tmp_path / "v.bin"
    path.write_bytes(b"\x00" * 16)       # the DALI decoder is not run here: the reader only ships bytes + indices
    reader = VideoFileReader({str(path): (W, H)})
    clip = reader.read(VideoRecord(str(path), (0,), 10, offset=100), np.array([0, 3, 9]))
    assert clip.frames.tolist() == [100, 103, 109] and clip.frames.dtype == np.int32
    assert reader.read(VideoRecord(str(path), (0,), 10), np.array([2])).frames.tolist() == [2]
