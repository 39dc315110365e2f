#!/usr/bin/env bash
# Set the Jetson power mode and pin the clocks, then print the mode in force.
#
#   jetson/power.sh [MODE_ID] [--no-clocks | --clocks-off] [--list]
#
#   MODE_ID       nvpmodel mode to switch to (see --list; 0 is MAXN on most boards)
#   --no-clocks   leave the clocks alone (default: jetson_clocks, i.e. pin them to the mode's max)
#   --clocks-off  undo jetson_clocks (restore the mode's dynamic clocks)
#   --list        list the modes in /etc/nvpmodel.conf and exit
#
# A thin wrapper over `yolo-edge jetson power` / `yolo-edge jetson clocks`. Changing the mode or
# the clocks needs root: run it with sudo, or as a user that sudo asks once (sudo -v).
# Benchmark in a fixed mode with pinned clocks, and report the mode with the numbers.
# Exit codes: 0 done; 1 a step failed (not a Jetson, mode needs a reboot ...); 2 bad usage.
set -euo pipefail

YOLO_EDGE="${YOLO_EDGE:-yolo-edge}"
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

MODE=""
CLOCKS="on"
while [ $# -gt 0 ]; do
    case "$1" in
        --no-clocks) CLOCKS="" ;;
        --clocks-off) CLOCKS="off" ;;
        --list) exec "$YOLO_EDGE" jetson power --list ;;
        -h|--help) usage; exit 0 ;;
        ''|*[!0-9]*) echo "power.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
        *) MODE="$1" ;;
    esac
    shift
done

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
