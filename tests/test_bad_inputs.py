"""Bad input never gives a traceback or a silent wrong result (issue 15).

One table: every case runs ``yolo-edge`` in process (``yolo_edge.cli.main``) and checks the exit code
(2 for a usage error, 1 for a user error, 0 where the right answer is to go on with a warning), that
no traceback is printed, the one-line message, and that nothing is left behind where the command
failed. Each case made the old code crash, succeed silently with a wrong result, or fail late.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from yolo_edge.cli import main

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

SECRET = "S3cretPass"


# --------------------------------------------------------------------------- the inputs, made once
def _yolo_dataset(root: Path, n: int, names: bool, extra_lines: dict[int, list[str]] | None = None,
                  class_map=None) -> Path:
    """Synthetic val images in the YOLO layout (labels checked by the independent writer), then edited."""
    from yolo_edge.data import synthetic_split, write_yolo_dataset

    write_yolo_dataset(synthetic_split("val", n), root)
    if not names:
        (root / "names.txt").unlink()
        (root / "dataset.json").unlink()
    for lbl in sorted((root / "labels").glob("*.txt")):
        lines = lbl.read_text().splitlines()
        if class_map is not None:
            lines = [" ".join([str(class_map(int(ln.split()[0])))] + ln.split()[1:]) for ln in lines]
        lbl.write_text("".join(f"{ln}\n" for ln in lines))
    for i, extra in (extra_lines or {}).items():
        lbl = root / "labels" / f"{i:06d}.txt"
        lbl.write_text(lbl.read_text() + "".join(f"{ln}\n" for ln in extra))
    return root


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """Every input the table needs: models, images, datasets, broken files."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from yolo_edge.data import synthetic_split
    from yolo_edge.export.onnx_export import export_onnx
    from yolo_edge.spec import NmsSpec

    d = tmp_path_factory.mktemp("bad_inputs")
    W = SimpleNamespace(d=d)
    # the bundled (trained) checkpoint, exported small: NMS embedded (score 0.25, K 100) and without NMS
    W.onnx = export_onnx(None, d / "m160.onnx", imgsz=(160, 160), simplify=False, verbose=False)
    W.onnx_none = export_onnx(None, d / "m160.none.onnx", imgsz=(160, 160), nms=NmsSpec("none"),
                              simplify=False, verbose=False)
    # images: two readable, one not
    W.imgs = d / "imgs"
    W.imgs.mkdir()
    for i, s in enumerate(synthetic_split("val", 2)):
        cv2.imwrite(str(W.imgs / f"ok{i}.png"), s.image)
    (W.imgs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    W.bad_only = d / "bad_only"
    W.bad_only.mkdir()
    (W.bad_only / "x.png").write_bytes(b"garbage")
    W.empty_dir = d / "empty_dir"
    W.empty_dir.mkdir()
    # datasets
    W.ds_bad = _yolo_dataset(d / "ds_bad", 6, names=True, extra_lines={
        0: ["999 0.5 0.5 0.1 0.1"], 1: ["0 0.5 0.5 -0.2 0.1"], 2: ["0 0.5 0.5 0.1"], 3: ["garbage line x y z"]})
    W.ds_clean = _yolo_dataset(d / "ds_clean", 6, names=True)
    W.ds_partial = _yolo_dataset(d / "ds_partial", 6, names=False, class_map=lambda c: c % 2)  # ids 0, 1 of 8
    W.ds_beyond = _yolo_dataset(d / "ds_beyond", 6, names=False, extra_lines={0: ["9 0.5 0.5 0.1 0.1"]})
    # broken or foreign files
    W.afile = d / "a_file.txt"
    W.afile.write_text("not a folder\n")
    W.empty_onnx = d / "empty.onnx"
    W.empty_onnx.write_bytes(b"")
    W.rand_json = d / "random.json"
    W.rand_json.write_bytes(bytes(range(256)) * 4)
    W.bad_layers = d / "m.engine.layers.json"
    W.bad_layers.write_text('{"Layers": [1, 2, 3]}')
    W.rand_mp4 = d / "random.mp4"
    W.rand_mp4.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    W.trunc_avi = d / "truncated.avi"
    _truncated_avi(W.trunc_avi)
    W.pickled = d / "pickled.pt"
    from yolo_edge.model import YOLO, ModelConfig

    torch.save(YOLO(ModelConfig(scale="n", nc=3)), W.pickled)
    W.ultra = d / "ultralytics_dyn.onnx"
    _ultralytics_like(W.ultra)
    return W


def _truncated_avi(path: Path) -> None:
    """An MJPEG AVI cut in half: its header still says 60 frames."""
    full = path.with_name("full.avi")
    vw = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for i in range(60):
        vw.write(np.full((64, 96, 3), 4 * i, np.uint8))
    vw.release()
    data = full.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _ultralytics_like(path: Path) -> None:
    """The common Ultralytics export shape: dynamic batch, fixed 320x320, output [batch, 4+C, A]."""
    import onnx
    from onnx import TensorProto, helper

    C, A = 3, 40 * 40 + 20 * 20 + 10 * 10
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 320, 320])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + C, A])
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Reshape", ["m", "s1"], ["m2"]),
             helper.make_node("Expand", ["m2", "s2"], ["output0"])]
    init = [helper.make_tensor("s1", TensorProto.INT64, [3], [-1, 1, 1]),
            helper.make_tensor("s2", TensorProto.INT64, [3], [1, 4 + C, A])]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], init), opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))


def _cuda_torch() -> bool:
    import torch

    return torch.cuda.is_available()


# --------------------------------------------------------------------------- the table
# (id, argv(w, out), exit code, message regex (on the one error line, or anywhere on stderr for rc 0),
#  what must not exist afterwards ("out" = the case's output path), extra check(w, out, stdout, stderr))
def _scores_above(t):
    def check(w, out, so, se):
        recs = json.loads((out / "detections.json").read_text())["images"]
        scores = [d["score"] for r in recs for d in r["detections"]]
        assert scores and min(scores) > t
    return check


def _counts(n_images, n_skipped):
    def check(w, out, so, se):
        data = json.loads((out / "detections.json").read_text())
        assert len(data["images"]) == n_images and len(data["skipped"]) == n_skipped
        assert not (out / "broken.jpg").exists() and len(list(out.glob("*.jpg"))) == n_images
    return check


def _exists(*names):
    def check(w, out, so, se):
        for n in names:
            assert (out / n if n else out).exists(), n
    return check


M = "--model"
CASES = [
    # -- ranges, refused while parsing (exit 2) --------------------------------------------------
    ("predict-conf-2", lambda w, o: ["predict", str(w.imgs), M, str(w.onnx), "--conf", "2", "--out", str(o)], 2,
     r"--conf: must be in \[0, 1\], got 2", ["out"], None),
    ("predict-conf-neg", lambda w, o: ["predict", str(w.imgs), "--conf", "-1", "--out", str(o)], 2,
     r"--conf: must be in \[0, 1\]", ["out"], None),
    ("predict-conf-nan", lambda w, o: ["predict", str(w.imgs), "--conf", "nan", "--out", str(o)], 2,
     r"--conf: must be a finite number", ["out"], None),
    ("predict-conf-text", lambda w, o: ["predict", str(w.imgs), "--conf", "high", "--out", str(o)], 2,
     r"--conf: expected a number", ["out"], None),
    ("predict-iou-5", lambda w, o: ["predict", str(w.imgs), "--iou", "5", "--out", str(o)], 2,
     r"--iou: must be in \[0, 1\]", ["out"], None),
    ("predict-maxdet-0", lambda w, o: ["predict", str(w.imgs), "--max-det", "0", "--out", str(o)], 2,
     r"--max-det: must be >= 1", ["out"], None),
    ("predict-imgsz-0", lambda w, o: ["predict", str(w.imgs), "--imgsz", "0", "0", "--out", str(o)], 2,
     r"--imgsz: must be a positive multiple of 32", ["out"], None),
    ("predict-imgsz-neg", lambda w, o: ["predict", str(w.imgs), "--imgsz", "-32", "-32", "--out", str(o)], 2,
     r"--imgsz: must be a positive multiple of 32", ["out"], None),
    ("predict-imgsz-100", lambda w, o: ["predict", str(w.imgs), "--imgsz", "100", "100", "--out", str(o)], 2,
     r"multiple of 32", ["out"], None),
    ("export-opset-99", lambda w, o: ["export", "--opset", "99", "--out", str(o / "m.onnx")], 2,
     r"--opset: must be in 1\d\.\.\d+, got 99", ["out"], None),
    ("export-conf-1.5", lambda w, o: ["export", "--conf", "1.5", "--out", str(o / "m.onnx")], 2,
     r"--conf: must be in \[0, 1\]", ["out"], None),
    ("export-imgsz-100", lambda w, o: ["export", "--imgsz", "100", "--out", str(o / "m.onnx")], 2,
     r"--imgsz: must be a positive multiple of 32", ["out"], None),
    ("export-batch-0", lambda w, o: ["export", "--batch", "0", "--out", str(o / "m.onnx")], 2,
     r"--batch: must be >= 1", ["out"], None),
    ("export-calib-images-0", lambda w, o: ["export", "--int8", "--calib-images", "0", "--out", str(o / "m.onnx")],
     2, r"--calib-images: must be >= 1", ["out"], None),
    ("val-batch-0", lambda w, o: ["val", "--batch", "0", "--out", str(o)], 2, r"--batch: must be >= 1", ["out"], None),
    ("val-max-images-neg", lambda w, o: ["val", "--max-images", "-1", "--out", str(o)], 2,
     r"--max-images: must be >= 1", ["out"], None),
    ("train-lr0-neg", lambda w, o: ["train", "--lr0", "-1", "--out", str(o)], 2, r"--lr0: must be > 0", ["out"], None),
    ("train-epochs-0", lambda w, o: ["train", "--epochs", "0", "--out", str(o)], 2, r"--epochs: must be >= 1",
     ["out"], None),
    ("train-batch-0", lambda w, o: ["train", "--batch", "0", "--out", str(o)], 2, r"--batch: must be >= 1",
     ["out"], None),
    ("train-fliplr-2", lambda w, o: ["train", "--fliplr", "2", "--out", str(o)], 2, r"--fliplr: must be in \[0, 1\]",
     ["out"], None),
    ("run-open-timeout-0", lambda w, o: ["run", str(w.imgs), "--open-timeout", "0", "--jsonl", str(o)], 2,
     r"--open-timeout: must be > 0", ["out"], None),
    ("unknown-command", lambda w, o: ["predcit", str(w.imgs)], 2, r"invalid choice: 'predcit'", ["out"], None),
    # -- user errors, one line, exit 1, before any work ------------------------------------------
    ("predict-out-is-file", lambda w, o: ["predict", str(w.imgs), M, str(w.onnx), "--out", str(w.afile)], 1,
     r"--out .*a_file.txt is a file, not a folder", [], None),
    ("predict-out-under-file", lambda w, o: ["predict", str(w.imgs), M, str(w.onnx), "--out", str(w.afile / "x")],
     1, r"a_file.txt is a file, not a folder", [], None),
    ("predict-device-cuda", lambda w, o: ["predict", str(w.imgs), "--device", "cuda", "--out", str(o)], 1,
     r"--device cuda: this PyTorch cannot use CUDA .*use --device cpu", ["out"], None),
    ("train-device-unknown", lambda w, o: ["train", "--device", "banana", "--epochs", "1", "--data",
                                           "synthetic:train:2", "--val-data", "synthetic:val:2", "--out", str(o)], 1,
     r"unknown device 'banana'", ["out"], None),
    ("predict-device-unknown", lambda w, o: ["predict", str(w.imgs), "--device", "banana", "--out", str(o)], 1,
     r"unknown --device 'banana'", ["out"], None),
    ("predict-only-unreadable", lambda w, o: ["predict", str(w.bad_only), M, str(w.onnx), "--out", str(o)], 1,
     r"none of the 1 image\(s\) could be read; first: cannot decode image", ["out"], None),
    ("predict-empty-onnx", lambda w, o: ["predict", str(w.imgs), M, str(w.empty_onnx), "--out", str(o)], 1,
     r"cannot load .*empty.onnx", ["out"], None),
    ("predict-pickled-pt", lambda w, o: ["predict", str(w.imgs), M, str(w.pickled), "--out", str(o)], 1,
     r"pickled.pt is a pickled Python object \(yolo_edge.model.yolo.YOLO\), not a yolo-edge checkpoint; .*"
     r"export --from-onnx$", ["out"], None),
    ("predict-nms-conf-looser", lambda w, o: ["predict", str(w.imgs), M, str(w.onnx), "--conf", "0.1",
                                              "--out", str(o)], 1,
     r"score threshold 0.25.*--conf 0.1 can only be stricter; re-export .*yolo-edge export --conf 0.1", ["out"],
     None),
    ("predict-nms-maxdet-higher", lambda w, o: ["predict", str(w.imgs), M, str(w.onnx), "--max-det", "300",
                                                "--out", str(o)], 1,
     r"at most 100 detections.*re-export", ["out"], None),
    ("predict-nms-iou", lambda w, o: ["predict", str(w.imgs), M, str(w.onnx), "--iou", "0.3", "--out", str(o)], 1,
     r"IoU threshold 0.45; --iou 0.3 cannot be applied afterwards; re-export", ["out"], None),
    ("predict-imgsz-fixed-onnx", lambda w, o: ["predict", str(w.imgs), M, str(w.onnx), "--imgsz", "320", "320",
                                               "--out", str(o)], 1,
     r"exported input size 160x160, not 320x320; re-export .*--imgsz 320 320", ["out"], None),
    ("info-empty-onnx", lambda w, o: ["info", M, str(w.empty_onnx)], 1, r"cannot load .*empty.onnx", [], None),
    ("inspect-malformed-layers", lambda w, o: ["inspect", str(w.bad_layers), "--json", str(o)], 1,
     r"malformed 'Layers'", ["out"], None),
    ("inspect-random-json", lambda w, o: ["inspect", str(w.rand_json), "--json", str(o)], 1,
     r"random.json is not a text file", ["out"], None),
    ("export-from-onnx-empty", lambda w, o: ["export", "--from-onnx", str(w.empty_onnx), "--out", str(o)], 1,
     r"empty.onnx is empty \(0 bytes\)", ["out"], None),
    ("export-from-onnx-yolo-edge-none", lambda w, o: ["export", "--from-onnx", str(w.onnx_none), "--out", str(o)], 1,
     r"is already a yolo-edge ONNX \(NMS none\)", ["out"], None),
    ("export-out-under-file", lambda w, o: ["export", "--out", str(w.afile / "m.onnx")], 1,
     r"a_file.txt is a file, not a folder", [], None),
    ("export-int8-empty-calib", lambda w, o: ["export", "--int8", "--calib", str(w.empty_dir), "--val", "none",
                                              "--out", str(o / "m.onnx")], 1,
     r"no readable images in .*empty_dir", ["out"], None),
    ("export-int8-unlabelled-val", lambda w, o: ["export", "--int8", "--val", str(w.imgs), "--out",
                                                 str(o / "m.onnx")], 1,
     r"imgs has no labels, so --val cannot be scored", ["out"], None),
    ("export-int8-val-beyond-classes", lambda w, o: ["export", "--int8", "--val", str(w.ds_beyond), "--out",
                                                     str(o / "m.onnx")], 1,
     r"class ids up to 9, but the model has 8 classes", ["out"], None),
    ("export-int8-val-strict", lambda w, o: ["export", "--int8", "--val", str(w.ds_bad), "--strict", "--out",
                                             str(o / "m.onnx")], 1,
     r"4 problem\(s\) \(.*unknown_class.*\), first: .*000000.txt:\d+", ["out"], None),
    ("calibrate-empty-calib", lambda w, o: ["calibrate", str(w.onnx), "--calib", str(w.empty_dir), "--out-dir",
                                            str(o)], 1, r"no readable images in .*empty_dir", ["out"], None),
    ("build-not-a-detector", lambda w, o: ["build", str(w.ultra), "--print-trtexec", "--target-trt", "10.3",
                                           "--out", str(o)], 1,
     r"ultralytics_dyn.onnx is not a yolo-edge detector \(outputs \['output0'\]", ["out"], None),
    ("build-empty-onnx", lambda w, o: ["build", str(w.empty_onnx), "--print-trtexec", "--target-trt", "10.3",
                                       "--out", str(o)], 1, r"empty.onnx is empty \(0 bytes\)", ["out"], None),
    ("val-unlabelled-folder", lambda w, o: ["val", "--data", str(w.imgs), M, str(w.onnx), "--out", str(o)], 1,
     r"imgs has no labels, so val cannot be scored", ["out"], None),
    ("val-bad-labels-strict", lambda w, o: ["val", "--data", str(w.ds_bad), M, str(w.onnx), "--strict",
                                            "--out", str(o)], 1,
     r"ds_bad: 4 problem\(s\) \(1 field_count, 1 not_numeric, 1 unknown_class, 1 non_positive_size\)", ["out"],
     None),
    ("val-beyond-classes-strict", lambda w, o: ["val", "--data", str(w.ds_beyond), M, str(w.onnx), "--strict",
                                                "--out", str(o)], 1,
     r"class ids up to 9, but the model has 8 classes", ["out"], None),
    ("val-out-is-file", lambda w, o: ["val", "--data", str(w.ds_clean), M, str(w.onnx), "--out", str(w.afile)], 1,
     r"a_file.txt is a file, not a folder", [], None),
    ("train-unlabelled-data", lambda w, o: ["train", "--data", str(w.imgs), "--out", str(o)], 1,
     r"imgs has no labels, so --data cannot be scored", ["out"], None),
    ("train-bad-labels-strict", lambda w, o: ["train", "--data", str(w.ds_bad), "--strict", "--out", str(o)], 1,
     r"ds_bad: 4 problem\(s\)", ["out"], None),
    ("train-out-is-file", lambda w, o: ["train", "--out", str(w.afile)], 1, r"a_file.txt is a file, not a folder",
     [], None),
    ("run-random-mp4", lambda w, o: ["run", str(w.rand_mp4), M, str(w.onnx), "--jsonl", str(o)], 1,
     r"random.mp4: it is not a video file \(no known container signature", ["out"], None),
    ("run-rtsp-secret", lambda w, o: ["run", f"rtsp://admin:{SECRET}@127.0.0.1:9/stream", M, str(w.onnx),
                                      "--open-timeout", "0.5", "--jsonl", str(o)], 1,
     r"cannot open stream rtsp://admin:\*\*\*@127.0.0.1:9/stream within 0.5 s", ["out"], None),
    ("run-bad-scheme-secret", lambda w, o: ["run", f"foo://admin:{SECRET}@host/x", M, str(w.onnx),
                                            "--jsonl", str(o)], 1,
     r"unsupported source scheme in 'foo://admin:\*\*\*@host/x'", ["out"], None),
    ("run-jsonl-is-folder", lambda w, o: ["run", str(w.imgs), M, str(w.onnx), "--jsonl", str(w.empty_dir)], 1,
     r"--jsonl .*empty_dir is a folder: name a file", [], None),
    # -- go on, but say so (exit 0): no silent wrong result --------------------------------------
    ("predict-skips-unreadable", lambda w, o: ["predict", str(w.imgs), M, str(w.onnx), "--out", str(o)], 0,
     r"skipped 1 unreadable image\(s\) .*broken.jpg", [], _counts(2, 1)),
    ("predict-nms-conf-stricter", lambda w, o: ["predict", str(w.imgs), M, str(w.onnx), "--conf", "0.5",
                                                "--out", str(o)], 0, r"", [], _scores_above(0.5)),
    ("val-bad-labels-warn", lambda w, o: ["val", "--data", str(w.ds_bad), M, str(w.onnx), "--out", str(o)], 0,
     r"ds_bad: 4 label\(s\) dropped, 4 problem\(s\)", [], _exists("metrics.json")),
    ("val-partial-classes", lambda w, o: ["val", "--data", str(w.ds_partial), M, str(w.onnx), "--out", str(o)], 0,
     r"", [], _exists("metrics.json")),
    ("val-beyond-classes-warn", lambda w, o: ["val", "--data", str(w.ds_beyond), M, str(w.onnx), "--out", str(o)],
     0, r"1 label\(s\) dropped.*1 unknown_class", [], _exists("metrics.json")),
    ("run-truncated-video", lambda w, o: ["run", str(w.trunc_avi), M, str(w.onnx), "--jsonl", str(o)], 0,
     r"truncated.avi ended after \d+ of 60 frames: the file is truncated or damaged", [], _exists("")),
    ("export-from-onnx-dynamic-batch", lambda w, o: ["export", "--from-onnx", str(w.ultra), "--out", str(o), "-q"],
     0, r"", [], _exists("")),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, w, tmp_path, capfd, monkeypatch):
    name, argv, code, message, absent, check = case
    if name == "predict-device-cuda" and _cuda_torch():
        pytest.skip("this torch can use CUDA")
    monkeypatch.chdir(tmp_path)  # default outputs (runs/...) land here, and are checked too
    out = tmp_path / "out"
    try:
        rc = main(argv(w, out))
    except SystemExit as e:
        rc = e.code
    so, se = capfd.readouterr()
    assert rc == code, f"{name}: exit {rc}\nstdout: {so[-2000:]}\nstderr: {se[-2000:]}"
    assert "Traceback" not in so + se and "internal error" not in se
    assert SECRET not in so + se
    if code:
        errors = [ln for ln in se.splitlines() if re.match(r"yolo-edge( \S+)?: error: ", ln)]
        assert len(errors) == 1, se  # one line
        assert re.search(message, errors[0]), errors[0]
        assert "\x1b" not in errors[0]
        left = [p for p in ("out",) if p in absent and out.exists()]
        assert not left, f"partial output left behind: {sorted(map(str, out.rglob('*')))}"
        assert not (tmp_path / "runs").exists()
    else:
        assert re.search(message, se), se
        if check:
            check(w, out, so, se)


def test_table_size():
    assert len(CASES) >= 45


# --------------------------------------------------------------------------- beyond the table
def test_internal_error_is_one_line_and_traceback_only_with_debug(monkeypatch, capsys):
    import yolo_edge.cli as cli

    def boom(args):
        raise ValueError("something broke")

    monkeypatch.setitem(cli.COMMANDS, "info", (boom, "x", cli._build_info))
    monkeypatch.delenv("YOLO_EDGE_DEBUG", raising=False)
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "yolo-edge info: internal error: ValueError: something broke" in err and "--debug" in err
    for argv, env in ((["--debug", "info"], None), (["info", "--debug"], None), (["info"], "1")):
        if env:
            monkeypatch.setenv("YOLO_EDGE_DEBUG", env)
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "internal error: ValueError" in err


def test_os_errors_are_user_errors(monkeypatch, capsys):
    import yolo_edge.cli as cli

    def full(args):
        raise OSError(28, "No space left on device", "/data/out.onnx")

    monkeypatch.setitem(cli.COMMANDS, "info", (full, "x", cli._build_info))
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert err == "yolo-edge info: error: No space left on device: /data/out.onnx (free some disk space)\n"


def test_console_script_exit_codes(tmp_path):
    """The installed entry point: usage error 2, user error 1, both one line without a traceback."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for argv, code, msg in ((["predict", "x.jpg", "--conf", "2"], 2, "--conf: must be in [0, 1]"),
                            (["predict", str(tmp_path / "missing.jpg")], 1, "file not found")):
        p = subprocess.run([sys.executable, "-m", "yolo_edge.cli", *argv], capture_output=True, text=True, env=env,
                           cwd=tmp_path)
        assert p.returncode == code and msg in p.stderr and "Traceback" not in p.stderr
        assert p.stderr.count("\n") == 1


def test_stricter_conf_and_max_det_equal_a_reexport(w):
    """--conf / --max-det on a model with NMS embedded give exactly what numpy NMS at those thresholds
    gives on the same model without NMS (the reference: yolo_edge.postprocess, tested against
    torchvision elsewhere)."""
    from yolo_edge.data import synthetic_split
    from yolo_edge.postprocess import postprocess
    from yolo_edge.runtime import Detector, load_runner
    from yolo_edge.runtime.overrides import apply_overrides
    from yolo_edge.spec import NmsSpec

    images = [s.image for s in synthetic_split("val", 6)]
    for conf, k in ((0.5, None), (None, 2), (0.35, 3)):
        runner, nms = apply_overrides(load_runner(w.onnx), conf, None, k)
        assert nms is None and runner.spec.nms.score_threshold == (conf or 0.25)
        ref_nms = NmsSpec("none", score_threshold=conf or 0.25, iou_threshold=0.45, max_det=k or 100)
        with Detector(runner) as det, Detector(load_runner(w.onnx_none)) as raw:
            got = det(images)
            batch, metas = raw.preprocess(images)
            out = raw.forward(batch)
            want = [postprocess(b, s, ref_nms).unletterbox(m) for b, s, m in zip(out["boxes"], out["scores"], metas)]
        for g, r in zip(got, want):
            assert len(g) == len(r)
            np.testing.assert_allclose(g.scores, r.scores, atol=1e-5)
            np.testing.assert_array_equal(g.class_ids, r.class_ids)
            np.testing.assert_allclose(g.xyxy, r.xyxy, atol=1e-3)
        assert sum(map(len, got)) > 0


def test_dataset_with_some_classes_is_valid_for_the_model(w):
    """No names file, ids 0 and 1 of a model with 8 classes: valid (the old check demanded 8 == 2)."""
    from yolo_edge.data import load_dataset
    from yolo_edge.evaluate.validate import evaluate_detector
    from yolo_edge.runtime import Detector, load_runner

    ds = load_dataset(w.ds_partial)
    assert len(ds.names) == 2
    with Detector(load_runner(w.onnx)) as det:
        res = evaluate_detector(det, ds)
    assert res.names == det.names and res.n_gt == sum(len(s.class_ids) for s in ds)


def test_preflight_val_checks_classes_before_export(w):
    from yolo_edge.errors import DatasetError
    from yolo_edge.preflight import check_precision_inputs

    args = SimpleNamespace(calib="synthetic:calib", val=str(w.ds_partial), model=str(w.onnx), from_onnx=None,
                           strict=False)
    assert check_precision_inputs(args) == []
    args.val = str(w.ds_bad)
    lines = check_precision_inputs(args)
    assert "4 label(s) dropped" in lines[0] and len(lines) == 5 and "and 1 more" in lines[-1]
    args.val = str(w.ds_beyond)
    with pytest.raises(DatasetError, match="class ids up to 9"):
        check_precision_inputs(args)


def test_val_drops_exactly_the_bad_lines(w, capsys):
    """mAP on the dataset with bad lines equals mAP on the same dataset without them."""
    for data in (w.ds_bad, w.ds_clean):
        assert main(["val", "--data", str(data), M, str(w.onnx)]) == 0
    out = capsys.readouterr().out
    maps = re.findall(r"mAP50-95 ([0-9.]+)", out)
    assert len(maps) == 2 and maps[0] == maps[1], out


# --------------------------------------------------------------------------- credentials, on every path
URL = f"rtsp://admin:{SECRET}@10.0.0.5:554/live"


@pytest.mark.parametrize("text, want", [
    (URL, "rtsp://admin:***@10.0.0.5:554/live"),
    (f"cannot open stream {URL} within 3 s", "cannot open stream rtsp://admin:***@10.0.0.5:554/live within 3 s"),
    ("rtspsrc location=rtsp://u:p@ss@cam/x latency=0 ! appsink", "rtspsrc location=rtsp://u:***@cam/x latency=0 ! appsink"),
    ("http://token123@cam/mjpg", "http://***@cam/mjpg"),
    ("rtsp://cam/stream", "rtsp://cam/stream"),
    ("/videos/a@b.mp4", "/videos/a@b.mp4"),
])
def test_redact_url(text, want):
    from yolo_edge.redact import redact_url

    assert redact_url(text) == want


def test_redacted_in_events_and_errors():
    """Log path: the reconnect events and the give-up error of a dropped stream."""
    from yolo_edge.errors import YoloEdgeError
    from yolo_edge.stream.sources import Backoff, CaptureSource

    events = []

    class Cap:
        def release(self):
            pass

    src = CaptureSource(URL, URL, network=True, reconnect_timeout_s=0.01, backoff=Backoff(0.02, 1.0, 0.02),
                        on_event=lambda kind, msg: events.append(msg))
    src._try_open = lambda: None
    src._cap = Cap()
    with pytest.raises(YoloEdgeError) as e:
        src._reconnect()
    assert SECRET not in str(e.value) and "admin:***@" in str(e.value)
    assert events and all(SECRET not in m for m in events) and "admin:***@" in events[0]
    assert src.target == URL  # what OpenCV opens keeps the password
    assert SECRET not in repr(src)


def test_redacted_in_jsonl_summary_and_overlay(w, tmp_path, monkeypatch):
    """JSON Lines records, the summary (table and --summary JSON) and the overlay never show the password."""
    from yolo_edge.data import synthetic_split
    from yolo_edge.runtime import Detector, load_runner
    from yolo_edge.stream import pipeline
    from yolo_edge.stream.pipeline import StreamConfig, run_stream
    from yolo_edge.stream.sinks import JsonlSink, VideoSink
    from yolo_edge.stream.sources import FrameList

    drawn = []
    real = pipeline.draw_overlay
    monkeypatch.setattr(pipeline, "draw_overlay", lambda img, lines: (drawn.append(list(lines)), real(img, lines))[1])
    frames = [s.image for s in synthetic_split("val", 3)]
    with Detector(load_runner(w.onnx)) as det:
        summary = run_stream(FrameList(frames, name=URL), det,
                             [JsonlSink(tmp_path / "f.jsonl"), VideoSink(tmp_path / "v.avi")],
                             StreamConfig(handle_signals=False, progress=False, overlay=True))
    text = (tmp_path / "f.jsonl").read_text()
    assert SECRET not in text and json.loads(text.splitlines()[0])["source"] == "rtsp://admin:***@10.0.0.5:554/live"
    assert SECRET not in json.dumps(summary.to_dict()) and SECRET not in summary.table()
    assert drawn  # the overlay was drawn; draw_overlay redacts whatever it is given
    img = np.zeros((120, 900, 3), np.uint8)
    a = real(img.copy(), [f"src {URL}"])
    b = real(img.copy(), ["src rtsp://admin:***@10.0.0.5:554/live"])
    np.testing.assert_array_equal(a, b)


def test_redacted_in_ffmpeg_sink_error():
    """Sink path: ffmpeg's own error text names the URL; the error we raise does not show the password."""
    import io

    from yolo_edge.errors import YoloEdgeError
    from yolo_edge.stream.sinks import FfmpegSink

    class Pipe:
        def write(self, data):
            raise BrokenPipeError(32, "Broken pipe")

    sink = FfmpegSink(URL, exe=sys.executable)
    sink._proc = SimpleNamespace(stdin=Pipe(), stderr=io.BytesIO(f"{URL}: 401 Unauthorized".encode()))
    sink._size = (64, 48)
    with pytest.raises(YoloEdgeError) as e:
        sink.write(SimpleNamespace(annotated=np.zeros((48, 64, 3), np.uint8), frame=None))
    assert SECRET not in str(e.value) and str(e.value).count("admin:***@") == 2
