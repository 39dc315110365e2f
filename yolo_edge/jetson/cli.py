"""``yolo-edge jetson``: board facts, tegrastats power summary, power mode, clocks.

    yolo-edge jetson info                       # model, L4T/JetPack, power mode, clocks
    yolo-edge jetson tegrastats --seconds 30    # mean/max W, GPU load, max temperatures (+ FPS/W with --fps)
    yolo-edge jetson power                      # current mode;  --list: all modes
    sudo yolo-edge jetson power --mode max      # switch to the uncapped mode, by name (MAXN / MAXN_SUPER)
    sudo yolo-edge jetson clocks on|off         # jetson_clocks / jetson_clocks --restore

Importing this module needs nothing beyond the standard library.
"""

from __future__ import annotations

import json
import shlex
import time

from ..errors import YoloEdgeError


def _info(args) -> int:
    from .power import jetson_info

    info = jetson_info(sudo=args.sudo)
    if info is None:
        raise YoloEdgeError("not a Jetson: /etc/nv_tegra_release is missing (Jetson Linux / L4T writes it)")
    if args.json:
        print(json.dumps(info.to_dict(), indent=1, default=str))
    else:
        print("\n".join(info.lines()))
    return 0


def _tegrastats(args) -> int:
    from .power import fps_per_watt
    from .tegrastats import TegrastatsReader

    if args.seconds <= 0:
        raise YoloEdgeError(f"--seconds must be > 0, got {args.seconds}")
    command = shlex.split(args.tegrastats_cmd) if args.tegrastats_cmd else None
    reader = TegrastatsReader(interval_ms=args.interval, command=command)
    interrupted = False
    with reader:
        try:
            time.sleep(args.seconds)
            if not reader.samples():  # a run shorter than one interval: wait for the first line
                reader.wait_for(1, timeout=2 * args.interval / 1000 + 1)
        except KeyboardInterrupt:
            interrupted = True
    summary = reader.summary()
    if summary.n_samples == 0:
        why = f"; it printed: {reader.last_bad_line!r}" if reader.last_bad_line else ""
        code = f" (exit code {reader.returncode})" if reader.returncode not in (None, 0, -15) else ""
        raise YoloEdgeError(f"no tegrastats samples in {args.seconds:g} s from `{' '.join(reader.command)}`{code}{why}")
    lines = summary.lines()
    if args.fps is not None:
        if summary.mean_power_w is None:
            raise YoloEdgeError("--fps given but tegrastats printed no power rails (on some boards they need root)")
        lines.append(f"FPS/W: {fps_per_watt(args.fps, summary.mean_power_w):.2f} ({args.fps:g} FPS at "
                     f"{summary.mean_power_w:.2f} W mean)")
    print("\n".join(lines + (["(interrupted)"] if interrupted else [])))
    if args.json:
        from ..util import atomic_write

        data = summary.to_dict()
        if args.fps is not None:
            data["fps"] = args.fps
            data["fps_per_watt"] = fps_per_watt(args.fps, summary.mean_power_w)
        with atomic_write(args.json, "w") as f:
            json.dump(data, f, indent=1)
        print(f"wrote {args.json}")
    return 0


def _power(args) -> int:
    from .power import current_power_mode, power_modes, set_power_mode

    if args.list:
        modes = power_modes()
        if modes is None:
            raise YoloEdgeError("not a Jetson: /etc/nvpmodel.conf is missing")
        current = current_power_mode()
        for m in modes:
            print(f"{m.id}: {m.name}{'  (current)' if current and current.id == m.id else ''}")
        return 0
    if args.mode is not None:
        mode = set_power_mode(int(args.mode) if args.mode.strip().isdigit() else args.mode, sudo=args.sudo)
        print(f"power mode: {mode}")
        return 0
    mode = current_power_mode()
    if mode is None:
        raise YoloEdgeError("not a Jetson: `nvpmodel` is not installed")
    print(f"power mode: {mode}")
    return 0


def _clocks(args) -> int:
    from .power import clocks_maxed, jetson_clocks

    jetson_clocks(enable=args.state == "on", sudo=args.sudo)
    state = clocks_maxed(sudo=args.sudo)
    shown = {True: "pinned to max", False: "dynamic (power-mode defaults)", None: "unknown"}[state]
    print(f"clocks: {shown}")
    return 0


def cmd_jetson(args) -> int:
    return {"info": _info, "tegrastats": _tegrastats, "power": _power, "clocks": _clocks}[args.action](args)


def build_jetson(p) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = sub.add_parser("info", help="board model, L4T/JetPack release, power mode, clock state")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--sudo", action="store_true", help="read the clocks with `sudo -n jetson_clocks --show`")
    s = sub.add_parser("tegrastats",
                       help="sample tegrastats for N seconds; print mean/max power, GPU load, temperatures")
    s.add_argument("--seconds", type=float, default=10.0, help="how long to sample (default 10)")
    s.add_argument("--interval", type=int, default=500, metavar="MS", help="tegrastats interval in ms (default 500)")
    s.add_argument("--fps", type=float, default=None, help="FPS measured over the same window: also print FPS/W")
    s.add_argument("--json", default=None, metavar="PATH", help="also write the summary as JSON")
    s.add_argument("--tegrastats-cmd", dest="tegrastats_cmd", default=None, metavar="CMD",
                   help="run this instead of `tegrastats --interval MS` (e.g. 'sudo tegrastats --interval 500')")
    s = sub.add_parser("power", help="show or set the nvpmodel power mode")
    s.add_argument("--mode", default=None, metavar="MODE",
                   help="switch to this mode: 'max' (the MAXN mode), a name from --list (MAXN_SUPER, 15W) or an id "
                        "(ids differ between boards: 0 is 15W on an Orin Nano with JetPack 6.2); root")
    s.add_argument("--list", action="store_true", help="list the modes in /etc/nvpmodel.conf")
    s.add_argument("--sudo", action="store_true", help="run nvpmodel through `sudo -n`")
    s = sub.add_parser("clocks", help="jetson_clocks on (pin clocks to max) or off (restore)")
    s.add_argument("state", choices=["on", "off"])
    s.add_argument("--sudo", action="store_true", help="run jetson_clocks through `sudo -n`")


COMMANDS = [
    ("jetson", cmd_jetson, "Jetson board info, tegrastats power/FPS-per-watt, nvpmodel power mode, jetson_clocks",
     build_jetson),
]
