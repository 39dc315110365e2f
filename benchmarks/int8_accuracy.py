"""INT8 accuracy: every calibration method, NVIDIA ModelOpt as the peer, and any other INT8 graph,
against FP32 on the same validation images with the same evaluator.

    # a real COCO detector on coco128 (calibrate on the first 64 sorted images, validate on the last 64)
    python benchmarks/int8_accuracy.py --from-onnx ../shared/data/yolov5n.onnx --format yolov5 \\
        --calib SPLIT/first64 --val SPLIT/last64 --modelopt-python /work/venv-modelopt/bin/python
    # the bundled checkpoint on the synthetic splits
    python benchmarks/int8_accuracy.py --calib-images 512
    # add graphs made elsewhere (another placement, another tool): LABEL=PATH, with or without NMS
    python benchmarks/int8_accuracy.py ... --extra placement-v2=runs/export/model.int8.onnx

Rows (ONNX Runtime CPU; graphs without NMS + the numpy reference NMS with the evaluation
thresholds, scored by pycocotools — the same for every row):

* ``fp32`` — the reference;
* ``int8 <method>`` — yolo-edge's Q/DQ graph (placement as ``quantize_qdq`` makes it today), no
  exclusions, ranges by each calibration method from ONE calibration pass;
* ``int8 <default method> + refined ranges (the job's default)`` — that method's calibrated ranges
  (on shifted grids ``qdq.shifted_start``'s) refined end to end on the first ``--refine``
  calibration images (``precision/refine.py``), as ``export --int8`` does; and the same
  quantization as the FP16-scale file (the job's ``model.int8.onnx`` for TensorRT 10/11); the guard
  (``--guard``: the job's, ``sensitive`` by default) applies to every yolo-edge row;
* with ``--also-weight-scale mse``: the default method's calibrated and refined rows again with
  those per-channel weight scales (``qdq.quantize_weight``);
* ``modelopt <method>`` — ``modelopt.onnx.quantization.quantize`` (its own placement, FP16 scales
  by default) run in ModelOpt's virtual environment through ``benchmarks/modelopt_quantize.py``
  (``--modelopt-python`` or ``$YOLO_EDGE_MODELOPT_PYTHON``; the rows are skipped when absent), on the
  same calibration images, letterboxed by yolo-edge;
* ``<label>`` for each ``--extra LABEL=PATH``.

Columns: mAP50-95, mAP50, AP-small (points), Δ vs FP32, the 90 % image-bootstrap interval of
that Δ (paired: the same resampled images for both models), and the agreement with FP32's own
detections (``evaluate/bootstrap.py`` ``agreement``). Results go to ``--out`` as
``<name>.json`` and ``<name>.md`` with the command that made them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

METHODS = ("minmax", "entropy", "percentile", "mse")
MODELOPT_SCRIPT = Path(__file__).with_name("modelopt_quantize.py")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    from yolo_edge.precision.calibration import METHODS as ALL_METHODS
    from yolo_edge.precision.sensitivity import GUARDS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="yolo-edge checkpoint (default: the bundled one)")
    src.add_argument("--from-onnx", default=None, help="a third-party YOLO ONNX (adapted like `export --from-onnx`)")
    ap.add_argument("--format", default="auto", help="layout of --from-onnx (yolov5, yolov8, auto)")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--calib", default="synthetic:calib")
    ap.add_argument("--calib-images", type=int, default=512)
    ap.add_argument("--val", default="synthetic:val")
    ap.add_argument("--val-images", type=int, default=None, help="default: all")
    ap.add_argument("--methods", nargs="*", default=list(ALL_METHODS), choices=ALL_METHODS,
                    help="yolo-edge calibration methods to score (none: only FP32, ModelOpt and --extra rows)")
    ap.add_argument("--modelopt-python", default=os.environ.get("YOLO_EDGE_MODELOPT_PYTHON"),
                    help="python of a venv with nvidia-modelopt[onnx] (default $YOLO_EDGE_MODELOPT_PYTHON; "
                         "absent: no ModelOpt rows)")
    ap.add_argument("--modelopt-methods", nargs="+", default=["entropy", "max"], choices=("entropy", "max"))
    ap.add_argument("--modelopt-high-precision", default="fp16", choices=("fp16", "fp32"))
    ap.add_argument("--extra", nargs="*", default=[], metavar="LABEL=PATH", help="more INT8 graphs to score")
    ap.add_argument("--head-guard", type=float, default=None, metavar="SHARE",
                    help="FLOP share the guard may keep FP16 in yolo-edge's rows (default: the job's, 0.05; 0: off). "
                         "The job's method (entropy) also gets a row without it and a row for the FP16-scale file")
    ap.add_argument("--guard", default=None, choices=GUARDS,
                    help="which layers the guard keeps FP16 (default: the job's, sensitive; precision/sensitivity.py "
                         "sensitive_guard, chosen on the default method's calibrated ranges as the job does)")
    ap.add_argument("--weight-scale", default=None, choices=("mse", "max"),
                    help="per-channel weight scales of yolo-edge's rows (default: the job's, mse)")
    ap.add_argument("--also-weight-scale", default=None, choices=("mse", "max"),
                    help="two more rows for the default method with these weight scales: calibrated and refined ranges")
    ap.add_argument("--weight-rounding", default=None, choices=("gptq", "nearest"),
                    help="INT8 weight rounding of yolo-edge's rows (default: the job's; precision/rounding.py)")
    ap.add_argument("--also-weight-rounding", default=None, choices=("gptq", "nearest"),
                    help="two more rows for the default method with this weight rounding: calibrated and refined ranges")
    ap.add_argument("--shift", default=None, choices=("all", "unpadded", "off"),
                    help="activation grids moved over [lower bound, amax] in yolo-edge's rows (default: the job's; "
                         "precision/qdq.py shift_activations)")
    ap.add_argument("--also-shift", default=None, choices=("all", "unpadded", "off"),
                    help="two more rows for the default method with this shift: calibrated and refined ranges")
    ap.add_argument("--refine-seed", type=int, default=0,
                    help="order in which the refinement visits its images (refine_amax seed; the job uses 0)")
    ap.add_argument("--refine", type=int, default=None, metavar="N",
                    help="images the default method's ranges are refined on for the 'refined' row, as the job does "
                         "(default: the job's, precision/refine.py REFINE_IMAGES; 0: no such row)")
    ap.add_argument("--reuse-stats", action="store_true",
                    help="reuse --work's calibration statistics when their key matches (the timing is then not measured)")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the Δ interval (0: none)")
    ap.add_argument("--name", default="int8_accuracy", help="stem of the result files")
    ap.add_argument("--out", default="benchmarks/results", help="where <name>.{json,md} go")
    ap.add_argument("--work", default="runs/benchmarks/int8", help="models and statistics of the run")
    ap.add_argument("--coco128", default=None, metavar="DIR",
                    help="a coco128 folder: --calib/--val become the halves of --split (sorted names)")
    ap.add_argument("--split", default="first-last", choices=tuple(SPLITS),
                    help="with --coco128: first-last (the convention: first 64 calibrate, last 64 validate), "
                         "last-first (swapped), even-odd, odd-even, random1..random4 (seeded shuffles)")
    args = ap.parse_args(argv)
    if args.coco128:
        args.calib, args.val = coco128_split(Path(args.coco128), args.split, Path(args.work) / "split")

    import numpy as np
    import onnx

    from yolo_edge.evaluate.bootstrap import AGREEMENT_CONF, agreement, collect, paired_bootstrap
    from yolo_edge.evaluate.validate import VAL_NMS
    from yolo_edge.export.metadata import get_spec, set_metadata
    from yolo_edge.precision.calibration import ImageSet
    from yolo_edge.precision.graph import copy_model, find_decode_tail, prepare, strip_nms
    from yolo_edge.precision.int8 import Int8Config as _Int8Config, quantizable_nodes, quantize_qdq
    from yolo_edge.precision.pipeline import _Subset, load_or_collect_stats, stats_key
    from yolo_edge.precision.qdq import HEAD_GUARD_SHARE, head_guard
    from yolo_edge.runtime import Detector
    from yolo_edge.runtime.ort_runner import OrtRunner
    from yolo_edge.spec import NmsSpec
    from yolo_edge.util import sha256_file

    from functools import partial

    from yolo_edge.precision.qdq import DEFAULT_WEIGHT_SCALE

    from yolo_edge.precision.qdq import DEFAULT_SHIFT, shift_bounds, shifted_start
    from yolo_edge.precision.rounding import DEFAULT_WEIGHT_ROUNDING

    weight_scale = args.weight_scale or DEFAULT_WEIGHT_SCALE
    weight_rounding = args.weight_rounding or DEFAULT_WEIGHT_ROUNDING
    shift = args.shift or DEFAULT_SHIFT
    Int8Config = partial(_Int8Config, weight_scale=weight_scale, shift=shift)  # rebound with the rounded weights below
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results_dir = Path(args.out)
    results_dir.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    # the FP32 yolo-edge graph (NMS none) and the source ModelOpt quantizes
    if args.from_onnx:
        from yolo_edge.export.adapters import adapt_onnx

        fp32 = adapt_onnx(args.from_onnx, work / "model.onnx", fmt=args.format, nms=NmsSpec(flavour="none"), verbose=False)
        modelopt_src = Path(args.from_onnx)
    else:
        from yolo_edge.export import export_onnx

        fp32 = export_onnx(args.model, work / "model.onnx", imgsz=args.imgsz, nms=NmsSpec(flavour="none"),
                           verbose=False)
        modelopt_src = Path(fp32)
    src = onnx.load(str(fp32))
    spec = get_spec(src)
    raw = prepare(strip_nms(src))
    tail = find_decode_tail(raw)
    nodes = quantizable_nodes(raw, exclude=tail.nodes)
    # the Q/DQ sites the job quantizes (pipeline.py, TensorRT placement): weighted-layer inputs, the
    # residual Add inputs and MaxPool inputs; every one needs a range
    from yolo_edge.precision.qdq import qdq_sites

    acts = {t: [c for c, _ in uses] for t, uses in qdq_sites(raw, Int8Config(), tail.nodes).items()}
    guard_share = HEAD_GUARD_SHARE if args.head_guard is None else args.head_guard
    from yolo_edge.precision.sensitivity import DEFAULT_GUARD, GUARD_IMAGES, sensitive_guard

    guard_policy = args.guard or DEFAULT_GUARD
    guard = head_guard(raw, tail.head, nodes, guard_share) if guard_policy == "head" else []  # sensitive: below
    eval_spec = spec.replace(nms=NmsSpec(flavour="none"))

    # one calibration pass, timed; each method's range selection, timed
    calib = ImageSet(args.calib, args.calib_images)
    hashes = calib.hashes()
    key = stats_key(sha256_file(fp32), spec.letterbox, hashes)
    t = time.perf_counter()
    stats, _ = load_or_collect_stats(raw, calib, spec.letterbox, list(acts), key, work / "calibration.stats.npz",
                                     reuse=args.reuse_stats)
    pass_s = time.perf_counter() - t
    timing = {"images": stats.n_images, "pass_seconds": round(pass_s, 2), "method_seconds": {}}
    amaxes = {}
    for m in args.methods:
        t = time.perf_counter()
        if m == "auto":
            from yolo_edge.precision.sensitivity import auto_amax

            batches = list(calib.head(4).batches(spec.letterbox, 1))
            amaxes[m], choice = auto_amax(raw, stats, lambda a: quantize_qdq(raw, a, Int8Config(exclude=tuple(guard)),
                                                                             tail.nodes),
                                          acts, batches)
            timing["auto_choice"] = {c: list(choice.values()).count(c) for c in dict.fromkeys(choice.values())}
        else:
            amaxes[m] = stats.amax(m, names=acts)
        timing["method_seconds"][m] = round(time.perf_counter() - t, 2)
    _log(f"calibration: {stats.n_images} images in {pass_s:.1f} s; range selection "
         + ", ".join(f"{m} {s:.2f} s" for m, s in timing["method_seconds"].items()))

    val = ImageSet(args.val, args.val_images)
    val_ds = _Subset(val.dataset, val.indices)

    from yolo_edge.precision.refine import REFINE_IMAGES

    refine_n = REFINE_IMAGES if args.refine is None else args.refine
    graphs: list[tuple[str, object]] = [("fp32", raw)]
    from yolo_edge.precision.calibration import DEFAULT_METHOD

    primary = DEFAULT_METHOD if DEFAULT_METHOD in args.methods else (args.methods or [None])[0]

    tables: dict = {}

    def rounded(kind, scale):
        """The INT8 weights the job writes with this rounding and these scales (None: nearest)."""
        if kind == "nearest":
            return None
        if (kind, scale) not in tables:
            from yolo_edge.precision.rounding import ROUNDING_IMAGES, gptq_weights

            r = gptq_weights(raw, [n for n in nodes if n not in guard],
                             list(calib.head(ROUNDING_IMAGES).batches(spec.letterbox, 1)), scale, show_progress=True)
            timing[f"gptq_{scale}"] = {k: v for k, v in r.to_dict().items() if k != "error"}
            _log(f"gptq ({scale} weight scales): {r.summary()}")
            tables[kind, scale] = r.weights
        return tables[kind, scale]

    # every yolo-edge row: the job's weight scales and rounding
    Int8Config = partial(_Int8Config, weight_scale=weight_scale, int8_weights=rounded(weight_rounding, weight_scale),
                         shift=shift)

    def start(m, shf, skip=None):
        """Method ``m``'s calibrated ranges as the job quantizes them without refinement under
        activation shift ``shf`` (qdq.shifted_start), and the tensors on shifted grids."""
        skip = set(guard) if skip is None else set(skip)
        sites = {t: [c for c, _ in uses if c not in skip]
                 for t, uses in qdq_sites(raw, _Int8Config(method=m), tail.nodes).items()}
        lower = shift_bounds(raw, {t: cs for t, cs in sites.items() if cs and t in amaxes[m]}, shf)
        return shifted_start(amaxes[m], lower, stats.absmax()), lower

    if guard_policy == "sensitive" and guard_share > 0 and primary:  # as the job: on the calibrated full INT8 model
        choice = sensitive_guard(raw, quantize_qdq(raw, start(primary, shift, skip=())[0], Int8Config(method=primary),
                                                   tail.nodes),
                                 list(calib.head(GUARD_IMAGES).batches(spec.letterbox, 1)), nodes, guard_share,
                                 show_progress=True)
        guard = choice.nodes
        timing["guard"] = choice.to_dict()
        _log(f"guard: {choice.summary()}: {', '.join(guard)}")

    def refine_row(m, scale, timing, key, rounding=weight_rounding, shift=shift):
        """Method ``m``'s ranges refined end to end (precision/refine.py) with weight scales ``scale``,
        weight ``rounding`` and activation ``shift``: the Q/DQ graph as the job writes it."""
        from yolo_edge.precision.refine import refine_amax

        cfg = partial(_Int8Config, weight_scale=scale, int8_weights=rounded(rounding, scale), shift=shift)
        sites = {t: [c for c, _ in uses if c not in guard]
                 for t, uses in qdq_sites(raw, cfg(method=m), tail.nodes).items()}
        sites = {t: cs for t, cs in sites.items() if cs}
        a0, lower = start(m, shift)  # the refinement starts from the calibrated ranges, as the job's does
        r = refine_amax(raw, sites, a0, [n for n in nodes if n not in guard],
                        list(calib.head(refine_n).batches(spec.letterbox, 1)), show_progress=True, weight_scale=scale,
                        seed=args.refine_seed, int8_weights=rounded(rounding, scale), lower=lower)
        timing[key] = r.to_dict()
        _log(f"refine ({scale} weight scales, {rounding} rounding, shift {shift}): {r.summary()}")
        return quantize_qdq(raw, r.amax, cfg(method=m, exclude=tuple(guard)), tail.nodes)

    from yolo_edge.precision.fp16 import convert_fp16
    from yolo_edge.precision.qdq import fp16_scale_twin

    f16 = convert_fp16(raw, stats.absmax(), tail=tail.nodes).model if primary else None
    for m in args.methods:
        q = quantize_qdq(raw, start(m, shift)[0], Int8Config(method=m, exclude=tuple(guard)), tail.nodes)
        graphs.append((f"int8 {m}", q))
        if m == primary:  # the same quantization as the TensorRT 10/11 file has it (FP16 graph, FP16 scales)
            graphs.append((f"int8 {m}, FP16-scale file (TensorRT 10/11) as ONNX Runtime runs it", fp16_scale_twin(q, f16)))
        if m == primary and guard:
            graphs.append((f"int8 {m}, no guard", quantize_qdq(raw, start(m, shift, skip=())[0], Int8Config(method=m),
                                                                    tail.nodes)))
        if m == primary and refine_n > 0:  # the job's default: these ranges refined end to end (precision/refine.py)
            at = next(i for i, (label, _) in enumerate(graphs) if label == f"int8 {m}")
            refined = refine_row(m, weight_scale, timing, "refine")
            graphs[at:at] = [(f"int8 {m} + refined ranges (the job's default)", refined),
                             (f"int8 {m} + refined ranges, FP16-scale file (the job's model.int8.onnx for TensorRT "
                              f"10/11) as ONNX Runtime runs it", fp16_scale_twin(refined, f16))]
        for scale, rounding, shf, other, what in (
                (args.also_weight_scale, weight_rounding, shift, args.also_weight_scale, "weight scales"),
                (weight_scale, args.also_weight_rounding, shift, args.also_weight_rounding, "weight rounding"),
                (weight_scale, weight_rounding, args.also_shift, args.also_shift, "shift")):
            if m != primary or not other:
                continue  # the default method's calibrated and refined rows with other weights / shift
            cfg = partial(_Int8Config, weight_scale=scale, int8_weights=rounded(rounding, scale), shift=shf)
            graphs.append((f"int8 {m}, {other} {what}",
                           quantize_qdq(raw, start(m, shf)[0], cfg(method=m, exclude=tuple(guard)), tail.nodes)))
            if refine_n > 0:
                graphs.append((f"int8 {m} + refined ranges, {other} {what}",
                               refine_row(m, scale, timing, f"refine_{other}_{what.replace(' ', '_')}", rounding, shf)))

    notes = []
    if args.modelopt_python and Path(args.modelopt_python).exists():
        npy = work / f"calib.{stats.data_hash[:16]}.npy"  # keyed by the images: never stale
        if not npy.is_file():
            np.save(npy, np.concatenate(list(calib.batches(spec.letterbox, 1))))
        for m in args.modelopt_methods:
            out = work / f"modelopt.{m}.{args.modelopt_high_precision}.onnx"
            mkey = {"source_sha256": sha256_file(modelopt_src), "calib_data_sha256": stats.data_hash,
                    "letterbox": str(spec.letterbox), "method": m, "high_precision": args.modelopt_high_precision}
            kpath = out.with_suffix(".key.json")
            if out.is_file() and kpath.is_file() and json.loads(kpath.read_text()) == mkey:
                _log(f"modelopt {m}: reusing {out} (same source, calibration images and settings)")
            else:
                t = time.perf_counter()
                r = subprocess.run([args.modelopt_python, str(MODELOPT_SCRIPT), str(modelopt_src), str(npy), str(out),
                                    "--method", m, "--high-precision", args.modelopt_high_precision],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    err = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode
                    notes.append(f"modelopt {m} failed: {err}")
                    _log(notes[-1])
                    continue
                timing[f"modelopt_{m}_seconds"] = round(time.perf_counter() - t, 1)
                kpath.write_text(json.dumps(mkey))
            q = onnx.load(str(out))
            if args.from_onnx:
                from yolo_edge.export.adapters import adapt_onnx

                names_txt = work / "names.txt"
                names_txt.write_text("\n".join(spec.names) + "\n")
                q = onnx.load(str(adapt_onnx(out, work / f"modelopt.{m}.adapted.onnx", fmt=args.format,
                                             nms=NmsSpec(flavour="none"), names=str(names_txt), verbose=False)))
            graphs.append((f"modelopt {m} ({args.modelopt_high_precision} scales)", q))
        notes.append(f"ModelOpt {_modelopt_version(args.modelopt_python)}, high_precision_dtype="
                     f"{args.modelopt_high_precision}, calibration_eps=['cpu'], same {len(calib)} calibration images")
    else:
        notes.append("ModelOpt rows skipped: no --modelopt-python / $YOLO_EDGE_MODELOPT_PYTHON")
    for item in args.extra:
        label, _, path = item.partition("=")
        m = onnx.load(path)
        if get_spec(m) is None and args.from_onnx:  # a third-party graph (e.g. another tool's INT8): adapt it
            from yolo_edge.export.adapters import adapt_onnx

            names_txt = work / "names.txt"
            names_txt.write_text("\n".join(spec.names) + "\n")
            m = onnx.load(str(adapt_onnx(path, work / f"extra.{len(graphs)}.onnx", fmt=args.format,
                                         nms=NmsSpec(flavour="none"), names=str(names_txt), verbose=False)))
        graphs.append((label, strip_nms(m)))

    val_x = list(val.batches(spec.letterbox, 1))

    def raw_outputs(model):
        """Each validation image's graph outputs (before NMS), by ONNX Runtime on the CPU."""
        from yolo_edge.precision.calibration import ort_session

        sess = ort_session(model)
        name = sess.get_inputs()[0].name
        return [sess.run(None, {name: x}) for x in val_x]

    def output_error(outs, ref):
        """Mean over the validation images of how far the outputs moved from FP32's: the refinement's
        loss (precision/refine.py ``output_loss``, squared score error + score-weighted 1 - IoU), on
        images the ranges were not refined on. None without PyTorch or for other outputs."""
        try:
            import torch

            from yolo_edge.precision.refine import output_loss
        except ImportError:
            return None
        if len(outs[0]) != 2 or any(a.shape != b.shape for a, b in zip(outs[0], ref[0])):
            return None
        return float(np.mean([float(output_loss(torch, [torch.from_numpy(v) for v in o], [torch.from_numpy(v) for v in f]))
                              for o, f in zip(outs, ref)]))

    fp32_outs = None
    evaluators, rows = [], []
    for label, model in graphs:
        p = work / "eval.onnx"
        m = copy_model(model)
        set_metadata(m, eval_spec.replace(precision="fp32" if label == "fp32" else "int8"))
        onnx.save(m, str(p))
        with Detector(OrtRunner(p, providers="cpu"), nms=VAL_NMS, max_batch=8) as det:
            ev = collect(det, val_ds, desc=f"val {label}")
        r = ev.compute()
        evaluators.append(ev)
        row = {"row": label, "map50_95": r.map50_95, "map50": r.map50, "ap_small": r.ap_small}
        outs = raw_outputs(model)
        fp32_outs = fp32_outs or outs
        row["output_error"] = output_error(outs, fp32_outs)
        if evaluators[1:]:  # agreement with FP32's own detections (score >= AGREEMENT_CONF) as the labels
            a = agreement(ev, evaluators[0]).compute()
            row.update(agreement_map50_95=a.map50_95, agreement_ap_small=a.ap_small)
        rows.append(row)
        _log(f"{label}: mAP50-95 {100 * r.map50_95:.2f}  mAP50 {100 * r.map50:.2f}  AP-small {100 * r.ap_small:.2f}")
    boot = paired_bootstrap(evaluators, n=args.bootstrap) if args.bootstrap else None
    for i, row in enumerate(rows):
        row["delta_map50_95"] = 100 * (row["map50_95"] - rows[0]["map50_95"])
        row["delta_ap_small"] = 100 * (row["ap_small"] - rows[0]["ap_small"])
        if boot is not None and i:
            row["delta_ci90"] = list(boot.interval(i, 0))

    cmd = " ".join(["python", "benchmarks/int8_accuracy.py", *(argv if argv is not None else sys.argv[1:])])
    result = {"command": cmd, "head_guard": {"share": guard_share, "policy": guard_policy, "nodes": guard}, "model": str(args.from_onnx or args.model or "bundled"), "calib": args.calib,
              "val": args.val, "val_images": len(val_ds), "calibration": timing, "rows": rows, "notes": notes,
              "bootstrap": args.bootstrap, "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
              "python": platform.python_version(), "total_seconds": round(time.perf_counter() - t_all, 1)}
    (results_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    lines = [f"# INT8 accuracy: {result['model']}, calibration {args.calib} ({stats.n_images} images), "
             f"validation {args.val} ({len(val_ds)} images)", "", f"`{cmd}`", "",
             "| model | mAP50-95 | mAP50 | AP-small | Δ mAP50-95 | 90 % CI of Δ | Δ AP-small | agreement with FP32 "
             "(mAP50-95 / AP-small) | output error vs FP32 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        ci = row.get("delta_ci90")
        lines.append(f"| {row['row']} | {100 * row['map50_95']:.2f} | {100 * row['map50']:.2f} | "
                     f"{100 * row['ap_small']:.2f} | {row['delta_map50_95']:+.2f} | "
                     f"{'—' if ci is None else f'{ci[0]:+.2f} … {ci[1]:+.2f}'} | {row['delta_ap_small']:+.2f} | "
                     + (f"{100 * row['agreement_map50_95']:.2f} / {100 * row['agreement_ap_small']:.2f} |"
                        if "agreement_map50_95" in row else "— |")
                     + (f" {row['output_error']:.3f} |" if row.get("output_error") is not None and row["row"] != "fp32"
                        else " — |"))
    lines += ["", f"Agreement: the row's detections scored (pycocotools) against FP32's own detections with score "
              f">= {AGREEMENT_CONF} as the labels (100 = FP32 reproduced; less noisy than Δ against labels). "
              "Output error: the mean over the validation images of the refinement's loss (squared score error "
              "over all anchors and classes + FP32-score-weighted 1 - IoU of the boxes; precision/refine.py "
              "output_loss) between the row's raw outputs and FP32's: smooth, so the least noisy of the three. "
              + (f"Guard ({guard_policy}, FLOP share {guard_share:g}): {', '.join(guard)} kept FP16 in yolo-edge's "
                 "rows (as the job does)." if guard else "No guard."),
              "", f"Calibration: {stats.n_images} images, one pass {pass_s:.1f} s; range selection "
              + ", ".join(f"{m} {s:.2f} s" for m, s in timing["method_seconds"].items()) + ".", *notes,
              f"Machine: {result['machine']}; total {result['total_seconds']:.0f} s.", ""]
    (results_dir / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


SPLITS = {"first-last": (lambda n: n[:64], lambda n: n[64:]), "last-first": (lambda n: n[64:], lambda n: n[:64]),
          "even-odd": (lambda n: n[0::2], lambda n: n[1::2]), "odd-even": (lambda n: n[1::2], lambda n: n[0::2])}


def _random_half(seed: int, first: bool):
    """Halves of a seeded shuffle of the sorted names (numpy PCG64, seed 100 + k): calibrate on the
    shuffle's first 64, validate on the rest; each half sorted again."""
    import numpy as np

    def pick(names):
        perm = [names[i] for i in np.random.default_rng(100 + seed).permutation(len(names))]
        return sorted(perm[:64] if first else perm[64:])
    return pick


SPLITS.update({f"random{k}": (_random_half(k, True), _random_half(k, False)) for k in range(1, 5)})


def coco128_split(root: Path, split: str, work: Path) -> tuple[str, str]:
    """Two YOLO datasets of symbolic links (images, labels, data.yaml) under ``work``: the
    calibration and validation halves of coco128's sorted image names."""
    images = root / "images" / "train"
    names = sorted(p.name for p in images.iterdir())
    out = []
    for part, pick in zip(("calib", "val"), SPLITS[split]):
        d = work / split / part
        for sub in ("images", "labels"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        for f in pick(names):
            for src, dst in ((images / f, d / "images" / f),
                             (root / "labels" / "train" / (Path(f).stem + ".txt"), d / "labels" / (Path(f).stem + ".txt"))):
                if src.is_file() and not dst.exists():
                    dst.symlink_to(src.resolve())
        if not (d / "data.yaml").exists():
            (d / "data.yaml").symlink_to((root / "data.yaml").resolve())
        out.append(str(d))
    return out[0], out[1]


def _modelopt_version(python: str) -> str:
    r = subprocess.run([python, "-c", "import modelopt; print(modelopt.__version__)"], capture_output=True, text=True)
    return r.stdout.strip() or "?"


if __name__ == "__main__":
    sys.exit(main())
