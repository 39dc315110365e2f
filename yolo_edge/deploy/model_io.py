"""What a deploy writer needs to know about a model file: its spec, inputs, outputs and batch axis.

ONNX files are read with ``onnx`` (graph header and metadata only, no session: a model with the
EfficientNMS_TRT plugin is described too). Engines are described by their manifest (DESIGN §4),
because reading the engine itself needs TensorRT and a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..deps import require
from ..errors import ModelFormatError, YoloEdgeError
from ..runtime.base import DECODED_OUTPUTS, NMS_OUTPUTS, TensorInfo
from ..spec import ModelSpec

ENGINE_SUFFIXES = (".engine", ".plan")


@dataclass(frozen=True)
class ModelIO:
    path: Path
    format: str  # "onnx" | "plan"
    spec: ModelSpec
    inputs: tuple[TensorInfo, ...]  # shapes with the batch axis first (None when dynamic)
    outputs: tuple[TensorInfo, ...]
    max_batch: int | None = None  # an engine's optimization-profile maximum
    manifest: dict | None = None

    @property
    def static_batch(self) -> int | None:
        b = self.inputs[0].shape[0]
        return int(b) if isinstance(b, (int, np.integer)) and b > 0 else None

    @property
    def layout(self) -> str:
        names = [t.name for t in self.outputs]
        if names == list(NMS_OUTPUTS):
            return "nms"
        if names == list(DECODED_OUTPUTS):
            return "decoded"
        raise ModelFormatError(f"{self.path}: outputs {names} are not the yolo-edge contract "
                               f"({list(NMS_OUTPUTS)} or {list(DECODED_OUTPUTS)}); export with `yolo-edge export`")


def describe(path) -> ModelIO:
    """Describe an exported ``.onnx`` or a built ``.engine``/``.plan`` (with its manifest)."""
    path = Path(path)
    if not path.is_file():
        raise YoloEdgeError(f"model not found: {path}")
    if path.suffix.lower() == ".onnx":
        return _describe_onnx(path)
    if path.suffix.lower() in ENGINE_SUFFIXES:
        return _describe_engine(path)
    raise YoloEdgeError(f"cannot deploy '{path}': give an exported .onnx or a built .engine/.plan "
                        "(yolo-edge export, then yolo-edge build)")


def _describe_onnx(path: Path) -> ModelIO:
    onnx = require("onnx")
    from ..export.metadata import get_spec

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise ModelFormatError(f"{path} is not a readable ONNX file: {e}") from e
    spec = get_spec(model)
    if spec is None:
        raise ModelFormatError(f"{path} has no yolo_edge metadata: export it with `yolo-edge export`, or adapt a "
                               "third-party YOLO ONNX with `yolo-edge export --from-onnx MODEL`")
    inits = {i.name for i in model.graph.initializer}

    def info(v) -> TensorInfo:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim)
        return TensorInfo(v.name, dims, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)))

    inputs = tuple(info(v) for v in model.graph.input if v.name not in inits)
    outputs = tuple(info(v) for v in model.graph.output)
    # Symbolic non-batch dims (an export without onnxslim) are fixed by the contract: fill them in.
    contract = {t.name: t for t in contract_outputs(spec)}
    outputs = tuple(TensorInfo(t.name, (t.shape[0], *(d if d is not None else contract[t.name].shape[i + 1]
                                                        for i, d in enumerate(t.shape[1:]))), t.dtype)
                    if t.name in contract and len(t.shape) == len(contract[t.name].shape) else t for t in outputs)
    io = ModelIO(path, "onnx", spec, inputs, outputs)
    io.layout  # noqa: B018  (validates the output contract)
    return io


def contract_outputs(spec: ModelSpec, batch=None) -> tuple[TensorInfo, ...]:
    """The output tensors DESIGN §2 promises for ``spec`` (used for engines, whose outputs the
    manifest does not list)."""
    if spec.nms.flavour != "none":
        k = spec.nms.max_det
        return (TensorInfo("num_dets", (batch, 1), np.dtype(np.int32)),
                TensorInfo("det_boxes", (batch, k, 4), np.dtype(np.float32)),
                TensorInfo("det_scores", (batch, k), np.dtype(np.float32)),
                TensorInfo("det_classes", (batch, k), np.dtype(np.int32)))
    h, w = spec.imgsz
    anchors = sum((h // s) * (w // s) for s in spec.strides)
    return (TensorInfo("boxes", (batch, anchors, 4), np.dtype(np.float32)),
            TensorInfo("scores", (batch, anchors, spec.nc), np.dtype(np.float32)))


def _describe_engine(path: Path) -> ModelIO:
    from ..trt.manifest import manifest_path, read_manifest

    manifest = read_manifest(path)
    if manifest is None or not manifest.get("spec"):
        raise YoloEdgeError(f"{path} has no manifest ({manifest_path(path).name}) with the model's spec: its input, "
                            f"outputs and TensorRT version are unknown. Build it with `yolo-edge build MODEL.onnx "
                            f"--out {path}`")
    spec = ModelSpec.from_dict(manifest["spec"])
    profile = manifest.get("profile") or {}
    if not profile:
        raise YoloEdgeError(f"{manifest_path(path)} records no input profile; rebuild with `yolo-edge build`")
    (name, prof), = list(profile.items())[:1]
    if "static" in prof:
        shape = tuple(int(d) for d in prof["static"])
        batch, max_batch = shape[0], None
    else:
        shape = tuple(int(d) for d in prof["max"])
        batch, max_batch = None, shape[0]
    inputs = (TensorInfo(name, (batch, *shape[1:]), np.dtype(np.float32)),)
    io = ModelIO(path, "plan", spec, inputs, contract_outputs(spec, batch), max_batch=max_batch, manifest=manifest)
    return io
