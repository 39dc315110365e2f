"""Shared fixtures: real photos from installed packages, and device markers that skip cleanly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest


def _has(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


def _cuda_available() -> bool:
    if _has("torch"):
        import torch

        if torch.cuda.is_available():
            return True
    if _has("onnxruntime"):
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()
    return False


def pytest_collection_modifyitems(config, items):
    skip_trt = pytest.mark.skip(reason="needs TensorRT (not importable here)")
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device (none visible)")
    has_trt = _has("tensorrt")
    has_cuda = None
    for item in items:
        if "needs_trt" in item.keywords and not has_trt:
            item.add_marker(skip_trt)
        if "needs_cuda" in item.keywords:
            if has_cuda is None:
                has_cuda = _cuda_available()
            if not has_cuda:
                item.add_marker(skip_cuda)


def _photo(name: str) -> np.ndarray:
    """A real photo as uint8 BGR: scikit-image's data set and matplotlib's sample data."""
    import cv2

    if name == "grace_hopper":  # portrait 600x512, ships with matplotlib
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert img is not None, path
        return img
    from skimage import data

    rgb = getattr(data, name)()
    if rgb.ndim == 2:
        return rgb
    return np.ascontiguousarray(rgb[..., ::-1])


PHOTOS = {
    "landscape": "coffee",  # 400x600
    "square": "astronaut",  # 512x512
    "portrait": "grace_hopper",  # 600x512
    "wide": "rocket",  # 427x640
    "gray": "camera",  # 512x512 grayscale
}


@pytest.fixture(scope="session")
def nudenet_onnx() -> Path:
    """A real, trained Ultralytics YOLOv8n (320x320, 18 classes) as ONNX, shipped by the nudenet
    package on PyPI; skips when the package or the file is absent."""
    pytest.importorskip("nudenet")
    path = Path(importlib.util.find_spec("nudenet").origin).parent / "320n.onnx"
    if not path.is_file():
        pytest.skip("nudenet does not ship 320n.onnx in this version")
    return path


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    pytest.importorskip("skimage")
    pytest.importorskip("matplotlib")
    return {k: _photo(v) for k, v in PHOTOS.items()}


def _fit_batchnorm(model, x) -> None:
    """Set every BatchNorm's running statistics to those of the batch ``x`` (one train-mode pass).

    A freshly initialised YOLO scores every anchor alike (NMS ties everywhere); statistics measured
    on real images make its activations image-dependent. Leaves the model in eval mode."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
