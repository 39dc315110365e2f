"""A small loopback server that speaks Triton's gRPC protocol, with ONNX Runtime behind it.

It is for development and tests, not production: it lets the Triton client path (``tritonclient``,
:class:`~yolo_edge.runtime.triton_runner.TritonRunner`) and a repository written by
``yolo-edge deploy triton`` be exercised without Docker or a GPU. It implements the parts of
``inference.GRPCInferenceService`` (``grpc_service.proto``, the generated stubs ``tritonclient``
ships as ``tritonclient.grpc.service_pb2_grpc``) that a client uses: ServerLive, ServerReady,
ServerMetadata, ModelReady, ModelMetadata, ModelConfig, RepositoryIndex, ModelInfer with raw
tensor contents, and the system shared memory extension (SystemSharedMemoryRegister / Unregister /
Status: inputs read from a same-host client's POSIX shared memory region). With
``protocol="http"`` it speaks Triton's HTTP/REST protocol instead (KServe v2: ``/v2/health/*``,
``/v2/models/<name>[/ready|/config|/infer]``, ``/v2/repository/index``, binary tensor data).
Each request runs as it comes (no dynamic batching across requests, no sequence batching, no CUDA
shared memory). ``onnxruntime_onnx`` models are loaded; anything else is
listed as UNAVAILABLE with the reason, as Triton does.

It binds 127.0.0.1 only and stops by itself after ``max_seconds``.

    with TritonLoopbackServer("repo/") as server:
        runner = load_runner(f"grpc://127.0.0.1:{server.port}/yolo11n")

    python -m yolo_edge.deploy.triton_server --repo repo/ --port 0 --max-seconds 600
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
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
        if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":  # as OrtRunner: no busy-waiting threads
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = directory / self.version / (self.config.default_model_filename or "model.onnx")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types
            self.reason = f"onnxruntime cannot load {path.name}: {e}"

    @property
    def ready(self) -> bool:
        return self.session is not None


class RequestError(Exception):
    """A bad request (the server answers it with an error status)."""


def _run(m: _Model, feeds: dict, wanted: list[str]) -> list[np.ndarray]:
    mbs = m.config.max_batch_size
    for arr in feeds.values():
        if mbs > 0 and arr.shape[0] > mbs:
            raise RequestError(f"inference request batch-size must be <= {mbs} for '{m.name}'")
    wanted = wanted or [o.name for o in m.session.get_outputs()]
    try:
        outs = m.session.run(wanted, feeds)
    except Exception as e:  # onnxruntime's own exception types
        raise RequestError(f"onnxruntime: {e}") from e
    return wanted, [np.ascontiguousarray(a) for a in outs]


def _metadata(m: _Model) -> dict:
    batched = m.config.max_batch_size > 0

    def meta(t):
        return {"name": t.name, "datatype": _config_dt(t.data_type), "shape": ([-1] if batched else []) + list(t.dims)}

    return {"name": m.name, "versions": [m.version], "platform": m.config.platform,
            "inputs": [meta(t) for t in m.config.input], "outputs": [meta(t) for t in m.config.output]}


def _varint(buf, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


RAW_INPUT_CONTENTS = 7  # ModelInferRequest.raw_input_contents (grpc_service.proto)


def split_infer_request(data: bytes):
    """Deserialize a ModelInferRequest, leaving ``raw_input_contents`` as zero-copy memoryviews of
    ``data`` (what a C++ server does; protobuf's Python API would copy each tensor twice).
    Returns ``(request without raw contents, [memoryview, ...])``."""
    pb = require("tritonclient.grpc.service_pb2")
    mv = memoryview(data)
    keep, raws, pos, n = [], [], 0, len(data)
    while pos < n:
        start = pos
        key, pos = _varint(mv, pos)
        wire = key & 7
        if wire == 2:
            length, pos = _varint(mv, pos)
            if key >> 3 == RAW_INPUT_CONTENTS:
                raws.append(mv[pos:pos + length])
            else:
                keep.append(mv[start:pos + length])
            pos += length
        elif wire == 0:
            _, pos = _varint(mv, pos)
            keep.append(mv[start:pos])
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            keep.append(mv[start:pos])
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return pb.ModelInferRequest.FromString(b"".join(keep)), raws


def _servicer_class():
    grpc = require("grpc")
    service_pb2_grpc = require("tritonclient.grpc.service_pb2_grpc")
    pb = require("tritonclient.grpc.service_pb2")

    class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
        def __init__(self, models: dict[str, _Model]):
            self.models = models
            self.regions: dict[str, tuple] = {}  # name -> (SharedMemory, key, offset, byte_size)
            self.lock = threading.Lock()

        # -- system shared memory (Triton's shared-memory extension, same-host clients) --------------
        def SystemSharedMemoryRegister(self, request, context):
            from multiprocessing import resource_tracker, shared_memory

            with self.lock:
                if request.name in self.regions:
                    context.abort(grpc.StatusCode.ALREADY_EXISTS,
                                  f"shared memory region '{request.name}' already in manager")
                try:
                    shm = shared_memory.SharedMemory(request.key)
                except (FileNotFoundError, ValueError, OSError) as e:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"Unable to open shared memory region: '{request.key}' ({e})")
                try:  # the client owns the segment: do not let this process's tracker unlink it
                    resource_tracker.unregister(shm._name, "shared_memory")
                except Exception:  # pragma: no cover - tracker details differ between Pythons
                    pass
                if request.offset + request.byte_size > shm.size:
                    shm.close()
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "shared memory region is smaller than byte_size")
                self.regions[request.name] = (shm, request.key, request.offset, request.byte_size)
            return pb.SystemSharedMemoryRegisterResponse()

        def SystemSharedMemoryUnregister(self, request, context):
            with self.lock:
                for name in ([request.name] if request.name else list(self.regions)):
                    entry = self.regions.pop(name, None)
                    if entry is not None:
                        try:
                            entry[0].close()
                        except BufferError:  # pragma: no cover - an array still views it; GC closes it
                            pass
            return pb.SystemSharedMemoryUnregisterResponse()

        def SystemSharedMemoryStatus(self, request, context):
            resp = pb.SystemSharedMemoryStatusResponse()
            for name, (_, key, offset, size) in self.regions.items():
                if not request.name or request.name == name:
                    resp.regions[name].CopyFrom(pb.SystemSharedMemoryStatusResponse.RegionStatus(
                        name=name, key=key, offset=offset, byte_size=size))
            return resp

        def _shm_input(self, inp, context):
            p = inp.parameters
            name = p["shared_memory_region"].string_param
            entry = self.regions.get(name)
            if entry is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"Unable to find system shared memory region: '{name}'")
            shm, _, offset, size = entry
            nbytes = p["shared_memory_byte_size"].int64_param
            off = offset + (p["shared_memory_offset"].int64_param if "shared_memory_offset" in p else 0)
            if off + nbytes > offset + size:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"input '{inp.name}' overruns region '{name}'")
            dt = np.dtype(DATATYPES[inp.datatype])
            return np.frombuffer(shm.buf, dt, count=nbytes // dt.itemsize, offset=off)

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
            d = _metadata(m)
            return pb.ModelMetadataResponse(
                name=d["name"], versions=d["versions"], platform=d["platform"],
                inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in d["inputs"]],
                outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in d["outputs"]])

        def ModelInfer(self, request, context):
            request, raws = request if isinstance(request, tuple) else (request, list(request.raw_input_contents))
            m = self._model(request, context)
            n_raw = sum("shared_memory_region" not in inp.parameters for inp in request.inputs)
            if len(raws) != n_raw:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              "the loopback server takes inputs as raw_input_contents or shared memory only")
            feeds, raw_iter = {}, iter(raws)
            for inp in request.inputs:
                if inp.datatype not in DATATYPES:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported datatype {inp.datatype}")
                if "shared_memory_region" in inp.parameters:
                    arr = self._shm_input(inp, context)
                else:
                    arr = np.frombuffer(next(raw_iter), dtype=DATATYPES[inp.datatype])
                try:
                    feeds[inp.name] = arr.reshape(tuple(inp.shape))
                except ValueError:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"input '{inp.name}': {arr.size} values do not fill shape {list(inp.shape)}")
            try:
                wanted, outs = _run(m, feeds, [o.name for o in request.outputs])
            except RequestError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            resp = pb.ModelInferResponse(model_name=m.name, model_version=m.version, id=request.id)
            for name, arr in zip(wanted, outs):
                resp.outputs.add(name=name, datatype=_NP_TO_DT[arr.dtype], shape=list(arr.shape))
                resp.raw_output_contents.append(arr.tobytes())
            return resp

    return Servicer


def _handler_class(models: dict[str, _Model]):
    """Triton's HTTP/REST endpoints (KServe v2 + binary tensor data extension)."""
    import json
    import re
    from http.server import BaseHTTPRequestHandler

    from google.protobuf import json_format

    route = re.compile(r"^/v2/models/([^/]+)(?:/versions/(\d+))?(/ready|/config|/infer)?$")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, body: bytes, headers: dict | None = None):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj, status: int = 200):
            self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

        def _error(self, status: int, msg: str):
            self._json({"error": msg}, status)

        def _model(self, name, version, ready=True):
            m = models.get(name)
            if m is None:
                self._error(400, f"Request for unknown model: '{name}' is not found")
                return None
            if ready and (not m.ready or version not in (None, "", m.version)):
                self._error(400, f"Request for unknown model: '{name}' has no available versions ({m.reason})")
                return None
            return m

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self):
            path = self.path.split("?")[0]
            if path in ("/v2/health/live", "/v2/health/ready"):
                return self._send(200, b"")
            if path == "/v2":
                return self._json({"name": "yolo-edge-loopback", "version": "0", "extensions": ["binary_tensor_data"]})
            r = route.match(path)
            if not r or r.group(3) == "/infer":
                return self._error(404, f"not found: {path}")
            name, version, what = r.groups()
            if what == "/ready":
                m = models.get(name)
                ok = bool(m and m.ready and version in (None, m.version))
                return self._send(200 if ok else 400, b"")
            if what == "/config":
                m = self._model(name, version, ready=False)
                if m is None:
                    return None
                if m.config is None:
                    return self._error(400, m.reason)
                return self._json(json_format.MessageToDict(m.config, preserving_proto_field_name=True))
            m = self._model(name, version)
            return None if m is None else self._json(_metadata(m))

        def do_POST(self):
            path = self.path.split("?")[0]
            body = self._body()
            if path == "/v2/repository/index":
                return self._json([{"name": m.name, "version": m.version, "state": "READY" if m.ready else
                                    "UNAVAILABLE", "reason": m.reason} for m in models.values()])
            r = route.match(path)
            if not r or r.group(3) != "/infer":
                return self._error(404, f"not found: {path}")
            m = self._model(r.group(1), r.group(2))
            if m is None:
                return None
            n = int(self.headers.get("Inference-Header-Content-Length") or len(body))
            try:
                req = json.loads(body[:n])
                feeds, offset = {}, n
                for t in req["inputs"]:
                    size = (t.get("parameters") or {}).get("binary_data_size")
                    dt = np.dtype(DATATYPES[t["datatype"]])
                    if size is None:
                        arr = np.asarray(t["data"], dt)
                    else:
                        arr = np.frombuffer(body, dt, count=size // dt.itemsize, offset=offset)
                        offset += size
                    feeds[t["name"]] = arr.reshape(t["shape"])
                wanted, outs = _run(m, feeds, [o["name"] for o in req.get("outputs", [])])
            except (KeyError, ValueError, TypeError) as e:
                return self._error(400, f"bad inference request: {e}")
            except RequestError as e:
                return self._error(400, str(e))
            head = {"model_name": m.name, "model_version": m.version, "outputs": [
                {"name": nm, "datatype": _NP_TO_DT[a.dtype], "shape": list(a.shape),
                 "parameters": {"binary_data_size": a.nbytes}} for nm, a in zip(wanted, outs)]}
            if "id" in req:
                head["id"] = req["id"]
            hb = json.dumps(head).encode()
            return self._send(200, hb + b"".join(a.tobytes() for a in outs),
                              {"Content-Type": "application/octet-stream",
                               "Inference-Header-Content-Length": str(len(hb))})

    return Handler


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
        workers: concurrent requests (gRPC).
        protocol: ``grpc`` (Triton's GRPCInferenceService) or ``http`` (Triton's HTTP/REST).
    """

    def __init__(self, repo, port: int = 0, max_seconds: float = 300.0, unready=(), threads: int | None = None,
                 workers: int = 4, protocol: str = "grpc"):
        if protocol not in ("grpc", "http"):
            raise YoloEdgeError(f"protocol must be grpc or http, got {protocol!r}")
        self.protocol = protocol
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
        self._http = None
        self._timer: threading.Timer | None = None
        self.stopped = threading.Event()

    def start(self) -> "TritonLoopbackServer":
        models = {}
        for d in sorted(p for p in self.repo.iterdir() if (p / "config.pbtxt").is_file()):
            m = _Model(d, self.threads) if d.name not in self.unready else _unready(d)
            models[m.name] = m
        if self.protocol == "http":
            from http.server import ThreadingHTTPServer

            self._http = ThreadingHTTPServer(("127.0.0.1", self.requested_port), _handler_class(models))
            self._http.daemon_threads = True
            self.port = self._http.server_address[1]
            threading.Thread(target=self._http.serve_forever, daemon=True).start()
        else:
            grpc = require("grpc")
            service_pb2_grpc = require("tritonclient.grpc.service_pb2_grpc")
            pb = require("tritonclient.grpc.service_pb2")
            servicer = _servicer_class()(models)
            # ModelInfer first, through a deserializer that keeps tensor bytes zero-copy; the generated
            # handler (tritonclient's service_pb2_grpc) serves every other method.
            fast = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
                "ModelInfer": grpc.unary_unary_rpc_method_handler(
                    servicer.ModelInfer, request_deserializer=split_infer_request,
                    response_serializer=pb.ModelInferResponse.SerializeToString)})
            self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.workers), handlers=[fast],
                                       options=[("grpc.max_send_message_length", MAX_MESSAGE),
                                                ("grpc.max_receive_message_length", MAX_MESSAGE)])
            service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
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
        if not self.stopped.is_set():
            if self._server is not None:
                self._server.stop(grace=0).wait(5)
            if self._http is not None:
                self._http.shutdown()
                self._http.server_close()
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
    ap = argparse.ArgumentParser(
        description="Loopback Triton gRPC/HTTP server (ONNX Runtime, 127.0.0.1 only; for tests)")
    ap.add_argument("--repo", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=600.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    args = ap.parse_args(argv)
    server = TritonLoopbackServer(args.repo, args.port, args.max_seconds, threads=args.threads,
                                  protocol=args.protocol).start()
    print(f"PORT {server.port}", flush=True)
    try:
        while not server.stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
