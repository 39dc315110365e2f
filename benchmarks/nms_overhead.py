"""What embedded NMS costs in ONNX Runtime: ``--nms onnx`` vs ``--nms none`` + numpy NMS.

    python benchmarks/nms_overhead.py                      # bundled checkpoint (else a random n model), 640
    python benchmarks/nms_overhead.py --model m.pt --runs 100 --conf 0.1

Exports the same checkpoint twice (``--nms onnx`` and ``--nms none``) into a temporary folder and
times, interleaved image by image on real photos (and synthetic scenes when available), batch 1:

* ``none, model only``: ``session.run`` of the raw graph (the reference latency);
* ``none + numpy NMS``: that plus :func:`yolo_edge.postprocess.postprocess` (the fallback path);
* ``onnx NMS embedded``: ``session.run`` of the graph with NMS embedded (outputs ready to use);
* ``NMS subgraph alone``: just the embedded-NMS nodes (:func:`yolo_edge.export.nms.nms_model`) on the
  model's own boxes/scores, and on a crowded variant (``--crowd`` extra candidates per image with
  overlapping boxes). On a busy machine this row is the stable measure of the overhead: it is what
  the embedded graph adds to the model.

Prints a Markdown table (p50 / p90 in ms, overhead against the model alone) and the command.
The goal (issue 4) is an embedded-NMS overhead of at most 5 % for the n model at 640 on the CPU.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

import numpy as np  # noqa: E402


def _images(n: int) -> list[np.ndarray]:
    imgs = []
    try:
        from skimage import data

        names = ("astronaut", "coffee", "chelsea", "rocket")
        imgs += [np.ascontiguousarray(getattr(data, k)()[..., ::-1]) for k in names]
    except ImportError:
        pass
    try:
        from yolo_edge.data import synthetic_split

        val = synthetic_split("val", n=4)
        imgs += [val[i].image for i in range(4)]
    except ImportError:
        pass
    if not imgs:
        rng = np.random.default_rng(0)
        imgs = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(4)]
    return (imgs * n)[:n] if n > len(imgs) else imgs


def _checkpoint(arg: str | None, tmp: Path) -> tuple[Path, str]:
    if arg:
        return Path(arg), Path(arg).name
    from yolo_edge.assets import DEFAULT_CHECKPOINT

    if DEFAULT_CHECKPOINT.exists():
        return DEFAULT_CHECKPOINT, DEFAULT_CHECKPOINT.name
    import torch

    from yolo_edge.model import YOLO, save_checkpoint

    torch.manual_seed(0)
    path = save_checkpoint(tmp / "random-n.pt", YOLO.from_scale("n", nc=80))
    return path, "random-init n (nc=80; the bundled checkpoint is missing)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="checkpoint (default: the bundled one, else a random-init n model)")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--runs", type=int, default=40, help="timed runs per variant (default 40)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.45)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = default)")
    ap.add_argument("--crowd", type=int, default=300, help="candidates per image in the crowded NMS-only row")
    args = ap.parse_args(argv)

    import onnxruntime as ort

    from yolo_edge.export import export_onnx
    from yolo_edge.export.nms import nms_model
    from yolo_edge.letterbox import letterbox
    from yolo_edge.postprocess import from_nms_outputs, postprocess
    from yolo_edge.spec import NmsSpec

    nms = NmsSpec("onnx", args.conf, args.iou, 100)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ckpt, label = _checkpoint(args.model, tmp)
        paths = {
            "onnx": export_onnx(ckpt, tmp / "nms.onnx", imgsz=args.imgsz, nms=nms, verbose=False),
            "none": export_onnx(ckpt, tmp / "raw.onnx", imgsz=args.imgsz, nms=NmsSpec("none", args.conf, args.iou),
                                verbose=False),
        }
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if args.threads:
            opts.intra_op_num_threads = args.threads
        # idle worker threads of one session must not spin while another session runs
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = {k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    sess["nms"] = ort.InferenceSession(nms_model(nms).SerializeToString(), opts, providers=["CPUExecutionProvider"])

    xs = [letterbox(im, args.imgsz)[0][None] for im in _images(8)]

    def model_only(x):
        return sess["none"].run(None, {"images": x})

    def none_numpy(x):
        b, s = sess["none"].run(None, {"images": x})
        return [postprocess(bb, ss, nms) for bb, ss in zip(b, s)]

    def embedded(x):
        return from_nms_outputs(*sess["onnx"].run(None, {"images": x}))

    raw = [model_only(x) for x in xs]
    rng = np.random.default_rng(0)
    crowd = []
    for b, sc in raw:  # extra candidates with scores above the threshold on random anchors and classes
        sc = sc.copy()
        a = rng.integers(0, sc.shape[1], args.crowd)
        c = rng.integers(0, min(sc.shape[2], 8), args.crowd)  # a few busy classes, so boxes overlap and suppress
        sc[0, a, c] = rng.uniform(args.conf + 1e-3, 1.0, args.crowd)
        crowd.append((b, sc))
    index = {id(x): i for i, x in enumerate(xs)}

    def nms_alone(x, inputs=raw):
        b, sc = inputs[index[id(x)]]
        return from_nms_outputs(*sess["nms"].run(None, {"in_boxes": b, "in_scores": sc}))

    variants = {"none, model only": model_only, "none + numpy NMS": none_numpy, "onnx NMS embedded": embedded,
                "NMS subgraph alone": nms_alone,
                f"NMS subgraph alone, +{args.crowd} candidates": lambda x: nms_alone(x, crowd)}
    # the detections must agree, and say how much work NMS had
    dets = [(embedded(x)[0], none_numpy(x)[0]) for x in xs]
    assert all(len(a) == len(b) and np.array_equal(a.class_ids, b.class_ids) for a, b in dets), "NMS paths disagree"
    for (b, sc), x in zip(crowd, xs):
        a, ref = nms_alone(x, crowd)[0], postprocess(b[0], sc[0], nms)
        assert len(a) == len(ref) and np.array_equal(a.class_ids, ref.class_ids), "crowded NMS disagrees"
    candidates = [int((sc > np.float32(args.conf)).sum()) for _, sc in raw]
    crowded = [int((sc > np.float32(args.conf)).sum()) for _, sc in crowd]

    times: dict[str, list[float]] = {k: [] for k in variants}
    keys = list(variants)
    for r in range(args.warmup + args.runs):
        for k in rng.permutation(keys):  # interleaved in random order: load changes hit every variant alike
            fn, x = variants[k], xs[r % len(xs)]
            t0 = time.perf_counter()
            fn(x)
            if r >= args.warmup:
                times[k].append((time.perf_counter() - t0) * 1e3)

    p50 = {k: float(np.percentile(v, 50)) for k, v in times.items()}
    p90 = {k: float(np.percentile(v, 90)) for k, v in times.items()}
    base = p50["none, model only"]
    cmd = "python benchmarks/nms_overhead.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    print(f"NMS overhead in ONNX Runtime {ort.__version__} (CPU, {args.threads or 'default'} threads, no spinning), "
          f"{label}, {args.imgsz}x{args.imgsz}, batch 1, score > {args.conf}, IoU > {args.iou}, K = 100")
    print(f"machine: {platform.machine()} {platform.processor() or ''} | candidates per image: "
          f"{min(candidates)}..{max(candidates)} | detections per image: "
          f"{min(len(a) for a, _ in dets)}..{max(len(a) for a, _ in dets)} (crowded: {min(crowded)}..{max(crowded)} "
          f"candidates) | {args.runs} runs x {len(variants)} variants\n")
    print("| variant | p50 ms | p90 ms | added to the model alone (p50) |")
    print("|---|---:|---:|---:|")
    for k in variants:
        share = p50[k] / base if k.startswith("NMS subgraph") else p50[k] / base - 1
        over = "—" if k == "none, model only" else f"{100 * share:+.1f} %"
        print(f"| {k} | {p50[k]:.2f} | {p90[k]:.2f} | {over} |")
    print(f"\ncommand: `{cmd.strip()}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
