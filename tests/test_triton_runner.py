"""The Triton runner against a loopback server that implements Triton's GRPCInferenceService from
the stubs tritonclient ships (service_pb2_grpc), ONNX Runtime behind it: the real protocol and the
real client, on 127.0.0.1, with a server that stops by itself. Detections equal OrtRunner's on the
same ONNX; errors (server down, model missing or not ready, not a yolo-edge model) are one line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
pytest.importorskip("tritonclient.grpc")

sys.path.insert(0, str(Path(__file__).parent))
from deploy_models import deploy_models, synthetic_images  # noqa: E402

from yolo_edge.cli import main  # noqa: E402
from yolo_edge.deploy.triton import TritonOptions, write_triton_repository  # noqa: E402
from yolo_edge.deploy.triton_server import TritonLoopbackServer  # noqa: E402
from yolo_edge.errors import ModelFormatError, YoloEdgeError  # noqa: E402
from yolo_edge.runtime import Detector, load_runner  # noqa: E402
from yolo_edge.runtime.ort_runner import OrtRunner  # noqa: E402
from yolo_edge.runtime.triton_runner import TritonRunner, parse_uri  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return deploy_models(tmp_path_factory)


@pytest.fixture(scope="module")
def repo(models, tmp_path_factory):
    repo = tmp_path_factory.mktemp("triton_repo")
    write_triton_repository(models["nms"], repo, TritonOptions(name="nms", max_batch=4, kind="cpu"))
    write_triton_repository(models["static"], repo, TritonOptions(name="static", kind="cpu"))
    write_triton_repository(models["decoded"], repo, TritonOptions(name="decoded", kind="cpu"))
    write_triton_repository(models["nms"], repo, TritonOptions(name="sleeping", kind="cpu"))
    # a model that is not a yolo-edge deployment: same ONNX, config without parameters.yolo_edge
    foreign = repo / "foreign"
    (foreign / "1").mkdir(parents=True)
    (foreign / "1" / "model.onnx").write_bytes(Path(models["nms"]).read_bytes())
    (foreign / "config.pbtxt").write_text((repo / "nms" / "config.pbtxt").read_text().split("parameters {")[0]
                                          .replace('name: "nms"', 'name: "foreign"'))
    return repo


@pytest.fixture(scope="module")
def server(repo):
    with TritonLoopbackServer(repo, max_seconds=300, unready=("sleeping",), threads=1) as srv:
        yield srv


@pytest.fixture(scope="module")
def http_server(repo):
    """The same repository behind Triton's HTTP/REST protocol (binary tensor extension)."""
    pytest.importorskip("tritonclient.http")
    with TritonLoopbackServer(repo, max_seconds=300, unready=("sleeping",), threads=1, protocol="http") as srv:
        yield srv


@pytest.fixture(scope="module")
def images():
    return synthetic_images(10)


def same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.xyxy, y.xyxy)
        np.testing.assert_array_equal(x.scores, y.scores)
        np.testing.assert_array_equal(x.class_ids, y.class_ids)


@pytest.mark.parametrize("name", ["nms", "static", "decoded"])
def test_detections_equal_ort(server, models, images, name):
    """10 images through Detector (batches of 8) -> the server (max_batch_size 4 for 'nms': the
    runner sends chunks; static batch 2: Detector pads) == OrtRunner on the same ONNX."""
    runner = load_runner(f"grpc://127.0.0.1:{server.port}/{name}")
    assert isinstance(runner, TritonRunner)
    with Detector(runner) as det:
        got = det(images)
    with Detector(OrtRunner(models[name])) as det:
        want = det(images)
    same(got, want)
    assert sum(len(d) for d in want) > 0  # the trained model finds the shapes
    assert runner.spec.names == det.names


def test_http_detections_equal_ort(http_server, models, images):
    runner = load_runner(f"http://127.0.0.1:{http_server.port}/nms")
    with Detector(runner) as det:
        got = det(images)
    with Detector(OrtRunner(models["nms"])) as det:
        same(got, det(images))


def test_runner_reads_config_and_metadata_from_the_server(server):
    r = load_runner(f"grpc://127.0.0.1:{server.port}/nms")
    assert r.max_batch_size == 4 and r.fixed_batch is None
    assert [t.name for t in r.inputs] == ["images"] and r.inputs[0].shape[1:] == (3, 160, 160)
    assert r.output_layout == "nms"
    s = load_runner(f"grpc://127.0.0.1:{server.port}/static")
    assert s.fixed_batch == 2


def test_uri_forms():
    assert parse_uri("grpc://h/m") == ("grpc", "h:8001", "m", "")
    assert parse_uri("http://h:9/m/3") == ("http", "h:9", "m", "3")
    assert parse_uri(str(Path("grpc://127.0.0.1:8001/m"))) == ("grpc", "127.0.0.1:8001", "m", "")  # Path() collapses //
    with pytest.raises(YoloEdgeError, match="grpc://HOST:8001/MODEL"):
        parse_uri("grpc://only-host")


def one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_errors_are_one_clear_line(request, protocol):
    srv = request.getfixturevalue("server" if protocol == "grpc" else "http_server")
    base = f"{protocol}://127.0.0.1:{srv.port}"
    with pytest.raises(YoloEdgeError) as e:
        TritonRunner(f"{base}/nope", timeout=5)
    assert "no model 'nope'" in one_line(e) and "nms" in one_line(e)
    with pytest.raises(YoloEdgeError) as e:
        TritonRunner(f"{base}/sleeping", timeout=5)
    assert "'sleeping' is not ready" in one_line(e) and "UNAVAILABLE" in one_line(e)
    with pytest.raises(ModelFormatError) as e:
        TritonRunner(f"{base}/foreign", timeout=5)
    assert "not a yolo-edge deployment" in one_line(e) and "yolo-edge deploy triton" in one_line(e)


def test_server_down_and_self_stopping_server(models, tmp_path):
    repo = tmp_path / "repo"
    write_triton_repository(models["nms"], repo, TritonOptions(name="m", kind="cpu"))
    srv = TritonLoopbackServer(repo, max_seconds=1.0, threads=1).start()
    TritonRunner(f"grpc://127.0.0.1:{srv.port}/m", timeout=5)  # up
    assert srv.stopped.wait(10)  # stops by itself
    t0 = time.monotonic()
    with pytest.raises(YoloEdgeError) as e:
        TritonRunner(f"grpc://127.0.0.1:{srv.port}/m", timeout=5)
    assert "cannot reach a server" in one_line(e) and "tritonserver --model-repository" in one_line(e)
    assert time.monotonic() - t0 < 30  # bounded


def test_predict_cli_against_the_server(server, models, tmp_path):
    import cv2

    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    for i, im in enumerate(synthetic_images(3)):
        cv2.imwrite(str(img_dir / f"{i}.png"), im)
    uri = f"grpc://127.0.0.1:{server.port}/nms"
    assert main(["predict", str(img_dir), "--model", uri, "--out", str(tmp_path / "a"), "--no-images"]) == 0
    assert main(["predict", str(img_dir), "--model", str(models["nms"]), "--out", str(tmp_path / "b"),
                 "--no-images"]) == 0
    a = json.loads((tmp_path / "a" / "detections.json").read_text())["images"]
    b = json.loads((tmp_path / "b" / "detections.json").read_text())["images"]
    assert [r["detections"] for r in a] == [r["detections"] for r in b]
    assert main(["predict", str(img_dir), "--model", f"grpc://127.0.0.1:{server.port}/nope", "--out",
                 str(tmp_path / "c")]) == 1


def test_parity_cli_onnx_vs_triton(server, models, tmp_path):
    """`yolo-edge parity MODEL.onnx grpc://…` (levels 1–2): the served model is the same model."""
    pytest.importorskip("pycocotools")
    uri = f"grpc://127.0.0.1:{server.port}/decoded"
    assert main(["parity", str(models["decoded"]), uri, "--max-images", "4", "--level", "1,2"]) == 0


def test_fast_request_encoding_is_the_protobuf_message(server, models, images):
    """The one-copy ModelInferRequest parses with Triton's schema into the same message
    tritonclient would build; the server's zero-copy split gives back the exact tensor bytes;
    and tritonclient's own infer path (fast=False) returns the same detections."""
    from tritonclient.grpc import service_pb2 as pb

    from yolo_edge.deploy.triton_server import split_infer_request
    from yolo_edge.runtime.triton_runner import encode_infer_request

    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    data = encode_infer_request("m", "2", {"images": x}, ["num_dets", "det_boxes"])
    req = pb.ModelInferRequest.FromString(data)
    assert req.model_name == "m" and req.model_version == "2"
    assert [(t.name, t.datatype, list(t.shape)) for t in req.inputs] == [("images", "FP32", [2, 3, 4, 5])]
    assert [o.name for o in req.outputs] == ["num_dets", "det_boxes"]
    assert req.raw_input_contents[0] == x.tobytes()
    head, raws = split_infer_request(req.SerializeToString())  # protobuf's own serialization too
    assert head.model_name == "m" and not head.raw_input_contents and bytes(raws[0]) == x.tobytes()

    uri = f"grpc://127.0.0.1:{server.port}/nms"
    with Detector(TritonRunner(uri, fast=False)) as det:
        slow = det(images)
    with Detector(TritonRunner(uri, fast=True)) as det:
        same(det(images), slow)


def test_shared_memory_path(server, models, images):
    """?shm=1: inputs go through Triton's system shared memory extension; same detections, the
    region is unregistered and unlinked on close, and a region the server cannot open is refused."""
    import glob

    import tritonclient.grpc as tc
    from tritonclient.utils import InferenceServerException

    runner = load_runner(f"grpc://127.0.0.1:{server.port}/nms?shm=1")
    assert runner.shared_memory
    with Detector(runner) as det:
        got = det(images)
    with Detector(OrtRunner(models["nms"])) as det:
        same(got, det(images))
    name = runner._shm[1]
    assert glob.glob(f"/dev/shm/{name}")
    status = runner.client.get_system_shared_memory_status(as_json=True)
    assert name in json.dumps(status)
    runner.close()
    assert not glob.glob(f"/dev/shm/{name}")
    client = tc.InferenceServerClient(f"127.0.0.1:{server.port}")
    with pytest.raises(InferenceServerException, match="Unable to open shared memory"):
        client.register_system_shared_memory("bogus", "/yolo_edge_no_such_region", 16)
    with pytest.raises(YoloEdgeError, match="grpc:// URIs only"):
        TritonRunner("http://127.0.0.1:1/m?shm=1")
