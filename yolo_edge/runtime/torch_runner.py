"""PyTorch runner: a checkpoint (or a YOLO module) run in eager mode, with the torch decode.

Outputs the ``decoded`` layout (``boxes``, ``scores``) exactly as an ONNX exported with
``--nms none`` does; NMS then runs in numpy (the reference path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..deps import require
from ..spec import LetterboxSpec, ModelSpec
from .base import DECODED_OUTPUTS, Runner, TensorInfo


def spec_from_model(model, imgsz=(640, 640), checkpoint_sha256: str = "") -> ModelSpec:
    cfg = model.cfg
    names = cfg.names or [f"class{i}" for i in range(cfg.nc)]
    return ModelSpec(names=tuple(names), letterbox=LetterboxSpec(size=tuple(imgsz)), strides=tuple(cfg.strides),
                     reg_max=cfg.reg_max, scale=cfg.scale, checkpoint_sha256=checkpoint_sha256)


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, model, imgsz=None, device: str = "cpu", half: bool = False):
        """
        Args:
            model: path to a yolo-edge checkpoint, or a ``yolo_edge.model.YOLO`` module.
            imgsz: ``(H, W)`` input size (multiples of 32); default from the checkpoint, else 640.
            device: ``cpu``, ``cuda`` or ``cuda:N``.
        """
        self.torch = require("torch")
        from ..model import load_checkpoint

        sha, meta = "", {}
        if isinstance(model, (str, Path)):
            from ..util import sha256_file

            sha = sha256_file(model)
            self.model, meta = load_checkpoint(model, return_meta=True)
        else:
            self.model = model
        if imgsz is None:
            imgsz = meta.get("imgsz", 640)
        if isinstance(imgsz, (int, np.integer)):
            imgsz = (int(imgsz), int(imgsz))
        imgsz = tuple(int(v) for v in imgsz)
        stride = max(self.model.cfg.strides)
        if any(v % stride for v in imgsz):
            from ..errors import YoloEdgeError

            raise YoloEdgeError(f"input size {imgsz} must be a multiple of the largest stride {stride}")
        from .devices import check_torch_device

        self.device = check_torch_device(self.torch, device)
        self.half = half
        spec = spec_from_model(self.model, imgsz, sha)
        super().__init__(spec, [TensorInfo("images", (None, 3, *imgsz), np.dtype(np.float32))], DECODED_OUTPUTS)

    def activate(self) -> None:
        m = self.model.eval().to(self.device)
        self.model = m.half() if self.half else m.float()
        super().activate()

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        x = torch.from_numpy(feeds["images"]).to(self.device)
        if self.half:
            x = x.half()
        with torch.inference_mode():
            boxes, scores = self.model.infer(x)
        return {"boxes": boxes.float().cpu().numpy(), "scores": scores.float().cpu().numpy()}
