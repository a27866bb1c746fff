"""What a graph variant owns, and the external source's column type."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ..defaults import Decoding
    from ..geometry import View
    from ..layout import ClipLayout
    from ..readers import Clip
    from ..source import ClipSource


@dataclass(frozen=True)
class Column:
    """One output of the external source: dense columns are one (N, ...) array of `dtype` per batch; ragged ones
    (encoded bytes, frame indices: sizes differ per sample) a list of arrays."""

    name: str
    dtype: type | None = None      # None: ragged


class Variant:
    """One graph variant (a frozen dataclass per kind, chosen by pipelines/plan.py `plan_graph`).

    The source calls `columns` and `emit`, pipelines/graph.py calls `graph` (or `decoded` for the profiler's
    decode-only graph), the loader reads `output_names` and calls `assemble`. Every variant also emits "index" (N,)
    int64, the list index of each sample's video (-1: evaluation padding), which the graph passes through.
    """

    name: str = ""                 # how reports describe it (`tsn profile`)
    host_work: str = ""            # what the loader does after the graph, in words (`tsn profile`)

    def columns(self, source: ClipSource) -> list[Column]:
        """The external source's outputs in order, "index" last; the graph names its input nodes from this list."""
        raise NotImplementedError

    def emit(self, columns: dict, source: ClipSource, index: int, clip: Clip, views: list[View], drawn: dict):
        """Append one video's rows to `columns` ({name: list}): one per DALI sample of the video."""
        raise NotImplementedError

    def decoded(self, nodes: dict, source: ClipSource, backend: str, decoding: Decoding):
        """The decoder stage's output node alone (the profiler's decode-only graph)."""
        raise NotImplementedError

    def graph(self, nodes: dict, source: ClipSource, backend: str, decoding: Decoding) -> dict:
        """This variant's part of the DALI graph: input nodes by column name -> {output name: node} (not index)."""
        raise NotImplementedError

    def output_names(self, layout: ClipLayout) -> tuple[str, ...]:
        """The pipeline's outputs in order, "index" last."""
        raise NotImplementedError

    def assemble(self, named: dict, layout: ClipLayout, videos: int, empty=None) -> torch.Tensor:
        """One batch's outputs by name -> (B, V, C, H, W) uint8 clips (CPU, or CUDA for a GPU pipeline). `empty`:
        shape -> an uninitialised uint8 CPU tensor to write a CPU batch into (the loader's reused buffers,
        pipelines/loader.py BatchBuffers); None: torch.empty."""
        raise NotImplementedError
