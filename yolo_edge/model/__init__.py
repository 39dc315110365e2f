"""PyTorch reference YOLO11 (the torch layer: importing this package imports torch).

    from yolo_edge.model import YOLO, load_checkpoint
    model = YOLO.from_scale("n", nc=80)
    feats = model(x)                  # 3 x (B, 4*reg_max + nc, H/s, W/s), s = 8, 16, 32
    boxes, scores = model.infer(x)    # (B, A, 4) xyxy input pixels, (B, A, nc) after sigmoid
"""

from yolo_edge.model.checkpoint import (
    FORMAT,
    load_checkpoint,
    load_state_dict_checked,
    read_checkpoint,
    save_checkpoint,
)
from yolo_edge.model.yolo import (
    SCALES,
    YOLO,
    DetectHead,
    ModelConfig,
    count_params,
    decode_torch,
    gflops,
    model_summary,
)

__all__ = [
    "FORMAT",
    "SCALES",
    "YOLO",
    "DetectHead",
    "ModelConfig",
    "count_params",
    "decode_torch",
    "gflops",
    "load_checkpoint",
    "load_state_dict_checked",
    "model_summary",
    "read_checkpoint",
    "save_checkpoint",
]
