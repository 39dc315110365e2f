"""Jetson Linux (L4T) releases -> JetPack, Ubuntu, Python, CUDA and the pip index with Jetson wheels.

The one table the kit uses: ``jetson/setup.sh`` runs this file as a script (``python3
yolo_edge/jetson/releases.py shell /etc/nv_tegra_release``) before anything is installed, and
:mod:`yolo_edge.trt.manifest` records the JetPack of an engine from it. So this module imports the
standard library only, has no relative imports, and stays readable by the Python 3.6 of JetPack 4
(which it must be able to refuse with a clear message).

Sources (checked 2026-12):

* L4T -> JetPack: NVIDIA's JetPack archive (developer.nvidia.com/embedded/jetpack-archive) and
  jetson-containers ``jetson_containers/l4t_version.py`` ``get_jetpack_version()`` (commit
  dd206bfe, 2026-05-30), which adds 35.6.1 -> 5.1.5, 36.4.7 -> 6.2.1, 38.2.0 -> 7.0, 38.4.0 -> 7.1.
* Ubuntu / Python per major release: JetPack 5 = Ubuntu 20.04 / Python 3.8, JetPack 6 = Ubuntu
  22.04 / Python 3.10 (JetPack 5/6 release notes); JetPack 7 = Ubuntu 24.04 / Python 3.12.3 /
  CUDA 13.0 / TensorRT 10.13 (raw board reports in rbonghi/jetson_stats issues #711, L4T 38.2.0,
  and #820, L4T 38.4.0).
* CUDA per release: jetson-containers ``get_cuda_version()`` (same commit): r36.3 -> 12.2 on the
  board (JetPack 6.0), r36.4.x -> 12.6, r38 -> 13.0, r39 -> 13.2.
* pip index: the Jetson AI Lab index moved in 2025 from ``pypi.jetson-ai-lab.dev`` to
  ``pypi.jetson-ai-lab.io`` (dusty-nv/jetson-containers issue #1243 and pull request #1317; the
  old host is gone, NVIDIA/Isaac-GR00T issue #301). Paths: ``jp6/cu126`` for JetPack 6.1/6.2,
  ``sbsa/cu130`` for JetPack 7 (jetson-containers ``packages/cuda/cuda/config.py``
  ``pip_cache()``: ``sbsa/cuXY`` on SBSA boards, ``jpN/cuXY`` on Tegra). The older ``jp6/cu122``
  lost wheels in the move (jetson-containers issue #1212), which is why setup.sh checks the index
  before it installs from it.
"""

import os
import re
import sys
from typing import NamedTuple, Optional

#: The host of the Jetson AI Lab pip index (one place; JETSON_PIP_INDEX overrides the whole URL).
INDEX_HOST = "https://pypi.jetson-ai-lab.io"

#: L4T release -> JetPack release (see the module doc for the sources).
JETPACK = {
    "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4", "32.7.5": "4.6.5",
    "32.7.6": "4.6.6",
    "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3", "35.6.0": "5.1.4",
    "35.6.1": "5.1.5",
    "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1", "36.4.7": "6.2.1",
    "38.2.0": "7.0", "38.2.2": "7.0", "38.4.0": "7.1",
}


class Platform(NamedTuple):
    """What a Jetson Linux release ships, as far as yolo-edge's setup is concerned."""

    l4t: str                 # "36.4.3"
    jetpack: Optional[str]   # "6.2" (None: a release this table does not name)
    family: str              # "4", "5", "6", "7" or "unknown"
    ubuntu: Optional[str]    # "22.04"
    python: Optional[str]    # "3.10": the system interpreter (NVIDIA's TensorRT bindings are built for it)
    cuda: Optional[str]      # "12.6": the CUDA that comes with the release
    pip_index: Optional[str]  # index with onnxruntime-gpu etc. for this release, or None
    supported: bool          # yolo-edge runs here
    note: str                # one line for the user ("" when there is nothing to say)


def parse_tegra_release(text):
    """``/etc/nv_tegra_release`` -> ``{"l4t": "35.4.1", "jetpack": "5.1.2", "board": "t186ref"}``, or None.

    The first line reads ``# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI:
    aarch64, DATE: ...``: L4T = major ``R35`` + revision ``4.1`` (``REVISION: 2.0`` -> ``38.2.0``).
    """
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text or "")
    if not m:
        return None
    parts = m.group(2).strip(".").split(".")
    while len(parts) < 2:
        parts.append("0")
    l4t = ".".join([m.group(1)] + parts[:2])
    board = re.search(r"BOARD:\s*([^,\s]+)", text)
    return {"l4t": l4t, "jetpack": JETPACK.get(l4t), "board": board.group(1) if board else None}


def platform_for(l4t):
    """:class:`Platform` for an L4T release string such as ``"36.4.3"``."""
    nums = [int(x) for x in re.findall(r"\d+", l4t or "")] + [0, 0, 0]
    major, minor = nums[0], nums[1]
    jp = JETPACK.get(l4t)
    if major == 32:
        return Platform(l4t, jp, "4", "18.04", "3.6", "10.2", None, False,
                        "JetPack 4 ships Python 3.6 and TensorRT 8.2; yolo-edge needs Python >= 3.8 and "
                        "TensorRT >= 8.5 (JetPack 5.1 or newer)")
    if major in (34, 35):
        return Platform(l4t, jp, "5", "20.04", "3.8", "11.4", None, True,
                        "no pip index with JetPack 5 wheels: onnxruntime-gpu comes from the Jetson Zoo "
                        "(https://elinux.org/Jetson_Zoo#ONNX_Runtime) or JETSON_PIP_INDEX")
    if major == 36:
        cuda, path = ("12.2", "jp6/cu122") if minor < 4 else ("12.6", "jp6/cu126")
        note = ("JetPack 6.0's index (jp6/cu122) lost wheels when the index moved (jetson-containers #1212): "
                "JetPack 6.2 is the better target" if minor < 4 else "")
        return Platform(l4t, jp, "6", "22.04", "3.10", cuda, INDEX_HOST + "/" + path, True, note)
    if major == 38:
        return Platform(l4t, jp, "7", "24.04", "3.12", "13.0", INDEX_HOST + "/sbsa/cu130", True,
                        "JetPack 7: Ubuntu 24.04 refuses system-wide pip installs (PEP 668); everything goes "
                        "into the virtual environment")
    if major >= 39:
        return Platform(l4t, jp, "7", "24.04", "3.12", "13.2", None, True,
                        "L4T %s is newer than this table: no default pip index; set JETSON_PIP_INDEX "
                        "(see https://pypi.jetson-ai-lab.io)" % l4t)
    return Platform(l4t, jp, "unknown", None, None, None, None, False,
                    "L4T %s is not a release yolo-edge knows (JetPack 5.1+, 6 or 7 expected)" % l4t)


def check_index(url, package="onnxruntime-gpu", timeout=15.0, opener=None):
    """``(True, "")`` when ``url`` answers as a pip (PEP 503) index that lists ``package``; else
    ``(False, why)``. ``file://`` URLs work too (a local wheel directory laid out as an index)."""
    import urllib.error
    import urllib.request

    page = url.rstrip("/") + "/" + package + "/"
    if page.startswith("file://"):  # a local index: a folder per project (pip's --index-url file:///...)
        folder = urllib.request.url2pathname(page[len("file://"):])
        ok = os.path.isdir(folder) and any(n.endswith((".whl", ".html")) for n in os.listdir(folder))
        return (True, "") if ok else (False, "%s has no %s wheels" % (folder, package))
    try:
        with (opener or urllib.request.urlopen)(page, timeout=timeout) as r:
            body = r.read(2_000_000).decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return False, "%s answered HTTP %s" % (page, e.code)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return False, "%s is not reachable (%s)" % (page, reason)
    if ".whl" in body or package.replace("-", "_") in body:
        return True, ""
    return False, "%s lists no %s wheels" % (page, package)


def _q(value):
    import shlex

    return shlex.quote("" if value is None else str(value))


def shell_vars(release_text):
    """``KEY=value`` lines (shell-quoted) describing the release, for ``eval`` in setup.sh."""
    rel = parse_tegra_release(release_text)
    if rel is None:
        first = (release_text or "").splitlines()[0] if release_text else ""
        raise ValueError("cannot read the L4T release from: %r" % first)
    p = platform_for(rel["l4t"])
    env_index = os.environ.get("JETSON_PIP_INDEX", "")
    lines = ["L4T=" + _q(p.l4t), "JETPACK=" + _q(p.jetpack or "unknown"), "JP_FAMILY=" + _q(p.family),
             "UBUNTU=" + _q(p.ubuntu or "unknown"), "PY_EXPECTED=" + _q(p.python or ""),
             "CUDA_DEFAULT=" + _q(p.cuda or ""), "PIP_INDEX_DEFAULT=" + _q(p.pip_index or ""),
             "PIP_INDEX=" + _q(env_index or p.pip_index or ""),
             "PIP_INDEX_FROM=" + _q("JETSON_PIP_INDEX" if env_index else ("table" if p.pip_index else "none")),
             "SUPPORTED=" + ("1" if p.supported else "0"), "PLATFORM_NOTE=" + _q(p.note)]
    return "\n".join(lines)


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    usage = ("usage: releases.py shell RELEASE_FILE | check-index URL [PACKAGE] | platform L4T\n"
             "  shell: KEY=value lines for setup.sh; check-index: exit 0 when URL is a pip index listing "
             "PACKAGE (default onnxruntime-gpu)")
    if not args or args[0] in ("-h", "--help"):
        print(usage)
        return 0 if args else 2
    cmd = args[0]
    if cmd == "shell" and len(args) == 2:
        try:
            with open(args[1], errors="replace") as f:
                text = f.read()
            print(shell_vars(text))
        except (OSError, ValueError) as e:
            print("releases.py: %s" % e, file=sys.stderr)
            return 1
        return 0
    if cmd == "check-index" and len(args) in (2, 3):
        ok, why = check_index(args[1], *(args[2:]))
        if not ok:
            print(why, file=sys.stderr)
        return 0 if ok else 1
    if cmd == "platform" and len(args) == 2:
        for k, v in platform_for(args[1])._asdict().items():
            print("%s: %s" % (k, v))
        return 0
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
