"""The calibration report shows the budget as a sentence a person reads, not a JSON dump."""

from yolo_edge.precision.report import budget_sentence


def test_budget_sentence_reads_drop_interval_and_verdict():
    budget = {"max_map_drop": 1.0, "drop": 0.4015, "within": True,
              "noise": {"images": 64, "ci90": [-1.2858, 0.5331], "too_noisy": False}}
    assert budget_sentence(budget) == ("INT8 ΔmAP50-95 -0.40 points; 90 % bootstrap interval -1.29 … +0.53 "
                                       "(64 images); budget 1 points: within")


def test_budget_sentence_over_budget_and_noisy():
    text = budget_sentence({"max_map_drop": 0.5, "drop": 1.25, "within": False,
                            "noise": {"images": 24, "ci90": [-3.0, 0.5], "too_noisy": True}})
    assert "-1.25 points" in text and "OVER" in text and "too small" in text and "{" not in text


def test_budget_sentence_shows_the_agreement_with_fp32():
    text = budget_sentence({"max_map_drop": 1.0, "drop": 0.15, "within": True,
                            "noise": {"images": 64, "ci90": [-0.97, 0.94], "too_noisy": False,
                                      "agreement_map50_95": 0.90331}})
    assert "agreement with FP32's detections 90.3" in text and "within" in text
