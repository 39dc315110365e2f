"""The baseline users would otherwise run: the PyTorch eager pipeline of the reference notebooks.

Written the way a notebook writes it, on purpose independent of the rest of the package except
for the model definition and its checkpoint loader:

1. **letterbox** with OpenCV in the Ultralytics notebook style (``round(dw ± 0.1)`` padding, pad
   114, ``INTER_LINEAR``), ``img[..., ::-1].transpose(2, 0, 1)``, ``torch.from_numpy(...).float() / 255``;
2. **model** in eager mode under ``torch.no_grad()``, *unfused* (Conv -> BatchNorm -> SiLU, as
   trained; nobody folds BatchNorm in a notebook);
3. **decode** in torch: anchor grid, DFL softmax times bin index, ``x1y1 = anchor - lt``,
   ``x2y2 = anchor + rb``, times the stride, class sigmoid;
4. **NMS**: multi-label candidates (every (box, class) with score > ``conf``), then a Python loop
   over the classes present, each running greedy NMS in torch (torchvision's ``batched_nms`` is
   not assumed installed), then the top ``max_det`` by score;
5. boxes back to the source image: minus padding, divided by the gain, clipped.

It computes the same detections as :class:`~yolo_edge.runtime.Detector` on the same checkpoint up
to float rounding and the one-pixel difference of its padding rounding (``tests/test_bench.py``
checks that on real photos); only the speed differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..detections import Detections
from ..spec import NmsSpec


def letterbox_notebook(img: np.ndarray, new_shape=(640, 640), color=(114, 114, 114)):
    """Resize keeping the aspect ratio, pad to ``new_shape``. Returns ``(img, gain, (pad_x, pad_y))``."""
    import cv2

    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    shape = img.shape[:2]  # (h, w)
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    new_unpad = int(round(shape[1] * r)), int(round(shape[0] * r))  # (w, h)
    dw, dh = (new_shape[1] - new_unpad[0]) / 2, (new_shape[0] - new_unpad[1]) / 2
    if shape[::-1] != new_unpad:
        img = cv2.resize(img, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return img, r, (left, top)


def make_anchors(feats, strides, offset: float = 0.5):
    """Anchor points ``(A, 2)`` in grid units and strides ``(A, 1)``, level by level, row-major."""
    import torch

    points, stride_tensor = [], []
    for f, s in zip(feats, strides):
        _, _, h, w = f.shape
        sx = torch.arange(w, dtype=f.dtype) + offset
        sy = torch.arange(h, dtype=f.dtype) + offset
        sy, sx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride_tensor.append(torch.full((h * w, 1), s, dtype=f.dtype))
    return torch.cat(points), torch.cat(stride_tensor)


def decode(feats, strides, reg_max: int, nc: int):
    """Raw head outputs -> ``(B, 4 + nc, A)``: xyxy boxes in input pixels, then class scores."""
    import torch

    b = feats[0].shape[0]
    x = torch.cat([f.view(b, 4 * reg_max + nc, -1) for f in feats], 2)  # (B, no, A)
    box, cls = x.split((4 * reg_max, nc), 1)
    a = box.shape[2]
    proj = torch.arange(reg_max, dtype=x.dtype)
    dist = box.view(b, 4, reg_max, a).transpose(2, 1).softmax(1)  # (B, reg_max, 4, A)
    dist = (dist * proj.view(1, reg_max, 1, 1)).sum(1)  # (B, 4, A)
    anchors, stride = make_anchors(feats, strides)
    anchors, stride = anchors.transpose(0, 1).unsqueeze(0), stride.transpose(0, 1)  # (1, 2, A), (1, A)
    lt, rb = dist.chunk(2, 1)
    boxes = torch.cat((anchors - lt, anchors + rb), 1) * stride  # (B, 4, A)
    return torch.cat((boxes, cls.sigmoid()), 1)


def box_iou(box1, box2):
    """IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes -> ``(N, M)``."""
    import torch

    (a1, a2), (b1, b2) = box1.unsqueeze(1).chunk(2, 2), box2.unsqueeze(0).chunk(2, 2)
    inter = (torch.min(a2, b2) - torch.max(a1, b1)).clamp(0).prod(2)
    area1 = (box1[:, 2] - box1[:, 0]) * (box1[:, 3] - box1[:, 1])
    area2 = (box2[:, 2] - box2[:, 0]) * (box2[:, 3] - box2[:, 1])
    return inter / (area1[:, None] + area2[None, :] - inter + 1e-9)


def greedy_nms(boxes, scores, iou_thres: float):
    """Keep the best box, drop the rest that overlap it by more than ``iou_thres``, repeat."""
    import torch

    order = torch.argsort(scores, descending=True, stable=True)
    keep = []
    while order.numel() > 0:
        i = order[0]
        keep.append(i)
        if order.numel() == 1:
            break
        ious = box_iou(boxes[i].unsqueeze(0), boxes[order[1:]])[0]
        order = order[1:][ious <= iou_thres]
    return torch.stack(keep) if keep else torch.zeros(0, dtype=torch.long)


def non_max_suppression(prediction, conf_thres: float = 0.25, iou_thres: float = 0.45, max_det: int = 100):
    """``(B, 4 + nc, A)`` -> per image a ``(N, 6)`` tensor ``x1, y1, x2, y2, score, class``."""
    import torch

    output = []
    for x in prediction.transpose(1, 2):  # (A, 4 + nc) per image
        box, cls = x[:, :4], x[:, 4:]
        i, j = (cls > conf_thres).nonzero(as_tuple=True)  # multi-label candidates
        dets = torch.cat((box[i], cls[i, j, None], j[:, None].float()), 1)
        keep = []
        for c in dets[:, 5].unique():  # one class at a time
            idx = (dets[:, 5] == c).nonzero().flatten()
            keep.append(idx[greedy_nms(dets[idx, :4], dets[idx, 4], iou_thres)])
        if keep:
            k = torch.cat(keep)
            k = k[torch.argsort(dets[k, 4], descending=True, stable=True)][:max_det]
            output.append(dets[k])
        else:
            output.append(torch.zeros((0, 6)))
    return output


def scale_boxes(boxes, gain: float, pad, shape):
    """Letterboxed input pixels -> source pixels, clipped to ``shape`` ``(h, w)``."""
    boxes = boxes.clone()
    boxes[:, [0, 2]] -= pad[0]
    boxes[:, [1, 3]] -= pad[1]
    boxes[:, :4] /= gain
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clamp(0, shape[1])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clamp(0, shape[0])
    return boxes


class ReferencePipeline:
    """The notebook pipeline behind the stage interface of :mod:`yolo_edge.bench.timing`.

    ``pipe(images)`` returns :class:`~yolo_edge.detections.Detections` in source pixels (one per
    image, or one for a single image), like a Detector, so the same evaluation code scores it.

    Args:
        checkpoint: a yolo-edge ``.pt`` (default: the bundled one).
        imgsz: network input ``(H, W)`` (default: the checkpoint's training size, else 640).
        nms: score/IoU thresholds and ``max_det`` (default: the same as an export's, 0.25 / 0.45 / 100).
    """

    name = "reference"

    def __init__(self, checkpoint=None, imgsz=None, nms: NmsSpec | None = None, device: str = "cpu"):
        from ..deps import require

        self.torch = require("torch")
        from ..model import load_checkpoint

        if checkpoint is None:
            from ..assets import default_checkpoint

            checkpoint = default_checkpoint()
        self.model, meta = load_checkpoint(Path(checkpoint), return_meta=True)
        self.model = self.model.to(device).eval()
        self.device = device
        imgsz = imgsz if imgsz is not None else meta.get("imgsz", 640)
        self.imgsz = (int(imgsz), int(imgsz)) if isinstance(imgsz, (int, np.integer)) else tuple(int(v) for v in imgsz)
        self.nms = nms or NmsSpec()
        cfg = self.model.cfg
        self.names = tuple(cfg.names)
        self.strides, self.reg_max, self.nc = tuple(cfg.strides), cfg.reg_max, cfg.nc

    # -- the three stages ----------------------------------------------------------------------
    def preprocess(self, images: Sequence[np.ndarray]):
        torch = self.torch
        tensors, metas = [], []
        for img in images:
            lb, gain, pad = letterbox_notebook(img, self.imgsz)
            x = np.ascontiguousarray(lb[..., ::-1].transpose(2, 0, 1))  # BGR -> RGB, HWC -> CHW
            tensors.append(torch.from_numpy(x).float() / 255.0)
            metas.append((gain, pad, img.shape[:2]))
        return torch.stack(tensors).to(self.device), metas

    def forward(self, x):
        with self.torch.no_grad():
            return decode(self.model(x), self.strides, self.reg_max, self.nc)

    def postprocess(self, pred, metas) -> list[Detections]:
        out = []
        dets = non_max_suppression(pred.cpu(), self.nms.score_threshold, self.nms.iou_threshold, self.nms.max_det)
        for d, (gain, pad, shape) in zip(dets, metas):
            d = scale_boxes(d, gain, pad, shape)
            out.append(Detections(d[:, :4].numpy(), d[:, 4].numpy(), d[:, 5].numpy().astype(np.int32)))
        return out

    def __call__(self, images):
        single = isinstance(images, np.ndarray) and images.ndim in (2, 3)
        imgs = [images] if single else list(images)
        x, metas = self.preprocess(imgs)
        res = self.postprocess(self.forward(x), metas)
        return res[0] if single else res

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


__all__ = ["ReferencePipeline", "box_iou", "decode", "greedy_nms", "letterbox_notebook", "make_anchors",
           "non_max_suppression", "scale_boxes"]
