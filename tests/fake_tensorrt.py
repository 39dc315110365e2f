"""A recording fake of the ``tensorrt`` Python module (8.6, 10.x, 11.x) and a fake CUDA backend.

``make_fake_trt("10.3.0")`` returns a module-like object whose classes, enums and attributes exist
exactly per the allow-lists below for that major version: anything else raises
``AttributeError`` (so code that uses an API the targeted TensorRT does not have fails here, as it
would on the device), and an API that exists but the fake does not implement raises
``NotImplementedError``. Every call and attribute assignment is recorded in ``trt._fake_calls``.

The fake parses real ONNX files (with ``onnx``) into a network, "builds" an engine whose bytes are
a JSON description (inputs, outputs, profile, flags, the ONNX path), and runs it with ONNX Runtime
(or a named numpy function for synthetic engines) through device memory owned by :class:`FakeCuda`:
copies and ``execute_async_v3`` are queued per stream and run at ``synchronize``, so a runner that
forgets to synchronize reads stale host memory.

Allow-lists, from NVIDIA's documentation (pages named in the comments):

* 8.6: Python API reference of TensorRT 8.6.1 (``archives/tensorrt-861/api/python_api``):
  ``Core/Builder``, ``Core/BuilderConfig``, ``Core/Engine``, ``Core/ExecutionContext``,
  ``Core/EngineInspector`` (``engine`` / ``context`` attributes, as in the 8.2 page),
  ``parsers/Onnx/pyOnnx`` (``parse``, ``parse_from_file``, ``num_errors``, ``get_error``), and the
  8.6.0 C++ ``ICudaEngine`` (binding API present but deprecated).
* 10.x: Python API reference (``docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api``):
  ``NetworkDefinitionCreationFlag`` "EXPLICIT_BATCH: [DEPRECATED] Ignored ... in TensorRT 10.0",
  ``STRONGLY_TYPED``; ``EngineInspector.execution_context``; and the 8.x→10.x migration guide
  ("Removed Python APIs": binding API, ``execute_async_v2``, ``build_engine``,
  ``max_workspace_size``, ``max_batch_size``; "Python APIs Added in 10.x").
* 11.x: "Migrating from TensorRT 10.x to 11.x", Python API reference
  (``tensorrt-10x-to-11x-python-api-reference``): BuilderFlag FP16/INT8/FP8/BF16/INT4/FP4,
  OBEY_/PREFER_PRECISION_CONSTRAINTS, DIRECT_IO removed; ``IBuilderConfig.int8_calibrator``,
  ``set/get_calibration_profile``, quantization flags removed; ``ICudaEngine.device_memory_size``
  removed (``device_memory_size_v2``); the C++ list removes ``IAlgorithm*`` and
  ``platformHasFastFp16/Int8``. ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is "deprecated in
  TensorRT 11.0 ... retained for API compatibility but ignored" and EXPLICIT_BATCH is gone (the 11.x
  header enum has only kSTRONGLY_TYPED = 0). Unclear in the docs, decided here: the Python
  ``IInt8*Calibrator`` classes are treated as removed with ``int8_calibrator`` (nothing could use
  them); the per-layer inspector fields of 11.x follow the I/O-tensor example of the 11.x inspector
  migration page (``DataType`` + ``Format``).
"""

from __future__ import annotations

import itertools
import json
import types
from pathlib import Path

import numpy as np

from yolo_edge.trt.cuda import CudaBackend, DeviceBuffer, Stream

# --- allow-lists ------------------------------------------------------------------------------
MODULE_COMMON = {
    "__version__", "Logger", "ILogger", "Builder", "Runtime", "OnnxParser", "ParserError", "ErrorCode",
    "OnnxParserFlag", "NetworkDefinitionCreationFlag", "BuilderFlag", "MemoryPoolType", "ProfilingVerbosity",
    "DeviceType", "DataType", "TensorIOMode", "TensorFormat", "TensorLocation", "LayerInformationFormat",
    "EngineCapability", "TacticSource", "HardwareCompatibilityLevel", "LayerType", "nptype", "volume",
    "ICudaEngine", "IExecutionContext", "IBuilderConfig", "INetworkDefinition", "IOptimizationProfile",
    "ITimingCache", "IHostMemory", "EngineInspector", "ITensor", "ILayer", "IOutputAllocator", "IProfiler",
    "Profiler", "init_libnvinfer_plugins", "get_plugin_registry", "Dims",
}
MODULE_86 = MODULE_COMMON | {
    "IInt8Calibrator", "IInt8EntropyCalibrator2", "IInt8EntropyCalibrator", "IInt8MinMaxCalibrator",
    "IInt8LegacyCalibrator", "CalibrationAlgoType", "QuantizationFlag", "IAlgorithmSelector", "PreviewFeature",
}
MODULE_10 = MODULE_86 | {  # "Python APIs Added in 10.x"
    "ExecutionContextAllocationStrategy", "IGpuAsyncAllocator", "IPluginV3", "IStreamReader", "APILanguage",
    "IVersionedInterface", "InterfaceInfo", "IPluginResource",
}
MODULE_11 = MODULE_10 - {
    "IInt8Calibrator", "IInt8EntropyCalibrator2", "IInt8EntropyCalibrator", "IInt8MinMaxCalibrator",
    "IInt8LegacyCalibrator", "CalibrationAlgoType", "QuantizationFlag", "IAlgorithmSelector",
}

ENUMS = {
    "NetworkDefinitionCreationFlag": {
        8: ["EXPLICIT_BATCH", "EXPLICIT_PRECISION"],
        10: ["EXPLICIT_BATCH", "STRONGLY_TYPED", "PREFER_AOT_PYTHON_PLUGINS", "PREFER_JIT_PYTHON_PLUGINS"],
        11: ["STRONGLY_TYPED", "PREFER_AOT_PYTHON_PLUGINS", "PREFER_JIT_PYTHON_PLUGINS"],
    },
    "BuilderFlag": {
        8: ["FP16", "INT8", "DEBUG", "GPU_FALLBACK", "STRICT_TYPES", "REFIT", "DISABLE_TIMING_CACHE", "TF32",
            "SPARSE_WEIGHTS", "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS",
            "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "FP8"],
        10: ["FP16", "BF16", "INT8", "FP8", "INT4", "FP4", "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE",
             "TF32", "SPARSE_WEIGHTS", "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS",
             "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME",
             "ERROR_ON_TIMING_CACHE_MISS", "DISABLE_COMPILATION_CACHE", "WEIGHTLESS", "STRIP_PLAN",
             "REFIT_IDENTICAL", "WEIGHT_STREAMING", "REFIT_INDIVIDUAL", "STRICT_NANS", "MONITOR_MEMORY",
             "EDITABLE_TIMING_CACHE"],
        11: ["DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS", "SAFETY_SCOPE",
             "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "ERROR_ON_TIMING_CACHE_MISS",
             "DISABLE_COMPILATION_CACHE", "WEIGHTLESS", "STRIP_PLAN", "REFIT_IDENTICAL", "WEIGHT_STREAMING",
             "REFIT_INDIVIDUAL", "STRICT_NANS", "MONITOR_MEMORY", "EDITABLE_TIMING_CACHE"],
    },
    "MemoryPoolType": {
        8: ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM", "TACTIC_DRAM"],
        10: ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM", "TACTIC_DRAM",
             "TACTIC_SHARED_MEMORY"],
    },
    "ProfilingVerbosity": {8: ["LAYER_NAMES_ONLY", "DETAILED", "NONE", "DEFAULT", "VERBOSE"],
                           10: ["LAYER_NAMES_ONLY", "DETAILED", "NONE"]},
    "DeviceType": {8: ["GPU", "DLA"]},
    "DataType": {8: ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8"],
                 10: ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8", "BF16", "INT64", "INT4"],
                 11: ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8", "BF16", "INT64", "INT4", "FP4"]},
    "TensorIOMode": {8: ["NONE", "INPUT", "OUTPUT"]},
    "LayerInformationFormat": {8: ["ONELINE", "JSON"]},
    "TensorLocation": {8: ["DEVICE", "HOST"]},
    "LayerType": {8: ["CONVOLUTION", "ACTIVATION", "POOLING", "ELEMENTWISE", "SHUFFLE", "CONSTANT", "SHAPE",
                      "CAST", "UNARY", "REDUCE", "TOPK", "GATHER", "SCATTER", "SELECT", "SLICE", "CONCATENATION",
                      "RESIZE", "SOFTMAX", "MATRIX_MULTIPLY", "NMS", "FILL", "QUANTIZE", "DEQUANTIZE",
                      "PLUGIN_V2", "IDENTITY", "CONDITION", "ASSERTION"]},
}
_OP_LAYER = {"Conv": "CONVOLUTION", "Sigmoid": "ACTIVATION", "Relu": "ACTIVATION", "MaxPool": "POOLING",
             "Add": "ELEMENTWISE", "Mul": "ELEMENTWISE", "Sub": "ELEMENTWISE", "Div": "ELEMENTWISE",
             "Reshape": "SHUFFLE", "Transpose": "SHUFFLE", "Constant": "CONSTANT", "Shape": "SHAPE", "Cast": "CAST",
             "ReduceSum": "REDUCE", "TopK": "TOPK", "GatherND": "GATHER", "ScatterND": "SCATTER", "Where": "SELECT",
             "Slice": "SLICE", "Concat": "CONCATENATION", "Resize": "RESIZE", "Softmax": "SOFTMAX",
             "MatMul": "MATRIX_MULTIPLY", "NonMaxSuppression": "NMS", "ConstantOfShape": "FILL",
             "QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE", "Identity": "IDENTITY"}

_B86 = {"create_network", "create_builder_config", "create_optimization_profile", "build_serialized_network",
        "build_engine", "is_network_supported", "platform_has_fast_fp16", "platform_has_fast_int8",
        "platform_has_tf32", "num_DLA_cores", "max_DLA_batch_size", "max_batch_size", "error_recorder",
        "gpu_allocator", "logger", "max_threads", "reset", "get_plugin_registry"}
_B10 = (_B86 - {"build_engine", "max_batch_size"}) | {"build_engine_with_config"}
_C86 = {"set_memory_pool_limit", "get_memory_pool_limit", "max_workspace_size", "set_flag", "clear_flag", "get_flag",
        "flags", "int8_calibrator", "set_calibration_profile", "get_calibration_profile", "default_device_type",
        "DLA_core", "set_device_type", "get_device_type", "is_device_type_set", "reset_device_type",
        "can_run_on_DLA", "profiling_verbosity", "add_optimization_profile", "num_optimization_profiles",
        "create_timing_cache", "set_timing_cache", "get_timing_cache", "set_tactic_sources", "get_tactic_sources",
        "engine_capability", "builder_optimization_level", "hardware_compatibility_level", "avg_timing_iterations",
        "min_timing_iterations", "set_quantization_flag", "clear_quantization_flag", "get_quantization_flag",
        "quantization_flags", "algorithm_selector", "set_preview_feature", "get_preview_feature", "profile_stream",
        "max_aux_streams", "plugins_to_serialize", "reset"}
_C10 = (_C86 - {"max_workspace_size", "min_timing_iterations"}) | {"max_num_tactics", "runtime_platform"}
_C11 = _C10 - {"int8_calibrator", "set_calibration_profile", "get_calibration_profile", "set_quantization_flag",
               "clear_quantization_flag", "get_quantization_flag", "quantization_flags", "algorithm_selector"}
_E86 = {"num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_shape", "get_tensor_dtype",
        "get_tensor_location", "get_tensor_format", "get_tensor_format_desc", "get_tensor_vectorized_dim",
        "get_tensor_profile_shape", "get_tensor_profile_values", "is_shape_inference_io", "create_execution_context",
        "create_execution_context_without_device_memory", "create_engine_inspector", "serialize", "num_layers",
        "num_optimization_profiles", "device_memory_size", "name", "refittable", "engine_capability",
        "hardware_compatibility_level", "num_aux_streams", "has_implicit_batch_dimension", "error_recorder",
        "tactic_sources", "profiling_verbosity",
        # binding API: deprecated in 8.x, removed in 10
        "num_bindings", "get_binding_index", "get_binding_name", "binding_is_input", "get_binding_shape",
        "get_binding_dtype", "get_binding_format", "get_location", "get_profile_shape", "get_profile_shape_input",
        "is_execution_binding", "is_shape_binding", "max_batch_size"}
_E10 = (_E86 - {"num_bindings", "get_binding_index", "get_binding_name", "binding_is_input", "get_binding_shape",
                "get_binding_dtype", "get_binding_format", "get_location", "get_profile_shape",
                "get_profile_shape_input", "is_execution_binding", "is_shape_binding", "max_batch_size"}) | {
    "device_memory_size_v2", "streamable_weights_size", "weight_streaming_budget", "weight_streaming_budget_v2",
    "minimum_weight_streaming_budget", "is_debug_tensor", "get_device_memory_size_for_profile",
    "get_device_memory_size_for_profile_v2", "create_serialization_config"}
_E11 = _E10 - {"device_memory_size", "get_device_memory_size_for_profile", "has_implicit_batch_dimension"}
_X86 = {"set_input_shape", "get_tensor_shape", "set_tensor_address", "get_tensor_address", "execute_async_v3",
        "execute_v2", "execute_async_v2", "execute_async", "execute", "set_binding_shape", "get_binding_shape",
        "get_shape", "all_binding_shapes_specified", "all_shape_inputs_specified", "set_optimization_profile_async",
        "active_optimization_profile", "infer_shapes", "engine", "name", "debug_sync", "profiler", "device_memory",
        "set_input_consumed_event", "get_input_consumed_event", "persistent_cache_limit", "nvtx_verbosity",
        "set_aux_streams", "report_to_profiler", "enqueue_emits_profile", "set_output_allocator",
        "get_output_allocator", "get_max_output_size", "error_recorder", "get_tensor_strides", "get_strides"}
_X10 = (_X86 - {"execute_async_v2", "execute_async", "execute", "set_binding_shape", "get_binding_shape",
                "get_shape", "all_binding_shapes_specified", "active_optimization_profile", "get_strides"}) | {
    "update_device_memory_size_for_shapes", "set_debug_listener", "get_debug_listener", "set_tensor_debug_state",
    "get_debug_state", "set_all_tensors_debug_state"}
_P86 = {"parse", "parse_from_file", "parse_with_weight_descriptors", "supports_model", "supports_operator",
        "num_errors", "get_error", "clear_errors", "set_flag", "clear_flag", "get_flag", "flags",
        "get_used_vc_plugin_libraries"}
_P10 = _P86 | {"get_layer_output_tensor", "supports_model_v2", "num_subgraphs", "is_subgraph_supported",
               "get_subgraph_nodes"}

API = {
    "Builder": {8: _B86, 10: _B10, 11: _B10 - {"platform_has_fast_fp16", "platform_has_fast_int8", "platform_has_tf32"}},
    "IBuilderConfig": {8: _C86, 10: _C10, 11: _C11},
    "INetworkDefinition": {8: {"num_inputs", "get_input", "num_outputs", "get_output", "num_layers", "get_layer",
                               "name", "mark_output", "add_input", "has_implicit_batch_dimension", "error_recorder",
                               "flags", "get_flag"},
                           11: {"num_inputs", "get_input", "num_outputs", "get_output", "num_layers", "get_layer",
                                "name", "mark_output", "add_input", "error_recorder", "flags", "get_flag"}},
    "ITensor": {8: {"name", "shape", "dtype", "is_network_input", "is_network_output", "location", "dynamic_range",
                    "set_dynamic_range", "allowed_formats"},
                11: {"name", "shape", "dtype", "is_network_input", "is_network_output", "location", "allowed_formats"}},
    "OnnxParser": {8: _P86, 10: _P10},
    "ParserError": {8: {"code", "desc", "file", "func", "line", "node"},
                    10: {"code", "desc", "file", "func", "line", "node", "node_name", "node_operator",
                         "local_function_stack", "local_function_stack_size"}},
    "IOptimizationProfile": {8: {"set_shape", "get_shape", "set_shape_input", "get_shape_input", "extra_memory_target"}},
    "ITimingCache": {8: {"serialize", "combine", "reset"}, 10: {"serialize", "combine", "reset", "query", "queryKeys",
                                                               "update"}},
    "IHostMemory": {8: {"dtype", "nbytes"}},
    "Runtime": {8: {"deserialize_cuda_engine", "DLA_core", "num_DLA_cores", "max_threads", "error_recorder",
                    "gpu_allocator", "logger", "engine_host_code_allowed", "temporary_directory",
                    "tempfile_control_flags", "load_runtime", "get_plugin_registry"}},
    "ICudaEngine": {8: _E86, 10: _E10, 11: _E11},
    "IExecutionContext": {8: _X86, 10: _X10},
    # NVIDIA/TensorRT v8.6.1, v10.3.0 and v11.1 python/src/infer/pyCore.cpp: EngineInspector has one context
    # property, def_property("execution_context", ...), on every version (no `engine`, no `context`)
    "EngineInspector": {8: {"execution_context", "get_layer_information", "get_engine_information",
                            "error_recorder"}},
    # v8.6.1 python/src/infer/pyPlugin.cpp: IPluginRegistry / IPluginCreator
    "IPluginRegistry": {8: {"plugin_creator_list", "get_plugin_creator", "register_creator", "deregister_creator",
                            "error_recorder", "parent_search_enabled", "load_library", "deregister_library"}},
    "IPluginCreator": {8: {"tensorrt_version", "name", "plugin_version", "field_names", "plugin_namespace",
                           "create_plugin", "deserialize_plugin"}},
    # ILayer (pyGraph.cpp): the per-layer precision API used by weakly typed builds
    "ILayer": {8: {"name", "type", "num_inputs", "num_outputs", "get_input", "get_output", "precision",
                   "precision_is_set", "reset_precision", "set_output_type", "get_output_type", "output_type_is_set",
                   "reset_output_type", "metadata"}},
}

# --- what each TensorRT version's ONNX parser takes ---------------------------------------------------------
# The op x dtype table is onnx-tensorrt's docs/operators.md (8.6-GA and 10.1-GA), transcribed in
# yolo_edge/trt/data/onnx_trt_ops.json (repo, branch, commit in the file). The checks below are the fake's
# own, written from the parser's behaviour (not yolo_edge.trt.readiness).
OPS_JSON = Path(__file__).resolve().parents[1] / "yolo_edge" / "trt" / "data" / "onnx_trt_ops.json"
# ITopKLayer: "values of K up to 3840" (NvInfer.h v8.6.1); operators.md 10.1-GA: "`K` input must be less than 3840"
TOPK_LIMIT = {8: 3840, 10: 3839, 11: 3839}
# INMSLayer: "only the K highest scoring boxes in each batch item will be considered for selection. The value of
# K is 2000 for SM 5.3 and 6.2 devices, and 5000 otherwise" (NvInfer.h v8.6.1 / v10.3.0 / v11.1)
INMS_TOPK = 5000
PLUGIN_NOT_FOUND = "Plugin not found, are the plugin name, version, and namespace correct?"  # onnxOpImporters.cpp


def has_dla(version: str) -> bool:
    """NVIDIA "Working with DLA" (TensorRT 11.4.1): 10.7 was the last 10.x with DLA; none in 11.0-11.3;
    11.4.0 Windows on ARM only; 11.4.1+ on AGX Orin with JetPack 7.2.2+."""
    v = tuple(int(x) for x in (str(version).split(".") + ["0", "0"])[:3])
    return v < (10, 8, 0) or v >= (11, 4, 1)



def _pick(table: dict, major: int):
    """The entry of the newest version <= ``major`` (8 stands for 8.6)."""
    keys = sorted(k for k in table if k <= major)
    if not keys:
        raise KeyError(major)
    return table[keys[-1]]


# --- machinery --------------------------------------------------------------------------------
class EnumMember:
    def __init__(self, enum: str, name: str, value: int):
        self.enum, self.name, self.value = enum, name, value

    def __int__(self):
        return self.value

    __index__ = __int__

    def __eq__(self, other):
        return isinstance(other, EnumMember) and (self.enum, self.name) == (other.enum, other.name)

    def __hash__(self):
        return hash((self.enum, self.name))

    def __repr__(self):
        return f"{self.enum}.{self.name}"


class FakeEnum:
    def __init__(self, trt, name: str, members):
        object.__setattr__(self, "_trt", trt)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_members", {m: EnumMember(name, m, i) for i, m in enumerate(members)})

    def __getattr__(self, item):
        members = object.__getattribute__(self, "_members")
        if item in members:
            return members[item]
        raise AttributeError(f"tensorrt {self._trt.__version__}: {self._name} has no member {item!r}")

    @property
    def __members__(self):
        return dict(self._members)


class Strict:
    """Base of the fake TensorRT objects: only the attributes of the targeted version exist."""

    API_NAME = ""

    def __init__(self, trt):
        object.__setattr__(self, "_trt", trt)

    def __getattribute__(self, name):
        if name.startswith("_") or name == "API_NAME":
            return object.__getattribute__(self, name)
        trt = object.__getattribute__(self, "_trt")
        cls = object.__getattribute__(self, "API_NAME")
        trt._fake_check(cls, name)
        try:
            value = object.__getattribute__(self, name)
        except AttributeError:
            raise NotImplementedError(f"fake tensorrt: {cls}.{name} exists in TensorRT {trt.__version__} but the fake "
                                      "does not implement it") from None
        if isinstance(value, types.MethodType):
            return trt._fake_recorder(f"{cls}.{name}", value)
        return value

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            trt = object.__getattribute__(self, "_trt")
            cls = object.__getattribute__(self, "API_NAME")
            trt._fake_check(cls, name)
            trt._fake_calls.append((f"{cls}.{name}=", (value,), {}))
        object.__setattr__(self, name, value)


class FakeTensorRT(types.ModuleType):
    """The module object; attributes not in the version's allow-list raise AttributeError."""

    def __getattr__(self, name):  # only called for names not in __dict__
        raise AttributeError(f"module 'tensorrt' ({self.__dict__.get('__version__')}) has no attribute {name!r}")

    def _fake_check(self, cls: str, name: str) -> None:
        allowed = _pick(API[cls], self._fake_major)
        if name not in allowed:
            raise AttributeError(f"tensorrt {self.__version__}: '{cls}' object has no attribute '{name}'")

    def _fake_recorder(self, qualname: str, fn):
        def call(*args, **kwargs):
            self._fake_calls.append((qualname, args, kwargs))
            return fn(*args, **kwargs)
        return call

    def _fake_log(self, severity: str, msg: str) -> None:
        self._fake_log_lines.append((severity, msg))


def calls(trt, name: str) -> list[tuple]:
    """``(args, kwargs)`` of every recorded call (or ``"X.attr="`` assignment) named ``name``."""
    return [(a, k) for n, a, k in trt._fake_calls if n == name]


def called(trt) -> list[str]:
    return [n for n, _, _ in trt._fake_calls]


# --- fake CUDA ----------------------------------------------------------------------------------
class FakeCuda(CudaBackend):
    """Device memory as numpy byte arrays at fake addresses; async work queued per stream and run
    at :meth:`synchronize`. ``ops`` records every operation in order."""

    name = "fake-cuda"

    def __init__(self, gpu="Fake GPU", compute_capability="8.7", cuda="12.2"):
        self.mem: dict[int, np.ndarray] = {}
        self.queues: dict[int, list] = {}
        self.pinned: list[np.ndarray] = []
        self.ops: list[tuple] = []
        self._next = itertools.count(1)
        self._addr = 0x7F0000000000
        self.info = {"gpu": gpu, "compute_capability": compute_capability, "cuda": cuda}
        self.closed = False

    def stream(self) -> Stream:
        h = 0x5000 + next(self._next)
        self.queues[h] = []
        self.ops.append(("stream", h))
        return Stream(h, h)

    def host_empty(self, shape, dtype) -> np.ndarray:
        a = np.empty(shape, dtype)
        self.pinned.append(a)
        self.ops.append(("host_empty", tuple(shape), np.dtype(dtype).name))
        return a

    def is_pinned(self, arr) -> bool:
        return any(np.shares_memory(arr, p) for p in self.pinned)

    def device_alloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self._addr
        self._addr += (max(int(nbytes), 1) + 255) // 256 * 256
        self.mem[ptr] = np.zeros(max(int(nbytes), 1), np.uint8)
        self.ops.append(("device_alloc", ptr, int(nbytes)))
        return DeviceBuffer(ptr, int(nbytes), ptr)

    def view(self, ptr: int, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = int(np.prod(shape)) * dtype.itemsize
        buf = self.mem[ptr]
        if n > buf.nbytes:
            raise RuntimeError(f"fake cuda: {n} bytes at {ptr:#x} but only {buf.nbytes} allocated")
        return buf[:n].view(dtype).reshape(shape)

    def enqueue(self, handle: int, what: tuple, fn) -> None:
        if handle not in self.queues:
            raise RuntimeError(f"fake cuda: unknown stream {handle}")
        self.ops.append(what)
        self.queues[handle].append(fn)

    def htod_async(self, dst, src, stream) -> None:
        if not self.is_pinned(src):
            raise RuntimeError("fake cuda: async copy from pageable host memory")
        data = np.ascontiguousarray(src).view(np.uint8).reshape(-1)

        def run(data=data.copy(), dst=dst):
            self.mem[dst.ptr][:data.nbytes] = data
        self.enqueue(stream.handle, ("htod", dst.ptr, int(src.nbytes)), run)

    def dtoh_async(self, dst, src, stream) -> None:
        if not self.is_pinned(dst):
            raise RuntimeError("fake cuda: async copy to pageable host memory")

        def run(dst=dst, src=src):
            dst.reshape(-1).view(np.uint8)[:] = self.mem[src.ptr][:dst.nbytes]
        self.enqueue(stream.handle, ("dtoh", src.ptr, int(dst.nbytes)), run)

    def synchronize(self, stream) -> None:
        q = self.queues[stream.handle]
        while q:
            q.pop(0)()
        self.ops.append(("sync", stream.handle))

    def free(self, buf) -> None:
        self.mem.pop(buf.ptr)
        self.ops.append(("free", buf.ptr))

    def free_host(self, arr) -> None:
        self.pinned = [p for p in self.pinned if p is not arr]
        self.ops.append(("free_host",))

    def free_stream(self, stream) -> None:
        self.queues.pop(stream.handle)
        self.ops.append(("free_stream", stream.handle))

    def device_info(self) -> dict:
        return dict(self.info)

    def close(self) -> None:
        self.closed = True


# --- numpy engines for synthetic engine files -------------------------------------------------------
def _decoded(inputs: dict) -> dict:
    """images (B, 3, H, W) -> boxes (B, 8, 4), scores (B, 8, 3): values the test can recompute."""
    x = inputs["images"]
    flat = x.reshape(x.shape[0], -1)
    boxes = (flat[:, :32] * 100.0 + flat[:, -1:]).reshape(-1, 8, 4)  # per image: chunking must not matter
    scores = flat[:, -24:][:, ::-1].reshape(-1, 8, 3)
    return {"boxes": boxes.astype(np.float32), "scores": np.ascontiguousarray(scores, np.float32)}


def _nms(inputs: dict) -> dict:
    """images (B, 3, H, W) -> EfficientNMS layout with K = 5 and mixed int32 / float32 outputs."""
    x = inputs["images"]
    b = x.shape[0]
    flat = x.reshape(b, -1)
    num = (np.arange(b, dtype=np.int32) % 5 + 1).reshape(b, 1)
    boxes = np.sort(flat[:, :20].reshape(b, 5, 2, 2), axis=2).transpose(0, 1, 3, 2).reshape(b, 5, 4) * 64
    scores = flat[:, 20:25]
    classes = (flat[:, 25:30] * 3).astype(np.int32)
    return {"num_dets": num, "det_boxes": boxes.astype(np.float32), "det_scores": scores.astype(np.float32),
            "det_classes": classes}


COMPUTES = {"decoded": _decoded, "nms": _nms}


def fake_engine_bytes(version: str, inputs, outputs, profile=None, compute: str = "decoded") -> bytes:
    """A synthetic engine file for the fake runtime: ``inputs``/``outputs`` are ``(name, shape,
    DataType name)`` with -1 for dynamic axes; ``profile`` maps inputs to (min, opt, max)."""
    blob = {"fake_engine": 1, "tensorrt": version, "compute": compute,
            "inputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in inputs],
            "outputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in outputs],
            "profile": {k: [list(x) for x in v] for k, v in (profile or {}).items()}, "layers": [],
            "network_flags": [], "builder_flags": []}
    return json.dumps(blob).encode()


# --- the fake module ------------------------------------------------------------------------------
_ONNX_DTYPES = {1: "FLOAT", 10: "HALF", 6: "INT32", 7: "INT64", 3: "INT8", 9: "BOOL", 2: "UINT8", 16: "BF16"}
_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "INT8": np.int8,
       "BOOL": np.bool_, "UINT8": np.uint8}
_LAYER_TYPES = {"Conv": "CaskConvolution", "Concat": "NoOp", "Reshape": "Shuffle", "Transpose": "Shuffle",
                "Split": "Slice", "Slice": "Slice", "Resize": "Resize", "MaxPool": "CaskPooling",
                "Softmax": "CaskSoftMax", "MatMul": "CaskGemmMatrixMultiply"}


def device_graph(onnx_path: str, plugins=()):
    """The ONNX as the fake "device" runs it: each NonMaxSuppression sees only the best INMS_TOPK
    (class, box) scores of an image, like INMSLayer; with a plugin, the graph up to its inputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(onnx_path)
    g = model.graph
    if plugins:
        p = plugins[0]
        keep = [n for n in g.node if n.name != p["node"]]
        del g.node[:]
        g.node.extend(keep)
        del g.output[:]
        g.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in p["inputs"][:2])
        return model
    extra = []
    for i, n in enumerate(list(g.node)):
        if n.op_type != "NonMaxSuppression":
            continue
        s, p = n.input[1], f"_inms{i}"
        g.initializer.extend([numpy_helper.from_array(np.array([0, -1], np.int64), p + "_flat"),
                              numpy_helper.from_array(np.array([INMS_TOPK], np.int64), p + "_cap"),
                              numpy_helper.from_array(np.array([1], np.int64), p + "_one"),
                              numpy_helper.from_array(np.array([-1], np.int64), p + "_m1"),
                              numpy_helper.from_array(np.array(-1.0, np.float32), p + "_neg")])
        extra += [helper.make_node("Reshape", [s, p + "_flat"], [p + "_f"]),
                  helper.make_node("Shape", [p + "_f"], [p + "_shape"]),
                  helper.make_node("Gather", [p + "_shape", p + "_one"], [p + "_w"]),
                  helper.make_node("Min", [p + "_w", p + "_cap"], [p + "_k"]),
                  helper.make_node("TopK", [p + "_f", p + "_k"], [p + "_v", p + "_i"], axis=1),
                  helper.make_node("Gather", [p + "_v", p + "_m1"], [p + "_kth"], axis=1),  # (B, 1)
                  helper.make_node("Unsqueeze", [p + "_kth", p + "_one"], [p + "_kth3"]),  # (B, 1, 1)
                  helper.make_node("GreaterOrEqual", [s, p + "_kth3"], [p + "_mask"]),
                  helper.make_node("Where", [p + "_mask", s, p + "_neg"], [p + "_s"])]
        n.input[1] = p + "_s"
    if extra:
        first = min(i for i, n in enumerate(g.node) if n.op_type == "NonMaxSuppression")
        nodes = list(g.node)
        del g.node[:]
        g.node.extend(nodes[:first] + extra + nodes[first:])
    return model


def make_fake_trt(version: str = "10.3.0", *, cuda: FakeCuda | None = None, dla_cores: int = 0,
                  parse_errors=()) -> FakeTensorRT:
    """A fake ``tensorrt`` module for ``version`` (8.6.x, 10.x, 11.x).

    Args:
        cuda: the :class:`FakeCuda` whose memory engines read and write (default: a new one, as
            ``trt._fake_cuda``).
        dla_cores: ``Builder.num_DLA_cores``.
        parse_errors: ``(description, node)`` pairs: the ONNX parser fails with these.
    """
    major = int(str(version).split(".")[0])
    if major not in (8, 10, 11):
        raise ValueError(f"fake tensorrt knows 8.6, 10.x and 11.x, not {version}")
    trt = FakeTensorRT("tensorrt")
    d = trt.__dict__
    d["_fake_major"] = major
    d["_fake_calls"] = []
    d["_fake_log_lines"] = []
    d["_fake_cuda"] = cuda or FakeCuda()
    allowed = {8: MODULE_86, 10: MODULE_10, 11: MODULE_11}[major]

    def put(name, value):
        assert name in allowed, name
        d[name] = value

    put("__version__", str(version))
    enums = {name: FakeEnum(trt, name, _pick(table, major)) for name, table in ENUMS.items()}
    for name, e in enums.items():
        put(name, e)
    DT = enums["DataType"]
    Mode = enums["TensorIOMode"]

    def record(name, *args, **kwargs):
        trt._fake_calls.append((name, args, kwargs))

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (EnumMember("Severity", n, i) for i, n in enumerate(
            ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"]))

        def __init__(self, min_severity=None):
            record("Logger", min_severity)
            self.min_severity = min_severity

    put("Logger", Logger)

    def nptype(dtype):
        return _NP[dtype.name]

    put("nptype", nptype)
    put("volume", lambda shape: int(np.prod(list(shape))))

    # calibrators (8.6 / 10.x): real Python base classes, subclassed by user code
    if "IInt8Calibrator" in allowed:
        class IInt8Calibrator:
            def __init__(self):
                record("IInt8Calibrator.__init__", type(self).__name__)

        put("IInt8Calibrator", IInt8Calibrator)
        for name in ("IInt8EntropyCalibrator2", "IInt8EntropyCalibrator", "IInt8MinMaxCalibrator",
                     "IInt8LegacyCalibrator"):
            put(name, type(name, (IInt8Calibrator,), {}))

    class HostMemory(Strict):
        API_NAME = "IHostMemory"

        def __init__(self, data: bytes):
            super().__init__(trt)
            object.__setattr__(self, "_data", bytes(data))
            object.__setattr__(self, "nbytes", len(data))
            object.__setattr__(self, "dtype", DT.UINT8)

        def __bytes__(self):
            return self._data

    class Tensor(Strict):
        API_NAME = "ITensor"

        def __init__(self, name, shape, dtype):
            super().__init__(trt)
            for k, v in (("name", name), ("shape", tuple(shape)), ("dtype", dtype)):
                object.__setattr__(self, k, v)

    class Network(Strict):
        API_NAME = "INetworkDefinition"

        def __init__(self, flags: int):
            super().__init__(trt)
            object.__setattr__(self, "flags", flags)
            object.__setattr__(self, "_inputs", [])
            object.__setattr__(self, "_outputs", [])
            object.__setattr__(self, "_nodes", [])
            object.__setattr__(self, "_layers", [])
            object.__setattr__(self, "_plugins", [])
            object.__setattr__(self, "_onnx", None)
            object.__setattr__(self, "name", "")

        def _flag(self, name) -> bool:
            e = enums["NetworkDefinitionCreationFlag"]
            return name in e._members and bool(self.flags & (1 << int(e._members[name])))

        @property
        def num_inputs(self):
            return len(self._inputs)

        def get_input(self, i):
            return self._inputs[i]

        @property
        def num_outputs(self):
            return len(self._outputs)

        def get_output(self, i):
            return self._outputs[i]

        @property
        def num_layers(self):
            return len(self._layers)

        def get_layer(self, i):
            return self._layers[i]

        @property
        def _strong(self) -> bool:
            return major >= 11 or self._flag("STRONGLY_TYPED")

    class Layer(Strict):
        API_NAME = "ILayer"

        def __init__(self, name, op, inputs, outputs):
            super().__init__(trt)
            object.__setattr__(self, "name", name)
            object.__setattr__(self, "_op", op)
            object.__setattr__(self, "type", getattr(enums["LayerType"], _OP_LAYER.get(op, "PLUGIN_V2")))
            object.__setattr__(self, "_in", inputs)
            object.__setattr__(self, "_out", outputs)
            object.__setattr__(self, "_precision", None)
            object.__setattr__(self, "_out_types", {})

        @property
        def num_inputs(self):
            return len(self._in)

        @property
        def num_outputs(self):
            return len(self._out)

        def get_input(self, i):
            return self._in[i]

        def get_output(self, i):
            return self._out[i]

        @property
        def precision(self):
            return self._precision or DT.FLOAT

        @precision.setter
        def precision(self, dtype):
            object.__setattr__(self, "_precision", dtype)

        @property
        def precision_is_set(self):
            return self._precision is not None

        def set_output_type(self, index, dtype):
            self._out_types[int(index)] = dtype

        def get_output_type(self, index):
            return self._out_types.get(int(index), self._out[index].dtype)

    class PluginCreator(Strict):
        """EfficientNMS_TRT's creator: like EfficientNMSPluginCreator::createPlugin (NVIDIA/TensorRT v10.3.0
        plugin/efficientNMSPlugin/efficientNMSPlugin.cpp) it validates each field it is given and writes it
        into a member ``mParam`` kept between calls, so a field not given keeps the previous plugin's value."""

        API_NAME = "IPluginCreator"

        def __init__(self):
            super().__init__(trt)
            object.__setattr__(self, "name", "EfficientNMS_TRT")
            object.__setattr__(self, "plugin_version", "1")
            object.__setattr__(self, "plugin_namespace", "")
            object.__setattr__(self, "_param", {"score_threshold": 0.0, "iou_threshold": 0.0, "max_output_boxes": 0,
                                                "background_class": -1, "score_activation": 0, "class_agnostic": 0,
                                                "box_coding": 0})

        def create_plugin(self, name, fields: dict):
            p = self._param
            valid = {"score_threshold": lambda v: v >= 0, "iou_threshold": lambda v: v > 0,
                     "max_output_boxes": lambda v: v > 0, "background_class": lambda v: True,
                     "score_activation": lambda v: v in (0, 1), "class_agnostic": lambda v: v in (0, 1),
                     "box_coding": lambda v: v in (0, 1)}
            for k, v in fields.items():
                if k in valid:
                    if not valid[k](v):
                        trt._fake_log("ERROR", f"EfficientNMSPluginCreator: PLUGIN_VALIDATE failed for {k} = {v}")
                        return None
                    p[k] = v
            return dict(p)

    class PluginRegistry(Strict):
        API_NAME = "IPluginRegistry"

        @property
        def plugin_creator_list(self):
            return [trt._fake_creator] if trt._fake_plugins_loaded else []

        def get_plugin_creator(self, type, version, plugin_namespace=""):  # noqa: A002 - TensorRT's names
            if trt._fake_plugins_loaded and type == "EfficientNMS_TRT" and str(version) == "1":
                return trt._fake_creator
            return None

    d["_fake_plugins_loaded"] = False
    d["_fake_creator"] = PluginCreator()
    registry = PluginRegistry(trt)

    def init_libnvinfer_plugins(logger, namespace):
        record("init_libnvinfer_plugins", logger, namespace)
        d["_fake_plugins_loaded"] = True
        return True

    put("init_libnvinfer_plugins", init_libnvinfer_plugins)
    put("get_plugin_registry", lambda: registry)

    class ParserError(Strict):
        API_NAME = "ParserError"

        def __init__(self, desc, node):
            super().__init__(trt)
            object.__setattr__(self, "_desc", desc)
            object.__setattr__(self, "_node", node)

        def desc(self):
            return self._desc

        def node(self):
            return self._node

        def code(self):
            return "UNSUPPORTED_NODE"

        def __str__(self):
            return f"In node {self._node}: {self._desc}"

    class OnnxParser(Strict):
        API_NAME = "OnnxParser"

        def __init__(self, network, logger):
            super().__init__(trt)
            record("OnnxParser", network, logger)
            object.__setattr__(self, "_network", network)
            object.__setattr__(self, "_errors", [])

        @property
        def num_errors(self):
            return len(self._errors)

        def get_error(self, i):
            return self._errors[i]

        def parse_from_file(self, path):
            net = self._network
            if major < 10 and not net._flag("EXPLICIT_BATCH"):
                self._errors.append(ParserError("the ONNX parser only supports explicit batch networks", -1))
                return False
            if parse_errors:
                self._errors.extend(ParserError(desc, node) for desc, node in parse_errors)
                return False
            import onnx
            from onnx import numpy_helper

            model = onnx.load(str(path))
            inits = {i.name for i in model.graph.initializer}
            consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
            consts.update({n.output[0]: numpy_helper.to_array(a.t) for n in model.graph.node
                           if n.op_type == "Constant" for a in n.attribute if a.name == "value"})
            try:
                typed = onnx.shape_inference.infer_shapes(model)
            except Exception:
                typed = model
            onnx_types = {vi.name: _ONNX_DTYPES.get(vi.type.tensor_type.elem_type)
                          for g in (typed.graph,) for vi in (*g.input, *g.output, *g.value_info)}
            onnx_types.update({i.name: _ONNX_DTYPES.get(i.data_type) for i in model.graph.initializer})
            table = json.loads(OPS_JSON.read_text())["versions"]["8.6" if major == 8 else "10"]
            opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
            lo, hi = table["opsets"]
            if not lo <= opset <= hi:
                self._errors.append(ParserError(f"Unsupported ONNX opset {opset} (TensorRT {trt.__version__}: "
                                                f"{lo}..{hi})", -1))
                return False
            word = {"FLOAT": "FP32", "HALF": "FP16", "INT32": "INT32", "INT64": "INT32" if major == 8 else "INT64",
                    "INT8": "INT8", "UINT8": "UINT8", "BOOL": "BOOL", "BF16": "BF16"}
            strong = net._strong
            types = dict(onnx_types)
            for idx, n in enumerate(model.graph.node):
                row = table["operators"].get(n.op_type) if n.domain in ("", "ai.onnx") else None
                if row is None:
                    if major == 8:  # the 8.6 parser calls initLibNvInferPlugins itself (ModelImporter.cpp)
                        d["_fake_plugins_loaded"] = True
                    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
                    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
                    creator = registry.get_plugin_creator(n.op_type, str(attrs.get("plugin_version", "1")), "")
                    if creator is None:
                        self._errors.append(ParserError(PLUGIN_NOT_FOUND, idx))
                        return False
                    params = creator.create_plugin(n.name, {k: v for k, v in attrs.items() if k != "plugin_version"})
                    if params is None:
                        self._errors.append(ParserError(f"could not create plugin {n.op_type}", idx))
                        return False
                    net._plugins.append({"node": n.name, "op": n.op_type, "inputs": list(n.input),
                                         "outputs": list(n.output), "params": params})
                    continue
                if not row["supported"]:
                    self._errors.append(ParserError(f"No importer registered for op: {n.op_type}", idx))
                    return False
                name = {"Where": 1}.get(n.op_type, 0)
                check = n.output[0] if n.op_type == "ConstantOfShape" else (n.input[name] if len(n.input) > name else "")
                t = word.get(onnx_types.get(check) or "", None)
                if t and row["types"] and t not in row["types"]:
                    self._errors.append(ParserError(f"{n.op_type}: unsupported data type {t} of '{check}' "
                                                    f"(supported: {', '.join(row['types'])})", idx))
                    return False
                if n.op_type == "TopK":
                    k = consts.get(n.input[1]) if len(n.input) > 1 else None
                    if k is None or int(np.asarray(k).reshape(-1)[0]) > TOPK_LIMIT[major]:
                        self._errors.append(ParserError(f"TopK: K must be a constant <= {TOPK_LIMIT[major]}", idx))
                        return False
                if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
                    zp = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
                    if zp is not None and np.any(zp != 0):
                        self._errors.append(ParserError("zero point must be zero", idx))
                        return False
                if n.op_type == "DequantizeLinear" and strong:
                    # IDequantizeLayer: "For strongly typed networks, output data type is inferred from scale
                    # data type" (NvInfer.h v10.3.0)
                    types[n.output[0]] = onnx_types.get(n.input[1], "FLOAT")

            def tensor(vi):
                dt = _ONNX_DTYPES.get(vi.type.tensor_type.elem_type, "FLOAT")
                if dt == "INT64" and major < 10:
                    dt = "INT32"  # 8.6 has no INT64 tensors
                shape = [x.dim_value if x.HasField("dim_value") and x.dim_value > 0 else -1
                         for x in vi.type.tensor_type.shape.dim]
                return Tensor(vi.name, shape, getattr(DT, dt))

            def dtype_of(name):
                dt = types.get(name) or "FLOAT"
                return getattr(DT, "INT32" if dt == "INT64" and major < 10 else dt)

            net._inputs.extend(tensor(i) for i in model.graph.input if i.name not in inits)
            net._outputs.extend(tensor(o) for o in model.graph.output)
            net._nodes.extend((n.name or n.op_type, n.op_type, list(n.input), list(n.output)) for n in model.graph.node)
            net._layers.extend(Layer(n.name or n.op_type, n.op_type, [Tensor(i, [], dtype_of(i)) for i in n.input if i],
                                     [Tensor(o, [], dtype_of(o)) for o in n.output]) for n in model.graph.node)
            object.__setattr__(net, "_types", {k: v for k, v in types.items() if v})
            object.__setattr__(net, "_onnx", str(Path(path).resolve()))
            return True

        def parse(self, model, path=None):
            raise NotImplementedError("fake tensorrt: use parse_from_file")

    put("OnnxParser", OnnxParser)

    class Profile(Strict):
        API_NAME = "IOptimizationProfile"

        def __init__(self):
            super().__init__(trt)
            object.__setattr__(self, "_shapes", {})

        def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's parameter names
            mn, op, mx = (tuple(int(x) for x in s) for s in (min, opt, max))
            if not all(a <= b <= c for a, b, c in zip(mn, op, mx)):
                raise ValueError(f"fake tensorrt: profile for {name} must satisfy min <= opt <= max")
            self._shapes[name] = (mn, op, mx)

        def get_shape(self, name):
            return list(self._shapes[name])

    class TimingCache(Strict):
        API_NAME = "ITimingCache"

        def __init__(self, data: bytes):
            super().__init__(trt)
            object.__setattr__(self, "_entries", [ln for ln in bytes(data).decode().splitlines()[1:] if ln])

        def serialize(self):
            text = "\n".join([f"FAKE-TIMING-CACHE {trt.__version__}", *self._entries]) + "\n"
            return HostMemory(text.encode())

        def combine(self, other, ignore_mismatch):
            self._entries.extend(other._entries)
            return True

        def reset(self):
            self._entries.clear()
            return True

    class BuilderConfig(Strict):
        API_NAME = "IBuilderConfig"

        def __init__(self):
            super().__init__(trt)
            object.__setattr__(self, "_flags", {"TF32"})  # TF32 is on by default
            object.__setattr__(self, "_profiles", [])
            object.__setattr__(self, "_pools", {})
            object.__setattr__(self, "_timing_cache", None)
            for k, v in (("profiling_verbosity", enums["ProfilingVerbosity"].LAYER_NAMES_ONLY),
                         ("default_device_type", enums["DeviceType"].GPU), ("DLA_core", -1),
                         ("builder_optimization_level", 3)):
                object.__setattr__(self, k, v)
            if "int8_calibrator" in _pick(API["IBuilderConfig"], major):
                object.__setattr__(self, "int8_calibrator", None)
                object.__setattr__(self, "_calibration_profile", None)

        def set_flag(self, flag):
            self._flags.add(flag.name)

        def clear_flag(self, flag):
            self._flags.discard(flag.name)

        def get_flag(self, flag):
            return flag.name in self._flags

        def set_memory_pool_limit(self, pool, size):
            self._pools[pool.name] = int(size)

        def get_memory_pool_limit(self, pool):
            return self._pools.get(pool.name, 1 << 34)

        def add_optimization_profile(self, profile):
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def set_calibration_profile(self, profile):
            object.__setattr__(self, "_calibration_profile", profile)
            return True

        def create_timing_cache(self, data):
            data = bytes(data or b"")
            if data and not data.startswith(f"FAKE-TIMING-CACHE {trt.__version__}\n".encode()):
                # createTimingCache returns nullptr (None in Python) for a blob it cannot read
                trt._fake_log("ERROR", "createTimingCache: the timing cache was made by another TensorRT or GPU")
                return None
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache is None:  # pybind11: an `ITimingCache const&` parameter does not take None
                raise TypeError("set_timing_cache(): incompatible function arguments (cache: tensorrt.ITimingCache)")
            object.__setattr__(self, "_timing_cache", cache)
            return True

        def get_timing_cache(self):
            return self._timing_cache

    class Builder(Strict):
        API_NAME = "Builder"

        def __init__(self, logger):
            super().__init__(trt)
            record("Builder", logger)
            object.__setattr__(self, "num_DLA_cores", dla_cores if has_dla(trt.__version__) else 0)
            if "platform_has_fast_fp16" in _pick(API["Builder"], major):
                object.__setattr__(self, "platform_has_fast_fp16", True)

        def create_network(self, flags=0):
            return Network(int(flags))

        def create_builder_config(self):
            return BuilderConfig()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            fail = self._problems(network, config)
            if fail:
                trt._fake_log("ERROR", fail)
                return None
            qdq = {n[0] for n in network._nodes if n[1] in ("QuantizeLinear", "DequantizeLinear")}
            if config._timing_cache is not None:
                config._timing_cache._entries.append(f"timings for {Path(network._onnx).name}")
            profile = config._profiles[0]._shapes if config._profiles else {}

            def io(t):
                return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype.name}

            blob = {"fake_engine": 1, "tensorrt": trt.__version__, "onnx": network._onnx,
                    "inputs": [io(t) for t in network._inputs], "outputs": [io(t) for t in network._outputs],
                    "profile": {k: [list(x) for x in v] for k, v in profile.items()},
                    "network_flags": [n for n in enums["NetworkDefinitionCreationFlag"]._members if network._flag(n)],
                    "builder_flags": sorted(config._flags), "qdq": bool(qdq),
                    "device": config.default_device_type.name, "layers": network._nodes,
                    "plugins": network._plugins, "types": network._types,
                    "pinned": [l.name for l in network._layers if l.precision_is_set and l._precision == DT.FLOAT]}
            if blob["device"] == "DLA":
                # a strongly typed network carries no FP16/INT8 builder flags, which DLA needs: its layers
                # fall back to the GPU (with GPU_FALLBACK) without an error
                dla_ok = not network._strong or major >= 11
                blob["dla_layers"] = sum(op == "Conv" for _, op, _, _ in network._nodes) if dla_ok else 0
                if not dla_ok:
                    trt._fake_log("WARNING", "DLA: no layer runs on DLA without FP16/INT8 builder flags")
            return HostMemory(json.dumps(blob).encode())

        def _problems(self, network, config) -> str | None:
            if network._onnx is None:
                return "empty network"
            precision = {"FP16", "INT8", "BF16", "FP8"} & config._flags
            if network._flag("STRONGLY_TYPED") and precision:
                return f"BuilderFlag {sorted(precision)} is not allowed for a strongly typed network"
            shapes = config._profiles[0]._shapes if config._profiles else {}
            for t in network._inputs:
                if any(int(x) < 0 for x in t.shape) and t.name not in shapes:
                    return (f"Network has dynamic or shape inputs, but no optimization profile has been defined "
                            f"({t.name})")
            cal = getattr(config, "int8_calibrator", None) if "int8_calibrator" in _pick(
                API["IBuilderConfig"], major) else None
            if cal is not None:
                if "INT8" not in config._flags:
                    return "a calibrator is set but BuilderFlag.INT8 is not"
                if not cal.read_calibration_cache():
                    if cal.get_batch(["images"]) is None:
                        return "calibration failure: no cache and no batches"
            return None

    put("Builder", Builder)

    class Inspector(Strict):
        API_NAME = "EngineInspector"

        def __init__(self, engine):
            super().__init__(trt)
            object.__setattr__(self, "_engine", engine)
            object.__setattr__(self, "execution_context", None)

        def _context(self):
            return object.__getattribute__(self, "execution_context")

        def get_engine_information(self, fmt):
            assert fmt == enums["LayerInformationFormat"].JSON
            return json.dumps(self._engine._layer_info(self._context()))

    class Context(Strict):
        API_NAME = "IExecutionContext"

        def __init__(self, engine):
            super().__init__(trt)
            object.__setattr__(self, "engine", engine)
            object.__setattr__(self, "_shapes", {})
            object.__setattr__(self, "_addresses", {})

        def set_input_shape(self, name, shape):
            shape = tuple(int(x) for x in shape)
            prof = self.engine._profile.get(name)
            if prof and not all(lo <= s <= hi for lo, s, hi in zip(prof[0], shape, prof[2])):
                trt._fake_log("ERROR", f"shape {shape} of {name} outside the profile {prof[0]}..{prof[2]}")
                return False
            self._shapes[name] = shape
            return True

        def get_tensor_shape(self, name):
            t = self.engine._tensor(name)
            if t["mode"] == "INPUT":
                return self._shapes.get(name, tuple(t["shape"]))
            batch = next(iter(self._shapes.values()), (1,))[0]
            shape = [batch if (i == 0 and s < 0) else s for i, s in enumerate(t["shape"])]
            if any(s < 0 for s in shape):
                zeros = {n: np.zeros(s, _NP[self.engine._tensor(n)["dtype"]]) for n, s in self._shapes.items()}
                shape = list(self.engine._compute(zeros)[name].shape)
            return tuple(shape)

        def set_tensor_address(self, name, ptr):
            self.engine._tensor(name)
            self._addresses[name] = int(ptr)
            return True

        def get_tensor_address(self, name):
            return self._addresses[name]

        def execute_async_v3(self, stream_handle):
            eng = self.engine
            missing = [t["name"] for t in eng._io if t["name"] not in self._addresses]
            unset = [t["name"] for t in eng._io if t["mode"] == "INPUT" and t["name"] not in self._shapes
                     and any(s < 0 for s in t["shape"])]
            if missing or unset:
                trt._fake_log("ERROR", f"execute_async_v3: addresses missing {missing}, shapes unset {unset}")
                return False
            cuda = trt._fake_cuda
            shapes = {t["name"]: self.get_tensor_shape(t["name"]) for t in eng._io}

            def run():
                feeds = {t["name"]: cuda.view(self._addresses[t["name"]], shapes[t["name"]], _NP[t["dtype"]]).copy()
                         for t in eng._io if t["mode"] == "INPUT"}
                outs = eng._compute(feeds)
                for t in eng._io:
                    if t["mode"] == "OUTPUT":
                        dst = cuda.view(self._addresses[t["name"]], shapes[t["name"]], _NP[t["dtype"]])
                        dst[...] = np.asarray(outs[t["name"]]).astype(_NP[t["dtype"]]).reshape(dst.shape)
            cuda.enqueue(int(stream_handle), ("execute", int(stream_handle)), run)
            return True

    class Engine(Strict):
        API_NAME = "ICudaEngine"

        def __init__(self, blob: dict):
            super().__init__(trt)
            io = [{**t, "mode": "INPUT"} for t in blob["inputs"]] + [{**t, "mode": "OUTPUT"} for t in blob["outputs"]]
            object.__setattr__(self, "_blob", blob)
            object.__setattr__(self, "_io", io)
            object.__setattr__(self, "_profile", {k: [tuple(x) for x in v] for k, v in blob["profile"].items()})
            object.__setattr__(self, "_session", None)

        def _tensor(self, name):
            for t in self._io:
                if t["name"] == name:
                    return t
            raise KeyError(f"fake tensorrt: no tensor {name!r}")

        def _compute(self, feeds):
            if self._blob.get("compute"):
                return COMPUTES[self._blob["compute"]](feeds)
            plugins = self._blob.get("plugins") or []
            if self._session is None:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.log_severity_level = 3
                opts.intra_op_num_threads = 1
                model = device_graph(self._blob["onnx"], plugins)
                object.__setattr__(self, "_session", ort.InferenceSession(model.SerializeToString(), opts,
                                                                          providers=["CPUExecutionProvider"]))
            if plugins:  # the graph up to the plugin in ONNX Runtime, the plugin as its numpy model
                from yolo_edge.export.nms import efficient_nms_reference

                p = plugins[0]
                b, sc = self._session.run(p["inputs"][:2], feeds)
                q = p["params"]
                outs = efficient_nms_reference(b, sc, q["score_threshold"], q["iou_threshold"], q["max_output_boxes"],
                                               bool(q["class_agnostic"]), q["background_class"],
                                               num_selected_boxes=INMS_TOPK)
                return dict(zip(p["outputs"], outs))
            names = [t["name"] for t in self._io if t["mode"] == "OUTPUT"]
            return dict(zip(names, self._session.run(names, feeds)))

        @property
        def num_io_tensors(self):
            return len(self._io)

        @property
        def num_layers(self):
            return len(self._blob["layers"])

        def get_tensor_name(self, i):
            return self._io[i]["name"]

        def get_tensor_mode(self, name):
            return getattr(Mode, self._tensor(name)["mode"])

        def get_tensor_shape(self, name):
            return tuple(self._tensor(name)["shape"])

        def get_tensor_dtype(self, name):
            return getattr(DT, self._tensor(name)["dtype"])

        def get_tensor_profile_shape(self, name, profile_index):
            assert profile_index == 0
            return [tuple(x) for x in self._profile[name]]

        def create_execution_context(self):
            return Context(self)

        def create_engine_inspector(self):
            return Inspector(self)

        def _layer_info(self, context) -> dict:
            """Inspector JSON (DETAILED) from the ONNX nodes: INT8 for a Conv fed by Q/DQ, FP16 where
            the FP16 flag or an FP16 graph allows it, FP32 elsewhere."""
            blob = self._blob
            dynamic = any(any(s < 0 for s in t["shape"]) for t in self._io if t["mode"] == "INPUT")
            known = context is not None and all(t["name"] in context._shapes for t in self._io if t["mode"] == "INPUT")
            int8_ok = blob.get("qdq") and ("INT8" in blob["builder_flags"] or "STRONGLY_TYPED" in blob["network_flags"]
                                           or major >= 11)
            fp16 = "FP16" in blob["builder_flags"]  # weak typing: FP16 allowed everywhere not pinned
            obey = "OBEY_PRECISION_CONSTRAINTS" in blob["builder_flags"]
            pinned = set(blob.get("pinned", [])) if obey else set()
            types = blob.get("types", {})
            producers = {o: op for _, op, _, outs in blob["layers"] for o in outs}
            layers = []
            for name, op, ins, outs in blob["layers"]:
                if op in ("QuantizeLinear", "DequantizeLinear", "Constant"):
                    continue
                out_t = types.get(outs[0]) if outs else None
                if op == "Conv" and int8_ok and producers.get(ins[0]) == "DequantizeLinear":
                    fmt, dt, tf = "Thirty-two wide channel vectorized row major Int8 format", "Int8", "kCHW32"
                elif op == "Conv" and fp16 and name not in pinned:
                    fmt, dt, tf = "Channel major FP16 format where channel % 8 == 0", "Half", "kHWC8"
                elif out_t == "HALF" or (fp16 and out_t == "FLOAT" and name not in pinned):
                    fmt, dt, tf = "Row major linear FP16 format", "Half", "kLINEAR"
                else:
                    fmt, dt, tf = "Row major linear FP32 format", "Float", "kLINEAR"
                if dynamic and not known:
                    fmt = dt = tf = "N/A due to dynamic shapes"

                def tensor(n):
                    if major >= 11:
                        return {"Name": n, "Location": "Device", "Dimensions": [], "DataType": dt,
                                "Format": fmt if fmt.startswith("N/A") else f"{fmt} ({tf})"}
                    return {"Name": n, "Location": "Device", "Dimensions": [], "Format/Datatype": fmt}
                layers.append({"Name": name, "LayerType": _LAYER_TYPES.get(op, "PointWiseV2"),
                               "Inputs": [tensor(n) for n in ins[:1]], "Outputs": [tensor(n) for n in outs[:1]],
                               "TacticValue": "0x0000000000000000"})
            info = {"Layers": layers}
            if major >= 11:
                info["I/O Tensors"] = [{"Name": t["name"], "IOMode": t["mode"].title(), "DataType": "Float"}
                                       for t in self._io]
            else:
                info["Bindings"] = [t["name"] for t in self._io]
            return info

    class Runtime(Strict):
        API_NAME = "Runtime"

        def __init__(self, logger):
            super().__init__(trt)
            record("Runtime", logger)

        def deserialize_cuda_engine(self, data):
            try:
                blob = json.loads(bytes(data).decode())
            except (UnicodeDecodeError, ValueError):
                trt._fake_log("ERROR", "deserialize_cuda_engine: not an engine")
                return None
            if blob.get("tensorrt") != trt.__version__:
                trt._fake_log("ERROR", f"engine built by TensorRT {blob.get('tensorrt')}, this is {trt.__version__}")
                return None
            for p in blob.get("plugins", []):
                if registry.get_plugin_creator(p["op"], "1", "") is None:
                    trt._fake_log("ERROR", f"IPluginRegistry::getCreator: Cannot find plugin: {p['op']}, version: 1")
                    return None
            return Engine(blob)

    put("Runtime", Runtime)
    return trt
