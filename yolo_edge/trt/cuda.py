"""Device memory, pinned host memory and streams for the TensorRT runner: a small interface with
two implementations, pycuda and cuda-python (NVIDIA's ``cuda.bindings``).

The runner only talks to :class:`CudaBackend`, so a test can hand it a fake backend and exercise
every buffer and copy on CPU. Both real backends import their package when constructed, never at
module import.

    cuda = get_backend()            # cuda-python if installed, else pycuda
    stream = cuda.stream()
    host = cuda.host_empty((1, 3, 640, 640), np.float32)   # pinned
    dev = cuda.device_alloc(host.nbytes)
    cuda.htod_async(dev, host, stream); ...; cuda.synchronize(stream)
"""

from __future__ import annotations

import contextlib
import ctypes
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..deps import available, require
from ..errors import MissingDependency, YoloEdgeError

BACKENDS = ("cuda-python", "pycuda")
# Both backends record the CUDA version of the driver (cuDriverGetVersion / cudaDriverGetVersion), so
# an engine built with one backend is not refused by the other (the manifest compares the major).
CUDA_SOURCE = "driver"


@dataclass
class DeviceBuffer:
    """Device memory: ``ptr`` is the address TensorRT gets through ``set_tensor_address``."""

    ptr: int
    nbytes: int
    handle: Any = field(default=None, repr=False)  # the backend's own object (kept alive)


@dataclass
class Stream:
    handle: int  # the cudaStream_t as an int (what execute_async_v3 takes)
    obj: Any = field(default=None, repr=False)


class CudaBackend:
    """Interface of a CUDA backend. Arrays passed to the async copies must be pinned
    (:meth:`host_empty`) for the copies to be asynchronous."""

    name = "cuda"

    def stream(self) -> Stream:  # pragma: no cover - interface
        raise NotImplementedError

    def host_empty(self, shape, dtype) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def device_alloc(self, nbytes: int) -> DeviceBuffer:  # pragma: no cover - interface
        raise NotImplementedError

    def htod_async(self, dst: DeviceBuffer, src: np.ndarray, stream: Stream) -> None:  # pragma: no cover
        raise NotImplementedError

    def dtoh_async(self, dst: np.ndarray, src: DeviceBuffer, stream: Stream) -> None:  # pragma: no cover
        raise NotImplementedError

    def synchronize(self, stream: Stream) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def free(self, buf: DeviceBuffer) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def free_host(self, arr: np.ndarray) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def free_stream(self, stream: Stream) -> None:
        pass

    def scope(self):
        """Context manager around CUDA work from any thread (pycuda: push/pop its context)."""
        return contextlib.nullcontext()

    def device_info(self) -> dict:
        """``{"gpu": name, "compute_capability": "8.7", "cuda": "12.2"}`` (values may be None)."""
        return {"gpu": None, "compute_capability": None, "cuda": None}

    def close(self) -> None:
        pass


# --- pycuda ------------------------------------------------------------------------------------
class PycudaBackend(CudaBackend):  # pragma: no cover - needs a GPU (tests/test_trt.py, needs_cuda)
    """pycuda on the device's primary context (the one the CUDA runtime, and so TensorRT, uses)."""

    name = "pycuda"

    def __init__(self, device: int = 0):
        self.cuda = require("pycuda.driver", extra="trt")
        self.cuda.init()
        self.device = self.cuda.Device(device)
        # the primary context is the one the CUDA runtime (and so TensorRT) uses; pushed only around
        # pycuda's own calls (scope), so the runner works from any thread
        self.ctx = self.device.retain_primary_context()

    @contextlib.contextmanager
    def scope(self):
        self.ctx.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def stream(self) -> Stream:
        s = self.cuda.Stream()
        return Stream(int(s.handle), s)

    def host_empty(self, shape, dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(tuple(shape), np.dtype(dtype))

    def device_alloc(self, nbytes: int) -> DeviceBuffer:
        a = self.cuda.mem_alloc(max(int(nbytes), 1))
        return DeviceBuffer(int(a), int(nbytes), a)

    def htod_async(self, dst, src, stream) -> None:
        self.cuda.memcpy_htod_async(dst.handle, src, stream.obj)

    def dtoh_async(self, dst, src, stream) -> None:
        self.cuda.memcpy_dtoh_async(dst, src.handle, stream.obj)

    def synchronize(self, stream) -> None:
        stream.obj.synchronize()

    def free(self, buf) -> None:
        buf.handle.free()

    def free_host(self, arr) -> None:
        base = arr.base if arr.base is not None else arr
        getattr(base, "free", lambda: None)()

    def device_info(self) -> dict:
        cc = self.device.compute_capability()
        return {"gpu": self.device.name(), "compute_capability": f"{cc[0]}.{cc[1]}",
                "cuda": _cuda_version(self.cuda.get_driver_version()),
                "cuda_source": CUDA_SOURCE}

    def close(self) -> None:
        self.ctx.detach()


# --- cuda-python --------------------------------------------------------------------------------
def _cudart():
    """``cuda.bindings.runtime`` (cuda-python >= 12.6), else the older ``cuda.cudart``."""
    try:
        return require("cuda.bindings.runtime", extra="trt")
    except MissingDependency:
        return require("cuda.cudart", extra="trt")


class CudaPythonBackend(CudaBackend):  # pragma: no cover - needs a GPU (tests/test_trt.py, needs_cuda)
    """cuda-python's runtime API: ``cudaMallocHost`` (pinned), ``cudaMalloc``, ``cudaMemcpyAsync``."""

    name = "cuda-python"

    def __init__(self, device: int = 0):
        self.rt = _cudart()
        self.dev = int(device)
        self._check(self.rt.cudaSetDevice(self.dev))
        self._host: dict[int, int] = {}  # id(array) -> pointer

    @contextlib.contextmanager
    def scope(self):
        """The CUDA runtime's current device is per host thread: set it in the calling thread, so
        a runner built in one thread and run in another (stream pipeline) works on its device."""
        self._check(self.rt.cudaSetDevice(self.dev))
        yield

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = getattr(err, "name", str(err))
            raise YoloEdgeError(f"CUDA error {name} ({int(err)})")
        return rest[0] if len(rest) == 1 else (rest or None)

    def stream(self) -> Stream:
        s = self._check(self.rt.cudaStreamCreate())
        return Stream(int(s), s)

    def host_empty(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = int(np.prod(shape)) * dtype.itemsize
        ptr = int(self._check(self.rt.cudaMallocHost(max(n, 1))))
        raw = (ctypes.c_ubyte * max(n, 1)).from_address(ptr)
        arr = np.frombuffer(raw, dtype=np.uint8, count=n).view(dtype).reshape(shape)
        self._host[id(arr)] = ptr
        return arr

    def device_alloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self._check(self.rt.cudaMalloc(max(int(nbytes), 1)))
        return DeviceBuffer(int(ptr), int(nbytes), ptr)

    def htod_async(self, dst, src, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst.ptr, src.ctypes.data, src.nbytes, kind, stream.obj))

    def dtoh_async(self, dst, src, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(dst.ctypes.data, src.ptr, dst.nbytes, kind, stream.obj))

    def synchronize(self, stream) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream.obj))

    def free(self, buf) -> None:
        self._check(self.rt.cudaFree(buf.handle))

    def free_host(self, arr) -> None:
        ptr = self._host.pop(id(arr), None)
        if ptr is not None:
            self._check(self.rt.cudaFreeHost(ptr))

    def free_stream(self, stream) -> None:
        self._check(self.rt.cudaStreamDestroy(stream.obj))

    def device_info(self) -> dict:
        prop = self._check(self.rt.cudaGetDeviceProperties(self.dev))
        name = prop.name.split(b"\0", 1)[0].decode() if isinstance(prop.name, bytes) else str(prop.name)
        return {"gpu": name, "compute_capability": f"{prop.major}.{prop.minor}",
                "cuda": _cuda_version(self._check(self.rt.cudaDriverGetVersion())),
                "cuda_source": CUDA_SOURCE}


def _cuda_version(v) -> str | None:
    """12020 -> "12.2"; (12, 2, 0) -> "12.2"."""
    if v is None:
        return None
    if isinstance(v, (tuple, list)):
        return ".".join(str(x) for x in v[:2])
    v = int(v)
    return f"{v // 1000}.{(v % 1000) // 10}"


def get_backend(name: str | CudaBackend | None = None, device: int = 0) -> CudaBackend:
    """A CUDA backend: ``"cuda-python"``, ``"pycuda"``, a :class:`CudaBackend` instance (returned
    as is), or None for the first one installed (cuda-python, then pycuda)."""
    if isinstance(name, CudaBackend):
        return name
    if name is None:
        if available("cuda"):
            name = "cuda-python"
        elif available("pycuda"):
            name = "pycuda"
        else:
            raise MissingDependency("cuda-python", "trt", detail="TensorRT inference needs cuda-python or pycuda "
                                                            "for device memory")
    if name in ("cuda-python", "cuda_python", "cudart"):
        return CudaPythonBackend(device)
    if name == "pycuda":
        return PycudaBackend(device)
    raise YoloEdgeError(f"unknown CUDA backend {name!r}; choose from {', '.join(BACKENDS)}")
