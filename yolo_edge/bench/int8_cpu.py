"""INT8 on a CPU, head to head: our ONNX Runtime CPU INT8 target against FP32, the TensorRT-target
INT8 graph, and Ultralytics' ONNX predictor with its FP32 and its own INT8 ONNX
(``python benchmarks/int8_cpu.py`` is the command).

Steps:

1. the FP32 ONNX: the checkpoint exported (default: bundled) or a third-party ONNX adapted
   (``--from-onnx yolov5n.onnx --format yolov5``);
2. the precision job with ``int8_target="ort-cpu"`` (``"both"`` with ``trt_target``): one
   calibration pass, ``<name>.int8-cpu.onnx`` (and ``<name>.int8.onnx``), held to the mAP budget,
   mAP of FP32 and INT8 on the validation images;
3. when ``ultralytics`` is importable: Ultralytics' own INT8 ONNX recipe
   (:func:`~yolo_edge.bench.ultralytics_ref.ultralytics_int8`) on the *same* calibration images,
   scored by the same evaluator, and both Ultralytics graphs in its ``output0`` layout for its predictor;
4. every pipeline end to end (letterbox, inference, NMS, boxes back in image pixels) on the same
   validation images, interleaved (:func:`~yolo_edge.bench.headtohead.interleaved`): the ratios
   survive a CPU whose speed drifts;
5. JSON + Markdown + ``command.txt`` in the output folder.

Default data: for a COCO model (80 classes), the coco128 split of ``../shared/data`` when present
(sorted names, first 64 calibrate, last 64 validate, budget 0.7 mAP points), else
``synthetic:calib`` / ``synthetic:val`` (budget 1.0).
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import YoloEdgeError

COCO128 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco128"
GOAL_VS_FP32 = 1.7
GOAL_VS_ULTRALYTICS = 1.5


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def coco128_split(root: Path, work: Path) -> tuple[Path, Path]:
    """``(calib_dir, val_dir)``: YOLO datasets of symlinks to the first and the last 64 of the sorted
    coco128 images (with their labels and ``data.yaml``), made under ``work``."""
    images = sorted(p for p in (root / "images" / "train").iterdir() if p.is_file())
    if len(images) < 128:
        raise YoloEdgeError(f"{root}: expected 128 images, found {len(images)}")
    out = []
    for name, sel in (("calib", images[:64]), ("val", images[-64:])):
        d = work / f"coco128-{name}"
        (d / "images").mkdir(parents=True, exist_ok=True)
        (d / "labels").mkdir(parents=True, exist_ok=True)
        for p in sel:
            link = d / "images" / p.name
            if not link.exists():
                link.symlink_to(p.resolve())
            lab = root / "labels" / "train" / f"{p.stem}.txt"
            if lab.is_file() and not (d / "labels" / lab.name).exists():
                (d / "labels" / lab.name).symlink_to(lab.resolve())
        if not (d / "data.yaml").exists():
            (d / "data.yaml").symlink_to((root / "data.yaml").resolve())
        out.append(d)
    return out[0], out[1]


@dataclass
class Int8CpuBenchConfig:
    model: str | None = None  # yolo-edge checkpoint (default: bundled)
    from_onnx: str | None = None  # or a third-party YOLO ONNX to adapt
    src_format: str = "auto"
    imgsz: tuple[int, int] = (640, 640)
    calib: str | None = None  # None: coco128 first 64 when present, else synthetic:calib
    val: str | None = None  # None: coco128 last 64 when present, else synthetic:val
    calib_images: int | None = None
    val_images: int | None = None
    max_map_drop: float | None = None  # None: 0.7 on coco128, 1.0 else
    rounds: int = 6
    images: int = 8
    threads: int | None = None
    ultralytics: bool = True
    ort_recipe: bool = True  # also ONNX Runtime's own quantize_static recipe (issue 13's reference measurement)
    trt_target: bool = False  # also make, score and time the TensorRT-target INT8 graph
    work: str = "runs/bench-int8-cpu"
    out: str | None = None
    command: str = ""
    show_progress: bool = True


@dataclass
class Int8CpuBenchResult:
    config: dict
    context: dict
    accuracy: dict = field(default_factory=dict)  # row -> {"map50_95", "map50", "delta"}
    times: dict = field(default_factory=dict)  # row -> {"p50_ms", ...}
    ratios: dict = field(default_factory=dict)
    goals: dict = field(default_factory=dict)
    graphs: dict = field(default_factory=dict)  # row -> integer ops after ONNX Runtime fusion
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _integer_ops(path) -> dict:
    from ..precision.int8_cpu import INTEGER_OPS, fused_op_counts

    c = fused_op_counts(path)
    return {"integer_ops": sum(v for k, v in c.items() if k in INTEGER_OPS),
            "float_conv": c.get("Conv", 0) + c.get("FusedConv", 0),
            "qdq_nodes": c.get("QuantizeLinear", 0) + c.get("DequantizeLinear", 0)}


def run_int8_cpu_bench(cfg: Int8CpuBenchConfig, log: Callable[[str], None] = _log) -> Int8CpuBenchResult:
    from ..export.metadata import get_spec, set_metadata
    from ..precision.calibration import ImageSet
    from ..precision.int8_cpu import cpu_features, int8_kernel_note
    from ..precision.pipeline import PrecisionConfig, evaluate_onnx, run_precision, _Subset
    from ..spec import NmsSpec
    from .device import device_context, package_version
    from .headtohead import interleaved, ratios
    from .ultralytics_ref import available as ul_available

    t0 = time.perf_counter()
    work = Path(cfg.work)
    work.mkdir(parents=True, exist_ok=True)
    # 1. FP32 ONNX
    if cfg.from_onnx:
        from ..export.adapters import adapt_onnx

        name = Path(cfg.from_onnx).stem
        fp32 = adapt_onnx(cfg.from_onnx, work / f"{name}.onnx", fmt=cfg.src_format, verbose=cfg.show_progress)
    else:
        from ..export.onnx_export import export_onnx

        name = Path(cfg.model).stem if cfg.model else "model"
        fp32 = export_onnx(cfg.model, work / f"{name}.onnx", imgsz=cfg.imgsz, verbose=cfg.show_progress)
    fp32 = Path(fp32)
    spec = get_spec(__import__("onnx").load(str(fp32), load_external_data=False))
    # coco128 for a COCO model (80 classes) when no data is given; the synthetic splits otherwise
    coco = COCO128.is_dir() and cfg.calib is None and cfg.val is None and len(spec.names) == 80
    if coco:
        calib, val = (str(p) for p in coco128_split(COCO128, work))
        data_note = "coco128 (sorted names): first 64 calibrate, last 64 validate"
    else:
        calib, val = cfg.calib or "synthetic:calib", cfg.val or "synthetic:val"
        data_note = f"calibration {calib}, validation {val}"
    budget = cfg.max_map_drop if cfg.max_map_drop is not None else (0.7 if coco else 1.0)

    # 2. the precision job, both targets
    pcfg = PrecisionConfig(out_dir=work, name=name, fp16=False, int8=True,
                           int8_target="both" if cfg.trt_target else "ort-cpu", calib=calib,
                           calib_images=cfg.calib_images, val=val, val_images=cfg.val_images, max_map_drop=budget,
                           show_progress=cfg.show_progress, latency_runs=3)
    prec = run_precision(fp32, pcfg)
    acc = {}
    labels = {"fp32": "ours FP32", "int8": "ours INT8 (TensorRT target)", "int8-cpu": "ours INT8 (CPU target)"}
    for r in prec.rows:
        acc[labels[r.precision]] = {"map50_95": r.map50_95, "map50": r.map50, "delta": r.delta_map50_95,
                                    "file": Path(r.path).name, "size_mb": r.size_mb}
    paths = {labels[k]: Path(v) for k, v in prec.paths.items() if k in labels}

    # 3. Ultralytics
    ul_ok, ul_why = ul_available()
    notes = []
    ul = {}
    if cfg.ultralytics and ul_ok:
        import onnx

        from .artifacts import nms_free_copy
        from .ultralytics_ref import to_ultralytics_layout, ultralytics_int8

        raw = nms_free_copy(fp32, work / "eval" / fp32.name)
        cal = ImageSet(calib, cfg.calib_images)
        batches = list(cal.batches(spec.letterbox, 1))
        log(f"ultralytics {package_version('ultralytics')}: its INT8 ONNX recipe on the same {len(batches)} "
            "calibration images")
        q = ultralytics_int8(raw, work / "ultralytics" / f"{name}.int8-raw.onnx", batches)
        m = onnx.load(str(q))
        set_metadata(m, spec.replace(nms=NmsSpec(flavour="none"), precision="int8"))
        onnx.save(m, str(q))
        vset = ImageSet(val, cfg.val_images)
        ds = _Subset(vset.dataset, vset.indices)
        res = evaluate_onnx(q, ds, desc="val ultralytics int8")
        fp = acc["ours FP32"]["map50_95"]
        acc["Ultralytics INT8 ONNX (its recipe)"] = {
            "map50_95": res.map50_95, "map50": res.map50, "delta": None if fp is None else 100 * (res.map50_95 - fp),
            "file": q.name, "size_mb": q.stat().st_size / 1e6}
        ul["Ultralytics FP32 ONNX"] = to_ultralytics_layout(fp32, work / "ultralytics" / f"{name}.onnx", spec.names,
                                                            spec.imgsz)
        ul["Ultralytics INT8 ONNX"] = to_ultralytics_layout(q, work / "ultralytics" / f"{name}_int8.onnx",
                                                            spec.names, spec.imgsz)
        paths["Ultralytics INT8 ONNX"] = q
    elif cfg.ultralytics:
        notes.append(f"Ultralytics rows skipped: {ul_why}")

    # 3b. ONNX Runtime's own recipe, as issue 13 measured it: quantize_static, QDQ, uint8 activations,
    # int8 per-channel weights, MinMax, the decode tail excluded, on the same calibration images
    ort_label = "ONNX Runtime quantize_static (U8S8 per-channel, decode tail float)"
    if cfg.ort_recipe:
        from .artifacts import nms_free_copy

        raw = nms_free_copy(fp32, work / "eval" / fp32.name)
        cal = ImageSet(calib, cfg.calib_images)
        q_raw, q_nms = ort_recipe_int8(raw, work / "ort-recipe" / f"{name}.int8-ort.onnx",
                                       list(cal.batches(spec.letterbox, 1)), nms=spec.nms)
        vset = ImageSet(val, cfg.val_images)
        res = evaluate_onnx(q_raw, _Subset(vset.dataset, vset.indices), desc="val ort recipe")
        fp = acc["ours FP32"]["map50_95"]
        acc[ort_label] = {"map50_95": res.map50_95, "map50": res.map50,
                          "delta": None if fp is None else 100 * (res.map50_95 - fp), "file": q_nms.name,
                          "size_mb": q_nms.stat().st_size / 1e6}
        paths[ort_label] = q_nms

    graphs = {k: _integer_ops(p) for k, p in paths.items()}

    # 4. head to head, end to end
    from ..data import load_dataset
    from ..runtime import Detector
    from ..runtime.ort_runner import OrtRunner
    from .ultralytics_ref import UltralyticsPredictor

    vds = load_dataset(val)
    images = [vds[i].image for i in range(min(cfg.images, len(vds)))]
    pipes, opened = {}, []
    try:
        for label in [k for k in ("ours FP32", "ours INT8 (CPU target)", "ours INT8 (TensorRT target)", ort_label)
                      if k in paths]:
            det = Detector(OrtRunner(paths[label], providers="cpu", threads=cfg.threads))
            pipes[label] = det
            opened.append(det)
        for label, p in ul.items():
            pipes[label] = UltralyticsPredictor(p, spec.names, spec.imgsz, nms=spec.nms)
        log(f"head-to-head: {len(pipes)} pipelines interleaved, {cfg.rounds} rounds x {len(images)} images")
        times = interleaved(pipes, images, rounds=cfg.rounds, warmup=2, progress=cfg.show_progress)
    finally:
        from .worker import _close

        for det in opened:
            _close(det)
    rat = {"vs ours FP32": ratios(times, "ours FP32")}
    if "Ultralytics FP32 ONNX" in times:
        rat["vs Ultralytics FP32"] = ratios(times, "Ultralytics FP32 ONNX")
    goals = {"cpu_int8_vs_fp32": {"target": GOAL_VS_FP32, "ratio": rat["vs ours FP32"]["ours INT8 (CPU target)"]},
             "map_drop": {"target": budget, "drop": None if acc["ours INT8 (CPU target)"]["delta"] is None
                          else -acc["ours INT8 (CPU target)"]["delta"]}}
    goals["cpu_int8_vs_fp32"]["met"] = goals["cpu_int8_vs_fp32"]["ratio"] >= GOAL_VS_FP32
    if goals["map_drop"]["drop"] is not None:
        goals["map_drop"]["met"] = goals["map_drop"]["drop"] <= budget + 1e-9
    if "vs Ultralytics FP32" in rat:
        r = rat["vs Ultralytics FP32"]["ours INT8 (CPU target)"]
        goals["cpu_int8_vs_ultralytics_fp32"] = {"target": GOAL_VS_ULTRALYTICS, "ratio": r, "met": r >= GOAL_VS_ULTRALYTICS}
        a, b = acc["ours INT8 (CPU target)"]["map50_95"], acc["Ultralytics INT8 ONNX (its recipe)"]["map50_95"]
        goals["more_accurate_than_ultralytics_int8"] = {"ours": a, "ultralytics": b, "met": a > b}
    feats = cpu_features()
    ctx = device_context(gpu=False)
    ctx.update({"int8_features": feats["features"], "int8_note": int8_kernel_note(feats),
                "onnxruntime": package_version("onnxruntime"), "ultralytics": package_version("ultralytics"),
                "python": sys.executable, "load_average": _loadavg()})
    notes.append(f"Data: {data_note}. mAP: ONNX Runtime CPU on graphs without NMS + the reference NMS (score 0.001, "
                 "IoU 0.6, 300 per image), pycocotools; the same evaluator for every row.")
    notes.append("Speed: each pipeline end to end on one image (letterbox, inference, NMS, boxes in image pixels), "
                 f"{cfg.rounds} rounds x {len(images)} validation images, interleaved in one process with the order "
                 "rotated each round; p50. Ultralytics rows are its YOLO(onnx).predict (its own letterbox and NMS).")
    res = Int8CpuBenchResult(config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
                             context=ctx, accuracy=acc, times=times, ratios=rat, goals=goals, graphs=graphs,
                             notes=notes, seconds=time.perf_counter() - t0)
    out = Path(cfg.out) if cfg.out else None
    if out is not None:
        write_int8_cpu_report(res, out)
        log(f"wrote {out}/int8_cpu.md, int8_cpu.json, command.txt")
    return res


def _loadavg():
    try:
        import os

        return [round(v, 1) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _f(v, nd=2):
    return "—" if v is None else f"{v:.{nd}f}"


def ort_recipe_int8(raw, dst: Path, batches, nms=None) -> tuple[Path, Path]:
    """ONNX Runtime's own static quantization of ``raw`` (a yolo-edge FP32 ONNX without NMS), the
    recipe issue 13 measured: ``quantize_static`` with QDQ, uint8 activations, int8 per-channel
    weights, MinMax calibration on ``batches``, every op type ONNX Runtime quantizes by default, the
    decode tail excluded. Returns ``(graph without NMS, graph with ``nms`` embedded)``."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from ..export.metadata import get_spec, set_metadata
    from ..export.nms import add_nms
    from ..precision.graph import find_decode_tail
    from ..precision.int8 import _quiet

    m = onnx.load(str(raw))
    spec = get_spec(m)
    tail = find_decode_tail(m)
    name = m.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: x}

    dst.parent.mkdir(parents=True, exist_ok=True)
    with _quiet():
        quantize_static(str(raw), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(tail.nodes))
    q = onnx.load(str(dst))
    set_metadata(q, spec.replace(precision="int8"))
    onnx.save(q, str(dst))
    with_nms = dst.with_name(dst.stem + ".nms.onnx")
    qn = add_nms(onnx.load(str(dst)), nms) if nms is not None and nms.flavour != "none" else onnx.load(str(dst))
    set_metadata(qn, spec.replace(precision="int8", **({"nms": nms} if nms is not None else {})))
    onnx.save(qn, str(with_nms))
    return dst, with_nms


def int8_cpu_markdown(res: Int8CpuBenchResult) -> str:
    c = res.context
    lines = [f"# INT8 on a CPU — {Path(res.config.get('from_onnx') or res.config.get('model') or 'bundled').name}", "",
             f"Command: `{res.config.get('command')}`", "",
             f"Machine: {c.get('cpu')} ({c.get('cpu_cores')} cores), INT8-relevant features: "
             f"{', '.join(c.get('int8_features') or []) or 'none'} ({c.get('int8_note')}); onnxruntime "
             f"{c.get('onnxruntime')}" + (f", ultralytics {c.get('ultralytics')}" if c.get('ultralytics') else "")
             + f"; Python {c.get('python')}.", "",
             "| pipeline | e2e p50 ms | vs ours FP32 | vs Ultralytics FP32 | mAP50-95 | mAP50 | ΔmAP50-95 | "
             "integer ops (ORT) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    acc_key = {"Ultralytics INT8 ONNX": "Ultralytics INT8 ONNX (its recipe)"}
    for k, t in res.times.items():
        a = res.accuracy.get(acc_key.get(k, k), {})
        g = res.graphs.get(k, {})
        lines.append(f"| {k} | {t['p50_ms']:.1f} | {res.ratios['vs ours FP32'].get(k, 0):.2f}× | "
                     + (f"{res.ratios['vs Ultralytics FP32'][k]:.2f}×" if "vs Ultralytics FP32" in res.ratios else "—")
                     + f" | {_f(None if a.get('map50_95') is None else 100 * a['map50_95'])} | "
                     f"{_f(None if a.get('map50') is None else 100 * a['map50'])} | "
                     f"{_f(a.get('delta')) if k != 'ours FP32' else '0 (ref)'} | {g.get('integer_ops', '—')} |")
    lines += ["", "Goals:", ""]
    for k, v in res.goals.items():
        lines.append(f"- {k}: " + ", ".join(f"{kk} {_f(vv, 3) if isinstance(vv, float) else vv}" for kk, vv in v.items()))
    lines += [""] + [f"- {n}" for n in res.notes] + ["", f"Total {res.seconds:.0f} s."]
    return "\n".join(lines) + "\n"


def write_int8_cpu_report(res: Int8CpuBenchResult, out: Path) -> None:
    from ..util import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "int8_cpu.json", "w") as f:
        json.dump(res.to_dict(), f, indent=1, default=str)
    with atomic_write(out / "int8_cpu.md", "w") as f:
        f.write(int8_cpu_markdown(res))
    with atomic_write(out / "command.txt", "w") as f:
        f.write(res.config.get("command", "") + f"\n# {_dt.datetime.now():%Y-%m-%d %H:%M}, python {sys.executable}\n")


__all__ = ["Int8CpuBenchConfig", "Int8CpuBenchResult", "coco128_split", "int8_cpu_markdown", "run_int8_cpu_bench",
           "write_int8_cpu_report"]
