"""``yolo-edge parity A B``: DESIGN §6 levels 1–3 between two models, backends or precisions.
Prints a Markdown table (optionally writes JSON) and exits 2 when a budget is exceeded."""

from __future__ import annotations

import json

from ..errors import YoloEdgeError


def _levels(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise YoloEdgeError(f"--level takes a list like 1,2,3, got {text!r}") from None


def cmd_parity(args) -> int:
    from .parity import ParityConfig, parity

    cfg = ParityConfig(data=args.data, max_images=args.max_images, levels=_levels(args.level), rtol=args.rtol,
                       iou=args.iou, budget_map=args.budget_map, batch=args.batch, strict=args.strict,
                       device=args.device, backend_a=args.backend_a, backend_b=args.backend_b,
                       check_manifest=False if args.no_manifest_check else None)
    res = parity(args.a, args.b, config=cfg)
    print(res.table())
    if args.json:
        from ..util import atomic_write

        with atomic_write(args.json, "w") as f:
            json.dump(res.to_dict(), f, indent=1)
        print(f"wrote {args.json}")
    return res.exit_code


def build_parity(p) -> None:
    p.add_argument("a", help="reference model: .pt, .onnx or .engine")
    p.add_argument("b", help="model under test: .pt, .onnx or .engine")
    p.add_argument("--data", default="synthetic:val", help="images (labelled for level 3); default synthetic:val")
    p.add_argument("--max-images", type=int, default=16, help="images to compare (default 16)")
    p.add_argument("--level", default="1,2,3", help="levels to run: 1 raw tensors, 2 detections, 3 mAP (default 1,2,3)")
    p.add_argument("--rtol", type=float, default=1e-4, help="level 1 budget: max|A-B| / max|A| (default 1e-4)")
    p.add_argument("--iou", type=float, default=0.9, help="level 2 match IoU (default 0.9)")
    p.add_argument("--budget-map", type=float, default=1.0,
                   help="level 3 budget: mAP50-95 points B may lose against A (default 1.0)")
    p.add_argument("--batch", type=int, default=4)
    strict = p.add_mutually_exclusive_group()
    strict.add_argument("--strict", dest="strict", action="store_true", default=None,
                        help="apply the level 1-2 budgets (default: when both models are FP32)")
    strict.add_argument("--no-strict", dest="strict", action="store_false", help="report level 1-2 drift only")
    p.add_argument("--backend-a", choices=["torch", "onnxruntime", "tensorrt"], default=None)
    p.add_argument("--backend-b", choices=["torch", "onnxruntime", "tensorrt"], default=None)
    p.add_argument("--device", default="cpu", help="torch / ONNX Runtime device: cpu | cuda | tensorrt")
    p.add_argument("--no-manifest-check", action="store_true", help="load TensorRT engines without checking manifests")
    p.add_argument("--json", default=None, help="also write the result as JSON")


PARITY_COMMAND = ("parity", cmd_parity, "parity of two models/backends/precisions: raw tensors, detections, mAP "
                  "(exit 2 beyond budget)", build_parity)
COMMANDS = [PARITY_COMMAND]
