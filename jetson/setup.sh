#!/usr/bin/env bash
# Set up yolo-edge on an NVIDIA Jetson (JetPack 5.1+, 6 or 7) in ONE root-owned virtual environment,
# without touching NVIDIA's TensorRT, OpenCV or PyTorch.
#
#   jetson/setup.sh [--dry-run] [--prefix DIR] [--index URL] [--no-index-check] [--root DIR]
#                   [--pycuda] [--no-ort] [--with-apt] [--python PY]
#
# What it does, in order:
#   1. reads the L4T release from /etc/nv_tegra_release and looks it up in the one release table,
#      yolo_edge/jetson/releases.py (JetPack, Ubuntu, Python, CUDA, pip index; sources are there);
#   2. reports TensorRT, CUDA, PyTorch, numpy and OpenCV (+ GStreamer) as the system Python sees them;
#   3. checks the pip index for onnxruntime-gpu BEFORE installing anything (it moved in 2025);
#   4. creates the virtual environment PREFIX (default /opt/yolo-edge) with --system-site-packages,
#      so JetPack's tensorrt and cv2 (apt packages) stay visible, and nothing comes from a home
#      directory: the camera service runs PREFIX/bin/yolo-edge as a system user;
#   5. writes PREFIX/constraints.txt: the installed torch stays as it is, numpy stays in the major
#      version JetPack's OpenCV was built against (numpy<2 when numpy is not importable yet);
#   6. pip-installs into the venv: cuda-python (or pycuda), onnxruntime-gpu from the Jetson index
#      (--no-deps, then its small deps), numpy/onnx/onnxslim/pycocotools/matplotlib/tqdm, and
#      yolo-edge itself with --no-deps (not editable: the venv must not point into a home directory;
#      its opencv-python-headless requirement would shadow JetPack's GStreamer-enabled OpenCV);
#   7. copies the kit (scripts, unit, README) to PREFIX/jetson;
#   8. prints the apt commands for what pip cannot fix (TensorRT bindings, OpenCV with GStreamer,
#      python3-venv); --with-apt runs them first, with sudo.
#
# Options:
#   --dry-run         print the plan and every command instead of running it (nothing is installed)
#   --prefix DIR      the virtual environment (default /opt/yolo-edge, or $YOLO_EDGE_PREFIX)
#   --index URL       pip index with Jetson wheels (default: from the release table; or $JETSON_PIP_INDEX)
#   --no-index-check  do not contact the index before installing (offline dry runs)
#   --root DIR        read etc/nv_tegra_release and usr/local/cuda under DIR (tests; or $JETSON_ROOT)
#   --pycuda          pycuda (built from source, needs nvcc) instead of cuda-python
#   --no-ort          skip onnxruntime-gpu (and the index check)
#   --with-apt        also run the apt-get installs (sudo)
#   --python PY       system interpreter to build the venv from (default python3, or $PYTHON)
#
# Environment: JETSON_PIP_INDEX, YOLO_EDGE_PREFIX, JETSON_ROOT, PYTHON (as the options above);
#   NV_TEGRA_RELEASE   release file to read (default ROOT/etc/nv_tegra_release)
#
# Exit codes: 0 done; 1 a step failed (or the index does not answer; or an unsupported release);
#   2 bad usage; 3 not a Jetson (no nv_tegra_release).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RELEASES="$REPO/yolo_edge/jetson/releases.py"
ROOT="${JETSON_ROOT:-}"
PREFIX="${YOLO_EDGE_PREFIX:-/opt/yolo-edge}"
PYTHON="${PYTHON:-python3}"
DRY_RUN=0
USE_PYCUDA=0
WITH_ORT=1
WITH_APT=0
INDEX_CHECK=1
INDEX_ARG=""

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
need_value() { [ "$2" -ge 2 ] || { echo "setup.sh: $1 needs a value" >&2; exit 2; }; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --prefix) need_value "$1" $#; PREFIX="$2"; shift ;;
        --index) need_value "$1" $#; INDEX_ARG="$2"; shift ;;
        --no-index-check) INDEX_CHECK=0 ;;
        --root) need_value "$1" $#; ROOT="$2"; shift ;;
        --pycuda) USE_PYCUDA=1 ;;
        --no-ort) WITH_ORT=0 ;;
        --with-apt) WITH_APT=1 ;;
        --python) need_value "$1" $#; PYTHON="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "setup.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$INDEX_ARG" ] && export JETSON_PIP_INDEX="$INDEX_ARG"
case "$PREFIX" in
    /home/*|/root/*|"${HOME:-/nonexistent}"/*) echo "setup.sh: --prefix $PREFIX is in a home directory; the camera service cannot read it (use /opt/yolo-edge)" >&2; exit 2 ;;
    /*) ;;
    *) echo "setup.sh: --prefix must be an absolute path, got $PREFIX" >&2; exit 2 ;;
esac
TEGRA_RELEASE="${NV_TEGRA_RELEASE:-$ROOT/etc/nv_tegra_release}"
VPY="$PREFIX/bin/python"

say() { printf '%s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'setup.sh: %s\n' "$*" >&2; exit 1; }
# run CMD...: print it; execute it unless --dry-run
run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [ "$DRY_RUN" -eq 0 ]; then "$@"; fi
}
# the system interpreter without the user's ~/.local (-s): what the venv will see
py() { "$PYTHON" -s -c "$1" 2>/dev/null; }

# --- 1. which release ---------------------------------------------------------------------------
if [ ! -f "$TEGRA_RELEASE" ]; then
    echo "setup.sh: not a Jetson: $TEGRA_RELEASE is missing (Jetson Linux / L4T writes it). Nothing was installed." >&2
    echo "setup.sh: on a desktop use: pip install -e '.[onnx,eval]' (see README.md)" >&2
    exit 3
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (JetPack's Ubuntu has python3: sudo apt-get install python3)"
release_vars="$("$PYTHON" "$RELEASES" shell "$TEGRA_RELEASE")" || die "cannot read the L4T release from $TEGRA_RELEASE"
# L4T JETPACK JP_FAMILY UBUNTU PY_EXPECTED CUDA_DEFAULT PIP_INDEX_DEFAULT PIP_INDEX PIP_INDEX_FROM SUPPORTED PLATFORM_NOTE
eval "$release_vars"
say "== Jetson: L4T $L4T (JetPack $JETPACK, Ubuntu $UBUNTU)$([ "$DRY_RUN" -eq 1 ] && printf ' [dry run: nothing is installed]')"
if [ "$SUPPORTED" -ne 1 ]; then
    die "$PLATFORM_NOTE. Nothing was installed."
fi
[ -n "$PLATFORM_NOTE" ] && say "note: $PLATFORM_NOTE"

# --- 2. what is there ---------------------------------------------------------------------------
py_version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
say "system python: $("$PYTHON" --version 2>&1) ($(command -v "$PYTHON"))"
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)'; then
    die "yolo-edge needs Python >= 3.8; $PYTHON is $py_version"
fi
if [ -n "$PY_EXPECTED" ] && [ "$py_version" != "$PY_EXPECTED" ]; then
    warn "JetPack $JETPACK ships Python $PY_EXPECTED, this is $py_version: NVIDIA's tensorrt and cv2 (apt) are built for $PY_EXPECTED and will not import"
fi

APT_PACKAGES=()
if ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then
    warn "$PYTHON cannot create virtual environments (Ubuntu ships venv separately): python3-venv"
    APT_PACKAGES+=(python3-venv)
fi

trt_version="$(py 'import tensorrt; print(tensorrt.__version__)' || true)"
if [ -n "$trt_version" ]; then
    say "TensorRT (python): $trt_version"
else
    nvinfer="$(dpkg -l 2>/dev/null | awk '/^ii/ && $2 ~ /nvinfer/ {print $2 " " $3}' | head -n 3 || true)"
    if [ -n "$nvinfer" ]; then
        warn "TensorRT libraries are installed but $PYTHON cannot import tensorrt: ${nvinfer//$'\n'/, }"
        APT_PACKAGES+=(python3-libnvinfer python3-libnvinfer-dev)
    else
        warn "TensorRT not found (no nvinfer package): it comes with JetPack (sudo apt-get install nvidia-jetpack)"
        APT_PACKAGES+=(nvidia-tensorrt)
    fi
fi

cuda_version=""
for f in "$ROOT/usr/local/cuda/version.json" "$ROOT/usr/local/cuda/version.txt"; do
    if [ -f "$f" ]; then
        cuda_version="$(grep -o '[0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*' "$f" | head -n 1 || true)"
        [ -n "$cuda_version" ] && break
    fi
done
if [ -z "$cuda_version" ] && [ -x "$ROOT/usr/local/cuda/bin/nvcc" ]; then
    cuda_version="$("$ROOT/usr/local/cuda/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')"
fi
if [ -n "$cuda_version" ]; then
    say "CUDA: $cuda_version"
elif [ -n "$CUDA_DEFAULT" ]; then
    cuda_version="$CUDA_DEFAULT"
    warn "CUDA toolkit not found in $ROOT/usr/local/cuda; JetPack $JETPACK comes with CUDA $CUDA_DEFAULT (sudo apt-get install nvidia-jetpack)"
fi
cuda_major="${cuda_version%%.*}"

torch_version="$(py 'import torch; print(torch.__version__)' || true)"
if [ -n "$torch_version" ]; then
    say "PyTorch: $torch_version (kept as it is)"
else
    say "PyTorch: not installed (optional: only for .pt checkpoints; install NVIDIA's wheel for JetPack $JETPACK, never the PyPI one)"
fi
numpy_version="$(py 'import numpy; print(numpy.__version__)' || true)"

cv2_version="$(py 'import cv2; print(cv2.__version__)' || true)"
if [ -n "$cv2_version" ]; then
    if "$PYTHON" -s -c "import cv2; print(cv2.getBuildInformation())" 2>/dev/null | grep -E '^\s*GStreamer:\s*YES' >/dev/null; then
        say "OpenCV: $cv2_version with GStreamer"
    else
        warn "OpenCV $cv2_version has no GStreamer: CSI cameras (csi://) and hardware-decoded RTSP need it."
        warn "  use JetPack's OpenCV (sudo apt-get install python3-opencv) and remove pip's copy:"
        warn "  sudo $PYTHON -m pip uninstall -y opencv-python opencv-python-headless"
        APT_PACKAGES+=(python3-opencv)
    fi
else
    warn "OpenCV not importable: sudo apt-get install python3-opencv (JetPack's build has GStreamer)"
    APT_PACKAGES+=(python3-opencv)
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)  # the venv is root-owned: the service user must not be able to change its own code
fi

# --- 3. the pip index (before anything is installed) --------------------------------------------
ORT_PRESENT=0
if py 'import onnxruntime as o; assert {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(o.get_available_providers())' >/dev/null; then
    ORT_PRESENT=1
fi
if [ "$WITH_ORT" -eq 1 ] && [ "$ORT_PRESENT" -eq 0 ]; then
    if [ -z "$PIP_INDEX" ]; then
        warn "no pip index for L4T $L4T: onnxruntime-gpu for JetPack $JETPACK / Python $py_version comes from"
        warn "  https://elinux.org/Jetson_Zoo#ONNX_Runtime: $VPY -m pip install --no-deps onnxruntime_gpu-*.whl"
        warn "  (or set JETSON_PIP_INDEX / --index and run this again; or --no-ort)"
        say "pip index: none for this release"
    elif [ "$INDEX_CHECK" -eq 0 ]; then
        say "pip index: $PIP_INDEX (from $PIP_INDEX_FROM; not checked: --no-index-check)"
    elif why="$("$PYTHON" "$RELEASES" check-index "$PIP_INDEX" onnxruntime-gpu 2>&1)"; then
        say "pip index: $PIP_INDEX (from $PIP_INDEX_FROM): answers and lists onnxruntime-gpu"
    else
        msg="the pip index $PIP_INDEX (from $PIP_INDEX_FROM) cannot serve onnxruntime-gpu: $why."
        msg="$msg The Jetson AI Lab index moved in 2025 from pypi.jetson-ai-lab.dev to pypi.jetson-ai-lab.io"
        msg="$msg (jetson-containers #1243, #1317); find the current address on https://www.jetson-ai-lab.com and run"
        msg="$msg again with --index URL (or JETSON_PIP_INDEX=URL), or skip onnxruntime-gpu with --no-ort"
        if [ "$DRY_RUN" -eq 1 ]; then
            warn "$msg (a real run stops here)"
        else
            die "$msg. Nothing was installed."
        fi
    fi
fi

# --- 4. apt (what pip cannot provide) -----------------------------------------------------------
if [ "${#APT_PACKAGES[@]}" -gt 0 ]; then
    if [ "$WITH_APT" -eq 1 ]; then
        say "== apt"
        run "${SUDO[@]}" apt-get update
        run "${SUDO[@]}" apt-get install -y "${APT_PACKAGES[@]}"
    else
        warn "pip cannot provide these; install them with: sudo apt-get install -y ${APT_PACKAGES[*]}"
        warn "  (or run this script with --with-apt)"
    fi
fi

# --- 5. the virtual environment -----------------------------------------------------------------
say "== venv: $PREFIX (--system-site-packages: JetPack's tensorrt and cv2 stay visible; owned by root)"
if [ -x "$VPY" ]; then
    say "venv: present ($("$VPY" --version 2>&1))"
else
    run "${SUDO[@]}" "$PYTHON" -m venv --system-site-packages "$PREFIX"
    run "${SUDO[@]}" "$VPY" -m pip install --upgrade pip  # Ubuntu 20.04's venv pip (20.0) predates today's wheels
fi

# --- 6. constraints: never replace torch; keep numpy in the major version apt's OpenCV needs -----
# JetPack's python3-opencv is built against Ubuntu's numpy 1.x (1.17 on 20.04, 1.21 on 22.04, 1.26 on
# 24.04); a module built against numpy 1.x does not import under numpy 2 (numpy 2.0 migration guide,
# "NumPy 2.0-specific advice"), while numpy keeps its C ABI backward compatible inside 1.x. So pip may
# upgrade numpy within the major version, never across it - also when numpy is not importable yet.
if [ -n "$numpy_version" ]; then
    numpy_major="${numpy_version%%.*}"
    numpy_pin="numpy>=$numpy_version,<$((numpy_major + 1))"
    say "numpy: $numpy_version (pip may upgrade it within $numpy_major.x only)"
else
    numpy_pin="numpy<2"
    say "numpy: not importable yet (pinned below 2: apt's OpenCV is built against numpy 1.x)"
fi
CONSTRAINTS="$PREFIX/constraints.txt"
constraints_text="$numpy_pin"
[ -n "$torch_version" ] && constraints_text="$constraints_text"$'\n'"torch==$torch_version"
say "pip constraints ($CONSTRAINTS): $(printf '%s' "$constraints_text" | tr '\n' ' ')"
if [ "$DRY_RUN" -eq 0 ]; then
    printf '%s\n' "$constraints_text" | "${SUDO[@]}" tee "$CONSTRAINTS" >/dev/null
fi
PIP=("${SUDO[@]}" "$VPY" -m pip install --constraint "$CONSTRAINTS")

# --- 7. pip installs into the venv --------------------------------------------------------------
say "== Python packages (into $PREFIX)"
if py 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("cuda") or u.find_spec("pycuda") else 1)'; then
    say "CUDA Python bindings: present"
elif [ "$USE_PYCUDA" -eq 1 ]; then
    run env PATH="/usr/local/cuda/bin:$PATH" "${PIP[@]}" pycuda
elif [ -n "$cuda_major" ]; then
    run "${PIP[@]}" "cuda-python>=${cuda_major},<$((cuda_major + 1))"
else
    warn "CUDA version unknown: skipping cuda-python (install it later matching your CUDA major version)"
fi

if [ "$WITH_ORT" -eq 1 ]; then
    if [ "$ORT_PRESENT" -eq 1 ]; then
        say "onnxruntime-gpu: present ($(py 'import onnxruntime; print(onnxruntime.__version__)'))"
    elif [ -n "$PIP_INDEX" ]; then
        run "${PIP[@]}" --no-deps --index-url "$PIP_INDEX" onnxruntime-gpu
        run "${PIP[@]}" coloredlogs flatbuffers packaging protobuf sympy
    fi
fi

# the [onnx,eval] extras of yolo-edge, minus onnxruntime (the GPU build above) and opencv (apt's)
run "${PIP[@]}" "numpy>=1.23" "onnx>=1.15" "onnxslim>=0.1.30" "pycocotools>=2.0.7" "matplotlib>=3.6" "tqdm>=4.60"
run "${PIP[@]}" --no-deps "$REPO"

# --- 8. the kit next to the venv ----------------------------------------------------------------
run "${SUDO[@]}" install -d -m 755 "$PREFIX/jetson"
run "${SUDO[@]}" install -m 755 "$REPO/jetson/setup.sh" "$REPO/jetson/build_engine.sh" "$REPO/jetson/power.sh" "$PREFIX/jetson/"
run "${SUDO[@]}" install -m 644 "$REPO/jetson/README.md" "$REPO/jetson/yolo-edge-camera.service" \
    "$REPO/jetson/yolo-edge.env.example" "$PREFIX/jetson/"

say "== done"
say "command: $PREFIX/bin/yolo-edge (the camera service runs this one; add $PREFIX/bin to your PATH)"
if [ "$DRY_RUN" -eq 0 ]; then
    run "$PREFIX/bin/yolo-edge" --version
    "$VPY" -s -c 'import tensorrt, cv2; print("venv sees tensorrt", tensorrt.__version__, "and cv2", cv2.__version__)' \
        || warn "the venv cannot import tensorrt and cv2: install the apt packages listed above"
    say "next: jetson/build_engine.sh MODEL.onnx --fp16   and   yolo-edge run csi://0 --model MODEL.engine"
fi
