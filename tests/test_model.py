"""Reference model: shapes, fusion, decode oracle, checkpoints, size."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from yolo_edge.errors import CheckpointError, YoloEdgeError  # noqa: E402
from yolo_edge.model import (  # noqa: E402
    YOLO,
    ModelConfig,
    count_params,
    decode_torch,
    gflops,
    load_checkpoint,
    load_state_dict_checked,
    model_summary,
    read_checkpoint,
    save_checkpoint,
)

H, W = 64, 96  # non-square, multiples of 32
STRIDES = (8, 16, 32)


@pytest.fixture(scope="module")
def model_n():
    torch.manual_seed(0)
    return YOLO.from_scale("n", nc=5)


def randomize_bn(model, seed=0):
    """Non-trivial BatchNorm statistics so that fusion is actually exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)


def slow_decode(feats, strides, reg_max):
    """Loop-per-anchor numpy decode, straight from the formula in DESIGN §2."""
    B = feats[0].shape[0]
    boxes, scores = [], []
    for b in range(B):
        bb, ss = [], []
        for f, s in zip(feats, strides):
            f = f.astype(np.float64)
            _, _, h, w = f.shape
            for i in range(h):
                for j in range(w):
                    cx, cy = (j + 0.5) * s, (i + 0.5) * s
                    d = []
                    for k in range(4):
                        logits = f[b, k * reg_max : (k + 1) * reg_max, i, j]
                        p = np.exp(logits - logits.max())
                        p /= p.sum()
                        d.append(float((p * np.arange(reg_max)).sum()))
                    l, t, r, bt = d
                    bb.append([cx - l * s, cy - t * s, cx + r * s, cy + bt * s])
                    ss.append(1 / (1 + np.exp(-f[b, 4 * reg_max :, i, j])))
        boxes.append(bb)
        scores.append(ss)
    return np.asarray(boxes), np.asarray(scores)


def lead_decode(feats, strides, reg_max):
    postprocess = pytest.importorskip("yolo_edge.postprocess")
    return postprocess.decode(feats, strides, reg_max)


# ---------------------------------------------------------------- shapes and config


@pytest.mark.parametrize("train", [True, False])
def test_forward_shapes(model_n, train):
    model_n.train(train)
    x = torch.rand(2, 3, H, W)
    with torch.no_grad():
        feats = model_n(x)
    model_n.eval()
    assert isinstance(feats, list) and len(feats) == 3
    for f, s in zip(feats, STRIDES):
        assert f.shape == (2, 4 * 16 + 5, H // s, W // s)
        assert f.dtype == torch.float32


def test_infer_shapes(model_n):
    with torch.no_grad():
        boxes, scores = model_n.eval().infer(torch.rand(1, 3, H, W))
    A = sum((H // s) * (W // s) for s in STRIDES)
    assert boxes.shape == (1, A, 4) and scores.shape == (1, A, 5)
    assert float(scores.min()) >= 0 and float(scores.max()) <= 1


def test_head_bias_init(model_n):
    for box, cls, s in zip(model_n.head.box, model_n.head.cls, STRIDES):
        assert torch.all(box[-1].bias == 1.0)
        assert torch.allclose(cls[-1].bias, torch.tensor(math.log(5 / 5 / (640 / s) ** 2)))


def test_config_defaults_and_validation():
    cfg = ModelConfig(nc=3)
    assert cfg.names == ["class0", "class1", "class2"] and cfg.strides == (8, 16, 32) and cfg.no == 67
    assert ModelConfig(strides=[8, 16, 32]).strides == (8, 16, 32)
    for bad in (dict(scale="q"), dict(nc=0), dict(reg_max=1), dict(strides=(8, 16)), dict(nc=2, names=["a"])):
        with pytest.raises(ValueError):
            ModelConfig(**bad)


# ---------------------------------------------------------------- fusion


def test_fuse_matches_unfused():
    torch.manual_seed(1)
    model = YOLO.from_scale("n", nc=3)
    randomize_bn(model)
    model.eval()
    x = torch.rand(1, 3, H, W)
    with torch.no_grad():
        ref = model(x)
        assert model.fuse() is model and model.fused
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        out = model(x)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- decode


@pytest.mark.parametrize("oracle", [slow_decode, lead_decode], ids=["slow_loop", "postprocess"])
def test_decode_torch_matches_numpy(oracle):
    reg_max, nc = 16, 3
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 4 * reg_max + nc, H // s, W // s, generator=g) * 3 for s in STRIDES]
    boxes, scores = decode_torch(feats, STRIDES, reg_max)
    ref_boxes, ref_scores = oracle([f.numpy() for f in feats], STRIDES, reg_max)
    np.testing.assert_allclose(boxes.numpy(), ref_boxes, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-5, atol=1e-6)


def test_decode_torch_known_box():
    """One cell at stride 32, logits peaked at bins l=1, t=2, r=3, b=4."""
    reg_max = 16
    f = torch.full((1, 4 * reg_max + 1, 2, 3), -1e4)
    for k, d in enumerate((1, 2, 3, 4)):
        f[0, k * reg_max + d] = 0.0
    f[0, 4 * reg_max] = 0.0  # score 0.5
    boxes, scores = decode_torch([f], (32,), reg_max)
    # cell (i=1, j=2): centre (80, 48)
    torch.testing.assert_close(boxes[0, 1 * 3 + 2], torch.tensor([80.0 - 32, 48.0 - 64, 80.0 + 96, 48.0 + 128]))
    assert torch.all(scores == 0.5)


# ---------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("half", [False, True])
def test_checkpoint_round_trip(model_n, tmp_path, half):
    model_n.eval()
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model_n, half=half, epoch=3, note="x", map50=np.float64(0.5))
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.pt"]  # no temp file left behind
    ckpt = read_checkpoint(path)
    assert ckpt["format"] == "yolo-edge/v1" and ckpt["meta"] == {"epoch": 3, "note": "x", "map50": 0.5}
    assert ckpt["config"] == {"scale": "n", "nc": 5, "reg_max": 16, "strides": [8, 16, 32],
                              "names": [f"class{i}" for i in range(5)]}
    want = torch.float16 if half else torch.float32
    assert ckpt["state_dict"]["stem.conv.weight"].dtype == want

    loaded = load_checkpoint(path)
    assert not loaded.training and loaded.cfg == model_n.cfg
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(1, 3, H, W)
    with torch.no_grad():
        for a, b in zip(loaded(x), model_n(x)):
            if half:
                torch.testing.assert_close(a, b, rtol=1e-2, atol=2e-2)
            else:
                torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_save_refuses_fused_and_bad_meta(tmp_path):
    model = YOLO.from_scale("n", nc=1)
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "a.pt", model, when=object())
    with pytest.raises(ValueError, match="fused"):
        save_checkpoint(tmp_path / "b.pt", model.fuse())
    assert list(tmp_path.iterdir()) == []


def write_garbage(path):
    path.write_bytes(b"\x00not a checkpoint" * 10)


def write_foreign(path):
    torch.save({"model": {"w": torch.zeros(1)}}, path)


def write_wrong_format(path):
    torch.save({"format": "yolo-edge/v9", "config": {}, "state_dict": {}}, path)


@pytest.mark.parametrize(
    "make, match",
    [
        (None, "checkpoint not found"),
        (write_garbage, "not a yolo-edge checkpoint"),
        (write_foreign, "not a yolo-edge checkpoint"),
        (write_wrong_format, "format 'yolo-edge/v9'"),
    ],
)
def test_load_errors(tmp_path, make, match):
    path = tmp_path / "c.pt"
    if make is not None:
        make(path)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert isinstance(info.value, YoloEdgeError)
    assert "\n" not in str(info.value)


def test_load_wrong_class_count_names_key_and_shapes(tmp_path):
    other = YOLO.from_scale("n", nc=3)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_checked(YOLO.from_scale("n", nc=5), other.state_dict())
    msg = str(info.value)
    assert "'head.cls.0.4.weight'" in msg and "(3, 64, 1, 1)" in msg and "(5, 64, 1, 1)" in msg

    # a checkpoint whose config disagrees with its weights (config says nc=5, weights have 3 classes)
    path = save_checkpoint(tmp_path / "c.pt", other)
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"].update(nc=5, names=None)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"head\.cls\.0\.4\.weight.*\(3, 64, 1, 1\).*\(5, 64, 1, 1\)"):
        load_checkpoint(path)


def test_load_state_dict_checked_missing_and_extra_keys():
    model = YOLO.from_scale("n", nc=2)
    sd = dict(model.state_dict())
    del sd["stem.bn.running_var"]
    with pytest.raises(CheckpointError, match="lack key 'stem.bn.running_var'"):
        load_state_dict_checked(model, sd)
    sd = dict(model.state_dict(), extra=torch.zeros(1))
    with pytest.raises(CheckpointError, match="'extra'"):
        load_state_dict_checked(model, sd)


# ---------------------------------------------------------------- size


def test_n_params_and_gflops_near_ultralytics():
    model = YOLO.from_scale("n", nc=80)
    summary = model_summary(model, 640)
    assert summary["params"] == count_params(model)
    assert abs(summary["params"] / 2.6e6 - 1) < 0.25, summary
    assert abs(summary["gflops"] / 6.5 - 1) < 0.25, summary
    assert model.training  # gflops restores the mode
    # GFLOPs scale with the number of pixels (attention adds a little on top)
    assert gflops(model, 320) == pytest.approx(summary["gflops"] / 4, rel=0.02)


# ---------------------------------------------------------------- export-friendliness


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_infer_exports_with_dynamic_batch_and_size(tmp_path):
    """Export once at 64x96, run at another batch and size: no shape may be baked in."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")

    class Infer(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.infer(x)

    model = YOLO.from_scale("n", nc=3).eval().fuse()
    path = tmp_path / "m.onnx"
    torch.onnx.export(Infer(model), (torch.rand(1, 3, H, W),), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["boxes", "scores"],
                      dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}})
    x = torch.rand(2, 3, 128, 64)
    boxes, scores = ort.InferenceSession(str(path)).run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref_boxes, ref_scores = model.infer(x)
    np.testing.assert_allclose(boxes, ref_boxes.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(scores, ref_scores.numpy(), rtol=1e-4, atol=1e-5)
