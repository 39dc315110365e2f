"""Engine inspector report: which layers really run INT8, FP16 or FP32, in which memory format.

TensorRT describes a built engine through ``ICudaEngine.create_engine_inspector()`` and
``get_engine_information(LayerInformationFormat.JSON)`` when the engine was built with
``ProfilingVerbosity.DETAILED`` (``yolo-edge build`` always sets it). The JSON is::

    {"Layers": [{"Name": "...", "LayerType": "CaskConvolution",
                 "Inputs":  [{"Name": "...", "Location": "Device", "Dimensions": [1,64,80,80],
                              "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
                 "Outputs": [...], "ParameterType": "Convolution", ..., "TacticName": "..."}, ...],
     "Bindings": ["images", "num_dets", ...]}

(TensorRT 8.x/10.x; the sample is the one in the developer guide, "Engine Inspector"). TensorRT
11 replaced ``Bindings`` with ``"I/O Tensors"`` (objects with ``Name``, ``IOMode``, ``DataType``,
``Format``, ...) and split each tensor's ``Format/Datatype`` into ``Format`` and ``DataType``
(NVIDIA's "Migrating IEngineInspector Usage from TensorRT 10.x to 11.x"). The per-layer tensor
fields of 11.x are shown there only for the I/O tensors; this parser reads both spellings. With
dynamic shapes the formats read "N/A due to dynamic shapes" unless an execution context with its
input shapes set is inspected: :func:`engine_information` sets the opt shapes first.

A layer's precision is the data type of its first input (of its first output when it has no
inputs): a convolution with Int8 inputs runs INT8 kernels. Reformat layers (format or type
conversions TensorRT inserts) are counted apart.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import YoloEdgeError

# datatype words in TensorRT's format descriptions -> our names
_DTYPES = (
    (r"\bint8\b", "INT8"), (r"\bfp8\b", "FP8"), (r"\b(fp16|half)\b", "FP16"), (r"\bbf16\b", "BF16"),
    (r"\b(fp32|float)\b", "FP32"), (r"\bint32\b", "INT32"), (r"\bint64\b", "INT64"), (r"\buint8\b", "UINT8"),
    (r"\bbool\b", "BOOL"), (r"\bint4\b", "INT4"), (r"\bfp4\b", "FP4"),
)
# TensorRT's TensorFormat descriptions (TensorFormat docs) -> enum names
_FORMATS = (
    (r"\(k([A-Z0-9_]+)\)", None),  # 11.x spells the enum: "Row major linear FP32 format (kLINEAR)"
    (r"row major linear", "LINEAR"),
    (r"thirty-two wide channel vectorized", "CHW32"),
    (r"sixteen wide channel vectorized", "CHW16"),
    (r"four wide channel vectorized", "CHW4"),
    (r"(?<![\w-])two wide channel vectorized", "CHW2"),
    (r"channel major .*channel % 16", "HWC16"),
    (r"channel major .*channel % 8", "HWC8"),
    (r"channel major .*channel % 4", "HWC4"),
    (r"channel major", "HWC"),
    (r"dla linear", "DLA_LINEAR"),
    (r"dla hwc4", "DLA_HWC4"),
)
BOOKKEEPING = ("Reformat", "NoOp", "Shuffle", "Constant", "Identity")


def parse_dtype(text) -> str | None:
    s = str(text or "").lower()
    if not s or s.startswith("n/a"):
        return None
    for pat, name in _DTYPES:
        if re.search(pat, s):
            return name
    return None


def parse_format(text) -> str | None:
    s = str(text or "")
    if not s or s.lower().startswith("n/a"):
        return None
    for pat, name in _FORMATS:
        m = re.search(pat, s if name is None else s.lower())
        if m:
            return name or m.group(1)
    return None


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str | None  # INT8 | FP16 | FP32 | ...; None when unknown (dynamic shapes without a context)
    format: str | None  # LINEAR | CHW32 | HWC8 | ...
    dims: tuple
    raw: str = ""

    @property
    def label(self) -> str:
        if self.dtype is None and self.format is None:
            return self.raw or "?"
        return " ".join(x for x in (self.dtype, self.format) if x)


def _tensor(d: dict) -> TensorInfo:
    fd = d.get("Format/Datatype")
    if fd is not None:  # 8.x / 10.x
        dtype, fmt, raw = parse_dtype(fd), parse_format(fd), str(fd)
    else:  # 11.x: separate fields
        raw = " / ".join(str(d[k]) for k in ("DataType", "Format") if d.get(k))
        dtype = parse_dtype(d.get("DataType")) or parse_dtype(d.get("Format"))
        fmt = parse_format(d.get("Format"))
    return TensorInfo(str(d.get("Name", "")), dtype, fmt, tuple(d.get("Dimensions") or ()), raw)


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    tactic: str = ""
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def precision(self) -> str:
        for t in (*self.inputs, *self.outputs):
            if t.dtype:
                return t.dtype
        return "unknown"

    @property
    def bookkeeping(self) -> bool:
        return self.type in BOOKKEEPING


@dataclass(frozen=True)
class EngineReport:
    """Per-layer precision and format of an engine, with a summary count."""

    layers: tuple[LayerInfo, ...]
    io_tensors: tuple[str, ...] = ()
    detailed: bool = True

    def counts(self, include_bookkeeping: bool = False) -> dict[str, int]:
        c = Counter(l.precision for l in self.layers if include_bookkeeping or not l.bookkeeping)
        return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def n_reformat(self) -> int:
        return sum(1 for l in self.layers if l.type == "Reformat")

    def summary(self) -> str:
        if not self.detailed:
            return (f"{len(self.layers)} layers; the engine was built without detailed profiling verbosity, so no "
                    "per-layer precision is known (rebuild with `yolo-edge build`)")
        counts = self.counts()
        total = sum(counts.values())
        parts = ", ".join(f"{k} {v}" for k, v in counts.items())
        return (f"{total} compute layers: {parts}; plus {len(self.layers) - total} reformat/shuffle/no-op layers "
                f"({self.n_reformat} reformats)")

    def table(self, max_rows: int | None = None) -> str:
        """Markdown table: layer, type, precision, inputs and outputs (data type + format)."""
        rows = ["| # | layer | type | precision | inputs | outputs |", "|---|---|---|---|---|---|"]
        layers = self.layers if max_rows is None else self.layers[:max_rows]
        for i, l in enumerate(layers):
            ins = ", ".join(t.label for t in l.inputs) or "-"
            outs = ", ".join(t.label for t in l.outputs) or "-"
            name = l.name if len(l.name) <= 80 else l.name[:77] + "..."
            rows.append(f"| {i} | {name.replace('|', '/')} | {l.type} | {l.precision} | {ins} | {outs} |")
        if max_rows is not None and len(self.layers) > max_rows:
            rows.append(f"| … | {len(self.layers) - max_rows} more layers (--all) | | | | |")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "counts": self.counts(), "io_tensors": list(self.io_tensors),
                "layers": [{"name": l.name, "type": l.type, "precision": l.precision, "tactic": l.tactic,
                            "inputs": [{"name": t.name, "dtype": t.dtype, "format": t.format, "dims": list(t.dims)}
                                       for t in l.inputs],
                            "outputs": [{"name": t.name, "dtype": t.dtype, "format": t.format, "dims": list(t.dims)}
                                        for t in l.outputs]} for l in self.layers]}


def parse_engine_information(text_or_obj) -> EngineReport:
    """Parse ``get_engine_information(LayerInformationFormat.JSON)`` (a string or the parsed dict)."""
    try:
        data = json.loads(text_or_obj) if isinstance(text_or_obj, (str, bytes)) else text_or_obj
    except ValueError as e:
        raise YoloEdgeError(f"engine information is not JSON: {e}") from e
    if not isinstance(data, dict) or "Layers" not in data:
        raise YoloEdgeError("engine information has no 'Layers': not TensorRT's inspector JSON")
    if not isinstance(data["Layers"], list) or not all(isinstance(x, (str, dict)) for x in data["Layers"]):
        raise YoloEdgeError("engine information has malformed 'Layers' (expected a list of layer names or objects): "
                            "not TensorRT's inspector JSON; write it again with yolo-edge build")
    io = data.get("Bindings")
    if io is None:
        io = [t.get("Name", "") for t in data.get("I/O Tensors", []) if isinstance(t, dict)]
    layers = []
    detailed = True
    for item in data["Layers"]:
        if isinstance(item, str):  # ProfilingVerbosity.LAYER_NAMES_ONLY: names only
            detailed = False
            layers.append(LayerInfo(item, "?", (), ()))
            continue
        known = {"Name", "LayerType", "Inputs", "Outputs", "TacticName", "TacticValue"}
        layers.append(LayerInfo(
            name=str(item.get("Name", "")), type=str(item.get("LayerType", "?")),
            inputs=tuple(_tensor(t) for t in item.get("Inputs", []) if isinstance(t, dict)),
            outputs=tuple(_tensor(t) for t in item.get("Outputs", []) if isinstance(t, dict)),
            tactic=str(item.get("TacticName", item.get("TacticValue", ""))),
            extra={k: v for k, v in item.items() if k not in known}))
    return EngineReport(tuple(layers), tuple(str(x) for x in io), detailed)


def engine_information(engine, trt, shapes: dict[str, Sequence[int]] | None = None) -> str:
    """The inspector JSON of a deserialized ``engine``, inspected through an execution context
    whose input shapes are ``shapes`` (default: each input's opt shape of profile 0), so that the
    formats of dynamic-shape engines are known."""
    inspector = engine.create_engine_inspector()
    context = None
    try:
        context = engine.create_execution_context()
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
                continue
            shape = (shapes or {}).get(name)
            if shape is None:
                shape = engine.get_tensor_shape(name)
                if any(int(d) < 0 for d in shape):
                    shape = engine.get_tensor_profile_shape(name, 0)[1]  # (min, opt, max)
            context.set_input_shape(name, tuple(int(d) for d in shape))
        # the binding's only context property on 8.6.1, 10.3.0 and 11.1 (NVIDIA/TensorRT
        # python/src/infer/pyCore.cpp, EngineInspector: def_property("execution_context", ...))
        inspector.execution_context = context
    except Exception:  # no GPU memory for a context: inspect the engine alone (formats may read N/A)
        context = None
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)


def inspect_engine(engine_path, shapes=None) -> EngineReport:
    """Report of an engine file (needs TensorRT and a GPU), or of a saved ``*.layers.json``."""
    p = Path(engine_path)
    if not p.is_file():
        raise YoloEdgeError(f"file not found: {p}")
    if p.suffix == ".json":
        try:
            return parse_engine_information(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise YoloEdgeError(f"{p} is not a text file: give a TensorRT engine or its <engine>.layers.json") from None
    from .compat import init_plugins, make_logger, tensorrt

    trt = tensorrt()
    logger = make_logger(trt)
    init_plugins(trt, logger, required=False)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(p.read_bytes())
    if engine is None:
        raise YoloEdgeError(f"TensorRT {trt.__version__} cannot deserialize {p} (built by another TensorRT version?)")
    return parse_engine_information(engine_information(engine, trt, shapes))


def layers_path(engine_path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + ".layers.json")
