"""Host memory for the loader's CPU batches, reused once nobody holds it any more.

A batch is 14 MB (K400 1x1x3 train, 32 videos) to 38 MB (one video of 25 clips x 10 crops). Allocated fresh each
time, glibc hands memory that large straight from mmap and back to the kernel on free, so every batch first pays a
page fault per 4 KiB page while it is written: on the 2-core machine that was 4/5 of the time the loader spent
writing a 25 x 10 batch (cv2.split 95 -> 20 us per 224 x 224 view once the memory was reused; docs/PERFORMANCE.md).

A pooled buffer is a numpy array handed out as a torch tensor (`torch.from_numpy`). Every tensor, view or numpy
array made from that tensor keeps a reference to the array through its storage, so the array is free exactly when
its reference count is back to the pool's own: nothing a consumer still holds is ever overwritten. At most `keep`
buffers are kept (a consumer that holds more batches than that gets fresh memory, as before).
"""
from __future__ import annotations

import math
import sys

import numpy as np
import torch

KEEP = 4     # the consumer's batch + the one being written + slack for a consumer that keeps one more


class BatchBuffers:
    def __init__(self, keep: int = KEEP):
        self.keep = keep
        self._arrays: list[np.ndarray] = []

    def empty(self, shape: tuple[int, ...]) -> torch.Tensor:
        """An uninitialised uint8 CPU tensor of `shape`, in a buffer no live tensor uses."""
        nbytes = math.prod(shape)
        for i in range(len(self._arrays)):
            # References: the list, and getrefcount's own argument. Any tensor made from it adds one.
            if self._arrays[i].nbytes == nbytes and sys.getrefcount(self._arrays[i]) == 2:
                return torch.from_numpy(self._arrays[i]).view(shape)
        array = np.empty(nbytes, np.uint8)
        if self.keep:
            if len(self._arrays) >= self.keep:      # replace a buffer still held, or of another size
                self._arrays.pop(0)
            self._arrays.append(array)
        return torch.from_numpy(array).view(shape)
