"""Files shipped inside the package: the bundled checkpoint."""

from __future__ import annotations

from pathlib import Path

from .errors import YoloEdgeError

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "yolo11n-synth.pt"


def default_checkpoint() -> Path:
    """The bundled ``n`` checkpoint trained on synthetic scenes (the embedded default model)."""
    if not DEFAULT_CHECKPOINT.exists():
        raise YoloEdgeError(
            f"the bundled checkpoint {DEFAULT_CHECKPOINT.name} is missing from this install; "
            "pass --model PATH or train one with `yolo-edge train`"
        )
    return DEFAULT_CHECKPOINT
