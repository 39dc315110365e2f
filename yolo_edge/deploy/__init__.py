"""Writers for the engines users already run: a Triton model repository (:mod:`.triton`) and the
DeepStream nvinfer / deepstream-app configs with the bbox parser of the output contract
(:mod:`.deepstream`). Importing this package imports neither ``tritonclient`` nor anything heavy.

    from yolo_edge.deploy import TritonOptions, write_triton_repository
    write_triton_repository("model.onnx", "repo/", TritonOptions(instances=2, kind="gpu"))
"""

from __future__ import annotations

from .deepstream import DeepStreamOptions, write_deepstream
from .triton import TritonOptions, write_triton_repository

__all__ = ["DeepStreamOptions", "TritonOptions", "write_deepstream", "write_triton_repository"]
