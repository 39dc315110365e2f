"""The calibration methods against independent references.

* ``entropy`` and ``percentile`` against ONNX Runtime's own ``HistogramCollector`` (the calibrator
  behind ``onnxruntime.quantization`` and NVIDIA ModelOpt's ONNX ``calibration_method="entropy"``),
  fed the same tensors one image at a time, as ModelOpt feeds it;
* ``mse`` against a brute-force search over the raw values.

On synthetic heavy-tailed tensors always; on the real activations of yolov5n on coco128 images
when ``../shared/data`` is there — both the histogram fed whole tensors and the one the calibration
pass builds (exact tail, strided bulk).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
calibrate = pytest.importorskip("onnxruntime.quantization.calibrate")

from yolo_edge.errors import YoloEdgeError  # noqa: E402
from yolo_edge.precision.amax import SignedHistogram, entropy_amax, fake_quant_error, mse_amax  # noqa: E402
from yolo_edge.precision.calibration import TensorStats  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL = pytest.mark.skipif(not (DATA / "yolov5n.onnx").is_file() or not (DATA / "coco128").is_dir(),
                          reason="../shared/data (yolov5n.onnx, coco128) not present")


def ort_amax(images: list[np.ndarray], method: str, percentile: float = 99.99) -> float:
    """ONNX Runtime's range for ``images`` (one collect() per image), as symmetric ``amax``: the
    EntropyCalibrater defaults (128 bins, 128 quantized bins) or the PercentileCalibrater ones
    (2048 bins of |x|, symmetric)."""
    if method == "entropy":
        c = calibrate.HistogramCollector("entropy", False, 128, 128, 99.999, "same")
    else:
        c = calibrate.HistogramCollector("percentile", True, 2048, 128, percentile, "same")
    with contextlib.redirect_stdout(io.StringIO()):
        for x in images:
            c.collect({"t": [np.asarray(x, np.float32)]})
        r = c.compute_collection_result()["t"]
    return max(abs(float(r[0])), abs(float(r[1])))


def ours(images: list[np.ndarray]) -> TensorStats:
    st = TensorStats("t")
    for x in images:
        st.add(x.min(), x.max(), x)
    return st


def synthetic_images(seed: int, n: int = 6) -> list[np.ndarray]:
    """SiLU-like activations with heavy tails and a range that grows from image to image."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = rng.laplace(0.3, 0.6 + 0.15 * i, 40_000)
        x = x / (1 + np.exp(-x))  # SiLU: floor at -0.278
        x[rng.integers(0, x.size, 5)] *= rng.uniform(1.5, 4.0)  # rare outliers
        out.append(x.astype(np.float32))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_entropy_equals_onnxruntime_on_synthetic_tensors(seed):
    imgs = synthetic_images(seed)
    ref = ort_amax(imgs, "entropy")
    st = ours(imgs)
    assert st.amax("entropy") == pytest.approx(ref, rel=1e-5)
    assert st.amax("entropy") < st.absmax  # it does clip (the outliers), so the test can tell minmax apart


@pytest.mark.parametrize("seed", range(4))
def test_percentile_within_2pct_of_onnxruntime(seed):
    imgs = synthetic_images(seed)
    for p in (99.9, 99.99):
        assert ours(imgs).amax("percentile", p) == pytest.approx(ort_amax(imgs, "percentile", p), rel=0.02)


def test_mse_is_the_brute_force_minimum():
    rng = np.random.default_rng(2)
    imgs = [np.abs(rng.laplace(0, 1, 50_000)).astype(np.float32) * s for s in (1.0, 1.3)]
    st = ours(imgs)
    x = np.concatenate(imgs)
    a = st.amax("mse")
    grid = np.linspace(x.max() / 400, x.max(), 400)  # the slow, obvious search over the raw values
    errs = [fake_quant_error(x, g) for g in grid]
    best = grid[int(np.argmin(errs))]
    assert fake_quant_error(x, a) <= 1.01 * min(errs)
    assert a == pytest.approx(best, rel=0.05)


def test_histogram_grid_and_growth_follow_onnxruntime():
    h = SignedHistogram()
    h.add(np.array([-1.0, 0.5, 1.0], np.float32))
    assert h.top == pytest.approx(1.0) and h.counts.size == 2 * 64 * 16
    h.add(np.array([2.5], np.float32))  # onnxruntime: (2.5 - 1) // (2/128) + 1 = 97 bins a side
    counts, edges = h.entropy_hist()
    assert counts.size == 128 + 2 * 97 and edges[-1] == pytest.approx(1.0 + 97 / 64)
    assert h.total == 4 and h.abs_hist().sum() == 4


def test_unknown_method_is_a_user_error():
    with pytest.raises(YoloEdgeError, match="unknown calibration method"):
        ours(synthetic_images(0, 1)).amax("kl")


def test_entropy_amax_without_a_histogram_is_the_range():
    assert entropy_amax(SignedHistogram(), -0.5, 3.0) == 3.0
    assert mse_amax(np.zeros(8), 0.1, 0.8) == 0.8


# --- real activations: yolov5n on coco128 --------------------------------------------------------
@pytest.fixture(scope="module")
def yolov5n_acts(tmp_path_factory):
    """Conv-input activations of yolov5n on 4 calibration images (whole tensors), and the
    statistics the calibration pass collects on the same images."""
    import onnx

    from yolo_edge.export.adapters import adapt_onnx
    from yolo_edge.precision.calibration import ImageSet, collect_stats, ort_session
    from yolo_edge.precision.graph import expose, find_decode_tail, prepare, strip_nms
    from yolo_edge.precision.int8 import activation_inputs, quantizable_nodes
    from yolo_edge.spec import NmsSpec

    p = adapt_onnx(DATA / "yolov5n.onnx", tmp_path_factory.mktemp("v5") / "m.onnx", fmt="yolov5",
                   nms=NmsSpec(flavour="none"), verbose=False)
    from yolo_edge.export.metadata import get_spec

    src = onnx.load(str(p))
    raw = prepare(strip_nms(src))
    acts = list(activation_inputs(raw, quantizable_nodes(raw, exclude=find_decode_tail(raw).nodes)))
    images = ImageSet(str(DATA / "coco128"), 4)
    lb = get_spec(src).letterbox
    sess = ort_session(expose(raw, acts))
    full = {t: [] for t in acts}
    for x in images.batches(lb, 1):
        for t, v in zip(acts, sess.run(acts, {sess.get_inputs()[0].name: x})):
            full[t].append(v)
    stats = collect_stats(raw, images, lb, sampled=acts, show_progress=False)
    return full, stats


@REAL
@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_real_activations_match_onnxruntime(yolov5n_acts, method):
    full, stats = yolov5n_acts
    worst_whole = worst_pass = 0.0
    clipped = 0
    for t, imgs in full.items():
        ref = ort_amax(imgs, method)
        worst_whole = max(worst_whole, abs(ours(imgs).amax(method) / ref - 1))  # identical tensors
        got = stats.tensors[t].amax(method)  # what the calibration pass collected (exact tail, sampled bulk)
        worst_pass = max(worst_pass, abs(got / ref - 1))
        clipped += got < 0.98 * stats.tensors[t].absmax
    assert worst_whole < 0.02, f"{method}: {100 * worst_whole:.2f} % off ONNX Runtime on identical tensors"
    assert worst_pass < 0.02, f"{method}: calibration pass {100 * worst_pass:.2f} % off ONNX Runtime"
    assert clipped > 0  # the method is not min/max in disguise on these tensors


@REAL
def test_real_activations_mse_is_near_the_brute_force_minimum(yolov5n_acts):
    full, stats = yolov5n_acts
    for t in list(full)[::7]:
        x = np.concatenate([v.ravel() for v in full[t]])[::5]
        a = stats.tensors[t].amax("mse")
        grid = np.linspace(np.abs(x).max() / 200, np.abs(x).max(), 200)
        best = min(fake_quant_error(x, g) for g in grid)
        assert fake_quant_error(x, a) <= 1.10 * best, t  # the histogram blurs spikes (letterbox padding) a little
