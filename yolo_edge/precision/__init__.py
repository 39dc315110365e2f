"""FP16 and INT8 ONNX from the FP32 export: calibration, Q/DQ, per-layer report, sensitivity, TensorRT cache.

Precision lives in the ONNX graph (DESIGN §1): ``model.fp16.onnx`` (FP16 with FP32 I/O and a
keep-FP32 list) and ``model.int8.onnx`` (explicit symmetric Q/DQ) build the same engine precision
on TensorRT 8.6, 10 and 11, and ONNX Runtime on a CPU runs them to check accuracy.

    from yolo_edge.precision import PrecisionConfig, run_precision
    result = run_precision("runs/export/model.onnx", PrecisionConfig(out_dir="runs/export"))
    print(result.table())

Importing this package needs numpy only; onnx and onnxruntime are imported when used.
"""

from .cache import CacheKey, StaleCacheError, check_cache, format_trt_cache, parse_trt_cache, trt_version_tag, write_cache
from .calibration import (DEFAULT_METHOD, METHODS, CalibrationReader, CalibrationStats, ImageSet, TensorStats,
                          check_disjoint, collect_stats, data_hash, image_hash)
from .amax import entropy_amax, mse_amax
from .fp16 import FP16_MAX, Fp16Result, convert_fp16, overflow_tensors
from .graph import DecodeTail, find_decode_tail, strip_nms
from .int8 import Int8Config, fake_quant, qdq_layers, quantize_qdq
from .pipeline import BUDGET_EXIT_CODE, PrecisionConfig, PrecisionResult, export_and_run, run_precision
from .report import measure_sqnr, sqnr_db, write_report
from .sensitivity import exclude_until_within_budget, layer_sensitivity, output_error

__all__ = [
    "BUDGET_EXIT_CODE", "CacheKey", "CalibrationReader", "CalibrationStats", "DEFAULT_METHOD", "DecodeTail",
    "FP16_MAX", "Fp16Result", "ImageSet", "Int8Config", "METHODS", "PrecisionConfig", "PrecisionResult",
    "StaleCacheError", "TensorStats", "check_cache", "check_disjoint", "collect_stats", "convert_fp16", "data_hash",
    "entropy_amax", "exclude_until_within_budget", "export_and_run", "fake_quant", "find_decode_tail",
    "format_trt_cache", "image_hash", "layer_sensitivity", "measure_sqnr", "mse_amax", "output_error",
    "overflow_tensors", "parse_trt_cache", "qdq_layers", "quantize_qdq", "run_precision", "sqnr_db", "strip_nms",
    "trt_version_tag", "write_cache", "write_report",
]
