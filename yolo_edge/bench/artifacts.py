"""The models a benchmark times: the ONNX variants (made with the export and precision API, or reused),
their NMS-free copies for the accuracy pass, TensorRT engines, the Ultralytics-layout ONNX.

Layout of the model folder (``--onnx-dir``, default ``<work>/onnx-<checkpoint sha[:12]>-<H>x<W>``)::

    model.onnx  model.fp16.onnx  model.int8.onnx      # as `yolo-edge export --int8` writes them
    model.int8-cpu.onnx                               # `--int8-target ort-cpu` (or both)
    eval/model.<prec>.onnx                            # the same graphs cut before NMS (accuracy pass)
    engines/model.<prec>.engine (+ eval/…engine)      # TensorRT rows, built here when TensorRT is
    ultralytics/model.onnx                            # Ultralytics output layout (when installed)

Files already there are reused when their metadata says they come from the same checkpoint at
the same input size; anything missing is made.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import YoloEdgeError

NAME = "model"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Artifacts:
    dir: Path
    onnx: dict[str, Path] = field(default_factory=dict)  # precision -> deployed ONNX (NMS as exported)
    eval_onnx: dict[str, Path] = field(default_factory=dict)  # precision -> NMS-free copy
    engines: dict[str, Path] = field(default_factory=dict)
    eval_engines: dict[str, Path] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    calibration: dict | None = None
    nms: dict | None = None
    missing: dict[str, str] = field(default_factory=dict)  # precision -> why it is not there

    def to_dict(self) -> dict:
        return {"dir": str(self.dir), "onnx": {k: str(v) for k, v in self.onnx.items()},
                "made": self.made, "reused": self.reused, "calibration": self.calibration, "nms": self.nms,
                "engines": {k: str(v) for k, v in self.engines.items()}, "missing": self.missing}


def onnx_path(d: Path, precision: str) -> Path:
    return d / (f"{NAME}.onnx" if precision == "fp32" else f"{NAME}.{precision}.onnx")


def _spec(path: Path):
    from ..deps import require
    from ..export.metadata import get_spec

    onnx = require("onnx")
    return get_spec(onnx.load(str(path), load_external_data=False))


def prepare_onnx(checkpoint: Path, sha: str, imgsz: tuple[int, int], precisions: Sequence[str], d: Path, *,
                 given: bool, calib: str, calib_images: int | None, val: str | None, val_images: int | None,
                 max_map_drop: float | None, latency_runs: int = 20, verbose: bool = True,
                 log: Callable[[str], None] = _log) -> Artifacts:
    """Make or reuse ``model[.<prec>].onnx`` in ``d`` for ``precisions`` (see the module doc)."""
    from ..export.onnx_export import export_onnx
    from ..precision.pipeline import PrecisionConfig, run_precision

    art = Artifacts(d)
    d.mkdir(parents=True, exist_ok=True)
    fp32 = onnx_path(d, "fp32")

    def fits(p: Path) -> str | None:
        """None when ``p`` was exported from this checkpoint at this size, else why not."""
        spec = _spec(p)
        if spec is None:
            return f"{p} has no yolo_edge metadata"
        if tuple(spec.imgsz) != tuple(imgsz):
            return f"{p} takes {spec.imgsz[0]}x{spec.imgsz[1]}, the benchmark runs at {imgsz[0]}x{imgsz[1]}"
        if spec.checkpoint_sha256 and spec.checkpoint_sha256 != sha:
            return f"{p} was exported from another checkpoint (sha256 {spec.checkpoint_sha256[:12]}…, not {sha[:12]}…)"
        return None

    if fp32.is_file():
        why = fits(fp32)
        if why and given:
            raise YoloEdgeError(f"--onnx-dir: {why}; pass the matching --model / --imgsz, or another --onnx-dir")
        if why:
            log(f"  {why}: exporting again")
    if not fp32.is_file() or fits(fp32):
        export_onnx(checkpoint, fp32, imgsz=imgsz, verbose=verbose)
        art.made.append(fp32.name)
        for p in ("fp16", "int8", "int8-cpu"):  # variants of an older export are stale now
            onnx_path(d, p).unlink(missing_ok=True)
    else:
        art.reused.append(fp32.name)
    art.onnx["fp32"] = fp32
    art.nms = dataclasses.asdict(_spec(fp32).nms)

    def int8_settings_differ(p: Path) -> str | None:
        """A cached INT8 model made with other calibration settings is remade (never in a given --onnx-dir)."""
        info = ((_spec(p).extra or {}).get("precision") or {})
        calib_info = info.get("calibration") or {}
        made = (calib_info.get("source"), calib_info.get("images"), info.get("max_map_drop"))
        if made != (calib, calib_images, max_map_drop):
            return f"{p.name} was calibrated with {made}, not {(calib, calib_images, max_map_drop)}"
        return None

    want = [p for p in precisions if p != "fp32"]
    stale = [p for p in want if onnx_path(d, p).is_file() and (
        fits(onnx_path(d, p)) or (p.startswith("int8") and not given and int8_settings_differ(onnx_path(d, p))))]
    for p in stale:
        log(f"  {fits(onnx_path(d, p)) or int8_settings_differ(onnx_path(d, p))}: making it again")
    todo = [p for p in want if not onnx_path(d, p).is_file() or p in stale]
    if todo:
        int8 = "int8" in todo or "int8-cpu" in todo
        target = "both" if {"int8", "int8-cpu"} <= set(todo) else ("ort-cpu" if "int8-cpu" in todo else "trt")
        cfg = PrecisionConfig(out_dir=d, name=NAME, fp16="fp16" in todo, int8=int8, calib=calib,
                              calib_images=calib_images, val=val if int8 else None, val_images=val_images,
                              max_map_drop=max_map_drop if int8 else None, show_progress=verbose,
                              build_engines=False, latency_runs=latency_runs, int8_target=target)
        log(f"precision job: {', '.join(todo)} from {fp32.name} ({calib_images} calibration images from {calib}"
            + (f", budget {max_map_drop} mAP points on {val}" if max_map_drop is not None and int8 else "")
            + ")")
        run_precision(fp32, cfg)
        art.made += [onnx_path(d, p).name for p in todo]
    art.reused += [onnx_path(d, p).name for p in want if p not in todo]
    for p in want:
        art.onnx[p] = onnx_path(d, p)
    for p in ("int8", "int8-cpu"):
        if p not in art.onnx or art.calibration:
            continue
        spec = _spec(art.onnx[p])
        art.calibration = ((spec.extra or {}).get("precision") or {}).get("calibration") if spec else None
    for p, path in art.onnx.items():
        art.eval_onnx[p] = nms_free_copy(path, d / "eval" / path.name)
    return art


def nms_free_copy(src: Path, dst: Path) -> Path:
    """``src`` cut before its NMS (``boxes``, ``scores`` outputs, metadata NMS ``none``); reused when newer."""
    if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
        return dst
    from ..deps import require
    from ..export.metadata import get_spec, set_metadata
    from ..precision.graph import strip_nms
    from ..spec import NmsSpec
    from ..util import atomic_path

    onnx = require("onnx")
    m = onnx.load(str(src))
    spec = get_spec(m)
    cut = strip_nms(m)
    set_metadata(cut, spec.replace(nms=NmsSpec(flavour="none")))
    with atomic_path(dst) as tmp:
        onnx.save(cut, str(tmp))
    return dst


def check_disjoint_with(calibration: dict | None, val: str | None, val_images: int | None) -> str:
    """Check the validation images against the INT8 model's calibration images (DESIGN §6).
    Returns a sentence for the report; raises :class:`YoloEdgeError` on overlap."""
    if not calibration or not val:
        return "calibration/validation overlap not checked (no INT8 model or no validation set)"
    from ..precision.calibration import ImageSet, check_disjoint

    src, n = calibration.get("source"), calibration.get("images")
    try:
        calib = ImageSet(src, n)
    except YoloEdgeError as e:
        return f"calibration images ({src}) not readable here, overlap not checked: {e}"
    valset = ImageSet(val, val_images)
    check_disjoint(calib.hashes(), valset.hashes(), calib_name=f"calibration ({src})",
                   eval_name=f"validation ({val})")
    return f"Validation images ({val}, {len(valset)}) are disjoint from the {len(calib)} INT8 calibration images ({src})."


def build_engines(art: Artifacts, precisions: Sequence[str], max_batch: int, verbose: bool = True,
                  log: Callable[[str], None] = _log) -> None:
    """TensorRT engines of the deployed and the NMS-free ONNX of each precision (reused when they load)."""
    from ..trt import build_engine
    from ..trt.manifest import verify

    for p in precisions:
        for src, table, sub in ((art.onnx.get(p), art.engines, "engines"), (art.eval_onnx.get(p), art.eval_engines,
                                                                          "engines/eval")):
            if src is None:
                continue
            eng = art.dir / sub / src.with_suffix(".engine").name
            if eng.is_file():
                try:
                    verify(eng)
                    table[p] = eng
                    art.reused.append(str(eng.relative_to(art.dir)))
                    continue
                except YoloEdgeError as e:
                    log(f"  {eng.name}: {e}; rebuilding")
            eng.parent.mkdir(parents=True, exist_ok=True)
            log(f"TensorRT build: {src.name} -> {eng.relative_to(art.dir)} (max batch {max_batch})")
            table[p] = build_engine(src, eng, max_batch=max_batch, verbose=False)
            art.made.append(str(eng.relative_to(art.dir)))


__all__ = ["Artifacts", "build_engines", "check_disjoint_with", "nms_free_copy", "onnx_path", "prepare_onnx"]
