"""Engine provenance (DESIGN §4): ``<engine>.manifest.json`` next to every engine.

A TensorRT engine runs only with the TensorRT version and the GPU it was built for, and it is only
as current as the ONNX it came from. The manifest records all of that when the engine is built;
loading compares it with the machine and the files and refuses a mismatch with a one-line message
that names what differs and the ``yolo-edge build`` command that rebuilds the engine.

Recorded: TensorRT, CUDA and cuDNN versions (what can be read), GPU name and compute capability,
the JetPack/L4T release on Jetson (``/etc/nv_tegra_release``), precision and how it was built,
NMS flavour, the optimization profile (min/opt/max shapes), ONNX and engine SHA-256, the
calibration data hash, the yolo-edge version, and the model's :class:`~yolo_edge.spec.ModelSpec`
(so the runner knows class names and letterbox without the ONNX).

Checked when loading (:func:`check_manifest` + :func:`check_files`):

* TensorRT ``major.minor.patch`` (engines are not portable across TensorRT releases);
* GPU name and compute capability;
* CUDA major version;
* L4T release on Jetson;
* the engine file's SHA-256 (a swapped or truncated file);
* the ONNX file's SHA-256 when that ONNX is still where it was (re-exported since the build).

cuDNN is recorded but not compared (TensorRT 10 does not need it by default).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import YoloEdgeError
# L4T release -> JetPack: one table for the package and jetson/setup.sh (sources in that module)
from ..jetson.releases import JETPACK  # noqa: F401  (re-exported)
from ..jetson.releases import parse_tegra_release as _parse_tegra_release
from ..util import atomic_write, sha256_file

MANIFEST_FORMAT = "yolo-edge-engine-manifest"
MANIFEST_VERSION = 1
TEGRA_RELEASE = Path("/etc/nv_tegra_release")
NO_CHECK_ENV = "YOLO_EDGE_NO_MANIFEST_CHECK"



class EngineMismatch(YoloEdgeError):
    """The engine was built for another TensorRT, GPU or ONNX (or its manifest is missing)."""


def manifest_path(engine_path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + ".manifest.json")


# --- environment --------------------------------------------------------------------------------
def parse_tegra_release(text: str) -> dict | None:
    """``/etc/nv_tegra_release`` -> ``{"l4t": "35.4.1", "jetpack": "5.1.2", "board": "t186ref"}``.

    The first line reads ``# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI:
    aarch64, DATE: ...``: L4T = major ``R35`` + revision ``4.1``. (:mod:`yolo_edge.jetson.releases`)
    """
    return _parse_tegra_release(text)


def _cudnn_version() -> str | None:
    """cuDNN version through ``cudnnGetVersion`` when a libcudnn is loadable (best effort)."""
    for name in ("libcudnn.so.9", "libcudnn.so.8", "libcudnn.so", "cudnn64_9.dll", "cudnn64_8.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            lib.cudnnGetVersion.restype = ctypes.c_size_t
            v = int(lib.cudnnGetVersion())
        except (AttributeError, OSError):  # pragma: no cover - odd library
            return None
        if v >= 90000:  # cuDNN 9: major*10000 + minor*100 + patch
            return f"{v // 10000}.{(v % 10000) // 100}.{v % 100}"
        return f"{v // 1000}.{(v % 1000) // 100}.{v % 100}"  # cuDNN 8: major*1000 + minor*100 + patch
    return None


def current_environment(trt=None, cuda=None, tegra_release=TEGRA_RELEASE, cudnn: bool = True) -> dict:
    """What this machine builds or runs engines with. Every value may be None when unknown.

    Args:
        trt: the ``tensorrt`` module (default: imported when installed).
        cuda: a :class:`~yolo_edge.trt.cuda.CudaBackend` for the GPU name and CUDA version
            (default: the first backend installed, if any).
        tegra_release: path of ``nv_tegra_release`` (Jetson); a missing file means "not a Jetson".
    """
    from ..deps import available

    env: dict[str, Any] = {"tensorrt": None, "cuda": None, "cudnn": None, "gpu": None,
                           "compute_capability": None, "l4t": None, "jetpack": None}
    if trt is None and available("tensorrt"):
        from .compat import tensorrt

        try:
            trt = tensorrt()
        except ImportError:  # pragma: no cover - broken install
            trt = None
    if trt is not None:
        env["tensorrt"] = str(getattr(trt, "__version__", None))
    own = None
    if cuda is None:
        try:
            from .cuda import get_backend

            cuda = own = get_backend()
        except (ImportError, YoloEdgeError, OSError, RuntimeError):
            cuda = None
    if cuda is not None:
        try:
            info = cuda.device_info()
        except Exception:  # pragma: no cover - a driver problem must not hide the real error
            info = {}
        finally:
            if own is not None:
                own.close()
        for k in ("gpu", "compute_capability", "cuda"):
            env[k] = info.get(k)
    if cudnn:
        env["cudnn"] = _cudnn_version()
    path = Path(tegra_release) if tegra_release else None
    if path is not None and path.is_file():
        rel = parse_tegra_release(path.read_text(errors="replace"))
        if rel:
            env["l4t"], env["jetpack"] = rel["l4t"], rel["jetpack"]
    return env


# --- manifest -----------------------------------------------------------------------------------
def make_manifest(*, engine_path, onnx_path, onnx_sha256: str, spec, precision: str, mode: str, profile: dict,
                  environment: dict, build: dict, calibration: dict | None = None) -> dict:
    """The manifest of a freshly written engine (see the module doc for the fields)."""
    from .. import __version__

    engine_path = Path(engine_path)
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "yolo_edge": __version__,
        "engine": {"file": engine_path.name, "sha256": sha256_file(engine_path), "bytes": engine_path.stat().st_size},
        "onnx": {"path": _rel(onnx_path, engine_path.parent), "sha256": onnx_sha256},
        "precision": precision,
        "precision_mode": mode,
        "nms": spec.nms.flavour if spec is not None else None,
        "profile": profile,
        "calibration": calibration,
        "environment": environment,
        "build": build,
        "spec": spec.to_dict() if spec is not None else None,
    }


def _rel(path, start: Path) -> str:
    try:
        return os.path.relpath(Path(path).resolve(), Path(start).resolve())
    except ValueError:  # pragma: no cover - another drive on Windows
        return str(Path(path).resolve())


def write_manifest(engine_path, manifest: Mapping) -> Path:
    path = manifest_path(engine_path)
    with atomic_write(path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=False)
        f.write("\n")
    return path


def read_manifest(engine_path) -> dict | None:
    """The manifest next to ``engine_path``; None when there is none; an error when unreadable."""
    path = manifest_path(engine_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EngineMismatch(f"{path} is not readable JSON ({e}); rebuild the engine with `yolo-edge build`") from e
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise EngineMismatch(f"{path} is not a yolo-edge engine manifest; rebuild the engine with `yolo-edge build`")
    return data


@dataclass(frozen=True)
class Difference:
    """One way the engine does not fit: ``what`` with its value at build time and now."""

    key: str
    what: str
    built: Any
    here: Any

    def __str__(self) -> str:
        return f"{self.what}: built with {self.built}, here {self.here}"


def _major_minor_patch(v) -> str | None:
    m = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", str(v)) if v else None
    return f"{m.group(1)}.{m.group(2)}.{m.group(3) or 0}" if m else None


def _major(v) -> str | None:
    m = re.match(r"^(\d+)", str(v)) if v else None
    return m.group(1) if m else None


# key, label, normaliser
_CHECKS = (
    ("tensorrt", "TensorRT", _major_minor_patch),
    ("gpu", "GPU", lambda v: str(v).strip() if v else None),
    ("compute_capability", "GPU compute capability", lambda v: str(v) if v else None),
    ("cuda", "CUDA major version", _major),
    ("l4t", "Jetson L4T release", lambda v: str(v) if v else None),
)


def check_manifest(manifest: Mapping, env: Mapping) -> list[Difference]:
    """Differences between the build environment in ``manifest`` and ``env``
    (:func:`current_environment`). A value unknown on either side is not compared, except the
    L4T release: an engine built on a Jetson does not run on a desktop GPU and vice versa."""
    built = manifest.get("environment") or {}
    diffs = []
    for key, label, norm in _CHECKS:
        a, b = norm(built.get(key)), norm(env.get(key))
        if key == "l4t" and (a or b) and a != b:
            diffs.append(Difference(key, label, a or "not a Jetson", b or "not a Jetson"))
        elif a is not None and b is not None and a != b:
            diffs.append(Difference(key, label, built.get(key), env.get(key)))
    return diffs


def check_files(manifest: Mapping, engine_path) -> list[Difference]:
    """The engine file's hash, and the ONNX's when that file is still where it was at build time."""
    engine_path = Path(engine_path)
    diffs = []
    want = (manifest.get("engine") or {}).get("sha256")
    if want:
        got = sha256_file(engine_path)
        if got != want:
            diffs.append(Difference("engine_sha256", "engine file", f"sha256 {want[:12]}", f"sha256 {got[:12]} "
                                    "(the engine file was replaced or modified after the build)"))
    onnx = manifest.get("onnx") or {}
    if onnx.get("path") and onnx.get("sha256"):
        p = Path(onnx["path"])
        p = p if p.is_absolute() else engine_path.parent / p
        if p.is_file():
            got = sha256_file(p)
            if got != onnx["sha256"]:
                diffs.append(Difference("onnx_sha256", f"ONNX {p.name}", f"sha256 {onnx['sha256'][:12]}",
                                        f"sha256 {got[:12]} (re-exported since the build)"))
    return diffs


def rebuild_command(manifest: Mapping | None, engine_path) -> str:
    cmd = ((manifest or {}).get("build") or {}).get("command")
    if cmd:
        return cmd
    return f"yolo-edge build MODEL.onnx --out {engine_path}"


def verify(engine_path, env: Mapping | None = None, manifest: Mapping | None = None) -> dict:
    """The manifest of ``engine_path`` when the engine fits this machine and its files; raises
    :class:`EngineMismatch` naming every difference and the rebuild command otherwise."""
    engine_path = Path(engine_path)
    manifest = manifest if manifest is not None else read_manifest(engine_path)
    if manifest is None:
        raise EngineMismatch(
            f"{engine_path} has no manifest ({manifest_path(engine_path).name}): its TensorRT version, GPU and model "
            f"are unknown. Build engines with `yolo-edge build MODEL.onnx --out {engine_path}`, or load it unchecked "
            f"(TrtRunner(check_manifest=False), --no-manifest-check or {NO_CHECK_ENV}=1)")
    env = env if env is not None else current_environment()
    diffs = check_manifest(manifest, env) + check_files(manifest, engine_path)
    if diffs:
        raise EngineMismatch(f"{engine_path} does not fit: " + "; ".join(map(str, diffs))
                             + f". Rebuild it here: {rebuild_command(manifest, engine_path)}")
    return dict(manifest)


def checks_disabled() -> bool:
    return os.environ.get(NO_CHECK_ENV, "").strip().lower() in ("1", "true", "yes", "on")
