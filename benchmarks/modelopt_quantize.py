"""Quantize an ONNX with NVIDIA ModelOpt (the peer row of ``benchmarks/int8_accuracy.py``).

Runs in ModelOpt's own virtual environment, not in yolo-edge's (it pins torch and onnxruntime-gpu):

    python3 -m venv /work/venv-modelopt && /work/venv-modelopt/bin/pip install "nvidia-modelopt[onnx]"
    /work/venv-modelopt/bin/python benchmarks/modelopt_quantize.py SRC.onnx CALIB.npy OUT.onnx \
        --method entropy --high-precision fp16

``CALIB.npy`` holds the letterboxed calibration images ``(N, 3, H, W)`` float32 (yolo-edge writes it
with the same letterbox as every other row). Only numpy and modelopt are imported here; calibration
runs on ONNX Runtime's CPU execution provider.
"""

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx")
    ap.add_argument("calib_npy")
    ap.add_argument("out")
    ap.add_argument("--method", default="entropy", choices=("entropy", "max"))
    ap.add_argument("--high-precision", default="fp16", choices=("fp16", "fp32"),
                    help="high_precision_dtype (ModelOpt's default fp16: FP16 graph, FP16 scales)")
    args = ap.parse_args(argv)

    import numpy as np
    import modelopt
    from modelopt.onnx.quantization import quantize

    data = np.load(args.calib_npy)
    t = time.perf_counter()
    quantize(onnx_path=args.onnx, quantize_mode="int8", calibration_data=data, calibration_method=args.method,
             calibration_eps=["cpu"], high_precision_dtype=args.high_precision, output_path=args.out,
             log_level="WARNING")
    print(json.dumps({"modelopt": modelopt.__version__, "method": args.method, "high_precision": args.high_precision,
                      "images": int(data.shape[0]), "seconds": round(time.perf_counter() - t, 1), "out": args.out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
