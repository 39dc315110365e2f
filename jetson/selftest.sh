#!/usr/bin/env bash
# Field self-test: one command on the Jetson (or any TensorRT machine), one report to attach to a bug.
#
#   jetson/selftest.sh [OUT_DIR] [yolo-edge doctor options...]
#
# Writes OUT_DIR/doctor.json and OUT_DIR/doctor.md: versions (TensorRT, CUDA, cuDNN, JetPack/L4T, GPU),
# the TensorRT plugin registry, FP32/FP16/INT8 engine builds of the bundled model for --nms onnx, trt
# and none, parity levels 1-3 against ONNX Runtime with their budgets, and runner vs trtexec latency.
# Steps that cannot run here say "not available" and why. Exit code 1 when a step failed.
# Set SELFTEST_PYTEST=1 (in a source checkout) to also run the real-GPU test suite.
set -euo pipefail
OUT="${1:-runs/selftest-$(date +%Y%m%d-%H%M%S)}"
shift || true
if ! command -v yolo-edge >/dev/null 2>&1; then
    echo "selftest: yolo-edge is not installed (see jetson/README.md: setup.sh)" >&2
    exit 1
fi
status=0
yolo-edge doctor --out "$OUT" "$@" || status=$?
if [[ "${SELFTEST_PYTEST:-0}" == "1" && -f tests/test_trt_device.py ]]; then
    python3 -m pytest tests/test_trt_device.py -v -rs 2>&1 | tee "$OUT/pytest-device.txt" || status=1
fi
echo "selftest: report in $OUT/doctor.md (attach $OUT/doctor.json to a bug report)"
exit "$status"
