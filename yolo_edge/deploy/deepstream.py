"""DeepStream configs for a yolo-edge model: an nvinfer config, a deepstream-app config with N
sources, the labels file, and the bbox parser (``jetson/deepstream/``) for the output contract.

    DIR/config_infer_primary_yolo_edge.txt   nvinfer [property] + [class-attrs-all]
    DIR/deepstream_app_config.txt             sources -> nvstreammux (batch N) -> nvinfer -> tiler -> OSD -> sink
    DIR/labels.txt                            one class name per line
    DIR/model.onnx | model.engine             the model (copied)
    DIR/nvdsinfer_yolo_edge/                  parser source + Makefile, built on the device (make)

Every key written is checked against :data:`NVINFER_KEYS` / :data:`APP_KEYS`, tables transcribed
from NVIDIA's documentation:

* nvinfer: DeepStream 7.0 Developer Guide, "Gst-nvinfer" → "Gst-nvinfer File Configuration
  Specifications" (https://docs.nvidia.com/metropolis/deepstream/7.0/dev-guide/text/DS_plugin_gst-nvinfer.html),
  cross-checked with the key strings in ``sources/gst-plugins/gst-nvinfer/gstnvinfer_property_parser.h``
  (DeepStream SDK API Reference 7.0);
* deepstream-app: DeepStream 7.0 Developer Guide, "DeepStream Reference Application - deepstream-app"
  → "Configuration Groups"
  (https://docs.nvidia.com/metropolis/deepstream/7.0/dev-guide/text/DS_ref_app_deepstream.html),
  source keys and enums cross-checked with ``sources/apps/apps-common/includes/deepstream_config_file_parser.h``,
  ``deepstream_sources.h`` and ``deepstream_sinks.h``.

Why a parser of our own: no parser DeepStream or NVIDIA's TAO apps ship reads the four-output
contract (DESIGN §2). In deepstream_tao_apps ``post_processor/nvdsinfer_custombboxparser_tao.cpp``,
``NvDsInferParseCustomBatchedNMSTLT`` reads the classes as float and boxes normalised to [0, 1]
(×network size); ``NvDsInferParseCustomBatchedYoloV5NMSTLT`` takes pixel boxes but float classes
and outputs by position; ``NvDsInferParseCustomEfficientDetTAO`` wants ``num_detections`` /
``detection_boxes`` … and y1, x1, y2, x2 order. Our ``det_classes`` is INT32 and boxes are
x1, y1, x2, y2 in input pixels, so ``NvDsInferParseYoloEdge`` finds the four tensors by name.

Letterbox: nvinfer's ``maintain-aspect-ratio=1`` + ``symmetric-padding=1`` is our centred
letterbox, but it pads with black (0) where yolo-edge pads with 114; the effect on mAP is measured
in benchmarks/letterbox_pad.py (README, "from one Jetson to a fleet").
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import YoloEdgeError
from ..util import atomic_path, atomic_write
from .model_io import ModelIO, describe

PARSER_FUNC = "NvDsInferParseYoloEdge"
PARSER_LIB = "libnvdsinfer_yolo_edge.so"
PARSER_SRC = Path(__file__).resolve().parents[2] / "jetson" / "deepstream"
DS_SAMPLE_STREAM = "/opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4"

# --- documented keys ---------------------------------------------------------------------------
# key -> allowed values (a tuple) or a type (int, float, str, "list" = ';'-separated)
NVINFER_KEYS: dict[str, object] = {
    "num-detected-classes": int, "net-scale-factor": float, "model-file": str, "proto-file": str,
    "int8-calib-file": str, "batch-size": int, "model-engine-file": str, "uff-file": str, "onnx-file": str,
    "tlt-encoded-model": str, "tlt-model-key": str, "mean-file": str, "labelfile-path": str,
    "gie-unique-id": int, "operate-on-gie-id": int, "operate-on-class-ids": "list",
    "interval": int, "input-object-min-width": int, "input-object-min-height": int,
    "input-object-max-width": int, "input-object-max-height": int, "uff-input-dims": "list",
    "uff-input-order": (0, 1, 2), "uff-input-blob-name": str, "network-mode": (0, 1, 2, 3),
    "offsets": "list", "output-blob-names": "list", "output-tensor-meta": (0, 1),
    "output-instance-mask": (0, 1), "parse-bbox-func-name": str, "parse-bbox-instance-mask-func-name": str,
    "custom-lib-path": str, "model-color-format": (0, 1, 2), "classifier-async-mode": (0, 1),
    "process-mode": (1, 2), "classifier-threshold": float, "secondary-reinfer-interval": int,
    "output-io-formats": "list", "layer-device-precision": "list", "network-input-order": (0, 1),
    "segmentation-threshold": float, "segmentation-output-order": (0, 1), "workspace-size": int,
    "force-implicit-batch-dim": (0, 1), "infer-dims": "list", "engine-create-func-name": str,
    "cluster-mode": (0, 1, 2, 3, 4), "filter-out-class-ids": "list", "scaling-filter": (0, 1, 2, 3, 4, 5, 6),
    "scaling-compute-hw": (0, 1, 2), "network-type": (0, 1, 2, 3, 100), "maintain-aspect-ratio": (0, 1),
    "symmetric-padding": (0, 1), "parse-classifier-func-name": str, "custom-network-config": str,
    "tensor-meta-pool-size": int, "gpu-id": int, "enable-dla": (0, 1), "use-dla-core": int,
    "input-tensor-from-meta": (0, 1), "classifier-type": str, "is-classifier": (0, 1), "enable-dbscan": (0, 1),
}
CLASS_ATTRS_KEYS: dict[str, object] = {
    "threshold": float, "pre-cluster-threshold": float, "post-cluster-threshold": float, "eps": float,
    "group-threshold": int, "minBoxes": int, "dbscan-min-score": float, "nms-iou-threshold": float,
    "roi-top-offset": int, "roi-bottom-offset": int, "detected-min-w": int, "detected-min-h": int,
    "detected-max-w": int, "detected-max-h": int, "topk": int, "border-color": "list", "bg-color": "list",
}
APP_KEYS: dict[str, dict[str, object]] = {
    "application": {"enable-perf-measurement": (0, 1), "perf-measurement-interval-sec": int,
                    "gie-kitti-output-dir": str, "kitti-track-output-dir": str},
    "tiled-display": {"enable": (0, 1, 2), "rows": int, "columns": int, "width": int, "height": int,
                      "gpu-id": int, "nvbuf-memory-type": (0, 1, 2, 3), "compute-hw": (0, 1, 2)},
    "source": {"enable": (0, 1), "type": (1, 2, 3, 4, 5), "uri": str, "num-sources": int, "gpu-id": int,
               "camera-id": int, "camera-width": int, "camera-height": int, "camera-fps-n": int,
               "camera-fps-d": int, "camera-v4l2-dev-node": int, "camera-csi-sensor-id": int, "latency": int,
               "drop-frame-interval": int, "nvbuf-memory-type": (0, 1, 2, 3), "select-rtp-protocol": (0, 4),
               "rtsp-reconnect-interval-sec": int, "rtsp-reconnect-attempts": int, "file-loop": (0, 1),
               "live-source": (0, 1), "intra-decode-enable": (0, 1), "num-extra-surfaces": int,
               "cudadec-memtype": (0, 1, 2), "smart-record": (0, 1, 2), "source-id": int},
    "streammux": {"gpu-id": int, "live-source": (0, 1), "batch-size": int, "batched-push-timeout": int,
                  "width": int, "height": int, "enable-padding": (0, 1), "nvbuf-memory-type": (0, 1, 2, 3),
                  "buffer-pool-size": int, "attach-sys-ts-as-ntp": (0, 1), "config-file": str,
                  "sync-inputs": (0, 1), "max-latency": int, "frame-num-reset-on-eos": (0, 1),
                  "drop-pipeline-eos": (0, 1)},
    "primary-gie": {"enable": (0, 1), "gie-unique-id": int, "gpu-id": int, "model-engine-file": str,
                    "config-file": str, "batch-size": int, "interval": int, "labelfile-path": str,
                    "bbox-border-color0": "list", "bbox-bg-color0": "list", "nvbuf-memory-type": (0, 1, 2, 3),
                    "plugin-type": (0, 1)},
    "osd": {"enable": (0, 1), "gpu-id": int, "border-width": int, "text-size": int, "text-color": "list",
            "text-bg-color": "list", "font": str, "show-clock": (0, 1), "clock-x-offset": int,
            "clock-y-offset": int, "clock-text-size": int, "clock-color": "list", "nvbuf-memory-type": (0, 1, 2, 3),
            "process-mode": (0, 1, 2), "display-text": (0, 1), "display-bbox": (0, 1), "display-mask": (0, 1)},
    "sink": {"enable": (0, 1), "type": (1, 2, 3, 4, 5, 6), "sync": (0, 1), "source-id": int, "gpu-id": int,
             "container": (1, 2), "codec": (1, 2, 3), "enc-type": (0, 1), "bitrate": int, "iframeinterval": int,
             "output-file": str, "rtsp-port": int, "udp-port": int, "udp-buffer-size": int, "width": int,
             "height": int, "qos": (0, 1), "nvbuf-memory-type": (0, 1, 2, 3), "profile": int,
             "link-to-demux": (0, 1)},
    "tests": {"file-loop": (0, 1)},
}
SOURCE_TYPES = {"v4l2": 1, "uri": 2, "multiuri": 3, "rtsp": 4, "csi": 5}
SINK_TYPES = {"fake": 1, "egl": 2, "file": 3, "rtsp": 4}
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}


@dataclass(frozen=True)
class DeepStreamOptions:
    """What ``yolo-edge deploy deepstream`` writes (see the module doc)."""

    sources: int = 1
    inputs: tuple[str, ...] = ()  # file paths, rtsp://…, csi://<sensor-id>, v4l2:///dev/videoN; cycled over N
    sink: str = "file"  # file | rtsp | fake
    output_file: str = "yolo_edge_out.mp4"
    rtsp_port: int = 8554
    encoder: str = "hw"  # hw | sw (Jetson Orin Nano has no NVENC)
    mux_size: tuple[int, int] = (1080, 1920)  # nvstreammux output (H, W)
    tiler_size: tuple[int, int] = (720, 1280)
    calib_cache: str | None = None  # legacy implicit-INT8 calibration table (FP32 ONNX only)
    gpu_id: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.sources < 1:
            raise YoloEdgeError(f"--sources must be >= 1, got {self.sources}")
        if self.sink not in ("file", "rtsp", "fake"):
            raise YoloEdgeError(f"--sink must be file, rtsp or fake, got {self.sink!r}")
        if self.encoder not in ("hw", "sw"):
            raise YoloEdgeError(f"--encoder must be hw or sw, got {self.encoder!r}")


# --- config text -------------------------------------------------------------------------------
def render(groups: dict[str, dict[str, object]], header: str = "") -> str:
    """Key-file text (the GKeyFile format nvinfer and deepstream-app read)."""
    lines = [f"# {h}" for h in header.splitlines()] + ([""] if header else [])
    for group, kv in groups.items():
        lines.append(f"[{group}]")
        lines += [f"{k}={_value(v)}" for k, v in kv.items()]
        lines.append("")
    return "\n".join(lines)


def _value(v) -> str:
    if isinstance(v, (list, tuple)):
        return ";".join(_value(x) for x in v)
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return repr(v)
    return str(v)


def parse_keyfile(text: str) -> dict[str, dict[str, str]]:
    """A small GKeyFile reader: ``[group]`` headers, ``key=value`` lines, ``#`` comments."""
    groups: dict[str, dict[str, str]] = {}
    current = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = groups.setdefault(line[1:-1], {})
            continue
        if current is None or "=" not in line:
            raise YoloEdgeError(f"line {n}: {raw!r} is not a [group] or key=value line")
        k, v = line.split("=", 1)
        if k.strip() in current:
            raise YoloEdgeError(f"line {n}: key '{k.strip()}' repeated")
        current[k.strip()] = v.strip()
    return groups


def _check_value(where: str, key: str, value: str, rule) -> None:
    try:
        if isinstance(rule, tuple):
            if int(value) not in rule:
                raise YoloEdgeError(f"{where}: {key}={value} is not one of the documented values {rule}")
        elif rule is int:
            int(value)
        elif rule is float:
            float(value)
        elif rule == "list" and not value:
            raise ValueError
    except ValueError as e:
        raise YoloEdgeError(f"{where}: {key}={value!r} is not a valid {getattr(rule, '__name__', rule)}") from e


def validate_nvinfer(text: str) -> dict[str, dict[str, str]]:
    """Check an nvinfer config against :data:`NVINFER_KEYS` / :data:`CLASS_ATTRS_KEYS`."""
    groups = parse_keyfile(text)
    if "property" not in groups:
        raise YoloEdgeError("nvinfer config: no [property] group")
    for group, kv in groups.items():
        if group == "property":
            table = NVINFER_KEYS
        elif group == "class-attrs-all" or (group.startswith("class-attrs-") and group[12:].isdigit()):
            table = CLASS_ATTRS_KEYS
        else:
            raise YoloEdgeError(f"nvinfer config: [{group}] is not a documented group")
        for k, v in kv.items():
            if k not in table:
                raise YoloEdgeError(f"nvinfer config [{group}]: '{k}' is not a documented key")
            _check_value(f"nvinfer config [{group}]", k, v, table[k])
    return groups


def validate_app(text: str) -> dict[str, dict[str, str]]:
    """Check a deepstream-app config against :data:`APP_KEYS`."""
    groups = parse_keyfile(text)
    for group, kv in groups.items():
        base = group.rstrip("0123456789") if group.startswith(("source", "sink")) else group
        if base not in APP_KEYS:
            raise YoloEdgeError(f"deepstream-app config: [{group}] is not a group yolo-edge writes from the docs")
        for k, v in kv.items():
            if k not in APP_KEYS[base]:
                raise YoloEdgeError(f"deepstream-app config [{group}]: '{k}' is not a documented key")
            _check_value(f"deepstream-app config [{group}]", k, v, APP_KEYS[base][k])
    return groups


# --- builders ----------------------------------------------------------------------------------
def nvinfer_groups(io: ModelIO, opts: DeepStreamOptions, model_name: str) -> dict[str, dict[str, object]]:
    spec = io.spec
    if io.layout != "nms":
        raise YoloEdgeError(f"{io.path} has no NMS embedded (outputs boxes/scores): the DeepStream parser reads the "
                            "four-output contract; re-export with --nms onnx (or --nms trt for TensorRT)")
    mode = NETWORK_MODE[spec.precision]
    prop: dict[str, object] = {"gpu-id": opts.gpu_id, "net-scale-factor": 1 / 255, "model-color-format": 0}
    if io.format == "onnx":
        prop["onnx-file"] = model_name
        # nvinfer serializes the engine it builds as <onnx>_b<batch>_gpu<id>_<precision>.engine; naming it
        # here makes the next start reuse it instead of rebuilding.
        prop["model-engine-file"] = f"{model_name}_b{opts.sources}_gpu{opts.gpu_id}_{spec.precision}.engine"
    else:
        prop["model-engine-file"] = model_name
    if opts.calib_cache:
        if io.format != "onnx" or spec.precision != "fp32":
            raise YoloEdgeError("--calib-cache is a legacy implicit-INT8 table for a TensorRT build from the FP32 "
                                "ONNX; "
                                f"{io.path.name} is {spec.precision} {io.format} (an INT8 Q/DQ ONNX carries its own "
                                "scales: deploy it without --calib-cache)")
        prop["int8-calib-file"] = Path(opts.calib_cache).name
        mode = NETWORK_MODE["int8"]
    prop["labelfile-path"] = "labels.txt"
    prop["batch-size"] = opts.sources
    prop["network-mode"] = mode
    prop["num-detected-classes"] = spec.nc
    prop["interval"] = 0
    prop["gie-unique-id"] = 1
    prop["process-mode"] = 1  # primary: full frames
    prop["network-type"] = 0  # detector
    prop["cluster-mode"] = 4  # no clustering: NMS is in the model
    prop["maintain-aspect-ratio"] = 1
    prop["symmetric-padding"] = 1  # centred, as our letterbox
    prop["scaling-filter"] = 1  # bilinear, as cv2.INTER_LINEAR in our letterbox
    prop["output-blob-names"] = [t.name for t in io.outputs]
    prop["parse-bbox-func-name"] = PARSER_FUNC
    prop["custom-lib-path"] = f"nvdsinfer_yolo_edge/{PARSER_LIB}"
    attrs = {"pre-cluster-threshold": float(spec.nms.score_threshold), "topk": int(spec.nms.max_det)}
    return {"property": prop, "class-attrs-all": attrs}


def _source_group(uri: str, opts: DeepStreamOptions) -> dict[str, object]:
    g: dict[str, object] = {"enable": 1}
    if uri.startswith("csi://"):
        g.update(type=SOURCE_TYPES["csi"], **{"camera-csi-sensor-id": int(uri[6:] or 0), "camera-width": 1920,
                                               "camera-height": 1080, "camera-fps-n": 30, "camera-fps-d": 1})
    elif uri.startswith("v4l2://"):
        node = uri.rstrip("/").rsplit("video", 1)[-1]
        g.update(type=SOURCE_TYPES["v4l2"], **{"camera-v4l2-dev-node": int(node or 0), "camera-width": 1280,
                                                "camera-height": 720, "camera-fps-n": 30, "camera-fps-d": 1})
    elif uri.startswith(("rtsp://", "rtsps://")):
        g.update(type=SOURCE_TYPES["rtsp"], uri=uri, **{"rtsp-reconnect-interval-sec": 10, "latency": 200,
                                                         "select-rtp-protocol": 4})
    else:
        path = uri[7:] if uri.startswith("file://") else uri
        path = path if path.startswith("/") else str(Path(path).resolve())
        g.update(type=SOURCE_TYPES["uri"], uri="file://" + path)
    g["num-sources"] = 1
    g["gpu-id"] = opts.gpu_id
    return g


def app_groups(opts: DeepStreamOptions, infer_config: str) -> dict[str, dict[str, object]]:
    inputs = list(opts.inputs) or [DS_SAMPLE_STREAM]
    live = any(u.startswith(("rtsp://", "rtsps://", "csi://", "v4l2://")) for u in inputs)
    n = opts.sources
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    groups: dict[str, dict[str, object]] = {
        "application": {"enable-perf-measurement": 1, "perf-measurement-interval-sec": 5},
        "tiled-display": {"enable": 1, "rows": rows, "columns": cols, "width": opts.tiler_size[1],
                          "height": opts.tiler_size[0], "gpu-id": opts.gpu_id},
    }
    for i in range(n):
        groups[f"source{i}"] = _source_group(inputs[i % len(inputs)], opts)
    sink: dict[str, object] = {"enable": 1, "type": SINK_TYPES[opts.sink], "sync": 0}
    if opts.sink == "file":
        sink.update(container=1, codec=1, **{"enc-type": 0 if opts.encoder == "hw" else 1, "bitrate": 4000000,
                                             "output-file": opts.output_file})
    elif opts.sink == "rtsp":
        sink.update(codec=1, **{"enc-type": 0 if opts.encoder == "hw" else 1, "bitrate": 4000000,
                                "rtsp-port": opts.rtsp_port, "udp-port": 5400})
    groups["sink0"] = sink
    groups["osd"] = {"enable": 1, "gpu-id": opts.gpu_id, "border-width": 2, "text-size": 12}
    groups["streammux"] = {"gpu-id": opts.gpu_id, "live-source": int(live), "batch-size": n,
                           "batched-push-timeout": 40000, "width": opts.mux_size[1], "height": opts.mux_size[0],
                           "enable-padding": 0}
    groups["primary-gie"] = {"enable": 1, "gpu-id": opts.gpu_id, "gie-unique-id": 1, "batch-size": n,
                             "config-file": infer_config}
    groups["tests"] = {"file-loop": 0}
    return groups


def _check_engine_batch(io: ModelIO, n: int) -> None:
    if io.static_batch is not None and io.static_batch != n:
        raise YoloEdgeError(f"{io.path.name} has a static batch of {io.static_batch} but --sources is {n}: nvstreammux "
                            f"batches {n} frames; re-export/build with batch {n} (or a dynamic batch)")
    if io.format == "plan" and io.max_batch is not None and n > io.max_batch:
        raise YoloEdgeError(f"{io.path.name} was built for batches up to {io.max_batch} but --sources is {n}; rebuild "
                            f"it with yolo-edge build --max-batch {n}")


def write_deepstream(model, out_dir, opts: DeepStreamOptions | None = None) -> Path:
    """Write the DeepStream bundle for ``model`` into ``out_dir`` (see the module doc); returns
    the deepstream-app config path. Both configs are validated against the documented keys."""
    opts = opts or DeepStreamOptions()
    io = describe(model)
    _check_engine_batch(io, opts.sources)
    out = Path(out_dir)
    model_name = "model.onnx" if io.format == "onnx" else "model.engine"
    infer_name = "config_infer_primary_yolo_edge.txt"
    spec = io.spec
    lb = spec.letterbox
    infer_text = render(nvinfer_groups(io, opts, model_name), header=(
        f"nvinfer config written by `yolo-edge deploy deepstream` for {io.path.name}\n"
        f"input {lb.size[0]}x{lb.size[1]} RGB /255, letterboxed (maintain-aspect-ratio + symmetric-padding);\n"
        f"nvinfer pads with 0 where yolo-edge pads with {lb.pad_value} (see README: letterbox pad)\n"
        f"NMS is in the model (score {spec.nms.score_threshold}, IoU {spec.nms.iou_threshold}, "
        f"max {spec.nms.max_det}): cluster-mode=4\n"
        f"build the parser first: make -C nvdsinfer_yolo_edge"))
    validate_nvinfer(infer_text)
    app_text = render(app_groups(opts, infer_name), header=(
        f"deepstream-app config written by `yolo-edge deploy deepstream`: {opts.sources} source(s) -> nvstreammux\n"
        f"(batch {opts.sources}) -> nvinfer -> tiler -> OSD -> {opts.sink} sink\n"
        f"run: deepstream-app -c {Path(out, 'deepstream_app_config.txt').name}"))
    validate_app(app_text)

    with atomic_write(out / infer_name, "w") as f:
        f.write(infer_text)
    with atomic_write(out / "deepstream_app_config.txt", "w") as f:
        f.write(app_text)
    with atomic_write(out / "labels.txt", "w") as f:
        f.write("\n".join(spec.names) + "\n")
    with atomic_path(out / model_name) as tmp:
        shutil.copyfile(io.path, tmp)
    if opts.calib_cache:
        with atomic_path(out / Path(opts.calib_cache).name) as tmp:
            shutil.copyfile(opts.calib_cache, tmp)
    parser_dir = out / "nvdsinfer_yolo_edge"
    parser_dir.mkdir(parents=True, exist_ok=True)
    for name in ("nvdsparsebbox_yolo_edge.cpp", "Makefile"):
        src = PARSER_SRC / name
        if not src.is_file():
            raise YoloEdgeError(f"parser source {src} is missing from this installation; take it from the yolo-edge "
                                "repository's jetson/deepstream/")
        shutil.copyfile(src, parser_dir / name)
    return out / "deepstream_app_config.txt"
