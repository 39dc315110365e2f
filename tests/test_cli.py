"""CLI: every subcommand's --help, one-line user errors, and a base install without optional deps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

from yolo_edge.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def subcommands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(sub.choices)


def test_every_help_runs(capsys):
    assert {"predict", "info"} <= set(subcommands())
    for name in subcommands():
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
    assert "usage: yolo-edge" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from yolo_edge.model import YOLO, ModelConfig, save_checkpoint

    torch.manual_seed(0)
    model = YOLO(ModelConfig(scale="n", nc=3, names=["a", "b", "c"]))
    with torch.no_grad():  # make the untrained model confident so that detections exist
        for level in model.head.cls:
            level[-1].bias.fill_(2.0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, imgsz=[128, 128])
    return path


def test_predict_writes_json_and_images(tiny_checkpoint, tmp_path, photos):
    import cv2

    for name in ("landscape", "portrait"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), photos[name])
    out = tmp_path / "out"
    rc = main(["predict", str(tmp_path), "--model", str(tiny_checkpoint), "--out", str(out), "--max-det", "7"])
    assert rc == 0
    data = json.loads((out / "detections.json").read_text())
    assert data["names"] == ["a", "b", "c"] and len(data["images"]) == 2
    for rec in data["images"]:
        img = photos[Path(rec["path"]).stem]
        assert (rec["height"], rec["width"]) == img.shape[:2]
        assert 0 < len(rec["detections"]) <= 7
        for d in rec["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= rec["width"] and 0 <= y1 <= y2 <= rec["height"]
        annotated = cv2.imread(str(out / f"{Path(rec['path']).stem}.jpg"))
        assert annotated.shape == img.shape


def test_predict_matches_detector(tiny_checkpoint, tmp_path, photos):
    """The CLI's JSON holds exactly what the Python API returns (the CLI only maps arguments)."""
    import cv2

    from yolo_edge.runtime import Detector
    from yolo_edge.runtime.torch_runner import TorchRunner

    cv2.imwrite(str(tmp_path / "a.png"), photos["square"])
    main(["predict", str(tmp_path / "a.png"), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o"),
          "--no-images"])
    rec = json.loads((tmp_path / "o" / "detections.json").read_text())["images"][0]["detections"]
    with Detector(TorchRunner(tiny_checkpoint)) as det:
        d = det(photos["square"])
    assert [r["class_id"] for r in rec] == d.class_ids.tolist()
    np.testing.assert_allclose([r["box"] for r in rec], d.xyxy, atol=0.01)


@pytest.mark.parametrize("make_args, message", [
    (lambda p, ck: ["predict", str(p / "missing.jpg"), "--model", str(ck)], "file not found"),
    (lambda p, ck: ["predict", str(p / "bad.jpg"), "--model", str(ck)], "cannot decode image"),
    (lambda p, ck: ["predict", str(p / "bad.jpg"), "--model", str(p / "none.pt")], "model not found"),
    (lambda p, ck: ["predict", str(p / "ok.png"), "--model", str(p / "bad.jpg")], "cannot tell the backend"),
    (lambda p, ck: ["predict", str(p / "ok.png"), "--model", str(p / "other.pt")], "shape mismatch"),
    (lambda p, ck: ["predict", str(p / "ok.png"), "--model", str(p / "junk.pt")], "not a yolo-edge checkpoint"),
    # --imgsz 100 100 is now refused while parsing (exit 2): tests/test_bad_inputs.py
])
def test_user_errors_are_one_line(tiny_checkpoint, tmp_path, capsys, make_args, message):
    import cv2
    import torch

    from yolo_edge.model import YOLO, ModelConfig, load_checkpoint, save_checkpoint

    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((8, 8, 3), np.uint8))
    other = load_checkpoint(tiny_checkpoint)
    save_checkpoint(tmp_path / "other.pt", YOLO(ModelConfig(scale="n", nc=5)))
    ck = torch.load(tmp_path / "other.pt", weights_only=True)
    ck["config"] = other.cfg.to_dict()  # config says 3 classes, weights have 5
    torch.save(ck, tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 10)
    rc = main(make_args(tmp_path, tiny_checkpoint))
    err = capsys.readouterr().err
    assert rc == 1
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_wrong_input_size_for_fixed_model():
    """A runner whose model was built for 640x640 refuses another size with a re-export hint."""
    from yolo_edge.errors import YoloEdgeError
    from yolo_edge.runtime.base import Runner, TensorInfo
    from yolo_edge.spec import ModelSpec

    r = Runner(ModelSpec(), [TensorInfo("images", (1, 3, 640, 640), np.dtype(np.float32))], ["boxes", "scores"])
    r.is_active = True
    with pytest.raises(YoloEdgeError, match=r"input size mismatch.*\(1, 3, 640, 640\).*re-export"):
        r.infer({"images": np.zeros((1, 3, 320, 320), np.float32)})
    with pytest.raises(YoloEdgeError, match="must be float32"):
        r.infer({"images": np.zeros((1, 3, 640, 640), np.float16)})
    with pytest.raises(YoloEdgeError, match="expected inputs"):
        r.infer({"x": np.zeros((1, 3, 640, 640), np.float32)})


@pytest.mark.slow
def test_base_install_in_clean_venv(tmp_path):
    """`pip install .` with no extras: import works, every --help works, torch is absent, and a
    command that needs torch names the extra to install."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(ROOT)], check=True, env=env, cwd=tmp_path)
    code = (
        "import importlib.util, yolo_edge, yolo_edge.runtime, yolo_edge.letterbox, yolo_edge.postprocess\n"
        "assert importlib.util.find_spec('torch') is None and importlib.util.find_spec('onnxruntime') is None\n"
        "from yolo_edge.cli import build_parser\n"
        "p = build_parser(); sub = [a for a in p._actions if a.__class__.__name__ == '_SubParsersAction'][0]\n"
        "print(' '.join(sorted(sub.choices)))\n"
    )
    names = subprocess.run([str(py), "-c", code], check=True, env=env, cwd=tmp_path, capture_output=True,
                           text=True).stdout.split()
    exe = env_dir / "bin" / "yolo-edge"
    for name in ["--help"] + [f"{n} --help" for n in names]:
        r = subprocess.run([str(exe), *name.split()], env=env, cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, (name, r.stderr)
    (tmp_path / "m.pt").write_bytes(b"x")
    r = subprocess.run([str(exe), "info", "--model", str(tmp_path / "m.pt")], env=env, cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "pip install 'yolo-edge[torch]'" in r.stderr and "Traceback" not in r.stderr
