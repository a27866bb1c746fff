"""The user's `--device` (`cpu | cuda | cuda:N`) -> a torch device, and that device -> where the DALI graph runs.

Importable without torch (every command's `--device` help reads DEVICE_HELP); torch is loaded when a device is
picked.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.errors import UserError

if TYPE_CHECKING:
    import torch

# The one spelling of a device across every command: torch's.
DEVICE_HELP = "cpu | cuda | cuda:N (default: CUDA when a device is visible, else cpu)."


class DeviceError(UserError, ValueError):
    """A --device value that cannot be used here."""


def pick_device(requested: str | None, local_rank: int = 0) -> torch.device:
    """`--device` value ("cpu", "cuda", "cuda:1" or None = CUDA when available) -> torch.device for this rank.

    Uses torch.cuda.device_count(), which does not initialise the CUDA driver (is_available() does): this runs before
    the loaders start their workers.
    """
    import torch  # here, not above: `--help` and `tsn configs` read DEVICE_HELP without loading torch
    gpus = torch.cuda.device_count()
    if requested in (None, "auto"):
        requested = "cuda" if gpus else "cpu"
    if requested.startswith("cuda"):
        if not gpus:
            raise DeviceError(f"--device {requested}: torch sees no CUDA device on this machine")
        try:
            index = local_rank if requested == "cuda" else int(requested.split(":", 1)[1])
        except ValueError:
            raise DeviceError(f"--device {requested!r}: expected {DEVICE_HELP}") from None
        if not 0 <= index < gpus:
            raise DeviceError(f"--device {requested}: this machine has CUDA devices 0..{gpus - 1}")
        return torch.device("cuda", index)
    if requested != "cpu":
        raise DeviceError(f"--device {requested!r}: expected {DEVICE_HELP}")
    return torch.device("cpu")


def dali_device(device: torch.device) -> tuple[str, int | None]:
    """A torch device -> (DALI device, device_id): ("gpu", index) for CUDA, ("cpu", None) otherwise."""
    if device.type == "cuda":
        return "gpu", device.index if device.index is not None else 0
    return "cpu", None
