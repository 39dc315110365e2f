"""``yolo-edge doctor``: one command on the device that proves or refutes what this package claims
about TensorRT there, and writes a report a user can attach to a bug (``doctor.json`` + ``doctor.md``).

Steps (each is ``ok``, ``FAIL``, ``warn`` or ``not available`` with the reason; nothing stops the
report being written):

1. versions: Python, platform, yolo-edge, numpy, onnx, onnxruntime, torch, TensorRT, CUDA backend,
   GPU, CUDA, cuDNN, L4T/JetPack;
2. the plugin registry after ``trt.init_libnvinfer_plugins`` (EfficientNMS_TRT must be there);
3. exports of the bundled trained model for every NMS flavour asked (``onnx``, ``trt``, ``none``)
   and precision (FP32, FP16, INT8 Q/DQ), each checked by :mod:`.readiness` for this TensorRT;
4. an engine build of each (``yolo-edge build``), with its per-layer precision counts;
5. parity against ONNX Runtime on the same file: level 1 (raw tensors, NMS ``none``), level 2
   (detections matched) and level 3 (mAP) -- budgets: FP32 strict; FP16 level-2 match >= 0.98 and
   mAP within 0.3 points; INT8 level-2 match >= 0.95 and mAP within the export budget (1.0 point);
   the ``trt`` flavour (EfficientNMS, not runnable in ONNX Runtime) is compared with the ``onnx``
   flavour's ONNX;
6. latency of the yolo-edge runner (batch 1, median of timed ``infer`` calls) next to trtexec's
   GPU compute time for the same engine (``trtexec --loadEngine``).

Without TensorRT, a GPU or torch, the steps that need them say "not available" and why.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import YoloEdgeError

NA = "not available"
BUDGETS = {"fp32": {"match": 1.0, "map": 0.0}, "fp16": {"match": 0.98, "map": 0.3}, "int8": {"match": 0.95, "map": 1.0}}


@dataclass
class DoctorConfig:
    out: Path = Path("runs/doctor")
    imgsz: int = 320
    data: str = "synthetic:val"
    max_images: int = 32
    precisions: tuple = ("fp32", "fp16", "int8")
    nms: tuple = ("onnx", "trt", "none")
    calib_images: int = 64
    trtexec: bool = True
    iterations: int = 50

    def __post_init__(self):
        self.out = Path(self.out)
        bad = [p for p in self.precisions if p not in BUDGETS]
        if bad:
            raise YoloEdgeError(f"unknown precision(s) {bad}: use fp32, fp16, int8")
        bad = [n for n in self.nms if n not in ("onnx", "trt", "none")]
        if bad:
            raise YoloEdgeError(f"unknown NMS flavour(s) {bad}: use onnx, trt, none")


@dataclass
class Step:
    name: str
    status: str  # ok | FAIL | warn | not available
    detail: str = ""
    data: dict = field(default_factory=dict)


@dataclass
class DoctorReport:
    steps: list[Step]
    json_path: Path
    md_path: Path

    @property
    def exit_code(self) -> int:
        return 1 if any(s.status == "FAIL" for s in self.steps) else 0

    def to_dict(self) -> dict:
        return {"format": "yolo-edge-doctor", "version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "verdict": "FAIL" if self.exit_code else "ok",
                "steps": [{"name": s.name, "status": s.status, "detail": s.detail, "data": s.data} for s in self.steps]}

    def markdown(self) -> str:
        n = {k: sum(s.status == k for s in self.steps) for k in ("ok", "FAIL", "warn", NA)}
        lines = ["# yolo-edge doctor", "",
                 f"**{'FAIL' if self.exit_code else 'ok'}**: {n['ok']} ok, {n['FAIL']} failed, {n['warn']} warnings, "
                 f"{n[NA]} not available", "", "| step | status | detail |", "|---|---|---|"]
        lines += [f"| {s.name} | {s.status} | {s.detail.replace('|', '/')} |" for s in self.steps]
        versions = next((s.data for s in self.steps if s.name == "versions"), {})
        if versions:
            lines += ["", "## Versions", ""] + [f"- {k}: {v}" for k, v in versions.items()]
        return "\n".join(lines) + "\n"


def _version(mod: str):
    from importlib import metadata

    try:
        return metadata.version(mod)
    except metadata.PackageNotFoundError:
        return None


def _step(steps: list, name: str, fn, *args):
    """Run ``fn`` into a Step; an exception is a FAIL with its one-line message, never a crash."""
    try:
        out = fn(*args)
    except YoloEdgeError as e:
        out = Step(name, "FAIL", str(e))
    except Exception as e:  # the report must survive anything a device throws
        out = Step(name, "FAIL", f"{type(e).__name__}: {e}")
    out.name = name
    steps.append(out)
    return out


def _versions(trt, cuda_error: str | None) -> Step:
    from .. import __version__
    from .manifest import current_environment

    env = current_environment(trt) if trt is not None else current_environment(trt=None, cuda=None)
    data = {"python": sys.version.split()[0], "platform": f"{platform.system()} {platform.machine()}",
            "yolo-edge": __version__, "numpy": _version("numpy"), "onnx": _version("onnx"),
            "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"), "torch": _version("torch"),
            "cuda-python": _version("cuda-python"), "pycuda": _version("pycuda"),
            **{k: env.get(k) for k in ("tensorrt", "gpu", "compute_capability", "cuda", "cudnn", "l4t", "jetpack")}}
    detail = f"TensorRT {data['tensorrt'] or NA}, GPU {data['gpu'] or NA}, JetPack {data['jetpack'] or '-'}"
    return Step("versions", "ok", detail + (f" ({cuda_error})" if cuda_error else ""), data)


def _plugins(trt) -> Step:
    from .compat import init_plugins, make_logger

    init_plugins(trt, make_logger(trt))
    creators = [(c.name, str(c.plugin_version)) for c in trt.get_plugin_registry().plugin_creator_list]
    have = any(n == "EfficientNMS_TRT" for n, _ in creators)
    return Step("plugin registry", "ok" if have else "FAIL",
                f"{len(creators)} creators; EfficientNMS_TRT {'registered' if have else 'MISSING'}",
                {"creators": [f"{n} v{v}" for n, v in creators]})


def _export(cfg: DoctorConfig, nms: str, trt_major: int | None = None) -> dict:
    """model.onnx (+ .fp16/.int8) of the bundled model with NMS ``nms``; {precision: path}. The INT8 entry is
    the file made for TensorRT ``trt_major`` (the FP32-scale twin below 10)."""
    from ..export import export_onnx
    from ..spec import NmsSpec

    d = cfg.out / f"nms_{nms}"
    d.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(None, d / "model.onnx", imgsz=(cfg.imgsz, cfg.imgsz), nms=NmsSpec(nms), verbose=False)
    paths = {"fp32": fp32}
    if {"fp16", "int8"} & set(cfg.precisions):
        from ..precision import PrecisionConfig, run_precision

        res = run_precision(fp32, PrecisionConfig(out_dir=str(d), calib="synthetic:calib",
                                                  calib_images=cfg.calib_images, val=None, show_progress=False,
                                                  build_engines=False, fp16="fp16" in cfg.precisions,
                                                  int8="int8" in cfg.precisions))
        paths.update({k: Path(v) for k, v in res.paths.items() if k in ("fp16", "int8") and v})
        if trt_major is not None and trt_major < 10 and res.paths.get("int8_fp32scales"):
            paths["int8"] = Path(res.paths["int8_fp32scales"])  # the FP16-scale file is for TensorRT >= 10
    return paths


def _time_runner(engine: Path, imgsz: int, iterations: int) -> float:
    import numpy as np

    from ..runtime.trt_runner import TrtRunner

    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    with TrtRunner(engine) as r:
        for _ in range(5):
            r.infer({"images": x})
        t = []
        for _ in range(iterations):
            t0 = time.perf_counter()
            r.infer({"images": x})
            t.append(time.perf_counter() - t0)
    return 1000 * float(np.median(t))


def parse_trtexec_timing(text: str) -> dict:
    """trtexec's summary: ``GPU Compute Time: min = a ms, max = b ms, mean = c ms, median = d ms`` and
    ``Throughput: x qps``."""
    out = {}
    m = re.search(r"GPU Compute Time:.*?mean = ([\d.]+) ms, median = ([\d.]+) ms", text)
    if m:
        out["gpu_compute_mean_ms"], out["gpu_compute_median_ms"] = float(m.group(1)), float(m.group(2))
    m = re.search(r"Throughput: ([\d.]+) qps", text)
    if m:
        out["throughput_qps"] = float(m.group(1))
    return out


def _trtexec(engine: Path, imgsz: int, iterations: int) -> dict:
    exe = shutil.which("trtexec") or next((p for p in ("/usr/src/tensorrt/bin/trtexec",) if Path(p).is_file()), None)
    if exe is None:
        return {}
    r = subprocess.run([exe, f"--loadEngine={engine}", f"--shapes=images:1x3x{imgsz}x{imgsz}",
                        f"--iterations={iterations}", "--warmUp=200"], capture_output=True, text=True, timeout=600)
    return {**parse_trtexec_timing(r.stdout + r.stderr), "returncode": r.returncode}


def run_doctor(cfg: DoctorConfig, trt=None) -> DoctorReport:
    """Run every step; write ``doctor.json`` and ``doctor.md`` in ``cfg.out``."""
    from ..deps import available
    from ..util import atomic_write

    cfg.out.mkdir(parents=True, exist_ok=True)
    steps: list[Step] = []
    why_trt = None
    if trt is None:
        if available("tensorrt"):
            try:
                from .compat import tensorrt

                trt = tensorrt()
            except ImportError as e:  # a broken install is a finding, not a crash
                why_trt = f"import tensorrt failed: {e}"
        else:
            why_trt = "TensorRT is not installed (JetPack ships it; elsewhere pip install 'yolo-edge[trt]')"
    cuda_error = None
    if trt is not None:
        try:
            from .cuda import get_backend

            get_backend().close()
        except Exception as e:
            cuda_error = f"no CUDA backend: {e}"
    _step(steps, "versions", _versions, trt, cuda_error)
    if trt is None:
        steps.append(Step("plugin registry", NA, why_trt))
    else:
        _step(steps, "plugin registry", _plugins, trt)
    device = trt is not None and cuda_error is None
    why_device = why_trt or cuda_error
    target = str(trt.__version__) if trt is not None else None

    have_torch = available("torch")
    major = int(target.split(".")[0]) if target and target.split(".")[0].isdigit() else None
    for nms in cfg.nms:
        if not have_torch:
            steps.append(Step(f"export nms={nms}", NA, "torch is not installed (pip install 'yolo-edge[torch]')"))
            continue
        exp = _step(steps, f"export nms={nms}", lambda n=nms: Step(f"export nms={n}", "ok", "",
                                                                   {k: str(v) for k, v in _export(cfg, n, major).items()}))
        if exp.status != "ok":
            continue
        for prec in cfg.precisions:
            onnx_path = exp.data.get(prec)
            name = f"{prec} nms={nms}"
            if onnx_path is None:
                steps.append(Step(f"build {name}", "FAIL", f"the precision job wrote no {prec} model"))
                continue
            _step(steps, f"check {name}", _readiness, onnx_path, target)
            if not device:
                steps.append(Step(f"build {name}", NA, why_device))
                continue
            built = _step(steps, f"build {name}", _build, onnx_path)
            if built.status != "ok":
                continue
            ref = onnx_path if nms != "trt" else (exp.data.get(prec) or "").replace("nms_trt", "nms_onnx")
            if nms == "trt" and not Path(ref).is_file():
                steps.append(Step(f"parity {name}", NA, "needs the nms=onnx export of the same precision"))
            else:
                _step(steps, f"parity {name}", _parity, ref, built.data["engine"], prec, nms, cfg)
            _step(steps, f"timing {name}", _timing, Path(built.data["engine"]), cfg)
    report = DoctorReport(steps, cfg.out / "doctor.json", cfg.out / "doctor.md")
    with atomic_write(report.json_path, "w") as f:
        json.dump(report.to_dict(), f, indent=1, default=str)
    with atomic_write(report.md_path, "w") as f:
        f.write(report.markdown())
    return report


def _readiness(onnx_path, target) -> Step:
    from .readiness import TARGETS, check_onnx

    versions = [target] if target else list(TARGETS)
    reps = [check_onnx(onnx_path, v) for v in versions]
    bad = [r for r in reps if not r.ok]
    return Step(f"check {Path(onnx_path).parent.name}/{Path(onnx_path).name}", "FAIL" if bad else "ok",
                "; ".join(r.summary() for r in reps), {"reports": [r.to_dict() for r in reps]})


def _build(onnx_path) -> Step:
    from .build import BuildConfig, build

    p = Path(onnx_path)
    res = build(BuildConfig(p, p.with_suffix(".engine"), max_batch=4), log=None)
    counts = res.report.counts() if res.report is not None else {}
    return Step(f"build {p.parent.name}/{p.name}", "ok", f"{res.seconds:.0f} s, layers {counts}",
                {"engine": str(res.engine), "seconds": res.seconds, "counts": counts, "notes": res.notes})


def _parity(ref, engine, prec: str, nms: str, cfg: DoctorConfig) -> Step:
    from ..evaluate.parity import parity

    b = BUDGETS[prec]
    r = parity(ref, engine, data=cfg.data, max_images=cfg.max_images, levels=(1, 2, 3), budget_map=b["map"] or 1e-9)
    m = r.metrics
    n = max(m.get("det_a", 0), m.get("det_b", 0), 1)
    rate = m.get("det_matched", 0) / n
    dmap = (m["map50_95_b"] - m["map50_95_a"]) if "map50_95_a" in m else None
    # EfficientNMS differs from NonMaxSuppression at ties and exact thresholds: its level 2 is reported
    ok = rate >= b["match"] - 1e-12 and (dmap is None or dmap >= -b["map"] - 1e-9)
    if prec == "fp32" and nms != "trt":
        ok = ok and r.passed
    status = "ok" if ok else ("warn" if nms == "trt" else "FAIL")
    detail = f"level-2 match {rate:.3f} (>= {b['match']}), ΔmAP {dmap:+.2f} (>= -{b['map']})" if dmap is not None \
        else f"level-2 match {rate:.3f}"
    return Step("parity", status, detail, {"match_rate": rate, "delta_map": dmap, "parity": r.to_dict()})


def _timing(engine: Path, cfg: DoctorConfig) -> Step:
    runner_ms = _time_runner(engine, cfg.imgsz, cfg.iterations)
    data = {"runner_median_ms": runner_ms}
    if cfg.trtexec:
        data["trtexec"] = _trtexec(engine, cfg.imgsz, cfg.iterations)
    t = data.get("trtexec", {}).get("gpu_compute_median_ms")
    detail = f"runner {runner_ms:.2f} ms" + (f", trtexec GPU compute {t:.2f} ms" if t else ", trtexec " + NA)
    return Step("timing", "ok", detail, data)
