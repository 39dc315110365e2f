"""Jetson power modes (``nvpmodel``), clocks (``jetson_clocks``) and board facts.

Everything here runs NVIDIA's command-line tools through a *runner* (default
:func:`run_command`: ``subprocess.run`` with a timeout, stdin closed), so tests inject recorded
outputs and no function needs a Jetson to import. Off a Jetson:

* the queries (:func:`current_power_mode`, :func:`power_modes`, :func:`clocks_maxed`,
  :func:`jetson_info`) return None;
* the actions (:func:`set_power_mode`, :func:`jetson_clocks`) raise :class:`NotOnJetson`.

Changing the power mode or the clocks needs root: run as root or pass ``sudo=True`` (``sudo -n``,
which fails instead of prompting when a password would be needed).
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import YoloEdgeError

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
NVPMODEL_CONF = Path("/etc/nvpmodel.conf")
DEFAULT_TIMEOUT_S = 30.0


class NotOnJetson(YoloEdgeError):
    """A Jetson-only tool or file is missing."""


class CommandNotFound(NotOnJetson):
    """The executable is not on PATH."""


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str = ""

    @property
    def output(self) -> str:
        return (self.stdout or "") + (self.stderr or "")


Runner = Callable[[Sequence[str], float], CommandResult]


def run_command(cmd: Sequence[str], timeout: float = DEFAULT_TIMEOUT_S) -> CommandResult:
    """Run ``cmd`` (no shell, stdin closed so that a tool asking a question reads EOF) and capture
    its output. Raises :class:`CommandNotFound` or a :class:`YoloEdgeError` on a timeout."""
    try:
        p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                           errors="replace")
    except FileNotFoundError as e:
        raise CommandNotFound(f"{cmd[0]!r} not found: it ships with Jetson Linux (L4T), so this does not look like "
                              "a Jetson") from e
    except subprocess.TimeoutExpired as e:
        raise YoloEdgeError(f"`{' '.join(cmd)}` did not finish within {timeout:g} s") from e
    return CommandResult(p.returncode, p.stdout or "", p.stderr or "")


def _sudo(cmd: list[str], sudo: bool) -> list[str]:
    return ["sudo", "-n", *cmd] if sudo else cmd


def _check(result: CommandResult, cmd: Sequence[str]) -> CommandResult:
    if result.returncode != 0:
        text = result.output.strip().splitlines()
        detail = text[-1] if text else f"exit code {result.returncode}"
        hint = ""
        if cmd[0] != "sudo" and re.search(r"root|permission|privilege|denied|not permitted", result.output, re.I):
            hint = " (it needs root: run with sudo, or pass --sudo)"
        elif cmd[0] == "sudo" and "password" in result.output.lower():
            hint = " (sudo wants a password: run the whole command with sudo instead)"
        raise YoloEdgeError(f"`{' '.join(cmd)}` failed: {detail}{hint}")
    return result


# --- power modes ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerMode:
    """An ``nvpmodel`` mode: its id (``nvpmodel -m ID``) and name (``MAXN``, ``15W`` ...)."""

    id: int
    name: str

    def __str__(self) -> str:
        return f"{self.name} (mode {self.id})"


def parse_nvpmodel_query(text: str) -> PowerMode:
    """``nvpmodel -q`` output -> :class:`PowerMode`.

    The tool prints ``NV Power Mode: MAXN`` and the mode id on the next line (``0``), sometimes
    after ``NVPM WARN`` lines.
    """
    m = re.search(r"NV Power Mode:\s*(\S[^\n]*?)\s*$", text or "", re.MULTILINE)
    if m is None:
        raise YoloEdgeError(f"unexpected `nvpmodel -q` output (no 'NV Power Mode:' line): {text.strip()[:200]!r}")
    ident = re.search(r"^\s*(\d+)\s*$", text[m.end():], re.MULTILINE)
    if ident is None:
        raise YoloEdgeError(f"unexpected `nvpmodel -q` output (no mode id after the name): {text.strip()[:200]!r}")
    return PowerMode(int(ident.group(1)), m.group(1))


def parse_nvpmodel_conf(text: str) -> list[PowerMode]:
    """The modes declared in ``/etc/nvpmodel.conf`` (``< POWER_MODEL ID=0 NAME=MAXN >``), by id."""
    modes = {int(i): n for i, n in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)\s*>", text or "")}
    return [PowerMode(i, modes[i]) for i in sorted(modes)]


def power_modes(conf: Path | str = NVPMODEL_CONF) -> list[PowerMode] | None:
    """The power modes this board offers, from ``nvpmodel.conf``; None when there is no such file."""
    path = Path(conf)
    if not path.is_file():
        return None
    return parse_nvpmodel_conf(path.read_text(errors="replace"))


def current_power_mode(runner: Runner = run_command) -> PowerMode | None:
    """The current ``nvpmodel`` mode; None off a Jetson (no ``nvpmodel``)."""
    try:
        result = runner(["nvpmodel", "-q"], DEFAULT_TIMEOUT_S)
    except CommandNotFound:
        return None
    return parse_nvpmodel_query(_check(result, ["nvpmodel", "-q"]).output)


def resolve_power_mode(spec: int | str, modes: Sequence[PowerMode]) -> PowerMode:
    """The mode ``spec`` names in ``modes`` (``/etc/nvpmodel.conf``): an id (``2``, ``"2"``), a name
    (``"MAXN_SUPER"``, ``"15w"``; case-insensitive) or ``"max"``.

    Ids differ between boards and releases: on the Orin Nano developer kit with JetPack 6.2, 0 is
    15W and MAXN_SUPER is 2, while 0 is MAXN on the AGX Orin (NVIDIA Jetson Linux Developer Guide
    r36.4.3, "Platform Power and Performance", supported modes per module). So a benchmark names
    the mode. ``"max"`` is the uncapped mode: the one named ``MAXN...`` (``MAXN_SUPER`` before
    ``MAXN`` when both exist), else the highest ``<N>W`` budget.
    """
    modes = list(modes)
    if not modes:
        raise YoloEdgeError("no power modes declared (is /etc/nvpmodel.conf there?)")
    listing = ", ".join(map(str, modes))
    if isinstance(spec, bool):
        raise YoloEdgeError(f"power mode must be an id, a name or 'max', got {spec!r}")
    text = str(spec).strip()
    if isinstance(spec, int) or text.isdigit():
        for m in modes:
            if m.id == int(text):
                return m
        raise YoloEdgeError(f"power mode {text} is not defined on this board; modes: {listing}")
    key = text.upper()
    if key == "MAX":
        maxn = [m for m in modes if m.name.upper().startswith("MAXN")]
        if maxn:
            return sorted(maxn, key=lambda m: (m.name.upper() != "MAXN_SUPER", m.id))[0]
        watts = [(float(w.group(1)), m) for m in modes if (w := re.fullmatch(r"(\d+(?:\.\d+)?)W", m.name.upper()))]
        if watts:
            return max(watts, key=lambda t: t[0])[1]
        raise YoloEdgeError(f"no MAXN mode and no <N>W mode to call 'max' on this board; modes: {listing}")
    for m in modes:
        if m.name.upper() == key:
            return m
    raise YoloEdgeError(f"no power mode named {text!r} on this board; modes: {listing} (or 'max')")


def set_power_mode(mode: int | str, runner: Runner = run_command, sudo: bool = False,
                   conf: Path | str | None = NVPMODEL_CONF) -> PowerMode:
    """Switch to ``nvpmodel`` mode ``mode`` (an id, a name from ``conf`` or ``"max"``, see
    :func:`resolve_power_mode`) and return the mode now in force.

    Raises :class:`NotOnJetson` off a Jetson, and :class:`YoloEdgeError` for a mode the board does
    not declare (checked against ``conf`` when it exists; names need it), a failed switch, or a
    mode that needs a reboot (``nvpmodel`` asks; stdin is closed, so it is not rebooted behind
    your back).
    """
    if isinstance(mode, bool) or not isinstance(mode, (int, str)) or (isinstance(mode, int) and mode < 0):
        raise YoloEdgeError(f"power mode must be an id >= 0, a name or 'max', got {mode!r}")
    modes = power_modes(conf) if conf is not None else None
    if modes:
        mode_id = resolve_power_mode(mode, modes).id
    elif isinstance(mode, int) or str(mode).strip().isdigit():
        mode_id = int(mode)
    else:
        raise YoloEdgeError(f"power mode {mode!r} is a name, but {conf} (which maps names to ids) is missing; "
                            "give the id (nvpmodel -q lists the current one)")
    cmd = _sudo(["nvpmodel", "-m", str(mode_id)], sudo)
    result = runner(cmd, DEFAULT_TIMEOUT_S)
    if re.search(r"reboot", result.output, re.IGNORECASE):
        raise YoloEdgeError(f"power mode {mode_id} takes effect only after a reboot: run `sudo nvpmodel -m {mode_id}`, "
                            "answer YES and let the board restart")
    _check(result, cmd)
    current = current_power_mode(runner)
    if current is None:  # pragma: no cover - nvpmodel vanished between two calls
        raise NotOnJetson("nvpmodel not found")
    if current.id != mode_id:
        raise YoloEdgeError(f"asked for power mode {mode_id}, but `nvpmodel -q` reports {current}")
    return current


# --- clocks -----------------------------------------------------------------------------------
def parse_jetson_clocks_show(text: str) -> dict:
    """``jetson_clocks --show`` -> ``{"cpu": [(min, max, cur), ...], "gpu": (min, max, cur) | None,
    "emc": (min, max, cur) | None}`` in the units printed (kHz for CPUs, Hz for GPU and EMC).
    Offline CPUs (``Online=0``) are left out."""
    cpus = []
    for head, lo, hi, cur in re.findall(
            r"^cpu\d+:(.*?)MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)", text or "", re.MULTILINE):
        if "Online=0" not in head:  # older releases print no Online= field
            cpus.append((int(lo), int(hi), int(cur)))
    out: dict = {"cpu": cpus, "gpu": None, "emc": None}
    for key, name in (("gpu", "GPU"), ("emc", "EMC")):
        m = re.search(rf"^{name}\s+MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)", text or "", re.MULTILINE)
        if m:
            out[key] = tuple(int(x) for x in m.groups())
    return out


def clocks_maxed(runner: Runner = run_command, sudo: bool = False) -> bool | None:
    """True when ``jetson_clocks`` pinned the clocks (GPU and every online CPU run with
    MinFreq == MaxFreq); None when it cannot be read (not a Jetson, or not root)."""
    cmd = _sudo(["jetson_clocks", "--show"], sudo)
    try:
        result = runner(cmd, DEFAULT_TIMEOUT_S)
    except CommandNotFound:
        return None
    if result.returncode != 0:
        return None
    clocks = parse_jetson_clocks_show(result.output)
    if clocks["gpu"] is None or not clocks["cpu"]:
        return None
    return clocks["gpu"][0] == clocks["gpu"][1] and all(lo == hi for lo, hi, _ in clocks["cpu"])


def jetson_clocks(enable: bool = True, runner: Runner = run_command, sudo: bool = False,
                  store: bool = True) -> None:
    """Pin CPU, GPU and EMC clocks to their maximum for the current power mode (``enable=True``),
    or undo it.

    On: ``jetson_clocks --store`` first (when ``store``; it saves the current settings to
    ``~/l4t_dfs.conf`` of the user it runs as), then ``jetson_clocks``. Off: ``jetson_clocks
    --restore``; when nothing was stored, re-applying the current ``nvpmodel`` mode resets the
    clocks to the mode's defaults, which is what this does next. Raises :class:`NotOnJetson` off a
    Jetson.
    """
    if enable:
        if store and clocks_maxed(runner, sudo) is not True:  # storing pinned clocks would make "off" a no-op
            _check(runner(_sudo(["jetson_clocks", "--store"], sudo), DEFAULT_TIMEOUT_S),
                   _sudo(["jetson_clocks", "--store"], sudo))
        cmd = _sudo(["jetson_clocks"], sudo)
        _check(runner(cmd, DEFAULT_TIMEOUT_S), cmd)
        return
    cmd = _sudo(["jetson_clocks", "--restore"], sudo)
    result = runner(cmd, DEFAULT_TIMEOUT_S)
    if result.returncode == 0:
        return
    mode = current_power_mode(runner)
    if mode is None:  # pragma: no cover
        _check(result, cmd)
        return
    reset = _sudo(["nvpmodel", "-m", str(mode.id)], sudo)
    _check(runner(reset, DEFAULT_TIMEOUT_S), reset)


# --- board ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JetsonInfo:
    """What board and software this is. None: could not be read (e.g. clocks without root)."""

    model: str | None
    l4t: str | None
    jetpack: str | None
    board: str | None
    power_mode: PowerMode | None
    power_modes: list[PowerMode] | None
    clocks_maxed: bool | None
    tegrastats: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        def v(x):
            return "unknown" if x is None else str(x)

        modes = ", ".join(map(str, self.power_modes)) if self.power_modes else "unknown"
        clocks = {True: "pinned to max (jetson_clocks)", False: "dynamic", None: "unknown (needs root)"}
        return [f"model: {v(self.model)}", f"L4T: {v(self.l4t)}  JetPack: {v(self.jetpack)}  board: {v(self.board)}",
                f"power mode: {v(self.power_mode)}", f"power modes: {modes}",
                f"clocks: {clocks[self.clocks_maxed]}", f"tegrastats: {'yes' if self.tegrastats else 'no'}"]


def read_model(path: Path | str = DEVICE_TREE_MODEL) -> str | None:
    """The board name from the device tree (``NVIDIA Jetson Orin Nano Developer Kit``), or None."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None
    text = text.replace("\x00", "").strip()
    return text or None


def is_jetson(tegra_release: Path | str | None = None) -> bool:
    """True when ``/etc/nv_tegra_release`` (Jetson Linux's release file) exists."""
    from ..trt.manifest import TEGRA_RELEASE

    return Path(tegra_release or TEGRA_RELEASE).is_file()


def jetson_info(runner: Runner = run_command, tegra_release: Path | str | None = None,
                model_path: Path | str = DEVICE_TREE_MODEL, conf: Path | str = NVPMODEL_CONF,
                sudo: bool = False) -> JetsonInfo | None:
    """Board model, L4T/JetPack release (:func:`yolo_edge.trt.manifest.parse_tegra_release`),
    power mode(s) and clock state; None off a Jetson (no ``/etc/nv_tegra_release``)."""
    from ..trt.manifest import TEGRA_RELEASE, parse_tegra_release
    from .tegrastats import available as tegrastats_available

    path = Path(tegra_release or TEGRA_RELEASE)
    if not path.is_file():
        return None
    rel = parse_tegra_release(path.read_text(errors="replace")) or {}
    try:
        mode = current_power_mode(runner)
    except YoloEdgeError:
        mode = None
    return JetsonInfo(model=read_model(model_path), l4t=rel.get("l4t"), jetpack=rel.get("jetpack"),
                      board=rel.get("board"), power_mode=mode, power_modes=power_modes(conf),
                      clocks_maxed=clocks_maxed(runner, sudo), tegrastats=tegrastats_available())


# --- efficiency -------------------------------------------------------------------------------
def fps_per_watt(fps: float, watts: float) -> float:
    """Frames per second per watt (= frames per joule). ``watts`` is the mean power over the same
    window as ``fps`` (e.g. :attr:`TegrastatsSummary.mean_power_w`)."""
    for name, v in (("fps", fps), ("watts", watts)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise YoloEdgeError(f"{name} must be a finite number, got {v!r}")
    if fps < 0:
        raise YoloEdgeError(f"fps must be >= 0, got {fps}")
    if watts <= 0:
        raise YoloEdgeError(f"watts must be > 0, got {watts} (no power reading?)")
    return fps / watts
