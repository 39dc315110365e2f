"""Check a ``--device`` for PyTorch before anything is loaded onto it."""

from __future__ import annotations

import re

from ..errors import YoloEdgeError


def check_torch_device(torch, device) -> str:
    """``device`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``) if this torch can use it, else a YoloEdgeError."""
    d = str(device).strip().lower()
    m = re.fullmatch(r"cuda(?::(\d+))?", d)
    if d == "cpu":
        return d
    if m:
        if not torch.cuda.is_available():
            build = "a CPU-only build" if not getattr(torch.version, "cuda", None) else "no CUDA device visible"
            raise YoloEdgeError(f"--device {device}: this PyTorch cannot use CUDA ({build}, torch "
                                f"{torch.__version__}); use --device cpu, or install a CUDA build of PyTorch")
        n = torch.cuda.device_count()
        if m.group(1) is not None and int(m.group(1)) >= n:
            raise YoloEdgeError(f"--device {device}: only {n} CUDA device(s) here (cuda:0..cuda:{n - 1})")
        return d
    if d == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise YoloEdgeError(f"--device {device}: MPS is not available here; use --device cpu")
        return d
    raise YoloEdgeError(f"unknown --device {device!r} for PyTorch: use cpu, cuda or cuda:N")
