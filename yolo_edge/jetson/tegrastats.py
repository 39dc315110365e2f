"""``tegrastats`` lines -> :class:`TegrastatsSample`; :class:`TegrastatsReader` samples a running board.

``tegrastats`` (NVIDIA's Jetson Linux utility, see the "Tegrastats Utility" page of the Jetson
Linux Developer Guide) prints one line per interval. The fields differ by generation and release;
all of these are read:

* optional timestamp ``MM-DD-YYYY HH:MM:SS`` (newer releases);
* ``RAM used/totalMB (lfb NxSMB)``, ``SWAP used/totalMB (cached NMB)``;
* ``CPU [load%@MHz,...]`` per core, ``off`` for a powered-down core, or the older
  ``CPU [a%,b%,...]@MHz``;
* ``EMC_FREQ load%@MHz`` / ``EMC_FREQ load%`` (memory controller);
* ``GR3D_FREQ load%``, ``load%@MHz``, ``load%@[MHz,MHz]`` (one clock per GPC) or ``@[MHz,...]`` with
  no load (Jetson Thor) - the integrated GPU;
* temperatures ``name@43.5C`` (``CPU@``/``GPU@`` upper case up to JetPack 5, ``cpu@``/``gpu@``/``tj@``
  lower case on JetPack 6); a sensor that is off reads ``-256C`` and is left out;
* power rails ``NAME current/average`` in milliwatts, with an ``mW`` suffix since JetPack 5
  (``VDD_IN 4368mW/4368mW``) and without before (``POM_5V_IN 1750/1628``, ``VDD_IN 3140/3208``);
  a third ``/max`` value (``VIN 124486mW/36487mW/124486mW``) and ``@current C/max C`` temperatures
  are accepted too. They were seen only in a third-party test fixture labelled as a JetPack 7.2
  (L4T r39) Thor line, not in NVIDIA's documentation nor in the JetPack 7.0/7.1 lines we have, so
  the parser reads them when present and relies on neither.

Which rail is the module's power (:attr:`TegrastatsSample.power_source`): the board/module input
when tegrastats prints one - ``VDD_IN`` (Orin Nano/NX, Xavier NX, TX2), ``POM_5V_IN`` (Nano,
TX1), ``VIN`` (Jetson AGX Thor's carrier-board INA238 input monitor, printed beside its
sub-rails ``VDD_GPU``, ``VDD_CPU_SOC_MSS`` and ``VIN_SYS_5V0``; rbonghi/jetson_stats pull request
#900 reads it as the total input power). Adding VIN to its own sub-rails would count the same
watts twice. Only when no input rail is printed (AGX Xavier, AGX Orin, Thor on JetPack 7.0) is the
sum of the rails used, a lower bound of the module's draw.

Temperature sensors named ``PMIC`` (Nano, TX1/TX2, Xavier) are not real readings: the Nano and
TX boards print a fixed ``PMIC@100C``. They stay in :attr:`TegrastatsSample.temperatures` but never
count as the hottest sensor (rbonghi/jetson_stats ``jtop/core/temperature.py`` skips them too,
commit f41d5cad).

Anything else (``APE 150``, ``NVENC off``, ``MTS fg 1% bg 9%`` ...) is ignored, so a new field in a
future release does not break the parser. A line without the ``RAM`` field is not tegrastats
output and raises :class:`TegrastatsParseError`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from statistics import fmean
from typing import Sequence

from ..errors import YoloEdgeError

#: rails that measure the module's (or, on Thor, the carrier's) whole input, in order of preference
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN")
#: temperature sensors that do not measure anything (a fixed PMIC@100C on Nano/TX boards)
DUMMY_SENSORS = ("PMIC",)
_OFF_SENSOR_C = -256.0

_TIMESTAMP = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s+")
_MEM = r"(\d+)/(\d+)([kKMG]?)B"
_RAM = re.compile(r"(?<![A-Za-z])RAM " + _MEM)
_SWAP = re.compile(r"\bSWAP " + _MEM)
_CPU = re.compile(r"\bCPU \[([^\]]*)\](?:@(\d+))?", re.IGNORECASE)
_CORE = re.compile(r"^(\d+(?:\.\d+)?)%(?:@(\d+))?$")
_GR3D = re.compile(r"\bGR3D(?:_FREQ)? (?:(\d+(?:\.\d+)?)%)?(?:@\[?([\d,]+)\]?)?")
_EMC = re.compile(r"\bEMC(?:_FREQ)? (?:(\d+(?:\.\d+)?)%)?(?:@(\d+))?")
_TEMP = re.compile(r"(?<![\w.%@])([A-Za-z][A-Za-z0-9_\-]*)@(-?\d+(?:\.\d+)?)C(?![\w])")
_RAIL = re.compile(r"(?<![\w@/])([A-Za-z][A-Za-z0-9_]*) (\d+(?:\.\d+)?)(?:mW)?/(\d+(?:\.\d+)?)(?:mW)?"
                   r"(?:/(\d+(?:\.\d+)?)(?:mW)?)?(?![\w/%])")
_TO_MB = {"": 1 / 2**20, "k": 1 / 1024, "K": 1 / 1024, "M": 1.0, "G": 1024.0}
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "NC"}  # memory fields; NC = "not connected" INA channel


class TegrastatsParseError(YoloEdgeError):
    """A line is not tegrastats output."""


@dataclass(frozen=True)
class PowerRail:
    """One power-monitor channel as tegrastats prints it: instantaneous and running-average
    milliwatts, and the maximum when the release prints a third value."""

    current_mw: float
    average_mw: float
    max_mw: float | None = None


@dataclass
class TegrastatsSample:
    """One parsed tegrastats line. Sizes in MB, loads in percent, clocks in MHz, temperatures in
    degrees C, power in mW (``rails``) or W (:attr:`total_power_w`). None: not printed on this
    board/release."""

    ram_used_mb: float
    ram_total_mb: float
    swap_used_mb: float | None = None
    swap_total_mb: float | None = None
    cpu_loads: list[float | None] = field(default_factory=list)  # per core; None = core off
    cpu_freqs_mhz: list[int | None] = field(default_factory=list)
    gpu_load_pct: float | None = None  # GR3D_FREQ load
    gpu_freqs_mhz: list[int] = field(default_factory=list)  # one per GPC on Orin
    emc_load_pct: float | None = None
    emc_freq_mhz: int | None = None
    temperatures: dict[str, float] = field(default_factory=dict)  # names as printed
    rails: dict[str, PowerRail] = field(default_factory=dict)
    timestamp: datetime | None = None
    raw: str = ""

    @property
    def power_source(self) -> str | None:
        """The rail :attr:`total_power_w` reads: ``VDD_IN``, ``POM_5V_IN``, ``VIN`` (Thor),
        ``"sum of rails"`` (boards whose monitor has no input channel, e.g. AGX Xavier and AGX
        Orin), or None."""
        for name in INPUT_RAILS:
            if name in self.rails:
                return name
        return "sum of rails" if self.rails else None

    @property
    def total_power_w(self) -> float | None:
        """Module power in watts from the instantaneous readings: the input rail (``VDD_IN``,
        ``POM_5V_IN`` on the Nano/TX1, ``VIN`` on Thor) when printed - never added to the sub-rails
        beside it - else the sum of all rails (a lower bound of the module's draw: what the monitor
        does not see is missing)."""
        src = self.power_source
        if src is None:
            return None
        if src in self.rails:
            return self.rails[src].current_mw / 1000.0
        return sum(r.current_mw for r in self.rails.values()) / 1000.0

    @property
    def hottest(self) -> tuple[str, float] | None:
        """``(sensor, degrees C)`` of the hottest real sensor (``PMIC`` dummies left out), or None."""
        real = {k: v for k, v in self.temperatures.items() if k.upper() not in DUMMY_SENSORS}
        if not real:
            return None
        name = max(real, key=lambda k: real[k])
        return name, real[name]

    @property
    def cpu_load_mean(self) -> float | None:
        """Mean load over the cores that are on."""
        on = [x for x in self.cpu_loads if x is not None]
        return fmean(on) if on else None


def _mb(value: str, unit: str) -> float:
    return float(value) * _TO_MB[unit]


def _cpu(body: str, shared_freq: str | None) -> tuple[list[float | None], list[int | None]]:
    loads: list[float | None] = []
    freqs: list[int | None] = []
    for item in body.split(","):
        item = item.strip()
        m = _CORE.match(item)
        if m:
            loads.append(float(m.group(1)))
            f = m.group(2) or shared_freq
            freqs.append(int(f) if f else None)
        else:  # "off", or an empty slot of the old "[a%,b%, , ]@F" format
            loads.append(None)
            freqs.append(None)
    return loads, freqs


def parse_line(line: str) -> TegrastatsSample:
    """Parse one line of tegrastats output (any Jetson generation, see the module doc).

    Raises:
        TegrastatsParseError: the line has no ``RAM used/total`` field, so it is not tegrastats output.
    """
    text = (line or "").strip()
    ram = _RAM.search(text)
    if ram is None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise TegrastatsParseError(f"not a tegrastats line (no 'RAM used/totalMB' field): {shown!r}")
    sample = TegrastatsSample(ram_used_mb=_mb(ram.group(1), ram.group(3)),
                              ram_total_mb=_mb(ram.group(2), ram.group(3)), raw=text)
    ts = _TIMESTAMP.match(text)
    if ts:
        try:
            sample.timestamp = datetime.strptime(ts.group(1), "%m-%d-%Y %H:%M:%S")
        except ValueError:
            pass
    swap = _SWAP.search(text)
    if swap:
        sample.swap_used_mb, sample.swap_total_mb = _mb(swap.group(1), swap.group(3)), _mb(swap.group(2), swap.group(3))
    cpu = _CPU.search(text)
    if cpu:
        sample.cpu_loads, sample.cpu_freqs_mhz = _cpu(cpu.group(1), cpu.group(2))
    gpu = _GR3D.search(text)
    if gpu:
        sample.gpu_load_pct = float(gpu.group(1)) if gpu.group(1) is not None else None
        sample.gpu_freqs_mhz = [int(f) for f in (gpu.group(2) or "").split(",") if f]
    emc = _EMC.search(text)
    if emc:
        sample.emc_load_pct = float(emc.group(1)) if emc.group(1) is not None else None
        sample.emc_freq_mhz = int(emc.group(2)) if emc.group(2) else None
    rest = text[cpu.end():] if cpu else text  # core entries "9%@345" are not temperatures
    for name, value in _TEMP.findall(rest):
        t = float(value)
        if t > _OFF_SENSOR_C:
            sample.temperatures[name] = t
    for name, cur, avg, peak in _RAIL.findall(text):
        if name.upper() not in _NOT_RAILS:
            sample.rails[name] = PowerRail(float(cur), float(avg), float(peak) if peak else None)
    return sample


# --- reader -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TegrastatsSummary:
    """What a :class:`TegrastatsReader` saw. Power in W, loads in %, temperatures in degrees C;
    None when no sample had the field."""

    n_samples: int
    duration_s: float
    mean_power_w: float | None
    max_power_w: float | None
    power_source: str | None
    mean_gpu_load_pct: float | None
    max_gpu_load_pct: float | None
    mean_cpu_load_pct: float | None
    max_ram_used_mb: float | None
    max_temperatures: dict[str, float]
    bad_lines: int = 0
    hottest_sensor: str | None = None  # PMIC dummies left out
    hottest_c: float | None = None

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)

    def lines(self) -> list[str]:
        """Human-readable summary, one fact a line."""

        def f(v, unit="", fmt="{:.2f}"):
            return "n/a" if v is None else fmt.format(v) + unit

        source = self.power_source or "no power rails"
        pct = "{:.1f}"
        out = [f"samples: {self.n_samples} over {self.duration_s:.1f} s",
               f"power: mean {f(self.mean_power_w, ' W')}, max {f(self.max_power_w, ' W')} ({source})",
               f"GPU load: mean {f(self.mean_gpu_load_pct, '%', pct)}, max {f(self.max_gpu_load_pct, '%', pct)}",
               f"CPU load (mean over cores that are on): {f(self.mean_cpu_load_pct, '%', '{:.1f}')}",
               f"RAM used: max {f(self.max_ram_used_mb, ' MB', '{:.0f}')}"]
        if self.hottest_sensor is not None:
            out.append(f"hottest: {self.hottest_sensor} {self.hottest_c:.1f}C")
        if self.max_temperatures:
            out.append("max temperatures: " + ", ".join(
                f"{k} {v:.1f}C" + (" (dummy)" if k.upper() in DUMMY_SENSORS else "")
                for k, v in self.max_temperatures.items()))
        return out


def summarize(samples: Sequence[TegrastatsSample], duration_s: float = 0.0, bad_lines: int = 0) -> TegrastatsSummary:
    """Mean/max power, mean GPU load, max temperatures ... over ``samples``."""
    power = [s.total_power_w for s in samples if s.total_power_w is not None]
    gpu = [s.gpu_load_pct for s in samples if s.gpu_load_pct is not None]
    cpu = [s.cpu_load_mean for s in samples if s.cpu_load_mean is not None]
    temps: dict[str, float] = {}
    for s in samples:
        for k, v in s.temperatures.items():
            temps[k] = max(v, temps.get(k, v))
    sources = {s.power_source for s in samples if s.power_source}
    real = {k: v for k, v in temps.items() if k.upper() not in DUMMY_SENSORS}
    hottest = max(real, key=lambda k: real[k]) if real else None
    return TegrastatsSummary(
        n_samples=len(samples), duration_s=duration_s,
        mean_power_w=fmean(power) if power else None, max_power_w=max(power) if power else None,
        power_source=" / ".join(sorted(sources)) if sources else None,
        mean_gpu_load_pct=fmean(gpu) if gpu else None, max_gpu_load_pct=max(gpu) if gpu else None,
        mean_cpu_load_pct=fmean(cpu) if cpu else None,
        max_ram_used_mb=max(s.ram_used_mb for s in samples) if samples else None,
        max_temperatures=temps, bad_lines=bad_lines, hottest_sensor=hottest,
        hottest_c=real[hottest] if hottest is not None else None)


class TegrastatsReader:
    """Runs ``tegrastats --interval MS`` and parses its lines in a background thread::

        with TegrastatsReader(interval_ms=500) as ts:
            run_benchmark()
        print(ts.summary().mean_power_w)

    Args:
        interval_ms: sampling interval passed to tegrastats.
        command: the command to run instead of ``["tegrastats", "--interval", MS]`` (tests use a
            script that prints recorded lines; on some boards ``["sudo", "tegrastats", ...]``).
        max_samples: keep at most this many samples (oldest dropped); None keeps all.

    Lines that are not tegrastats output (warnings on stderr, which is merged into stdout) are
    counted in :attr:`bad_lines` and the last one is kept in :attr:`last_bad_line`. Leaving the
    ``with`` block (or :meth:`stop`) terminates the process, kills it if it does not exit within
    ``stop_timeout`` seconds, and joins the thread.
    """

    def __init__(self, interval_ms: int = 1000, command: Sequence[str] | None = None,
                 max_samples: int | None = None, stop_timeout: float = 3.0):
        if isinstance(interval_ms, bool) or not isinstance(interval_ms, int) or interval_ms <= 0:
            raise YoloEdgeError(f"interval_ms must be a positive integer, got {interval_ms!r}")
        self.interval_ms = interval_ms
        self.command = list(command) if command else ["tegrastats", "--interval", str(interval_ms)]
        self.max_samples = max_samples
        self.stop_timeout = stop_timeout
        self.bad_lines = 0
        self.last_bad_line: str | None = None
        self.returncode: int | None = None
        self.pid: int | None = None
        self._samples: list[TegrastatsSample] = []
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._t0 = self._t1 = 0.0

    @staticmethod
    def available() -> bool:
        """True when a ``tegrastats`` executable is on PATH (a Jetson)."""
        return available()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def process(self) -> subprocess.Popen | None:
        return self._proc

    def start(self) -> TegrastatsReader:
        if self._proc is not None:
            raise YoloEdgeError("TegrastatsReader is already started")
        try:
            self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, text=True, bufsize=1, errors="replace")
        except FileNotFoundError as e:
            raise YoloEdgeError(f"cannot run {self.command[0]!r}: not found. tegrastats ships with Jetson Linux "
                                "(L4T); this does not look like a Jetson") from e
        except PermissionError as e:
            raise YoloEdgeError(f"cannot run {self.command[0]!r}: permission denied") from e
        self.pid = self._proc.pid
        self._t0 = self._t1 = time.monotonic()
        self._thread = threading.Thread(target=self._read, name="tegrastats-reader", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if not line.strip():
                continue
            try:
                sample = parse_line(line)
            except TegrastatsParseError:
                self.bad_lines += 1
                self.last_bad_line = line.strip()
                continue
            with self._lock:
                self._samples.append(sample)
                if self.max_samples and len(self._samples) > self.max_samples:
                    del self._samples[0]
                self._t1 = time.monotonic()

    def stop(self) -> None:
        """Terminate tegrastats (kill after ``stop_timeout``) and join the reader thread."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=self.stop_timeout)
        self.returncode = proc.returncode
        if self._thread is not None:
            self._thread.join(timeout=self.stop_timeout)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> TegrastatsReader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def samples(self) -> list[TegrastatsSample]:
        """A copy of the samples collected so far."""
        with self._lock:
            return list(self._samples)

    def wait_for(self, n: int, timeout: float) -> bool:
        """Block until ``n`` samples arrived (True) or ``timeout`` seconds passed / the process
        ended (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._samples) >= n:
                    return True
            if self._proc is None or (self._proc.poll() is not None and not (self._thread and self._thread.is_alive())):
                break
            time.sleep(0.02)
        with self._lock:
            return len(self._samples) >= n

    def summary(self) -> TegrastatsSummary:
        """Summary of the samples so far (``n_samples == 0`` and None values when there are none)."""
        with self._lock:
            samples, dt = list(self._samples), self._t1 - self._t0
        return summarize(samples, duration_s=dt, bad_lines=self.bad_lines)


def available() -> bool:
    """True when a ``tegrastats`` executable is on PATH (a Jetson)."""
    return shutil.which("tegrastats") is not None
