"""Exception types.

User errors (bad input, missing file, wrong model) derive from :class:`YoloEdgeError`;
the CLI prints them as one line and exits with code 1. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class YoloEdgeError(Exception):
    """An error caused by the user's input or environment, not by a bug."""


class MissingDependency(YoloEdgeError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""

    def __init__(self, module: str, extra: str | None = None, detail: str = ""):
        self.module = module
        self.extra = extra
        hint = f"pip install 'yolo-edge[{extra}]'" if extra else f"pip install {module}"
        msg = f"'{module}' is required for this feature but is not installed: {hint}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class CheckpointError(YoloEdgeError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


class ImageError(YoloEdgeError):
    """An image cannot be read or has an unsupported format."""


class ModelFormatError(YoloEdgeError):
    """An ONNX model or engine does not have the expected layout or metadata."""


class DatasetError(YoloEdgeError):
    """A dataset is missing, empty or malformed."""
