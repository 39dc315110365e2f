"""The sensitive FP16 guard (precision/sensitivity.py ``sensitive_guard``): which layers the FLOP
share kept out of INT8 goes to.

References: each layer's gain is recomputed by brute force, one Q/DQ graph per layer written by
``quantize_qdq(exclude=[layer])`` and run by ONNX Runtime (not the switchable graph the guard
uses); the loss is checked against the hand-computed case of the refinement's torch loss; FLOP
shares come from the precision map's ``node_flops``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from yolo_edge.errors import YoloEdgeError  # noqa: E402
from yolo_edge.precision.int8 import Int8Config, quantize_qdq  # noqa: E402
from yolo_edge.precision.sensitivity import GuardChoice, detector_loss, sensitive_guard  # noqa: E402


def test_detector_loss_is_the_hand_computed_score_and_iou_terms():
    """The case of test_refine's torch loss, in numpy, per image (two copies of the image: the same)."""
    fb = np.array([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 4.0, 4.0], [5.0, 5.0, 6.0, 6.0]]])
    qb = np.array([[[0.0, 0.0, 10.0, 5.0], [1.0, 1.0, 5.0, 5.0], [0.0, 0.0, 1.0, 1.0]]])
    fs = np.array([[[0.9, 0.1], [0.2, 0.3], [0.01, 0.02]]])
    qs = np.array([[[0.8, 0.1], [0.2, 0.5], [0.03, 0.02]]])
    want = (0.01 + 0.04 + 0.0004) + 0.9 * (1 - 0.5) + 0.3 * (1 - 9 / 23)
    assert detector_loss((fb, fs), (qb, qs)) == pytest.approx(want, rel=1e-9)
    two = [np.concatenate([a, a]) for a in (fb, fs, qb, qs)]
    assert detector_loss(two[:2], two[2:]) == pytest.approx(want, rel=1e-9)
    assert detector_loss((fb, fs), (fb, fs)) == pytest.approx(0.0, abs=1e-9)  # the IoU epsilon


def test_detector_loss_matches_the_refinements_torch_loss_on_random_outputs():
    torch = pytest.importorskip("torch")
    from yolo_edge.precision.refine import output_loss

    r = np.random.default_rng(5)
    xy = r.uniform(0, 50, (3, 40, 2))
    fb = np.concatenate([xy, xy + r.uniform(1, 20, (3, 40, 2))], -1)
    qb = fb + r.normal(0, 1.5, fb.shape)
    fs, qs = r.uniform(0, 0.3, (3, 40, 5)), r.uniform(0, 0.3, (3, 40, 5))
    want = float(output_loss(torch, (torch.from_numpy(qb), torch.from_numpy(qs)),
                             (torch.from_numpy(fb), torch.from_numpy(fs)))) / 3
    assert detector_loss((fb, fs), (qb, qs)) == pytest.approx(want, rel=1e-9)


def _toy():
    import test_refine
    from test_refine import _images, _quant_setup, toy_detector

    rng, test_refine.RNG = test_refine.RNG, np.random.default_rng(3)  # the same weights in every test
    try:
        m = toy_detector()
    finally:
        test_refine.RNG = rng
    cfg, sites, weighted, amax = _quant_setup(m)
    by = {n.name: n for n in m.graph.node}
    # clipped inputs so that the layers differ in damage, and the most damaged layer (c1, gain about 10
    # on 59 % of the FLOPs) is not the best per FLOP (c2, about 3 on 13 %); the head's gain is negative
    amax[by["c1"].input[0]] *= 0.05
    amax[by["c2"].input[0]] *= 0.5
    return m, Int8Config(placement="trt", shift="off"), weighted, amax, _images(4, seed=21)


def _loss(m, q, images):
    from test_refine import _ort

    return float(np.mean([detector_loss(_ort(m, x), _ort(q, x)) for x in images]))


def _shares(m, layers):
    from yolo_edge.precision.precision_map import _shapes, node_flops

    shapes = _shapes(m)
    f = {n.name: node_flops(n, shapes) for n in m.graph.node if n.name in layers}
    return {k: v / sum(f.values()) for k, v in f.items()}


def test_each_gain_is_what_keeping_that_layer_fp16_buys_as_onnxruntime_runs_it():
    m, cfg, weighted, amax, images = _toy()
    full = quantize_qdq(m, amax, cfg)
    g = sensitive_guard(m, full, images, weighted, 1.0)
    assert isinstance(g, GuardChoice) and sorted(g.gain) == sorted(weighted) and g.images == 4
    assert g.full_error == pytest.approx(_loss(m, full, images), rel=1e-4)
    assert g.share == pytest.approx(_shares(m, weighted))
    for layer in weighted:  # one Q/DQ graph per layer, written without it
        ref = g.full_error - _loss(m, quantize_qdq(m, amax, Int8Config(placement="trt", shift="off",
                                                                       exclude=(layer,))), images)
        assert g.gain[layer] == pytest.approx(ref, rel=1e-3, abs=1e-6 * g.full_error)
    assert max(g.gain.values()) > 0.05 * g.full_error  # the toy's layers do matter


def test_layers_are_taken_by_gain_per_flop_within_the_share():
    m, cfg, weighted, amax, images = _toy()
    full = quantize_qdq(m, amax, cfg)
    every = sensitive_guard(m, full, images, weighted, 1.0)
    share = every.share
    for cap in (0.0, 0.03, 0.1, 0.3, 0.6, 1.0):
        g = sensitive_guard(m, full, images, weighted, cap)
        # the greedy rule, written out: best gain per FLOP first, skip what no longer fits or buys nothing
        want, spent = [], 0.0
        for n in sorted(every.gain, key=lambda k: -every.gain[k] / share[k]):
            if share[n] <= cap and every.gain[n] > 0 and spent + share[n] <= cap + 1e-12:
                want.append(n)
                spent += share[n]
        assert g.nodes == want, cap
        assert g.spent() <= cap + 1e-12
        assert sorted(g.skipped) == sorted(n for n in weighted if share[n] > cap)
        assert all(n not in g.gain for n in g.skipped)  # too big alone: never measured
    # by gain alone c1 would come first; per FLOP it is c2, then c1 no longer fits under 0.6
    assert sensitive_guard(m, full, images, weighted, 0.6).nodes == ["c2", "stem"]
    assert every.gain["head"] < 0 and "head" not in every.nodes
    # a convolution that is not a candidate is not INT8 either: it counts against the share
    no_stem = [n for n in weighted if n != "stem"]
    assert sensitive_guard(m, full, images, no_stem, 0.4).nodes == ["c2"]  # 0.4 - 0.22 left: c2 (0.13) fits
    g = sensitive_guard(m, full, images, no_stem, 0.3)  # 0.08 left: c2 does not fit, the head buys nothing
    assert g.nodes == [] and g.budget == pytest.approx(0.3 - share["stem"])


def test_the_guard_lowers_the_loss_on_images_it_did_not_measure():
    """Keeping the chosen layers FP16 must help on images the choice was not measured on too."""
    from test_refine import _images

    m, cfg, weighted, amax, images = _toy()
    full = quantize_qdq(m, amax, cfg)
    g = sensitive_guard(m, full, images, weighted, 0.3)
    assert g.nodes
    held_out = _images(4, seed=99)
    chosen = quantize_qdq(m, amax, Int8Config(placement="trt", shift="off", exclude=tuple(g.nodes)))
    assert _loss(m, chosen, held_out) < _loss(m, full, held_out)


def test_cli_flags_mirror_the_module_and_reach_the_config():
    import argparse

    from yolo_edge.precision import cli, sensitivity
    from yolo_edge.precision.pipeline import PrecisionConfig, run_precision

    assert cli.GUARDS == sensitivity.GUARDS and cli.GUARD_IMAGES == sensitivity.GUARD_IMAGES
    assert cli.DEFAULT_GUARD == sensitivity.DEFAULT_GUARD == PrecisionConfig().guard == "sensitive"
    p = argparse.ArgumentParser()
    cli.add_precision_args(p)
    for argv, guard, share in (([], "sensitive", cli.HEAD_GUARD_SHARE), (["--int8-guard", "head"], "head", 0.05),
                               (["--int8-guard-share", "0.02"], "sensitive", 0.02),
                               (["--int8-head-guard", "0"], "sensitive", 0.0)):
        cfg = cli.config_from_args(p.parse_args(["--int8", *argv]), Path("out"), "m", fp16=True, int8=True)
        assert (cfg.guard, cfg.head_guard) == (guard, share)
    with pytest.raises(SystemExit):
        p.parse_args(["--int8-guard", "tail"])
    with pytest.raises(YoloEdgeError, match="guard must be"):
        run_precision("missing.onnx", PrecisionConfig(guard="tail"))
