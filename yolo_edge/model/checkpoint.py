"""Checkpoint I/O for the reference model.

A checkpoint is a plain dict that `torch.load(weights_only=True)` can read (tensors, str,
int, float, bool, None, lists and dicts only):

    {"format": "yolo-edge/v1",
     "config": {"scale", "nc", "reg_max", "strides", "names"},
     "state_dict": {name: tensor},          # fp32, or fp16 floats with half=True
     "meta": {...json-able primitives}}     # epoch, metrics, data hash, ...
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from yolo_edge.errors import CheckpointError
from yolo_edge.model.yolo import YOLO, ModelConfig

FORMAT = "yolo-edge/v1"


def save_checkpoint(path: str | os.PathLike, model: YOLO, *, half: bool = False, **meta) -> Path:
    """Write `model` to `path` atomically (temporary file in the same folder, then os.replace).

    `half=True` stores floating-point tensors as fp16 (half the size; loading restores fp32).
    `meta` values must be JSON-serializable primitives. Returns the path written.
    """
    path = Path(path)
    if model.fused:
        raise ValueError("cannot save a fused model: save the unfused model and call fuse() after loading")
    try:  # round trip through JSON: plain types only (np.float64 -> float), so weights_only can read it back
        meta = json.loads(json.dumps(meta))
    except TypeError as e:
        raise TypeError(f"checkpoint meta must be JSON-serializable primitives: {e}") from None

    state_dict = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        state_dict[k] = v.half() if half and v.is_floating_point() else v.clone()
    ckpt = {"format": FORMAT, "config": model.cfg.to_dict(), "state_dict": state_dict, "meta": meta}

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate the checkpoint dict at `path` without building a model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling errors come in many types (UnpicklingError, RuntimeError, EOFError, ...)
        import re

        text = re.sub(r"\x1b\[[0-9;?]*[ -/]*[@-~]", "", str(e))  # torch colours its message
        glob = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if glob:  # a pickled object (a whole module, an Ultralytics .pt): loading it would run its code
            raise CheckpointError(
                f"{path} is a pickled Python object ({glob.group(1)}), not a yolo-edge checkpoint; it is not "
                "loaded because unpickling can run code (weights_only=True). Save a yolo-edge model with "
                "yolo_edge.model.save_checkpoint; export another framework's model to ONNX and adapt it with "
                "yolo-edge export --from-onnx") from e
        reason = (text.strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(
            f"{path} is not a yolo-edge checkpoint (torch.load with weights_only=True failed: {reason})"
        ) from e
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise CheckpointError(f"{path} is not a yolo-edge checkpoint (no 'format' key)")
    if ckpt["format"] != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {ckpt['format']!r}; this version reads {FORMAT!r}")
    for key in ("config", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{path} is a damaged yolo-edge checkpoint (missing {key!r})")
    return ckpt


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", return_meta: bool = False):
    """Rebuild the model saved at `path`: fp32, eval mode, weights checked key by key.

    Raises CheckpointError (one line) when the file is missing, is not a yolo-edge
    checkpoint, or its weights do not fit the model its config describes.
    With ``return_meta=True`` returns ``(model, meta dict)``.
    """
    ckpt = read_checkpoint(path, map_location)
    try:
        cfg = ModelConfig(**ckpt["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has an invalid model config: {e}") from e
    model = YOLO(cfg)
    try:
        load_state_dict_checked(model, ckpt["state_dict"])
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    model = model.to(map_location).float().eval()
    return (model, dict(ckpt.get("meta") or {})) if return_meta else model


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load `state_dict` into `model` after checking every key and shape.

    Raises CheckpointError naming the first difference in the model's key order: a key the
    model has and the weights lack, a shape mismatch (both shapes), or a key the model lacks.
    Tensors are copied into the model's existing dtype (fp16 weights load into fp32 params).
    """
    expected = model.state_dict()
    for key, ref in expected.items():
        if key not in state_dict:
            raise CheckpointError(f"weights lack key {key!r} (model expects shape {tuple(ref.shape)})")
        got = state_dict[key]
        if not isinstance(got, torch.Tensor):
            raise CheckpointError(f"weights key {key!r} is a {type(got).__name__}, not a tensor")
        if got.shape != ref.shape:
            raise CheckpointError(
                f"shape mismatch at {key!r}: weights {tuple(got.shape)} vs model {tuple(ref.shape)}"
            )
    extra = [k for k in state_dict if k not in expected]
    if extra:
        raise CheckpointError(f"weights have key {extra[0]!r} that the model lacks ({len(extra)} unexpected keys)")
    model.load_state_dict(state_dict, strict=True)
    return model
