"""Hand-built ONNX pieces shared by the precision tests (Q/DQ placement, range refinement)."""

from __future__ import annotations

import numpy as np
from onnx import helper as h, numpy_helper as nh


def conv_silu(name, x, cin, cout, rng, k=3, stride=1, pads=None, silu=True, w_scale=0.3):
    """``Conv`` (random weights ``N(0, w_scale)`` and bias ``N(0, 0.1)`` from ``rng``, same padding
    unless ``pads``), then ``x * Sigmoid(x)`` when ``silu``: ``(nodes, initializers, output name)``."""
    w = nh.from_array((rng.standard_normal((cout, cin, k, k)) * w_scale).astype(np.float32), f"{name}.w")
    b = nh.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), f"{name}.b")
    nodes = [h.make_node("Conv", [x, w.name, b.name], [f"{name}.c"], name=name, strides=[stride] * 2,
                         pads=pads if pads is not None else [k // 2] * 4)]
    out = f"{name}.c"
    if silu:
        nodes += [h.make_node("Sigmoid", [out], [f"{name}.s"], name=f"{name}.sig"),
                  h.make_node("Mul", [out, f"{name}.s"], [f"{name}.y"], name=f"{name}.mul")]
        out = f"{name}.y"
    return nodes, [w, b], out
