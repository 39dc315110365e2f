import json

import numpy as np
import pytest

from yolo_edge.detections import Detections


@pytest.mark.parametrize("xyxy, scores, class_ids, message", [
    (np.zeros((2, 3)), np.zeros(2), np.zeros(2), r"xyxy must have shape \(N, 4\)"),
    (np.zeros((2, 4)), np.zeros(3), np.zeros(2), r"scores must have shape \(2,\)"),
    (np.zeros((2, 4)), np.zeros(2), np.zeros(1), r"class_ids must have shape \(2,\)"),
    (np.zeros((1, 4)), np.zeros(1), np.array([-1]), "class_ids must be >= 0"),
    (np.zeros((1, 4)), np.zeros(1), np.array([0.5]), "class_ids must be integers"),
])
def test_validation(xyxy, scores, class_ids, message):
    with pytest.raises(ValueError, match=message):
        Detections(xyxy, scores, class_ids)


def test_dtypes_and_empty():
    d = Detections([[0, 0, 1, 1]], [0.5], [3])
    assert d.xyxy.dtype == np.float32 and d.scores.dtype == np.float32 and d.class_ids.dtype == np.int32
    e = Detections.empty()
    assert len(e) == 0 and e.xyxy.shape == (0, 4)
    assert len(Detections([], [], [])) == 0


def test_indexing_returns_detections():
    d = Detections(np.arange(12).reshape(3, 4), [0.1, 0.9, 0.5], [0, 1, 2])
    assert isinstance(d[0], Detections) and len(d[0]) == 1
    assert d[d.scores > 0.3].class_ids.tolist() == [1, 2]
    assert d.sorted().class_ids.tolist() == [1, 2, 0]
    assert d.filter(0.3, classes=[2]).class_ids.tolist() == [2]
    assert len(Detections.concatenate([d, d[1:]])) == 5
    assert d[1:].area.tolist() == [4, 4]


def test_to_list_is_json():
    d = Detections([[1.234, 2, 3, 4]], [0.87654321], [1])
    recs = d.to_list(["a", "b"])
    assert json.loads(json.dumps(recs)) == [{"box": [1.23, 2.0, 3.0, 4.0], "score": 0.87654, "class_id": 1,
                                             "class_name": "b"}]
