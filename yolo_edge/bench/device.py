"""Where a benchmark ran: CPU, GPU, library versions, Jetson power mode; never fails.

Everything is best effort: a value that cannot be found is ``None``, and no optional package is
required (versions come from package metadata, GPU details from :mod:`yolo_edge.trt` or PyTorch
when they are importable). On a Jetson, the power mode and the tegrastats power readings come from
:mod:`yolo_edge.jetson` when that package is installed.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

TEGRA_RELEASE = Path("/etc/nv_tegra_release")


def _read(path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``, then ``sysctl`` names via platform), else the ISA."""
    text = _read("/proc/cpuinfo")
    for key in ("model name", "Model", "Hardware", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.M)
        if m and m.group(1).strip():
            return m.group(1).strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_cores() -> int:
    """Logical CPUs this process may use (affinity), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def memory_gb() -> float | None:
    m = re.search(r"^MemTotal:\s+(\d+) kB", _read("/proc/meminfo"), re.M)
    return round(int(m.group(1)) / 2**20, 1) if m else None


def package_version(name: str) -> str | None:
    """Installed version of a distribution, without importing it."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def ort_providers() -> list[str]:
    from ..deps import available

    if not available("onnxruntime"):
        return []
    try:
        import onnxruntime as ort

        return list(ort.get_available_providers())
    except Exception:  # a broken install must not stop the report
        return []


def is_jetson() -> bool:
    return TEGRA_RELEASE.is_file() or "tegra" in _read("/proc/device-tree/compatible").lower()


def jetson_power_mode() -> Any:
    """The nvpmodel power mode through ``yolo_edge.jetson.power.current_power_mode()``, else None."""
    try:
        from ..jetson.power import current_power_mode  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        mode = current_power_mode()
    except Exception:  # not a Jetson after all, nvpmodel missing, ...
        return None
    if mode is None or isinstance(mode, (str, int, float)):
        return mode
    if isinstance(mode, dict):
        return {str(k): v if isinstance(v, (str, int, float, type(None))) else str(v) for k, v in mode.items()}
    for attr in ("to_dict", "_asdict"):
        if hasattr(mode, attr):
            try:
                return {str(k): v if isinstance(v, (str, int, float, type(None))) else str(v)
                        for k, v in getattr(mode, attr)().items()}
            except Exception:
                pass
    import dataclasses

    if dataclasses.is_dataclass(mode):
        return {k: v if isinstance(v, (str, int, float, type(None))) else str(v)
                for k, v in dataclasses.asdict(mode).items()}
    return str(mode)


def gpu_environment() -> dict[str, Any]:
    """GPU name, compute capability, CUDA/cuDNN/TensorRT versions, L4T/JetPack: from
    :func:`yolo_edge.trt.current_environment` (TensorRT and a CUDA binding), else PyTorch."""
    env: dict[str, Any] = {"gpu": None, "compute_capability": None, "cuda": None, "cudnn": None, "tensorrt": None,
                           "l4t": None, "jetpack": None}
    try:
        from ..trt.manifest import current_environment

        env.update({k: v for k, v in current_environment().items() if v is not None})
    except Exception:
        pass
    if env["gpu"] is None:
        from ..deps import available

        if available("torch"):
            try:
                import torch

                if torch.cuda.is_available():
                    p = torch.cuda.get_device_properties(0)
                    env["gpu"] = p.name
                    env["compute_capability"] = f"{p.major}.{p.minor}"
                    env["cuda"] = env["cuda"] or torch.version.cuda
                    v = torch.backends.cudnn.version()
                    if v and not env["cudnn"]:
                        env["cudnn"] = str(v)
            except Exception:
                pass
    return env


def device_context(gpu: bool = True) -> dict[str, Any]:
    """Everything that says where numbers were measured (JSON-ready)."""
    import numpy as np

    ctx: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_cores": cpu_cores(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "memory_gb": memory_gb(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": package_version("opencv-python-headless") or package_version("opencv-python"),
        "torch": package_version("torch"),
        "onnxruntime": package_version("onnxruntime") or package_version("onnxruntime-gpu"),
        "ort_providers": ort_providers(),
        "ultralytics": package_version("ultralytics"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "jetson": is_jetson(),
        "power_mode": None,
    }
    if gpu:
        ctx.update(gpu_environment())
    else:
        ctx.update({"gpu": None, "tensorrt": package_version("tensorrt")})
    if ctx["jetson"]:
        ctx["power_mode"] = jetson_power_mode()
        try:
            from ..jetson.power import read_model  # type: ignore[import-not-found]

            ctx["jetson_model"] = read_model()
        except Exception:
            ctx["jetson_model"] = None
    return ctx


def slug(text: str, max_len: int = 40) -> str:
    """``"AMD EPYC 7B13 64-Core Processor"`` -> ``"amd-epyc-7b13-64-core"``."""
    t = text.lower()
    t = re.sub(r"\((r|tm|c)\)", "", t)
    t = re.sub(r"\b(processor|cpu @.*|with radeon graphics|nvidia corporation)\b", "", t)
    t = re.sub(r"@.*$", "", t)
    t = re.sub(r"[^a-z0-9]+", "-", t).strip("-")
    t = re.sub(r"-+", "-", t)
    return t[:max_len].rstrip("-") or "unknown"


def device_slug(ctx: dict[str, Any], gpu: bool = False) -> str:
    """Folder name of a device: ``cpu-amd-epyc-2c`` for CPU-only runs, the GPU's name otherwise
    (``nvidia-h100-80gb-hbm3``), ``<board>-<power mode>`` on a Jetson
    (``nvidia-jetson-orin-nano-developer-kit-15w``)."""
    if ctx.get("jetson"):
        name = slug(str(ctx.get("jetson_model") or ctx.get("gpu") or "jetson"))
        if not name.startswith("jetson") and "jetson" not in name:
            name = f"jetson-{name}"
        mode = ctx.get("power_mode")
        if isinstance(mode, dict):
            mode = mode.get("name") or mode.get("id")
        return name + (f"-{slug(str(mode), 20)}" if mode not in (None, "") else "")
    if gpu and ctx.get("gpu"):
        return slug(str(ctx["gpu"]))
    return f"cpu-{slug(str(ctx.get('cpu') or 'unknown'))}-{ctx.get('cpu_cores') or cpu_cores()}c"


# --- power (Jetson) ---------------------------------------------------------------------------------
class PowerMeter:
    """Mean board power over a stretch of work, from :class:`yolo_edge.jetson.tegrastats.TegrastatsReader`.

        meter = PowerMeter.create()        # None when not a Jetson / no tegrastats / no yolo_edge.jetson
        meter.start(); ...; watts = meter.stop()     # None when no sample had power rails
    """

    def __init__(self, reader):
        self.reader = reader

    @classmethod
    def create(cls, interval_ms: int = 100) -> "PowerMeter | None":
        if not is_jetson():
            return None
        try:
            from ..jetson.tegrastats import TegrastatsReader  # type: ignore[import-not-found]
        except ImportError:
            return None
        try:
            if not TegrastatsReader.available():
                return None
            return cls(TegrastatsReader(interval_ms=interval_ms))
        except Exception:
            return None

    def start(self) -> None:
        try:
            self.reader.start()
        except Exception:
            self.reader = None

    def stop(self) -> float | None:
        if self.reader is None:
            return None
        try:
            self.reader.stop()
            w = self.reader.summary().mean_power_w
        except Exception:
            return None
        return float(w) if w else None


__all__ = ["PowerMeter", "cpu_cores", "cpu_model", "device_context", "device_slug", "gpu_environment", "is_jetson",
           "jetson_power_mode", "package_version", "slug"]
