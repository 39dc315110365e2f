"""Typed descriptions of a model, its preprocessing and its NMS.

``ModelSpec.to_json()`` is what export writes into ``metadata_props["yolo_edge"]`` and what
engine manifests carry; runners read it back with ``ModelSpec.from_json`` instead of asking
the user again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import ModelFormatError

METADATA_KEY = "yolo_edge"
NMS_FLAVOURS = ("onnx", "trt", "none")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class LetterboxSpec:
    """How an image becomes the model input (DESIGN §3)."""

    size: tuple[int, int] = (640, 640)  # (H, W) of the network input
    pad_value: int = 114
    scaleup: bool = True  # allow r > 1 (small images are enlarged)
    interpolation: str = "linear"  # cv2.INTER_LINEAR when shrinking and enlarging

    def __post_init__(self):
        h, w = (int(v) for v in self.size)
        if h <= 0 or w <= 0:
            raise ValueError(f"letterbox size must be positive, got {self.size}")
        object.__setattr__(self, "size", (h, w))
        if self.interpolation not in ("linear", "area"):
            raise ValueError(f"interpolation must be 'linear' or 'area', got {self.interpolation!r}")


@dataclass(frozen=True)
class NmsSpec:
    """Post-processing settings, baked into exported graphs with NMS embedded."""

    flavour: str = "onnx"  # onnx | trt | none
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_det: int = 100
    class_agnostic: bool = False

    def __post_init__(self):
        if self.flavour not in NMS_FLAVOURS:
            raise ValueError(f"NMS flavour must be one of {NMS_FLAVOURS}, got {self.flavour!r}")
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {self.iou_threshold}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if self.max_det < 1:
            raise ValueError(f"max_det must be >= 1, got {self.max_det}")


@dataclass(frozen=True)
class ModelSpec:
    """Everything a runner needs to know about a model besides its weights."""

    names: tuple[str, ...] = ()
    letterbox: LetterboxSpec = field(default_factory=LetterboxSpec)
    strides: tuple[int, ...] = (8, 16, 32)
    reg_max: int = 16
    nms: NmsSpec = field(default_factory=NmsSpec)
    precision: str = "fp32"
    scale: str = ""
    checkpoint_sha256: str = ""
    version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def nc(self) -> int:
        return len(self.names)

    @property
    def imgsz(self) -> tuple[int, int]:
        return self.letterbox.size

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["names"] = list(self.names)
        d["strides"] = list(self.strides)
        d["letterbox"]["size"] = list(self.letterbox.size)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelSpec":
        try:
            d = dict(d)
            lb = LetterboxSpec(**{**d.pop("letterbox", {})})
            nms = NmsSpec(**d.pop("nms", {}))
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = {k: d.pop(k) for k in list(d) if k not in known}
            spec = cls(letterbox=lb, nms=nms, **d)
            if unknown:
                spec = spec.replace(extra={**spec.extra, **unknown})
            return spec
        except (TypeError, ValueError) as e:
            raise ModelFormatError(f"invalid yolo_edge metadata: {e}") from e

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ModelFormatError(f"yolo_edge metadata is not valid JSON: {e}") from e
