"""Triton runner: a model served by NVIDIA Triton Inference Server, over ``tritonclient``.

    runner = load_runner("grpc://triton.local:8001/yolo11n")      # or http://host:8000/yolo11n[/VERSION]
    with Detector(runner) as det:
        dets = det(image)

The runner reads the model's metadata (input and output names, dtypes, shapes) and its config
from the server; the yolo-edge ModelSpec (class names, letterbox, NMS thresholds) comes from the
config's ``parameters { key: "yolo_edge" }`` that ``yolo-edge deploy triton`` writes. Letterboxing
and unletterboxing stay on the client (in :class:`Detector`), exactly as with the local runners.

Over gRPC a batch leaves the client with one copy of its bytes (:func:`encode_infer_request`); a
client on the server's host can skip the socket with ``?shm=1`` (Triton's system shared memory
extension). A batch larger than the model's ``max_batch_size`` is sent in chunks. Connection failures, a
missing or unready model and a model that is not a yolo-edge deployment raise
:class:`YoloEdgeError` with one line that says what to do.
"""

from __future__ import annotations

import itertools
import os
import re
import weakref
from typing import Mapping

import numpy as np

from ..deps import require
from ..errors import ModelFormatError, YoloEdgeError
from ..spec import ModelSpec
from .base import Runner, TensorInfo

DATATYPES = {"FP32": np.float32, "FP16": np.float16, "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8,
             "INT8": np.int8, "BOOL": np.bool_, "FP64": np.float64}
DEFAULT_PORTS = {"grpc": 8001, "http": 8000, "https": 8443}
# Path(...) collapses '//' to '/', so accept one or two slashes after the scheme.
_URI = re.compile(r"^(grpc|https?):/{1,2}([^/]+)/([^/?]+)(?:/(\d+))?/?(?:\?(.*))?$")
_SHM_IDS = itertools.count()


def is_triton_uri(path) -> bool:
    return bool(re.match(r"^(grpc|https?):/", str(path)))


def parse_uri(uri) -> tuple[str, str, str, str]:
    """``grpc://host[:port]/model[/version][?shm=1]`` -> (scheme, "host:port", model, version or "")."""
    m = _URI.match(str(uri))
    if not m:
        raise YoloEdgeError(f"not a Triton model URI: '{uri}'; use grpc://HOST:8001/MODEL[/VERSION] or "
                            "http://HOST:8000/MODEL[/VERSION]")
    scheme, host, model, version = m.group(1), m.group(2), m.group(3), m.group(4) or ""
    if ":" not in host:
        host = f"{host}:{DEFAULT_PORTS[scheme]}"
    return scheme, host, model, version


class TritonRunner(Runner):
    name = "triton"

    def __init__(self, uri, timeout: float = 30.0, client=None, fast: bool = True,
                 shared_memory: bool | None = None):
        """
        Args:
            uri: ``grpc://host:port/model[/version]`` or ``http(s)://host:port/model[/version]``.
            timeout: seconds for each call to the server (connection checks and inference).
            client: an already built ``tritonclient`` client (tests).
            fast: gRPC only: send ModelInfer with the tensor bytes appended to the request once
                (:func:`encode_infer_request`), instead of through ``tritonclient``'s ``infer``, which
                copies a batch three more times before it leaves (tobytes, the protobuf field, the
                serialization): for a 640x640 batch of 8 that is 39 MB each. Same message on the wire.
            shared_memory: gRPC only, a server on this host: pass inputs through Triton's system
                shared memory extension (a POSIX shared memory region registered with the server)
                instead of the socket. Also ``?shm=1`` in the URI. A Triton container needs
                ``--ipc=host`` to see the client's region.
        """
        self.scheme, self.host, self.model, self.version = parse_uri(uri)
        query = _URI.match(str(uri)).group(5) or ""
        if shared_memory is None:
            shared_memory = "shm=1" in query.split("&")
        self.uri = f"{self.scheme}://{self.host}/{self.model}" + (f"/{self.version}" if self.version else "")
        self.timeout = float(timeout)
        if self.scheme == "grpc":
            self.tc = require("tritonclient.grpc")
        else:
            self.tc = require("tritonclient.http")
        self.utils = require("tritonclient.utils")
        self.client = client or self._make_client()
        self.fast = bool(fast) and self.scheme == "grpc"
        self._infer_call = None
        if shared_memory and self.scheme != "grpc":
            raise YoloEdgeError("shared memory (?shm=1) is implemented for grpc:// URIs only")
        self.shared_memory = bool(shared_memory)
        self._shm = None  # (SharedMemory, region name, size)
        self._check_ready()
        config = self._call(self.client.get_model_config, self.model, self.version, what="read the model config")
        config = config.get("config", config) if isinstance(config, dict) else config
        meta = self._call(self.client.get_model_metadata, self.model, self.version, what="read the model metadata")
        self.config = config
        self.max_batch_size = int(config.get("max_batch_size", 0) or 0)
        spec = self._spec(config)
        inputs = [TensorInfo(t["name"], tuple(int(d) if int(d) > 0 else None for d in t["shape"]),
                             np.dtype(DATATYPES.get(t["datatype"], np.float32))) for t in meta["inputs"]]
        super().__init__(spec, inputs, [t["name"] for t in meta["outputs"]])
        self.output_layout  # noqa: B018  (a model with other outputs fails here, not mid-stream)

    # -- connection --------------------------------------------------------------------------
    def _make_client(self):
        kwargs = {"url": self.host}
        if self.scheme == "http":
            kwargs.update(connection_timeout=self.timeout, network_timeout=self.timeout)
        elif self.scheme == "https":
            kwargs.update(ssl=True, connection_timeout=self.timeout, network_timeout=self.timeout)
        try:
            return self.tc.InferenceServerClient(**kwargs)
        except Exception as e:  # tritonclient raises several types for a bad URL
            raise YoloEdgeError(f"cannot create a Triton client for {self.uri}: {_msg(e)}") from e

    def _call(self, fn, *args, what: str, **kwargs):
        kw = dict(kwargs)
        if self.scheme == "grpc":
            kw["client_timeout"] = self.timeout
        if fn.__name__ in ("get_model_config", "get_model_metadata") and self.scheme == "grpc":
            kw["as_json"] = True
        try:
            return fn(*args, **kw)
        except Exception as e:  # InferenceServerException, socket errors, gevent timeouts
            raise YoloEdgeError(f"triton: cannot {what} of '{self.model}' at {self.scheme}://{self.host}: "
                                f"{_msg(e)}") from e

    def _check_ready(self) -> None:
        where = f"{self.scheme}://{self.host}"
        kw = {"client_timeout": self.timeout} if self.scheme == "grpc" else {}
        try:
            live = self.client.is_server_live(**kw)
        except Exception as e:  # connection refused, DNS, timeout
            raise YoloEdgeError(f"triton: cannot reach a server at {where} ({_msg(e)}); start it "
                                "(tritonserver --model-repository REPO) or check the host and port") from e
        if not live:
            raise YoloEdgeError(f"triton: the server at {where} is not live; check its log")
        try:
            ready = self.client.is_model_ready(self.model, self.version, **kw)
        except Exception as e:
            raise YoloEdgeError(f"triton: cannot ask {where} about model '{self.model}': {_msg(e)}") from e
        if ready:
            return
        try:
            index = self.client.get_model_repository_index(**kw)
            index = index.get("models", []) if isinstance(index, dict) else index
            if not isinstance(index, list):  # gRPC protobuf response
                index = [{"name": m.name, "state": m.state, "reason": m.reason} for m in index.models]
        except Exception:  # the index is a hint only
            index = []
        names = sorted({m.get("name", "") for m in index})
        entry = next((m for m in index if m.get("name") == self.model), None)
        version = f" version {self.version}" if self.version else ""
        if entry is None and names:
            raise YoloEdgeError(f"triton: no model '{self.model}' on {where}; it serves: {', '.join(names)}")
        state = f" (state {entry.get('state', '?')}: {entry.get('reason', '')})" if entry else ""
        raise YoloEdgeError(f"triton: model '{self.model}'{version} is not ready on {where}{state}; check the server "
                            "log, or load it (tritonserver --model-control-mode=explicit --load-model NAME)")

    def _spec(self, config: dict) -> ModelSpec:
        params = config.get("parameters") or {}
        text = (params.get("yolo_edge") or {}).get("string_value")
        if not text:
            raise ModelFormatError(
                f"triton: model '{self.model}' at {self.scheme}://{self.host} is not a yolo-edge deployment "
                "(its config "
                "has no parameters.yolo_edge); write the repository with `yolo-edge deploy triton MODEL --out REPO`")
        return ModelSpec.from_json(text)

    @property
    def fixed_batch(self) -> int | None:
        return None if self.max_batch_size > 0 else super().fixed_batch

    # -- inference ---------------------------------------------------------------------------
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = next(iter(feeds.values())).shape[0]
        step = self.max_batch_size if self.max_batch_size > 0 else batch
        if batch > step:
            parts = [self._infer({k: v[i:i + step] for k, v in feeds.items()}) for i in range(0, batch, step)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if self.shared_memory:
            return self._infer_shm(feeds)
        if self.fast:
            return self._infer_fast(feeds)
        dt = {t.name: t for t in self.inputs}
        inputs = []
        for name, arr in feeds.items():
            t = self.tc.InferInput(name, list(arr.shape), self.utils.np_to_triton_dtype(dt[name].dtype))
            if self.scheme == "grpc":
                t.set_data_from_numpy(np.ascontiguousarray(arr))
            else:
                t.set_data_from_numpy(np.ascontiguousarray(arr), binary_data=True)
            inputs.append(t)
        outputs = [self.tc.InferRequestedOutput(n) if self.scheme == "grpc"
                   else self.tc.InferRequestedOutput(n, binary_data=True) for n in self.output_names]
        kw = {"client_timeout": self.timeout} if self.scheme == "grpc" else {}
        try:
            res = self.client.infer(self.model, inputs, model_version=self.version, outputs=outputs, **kw)
        except Exception as e:  # InferenceServerException and transport errors
            raise YoloEdgeError(f"triton: inference on '{self.model}' at {self.scheme}://{self.host} failed: "
                                f"{_msg(e)}") from e
        return {n: res.as_numpy(n) for n in self.output_names}


    def _infer_fast(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        grpc = require("grpc")
        pb = require("tritonclient.grpc.service_pb2")
        if self._infer_call is None:
            from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE

            self._channel = grpc.insecure_channel(self.host, options=[
                ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
                ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE)])
            self._infer_call = self._channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                                         request_serializer=None,
                                                         response_deserializer=pb.ModelInferResponse.FromString)
        payload = encode_infer_request(self.model, self.version, feeds, self.output_names)
        try:
            resp = self._infer_call(payload, timeout=self.timeout)
        except grpc.RpcError as e:
            raise YoloEdgeError(f"triton: inference on '{self.model}' at {self.scheme}://{self.host} failed: "
                                f"{_msg(Exception(e.details() if hasattr(e, 'details') else e))}") from e
        return decode_infer_response(resp)

    # -- shared memory ---------------------------------------------------------------------------
    def _shm_region(self, nbytes: int):
        if self._shm is not None and self._shm[2] >= nbytes:
            return self._shm
        self._release_shm()
        from multiprocessing import shared_memory

        name = f"yolo_edge_{os.getpid()}_{next(_SHM_IDS)}"
        shm = shared_memory.SharedMemory(name=name, create=True, size=nbytes)
        finalizer = weakref.finalize(self, _free_shm, shm, None, name)
        try:
            self.client.register_system_shared_memory(name, "/" + name, nbytes, client_timeout=self.timeout)
        except Exception as e:  # InferenceServerException
            finalizer()
            raise YoloEdgeError(f"triton: the server at {self.host} cannot map this client's shared memory "
                                f"({_msg(e)}); shared memory works only with a server on this host (a container "
                                "needs --ipc=host); drop ?shm=1") from e
        finalizer.detach()
        self._shm = (shm, name, nbytes, weakref.finalize(self, _free_shm, shm, self.client, name))
        return self._shm

    def _release_shm(self) -> None:
        if self._shm is not None:
            self._shm[3]()
            self._shm = None

    def _infer_shm(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        total = sum(int(np.asarray(a).nbytes) for a in feeds.values())
        shm, region, _, _ = self._shm_region(total)
        inputs, offset = [], 0
        for name, arr in feeds.items():
            view = np.ndarray(arr.shape, arr.dtype, buffer=shm.buf, offset=offset)
            view[...] = arr  # the one copy
            del view
            t = self.tc.InferInput(name, list(arr.shape), self.utils.np_to_triton_dtype(arr.dtype))
            t.set_shared_memory(region, int(arr.nbytes), offset=offset)
            inputs.append(t)
            offset += int(arr.nbytes)
        outputs = [self.tc.InferRequestedOutput(n) for n in self.output_names]
        try:
            res = self.client.infer(self.model, inputs, model_version=self.version, outputs=outputs,
                                    client_timeout=self.timeout)
        except Exception as e:  # InferenceServerException
            raise YoloEdgeError(f"triton: inference on '{self.model}' at {self.scheme}://{self.host} failed: "
                                f"{_msg(e)}") from e
        return {n: res.as_numpy(n) for n in self.output_names}

    def close(self) -> None:
        self._release_shm()
        for c in (getattr(self, "_channel", None), self.client):
            try:
                c is not None and c.close()
            except Exception:  # pragma: no cover - closing is best effort
                pass


def _free_shm(shm, client, name) -> None:
    """Unregister (best effort), close and unlink a shared memory region."""
    if client is not None:
        try:
            client.unregister_system_shared_memory(name, client_timeout=5)
        except Exception:  # the server may be gone
            pass
    try:
        shm.close()
        shm.unlink()
    except (FileNotFoundError, BufferError):  # pragma: no cover
        pass


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_infer_request(model: str, version: str, feeds: Mapping[str, np.ndarray], outputs) -> bytes:
    """A serialized ``inference.ModelInferRequest`` (grpc_service.proto) with every tensor in
    ``raw_input_contents`` (field 7), built with one copy of the tensor data: the small fields go
    through protobuf, each tensor is appended as a length-delimited field 7 (protobuf allows a
    message's fields in any order and repeated fields to be split)."""
    pb = require("tritonclient.grpc.service_pb2")
    utils = require("tritonclient.utils")
    req = pb.ModelInferRequest(model_name=model, model_version=version)
    parts = []
    for name, arr in feeds.items():
        arr = np.ascontiguousarray(arr)
        req.inputs.add(name=name, datatype=utils.np_to_triton_dtype(arr.dtype), shape=list(arr.shape))
        parts += [b"\x3a", _varint(arr.nbytes), memoryview(arr).cast("B")]  # 0x3a = field 7, wire type 2
    for name in outputs:
        req.outputs.add(name=name)
    return b"".join([req.SerializeToString(), *parts])


def decode_infer_response(resp) -> dict[str, np.ndarray]:
    out = {}
    for t, raw in zip(resp.outputs, resp.raw_output_contents):
        out[t.name] = np.frombuffer(raw, dtype=DATATYPES[t.datatype]).reshape(tuple(t.shape))
    return out


def _msg(e: Exception) -> str:
    text = e.message() if callable(getattr(e, "message", None)) else str(e)
    text = " ".join(str(text).split())
    return text[:300] + ("…" if len(text) > 300 else "")
