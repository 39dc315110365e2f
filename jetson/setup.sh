#!/usr/bin/env bash
# Set up yolo-edge on an NVIDIA Jetson (JetPack 5 or 6) WITHOUT touching NVIDIA's PyTorch.
#
#   jetson/setup.sh [--dry-run] [--pycuda] [--no-ort] [--with-apt] [--python PY]
#
# What it does, in order:
#   1. reads the L4T release from /etc/nv_tegra_release and names the JetPack;
#   2. reports TensorRT (python3 -c "import tensorrt"; dpkg nvinfer packages), CUDA
#      (/usr/local/cuda/version.*, nvcc), PyTorch and OpenCV (+ GStreamer support);
#   3. pins the installed torch and numpy in a pip constraints file, so that no pip step below can
#      replace them (NVIDIA's torch wheel is built against that numpy);
#   4. installs what is missing: cuda-python (or pycuda with --pycuda) for TensorRT buffers,
#      onnxruntime-gpu from the Jetson pip index (--no-deps, then its small deps), onnx / onnxslim /
#      pycocotools / matplotlib / tqdm, and finally yolo-edge itself as
#      `pip install --no-deps -e <repo>` (its opencv-python-headless requirement would shadow
#      JetPack's GStreamer-enabled OpenCV);
#   5. prints the apt commands for what pip cannot fix (TensorRT Python bindings, OpenCV with
#      GStreamer); --with-apt runs them with sudo.
#
# Options:
#   --dry-run      print every command instead of running it (nothing is installed)
#   --pycuda       use pycuda (built from source, needs nvcc) instead of cuda-python
#   --no-ort       skip onnxruntime-gpu
#   --with-apt     also run the apt-get installs (sudo)
#   --python PY    interpreter to set up (default: python3, or $PYTHON)
#
# Environment:
#   JETSON_PIP_INDEX   pip index with Jetson (aarch64 + CUDA) wheels for onnxruntime-gpu. Default:
#                      https://pypi.jetson-ai-lab.dev/jp6/cu126 on JetPack 6.1/6.2,
#                      .../jp6/cu122 on JetPack 6.0, none on JetPack 5 (then get the wheel for
#                      your JetPack and Python from https://elinux.org/Jetson_Zoo#ONNX_Runtime).
#                      Check https://www.jetson-ai-lab.com for the current address.
#   NV_TEGRA_RELEASE   release file to read (default /etc/nv_tegra_release)
#   PYTHON             interpreter (same as --python)
#
# Exit codes: 0 done; 1 a step failed; 2 bad usage; 3 not a Jetson (no /etc/nv_tegra_release).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEGRA_RELEASE="${NV_TEGRA_RELEASE:-/etc/nv_tegra_release}"
PYTHON="${PYTHON:-python3}"
DRY_RUN=0
USE_PYCUDA=0
WITH_ORT=1
WITH_APT=0

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --pycuda) USE_PYCUDA=1 ;;
        --no-ort) WITH_ORT=0 ;;
        --with-apt) WITH_APT=1 ;;
        --python) [ $# -ge 2 ] || { echo "setup.sh: --python needs a value" >&2; exit 2; }; PYTHON="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "setup.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '%s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
# run CMD...: print it; execute it unless --dry-run
run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [ "$DRY_RUN" -eq 0 ]; then "$@"; fi
}
py() { "$PYTHON" -c "$1" 2>/dev/null; }

# --- 1. Jetson? -------------------------------------------------------------------------------
if [ ! -f "$TEGRA_RELEASE" ]; then
    echo "setup.sh: not a Jetson: $TEGRA_RELEASE is missing (Jetson Linux / L4T writes it). Nothing was installed." >&2
    echo "setup.sh: on a desktop use: pip install -e '.[onnx,eval]' (see README.md)" >&2
    exit 3
fi
release_line="$(head -n 1 "$TEGRA_RELEASE")"
l4t_major="$(printf '%s\n' "$release_line" | sed -n 's/^# R\([0-9][0-9]*\) (release), REVISION: \([0-9.]*\),.*/\1/p')"
l4t_rev="$(printf '%s\n' "$release_line" | sed -n 's/^# R\([0-9][0-9]*\) (release), REVISION: \([0-9.]*\),.*/\2/p')"
if [ -z "$l4t_major" ]; then
    echo "setup.sh: cannot read the L4T release from $TEGRA_RELEASE: $release_line" >&2
    exit 1
fi
case "$l4t_rev" in *.*) ;; *) l4t_rev="$l4t_rev.0" ;; esac
L4T="$l4t_major.$l4t_rev"
case "$L4T" in
    32.7.1) JETPACK=4.6.1 ;; 32.7.2) JETPACK=4.6.2 ;; 32.7.3) JETPACK=4.6.3 ;; 32.7.4) JETPACK=4.6.4 ;;
    32.7.5) JETPACK=4.6.5 ;;
    35.1.0) JETPACK=5.0.2 ;; 35.2.1) JETPACK=5.1 ;; 35.3.1) JETPACK=5.1.1 ;; 35.4.1) JETPACK=5.1.2 ;;
    35.5.0) JETPACK=5.1.3 ;; 35.6.0) JETPACK=5.1.4 ;;
    36.3.0) JETPACK=6.0 ;; 36.4.0) JETPACK=6.1 ;; 36.4.3) JETPACK=6.2 ;; 36.4.4) JETPACK=6.2.1 ;;
    *) JETPACK="unknown" ;;
esac
say "== Jetson: L4T $L4T (JetPack $JETPACK)$([ "$DRY_RUN" -eq 1 ] && printf ' [dry run: nothing is installed]')"
if [ "$l4t_major" -lt 35 ]; then
    warn "JetPack 4 (L4T $L4T) ships Python 3.6 and TensorRT 8.2; yolo-edge needs Python >= 3.9 and is tested on JetPack 5/6"
fi
if [ -z "${JETSON_PIP_INDEX:-}" ]; then
    case "$L4T" in
        36.3.*) JETSON_PIP_INDEX="https://pypi.jetson-ai-lab.dev/jp6/cu122" ;;
        36.*) JETSON_PIP_INDEX="https://pypi.jetson-ai-lab.dev/jp6/cu126" ;;
        *) JETSON_PIP_INDEX="" ;;
    esac
fi

# --- 2. what is there -------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || { echo "setup.sh: $PYTHON not found" >&2; exit 1; }
say "python: $("$PYTHON" --version 2>&1)"

APT_PACKAGES=()
trt_version="$(py 'import tensorrt; print(tensorrt.__version__)' || true)"
if [ -n "$trt_version" ]; then
    say "TensorRT (python): $trt_version"
else
    nvinfer="$(dpkg -l 2>/dev/null | awk '/^ii/ && $2 ~ /nvinfer/ {print $2 " " $3}' | head -n 3 || true)"
    if [ -n "$nvinfer" ]; then
        warn "TensorRT libraries are installed but $PYTHON cannot import tensorrt: ${nvinfer//$'\n'/, }"
        APT_PACKAGES+=(python3-libnvinfer python3-libnvinfer-dev)
    else
        warn "TensorRT not found (no nvinfer package): it comes with JetPack (sudo apt install nvidia-jetpack)"
        APT_PACKAGES+=(nvidia-tensorrt)
    fi
fi

cuda_version=""
for f in /usr/local/cuda/version.json /usr/local/cuda/version.txt; do
    if [ -f "$f" ]; then
        cuda_version="$(grep -o '[0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*' "$f" | head -n 1 || true)"
        [ -n "$cuda_version" ] && break
    fi
done
if [ -z "$cuda_version" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
    cuda_version="$(/usr/local/cuda/bin/nvcc --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')"
fi
if [ -n "$cuda_version" ]; then
    say "CUDA: $cuda_version"
else
    warn "CUDA toolkit not found in /usr/local/cuda: sudo apt install nvidia-jetpack (or cuda-toolkit)"
fi
cuda_major="${cuda_version%%.*}"

torch_version="$(py 'import torch; print(torch.__version__)' || true)"
if [ -n "$torch_version" ]; then
    say "PyTorch: $torch_version (kept as it is)"
else
    say "PyTorch: not installed (optional: only for .pt checkpoints; install NVIDIA's wheel for JetPack $JETPACK, never the PyPI one)"
fi
numpy_version="$(py 'import numpy; print(numpy.__version__)' || true)"
[ -n "$numpy_version" ] && say "numpy: $numpy_version (kept as it is)"

if [ -n "$(py 'import cv2; print(cv2.__version__)' || true)" ]; then
    if "$PYTHON" -c "import cv2; print(cv2.getBuildInformation())" 2>/dev/null | grep -E '^\s*GStreamer:\s*YES' >/dev/null; then
        say "OpenCV: $(py 'import cv2; print(cv2.__version__)') with GStreamer"
    else
        warn "OpenCV $(py 'import cv2; print(cv2.__version__)') has no GStreamer: CSI cameras (csi://) and hardware-decoded RTSP need it."
        warn "  use JetPack's OpenCV: sudo apt install python3-opencv (nvidia-opencv) and remove pip's copy:"
        warn "  $PYTHON -m pip uninstall -y opencv-python opencv-python-headless"
        APT_PACKAGES+=(python3-opencv)
    fi
else
    warn "OpenCV not importable: sudo apt install python3-opencv (JetPack's build has GStreamer)"
    APT_PACKAGES+=(python3-opencv)
fi

# --- 3. constraints: never replace torch / numpy ----------------------------------------------
CONSTRAINTS="$(mktemp "${TMPDIR:-/tmp}/yolo-edge-constraints.XXXXXX")"
trap 'rm -f "$CONSTRAINTS"' EXIT
{
    [ -n "$torch_version" ] && printf 'torch==%s\n' "$torch_version"
    [ -n "$numpy_version" ] && printf 'numpy==%s\n' "$numpy_version"
    true
} > "$CONSTRAINTS"
PIP=("$PYTHON" -m pip install --constraint "$CONSTRAINTS")
say "pip constraints: $(tr '\n' ' ' < "$CONSTRAINTS")"

# --- 4. pip installs --------------------------------------------------------------------------
say "== Python packages"
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
    if py 'import onnxruntime as o; assert {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(o.get_available_providers())' >/dev/null; then
        say "onnxruntime-gpu: present ($(py 'import onnxruntime; print(onnxruntime.__version__)'))"
    elif [ -n "$JETSON_PIP_INDEX" ]; then
        run "${PIP[@]}" --no-deps --index-url "$JETSON_PIP_INDEX" onnxruntime-gpu
        run "${PIP[@]}" coloredlogs flatbuffers packaging protobuf sympy
    else
        warn "no Jetson pip index for L4T $L4T: download onnxruntime-gpu for JetPack $JETPACK and your Python from"
        warn "  https://elinux.org/Jetson_Zoo#ONNX_Runtime and run: $PYTHON -m pip install --no-deps onnxruntime_gpu-*.whl"
        warn "  (or set JETSON_PIP_INDEX and run this again)"
    fi
fi

# the [onnx,eval] extras of yolo-edge, minus onnxruntime (the GPU build above) and opencv
run "${PIP[@]}" "onnx>=1.15" "onnxslim>=0.1.30" "pycocotools>=2.0.7" "matplotlib>=3.6" "tqdm>=4.60"
run "$PYTHON" -m pip install --no-deps -e "$REPO"

# --- 5. apt -----------------------------------------------------------------------------------
if [ "${#APT_PACKAGES[@]}" -gt 0 ]; then
    if [ "$WITH_APT" -eq 1 ]; then
        say "== apt"
        run sudo apt-get update
        run sudo apt-get install -y "${APT_PACKAGES[@]}"
    else
        warn "pip cannot provide these; install them with: sudo apt-get install -y ${APT_PACKAGES[*]}"
        warn "  (or run this script with --with-apt)"
    fi
fi

say "== done"
if [ "$DRY_RUN" -eq 0 ]; then
    run "$PYTHON" -m yolo_edge.cli --version
    say "next: jetson/build_engine.sh MODEL.onnx --fp16   and   yolo-edge run csi://0 --model MODEL.engine"
fi
