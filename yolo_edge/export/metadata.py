"""The ``yolo_edge`` metadata of exported ONNX files (DESIGN §2), and reading third-party metadata.

Every ONNX that export writes carries ``metadata_props["yolo_edge"] = ModelSpec(...).to_json()``;
runners read it back (``OrtRunner.spec``) instead of asking the user again.

Ultralytics exports carry their own props (``names`` as a Python dict literal, ``imgsz`` and
``stride`` as list / int literals); :func:`read_ultralytics_metadata` parses them with
``ast.literal_eval`` (never ``eval``).
"""

from __future__ import annotations

import ast
from typing import Any, Sequence

from ..errors import ModelFormatError
from ..spec import METADATA_KEY, LetterboxSpec, ModelSpec, NmsSpec


def build_spec(
    names: Sequence[str],
    imgsz: tuple[int, int],
    nms: NmsSpec,
    *,
    strides: Sequence[int] = (8, 16, 32),
    reg_max: int = 16,
    scale: str = "",
    checkpoint_sha256: str = "",
    extra: dict[str, Any] | None = None,
) -> ModelSpec:
    """The spec written into an exported model (precision ``fp32``; precision/ rewrites it)."""
    from .. import __version__

    return ModelSpec(
        names=tuple(names), letterbox=LetterboxSpec(size=tuple(imgsz)), strides=tuple(strides), reg_max=reg_max,
        nms=nms, precision="fp32", scale=scale, checkpoint_sha256=checkpoint_sha256, version=__version__,
        extra=dict(extra or {}),
    )


def set_metadata(model, spec: ModelSpec) -> None:
    """Write ``spec`` into ``model.metadata_props["yolo_edge"]`` (in place, replacing an old entry)."""
    set_prop(model, METADATA_KEY, spec.to_json())


def set_prop(model, key: str, value: str) -> None:
    for p in model.metadata_props:
        if p.key == key:
            p.value = value
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = key, value


def props(model) -> dict[str, str]:
    """``metadata_props`` of an ``onnx.ModelProto`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def get_spec(model) -> ModelSpec | None:
    """The ``yolo_edge`` spec of an ``onnx.ModelProto``, or None when it has none."""
    text = props(model).get(METADATA_KEY)
    return ModelSpec.from_json(text) if text is not None else None


def _literal(text: str, key: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        raise ModelFormatError(
            f"cannot parse the model's '{key}' metadata ({e.__class__.__name__}): {text[:80]!r}") from e


def parse_names(value) -> tuple[str, ...]:
    """Class names from a dict ``{index: name}`` (Ultralytics) or a list; indices must be 0..n-1."""
    if isinstance(value, str):
        value = _literal(value, "names")
    if isinstance(value, dict):
        try:
            keys = sorted(int(k) for k in value)
        except (TypeError, ValueError) as e:
            raise ModelFormatError(f"class-name keys must be integers, got {list(value)[:5]}") from e
        if keys != list(range(len(keys))):
            raise ModelFormatError(f"class-name indices must be 0..{len(keys) - 1} without gaps, got {keys[:10]}")
        return tuple(str(value[k] if k in value else value[str(k)]) for k in keys)
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    raise ModelFormatError(f"class names must be a dict or a list, got {type(value).__name__}")


def read_ultralytics_metadata(model) -> dict[str, Any]:
    """``{"names": tuple, "imgsz": (H, W), "stride": int}`` from an Ultralytics ONNX (keys present only
    when the model has them)."""
    p = props(model)
    out: dict[str, Any] = {}
    if "names" in p:
        out["names"] = parse_names(p["names"])
    if "imgsz" in p:
        v = _literal(p["imgsz"], "imgsz")
        v = (v, v) if isinstance(v, int) else tuple(v)
        if len(v) != 2 or not all(isinstance(i, int) and i > 0 for i in v):
            raise ModelFormatError(f"the model's 'imgsz' metadata is not (H, W): {p['imgsz']!r}")
        out["imgsz"] = (int(v[0]), int(v[1]))
    if "stride" in p:
        s = _literal(p["stride"], "stride")
        if isinstance(s, int):
            out["stride"] = s
    return out
