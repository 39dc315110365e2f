"""Datasets: synthetic scenes, readers on malformed files, the factory, letterbox feeding."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_edge.data import (
    PROBLEM_KINDS,
    SYNTHETIC_NAMES,
    CocoJsonDataset,
    ImageFolder,
    LetterboxedDataset,
    Sample,
    SceneConfig,
    SyntheticScenes,
    VideoFrames,
    YoloTxtDataset,
    iter_batches,
    letterboxed,
    load_dataset,
    parse_yolo_labels,
    render_scene,
    synthetic_split,
    write_yolo_dataset,
)
from yolo_edge.errors import DatasetError
from yolo_edge.letterbox import letterbox


def _png(path: Path, h: int = 100, w: int = 200, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), value, np.uint8)
    img[h // 4: h // 2, w // 4: w // 2] = (10, 200, 30)
    assert cv2.imwrite(str(path), img)
    return path


# ----------------------------------------------------------------------------- synthetic scenes


def test_synthetic_deterministic_regardless_of_access_order():
    a, b = SyntheticScenes(20, seed=7), SyntheticScenes(20, seed=7)
    forward = [a[i] for i in range(20)]
    for i in [13, 2, 19, 0, 7]:
        s = b[i]
        assert np.array_equal(s.image, forward[i].image)
        assert np.array_equal(s.xyxy, forward[i].xyxy)
        assert np.array_equal(s.class_ids, forward[i].class_ids)
    assert np.array_equal(a[-1].image, forward[19].image)
    # the same index is the same image whatever n (train:2000 is a prefix of train)
    assert np.array_equal(SyntheticScenes(500, seed=7)[13].image, forward[13].image)


def test_synthetic_seeds_differ_and_splits_are_disjoint_by_seed():
    x, y = SyntheticScenes(3, seed=0)[1], SyntheticScenes(3, seed=1)[1]
    assert x.image.shape != y.image.shape or not np.array_equal(x.image, y.image)
    splits = {name: synthetic_split(name) for name in ("train", "val", "calib")}
    assert {k: (v.seed, len(v)) for k, v in splits.items() if k != "train"} == {"val": (1, 200), "calib": (2, 512)}
    assert splits["train"].seed == 0
    assert len({v.seed for v in splits.values()}) == 3
    with pytest.raises(DatasetError, match="unknown synthetic split"):
        synthetic_split("test")


def test_synthetic_sample_contract():
    ds = SyntheticScenes(12, seed=3)
    assert ds.names == SYNTHETIC_NAMES and 6 <= len(ds.names) <= 10
    assert ds.summary.ok and len(ds) == 12 and len(list(ds)) == 12
    shapes = set()
    for s in ds:
        h, w = s.image.shape[:2]
        shapes.add((h, w))
        assert s.image.dtype == np.uint8 and s.image.shape[2] == 3 and max(h, w) == 640
        assert s.xyxy.dtype == np.float32 and s.class_ids.dtype == np.int32 and s.path == ""
        assert np.all(s.xyxy[:, :2] >= 0) and np.all(s.xyxy[:, 2] <= w) and np.all(s.xyxy[:, 3] <= h)
        assert np.all(s.xyxy[:, 2:] > s.xyxy[:, :2])
        assert np.all((s.class_ids >= 0) & (s.class_ids < len(SYNTHETIC_NAMES)))
    assert len(shapes) >= 2  # several aspect ratios, so letterbox padding is exercised
    fixed = SyntheticScenes(2, seed=3, size=(200, 300))
    assert fixed[0].image.shape == (200, 300, 3)


def test_synthetic_single_object_box_is_bounding_rect_of_changed_pixels():
    """Independent check: the only pixels that differ from the (equally noisy) background are the
    object's; the label must be exactly their bounding rectangle."""
    n_checked = 0
    for k in range(60):
        sc = render_scene(np.random.default_rng(k), (480, 640), n_objects=1, debug=True)
        changed = np.any(sc.image != sc.background, axis=2)
        if len(sc.xyxy) == 0:
            assert not changed.any()
            continue
        x, y, w, h = cv2.boundingRect(changed.astype(np.uint8))
        np.testing.assert_array_equal(sc.xyxy[0], [x, y, x + w, y + h])
        # clearly visible: object pixels far from the background under them
        diff = np.abs(sc.image.astype(int) - sc.background.astype(int)).sum(2)[changed]
        assert np.median(diff) >= 60
        n_checked += 1
    assert n_checked >= 55


def test_synthetic_multi_object_boxes_touch_object_pixels_on_every_side():
    ds = SyntheticScenes(25, seed=11)
    n_boxes = 0
    for i in range(len(ds)):
        sc = ds.scene(i, debug=True)
        assert np.array_equal(sc.image, ds[i].image)
        changed = np.any(sc.image != sc.background, axis=2)
        for x1, y1, x2, y2 in sc.xyxy.astype(int):
            box = changed[y1:y2, x1:x2]
            assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any()
            n_boxes += 1
    assert n_boxes > 50


def test_synthetic_occluded_objects_are_dropped():
    counts = {}
    for hidden in (0.0, 0.6, 1.0):
        cfg = SceneConfig(max_hidden=hidden)
        counts[hidden] = sum(len(SyntheticScenes(30, seed=4, config=cfg)[i].xyxy) for i in range(30))
    assert counts[0.0] < counts[0.6] <= counts[1.0]


def test_synthetic_val_covers_coco_sizes_classes_and_empty_images():
    ds = synthetic_split("val")
    samples = list(ds)
    xyxy = np.concatenate([s.xyxy for s in samples])
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    small, large = np.mean(area < 32**2), np.mean(area > 96**2)
    medium = 1 - small - large
    assert min(small, medium, large) > 0.15, (small, medium, large)
    n_objects = [len(s.xyxy) for s in samples]
    assert 3 <= sum(n == 0 for n in n_objects) <= 25  # ~5 % of 200
    assert max(n_objects) <= 12
    classes = np.bincount(np.concatenate([s.class_ids for s in samples]), minlength=len(SYNTHETIC_NAMES))
    assert classes.min() > 0.5 * classes.mean()


def test_synthetic_generation_is_fast():
    ds = SyntheticScenes(30, seed=5, size=(480, 640))
    ds[0]
    times = []
    for i in range(30):
        t = time.perf_counter()
        ds[i]
        times.append(time.perf_counter() - t)
    assert np.median(times) < 0.04  # ~4 ms on one core; generous for a shared machine


# ----------------------------------------------------------------------------- YOLO txt

LABEL_LINES = [  # (line text, problem kind or None)
    ("0 0.5 0.5 0.2 0.2", None),
    ("1 0.5 0.5 0.2", "field_count"),
    ("1 abc 0.5 0.2 0.2", "not_numeric"),
    ("7 0.5 0.5 0.2 0.2", "unknown_class"),
    ("1 1.5 0.5 0.2 0.2", "out_of_range"),
    ("1 0.5 0.5 0 0.2", "non_positive_size"),
    ("2 0.5 0.5 -0.1 0.2", "non_positive_size"),
    ("", None),  # blank lines are ignored
    ("2 0.25 0.75 0.5 0.5", None),
    ("-1 0.5 0.5 0.1 0.1", "unknown_class"),
    ("1 nan 0.5 0.1 0.1", "not_numeric"),
    ("1.5 0.5 0.5 0.1 0.1", "unknown_class"),
    ("1 0.5 0.5 0.1 0.1 0.2 0.2", "field_count"),
    ("1 0.05 0.5 0.2 0.2", "out_of_range"),  # left edge at -0.05
    ("1 0.995 0.5 0.02 0.1", None),  # sticks out by 0.005: within tolerance, clipped
]
BAD_LINES = [(i, text, kind) for i, (text, kind) in enumerate(LABEL_LINES, 1) if kind]


@pytest.mark.parametrize("text,kind", [(t, k) for t, k in LABEL_LINES if t])
def test_parse_yolo_line(text, kind):
    cls, xyxy, problems = parse_yolo_labels(text + "\n", nc=3)
    if kind is None:
        assert not problems and len(cls) == 1 and np.all((xyxy >= 0) & (xyxy <= 1))
    else:
        assert [(ln, k) for ln, k, _ in problems] == [(1, kind)] and len(cls) == 0


@pytest.fixture
def yolo_root(tmp_path) -> Path:
    root = tmp_path / "ds"
    _png(root / "images" / "a.png")  # 100 x 200
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("\n".join(t for t, _ in LABEL_LINES) + "\n")
    _png(root / "images" / "b.png")  # no label file
    _png(root / "images" / "e.png")
    (root / "labels" / "e.txt").write_text("")  # background image: empty label file, no problem
    (root / "labels" / "c.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # no image
    (root / "names.txt").write_text("red\ngreen\nblue\n")
    return root


def test_yolo_reader_reports_counts_and_skips_bad_lines(yolo_root):
    ds = YoloTxtDataset(yolo_root)
    assert ds.names == ("red", "green", "blue")
    assert [Path(s.path).name for s in ds] == ["a.png", "b.png", "e.png"]
    summary = ds.summary
    expected = {}
    for _, _, kind in BAD_LINES:
        expected[kind] = expected.get(kind, 0) + 1
    expected.update(label_without_image=1, image_without_label=1)
    assert dict(summary.counts) == expected
    for ln, _, kind in BAD_LINES:
        assert any(i.file.endswith("a.txt") and i.line == ln for i in summary.by_kind(kind)), (ln, kind)
    (lw,) = summary.by_kind("label_without_image")
    assert lw.file.endswith("c.txt")
    (iw,) = summary.by_kind("image_without_label")
    assert iw.file.endswith("b.png")
    report = str(summary)
    assert "a.txt:2:" in report and "field_count" in report and "label_without_image" in report

    a = ds[0]  # good lines kept, in source pixels (w=200, h=100)
    np.testing.assert_array_equal(a.class_ids, [0, 2, 1])
    np.testing.assert_allclose(a.xyxy, [[80, 40, 120, 60], [0, 50, 100, 100], [197, 45, 200, 55]], atol=1e-4)
    assert len(ds[1].xyxy) == 0 and len(ds[2].xyxy) == 0
    assert summary.n_images == 3 and summary.n_boxes == 3


@pytest.mark.parametrize("line_no,text,kind", BAD_LINES)
def test_yolo_strict_raises_naming_file_and_line(tmp_path, line_no, text, kind):
    _png(tmp_path / "images" / "x.png")
    lines = ["0 0.5 0.5 0.2 0.2"] * (line_no - 1) + [text]
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"x\.txt:{line_no}: "):
        YoloTxtDataset(tmp_path, names=["a", "b", "c"], strict=True)
    ds = YoloTxtDataset(tmp_path, names=["a", "b", "c"])
    assert ds.summary.counts[kind] == 1 and len(ds[0].xyxy) == line_no - 1


@pytest.mark.parametrize("orphan,match", [("label", r"c\.txt: no image"), ("image", r"b\.png: no label file")])
def test_yolo_strict_rejects_unpaired_files(tmp_path, orphan, match):
    _png(tmp_path / "images" / "a.png")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    if orphan == "label":
        (tmp_path / "labels" / "c.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    else:
        _png(tmp_path / "images" / "b.png")
    with pytest.raises(DatasetError, match=match):
        YoloTxtDataset(tmp_path, strict=True)
    assert YoloTxtDataset(tmp_path).summary.n_problems == 1


@pytest.mark.parametrize("fname,content", [
    ("dataset.json", json.dumps({"names": ["cat", "dog"]})),
    ("dataset.json", json.dumps({"names": {"1": "dog", "0": "cat"}})),
    ("names.txt", "cat\ndog\n"),
    ("data.yaml", "path: .\nnames: ['cat', 'dog']\n"),
    ("data.yaml", "path: .\nnames:\n  0: cat\n  1: dog\nnc: 2\n"),
    ("data.yaml", "names:\n  - cat\n  - dog\n"),
])
def test_yolo_names_files(tmp_path, fname, content):
    _png(tmp_path / "images" / "train" / "a.png")
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n")
    (tmp_path / fname).write_text(content)
    for where in (tmp_path, tmp_path / "images" / "train"):  # root or the images split directory
        ds = YoloTxtDataset(where)
        assert ds.names == ("cat", "dog")
        assert ds.summary.counts == {"unknown_class": 1}


def test_yolo_names_inferred_and_missing_labels_dir(tmp_path):
    _png(tmp_path / "images" / "a.png")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("4 0.5 0.5 0.2 0.2\n")
    assert YoloTxtDataset(tmp_path).names == ("0", "1", "2", "3", "4")
    _png(tmp_path / "other" / "a.png")
    with pytest.raises(DatasetError, match="cannot locate labels"):
        YoloTxtDataset(tmp_path / "other")
    (tmp_path / "x" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="labels directory not found"):
        YoloTxtDataset(tmp_path / "x")


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_write_yolo_dataset_round_trip(tmp_path, fmt):
    src = SyntheticScenes(6, seed=21)
    out = write_yolo_dataset(src, tmp_path / "synth", image_format=fmt)
    assert len(list((out / "images").glob(f"*.{fmt}"))) == 6
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["names"] == list(SYNTHETIC_NAMES) and meta["images"] == 6
    with pytest.raises(DatasetError, match="not empty"):
        write_yolo_dataset(src, out)
    write_yolo_dataset(SyntheticScenes(8, seed=21), out, image_format=fmt, overwrite=True)
    write_yolo_dataset(src, out, image_format=fmt, overwrite=True)
    back = YoloTxtDataset(out, strict=True)
    assert back.names == SYNTHETIC_NAMES and len(back) == 6 and back.summary.ok
    for a, b in zip(src, back):
        if fmt == "png":  # lossless
            assert np.array_equal(a.image, b.image)
        else:
            assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() < 6
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=2e-3)


# ----------------------------------------------------------------------------- COCO json


def _coco(tmp_path: Path) -> Path:
    imgs = tmp_path / "images"
    _png(imgs / "one.png", 100, 200)
    _png(imgs / "two.png", 50, 60)
    (imgs / "bad.png").write_bytes(b"not a png")
    anns = [
        {"id": 1, "image_id": 10, "category_id": 7, "bbox": [10, 20, 30, 40]},  # good -> class 2
        {"id": 2, "image_id": 10, "category_id": 1, "bbox": [150, 50, 60, 10]},  # x2 = 210 > 200
        {"id": 3, "image_id": 10, "category_id": 1, "bbox": [10, 10, 0, 5]},  # zero width
        {"id": 4, "image_id": 10, "category_id": 99, "bbox": [10, 10, 5, 5]},  # unknown category
        {"id": 5, "image_id": 555, "category_id": 1, "bbox": [1, 1, 5, 5]},  # no such image
        {"id": 6, "image_id": 11, "category_id": 3, "bbox": [1, 2, 3]},  # 3 numbers
        {"id": 7, "image_id": 11, "category_id": 3, "bbox": [1, "a", 3, 4]},  # non-numeric
        {"id": 8, "image_id": 11, "category_id": 3, "bbox": [0, 0, 60.5, 50]},  # within 1 px: clipped
        {"id": 9, "image_id": 12, "category_id": 3, "bbox": [1, 1, 5, 5]},  # image file missing
        {"id": 10, "image_id": 10, "category_id": 1, "bbox": [5, 5, 5, 5], "iscrowd": 1},
        {"id": 11, "image_id": 10, "category_id": 1, "bbox": [0, 0, -5, 5]},  # negative width
        {"id": 12, "image_id": [10], "category_id": 1, "bbox": [1, 1, 5, 5]},  # image_id of a wrong type
        {"id": 13, "image_id": 10, "category_id": "1", "bbox": [1, 1, 5, 5]},  # category_id of a wrong type
    ]
    data = {
        "images": [
            {"id": 10, "file_name": "one.png", "width": 200, "height": 100},
            {"id": 11, "file_name": "two.png", "width": 60, "height": 50},
            {"id": 12, "file_name": "gone.png", "width": 60, "height": 50},
            {"id": 13, "file_name": "bad.png", "width": 60, "height": 50},
        ],
        "annotations": anns,
        "categories": [{"id": 7, "name": "seven"}, {"id": 1, "name": "one"}, {"id": 3, "name": "three"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_reader_maps_categories_and_reports_bad_annotations(tmp_path):
    ds = CocoJsonDataset(_coco(tmp_path), tmp_path / "images")
    assert ds.names == ("one", "three", "seven") and ds.coco_ids == (1, 3, 7)
    assert ds.category_to_class == {1: 0, 3: 1, 7: 2}
    assert dict(ds.summary.counts) == {
        "out_of_range": 1, "non_positive_size": 2, "unknown_class": 2, "label_without_image": 2,
        "field_count": 1, "not_numeric": 1, "missing_image": 1, "unreadable_image": 1,
    }
    assert any("(id 5)" in i.message for i in ds.summary.by_kind("label_without_image"))
    assert ds.summary.by_kind("missing_image")[0].file.endswith("gone.png")
    assert ds.n_crowd == 1 and len(ds) == 2 and ds.image_ids == (10, 11)
    one, two = ds[0], ds[1]
    assert one.image_id == 10 and two.image_id == 11
    np.testing.assert_array_equal(one.class_ids, [2])
    np.testing.assert_allclose(one.xyxy, [[10, 20, 40, 60]])
    np.testing.assert_allclose(two.xyxy, [[0, 0, 60, 50]])
    assert ds.coco_ids[int(one.class_ids[0])] == 7
    assert "annotations[1] (id 2)" in str(ds.summary)


def test_coco_strict_and_malformed_files(tmp_path):
    path = _coco(tmp_path)
    with pytest.raises(DatasetError, match=r"gone\.png: listed in instances\.json as images\[2\]"):
        CocoJsonDataset(path, tmp_path / "images", strict=True)
    data = json.loads(path.read_text())
    data["images"] = data["images"][:2]
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"instances\.json: annotations\[1\] \(id 2\): bbox"):
        CocoJsonDataset(path, tmp_path / "images", strict=True)
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="not a readable json"):
        CocoJsonDataset(bad, tmp_path / "images")
    bad.write_text(json.dumps({"annotations": []}))
    with pytest.raises(DatasetError, match="not a COCO detection file"):
        CocoJsonDataset(bad, tmp_path / "images")
    # default images dir: sibling images/
    assert len(CocoJsonDataset(path)) == 2


# ----------------------------------------------------------------------------- image folders, video


def test_image_folder_skips_corrupt_files(tmp_path):
    _png(tmp_path / "b.png")
    sub = tmp_path / "sub"
    sub.mkdir()
    assert cv2.imwrite(str(sub / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    data = (tmp_path / "b.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])  # good signature, bad body

    ds = ImageFolder(tmp_path)
    assert ds.names == () and ds.summary.counts == {"unreadable_image": 2}
    assert {Path(i.file).name for i in ds.summary.issues} == {"corrupt.jpg", "empty.png"}
    samples = list(ds)  # the truncated file fails on decode: reported and skipped
    assert [Path(s.path).name for s in samples] == ["b.png", "a.jpg"]
    assert all(len(s.xyxy) == 0 and s.class_ids.shape == (0,) for s in samples)
    assert ds.summary.counts["unreadable_image"] == 3
    assert len(list(ds)) == 2 and ds.summary.counts["unreadable_image"] == 3  # reported once

    strict = ImageFolder(tmp_path, verify=True)
    assert len(strict) == 2 and strict.summary.counts == {"unreadable_image": 3}
    assert [Path(p).name for p in ImageFolder(tmp_path, recursive=False).paths] == ["b.png", "truncated.png"]
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DatasetError, match="no readable images"):
        ImageFolder(tmp_path / "empty_dir")


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for i in range(12):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    return path


def test_video_frames(video):
    ds = VideoFrames(video)
    assert len(ds) == 12 and ds.names == ()
    frames = list(ds)
    assert [s.image_id for s in frames] == list(range(12))
    assert all(s.image.shape == (48, 64, 3) and len(s.xyxy) == 0 for s in frames)
    assert abs(frames[5].image.mean() - 100) < 4

    stepped = VideoFrames(video, step=3, max_frames=3)
    assert len(stepped) == 3 and [s.image_id for s in stepped] == [0, 3, 6]
    assert abs(stepped[2].image.mean() - 120) < 4  # random access seeks
    assert abs(stepped[0].image.mean() - 0) < 4
    assert len(VideoFrames(video, step=5)) == 3


def test_video_errors(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(DatasetError, match="cannot open video"):
        VideoFrames(bad)
    with pytest.raises(DatasetError, match="not found"):
        VideoFrames(tmp_path / "missing.mp4")


# ----------------------------------------------------------------------------- factory


@pytest.fixture
def layouts(tmp_path, yolo_root, video) -> Path:
    _png(tmp_path / "folder" / "x.png")
    coco = _coco(tmp_path / "coco")
    (tmp_path / "coco_imgs").mkdir()
    _png(tmp_path / "coco_imgs" / "one.png")
    _png(tmp_path / "coco_imgs" / "two.png")
    (tmp_path / "list.txt").write_text("x\n")
    _png(tmp_path / "single.png")
    assert coco.exists()
    return tmp_path


@pytest.mark.parametrize("spec,cls,check", [
    ("synthetic:val", SyntheticScenes, lambda d: (d.seed, len(d)) == (1, 200)),
    ("synthetic:train:2000", SyntheticScenes, lambda d: (d.seed, len(d)) == (0, 2000)),
    ("synthetic:calib", SyntheticScenes, lambda d: (d.seed, len(d)) == (2, 512)),
    ("{t}/ds", YoloTxtDataset, lambda d: len(d) == 3),
    ("{t}/ds/images", YoloTxtDataset, lambda d: d.names == ("red", "green", "blue")),
    ("{t}/folder", ImageFolder, lambda d: len(d) == 1),
    ("{t}/coco/instances.json", CocoJsonDataset, lambda d: len(d) == 2),
    ("{t}/coco/instances.json:{t}/coco_imgs", CocoJsonDataset,
     lambda d: len(d) == 2 and d.images_dir.name == "coco_imgs" and d.summary.counts["unreadable_image"] == 0),
    ("{t}/clip.avi", VideoFrames, lambda d: len(d) == 12),
])
def test_load_dataset(layouts, spec, cls, check):
    ds = load_dataset(spec.format(t=layouts))
    assert type(ds) is cls and check(ds)
    assert load_dataset(ds) is ds


@pytest.mark.parametrize("spec,match", [
    ("synthetic", "synthetic:<split>"),
    ("synthetic:test", "synthetic:<split>"),
    ("synthetic:train:0", "positive integer"),
    ("synthetic:train:many", "positive integer"),
    ("{t}/nope", "dataset not found"),
    ("{t}/nope.json:{t}/folder", "dataset not found"),
    ("{t}/list.txt", "cannot tell what kind"),
    ("{t}/single.png", "single image"),
    ("", "empty dataset name"),
])
def test_load_dataset_errors(layouts, spec, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset(spec.format(t=layouts))


def test_load_dataset_strict_passes_through(layouts):
    with pytest.raises(DatasetError, match=r"a\.txt:2"):
        load_dataset(layouts / "ds", strict=True)


# ----------------------------------------------------------------------------- letterbox feeding


def test_letterboxed_and_batches_use_the_shared_letterbox():
    ds = SyntheticScenes(5, seed=9)
    wrapped = LetterboxedDataset(ds, 320)
    assert len(wrapped) == 5 and wrapped.names == SYNTHETIC_NAMES
    tensor, meta, sample = wrapped[3]
    ref, ref_meta = letterbox(ds[3].image, 320)
    assert np.array_equal(tensor, ref) and meta == ref_meta and sample.image_id == 3
    assert [m.orig_shape for _, m, _ in letterboxed(ds, 320)] == [s.image.shape[:2] for s in ds]

    batches = list(iter_batches(ds, 2, (256, 320)))
    assert [b.shape for b, _, _ in batches] == [(2, 3, 256, 320), (2, 3, 256, 320), (1, 3, 256, 320)]
    b, metas, samples = batches[1]
    assert np.array_equal(b[1], letterbox(samples[1].image, (256, 320))[0]) and samples[1].image_id == 3
    assert len(list(iter_batches(ds, 2, 320, drop_last=True))) == 2


def test_sample_validation():
    with pytest.raises(ValueError, match="uint8 BGR"):
        Sample(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="class_ids"):
        Sample(np.zeros((4, 4, 3), np.uint8), np.zeros((2, 4)), np.zeros(1))
    s = Sample(np.zeros((4, 4, 3), np.uint8))
    assert s.xyxy.shape == (0, 4) and s.class_ids.shape == (0,) and s.shape == (4, 4)


def test_problem_kinds_are_documented():
    assert {"field_count", "not_numeric", "unknown_class", "out_of_range", "non_positive_size",
            "label_without_image", "image_without_label"} <= set(PROBLEM_KINDS)


def test_data_package_does_not_import_torch():
    code = "import sys, yolo_edge.data; assert 'torch' not in sys.modules, 'torch imported'"
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
