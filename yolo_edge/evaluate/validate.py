"""Evaluate any Detector (PyTorch, ONNX Runtime, TensorRT) on a labelled dataset."""

from __future__ import annotations

from ..deps import progress
from ..spec import NmsSpec
from .coco import DetectionEvaluator, EvalResult

# Thresholds for mAP: keep low-confidence boxes so the PR curve is complete (COCO keeps the top 100).
VAL_NMS = NmsSpec(score_threshold=0.001, iou_threshold=0.6, max_det=300)


def evaluate_detector(detector, dataset, max_images: int | None = None, batch: int = 8,
                      desc: str = "val") -> EvalResult:
    """Run ``detector`` over ``dataset`` (``len``/``[i] -> Sample``) and score it with pycocotools.

    The detector letterboxes, infers and unletterboxes exactly as in deployment; ground truth
    stays in source pixels.
    """
    from ..data.check import check_classes

    check_classes(dataset, detector.names, what="the dataset")  # ids below the model's count are valid
    names = detector.names or getattr(dataset, "names", ())
    ev = DetectionEvaluator(names)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    bar = progress(total=n, desc=desc, unit="img")
    for start in range(0, n, batch):
        samples = [dataset[i] for i in range(start, min(n, start + batch))]
        dets = detector([s.image for s in samples])
        for s, d in zip(samples, dets):
            ev.update(d, s.xyxy, s.class_ids, image_size=s.image.shape[:2], image_id=s.image_id)
        if bar is not None and hasattr(bar, "update"):
            bar.update(len(samples))
    if bar is not None and hasattr(bar, "close"):
        bar.close()
    return ev.compute()
