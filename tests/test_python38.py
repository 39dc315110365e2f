"""JetPack 5 (Ubuntu 20.04) has Python 3.8, and NVIDIA's TensorRT bindings there (python3-libnvinfer)
are built for it, so yolo-edge supports Python 3.8: pyproject admits it, and no module uses syntax or
a run-time API newer than 3.8. The package was run under Python 3.8.18 (tests pass there; see
jetson/README.md); this guard keeps it that way on the 3.11 CI.

What it looks for (each would break `import yolo_edge...` or a call on 3.8): syntax newer than 3.8
(``match``, parenthesised context managers ...: ``ast.parse(feature_version=(3, 8))``), builtin
generics such as ``list[int]`` or ``X | None`` evaluated at run time (outside annotations of a module
with ``from __future__ import annotations``), ``str.removeprefix/removesuffix``, ``zip(strict=)``,
``@dataclass(slots=/kw_only=)``, and 3.9+ standard-library names.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted((ROOT / "yolo_edge").rglob("*.py"))
BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}
NEW_METHODS = {"removeprefix": "3.9", "removesuffix": "3.9", "is_relative_to": "3.9", "with_stem": "3.9",
               "bit_count": "3.10", "file_digest": "3.11"}
NEW_MODULES = {"zoneinfo": "3.9", "graphlib": "3.9", "tomllib": "3.11"}
NEW_NAMES = {("functools", "cache"): "3.9", ("math", "lcm"): "3.9", ("random", "randbytes"): "3.9",
             ("typing", "Annotated"): "3.9", ("typing", "ParamSpec"): "3.10", ("typing", "TypeAlias"): "3.10",
             ("typing", "Self"): "3.11", ("typing", "TypeGuard"): "3.10", ("itertools", "pairwise"): "3.10",
             ("datetime", "UTC"): "3.11", ("asyncio", "to_thread"): "3.9", ("ast", "unparse"): "3.9"}


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside an annotation (never evaluated under ``from __future__ import annotations``)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        anns = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            anns += [x.annotation for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x]
            anns.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            anns.append(node.annotation)
        for ann in anns:
            if ann is not None:
                out.update(id(n) for n in ast.walk(ann))
    return out


def problems_in(source: str, name: str = "<src>") -> list[str]:
    try:
        tree = ast.parse(source, name, feature_version=(3, 8))
    except SyntaxError as e:
        return [f"{name}:{e.lineno}: syntax newer than Python 3.8 ({e.msg})"]
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
                 for n in tree.body)
    lazy = _annotation_nodes(tree) if future else set()
    found = []

    def at(node, what):
        found.append(f"{name}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in BUILTIN_GENERICS:
            at(node, f"{node.value.id}[...] at run time needs Python 3.9 (use typing.List or a string annotation)")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and any(
                (isinstance(x, ast.Constant) and x.value is None) or (isinstance(x, ast.Name) and x.id in
                                                                    {"int", "float", "str", "bytes", "bool"} | BUILTIN_GENERICS)
                for x in (node.left, node.right)):
            at(node, "X | Y of types at run time needs Python 3.10 (use typing.Union / Optional)")
        elif isinstance(node, ast.Attribute) and node.attr in NEW_METHODS:
            at(node, f".{node.attr}() needs Python {NEW_METHODS[node.attr]}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "zip" and any(
                k.arg == "strict" for k in node.keywords):
            at(node, "zip(strict=) needs Python 3.10")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "dataclass" and \
                any(k.arg in ("slots", "kw_only", "match_args") for k in node.keywords):
            at(node, "dataclass(slots=/kw_only=) needs Python 3.10")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mod = node.module if isinstance(node, ast.ImportFrom) else None
            for alias in node.names:
                top = (mod or alias.name).split(".")[0]
                if top in NEW_MODULES:
                    at(node, f"module {top} needs Python {NEW_MODULES[top]}")
                if mod and (mod, alias.name) in NEW_NAMES:
                    at(node, f"{mod}.{alias.name} needs Python {NEW_NAMES[(mod, alias.name)]}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                (node.value.id, node.attr) in NEW_NAMES:
            at(node, f"{node.value.id}.{node.attr} needs Python {NEW_NAMES[(node.value.id, node.attr)]}")
    return found


def test_pyproject_admits_python_38():
    text = (ROOT / "pyproject.toml").read_text()
    m = re.search(r'^requires-python\s*=\s*"([^"]+)"', text, re.MULTILINE)
    assert m, "requires-python missing"
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(m.group(1))
    assert "3.8.10" in spec, f"JetPack 5's Python 3.8.10 is refused by requires-python {m.group(1)!r}"
    assert "3.12.3" in spec  # JetPack 7


def test_no_module_needs_python_39_or_newer():
    found = []
    for path in MODULES:
        found += problems_in(path.read_text(), str(path.relative_to(ROOT)))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("snippet, what", [
    ("x = list[int]\n", "list[...]"),
    ("from __future__ import annotations\nAlias = dict[str, int]\n", "dict[...]"),
    ("def f(a: list[int]) -> None: ...\n", "list[...]"),  # evaluated at def time without the future import
    ("isinstance(1, int | float)\n", "X | Y"),
    ("'ab'.removeprefix('a')\n", "removeprefix"),
    ("list(zip([1], [2], strict=True))\n", "zip(strict=)"),
    ("from dataclasses import dataclass\n@dataclass(slots=True)\nclass A:\n    x: int = 0\n", "dataclass"),
    ("match 1:\n    case 1:\n        pass\n", "syntax newer"),
    ("import functools\n@functools.cache\ndef f(): ...\n", "functools.cache"),
    ("from typing import Annotated\n", "typing.Annotated"),
])
def test_the_guard_catches(snippet, what):
    assert any(what in p for p in problems_in(snippet)), problems_in(snippet)


@pytest.mark.parametrize("snippet", [
    "from __future__ import annotations\ndef f(a: list[int] | None) -> dict[str, int]: ...\n",
    "from __future__ import annotations\nx: list[int] = []\n",
    "from typing import List, Optional\ny = List[int]\nz = Optional[int]\n",
    "a = 3 | 4\n",
])
def test_the_guard_passes(snippet):
    assert problems_in(snippet) == []
