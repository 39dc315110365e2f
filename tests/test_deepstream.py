"""`yolo-edge deploy deepstream`: the configs use only documented nvinfer / deepstream-app keys and
say what the model needs; the C++ bbox parser, compiled here with g++ against a transcription of
the documented nvdsinfer structs and loaded with dlopen as nvinfer does, returns for contract
tensors the same boxes as Detector.postprocess (and a slow numpy reference on edge cases)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from deploy_models import IMGSZ, deploy_models, fake_engine, synthetic_images  # noqa: E402

from yolo_edge.cli import main  # noqa: E402
from yolo_edge.deploy.deepstream import (APP_KEYS, CLASS_ATTRS_KEYS, NVINFER_KEYS, PARSER_FUNC,  # noqa: E402
                                         DeepStreamOptions, validate_app, validate_nvinfer, write_deepstream)
from yolo_edge.errors import YoloEdgeError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HEADERS = Path(__file__).parent / "deepstream"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return deploy_models(tmp_path_factory)


def read_ini(path) -> configparser.ConfigParser:
    """An independent reader of the key-file format (duplicate keys/groups are errors)."""
    cp = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
    cp.optionxform = str  # keys are case-sensitive (minBoxes)
    cp.read_string(Path(path).read_text())
    return cp


def test_configs_for_n_sources(models, tmp_path):
    opts = DeepStreamOptions(sources=3, inputs=("clip.mp4", "rtsp://cam.local/stream", "csi://1"), sink="rtsp")
    app = write_deepstream(models["nms"], tmp_path / "ds", opts)
    infer = read_ini(tmp_path / "ds" / "config_infer_primary_yolo_edge.txt")
    p = infer["property"]
    sess = ort.InferenceSession(str(models["nms"]), providers=["CPUExecutionProvider"])
    names = (tmp_path / "ds" / "labels.txt").read_text().splitlines()
    assert p["output-blob-names"].split(";") == [o.name for o in sess.get_outputs()]
    assert int(p["num-detected-classes"]) == len(names) == 8
    assert float(p["net-scale-factor"]) == pytest.approx(1 / 255, rel=1e-12)
    assert p["model-color-format"] == "0"  # RGB
    assert p["maintain-aspect-ratio"] == "1" and p["symmetric-padding"] == "1"
    assert p["cluster-mode"] == "4"  # NMS already done
    assert p["network-mode"] == "0" and "int8-calib-file" not in p  # an FP32 model
    assert p["onnx-file"] == "model.onnx" and (tmp_path / "ds" / "model.onnx").is_file()
    assert p["parse-bbox-func-name"] == PARSER_FUNC
    assert (tmp_path / "ds" / p["custom-lib-path"]).parent.joinpath("nvdsparsebbox_yolo_edge.cpp").is_file()
    assert float(infer["class-attrs-all"]["pre-cluster-threshold"]) == pytest.approx(0.25)
    for group in infer.sections():
        table = NVINFER_KEYS if group == "property" else CLASS_ATTRS_KEYS
        assert set(infer[group]) <= set(table), group

    a = read_ini(app)
    assert int(a["streammux"]["batch-size"]) == 3 == int(p["batch-size"]) == int(a["primary-gie"]["batch-size"])
    assert a["streammux"]["live-source"] == "1"
    assert [a[f"source{i}"]["type"] for i in range(3)] == ["2", "4", "5"]  # URI file, RTSP, CSI
    assert a["source0"]["uri"].startswith("file:///") and a["source1"]["uri"] == "rtsp://cam.local/stream"
    assert a["source2"]["camera-csi-sensor-id"] == "1"
    assert int(a["tiled-display"]["rows"]) * int(a["tiled-display"]["columns"]) >= 3
    assert a["sink0"]["type"] == "4" and a["sink0"]["rtsp-port"] == "8554"
    assert a["primary-gie"]["config-file"] == "config_infer_primary_yolo_edge.txt"
    for group in a.sections():
        base = group.rstrip("0123456789") if group.startswith(("source", "sink")) else group
        assert set(a[group]) <= set(APP_KEYS[base]), group


@pytest.mark.parametrize("sink, sink_type", [("file", "3"), ("fake", "1")])
def test_sinks(models, tmp_path, sink, sink_type):
    app = write_deepstream(models["nms"], tmp_path, DeepStreamOptions(sources=2, sink=sink, encoder="sw"))
    a = read_ini(app)
    assert a["sink0"]["type"] == sink_type
    if sink == "file":
        assert a["sink0"]["enc-type"] == "1" and a["sink0"]["output-file"].endswith(".mp4")
    assert a["streammux"]["live-source"] == "0"


def test_validation_rejects_undocumented_keys_and_values():
    ok = "[property]\nbatch-size=1\ncluster-mode=4\n[class-attrs-all]\ntopk=20\n"
    validate_nvinfer(ok)
    for bad, why in ((ok + "[property2]\n", "not a documented group"),
                     (ok.replace("batch-size=1", "pad-value=114"), "'pad-value' is not a documented key"),
                     (ok.replace("cluster-mode=4", "cluster-mode=7"), "documented values"),
                     (ok.replace("batch-size=1", "batch-size=two"), "not a valid int"),
                     (ok.replace("topk=20", "top-k=20"), "not a documented key")):
        with pytest.raises(YoloEdgeError, match=why):
            validate_nvinfer(bad)
    validate_app("[source0]\nenable=1\ntype=4\nuri=rtsp://x\n")
    with pytest.raises(YoloEdgeError, match="documented values"):
        validate_app("[sink0]\nenable=1\ntype=9\n")


def test_int8_calibration_file_only_for_a_legacy_cache_build(models, tmp_path):
    import onnx

    from yolo_edge.export import get_spec, set_metadata

    cache = tmp_path / "calibration.cache"
    cache.write_text("TRT-8601-EntropyCalibration2\n")
    app = write_deepstream(models["nms"], tmp_path / "a", DeepStreamOptions(calib_cache=str(cache)))
    p = read_ini(app.parent / "config_infer_primary_yolo_edge.txt")["property"]
    assert p["network-mode"] == "1" and p["int8-calib-file"] == "calibration.cache"
    m = onnx.load(str(models["nms"]))
    set_metadata(m, get_spec(m).replace(precision="int8"))
    onnx.save(m, str(tmp_path / "qdq.onnx"))
    p = read_ini(write_deepstream(tmp_path / "qdq.onnx", tmp_path / "b").parent /
                 "config_infer_primary_yolo_edge.txt")["property"]
    assert p["network-mode"] == "1" and "int8-calib-file" not in p  # Q/DQ carries its scales
    with pytest.raises(YoloEdgeError, match="carries its own scales"):
        write_deepstream(tmp_path / "qdq.onnx", tmp_path / "c", DeepStreamOptions(calib_cache=str(cache)))


def test_engines_and_batch_checks(models, tmp_path):
    import onnx

    from yolo_edge.export import get_spec

    spec = get_spec(onnx.load(str(models["nms"]))).replace(precision="fp16")
    engine = fake_engine(tmp_path, spec, {"images": {"min": [1, 3, 160, 160], "opt": [2, 3, 160, 160],
                                                     "max": [4, 3, 160, 160]}})
    app = write_deepstream(engine, tmp_path / "ds", DeepStreamOptions(sources=4))
    p = read_ini(app.parent / "config_infer_primary_yolo_edge.txt")["property"]
    assert p["model-engine-file"] == "model.engine" and "onnx-file" not in p and p["network-mode"] == "2"
    with pytest.raises(YoloEdgeError, match="batches up to 4"):
        write_deepstream(engine, tmp_path / "x", DeepStreamOptions(sources=5))
    with pytest.raises(YoloEdgeError, match="static batch of 2"):
        write_deepstream(models["static"], tmp_path / "y", DeepStreamOptions(sources=3))
    with pytest.raises(YoloEdgeError, match="no NMS embedded"):
        write_deepstream(models["decoded"], tmp_path / "z")


def test_cli(models, tmp_path, capsys):
    assert main(["deploy", "deepstream", str(models["nms"]), "--sources", "2", "--out", str(tmp_path / "d"),
                 "--input", "a.mp4", "--sink", "fake"]) == 0
    assert (tmp_path / "d" / "deepstream_app_config.txt").is_file()
    assert main(["deploy", "deepstream", str(models["nms"]), "--sources", "0", "--out", str(tmp_path / "e")]) == 1
    assert "--sources must be >= 1" in capsys.readouterr().err


# --- the C++ parser ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def parser(tmp_path_factory):
    if not shutil.which("g++") or not shutil.which("make"):
        pytest.skip("g++/make not installed")
    d = tmp_path_factory.mktemp("parser")
    lib = d / "libnvdsinfer_yolo_edge.so"
    subprocess.run(["make", "-s", "-C", str(ROOT / "jetson" / "deepstream"), f"DS_INCLUDES={HEADERS}",
                    "CUDA_INCLUDES=", f"TARGET={lib}", "CXXFLAGS=-O2 -Werror"], check=True)
    drv = d / "parse_driver"
    subprocess.run(["g++", "-std=c++14", "-Wall", f"-I{HEADERS}", "-o", str(drv),
                    str(HEADERS / "parse_driver.cpp"), "-ldl"], check=True)
    return lib, drv, d


def run_parser(parser, num, boxes, scores, classes, nc, net=(IMGSZ, IMGSZ), thresholds=(), mode="normal"):
    lib, drv, d = parser
    k = len(scores)
    blob = (np.array([k, nc, net[1], net[0], len(thresholds)], np.int32).tobytes()
            + np.asarray(thresholds, np.float32).tobytes() + np.int32(num).tobytes()
            + np.asarray(boxes, np.float32).reshape(k, 4).tobytes() + np.asarray(scores, np.float32).tobytes()
            + np.asarray(classes, np.int32).tobytes())
    (d / "in.bin").write_bytes(blob)
    r = subprocess.run([str(drv), str(lib), PARSER_FUNC, str(d / "in.bin"), mode], capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"OK {len(lines) - 1}"
    rows = [line.split() for line in lines[1:]]
    cls = np.array([int(r[0]) for r in rows], np.int32)
    vals = np.array([[float(x) for x in r[1:]] for r in rows], np.float32).reshape(-1, 5)
    xyxy = np.concatenate([vals[:, 1:3], vals[:, 1:3] + vals[:, 3:5]], 1) if len(rows) else np.zeros((0, 4))
    return (cls, vals[:, 0], vals[:, 1:5], xyxy), r.stderr


def test_parser_matches_detector_postprocess_on_model_outputs(parser, models):
    """Contract tensors from a real ONNX Runtime run; Detector.postprocess is the reference (boxes
    clipped to the network input, as nvinfer gets them)."""
    from yolo_edge.letterbox import letterbox_batch
    from yolo_edge.runtime import Detector
    from yolo_edge.runtime.ort_runner import OrtRunner

    with Detector(OrtRunner(models["nms"])) as det:
        batch, _ = letterbox_batch(synthetic_images(6), det.spec.letterbox)
        out = det.forward(batch)
        ref = det.postprocess(out)
    total = 0
    for b, want in enumerate(ref):
        got, err = run_parser(parser, out["num_dets"][b, 0], out["det_boxes"][b], out["det_scores"][b],
                              out["det_classes"][b], nc=len(det.names), thresholds=[0.0] * len(det.names),
                              mode="reversed" if b % 2 else "normal")  # found by name, not position
        assert got is not None, err
        cls, score, ltwh, xyxy = got
        keep = (np.clip(want.xyxy[:, 2], 0, IMGSZ) > np.clip(want.xyxy[:, 0], 0, IMGSZ)) & \
               (np.clip(want.xyxy[:, 3], 0, IMGSZ) > np.clip(want.xyxy[:, 1], 0, IMGSZ))
        np.testing.assert_array_equal(cls, want.class_ids[keep])
        np.testing.assert_array_equal(score, want.scores[keep])
        np.testing.assert_allclose(xyxy, np.clip(want.xyxy[keep], 0, IMGSZ), atol=1e-4)
        total += len(cls)
    assert total > 0


def slow_reference(num, boxes, scores, classes, nc, w, h, thresholds):
    out = []
    for i in range(max(0, min(int(num), len(scores)))):
        c = int(classes[i])
        if not 0 <= c < nc or (c < len(thresholds) and scores[i] < thresholds[c]):
            continue
        x1, x2 = (min(max(float(v), 0.0), w) for v in (boxes[i][0], boxes[i][2]))
        y1, y2 = (min(max(float(v), 0.0), h) for v in (boxes[i][1], boxes[i][3]))
        if x2 > x1 and y2 > y1:
            out.append((c, float(scores[i]), x1, y1, x2, y2))
    return out


@pytest.mark.parametrize("num", [0, 3, 6, 99, -2])
def test_parser_edge_cases(parser, num):
    rng = np.random.default_rng(num + 10)
    k, nc, w, h = 6, 3, 320, 160
    boxes = np.stack([rng.uniform(-40, 300, k), rng.uniform(-20, 150, k), rng.uniform(0, 360, k),
                      rng.uniform(0, 200, k)], 1).astype(np.float32)
    boxes[4] = [10, 10, 5, 50]  # x2 < x1: degenerate
    scores = rng.uniform(0.1, 0.9, k).astype(np.float32)
    classes = np.array([0, 1, 2, 3, -1, 1], np.int32)  # 3 and -1 out of range
    thr = [0.0, 0.5, 0.3]
    got, err = run_parser(parser, num, boxes, scores, classes, nc, net=(h, w), thresholds=thr)
    assert got is not None, err
    cls, score, _, xyxy = got
    want = slow_reference(num, boxes, scores, classes, nc, w, h, thr)
    assert [int(c) for c in cls] == [r[0] for r in want]
    np.testing.assert_array_equal(score, np.array([r[1] for r in want], np.float32))
    np.testing.assert_allclose(xyxy, np.array([r[2:] for r in want], np.float32).reshape(-1, 4), atol=1e-4)


@pytest.mark.parametrize("mode, why", [("wrong-type", "must be INT32"), ("missing", "'det_classes' not found")])
def test_parser_refuses_the_wrong_outputs(parser, mode, why):
    got, err = run_parser(parser, 1, np.zeros((2, 4)), np.zeros(2), np.zeros(2), nc=2, mode=mode)
    assert got is None and why in err
