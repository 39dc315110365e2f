import numpy as np

from yolo_edge.cli import main
from yolo_edge.data import YoloTxtDataset, synthetic_split


def test_synth_writes_a_dataset_the_reader_reads_back(tmp_path, capsys):
    assert main(["data", "synth", "--split", "val", "--n", "4", "--out", str(tmp_path / "d")]) == 0
    back = YoloTxtDataset(tmp_path / "d")
    ref = synthetic_split("val", n=4)
    assert len(back) == 4 and back.names == ref.names
    for i in range(4):
        a, b = back[i], ref[i]
        np.testing.assert_array_equal(a.image, b.image)  # PNG keeps pixels exact
        assert a.class_ids.tolist() == b.class_ids.tolist()
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3 * max(b.image.shape))


def test_check_reports_bad_line_and_fails_on_request(tmp_path, capsys):
    main(["data", "synth", "--split", "val", "--n", "2", "--out", str(tmp_path / "d")])
    label = sorted((tmp_path / "d" / "labels").glob("*.txt"))[0]
    n_lines = len(label.read_text().splitlines())
    with open(label, "a") as f:
        f.write("0 0.5 0.5 0 0.1\n")
    capsys.readouterr()
    assert main(["data", "check", str(tmp_path / "d"), "--fail-on-problems"]) == 1
    assert f"{label}:{n_lines + 1}" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "d"), "--strict"]) == 1
