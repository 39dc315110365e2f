"""``yolo-edge val``: COCO mAP + ECE of any model file on any dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_val(args) -> int:
    from ..cli import open_detector
    from ..data import load_dataset
    from ..data.check import check_dataset, dropped_labels
    from ..preflight import check_output_dir
    from ..util import atomic_write
    from .plots import plot_pr_curves, plot_reliability
    from .validate import VAL_NMS, evaluate_detector

    if args.out:
        check_output_dir(args.out)
    ds = load_dataset(args.data)
    det = open_detector(args.model, args.backend, args.device, None, args)
    for line in check_dataset(ds, det.names, strict=args.strict, what="val"):
        print(line, file=sys.stderr)
    if det.layout == "decoded" and args.conf is None and args.iou is None:
        det.nms = VAL_NMS
    elif det.layout == "nms" and det.spec.nms.score_threshold > 0.01:
        print(f"note: this model has NMS embedded with score threshold {det.spec.nms.score_threshold}; "
              "mAP is computed on what it returns (export with --conf 0.001 for a full PR curve)")
    with det:
        res = evaluate_detector(det, ds, max_images=args.max_images, batch=args.batch)
    print(res.table())
    print(res.summary_line())
    if dropped_labels(ds.summary):
        print(f"note: {dropped_labels(ds.summary)} bad label(s) were dropped and are not in these numbers "
              f"(yolo-edge data check {args.data})")
    if args.out:
        out = Path(args.out)
        with atomic_write(out / "metrics.json", "w") as f:
            json.dump(res.to_dict(), f, indent=1)
        plot_pr_curves(res, out / "pr_curves.png")
        plot_reliability(res, out / "reliability.png")
        print(f"wrote {out}/metrics.json, pr_curves.png, reliability.png")
    return 0


def build_val(p) -> None:
    from ..cli import _model_arg, _nms_args
    from ..cli_types import positive_int

    p.add_argument("--data", default="synthetic:val",
                   help="dataset: synthetic:val (default), a YOLO dir, a COCO json, ... (see docs)")
    _model_arg(p)
    _nms_args(p)
    p.add_argument("--batch", type=positive_int, default=8)
    p.add_argument("--max-images", type=positive_int, default=None)
    p.add_argument("--strict", action="store_true", help="fail on bad labels (default: warn, count and skip them)")
    p.add_argument("--out", default=None, help="directory for metrics.json and plots")


COMMANDS = [("val", cmd_val, "COCO mAP50-95/mAP50/AP by size + ECE of a model on a dataset", build_val)]

from .parity_cli import PARITY_COMMAND  # noqa: E402  (yolo-edge parity, DESIGN §6)

COMMANDS.append(PARITY_COMMAND)
