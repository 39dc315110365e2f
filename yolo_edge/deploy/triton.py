"""A Triton Inference Server model repository for a yolo-edge model.

    REPO/<name>/config.pbtxt
    REPO/<name>/<version>/model.onnx     (platform onnxruntime_onnx)  or  model.plan (tensorrt_plan)

The config is built as Triton's own ``inference.ModelConfig`` protobuf (``model_config.proto``
as shipped in ``tritonclient``: ``tritonclient.grpc.model_config_pb2``), written with protobuf
``text_format`` and read back from disk with the same schema, so a field Triton does not know, a
wrong type or a bad enum fails here and not on the server. On top of the schema it checks Triton's
batching rules (docs/user_guide/model_configuration.md, triton-inference-server/server r24.xx):
with ``max_batch_size > 0`` the dims leave out the batch axis and ``dynamic_batching`` may be set;
with ``max_batch_size: 0`` the dims are the full shape.

What goes in:

* inputs / outputs exactly as DESIGN §2 (names, dtypes, dims; ``num_dets`` INT32 ``[1]``, ...);
* ``max_batch_size`` from the model's batch axis: a dynamic-batch ONNX gets ``--max-batch``
  (default 8), an engine its optimization profile's maximum; a static-batch model gets 0 and
  its full shape (Triton would otherwise send it smaller batches it cannot run);
* ``dynamic_batching { max_queue_delay_microseconds }`` (``--max-queue-delay-us``);
* ``instance_group [{ count, kind }]`` (``--instances N --kind gpu|cpu``);
* ONNX Runtime's TensorRT execution accelerator, FP16 optional (``--ort-trt [--fp16]``; keys from
  triton-inference-server/onnxruntime_backend README "ONNX Runtime with TensorRT optimization");
* ``parameters { key: "yolo_edge" }``: the model's ModelSpec JSON (names, letterbox, NMS
  thresholds, precision), so a client (``load_runner("grpc://host:8001/<name>")``) configures itself.

Letterboxing stays on the client: it needs the source image size to map boxes back, it is cheap
on the CPU next to the camera, and it keeps the server's input a fixed tensor that batches.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..deps import require
from ..errors import YoloEdgeError
from ..util import atomic_path, atomic_write
from .model_io import ModelIO, describe

# numpy dtype -> Triton config DataType (model_config.proto) and KServe v2 datatype string
CONFIG_DTYPES = {np.dtype(np.float32): "TYPE_FP32", np.dtype(np.float16): "TYPE_FP16",
                 np.dtype(np.int32): "TYPE_INT32", np.dtype(np.int64): "TYPE_INT64",
                 np.dtype(np.uint8): "TYPE_UINT8", np.dtype(np.bool_): "TYPE_BOOL"}
PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "plan": ("tensorrt_plan", "model.plan")}
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU", "auto": "KIND_AUTO"}


@dataclass(frozen=True)
class TritonOptions:
    """How the model is served. See the module doc for what each field becomes."""

    name: str | None = None  # model name in the repository (default: the file stem)
    version: int = 1
    max_batch: int = 8  # max_batch_size of a dynamic-batch ONNX (an engine uses its profile)
    dynamic_batching: bool = True
    max_queue_delay_us: int = 100
    preferred_batch: tuple[int, ...] = ()
    instances: int = 1
    kind: str = "gpu"  # gpu | cpu | auto
    ort_trt: bool = False  # ONNX Runtime TensorRT execution accelerator (GPU instances, ONNX only)
    fp16: bool = False  # with ort_trt: precision_mode FP16
    trt_version: str | None = None  # the Triton server's TensorRT (checked against an engine's manifest)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise YoloEdgeError(f"instance kind must be one of {sorted(KINDS)}, got {self.kind!r}")
        if self.instances < 1:
            raise YoloEdgeError(f"--instances must be >= 1, got {self.instances}")
        if self.max_batch < 1:
            raise YoloEdgeError(f"--max-batch must be >= 1, got {self.max_batch}")
        if self.max_queue_delay_us < 0:
            raise YoloEdgeError(f"--max-queue-delay-us must be >= 0, got {self.max_queue_delay_us}")
        if self.version < 1:
            raise YoloEdgeError(f"model version must be >= 1, got {self.version}")
        if self.fp16 and not self.ort_trt:
            raise YoloEdgeError("--fp16 selects the ONNX Runtime TensorRT accelerator's precision: add --ort-trt "
                                "(or export an FP16 model: yolo-edge quantize --fp16)")


def model_config_pb2():
    """Triton's ``model_config.proto`` module as ``tritonclient`` ships it."""
    return require("tritonclient.grpc.model_config_pb2")


def build_config(io: ModelIO, opts: TritonOptions):
    """The ``inference.ModelConfig`` message for ``io`` (see the module doc)."""
    pb = model_config_pb2()
    platform, filename = PLATFORMS[io.format]
    cfg = pb.ModelConfig(name=opts.name or io.path.stem.split(".")[0], platform=platform)
    cfg.default_model_filename = filename
    static = io.static_batch
    if io.format == "plan" and static is None:
        max_batch = io.max_batch or 1
    else:
        max_batch = 0 if static is not None else opts.max_batch
    cfg.max_batch_size = max_batch

    def dims(shape):
        body = shape[1:] if max_batch > 0 else shape
        return [int(d) if d else -1 for d in body]

    dtype = pb.DataType.Value
    for t in io.inputs:
        cfg.input.add(name=t.name, data_type=dtype(_dtype(t)), format=pb.ModelInput.FORMAT_NCHW, dims=dims(t.shape))
    for t in io.outputs:
        cfg.output.add(name=t.name, data_type=dtype(_dtype(t)), dims=dims(t.shape))
    if max_batch > 0 and opts.dynamic_batching:
        cfg.dynamic_batching.max_queue_delay_microseconds = int(opts.max_queue_delay_us)
        cfg.dynamic_batching.preferred_batch_size.extend(int(b) for b in opts.preferred_batch)
    if io.format == "plan" and opts.kind == "cpu":
        raise YoloEdgeError("a TensorRT plan runs on a GPU only: use --kind gpu, or deploy the ONNX for CPU instances")
    cfg.instance_group.add(count=int(opts.instances), kind=pb.ModelInstanceGroup.Kind.Value(KINDS[opts.kind]))
    if opts.ort_trt:
        if io.format != "onnx" or opts.kind == "cpu":
            raise YoloEdgeError("--ort-trt is ONNX Runtime's TensorRT accelerator: it needs an .onnx model on GPU "
                                "instances (a .plan already is TensorRT)")
        acc = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        acc.parameters["precision_mode"] = "FP16" if opts.fp16 else "FP32"
        acc.parameters["max_workspace_size_bytes"] = str(1 << 30)
        acc.parameters["trt_engine_cache_enable"] = "1"
    spec = io.spec
    cfg.parameters["yolo_edge"].string_value = spec.to_json()
    lb = spec.letterbox
    cfg.parameters["preprocess"].string_value = (
        f"client-side letterbox to {lb.size[0]}x{lb.size[1]} (HxW), centred, pad {lb.pad_value}, RGB, /255, "
        "NCHW float32")
    cfg.parameters["outputs"].string_value = (
        "EfficientNMS layout: rows past num_dets are padding; det_boxes x1,y1,x2,y2 in letterboxed input pixels"
        if io.layout == "nms" else "boxes xyxy in input pixels, scores after sigmoid; NMS on the client")
    return cfg


def _dtype(t) -> str:
    if t.dtype not in CONFIG_DTYPES:
        raise YoloEdgeError(f"tensor '{t.name}' has dtype {t.dtype}, which yolo-edge does not map to Triton")
    return CONFIG_DTYPES[t.dtype]


def check_config(cfg) -> None:
    """Triton's batching rules on top of the schema (the schema itself was checked by parsing)."""
    if cfg.max_batch_size < 0:
        raise YoloEdgeError(f"max_batch_size must be >= 0, got {cfg.max_batch_size}")
    if cfg.HasField("dynamic_batching"):
        if cfg.max_batch_size == 0:
            raise YoloEdgeError("dynamic_batching needs max_batch_size > 0 (the model has a static batch)")
        bad = [b for b in cfg.dynamic_batching.preferred_batch_size if not 0 < b <= cfg.max_batch_size]
        if bad:
            raise YoloEdgeError(f"preferred_batch_size {bad} outside 1..max_batch_size={cfg.max_batch_size}")
    for t in list(cfg.input) + list(cfg.output):
        if not t.dims or any(d == 0 or d < -1 for d in t.dims):
            raise YoloEdgeError(f"tensor '{t.name}' has invalid dims {list(t.dims)}")


def parse_config(text: str):
    """Parse ``config.pbtxt`` text with Triton's schema; raises YoloEdgeError on any schema error."""
    pb = model_config_pb2()
    from google.protobuf import text_format

    cfg = pb.ModelConfig()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as e:
        raise YoloEdgeError(f"config.pbtxt does not parse with Triton's ModelConfig schema: {e}") from e
    check_config(cfg)
    return cfg


def _check_engine(io: ModelIO, opts: TritonOptions) -> None:
    env = (io.manifest or {}).get("environment") or {}
    built = env.get("tensorrt")
    if env.get("l4t"):
        print(f"note: {io.path.name} was built on a Jetson (L4T {env['l4t']}): serve it with Triton on that Jetson")
    if opts.trt_version:
        from ..trt.manifest import _major_minor_patch

        if _major_minor_patch(built) != _major_minor_patch(opts.trt_version):
            raise YoloEdgeError(f"{io.path} was built with TensorRT {built}, but the Triton server runs TensorRT "
                                f"{opts.trt_version}: engines do not move across TensorRT releases. Build it inside "
                                "the Triton container (yolo-edge build, or trtexec there), or deploy the ONNX")
    elif built:
        print(f"note: {io.path.name} was built with TensorRT {built}; the Triton server must run the same TensorRT "
              "(see NVIDIA's framework support matrix; check with --trt-version)")


def write_triton_repository(model, repo, opts: TritonOptions | None = None) -> Path:
    """Write ``REPO/<name>/config.pbtxt`` and ``REPO/<name>/<version>/model.{onnx,plan}``.

    Returns the model directory. The written config is read back and parsed with Triton's schema.
    """
    opts = opts or TritonOptions()
    io = describe(model)
    io.layout  # noqa: B018  (a model outside the contract is refused here)
    if io.format == "plan":
        _check_engine(io, opts)
    elif io.spec.nms.flavour == "trt":
        raise YoloEdgeError(f"{io.path} has NMS as the TensorRT plugin EfficientNMS_TRT, which ONNX Runtime cannot "
                            "run: "
                            "build an engine (yolo-edge build) and deploy the .engine, or re-export with --nms onnx")
    pb_text = require("google.protobuf.text_format")
    cfg = build_config(io, opts)
    check_config(cfg)
    model_dir = Path(repo) / cfg.name
    text = ("# Written by `yolo-edge deploy triton`; checked against Triton's model_config.proto.\n"
            "# Clients: yolo_edge.runtime.load_runner('grpc://HOST:8001/" + cfg.name
            + "') reads parameters.yolo_edge.\n"
            + pb_text.MessageToString(cfg, use_short_repeated_primitives=True))
    with atomic_write(model_dir / "config.pbtxt", "w") as f:
        f.write(text)
    parsed = parse_config((model_dir / "config.pbtxt").read_text())
    if parsed != cfg:  # pragma: no cover - text_format round trip is exact
        raise YoloEdgeError("config.pbtxt did not read back as written")
    target = model_dir / str(opts.version) / PLATFORMS[io.format][1]
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        shutil.copyfile(io.path, tmp)
    return model_dir
