#!/usr/bin/env bash
# Set the Jetson power mode and pin the clocks, then print the mode in force.
#
#   sudo jetson/power.sh [MODE] [--no-clocks | --clocks-off] [--list]
#
#   MODE          max (the uncapped MAXN / MAXN_SUPER mode), a mode name from --list (15W, MAXN_SUPER)
#                 or an nvpmodel id. Prefer names: ids differ between boards (on the Orin Nano with
#                 JetPack 6.2, 0 is 15W and MAXN_SUPER is 2; on the AGX Orin 0 is MAXN).
#   --no-clocks   leave the clocks alone (default: jetson_clocks, i.e. pin them to the mode's max)
#   --clocks-off  undo jetson_clocks (restore the mode's dynamic clocks)
#   --list        list the modes in /etc/nvpmodel.conf and exit
#
# A thin wrapper over `yolo-edge jetson power` / `yolo-edge jetson clocks`. Changing the mode or
# the clocks needs root: run it with sudo (sudo resets PATH, so yolo-edge is taken from the venv
# that jetson/setup.sh made, /opt/yolo-edge/bin, before PATH), or as a user that sudo asks once.
# Benchmark in a fixed mode with pinned clocks, and report the mode with the numbers.
#
# Environment: YOLO_EDGE = the yolo-edge command; YOLO_EDGE_PREFIX = the venv (default /opt/yolo-edge).
# Exit codes: 0 done; 1 a step failed (not a Jetson, mode needs a reboot, yolo-edge missing ...); 2 bad usage.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

find_yolo_edge() {
    if [ -n "${YOLO_EDGE:-}" ]; then printf '%s\n' "$YOLO_EDGE"; return; fi
    local prefix="${YOLO_EDGE_PREFIX:-/opt/yolo-edge}" here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    for candidate in "$prefix/bin/yolo-edge" "$here/../bin/yolo-edge"; do
        if [ -x "$candidate" ]; then printf '%s\n' "$candidate"; return; fi
    done
    command -v yolo-edge 2>/dev/null && return
    echo "power.sh: yolo-edge not found in $prefix/bin or on PATH: run jetson/setup.sh (or set YOLO_EDGE)" >&2
    exit 1
}

MODE=""
CLOCKS="on"
LIST=0
while [ $# -gt 0 ]; do
    case "$1" in
        --no-clocks) CLOCKS="" ;;
        --clocks-off) CLOCKS="off" ;;
        --list) LIST=1 ;;
        -h|--help) usage; exit 0 ;;
        -*|'') echo "power.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
        *[!A-Za-z0-9_.]*) echo "power.sh: not a mode name or id: $1 (see --list)" >&2; exit 2 ;;
        *) [ -z "$MODE" ] || { echo "power.sh: one mode at a time ($MODE, $1)" >&2; exit 2; }; MODE="$1" ;;
    esac
    shift
done
YOLO_EDGE="$(find_yolo_edge)"
if [ "$LIST" -eq 1 ]; then
    exec "$YOLO_EDGE" jetson power --list
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    sudo -v  # ask for the password once; yolo-edge then runs nvpmodel / jetson_clocks with sudo -n
    SUDO=(--sudo)
fi
if [ -n "$MODE" ]; then
    "$YOLO_EDGE" jetson power --mode "$MODE" "${SUDO[@]}"
fi
if [ -n "$CLOCKS" ]; then
    "$YOLO_EDGE" jetson clocks "$CLOCKS" "${SUDO[@]}"
fi
"$YOLO_EDGE" jetson power
