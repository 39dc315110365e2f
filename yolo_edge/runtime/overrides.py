"""What the user asks at run time (``--conf``, ``--iou``, ``--max-det``, ``--imgsz``) against what the
model allows, checked before any image is read.

* A model without NMS: the thresholds go to the numpy NMS (an :class:`NmsSpec`).
* A model with NMS embedded (DESIGN §2): its score threshold, IoU threshold and K are baked in. A
  *stricter* ``--conf`` or a *lower* ``--max-det`` is applied exactly after the embedded NMS by
  :class:`NmsPostFilter` (greedy NMS visits boxes by descending score, so the boxes above a higher
  threshold and the top ``k`` are the same as if the graph had been exported with them); a looser
  one, or another IoU threshold, cannot be recovered from its output and is refused with a
  re-export command.
* An input size other than the model's (an exported model is fixed-size) is refused the same way.

:func:`apply_overrides` wraps the runner in the filter, so ``Detector`` and the stream pipeline,
which only see a runner, need no special case.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

import numpy as np

from ..errors import YoloEdgeError
from ..spec import NmsSpec

_EPS = 1e-9


def _reexport(what: str) -> str:
    return f"re-export the model with the value you need: yolo-edge export {what}"


def apply_overrides(runner, conf: float | None = None, iou: float | None = None, max_det: int | None = None,
                    imgsz=None):
    """Check the user's overrides against ``runner``; return ``(runner, nms)``.

    ``runner`` is the same object, or an :class:`NmsPostFilter` around it for a model with NMS
    embedded; ``nms`` is the :class:`NmsSpec` for the numpy NMS of a model without (``None`` when
    nothing was asked). Raises :class:`YoloEdgeError` for what the model cannot do.
    """
    spec = runner.spec
    if imgsz is not None:
        want = tuple(int(v) for v in imgsz)
        if len(want) == 1:
            want = (want[0], want[0])
        have = tuple(spec.imgsz)
        if want != have:
            raise YoloEdgeError(f"this model runs at its exported input size {have[0]}x{have[1]}, not "
                                f"{want[0]}x{want[1]}; {_reexport(f'--imgsz {want[0]} {want[1]}')}")
    if runner.output_layout != "nms":
        changes = {k: v for k, v in (("score_threshold", conf), ("iou_threshold", iou), ("max_det", max_det))
                   if v is not None}
        return runner, (replace(spec.nms, **changes) if changes else None)
    baked = spec.nms
    if iou is not None and abs(iou - baked.iou_threshold) > _EPS:
        raise YoloEdgeError(f"this model has NMS embedded with IoU threshold {baked.iou_threshold:g}; --iou {iou:g} "
                            f"cannot be applied afterwards; {_reexport(f'--iou {iou:g}')}")
    if conf is not None and conf < baked.score_threshold - _EPS:
        raise YoloEdgeError(f"this model has NMS embedded with score threshold {baked.score_threshold:g}: boxes below "
                            f"it are gone, so --conf {conf:g} can only be stricter; {_reexport(f'--conf {conf:g}')}")
    if max_det is not None and max_det > baked.max_det:
        raise YoloEdgeError(f"this model has NMS embedded with at most {baked.max_det} detections per image; "
                            f"--max-det {max_det} can only be lower; {_reexport(f'--max-det {max_det}')}")
    stricter_conf = conf is not None and conf > baked.score_threshold + _EPS
    lower_k = max_det is not None and max_det < baked.max_det
    if not (stricter_conf or lower_k):
        return runner, None
    return NmsPostFilter(runner, conf if stricter_conf else None, max_det if lower_k else None), None


def filter_nms_outputs(out: Mapping[str, np.ndarray], score_threshold: float | None = None,
                       max_det: int | None = None) -> dict[str, np.ndarray]:
    """EfficientNMS-layout outputs with only the rows ``score > score_threshold`` among the first
    ``max_det`` per image; shapes unchanged, rows past the new ``num_dets`` zeroed (padding)."""
    num = np.asarray(out["num_dets"]).reshape(-1).astype(np.int64)
    boxes, scores, classes = out["det_boxes"].copy(), out["det_scores"].copy(), out["det_classes"].copy()
    B, K = scores.shape
    valid = np.arange(K)[None, :] < num[:, None]  # (B, K)
    if score_threshold is not None:
        valid &= scores > score_threshold
    new_num = np.zeros(B, np.int64)
    for b in range(B):
        keep = np.flatnonzero(valid[b])
        order = keep[np.argsort(-scores[b, keep], kind="stable")]  # already sorted; kept safe for any flavour
        if max_det is not None:
            order = order[:max_det]
        n = len(order)
        boxes[b, :n], scores[b, :n], classes[b, :n] = boxes[b, order], scores[b, order], classes[b, order]
        boxes[b, n:], scores[b, n:], classes[b, n:] = 0, 0, 0
        new_num[b] = n
    res = dict(out)
    res.update(num_dets=new_num.astype(out["num_dets"].dtype).reshape(out["num_dets"].shape),
               det_boxes=boxes, det_scores=scores, det_classes=classes)
    return res


class NmsPostFilter:
    """A runner around a runner with NMS embedded: its outputs with a stricter score threshold and/or
    fewer detections per image. Everything else (inputs, lifecycle, batch limits) is the inner runner's;
    :attr:`spec` records the thresholds in effect."""

    def __init__(self, runner, score_threshold: float | None = None, max_det: int | None = None):
        self.runner = runner
        self.score_threshold, self.max_det = score_threshold, max_det
        nms: NmsSpec = runner.spec.nms
        changes = {}
        if score_threshold is not None:
            changes["score_threshold"] = float(score_threshold)
        if max_det is not None:
            changes["max_det"] = int(max_det)
        self.spec = runner.spec.replace(nms=replace(nms, **changes))

    def __getattr__(self, name):  # inputs, output_names, is_active, activate, fixed_batch, ...
        if name == "runner":
            raise AttributeError(name)
        return getattr(self.runner, name)

    def __enter__(self):
        self.runner.__enter__()
        return self

    def __exit__(self, *exc):
        return self.runner.__exit__(*exc)

    def infer(self, feeds):
        return filter_nms_outputs(self.runner.infer(feeds), self.score_threshold, self.max_det)

    def __repr__(self) -> str:
        return f"NmsPostFilter({self.runner!r}, score_threshold={self.score_threshold}, max_det={self.max_det})"
