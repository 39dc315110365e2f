"""Parameters and GFLOPs of the reference model per scale, next to Ultralytics YOLO11.

    python benchmarks/model_table.py            # Markdown table on stdout

Counts are for the deployed (Conv+BN fused) model with nc=80 at 640x640; GFLOPs are
2 x multiply-adds of convolutions and attention matmuls. The Ultralytics reference is
the fused-model summary of YOLO11n/s/m.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

from yolo_edge.model import YOLO, model_summary  # noqa: E402

# scale -> (params in millions, GFLOPs at 640), Ultralytics YOLO11 fused summaries
ULTRALYTICS = {"n": (2.6, 6.5), "s": (9.4, 21.5), "m": (20.1, 68.0)}


def table(scales: list[str], imgsz: int = 640, nc: int = 80) -> str:
    rows = [
        f"| scale | params (M) | GFLOPs@{imgsz} | Ultralytics ref (params M / GFLOPs) | delta % (params / GFLOPs) |",
        "|---|---:|---:|---:|---:|",
    ]
    for scale in scales:
        s = model_summary(YOLO.from_scale(scale, nc=nc).eval().fuse(), imgsz)
        params_m, gf = s["params"] / 1e6, s["gflops"]
        ref_p, ref_g = ULTRALYTICS[scale]
        rows.append(
            f"| {scale} | {params_m:.2f} | {gf:.1f} | {ref_p} / {ref_g} | "
            f"{100 * (params_m / ref_p - 1):+.1f} / {100 * (gf / ref_g - 1):+.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", default=list(ULTRALYTICS), choices=list(ULTRALYTICS))
    args = parser.parse_args(argv)
    print(table(args.scales))


if __name__ == "__main__":
    main()
