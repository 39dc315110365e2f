"""A small loopback server that speaks Triton's gRPC protocol, with ONNX Runtime behind it.

It is for development and tests, not production: it lets the Triton client path (``tritonclient``,
:class:`~yolo_edge.runtime.triton_runner.TritonRunner`) and a repository written by
``yolo-edge deploy triton`` be exercised without Docker or a GPU. It implements the parts of
``inference.GRPCInferenceService`` (``grpc_service.proto``, the generated stubs ``tritonclient``
ships as ``tritonclient.grpc.service_pb2_grpc``) that a client uses: ServerLive, ServerReady,
ServerMetadata, ModelReady, ModelMetadata, ModelConfig, RepositoryIndex and ModelInfer with raw
tensor contents. Each request runs as it comes (no dynamic batching across requests, no
sequence batching, no shared memory). ``onnxruntime_onnx`` models are loaded; anything else is
listed as UNAVAILABLE with the reason, as Triton does.

It binds 127.0.0.1 only and stops by itself after ``max_seconds``.

    with TritonLoopbackServer("repo/") as server:
        runner = load_runner(f"grpc://127.0.0.1:{server.port}/yolo11n")

    python -m yolo_edge.deploy.triton_server --repo repo/ --port 0 --max-seconds 600
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import numpy as np

from ..deps import require
from ..errors import YoloEdgeError
from .triton import parse_config

# KServe v2 datatype <-> numpy
DATATYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64,
             "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}
_NP_TO_DT = {np.dtype(v): k for k, v in DATATYPES.items()}
MAX_MESSAGE = 2**31 - 1  # tritonclient's MAX_GRPC_MESSAGE_SIZE


class _Model:
    def __init__(self, directory: Path, threads: int | None):
        self.name = directory.name
        self.version = ""
        self.session = None
        self.reason = ""
        try:
            self.config = parse_config((directory / "config.pbtxt").read_text())
        except (OSError, YoloEdgeError) as e:
            self.config, self.reason = None, f"bad config.pbtxt: {e}"
            return
        versions = sorted((int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit()))
        if not versions:
            self.reason = "no version directory"
            return
        self.version = str(versions[-1])
        if self.config.platform != "onnxruntime_onnx" and self.config.backend != "onnxruntime":
            self.reason = f"platform {self.config.platform or self.config.backend} is not served by the loopback server"
            return
        ort = require("onnxruntime")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        path = directory / self.version / (self.config.default_model_filename or "model.onnx")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types
            self.reason = f"onnxruntime cannot load {path.name}: {e}"

    @property
    def ready(self) -> bool:
        return self.session is not None


def _servicer_class():
    grpc = require("grpc")
    service_pb2_grpc = require("tritonclient.grpc.service_pb2_grpc")
    pb = require("tritonclient.grpc.service_pb2")

    class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
        def __init__(self, models: dict[str, _Model]):
            self.models = models

        def _model(self, request, context, ready=True) -> _Model:
            name = request.model_name if hasattr(request, "model_name") else request.name
            m = self.models.get(name)
            if m is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Request for unknown model: '{name}' is not found")
            if ready and not m.ready:
                context.abort(grpc.StatusCode.UNAVAILABLE,
                              f"Request for unknown model: '{name}' has no available versions ({m.reason})")
            return m

        def ServerLive(self, request, context):
            return pb.ServerLiveResponse(live=True)

        def ServerReady(self, request, context):
            return pb.ServerReadyResponse(ready=True)

        def ServerMetadata(self, request, context):
            return pb.ServerMetadataResponse(name="yolo-edge-loopback", version="0", extensions=[])

        def ModelReady(self, request, context):
            m = self.models.get(request.name)
            ok = bool(m and m.ready and request.version in ("", m.version))
            return pb.ModelReadyResponse(ready=ok)

        def RepositoryIndex(self, request, context):
            return pb.RepositoryIndexResponse(models=[
                pb.RepositoryIndexResponse.ModelIndex(name=m.name, version=m.version,
                                                      state="READY" if m.ready else "UNAVAILABLE", reason=m.reason)
                for m in self.models.values()])

        def ModelConfig(self, request, context):
            m = self._model(request, context, ready=False)
            if m.config is None:
                context.abort(grpc.StatusCode.UNAVAILABLE, m.reason)
            return pb.ModelConfigResponse(config=m.config)

        def ModelMetadata(self, request, context):
            m = self._model(request, context)
            batched = m.config.max_batch_size > 0

            def meta(t):
                dims = ([-1] if batched else []) + list(t.dims)
                return pb.ModelMetadataResponse.TensorMetadata(
                    name=t.name, datatype=_config_dt(t.data_type), shape=dims)

            return pb.ModelMetadataResponse(name=m.name, versions=[m.version], platform=m.config.platform,
                                            inputs=[meta(t) for t in m.config.input],
                                            outputs=[meta(t) for t in m.config.output])

        def ModelInfer(self, request, context):
            m = self._model(request, context)
            if len(request.raw_input_contents) != len(request.inputs):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              "the loopback server takes inputs as raw_input_contents only")
            feeds = {}
            for inp, raw in zip(request.inputs, request.raw_input_contents):
                if inp.datatype not in DATATYPES:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported datatype {inp.datatype}")
                arr = np.frombuffer(raw, dtype=DATATYPES[inp.datatype])
                try:
                    feeds[inp.name] = arr.reshape(tuple(inp.shape))
                except ValueError:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"input '{inp.name}': {arr.size} values do not fill shape {list(inp.shape)}")
            mbs = m.config.max_batch_size
            for name, arr in feeds.items():
                if mbs > 0 and arr.shape[0] > mbs:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"inference request batch-size must be <= {mbs} for '{m.name}'")
            wanted = [o.name for o in request.outputs] or [o.name for o in m.session.get_outputs()]
            try:
                outs = m.session.run(wanted, feeds)
            except Exception as e:  # onnxruntime's own exception types
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"onnxruntime: {e}")
            resp = pb.ModelInferResponse(model_name=m.name, model_version=m.version, id=request.id)
            for name, arr in zip(wanted, outs):
                arr = np.ascontiguousarray(arr)
                resp.outputs.add(name=name, datatype=_NP_TO_DT[arr.dtype], shape=list(arr.shape))
                resp.raw_output_contents.append(arr.tobytes())
            return resp

    return Servicer


def _config_dt(data_type: int) -> str:
    from .triton import model_config_pb2

    return model_config_pb2().DataType.Name(data_type)[len("TYPE_"):]


class TritonLoopbackServer:
    """Serve every model directory of ``repo`` on ``127.0.0.1:port`` (0 = a free port).

    Args:
        repo: a Triton model repository (``yolo-edge deploy triton`` writes one).
        port: TCP port; 0 picks a free one (read :attr:`port` after :meth:`start`).
        max_seconds: the server stops by itself after this long.
        unready: model names to list but not load (tests of "model not ready").
        threads: ONNX Runtime intra-op threads per model (default: ONNX Runtime's).
        workers: concurrent requests.
    """

    def __init__(self, repo, port: int = 0, max_seconds: float = 300.0, unready=(), threads: int | None = None,
                 workers: int = 4):
        self.repo = Path(repo)
        if not self.repo.is_dir():
            raise YoloEdgeError(f"model repository not found: {self.repo}")
        self.requested_port = int(port)
        self.max_seconds = float(max_seconds)
        self.unready = set(unready)
        self.threads = threads
        self.workers = workers
        self.port: int | None = None
        self._server = None
        self._timer: threading.Timer | None = None
        self.stopped = threading.Event()

    def start(self) -> "TritonLoopbackServer":
        grpc = require("grpc")
        service_pb2_grpc = require("tritonclient.grpc.service_pb2_grpc")
        models = {}
        for d in sorted(p for p in self.repo.iterdir() if (p / "config.pbtxt").is_file()):
            m = _Model(d, self.threads) if d.name not in self.unready else _unready(d)
            models[m.name] = m
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.workers),
                                   options=[("grpc.max_send_message_length", MAX_MESSAGE),
                                            ("grpc.max_receive_message_length", MAX_MESSAGE)])
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_servicer_class()(models), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{self.requested_port}")
        if not self.port:
            raise YoloEdgeError(f"cannot bind 127.0.0.1:{self.requested_port}")
        self._server.start()
        self._timer = threading.Timer(self.max_seconds, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._server is not None and not self.stopped.is_set():
            self._server.stop(grace=0).wait(5)
        self.stopped.set()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"


def _unready(d: Path) -> _Model:
    m = _Model.__new__(_Model)
    m.name, m.version, m.session, m.reason = d.name, "1", None, "not loaded (unready)"
    m.config = parse_config((d / "config.pbtxt").read_text())
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Loopback Triton gRPC server (ONNX Runtime, 127.0.0.1 only; for tests)")
    ap.add_argument("--repo", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=600.0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    server = TritonLoopbackServer(args.repo, args.port, args.max_seconds, threads=args.threads).start()
    print(f"PORT {server.port}", flush=True)
    try:
        while not server.stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
