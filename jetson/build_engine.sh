#!/usr/bin/env bash
# Build a TensorRT engine on this Jetson from a yolo-edge ONNX, and print the equivalent trtexec line.
#
#   jetson/build_engine.sh MODEL.onnx [--fp16 | --int8] [--out ENGINE] [--print-only] [-- BUILD_ARGS...]
#
# Precision lives in the ONNX graph (DESIGN.md): --fp16 builds MODEL.fp16.onnx and --int8 builds
# MODEL.int8.onnx (explicit Q/DQ), the files `yolo-edge export --fp16 --int8` or
# `yolo-edge calibrate MODEL.onnx --fp16` write next to MODEL.onnx. Without a flag MODEL.onnx is
# built as it is (FP32, or whatever precision its graph has).
#
# Runs `yolo-edge build ONNX --out ENGINE BUILD_ARGS...` (engine + .manifest.json + .layers.json,
# timing cache next to the engine), then `yolo-edge build ... --print-trtexec`, the same build as a
# trtexec command (trtexec ships with JetPack in /usr/src/tensorrt/bin). BUILD_ARGS go to both,
# e.g. `-- --max-batch 1` or `-- --dla-core 0`; see `yolo-edge build --help`.
#   --print-only   only print the trtexec line (no build)
#
# Environment: YOLO_EDGE = the yolo-edge command (default: yolo-edge on PATH).
# Exit codes: 0 built; 1 the build failed; 2 bad usage or the ONNX is missing.
set -euo pipefail

YOLO_EDGE="${YOLO_EDGE:-yolo-edge}"
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

MODEL=""
PRECISION=""
OUT=""
PRINT_ONLY=0
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --fp16|--int8)
            [ -z "$PRECISION" ] || { echo "build_engine.sh: give one of --fp16 / --int8" >&2; exit 2; }
            PRECISION="${1#--}" ;;
        --out|-o) [ $# -ge 2 ] || { echo "build_engine.sh: $1 needs a value" >&2; exit 2; }; OUT="$2"; shift ;;
        --print-only) PRINT_ONLY=1 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; EXTRA=("$@"); break ;;
        -*) echo "build_engine.sh: unknown option: $1 (yolo-edge build options go after --)" >&2; exit 2 ;;
        *) [ -z "$MODEL" ] || { echo "build_engine.sh: one model at a time ($MODEL, $1)" >&2; exit 2; }; MODEL="$1" ;;
    esac
    shift
done
[ -n "$MODEL" ] || { usage >&2; exit 2; }

ONNX="$MODEL"
if [ -n "$PRECISION" ]; then
    case "$MODEL" in
        *."$PRECISION".onnx) ONNX="$MODEL" ;;
        *.fp16.onnx|*.int8.onnx) echo "build_engine.sh: $MODEL is not a $PRECISION model; pass the FP32 model.onnx" >&2; exit 2 ;;
        *.onnx) ONNX="${MODEL%.onnx}.$PRECISION.onnx" ;;
        *) echo "build_engine.sh: expected a .onnx file, got $MODEL" >&2; exit 2 ;;
    esac
fi
if [ ! -f "$ONNX" ]; then
    echo "build_engine.sh: $ONNX not found." >&2
    if [ -n "$PRECISION" ]; then
        echo "  write it first: yolo-edge calibrate ${MODEL%.onnx}.onnx --fp16   (FP16 + INT8 Q/DQ next to it)" >&2
        echo "             or: yolo-edge export --$PRECISION ...                 (export with the precision models)" >&2
    fi
    exit 2
fi
command -v "$YOLO_EDGE" >/dev/null 2>&1 || { echo "build_engine.sh: $YOLO_EDGE not found: run jetson/setup.sh" >&2; exit 1; }

ARGS=("$ONNX")
[ -z "$OUT" ] || ARGS+=(--out "$OUT")
ARGS+=("${EXTRA[@]}")

if [ "$PRINT_ONLY" -eq 0 ]; then
    printf '+'; printf ' %q' "$YOLO_EDGE" build "${ARGS[@]}"; printf '\n'
    "$YOLO_EDGE" build "${ARGS[@]}"
fi
echo "# the same build with trtexec:"
"$YOLO_EDGE" build "${ARGS[@]}" --print-trtexec
