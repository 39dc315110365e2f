"""ONNX Runtime runner: CPU, CUDA and TensorRT execution providers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..deps import require
from ..errors import ModelFormatError, YoloEdgeError
from ..spec import METADATA_KEY, ModelSpec
from .base import Runner, TensorInfo

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int32)": np.int32,
               "tensor(int64)": np.int64, "tensor(uint8)": np.uint8}
PROVIDERS = {"cpu": ["CPUExecutionProvider"],
             "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
             "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}


def read_spec(model_path) -> ModelSpec:
    """The ``yolo_edge`` metadata of an exported ONNX file (reads only the model header)."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    return _spec_of(sess, model_path)


def _spec_of(sess, path) -> ModelSpec:
    meta = sess.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in meta:
        raise ModelFormatError(
            f"{path} has no '{METADATA_KEY}' metadata: export it with `yolo-edge export`, or adapt a third-party "
            "YOLO ONNX with `yolo-edge export --from-onnx MODEL --format yolov8|yolov5`"
        )
    return ModelSpec.from_json(meta[METADATA_KEY])


class OrtRunner(Runner):
    name = "onnxruntime"

    def __init__(self, model_path, providers: str | Sequence[str] = "cpu", threads: int | None = None,
                 spin: bool | None = None):
        """Args:
            providers: ``cpu`` | ``cuda`` | ``tensorrt`` or a list of execution provider names.
            threads: intra-op threads (default: ONNX Runtime's, one per core).
            spin: let idle worker threads busy-wait (ONNX Runtime's default). ``None`` follows
                ``OMP_WAIT_POLICY``: ``PASSIVE`` turns spinning off, which matters when other
                threads share the cores (the stream pipeline's capture and render, other processes).
        """
        self.ort = require("onnxruntime")
        self.spin = spin if spin is not None else os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"
        self.path = Path(model_path)
        if not self.path.exists():
            raise YoloEdgeError(f"model not found: {self.path}")
        if isinstance(providers, str):
            if providers not in PROVIDERS:
                raise YoloEdgeError(f"unknown execution provider '{providers}'; choose from {sorted(PROVIDERS)}")
            providers = PROVIDERS[providers]
        available = set(self.ort.get_available_providers())
        missing = [p for p in providers if p not in available]
        if missing and missing[0] == providers[0]:
            raise YoloEdgeError(f"{missing[0]} is not available in this onnxruntime build "
                                f"(available: {sorted(available)}); install onnxruntime-gpu: pip install 'yolo-edge[gpu]'")
        self.providers = [p for p in providers if p in available]
        self.threads = threads
        self.session = self._make_session()
        spec = _spec_of(self.session, self.path)
        inputs = [TensorInfo(i.name, tuple(d if isinstance(d, int) else None for d in i.shape),
                             np.dtype(_ORT_DTYPES.get(i.type, np.float32))) for i in self.session.get_inputs()]
        super().__init__(spec, inputs, [o.name for o in self.session.get_outputs()])

    def _make_session(self):
        opts = self.ort.SessionOptions()
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = self.threads
        if not self.spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return self.ort.InferenceSession(str(self.path), opts, providers=self.providers)
        except Exception as e:  # onnxruntime raises its own exception types
            if "EfficientNMS_TRT" in str(e):
                raise ModelFormatError(f"{self.path} has NMS as a TensorRT plugin (EfficientNMS_TRT), which only "
                                       "TensorRT runs; build an engine (yolo-edge build) or re-export with "
                                       "--nms onnx") from e
            raise ModelFormatError(f"onnxruntime cannot load {self.path}: {e}") from e

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(self.output_names, dict(feeds))
        return dict(zip(self.output_names, outs))
