"""Lazy optional imports. The only module that knows the pip extra of each dependency."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependency

# module name -> extra that installs it
EXTRAS: dict[str, str] = {
    "torch": "torch",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxslim": "onnx",
    "onnxsim": "onnx",
    "tensorrt": "trt",
    "pycuda": "trt",
    "cuda": "trt",
    "pycocotools": "eval",
    "matplotlib": "eval",
    "tritonclient": "triton",
    "grpc": "triton",
    "google": "triton",  # protobuf text_format for Triton's config.pbtxt
    "tqdm": None,  # type: ignore[dict-item]
}


def require(module: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - exercised in the clean-venv test
        root = module.split(".")[0]
        raise MissingDependency(module, extra or EXTRAS.get(root), detail=str(e)) from e


def available(module: str) -> bool:
    """True if ``module`` can be imported (does not import it when already absent)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def progress(iterable=None, **kwargs):
    """A tqdm progress bar when tqdm is installed, else the plain iterable."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return iterable
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
