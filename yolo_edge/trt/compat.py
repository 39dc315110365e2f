"""Access to the ``tensorrt`` module and what each TensorRT version can do.

The only place that imports ``tensorrt`` (lazily, through :func:`yolo_edge.deps.require`). Code
elsewhere asks :func:`tensorrt` for the module and :class:`TrtVersion` for the version's
capabilities, so one code path serves TensorRT 8.6, 10.x and 11.x:

=====================  =======================  =========================  ======================
                       8.6 (8.5+)               10.x                       11.x
=====================  =======================  =========================  ======================
network flags          ``EXPLICIT_BATCH``       ``STRONGLY_TYPED``         none (always strongly
                                                                           typed; the flag is
                                                                           deprecated, ignored)
precision              ``BuilderFlag.FP16`` /   in the ONNX graph (FP16    in the ONNX graph
                       ``INT8`` (weak typing)   / Q/DQ); weak typing and   (weak typing removed)
                                                calibrators deprecated
implicit INT8 cache    ``IInt8*Calibrator``     ``IInt8*Calibrator``       removed
                                                (deprecated in 10.1)
execution              tensor-address API:      same                       same
                       ``set_tensor_address``
                       + ``execute_async_v3``
=====================  =======================  =========================  ======================

Sources (NVIDIA documentation): Python API ``Builder.html`` (``NetworkDefinitionCreationFlag``:
"EXPLICIT_BATCH: [DEPRECATED] Ignored because networks are always explicit batch in TensorRT
10.0"), the TensorRT 10.x→11.x migration guide (``tensorrt-10x-to-11x-python-api-reference``:
BuilderFlag.FP16/INT8/…, ``IBuilderConfig.int8_calibrator`` removed; "Strongly Typed Networks Are
Now Required"), the C++ deprecated list (``IInt8EntropyCalibrator2``: "Deprecated in TensorRT 10.1.
Superseded by explicit quantization") and the 8.x→10.x migration guide (binding API,
``execute_async_v2``, ``build_engine`` removed in 10).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..deps import require
from ..errors import YoloEdgeError

MIN_VERSION = (8, 5)  # the tensor-address API (set_tensor_address / execute_async_v3) appeared in 8.5


def tensorrt():
    """The ``tensorrt`` module, or :class:`~yolo_edge.errors.MissingDependency` naming the extra."""
    return require("tensorrt", extra="trt")


@dataclass(frozen=True)
class TrtVersion:
    """A TensorRT version and what the build and runtime code may use with it."""

    major: int
    minor: int
    patch: int = 0
    text: str = ""

    @classmethod
    def parse(cls, text) -> "TrtVersion":
        s = str(text).strip()
        m = re.match(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?", s)
        if not m:
            raise YoloEdgeError(f"cannot read the TensorRT version {text!r}; expected MAJOR[.MINOR[.PATCH]], e.g. 10.3.0")
        return cls(int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), s)

    @classmethod
    def of(cls, trt) -> "TrtVersion":
        return cls.parse(getattr(trt, "__version__", "0.0"))

    def __str__(self) -> str:
        return self.text or f"{self.major}.{self.minor}.{self.patch}"

    @property
    def short(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def supported(self) -> bool:
        return (self.major, self.minor) >= MIN_VERSION

    @property
    def strongly_typed(self) -> bool:
        """Engines are built from a strongly typed network (precision from the ONNX graph)."""
        return self.major >= 10

    @property
    def weak_typing(self) -> bool:
        """``BuilderFlag.FP16`` / ``INT8`` exist (deprecated in 10.x, removed in 11.0)."""
        return self.major <= 10

    @property
    def calibrators(self) -> bool:
        """``IInt8*Calibrator`` and ``IBuilderConfig.int8_calibrator`` exist (removed in 11.0)."""
        return self.major <= 10

    @property
    def explicit_batch_flag(self) -> bool:
        """``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` is needed (before 10.0)."""
        return self.major < 10

    @property
    def strongly_typed_flag(self) -> bool:
        """``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is needed (10.x; 11.x always strongly typed)."""
        return self.major == 10

    def require_supported(self) -> None:
        if not self.supported:
            raise YoloEdgeError(f"TensorRT {self} is too old: yolo-edge needs TensorRT 8.5 or newer (the tensor-address "
                                "API); use JetPack 5.1+ or pip install 'tensorrt>=8.6'")


def init_plugins(trt, logger, required: bool = True) -> bool:
    """Register TensorRT's own plugins (EfficientNMS_TRT, ...) in the plugin registry.

    Needed before parsing an ONNX with a plugin node on TensorRT 10/11 (onnx-tensorrt 10.x's
    ``importPluginCreator`` only looks in the registry; the 8.6-GA parser called
    ``initLibNvInferPlugins`` itself, ``ModelImporter.cpp``) and before deserializing an engine
    that contains a plugin, on every version. Polygraphy does the same before parsing and before
    deserializing (NVIDIA/TensorRT v10.3.0 tools/Polygraphy/polygraphy/backend/trt/loader.py).
    Calling it twice is harmless (the library registers each creator once). Returns whether the
    plugins are registered; raises when ``required`` and they could not be."""
    init = getattr(trt, "init_libnvinfer_plugins", None)
    ok = bool(init(logger, "")) if init is not None else False
    if not ok and required:
        raise YoloEdgeError("TensorRT could not load its plugin library (libnvinfer_plugin), which EfficientNMS_TRT "
                            "needs: install the TensorRT plugins package (e.g. libnvinfer-plugin10, or the tensorrt "
                            "pip wheel) next to TensorRT, or export with --nms onnx")
    return ok


def dla_support(version: "TrtVersion") -> tuple[bool, str]:
    """Whether TensorRT ``version`` can build for a DLA core, and why not.

    NVIDIA "Working with DLA" (TensorRT 11.4.1 docs): "TensorRT 10.7 was the last 10.x release that
    supported DLA"; "DLA was unavailable in TensorRT 11.0 through 11.3"; "TensorRT 11.4.0 supported DLA
    only on Windows on ARM"; 11.4.1 supports it "on NVIDIA Jetson AGX Orin when using NVIDIA JetPack
    7.2.2 or later", with strongly typed networks."""
    v = (version.major, version.minor, version.patch)
    if v < (10, 8, 0):
        return True, ""
    if v < (11, 4, 0):
        return False, (f"TensorRT {version} has no DLA support (10.7 was the last 10.x release with DLA; 11.0-11.3 "
                       "have none): build for the GPU, or use the TensorRT of your JetPack (JetPack 6: 10.3)")
    if v < (11, 4, 1):
        return False, (f"TensorRT {version} supports DLA only on Windows on ARM; on Jetson use TensorRT 11.4.1+ "
                       "with JetPack 7.2.2+")
    return True, "DLA on TensorRT 11.4.1+ needs Jetson AGX Orin with JetPack 7.2.2 or later"


def make_logger(trt, verbose: bool = False):
    """A ``trt.Logger`` at WARNING (or INFO when ``verbose``)."""
    return trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)


def nptype(trt, dtype):
    """numpy dtype of a ``trt.DataType``."""
    import numpy as np

    return np.dtype(trt.nptype(dtype))


def dims(shape) -> tuple:
    """A TensorRT ``Dims`` (or any sequence) as a tuple of ints; -1 marks a dynamic axis."""
    return tuple(int(d) for d in shape)
