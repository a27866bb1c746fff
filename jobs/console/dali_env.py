"""Which DALI wheel goes with which torch, checked from package metadata alone (no DALI or torch import).

DALI ships one wheel per CUDA major (`nvidia-dali-cuda120`, `nvidia-dali-cuda130`), each owning the same
`nvidia/dali/` files: two of them installed overwrite each other, and uninstalling either breaks the other. torch's
CUDA build (`torch.version.cuda`) decides which one belongs: the two must share the CUDA major so that one CUDA
runtime family serves both on a GPU. setup.cfg's extras `[cu12]` / `[cu13]` pick the wheel and `make install` picks
the extra (`python -m jobs.console.dali_env extra`).

    python -m jobs.console.dali_env extra       # cu12 | cu13: the extra matching the installed torch
    python -m jobs.console.dali_env others      # installed nvidia-dali-* distributions that do not match it
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import sys
from pathlib import Path

DALI_PREFIX = "nvidia-dali-"
EXTRAS = {12: "cu12", 13: "cu13"}          # setup.cfg [options.extras_require]
DEFAULT_MAJOR = 13                          # the registry's default torch is a CUDA 13 build


def dali_distributions() -> dict[str, int | None]:
    """{distribution name: the CUDA major it was built for (None if the name does not say)} of every installed
    nvidia-dali-* distribution, e.g. {"nvidia-dali-cuda120": 12}."""
    out = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith(DALI_PREFIX) and "tf-plugin" not in name:
            m = re.search(r"cuda(\d+?)0$", name)
            out[name] = int(m.group(1)) if m else None
    return out


def torch_cuda_version() -> str | None:
    """torch.version.cuda ("13.0"; None for a CPU-only build or no torch), read from torch/version.py's text."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text()
    except OSError:
        return None
    m = re.search(r"^cuda\b[^=\n]*=\s*['\"]([\d.]+)['\"]", text, re.M)
    return m.group(1) if m else None


def cuda_major(version: str | None) -> int | None:
    return int(version.split(".")[0]) if version else None


def extra_for(torch_cuda: str | None) -> str:
    """The setup.cfg extra matching torch's CUDA build; a CPU-only torch gets the registry default's."""
    major = cuda_major(torch_cuda) or DEFAULT_MAJOR
    if major not in EXTRAS:
        raise ValueError(f"torch is built for CUDA {torch_cuda}: DALI 2.4 has wheels for CUDA "
                         f"{', '.join(map(str, EXTRAS))} only")
    return EXTRAS[major]


def dali_wheel(torch_cuda: str | None) -> str:
    """The DALI distribution that goes with this torch (its CUDA major, or the default on a CPU-only torch)."""
    return f"nvidia-dali-cuda{cuda_major(torch_cuda) or DEFAULT_MAJOR}0"


def install_problems(dali: dict[str, int | None], torch_cuda: str | None, gpu: bool) -> list[str]:
    """One line per problem of this install (empty when DALI and torch go together).

    Two DALI distributions are always a problem (they overwrite each other's files); a CUDA major that differs
    from torch's only where there is a GPU (on a CPU neither uses CUDA)."""
    problems = []
    if len(dali) > 1:
        keep = dali_wheel(torch_cuda)
        drop = " ".join(sorted(n for n in dali if n != keep))
        problems.append(f"{len(dali)} DALI distributions installed ({', '.join(sorted(dali))}) share nvidia/dali/: "
                        f"`pip uninstall -y {' '.join(sorted(dali))}`, then `pip install {keep}~=2.4` "
                        f"(keeps only {keep}; {drop} goes)")
    major = cuda_major(torch_cuda)
    if gpu and major is not None:
        for name, dali_major in sorted(dali.items()):
            if dali_major is not None and dali_major != major:
                problems.append(f"{name} is built for CUDA {dali_major} but torch for CUDA {torch_cuda}: install "
                                f"the matching DALI, `pip install -e '.[{extra_for(torch_cuda)}]'` (README, Set-up)")
    return problems


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver with at least one GPU, seen without CUDA (the driver lists its GPUs in /proc)."""
    try:
        return bool(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return False


def warn_install_problems(say=None) -> list[str]:
    """Prints each install problem as one `tsn: warning:` line on stderr; returns them."""
    problems = install_problems(dali_distributions(), torch_cuda_version(), has_nvidia_gpu())
    for p in problems:
        (say or (lambda m: print(m, file=sys.stderr)))(f"tsn: warning: {p}")
    return problems


def main(argv: list[str]) -> int:
    if argv == ["extra"]:
        print(extra_for(torch_cuda_version()))
    elif argv == ["others"]:
        keep = dali_wheel(torch_cuda_version())
        print(" ".join(sorted(n for n in dali_distributions() if n != keep)))
    else:
        print("usage: python -m jobs.console.dali_env extra|others", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
