"""TensorRT's legacy calibration cache (implicit INT8, TensorRT <= 10) and cache keying (DESIGN §4).

The cache is the text table TensorRT's ``IInt8Calibrator::writeCalibrationCache`` produces and
``readCalibrationCache`` consumes::

    TRT-8601-EntropyCalibration2
    images: 3c010204
    /stem/act/Mul_output_0: 3d8f5c29
    ...

* header ``TRT-<version>-<algorithm>``; ``<version>`` is ``NV_TENSORRT_VERSION`` of the TensorRT
  that will read it (8.6.1 -> ``8601``: major*1000 + minor*100 + patch before 10;
  10.3.0 -> ``100300``: major*10000 + minor*100 + patch from 10 on). TensorRT ignores a cache
  whose header does not match its version and calibrator, so the version must be the target's.
* one ``<tensor name>: <scale>`` line per tensor, the scale (``amax / 127``) as the hexadecimal
  IEEE-754 bit pattern of the float32, most significant digit first, without leading zeros
  (``0`` for a zero scale).

Verified against: the description of the native table in ONNX Runtime's TensorRT execution
provider (``ReadDynamicRange``: "tensor name : scale in 32-bit single precision IEEE754 format",
e.g. ``TRT-7103-EntropyCalibration2`` / ``data_0: 4000889d``), a cache written by TensorRT 8.4.1
(``TRT-8401-EntropyCalibration2``, ``input: 3caa54fc``, ``...: 0``) and NVIDIA TAO's exporter
(``struct.pack(">f", amax / 127.0).hex()``). Tensor names are the ONNX tensor names (the ONNX
parser keeps them).

The header names ``EntropyCalibration2`` whatever ``--calib-method`` chose the ranges: TensorRT takes
the scales of a cache verbatim and only requires the header to match the calibrator class it is
given (``trtexec --calib`` uses that one); the method actually used is recorded in the sidecar.

TensorRT never checks what the table was made from. The sidecar ``<cache>.json`` does: it holds
the key ``sha256(onnx sha256, preprocessing, sorted image hashes, algorithm)`` and its parts, and
:func:`check_cache` refuses a cache whose key differs from the one expected, naming what changed.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from ..errors import YoloEdgeError

DEFAULT_TRT_VERSION = "8.6.1"  # JetPack 5.1; JetPack 6 ships 8.6.2 / 10.3
DEFAULT_ALGORITHM = "EntropyCalibration2"
ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")
KEY_VERSION = 1


class StaleCacheError(YoloEdgeError):
    """A calibration cache was made for another model, preprocessing, image list or algorithm."""


def trt_version_tag(version: str) -> str:
    """``"8.6.1"`` -> ``"8601"``, ``"10.3.0"`` -> ``"100300"`` (TensorRT's ``NV_TENSORRT_VERSION``);
    an all-digit tag is returned as is."""
    v = str(version).strip()
    if re.fullmatch(r"\d{4,6}", v):
        return v
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:\.\d+)*", v)
    if not m:
        raise YoloEdgeError(f"cannot read TensorRT version {version!r}; give it as MAJOR.MINOR.PATCH, e.g. 8.6.1")
    major, minor, patch = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    return str(major * (10000 if major >= 10 else 1000) + minor * 100 + patch)


def scale_to_hex(scale: float) -> str:
    """float32 bit pattern in hex, big-endian, no leading zeros (TensorRT's ``%x``)."""
    return format(struct.unpack(">I", struct.pack(">f", float(scale)))[0], "x")


def hex_to_scale(text: str) -> float:
    return struct.unpack(">f", int(text, 16).to_bytes(4, "big"))[0]


def format_trt_cache(scales: Mapping[str, float], trt_version: str = DEFAULT_TRT_VERSION,
                     algorithm: str = DEFAULT_ALGORITHM) -> str:
    """The cache text for ``{tensor: scale}`` (scale = amax / 127)."""
    if algorithm not in ALGORITHMS:
        raise YoloEdgeError(f"unknown TensorRT calibrator {algorithm!r}; choose from {', '.join(ALGORITHMS)}")
    lines = [f"TRT-{trt_version_tag(trt_version)}-{algorithm}"]
    for name, s in scales.items():
        if ":" in name and name.rsplit(":", 1)[1].strip() == "":
            raise YoloEdgeError(f"tensor name {name!r} cannot be written to a calibration cache")
        lines.append(f"{name}: {scale_to_hex(s)}")
    return "\n".join(lines) + "\n"


def parse_trt_cache(text: str) -> tuple[str, dict[str, float]]:
    """``(header, {tensor: scale})`` of a cache's text. Tensor names may contain ``': '`` (the
    value is after the last one)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("TRT-"):
        raise YoloEdgeError("not a TensorRT calibration cache (no 'TRT-<version>-<algorithm>' header)")
    scales = {}
    for ln in lines[1:]:
        name, sep, value = ln.rpartition(": ")
        if not sep:
            raise YoloEdgeError(f"malformed calibration cache line: {ln!r}")
        scales[name] = hex_to_scale(value.strip())
    return lines[0], scales


@dataclass(frozen=True)
class CacheKey:
    """What a calibration result depends on (DESIGN §4).

    Attributes:
        onnx_sha256: the FP32 ONNX the ranges were measured on.
        preprocessing: the letterbox spec (size, pad value, scale-up, interpolation) and layout.
        images_sha256: SHA-256 of the sorted per-image SHA-1s (:func:`~yolo_edge.precision.calibration.data_hash`).
        n_images: number of calibration images.
        algorithm: calibration method and its parameters.
    """

    onnx_sha256: str
    preprocessing: dict
    images_sha256: str
    n_images: int
    algorithm: dict

    @property
    def key(self) -> str:
        payload = json.dumps({"v": KEY_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def to_dict(self) -> dict:
        return {"key": self.key, "version": KEY_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "CacheKey":
        return cls(d["onnx_sha256"], d["preprocessing"], d["images_sha256"], int(d["n_images"]), d["algorithm"])

    def differences(self, other: "CacheKey") -> list[str]:
        names = {"onnx_sha256": "ONNX model", "preprocessing": "preprocessing", "images_sha256": "image list",
                 "n_images": "number of images", "algorithm": "algorithm"}
        return [label for k, label in names.items() if getattr(self, k) != getattr(other, k)]


def preprocessing_of(letterbox) -> dict:
    """The preprocessing that goes into a key: the letterbox spec plus the fixed layout (DESIGN §3)."""
    return {"size": list(letterbox.size), "pad_value": letterbox.pad_value, "scaleup": letterbox.scaleup,
            "interpolation": letterbox.interpolation, "layout": "RGB CHW float32 /255"}


def sidecar(cache_path) -> Path:
    p = Path(cache_path)
    return p.with_name(p.name + ".json")


def write_cache(cache_path, scales: Mapping[str, float], key: CacheKey, *, trt_version: str = DEFAULT_TRT_VERSION,
                algorithm: str = DEFAULT_ALGORITHM, extra: dict | None = None) -> Path:
    """Write the TensorRT cache and its key sidecar, atomically."""
    from ..util import atomic_write

    cache_path = Path(cache_path)
    text = format_trt_cache(scales, trt_version, algorithm)
    with atomic_write(cache_path, "w") as f:
        f.write(text)
    meta = {**key.to_dict(), "trt_version": trt_version, "trt_tag": trt_version_tag(trt_version),
            "trt_algorithm": algorithm, "tensors": len(scales),
            "cache_sha256": hashlib.sha256(text.encode()).hexdigest(), **(extra or {})}
    with atomic_write(sidecar(cache_path), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    return cache_path


def read_key(cache_path) -> CacheKey | None:
    side = sidecar(cache_path)
    if not side.is_file():
        return None
    try:
        return CacheKey.from_dict(json.loads(side.read_text()))
    except (ValueError, KeyError, TypeError):
        return None


def check_cache(cache_path, expected: CacheKey) -> dict[str, float]:
    """The scales of ``cache_path`` when it was made for ``expected``; raises :class:`StaleCacheError`
    otherwise (missing or unreadable sidecar, different key, or a table edited after writing)."""
    cache_path = Path(cache_path)
    if not cache_path.is_file():
        raise YoloEdgeError(f"calibration cache not found: {cache_path}")
    side = sidecar(cache_path)
    found = read_key(cache_path)
    if found is None:
        raise StaleCacheError(f"{cache_path} has no readable key file {side.name}: its origin is unknown, so it is "
                              "not reused; delete it (or recalibrate) to write a keyed one")
    if found.key != expected.key:
        what = ", ".join(found.differences(expected)) or "key"
        raise StaleCacheError(f"{cache_path} is stale: it was made for a different {what}; delete it or recalibrate "
                              f"(cache key {found.key[:12]}, expected {expected.key[:12]})")
    text = cache_path.read_text()
    meta = json.loads(side.read_text())
    if meta.get("cache_sha256") and meta["cache_sha256"] != hashlib.sha256(text.encode()).hexdigest():
        raise StaleCacheError(f"{cache_path} was modified after it was written; recalibrate")
    return parse_trt_cache(text)[1]
