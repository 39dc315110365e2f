"""``yolo-edge`` command line. Each subcommand maps its arguments to API objects and calls one
function; everything the CLI does, the Python API does too. User errors print one line and
exit with code 1."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli_errors import OneLineParser, add_debug_flag, debug_enabled, report
from .cli_types import image_size, positive_int, probability
from .errors import YoloEdgeError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def _model_arg(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--model", "-m", required=required,
                   help="model file: .pt checkpoint, .onnx or .engine (default: the bundled yolo11n-synth.pt)")
    p.add_argument("--backend", choices=["torch", "onnxruntime", "tensorrt"],
                   help="override the backend chosen from the file suffix")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | tensorrt (ONNX Runtime EP)")


def _nms_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conf", type=probability, default=None,
                   help="score threshold (a model with NMS embedded: only stricter than its own)")
    p.add_argument("--iou", type=probability, default=None, help="NMS IoU threshold (models without embedded NMS)")
    p.add_argument("--max-det", type=positive_int, default=None,
                   help="detections kept per image (a model with NMS embedded: at most its own)")


def _resolve_model(path):
    if path:
        return Path(path)
    from .assets import default_checkpoint

    return default_checkpoint()


def _collect_images(items) -> list[Path]:
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise YoloEdgeError(f"no images found in directory: {p}")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise YoloEdgeError(f"file not found: {p}")
    return files


def open_detector(model=None, backend=None, device="cpu", imgsz=None, nms_args=None):
    """Build a Detector for a model path (default: bundled checkpoint)."""
    from .runtime import Detector, load_runner
    from .runtime.overrides import apply_overrides

    runner = load_runner(_resolve_model(model), backend=backend, device=device, imgsz=imgsz)
    a = nms_args
    runner, nms = apply_overrides(runner, getattr(a, "conf", None), getattr(a, "iou", None),
                                  getattr(a, "max_det", None), imgsz)
    return Detector(runner, nms=nms)


# --- predict ---------------------------------------------------------------------------------
def cmd_predict(args) -> int:
    import cv2

    from .deps import progress
    from .draw import draw_detections
    from .errors import ImageError
    from .letterbox import read_image
    from .preflight import check_output_dir
    from .util import atomic_path, atomic_write

    files = _collect_images(args.images)
    out_dir = check_output_dir(args.out)
    imgsz = tuple(args.imgsz) if args.imgsz else None
    det = open_detector(args.model, args.backend, args.device, imgsz, args)
    records, skipped = [], []
    with det:
        for f in progress(files, desc="predict", unit="img", disable=len(files) < 2):
            try:
                img = read_image(f)
            except ImageError as e:  # skipped and counted, like `run` and the dataset readers do
                skipped.append({"path": str(f), "reason": str(e)})
                continue
            d = det(img)
            records.append({"path": str(f), "height": img.shape[0], "width": img.shape[1],
                            "detections": d.to_list(det.names)})
            if not args.no_images:
                target = out_dir / f"{f.stem}.jpg"
                with atomic_path(target) as tmp:
                    cv2.imwrite(str(tmp), draw_detections(img, d, det.names))
    if not records:
        raise ImageError(f"none of the {len(files)} image(s) could be read; first: {skipped[0]['reason']}")
    if skipped:
        print(f"yolo-edge predict: skipped {len(skipped)} unreadable image(s) (listed under 'skipped' in "
              f"detections.json); first: {skipped[0]['reason']}", file=sys.stderr)
    with atomic_write(out_dir / "detections.json", "w") as fh:
        json.dump({"model": str(_resolve_model(args.model)), "names": list(det.names), "images": records,
                   "skipped": skipped}, fh, indent=1)
    n = sum(len(r["detections"]) for r in records)
    print(f"{len(records)} image(s), {n} detection(s){f', {len(skipped)} unreadable skipped' if skipped else ''} "
          f"-> {out_dir}/detections.json")
    return 0


# --- info ------------------------------------------------------------------------------------
def cmd_info(args) -> int:
    if getattr(args, "precision", None):  # static prediction from the ONNX graph; no runtime needed
        from .precision.precision_map import print_precision_map

        path = Path(args.precision) if isinstance(args.precision, str) else _resolve_model(args.model)
        if path.suffix != ".onnx":
            raise YoloEdgeError(f"--precision reads an ONNX graph, got {path}: give MODEL.onnx")
        return print_precision_map(path, args.trt, fp16_flag=args.fp16_flag, as_json=args.json, all_nodes=args.nodes)
    from .runtime import load_runner

    runner = load_runner(_resolve_model(args.model), backend=args.backend, device=args.device)
    spec = runner.spec
    print(json.dumps({"backend": runner.name, "inputs": [[t.name, list(t.shape)] for t in runner.inputs],
                      "outputs": runner.output_names, "spec": spec.to_dict()}, indent=1, default=str))
    return 0


COMMANDS = {}


def _register(name, fn, help_, build):
    COMMANDS[name] = (fn, help_, build)


def _build_predict(p):
    p.add_argument("images", nargs="+", help="image files or directories")
    _model_arg(p)
    _nms_args(p)
    p.add_argument("--imgsz", type=image_size, nargs=2, metavar=("H", "W"),
                   help="input size (PyTorch models; an exported model runs at its own size)")
    p.add_argument("--out", default="runs/predict", help="output directory (annotated images + detections.json)")
    p.add_argument("--no-images", action="store_true", help="write only detections.json")


def _build_info(p):
    _model_arg(p)
    g = p.add_argument_group("precision map (ONNX only)")
    g.add_argument("--precision", nargs="?", const=True, default=None, metavar="MODEL.onnx",
                   help="predict each node's compute precision under TensorRT's rules (INT8/FP16/FP32 share of FLOPs, "
                        "FP32 islands) instead of loading the model")
    g.add_argument("--trt", default="10", choices=("8.6", "10", "11"),
                   help="TensorRT version for --precision: 10/11 strongly typed, 8.6 builder flags (default 10)")
    g.add_argument("--fp16-flag", action="store_true", help="--trt 8.6: BuilderFlag.FP16 is set beside INT8")
    g.add_argument("--json", action="store_true", help="--precision: print JSON")
    g.add_argument("--nodes", action="store_true", help="--precision: list every node")


_register("predict", cmd_predict, "detect objects in images; writes annotated images and detections.json",
          _build_predict)
_register("info", cmd_info, "print a model's inputs, outputs and yolo-edge metadata", _build_info)


def _register_optional():
    """Subcommands defined next to their layers (each module imports its heavy deps lazily)."""
    import importlib

    for mod in ("yolo_edge.data.cli", "yolo_edge.train.cli", "yolo_edge.export.cli",
                "yolo_edge.precision.cli", "yolo_edge.trt.cli", "yolo_edge.evaluate.cli",
                "yolo_edge.stream.cli", "yolo_edge.bench.cli", "yolo_edge.jetson.cli",
                "yolo_edge.deploy.cli"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and mod.startswith(e.name):  # the layer is not there (yet): no subcommand
                continue
            raise
        for name, fn, help_, build in m.COMMANDS:
            _register(name, fn, help_, build)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    _register_optional()
    parser = OneLineParser(prog="yolo-edge", description="YOLO from PyTorch to verified edge inference.")
    parser.add_argument("--version", action="version", version=f"yolo-edge {__version__}")
    add_debug_flag(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (fn, help_, build) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        build(p)
        add_debug_flag(p)
        p.set_defaults(func=fn)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as e:  # the one error boundary (cli_errors.py)
        return report(args.command, e, debug_enabled(args))


if __name__ == "__main__":
    sys.exit(main())
