"""TensorRT runner: a serialized engine, checked against its manifest, run with the tensor-address
API (TensorRT 8.5+, 10.x, 11.x): ``set_input_shape`` -> ``set_tensor_address`` -> async H2D copies ->
``execute_async_v3(stream)`` -> async D2H copies -> synchronize.

Host buffers are pinned and device buffers allocated once, at the largest shapes of the engine's
optimization profile, when the runner is activated; a batch larger than the profile allows is run
in chunks. Device memory and streams come from :mod:`yolo_edge.trt.cuda` (cuda-python or pycuda);
TensorRT itself from :mod:`yolo_edge.trt` (this module imports neither).

    with TrtRunner("model.int8.engine") as r:
        out = r.infer({"images": batch})    # {"num_dets": ..., "det_boxes": ..., ...}

Loading refuses an engine whose manifest does not fit this machine (another TensorRT, GPU, CUDA
major, L4T) or whose files changed (DESIGN §4); ``check_manifest=False`` or the environment
variable ``YOLO_EDGE_NO_MANIFEST_CHECK=1`` loads it anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import YoloEdgeError
from ..spec import LetterboxSpec, ModelSpec, NmsSpec
from .base import NMS_OUTPUTS, Runner, TensorInfo


def _spec_without_manifest(ios) -> ModelSpec:
    """What can be told from the engine alone: input size and whether NMS is embedded."""
    inp = next(t for t in ios if t.is_input)
    h, w = (int(d) for d in inp.shape[-2:]) if all(int(d) > 0 for d in inp.shape[-2:]) else (640, 640)
    names = {t.name for t in ios if not t.is_input}
    nms = NmsSpec("onnx") if set(NMS_OUTPUTS) <= names else NmsSpec("none")
    return ModelSpec(letterbox=LetterboxSpec(size=(h, w)), nms=nms)


class TrtRunner(Runner):
    name = "tensorrt"

    def __init__(self, engine_path, check_manifest: bool | None = None, cuda=None, device: int = 0, trt=None,
                 env: dict | None = None, verbose: bool = False):
        """
        Args:
            engine_path: the ``.engine`` written by ``yolo-edge build`` (its manifest next to it).
            check_manifest: refuse an engine that does not fit (default: True unless
                ``YOLO_EDGE_NO_MANIFEST_CHECK=1``). Without a manifest the class names are unknown.
            cuda: ``"cuda-python"``, ``"pycuda"``, a :class:`~yolo_edge.trt.cuda.CudaBackend`, or None
                for the installed one.
            trt, env: the ``tensorrt`` module and the environment to check against (tests).
        """
        from ..trt.cuda import get_backend
        from ..trt.engine import io_tensors, load_engine
        from ..trt.manifest import checks_disabled, current_environment, read_manifest, verify

        self.path = Path(engine_path)
        if not self.path.is_file():
            raise YoloEdgeError(f"engine not found: {self.path}")
        check = (not checks_disabled()) if check_manifest is None else bool(check_manifest)
        manifest = read_manifest(self.path)
        self.cuda = get_backend(cuda, device)
        try:
            if check:
                manifest = verify(self.path, env if env is not None else current_environment(trt, self.cuda), manifest)
            with self.cuda.scope():
                self.trt, self.runtime, self.engine = load_engine(self.path, trt, verbose)
        except BaseException:
            if cuda is None or isinstance(cuda, str):  # ours to release
                self.cuda.close()
            raise
        self.io = io_tensors(self.engine, self.trt)
        self.manifest = manifest
        spec = (ModelSpec.from_dict(manifest["spec"]) if manifest and manifest.get("spec")
                else _spec_without_manifest(self.io))
        inputs = [TensorInfo(t.name, tuple(d if d > 0 else None for d in t.shape), t.dtype)
                  for t in self.io if t.is_input]
        super().__init__(spec, inputs, [t.name for t in self.io if not t.is_input])
        first = next(t for t in self.io if t.is_input)
        self.batch_range = ((first.profile[0][0], first.profile[2][0]) if first.profile
                            else (first.shape[0], first.shape[0]))
        self.context = self.stream = None
        self._buffers: dict[str, tuple] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def activate(self) -> None:
        if self.is_active:
            return
        with self.cuda.scope():
            ctx = self.engine.create_execution_context()
            if ctx is None:
                raise YoloEdgeError(f"TensorRT could not create an execution context for {self.path} "
                                    "(out of GPU memory?)")
            self.context = ctx
            self.stream = self.cuda.stream()
            for t in self.io:  # largest shapes the profile allows
                if t.is_input:
                    ctx.set_input_shape(t.name, t.profile[2] if t.profile else t.shape)
            for t in self.io:
                shape = tuple(int(d) for d in ctx.get_tensor_shape(t.name))
                if any(d < 0 for d in shape):
                    raise YoloEdgeError(f"output '{t.name}' of {self.path} has a data-dependent shape {shape}; "
                                        "export with NMS padded to max_det (yolo-edge export --nms onnx|trt)")
                host = self.cuda.host_empty(shape, t.dtype)
                dev = self.cuda.device_alloc(host.nbytes)
                self._buffers[t.name] = (host, dev)
                ctx.set_tensor_address(t.name, dev.ptr)
        super().activate()

    def deactivate(self) -> None:
        if self._buffers or self.context is not None:
            with self.cuda.scope():
                for host, dev in self._buffers.values():
                    self.cuda.free(dev)
                    self.cuda.free_host(host)
                if self.stream is not None:
                    self.cuda.free_stream(self.stream)
        self._buffers = {}
        self.context = self.stream = None
        super().deactivate()

    def close(self) -> None:
        """Deactivate and release the CUDA backend."""
        self.deactivate()
        self.cuda.close()

    # -- inference -------------------------------------------------------------------------
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = next(iter(feeds.values())).shape[0]
        lo, hi = self.batch_range
        if n < lo:
            raise YoloEdgeError(f"{self.name}: batch {n} is below the engine's minimum {lo}; rebuild with --min-batch {n}")
        if n > hi:  # run in chunks the profile allows
            if n % hi and n % hi < lo:
                raise YoloEdgeError(f"{self.name}: the last chunk of {n % hi} is below the engine's minimum batch {lo}")
            parts = [self._run({k: v[i:i + hi] for k, v in feeds.items()}) for i in range(0, n, hi)]
            return {k: np.concatenate([p[k] for p in parts]) for k in self.output_names}
        return self._run(feeds)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ctx, cuda, stream = self.context, self.cuda, self.stream
        with cuda.scope():
            for name, arr in feeds.items():
                ctx.set_input_shape(name, tuple(arr.shape))
            views = {}
            for name, arr in feeds.items():
                host, dev = self._buffers[name]
                view = host.reshape(-1)[:arr.size].reshape(arr.shape)
                np.copyto(view, arr)
                cuda.htod_async(dev, view, stream)
            for name, (host, dev) in self._buffers.items():
                ctx.set_tensor_address(name, dev.ptr)
            for name in self.output_names:
                shape = tuple(int(d) for d in ctx.get_tensor_shape(name))
                views[name] = self._buffers[name][0].reshape(-1)[:int(np.prod(shape))].reshape(shape)
            if not ctx.execute_async_v3(stream.handle):
                raise YoloEdgeError(f"{self.name}: execute_async_v3 failed for {self.path} (see the TensorRT log)")
            for name in self.output_names:
                cuda.dtoh_async(views[name], self._buffers[name][1], stream)
            cuda.synchronize(stream)
        return {name: views[name].copy() for name in self.output_names}
