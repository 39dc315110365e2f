"""Checks that run before any expensive step (model export, calibration, training, a long evaluation):
output paths that can be written, and the inputs of ``export --fp16/--int8``.

Each raises :class:`~yolo_edge.errors.YoloEdgeError` with one line that says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import YoloEdgeError


def _writable_ancestor(path: Path, option: str) -> None:
    p = path.absolute()
    for parent in [p, *p.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise YoloEdgeError(f"{option} {path}: {parent} is a file, not a folder; choose another path")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise YoloEdgeError(f"{option} {path}: cannot write in {parent} (permission denied); choose another path")
            return


def check_output_dir(path, option: str = "--out") -> Path:
    """``path`` can be (or already is) a folder we can write in; nothing is created."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise YoloEdgeError(f"{option} {p} is a file, not a folder: choose a folder, or remove the file")
    _writable_ancestor(p, option)
    return p


def check_output_file(path, option: str = "--out", suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` can be written as a file (its folder exists or can be made; it is not a folder)."""
    p = Path(path)
    if p.is_dir():
        raise YoloEdgeError(f"{option} {p} is a folder: name a file")
    if suffixes and p.suffix.lower() not in suffixes:
        raise YoloEdgeError(f"{option} {p}: expected a {' or '.join(suffixes)} file")
    _writable_ancestor(p.parent, option)
    return p


def model_names(model) -> tuple[str, ...]:
    """Class names of a checkpoint or yolo-edge ONNX without building a session (cheap), or ()."""
    if model is None:
        from .assets import default_checkpoint

        model = default_checkpoint()
    p = Path(model)
    if not p.is_file():
        raise YoloEdgeError(f"model not found: {p}")
    if p.suffix.lower() in (".pt", ".pth"):
        from .model import load_checkpoint

        m = load_checkpoint(p)
        return tuple(m.cfg.names or [f"class{i}" for i in range(m.cfg.nc)])
    if p.suffix.lower() == ".onnx":
        from .deps import require
        from .errors import ModelFormatError
        from .spec import METADATA_KEY, ModelSpec

        onnx = require("onnx")
        try:
            m = onnx.load(str(p), load_external_data=False)
        except Exception as e:  # onnx raises DecodeError and friends
            raise ModelFormatError(f"{p} is not a readable ONNX model ({type(e).__name__}); re-export it") from None
        meta = {e.key: e.value for e in m.metadata_props}
        if METADATA_KEY in meta:
            return ModelSpec.from_json(meta[METADATA_KEY]).names
    return ()


def check_precision_inputs(args) -> list[str]:
    """``export --fp16/--int8`` and ``calibrate``: calibration data, validation data (labelled, classes
    that fit the model, bad labels) and the output folder, before the FP32 export or calibration.
    Returns warning lines."""
    from .data import load_dataset
    from .data.check import check_dataset

    warnings: list[str] = []
    calib = load_dataset(args.calib)  # raises for a missing or empty source
    if len(calib) == 0:
        raise YoloEdgeError(f"--calib {args.calib}: no images; give a folder of images, a dataset or a video")
    val = getattr(args, "val", None)
    if val:
        ds = load_dataset(val)
        names = ()
        if getattr(args, "from_onnx", None):
            if getattr(args, "names", None):
                from .export.adapters import _read_names

                names = _read_names(args.names) or ()
        else:
            src = getattr(args, "model", None)
            names = model_names(src) if src is None or Path(src).suffix.lower() in (".pt", ".pth", ".onnx") else ()
        # the pipeline opens --val again: labels past the model's classes are an error here, not dropped
        warnings += check_dataset(ds, names, strict=getattr(args, "strict", False), what="--val",
                                  drop_unknown=False)
    return warnings
