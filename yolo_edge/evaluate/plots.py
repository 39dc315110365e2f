"""PR curves and reliability diagrams of an :class:`~yolo_edge.evaluate.coco.EvalResult`.

matplotlib is imported inside the functions (``pip install 'yolo-edge[eval]'``), and only its
object-oriented API is used (``Figure`` + Agg canvas): no pyplot state, no global backend
switch. Files are written atomically (temporary file, then rename); the format follows the
suffix (``.png``, ``.svg``, ``.pdf``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..deps import require
from ..util import atomic_path
from .calibration_error import ReliabilityDiagram

__all__ = ["plot_pr_curves", "plot_reliability"]

_MAX_LEGEND_CLASSES = 20


def _figure(figsize=(6.4, 5.2)):
    require("matplotlib", extra="eval")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt)
    return path


def plot_pr_curves(result, path, title: str | None = None) -> Path:
    """Precision-recall curves at IoU 0.50 (area all, ``max_dets``), one thin line per class with
    ground truth and the class mean in bold, from pycocotools' interpolated precision.

    Args:
        result: an ``EvalResult``.
        path: output file (created with its parent folders).
    Returns:
        ``path``.
    """
    fig = _figure()
    ax = fig.add_subplot()
    recall = np.asarray(result.recall)
    curves = np.asarray(result.precision)[0]  # (K, R) at IoU 0.50
    valid = [k for k in range(curves.shape[0]) if np.all(np.isfinite(curves[k]))]
    legend = len(valid) <= _MAX_LEGEND_CLASSES
    for k in valid:
        name = result.names[k]
        ap50 = result.per_class_ap50.get(name, float("nan"))
        ax.plot(recall, curves[k], lw=1, alpha=0.7, label=f"{name} {ap50:.3f}" if legend else None)
    if valid:
        ax.plot(recall, curves[valid].mean(axis=0), lw=2.5, color="tab:blue" if not legend else "black",
                label=f"all classes {result.map50:.3f} mAP50")
        ax.legend(loc="lower left", fontsize="small", frameon=False)
    else:
        ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.set_title(title or f"PR curves, IoU 0.50 ({result.n_images} images, {result.n_gt} objects)")
    return _save(fig, path)


def plot_reliability(result, path, title: str | None = None) -> Path:
    """Reliability diagram: accuracy per confidence bin against the diagonal, the gap shaded,
    and the share of predictions per bin underneath. ECE in the title.

    Args:
        result: an ``EvalResult`` (or a :class:`ReliabilityDiagram`).
        path: output file (created with its parent folders).
    Returns:
        ``path``.
    """
    rel: ReliabilityDiagram = result if isinstance(result, ReliabilityDiagram) else result.reliability
    fig = _figure(figsize=(5.6, 6.4))
    ax, ax_hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    edges = rel.edges
    width = np.diff(edges)
    full = rel.counts > 0
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="perfect calibration")
    if full.any():
        ax.bar(edges[:-1][full], rel.accuracy[full], width=width[full], align="edge",
               color="tab:blue", edgecolor="white", alpha=0.85, label="accuracy")
        gap_lo = np.minimum(rel.accuracy[full], rel.confidence[full])
        gap_hi = np.maximum(rel.accuracy[full], rel.confidence[full])
        ax.bar(edges[:-1][full], gap_hi - gap_lo, bottom=gap_lo, width=width[full], align="edge",
               color="tab:red", alpha=0.3, hatch="//", edgecolor="tab:red", label="gap")
        ax.legend(loc="upper left", fontsize="small", frameon=False)
        share = rel.counts / rel.n
        ax_hist.bar(edges[:-1], share, width=width, align="edge", color="gray", edgecolor="white")
    else:
        ax.text(0.5, 0.5, "no predictions", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (IoU >= 0.5, same class)")
    ax.grid(alpha=0.3)
    ece = rel.ece
    ece_txt = "n/a" if not np.isfinite(ece) else f"{ece:.3f}"
    ax.set_title(title or f"Reliability: ECE {ece_txt} ({rel.n} predictions, {len(rel.counts)} bins)")
    ax_hist.set_xlabel("confidence")
    ax_hist.set_ylabel("share")
    ax_hist.grid(alpha=0.3)
    return _save(fig, path)
