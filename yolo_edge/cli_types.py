"""Argument types for the ``yolo-edge`` commands: ranges are checked while parsing, before any work.

Each factory returns a callable for ``argparse``'s ``type=``; a bad value becomes argparse's own
usage error (one line, exit code 2), e.g. ``argument --conf: must be in [0, 1], got 2``.
Numpy- and torch-free: ``yolo-edge --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math


def _number(kind, text: str):
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") \
            from None
    if kind is float and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def ranged(kind=float, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False, name: str | None = None):
    """A number type with bounds: ``ranged(float, 0, 1)`` accepts ``[0, 1]``; ``lo_open`` makes ``(lo, ...``."""

    def parse(text: str):
        v = _number(kind, text)
        below = lo is not None and (v <= lo if lo_open else v < lo)
        above = hi is not None and (v >= hi if hi_open else v > hi)
        if below or above:
            raise argparse.ArgumentTypeError(f"must be {describe()}, got {text}")
        return v

    def describe() -> str:
        if lo is not None and hi is not None:
            return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        if lo is not None:
            return f"{'>' if lo_open else '>='} {lo:g}"
        return f"{'<' if hi_open else '<='} {hi:g}"

    parse.__name__ = name or f"{kind.__name__} {describe()}"  # argparse names the type in some messages
    return parse


probability = ranged(float, 0.0, 1.0, name="probability")  # --conf, --iou, flip probabilities
positive_int = ranged(int, 1, name="positive integer")  # --batch, --max-det, --epochs, counts
non_negative_int = ranged(int, 0, name="non-negative integer")  # --workers, --threads (0 = default)
positive_float = ranged(float, 0.0, lo_open=True, name="positive number")  # --lr0, --duration, timeouts
non_negative_float = ranged(float, 0.0, name="non-negative number")
fraction = ranged(float, 0.0, 1.0, hi_open=True, name="fraction")  # [0, 1)


def image_size(text: str) -> int:
    """One side of an input size: a positive multiple of 32 (the largest stride of every model here)."""
    v = _number(int, text)
    if v < 32 or v % 32:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 32 (e.g. 320, 640), got {text}")
    return v


image_size.__name__ = "image size"


def opset(text: str) -> int:
    """An ONNX opset the export can write: ``MIN_EXPORT_OPSET`` up to what the installed onnx knows."""
    v = _number(int, text)
    from .export.onnx_export import MIN_EXPORT_OPSET  # no torch/onnx import at module level there

    hi = max_opset()
    if v < MIN_EXPORT_OPSET or (hi is not None and v > hi):
        top = f"{hi}" if hi is not None else "the newest your onnx supports"
        raise argparse.ArgumentTypeError(f"must be in {MIN_EXPORT_OPSET}..{top}, got {text}")
    return v


opset.__name__ = "opset"


def max_opset() -> int | None:
    """The newest opset both the installed onnx and torch's exporter know, or None if neither is here."""
    limits = []
    try:
        import onnx

        limits.append(int(onnx.defs.onnx_opset_version()))
    except ImportError:
        pass
    try:
        from torch.onnx._constants import ONNX_MAX_OPSET  # type: ignore[import-not-found]

        limits.append(int(ONNX_MAX_OPSET))
    except ImportError:
        pass
    return min(limits) if limits else None
