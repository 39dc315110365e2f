"""Small exports of the bundled (trained) checkpoint shared by the deploy / Triton / DeepStream tests,
written once per test session under pytest's base temp directory."""

from __future__ import annotations

import json
from pathlib import Path

IMGSZ = 160


def deploy_models(tmp_path_factory) -> dict[str, Path]:
    """``nms``: dynamic batch, ONNX NMS; ``static``: static batch 2, ONNX NMS; ``decoded``: no NMS."""
    from yolo_edge.export import export_onnx
    from yolo_edge.spec import NmsSpec

    d = tmp_path_factory.getbasetemp() / "deploy_models"
    d.mkdir(exist_ok=True)
    paths = {"nms": d / "synth.nms.onnx", "static": d / "synth.static2.onnx", "decoded": d / "synth.decoded.onnx"}
    nms = NmsSpec("onnx", score_threshold=0.25, iou_threshold=0.45, max_det=50)
    if not paths["nms"].exists():
        export_onnx(None, paths["nms"], imgsz=IMGSZ, nms=nms, simplify=False, verbose=False)
    if not paths["static"].exists():
        export_onnx(None, paths["static"], imgsz=IMGSZ, nms=nms, dynamic_batch=False, batch=2, simplify=False,
                    verbose=False)
    if not paths["decoded"].exists():
        export_onnx(None, paths["decoded"], imgsz=IMGSZ, nms=NmsSpec("none"), simplify=False, verbose=False)
    return paths


def fake_engine(directory: Path, spec, profile: dict, tensorrt: str = "10.3.0") -> Path:
    """An engine file with a yolo-edge manifest (the deploy writers read only the manifest)."""
    from yolo_edge.trt.manifest import MANIFEST_FORMAT, MANIFEST_VERSION, manifest_path

    engine = directory / "model.engine"
    engine.write_bytes(b"not a real engine")
    manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "precision": spec.precision,
                "nms": spec.nms.flavour, "profile": profile, "environment": {"tensorrt": tensorrt, "gpu": "Orin"},
                "spec": spec.to_dict()}
    manifest_path(engine).write_text(json.dumps(manifest))
    return engine


def synthetic_images(n: int):
    from yolo_edge.data import load_dataset

    ds = load_dataset(f"synthetic:val:{n}")
    return [ds[i].image for i in range(n)]
