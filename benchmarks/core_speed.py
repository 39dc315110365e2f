"""Speed of the numpy core on this machine: letterbox and decode + NMS (issue 2's goal: < 2 ms p50 each).

    python benchmarks/core_speed.py [--repeat 200]

Inputs: a real 1920x1080 frame (scikit-image's astronaut resized, else random pixels), and head
outputs of 8400 anchors x 80 classes at 640x640 in two regimes: "typical" (a trained model on a
scene with ~20 objects: a few hundred candidates above 0.25, in clusters) and "stress" (about a
thousand scattered candidates spread over all 80 classes).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_edge.letterbox import letterbox  # noqa: E402
from yolo_edge.postprocess import decode, postprocess, postprocess_raw  # noqa: E402
from yolo_edge.spec import NmsSpec  # noqa: E402


def timeit(fn, repeat: int) -> tuple[float, float]:
    for _ in range(5):
        fn()
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return float(np.percentile(t, 50) * 1e3), float(np.percentile(t, 90) * 1e3)


def frame_1080p() -> np.ndarray:
    try:
        import cv2
        from skimage import data

        return cv2.resize(np.ascontiguousarray(data.astronaut()[..., ::-1]), (1920, 1080))
    except ImportError:
        return np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)


def head_outputs(regime: str, nc: int = 80, reg_max: int = 16):
    rng = np.random.default_rng(0)
    feats = []
    for s in (80, 40, 20):
        f = np.empty((1, 4 * reg_max + nc, s, s), np.float32)
        f[:, : 4 * reg_max] = rng.normal(0, 2, (1, 4 * reg_max, s, s))
        f[:, 4 * reg_max:] = rng.normal(-9, 1.5, (1, nc, s, s))
        feats.append(f)
    if regime == "typical":  # 20 objects, each lighting up a 5x5 patch of cells in one class
        for _ in range(20):
            lvl = rng.integers(0, 3)
            f = feats[lvl]
            i, j = rng.integers(2, f.shape[2] - 3, 2)
            f[0, 4 * reg_max + rng.integers(0, nc), i - 2:i + 3, j - 2:j + 3] = rng.normal(1.5, 1.5, (5, 5))
    else:
        for f in feats:
            f[:, 4 * reg_max:] = rng.normal(-7, 2, f[:, 4 * reg_max:].shape)
    return feats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    rows = []
    frame = frame_1080p()
    rows.append(("letterbox 1920x1080 -> 640x640", "-", *timeit(lambda: letterbox(frame, 640), args.repeat)))
    spec = NmsSpec(score_threshold=0.25, iou_threshold=0.45, max_det=100)
    for regime in ("typical", "stress"):
        feats = head_outputs(regime)
        boxes, scores = decode(feats, (8, 16, 32), 16)
        n_cand = int((scores > spec.score_threshold).sum())
        rows.append((f"decode + NMS, raw head ({regime})", n_cand,
                     *timeit(lambda: postprocess_raw(feats, (8, 16, 32), 16, spec), args.repeat)))
        rows.append((f"NMS of decoded boxes/scores ({regime})", n_cand,
                     *timeit(lambda: postprocess(boxes[0], scores[0], spec), args.repeat)))
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print("| stage | candidates > 0.25 | p50 ms | p90 ms |\n|---|---:|---:|---:|")
    for name, n, p50, p90 in rows:
        print(f"| {name} | {n} | {p50:.2f} | {p90:.2f} |")


if __name__ == "__main__":
    main()
