"""yolo_edge.jetson (tegrastats, power modes, clocks, board info, CLI) and the jetson/ kit (scripts,
systemd unit). Nothing here needs a Jetson: tegrastats lines are real lines recorded on boards and
published with the source named next to each; NVIDIA's tools are replaced by injected runners or
small fake executables."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from datetime import datetime
from pathlib import Path

import pytest

from yolo_edge.errors import YoloEdgeError
from yolo_edge.jetson import (CommandResult, NotOnJetson, PowerMode, PowerRail, TegrastatsParseError, TegrastatsReader,
                              clocks_maxed, current_power_mode, fps_per_watt, is_jetson, jetson_clocks, jetson_info,
                              parse_jetson_clocks_show, parse_line, parse_nvpmodel_conf, parse_nvpmodel_query,
                              resolve_power_mode, set_power_mode, summarize)
from yolo_edge.jetson import tegrastats as tegrastats_mod
from yolo_edge.jetson.power import CommandNotFound

ROOT = Path(__file__).resolve().parents[1]

# --- real tegrastats lines ----------------------------------------------------------------------
# Jetson TX2, JetPack 4 (no mW suffix, VDD_IN input rail). Posted by a user in
# github.com/FindHao/tx-utils issue #3 (2019-09-05).
TX2 = ("RAM 2020/7852MB (lfb 1164x4MB) CPU [9%@345,21%@345,25%@345,3%@345,1%@345,1%@345] EMC_FREQ 0% "
       "GR3D_FREQ 0% PLL@42.5C MCPU@42.5C PMIC@100C Tboard@40C GPU@41C BCPU@42.5C thermal@41.9C Tdiode@41.25C "
       "VDD_SYS_GPU 153/158 VDD_SYS_SOC 536/547 VDD_4V0_WIFI 633/527 VDD_IN 3140/3208 VDD_SYS_CPU 536/590 "
       "VDD_SYS_DDR 557/601")
# Jetson Nano, JetPack 4.6.1 (POM_5V_IN input rail, IRAM field). github.com/waggle-sensor/jetson-exporter,
# tegrastats_test.go (TestParseTegraStatsXavierNanoJetPack461).
NANO = ("RAM 1923/3964MB (lfb 2x2MB) SWAP 191/1982MB (cached 6MB) IRAM 0/252kB(lfb 252kB) "
        "CPU [5%@1224,4%@1224,3%@1224,6%@1224] EMC_FREQ 0%@1600 GR3D_FREQ 0%@76 APE 25 PLL@37C CPU@40C PMIC@50C "
        "GPU@40C AO@45C thermal@40C POM_5V_IN 1750/1628 POM_5V_GPU 0/0 POM_5V_CPU 366/406")
# Jetson Nano (4 GB, 2 cores powered down: "off"), JetPack 4. Recorded in a comment of
# github.com/NewChromantics/PopEngine, src/TApiPlatform.cpp.
NANO_OFF = ("RAM 1901/3956MB (lfb 183x4MB) SWAP 0/1978MB (cached 0MB) CPU [8%@102,6%@102,off,off] EMC_FREQ 0% "
            "GR3D_FREQ 0% PLL@38.5C CPU@41.5C PMIC@100C GPU@41.5C AO@48C thermal@41.75C POM_5V_IN 1154/1544 "
            "POM_5V_GPU 0/43 POM_5V_CPU 119/205")
# Jetson AGX Xavier, JetPack 4.2 (rails without VDD_ prefix and no input rail). Posted by a user in
# github.com/martinkersner/gtop pull request #7 (2019-06-17).
AGX_XAVIER = ("RAM 14700/15692MB (lfb 3x2MB) SWAP 898/8192MB (cached 23MB) CPU [0%@1190,0%@1190,0%@1190,0%@1190,"
              "0%@1190,0%@1190,0%@1190,0%@1190] EMC_FREQ 0% GR3D_FREQ 0% AO@30C GPU@30.5C Tboard@31C Tdiode@32C "
              "AUX@30.5C CPU@31.5C thermal@30.8C PMIC@100C GPU 463/463 CPU 618/618 SOC 2936/2936 CV 0/0 "
              "VDDRQ 309/309 SYS5V 3306/3306")
# Jetson Xavier NX, JetPack 4 (MTS field, no mW). waggle-sensor/jetson-exporter tegrastats_test.go
# (TestParseTegraStatsXavierNXJetPack411).
XAVIER_NX_JP4 = ("RAM 5246/7771MB (lfb 7x4MB) SWAP 983/20269MB (cached 280MB) CPU [47%@1420,23%@1420,32%@1420,"
                 "22%@1420,31%@1420,96%@1420] EMC_FREQ 2%@1600 GR3D_FREQ 0%@1109 APE 150 MTS fg 1% bg 9% AO@29C "
                 "GPU@31.5C PMIC@100C AUX@30C CPU@33.5C thermal@31.35C VDD_IN 6140/5510 VDD_CPU_GPU_CV 2706/2119 "
                 "VDD_SOC 1074/1051")
# Jetson Xavier NX, JetPack 5.1.2 (timestamp, mW suffix, GR3D clock in brackets). Same file
# (TestParseTegraStatsXavierNXJetPack512).
XAVIER_NX_JP5 = ("07-09-2024 13:31:31 RAM 3168/6851MB (lfb 2x4MB) SWAP 161/3426MB (cached 0MB) CPU [23%@1397,"
                 "17%@1192,16%@1190,13%@1190,23%@1190,10%@1190] EMC_FREQ 2%@204 GR3D_FREQ 0%@[114] VIC_FREQ 115 "
                 "APE 150 AUX@45C CPU@46.5C thermal@45.6C AO@45C GPU@45.5C PMIC@50C VDD_IN 2763mW/2846mW "
                 "VDD_CPU_GPU_CV 650mW/670mW VDD_SOC 650mW/711mW")
# Jetson Orin Nano Super, JetPack 6.2 / L4T 36.4.3 (lower-case temperature names, tj@). Copied "from
# a real log" per github.com/vivh3/edge-inference-pipeline, tests/test_tegrastats.py (IDLE, BUSY).
ORIN_NANO_IDLE = ("10-08-2026 04:38:21 RAM 1343/7620MB (lfb 157x4MB) SWAP 165/3810MB (cached 3MB) "
                  "CPU [0%@1497,0%@729,0%@729,0%@729,0%@729,0%@729] EMC_FREQ 15%@204 GR3D_FREQ 0%@[305] NVDEC off "
                  "NVJPG off VIC off OFA off APE 200 cpu@48.562C soc2@46.593C soc0@48.625C gpu@49.625C tj@49.312C "
                  "soc1@47.937C VDD_IN 5251mW/8535mW VDD_CPU_GPU_CV 512mW/1944mW VDD_SOC 2720mW/3659mW")
ORIN_NANO_BUSY = ("10-08-2026 04:35:02 RAM 6712/7620MB (lfb 12x4MB) SWAP 369/3810MB (cached 8MB) "
                  "CPU [38%@1497,2%@729,1%@729,0%@729,1%@729,0%@729] EMC_FREQ 61%@2133 GR3D_FREQ 99%@[612] "
                  "NVDEC off NVJPG off VIC off OFA off APE 200 cpu@57.125C soc2@55.093C soc0@56.625C gpu@58.625C "
                  "tj@58.312C soc1@55.937C VDD_IN 16321mW/11204mW VDD_CPU_GPU_CV 7104mW/4944mW VDD_SOC 3120mW/3659mW")
# Jetson AGX Orin 64 GB, JetPack 6.2.1 / L4T 36.4.4 (no input rail: VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0;
# two GPC clocks). github.com/lesomnus/tegra-exporter, stats/parse_test.go (kernel 5.15.148 case).
AGX_ORIN = ("05-09-2026 18:42:06 RAM 18207/62841MB (lfb 466x4MB) SWAP 86/31420MB (cached 0MB) CPU [14%@2188,"
            "5%@2112,8%@2035,14%@2201,46%@1267,47%@1267,2%@1267,10%@1267,4%@1036,5%@1036,6%@1036,10%@1036] "
            "EMC_FREQ 3%@2133 GR3D_FREQ 0%@[0,0] NVENC 79%@166 NVDEC off NVJPG off NVJPG1 off VIC 36%@115 OFA off "
            "NVDLA0 off NVDLA1 off PVA0_FREQ off APE 174 cpu@52.562C soc2@48.437C soc0@49.093C tj@52.562C "
            "soc1@49.656C VDD_GPU_SOC 2412mW/2412mW VDD_CPU_CV 1607mW/1607mW VIN_SYS_5V0 4707mW/4707mW")
# L4T 38.4.0 board with 14 cores and 128 GB (Jetson AGX Thor, JetPack 7): GR3D_FREQ without a load
# figure. Same file (kernel 6.8.12 case).
THOR = ("05-17-2026 10:00:32 RAM 4208/125773MB (lfb 31x4MB) SWAP 0/2048MB (cached 0MB) CPU [1%@972,0%@972,0%@972,"
        "0%@972,1%@972,0%@972,1%@972,1%@972,0%@972,0%@972,3%@972,0%@972,0%@972,1%@972] EMC_FREQ 0%@665 "
        "GR3D_FREQ @[0,0,0] NVENC0_FREQ @0 NVENC1_FREQ @0 NVDEC0_FREQ @0 NVDEC1_FREQ @0 NVJPG0_FREQ @0 VIC off "
        "OFA_FREQ @0 PVA0_FREQ off APE 300 cpu@34.468C tj@34.5C soc012@33.781C soc345@34.5C VDD_GPU 0mW/0mW "
        "VDD_CPU_SOC_MSS 4165mW/4165mW VIN_SYS_5V0 4126mW/4126mW")
# Jetson AGX Thor on JetPack 7 with the carrier's input monitor: VIN (the board's input) printed
# BESIDE its sub-rails. A test fixture of a public tegrastats exporter (GitHub code search for
# "VIN 26686mW/26686mW", 2026-07-31); rbonghi/jetson_stats pull request #900 reads this INA238 VIN
# as the total input. Summing all four rails would report 45.777 W instead of 26.686 W.
THOR_VIN = ("07-31-2026 14:45:55 RAM 86905/125772MB (lfb 368x4MB) CPU [12%@972,10%@972,off,33%@1890] "
            "cpu@39.812C tj@39.906C soc012@38.812C gpu@39.906C soc345@38.625C VDD_GPU 3561mW/3561mW "
            "VDD_CPU_SOC_MSS 7910mW/7910mW VIN_SYS_5V0 7620mW/7620mW VIN 26686mW/26686mW")
# Three values per rail (current/average/max) and "@cur C/max C" temperatures: only seen in a
# third-party fixture labelled as an L4T r39 (JetPack 7.2) Thor line (GitHub code search for
# "VIN 124486mW/36487mW/124486mW"); NVIDIA documents two values. Read when present.
THOR_R39 = ("08-08-2026 21:00:39 RAM 8353/125749MB (lfb 31x4MB) CPU [90%@2601,75%@2601,off,7%@2601] "
            "EMC_FREQ 34%@4266 GR3D_FREQ 87%@[1574,1574,1574] NVENC0_FREQ @1691 VIC off cpu@58.25C/61.75C "
            "tj@66.625C/66.625C gpu@56.937C/66.625C soc012@55.375C/58.781C soc345@55.812C/60.031C "
            "VDD_GPU 37939mW/8660mW/37939mW VDD_CPU_SOC_MSS 30059mW/12281mW/30059mW "
            "VIN_SYS_5V0 15486mW/7424mW/15486mW VIN 124486mW/36487mW/124486mW")
# /etc/nv_tegra_release of that AGX Orin (same file, comment above its test case)
TEGRA_RELEASE_36_4_4 = ("# R36 (release), REVISION: 4.4, GCID: 41062509, BOARD: generic, EABI: aarch64, "
                        "DATE: Mon Jun 16 16:07:13 UTC 2025\n")

# expected values, worked out by hand from the lines above (power: input rail, else the sum of rails)
CASES = {
    "tx2": dict(line=TX2, ram=(2020, 7852), swap=None, cpus=[9, 21, 25, 3, 1, 1], freqs=[345] * 6, gpu=0.0,
                gpu_f=[], emc=(0.0, None), temps={"PLL": 42.5, "MCPU": 42.5, "PMIC": 100.0, "Tboard": 40.0,
                                                   "GPU": 41.0, "BCPU": 42.5, "thermal": 41.9, "Tdiode": 41.25},
                rails=6, source="VDD_IN", power=3.140, ts=None),
    "nano": dict(line=NANO, ram=(1923, 3964), swap=(191, 1982), cpus=[5, 4, 3, 6], freqs=[1224] * 4, gpu=0.0,
                 gpu_f=[76], emc=(0.0, 1600), temps={"PLL": 37.0, "CPU": 40.0, "PMIC": 50.0, "GPU": 40.0, "AO": 45.0,
                                                     "thermal": 40.0},
                 rails=3, source="POM_5V_IN", power=1.750, ts=None),
    "nano_off": dict(line=NANO_OFF, ram=(1901, 3956), swap=(0, 1978), cpus=[8, 6, None, None],
                     freqs=[102, 102, None, None], gpu=0.0, gpu_f=[], emc=(0.0, None),
                     temps={"PLL": 38.5, "CPU": 41.5, "PMIC": 100.0, "GPU": 41.5, "AO": 48.0, "thermal": 41.75},
                     rails=3, source="POM_5V_IN", power=1.154, ts=None),
    # 463 + 618 + 2936 + 0 + 309 + 3306 = 7632 mW
    "agx_xavier": dict(line=AGX_XAVIER, ram=(14700, 15692), swap=(898, 8192), cpus=[0] * 8, freqs=[1190] * 8,
                       gpu=0.0, gpu_f=[], emc=(0.0, None),
                       temps={"AO": 30.0, "GPU": 30.5, "Tboard": 31.0, "Tdiode": 32.0, "AUX": 30.5, "CPU": 31.5,
                              "thermal": 30.8, "PMIC": 100.0},
                       rails=6, source="sum of rails", power=7.632, ts=None),
    "xavier_nx_jp4": dict(line=XAVIER_NX_JP4, ram=(5246, 7771), swap=(983, 20269), cpus=[47, 23, 32, 22, 31, 96],
                          freqs=[1420] * 6, gpu=0.0, gpu_f=[1109], emc=(2.0, 1600),
                          temps={"AO": 29.0, "GPU": 31.5, "PMIC": 100.0, "AUX": 30.0, "CPU": 33.5, "thermal": 31.35},
                          rails=3, source="VDD_IN", power=6.140, ts=None),
    "xavier_nx_jp5": dict(line=XAVIER_NX_JP5, ram=(3168, 6851), swap=(161, 3426), cpus=[23, 17, 16, 13, 23, 10],
                          freqs=[1397, 1192, 1190, 1190, 1190, 1190], gpu=0.0, gpu_f=[114], emc=(2.0, 204),
                          temps={"AUX": 45.0, "CPU": 46.5, "thermal": 45.6, "AO": 45.0, "GPU": 45.5, "PMIC": 50.0},
                          rails=3, source="VDD_IN", power=2.763, ts=datetime(2024, 7, 9, 13, 31, 31)),
    "orin_nano_busy": dict(line=ORIN_NANO_BUSY, ram=(6712, 7620), swap=(369, 3810), cpus=[38, 2, 1, 0, 1, 0],
                           freqs=[1497] + [729] * 5, gpu=99.0, gpu_f=[612], emc=(61.0, 2133),
                           temps={"cpu": 57.125, "soc2": 55.093, "soc0": 56.625, "gpu": 58.625, "tj": 58.312,
                                  "soc1": 55.937},
                           rails=3, source="VDD_IN", power=16.321, ts=datetime(2026, 10, 8, 4, 35, 2)),
    # 2412 + 1607 + 4707 = 8726 mW
    "agx_orin": dict(line=AGX_ORIN, ram=(18207, 62841), swap=(86, 31420),
                     cpus=[14, 5, 8, 14, 46, 47, 2, 10, 4, 5, 6, 10],
                     freqs=[2188, 2112, 2035, 2201, 1267, 1267, 1267, 1267, 1036, 1036, 1036, 1036], gpu=0.0,
                     gpu_f=[0, 0], emc=(3.0, 2133),
                     temps={"cpu": 52.562, "soc2": 48.437, "soc0": 49.093, "tj": 52.562, "soc1": 49.656},
                     rails=3, source="sum of rails", power=8.726, ts=datetime(2026, 5, 9, 18, 42, 6)),
    # 0 + 4165 + 4126 = 8291 mW
    "thor": dict(line=THOR, ram=(4208, 125773), swap=(0, 2048), cpus=[1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 3, 0, 0, 1],
                 freqs=[972] * 14, gpu=None, gpu_f=[0, 0, 0], emc=(0.0, 665),
                 temps={"cpu": 34.468, "tj": 34.5, "soc012": 33.781, "soc345": 34.5},
                 rails=3, source="sum of rails", power=8.291, ts=datetime(2026, 5, 17, 10, 0, 32)),
    # VIN alone (the input), not 3561 + 7910 + 7620 + 26686
    "thor_vin": dict(line=THOR_VIN, ram=(86905, 125772), swap=None, cpus=[12, 10, None, 33],
                     freqs=[972, 972, None, 1890], gpu=None, gpu_f=[], emc=(None, None),
                     temps={"cpu": 39.812, "tj": 39.906, "soc012": 38.812, "gpu": 39.906, "soc345": 38.625},
                     rails=4, source="VIN", power=26.686, ts=datetime(2026, 7, 31, 14, 45, 55)),
    "thor_r39": dict(line=THOR_R39, ram=(8353, 125749), swap=None, cpus=[90, 75, None, 7],
                     freqs=[2601, 2601, None, 2601], gpu=87.0, gpu_f=[1574, 1574, 1574], emc=(34.0, 4266),
                     temps={"cpu": 58.25, "tj": 66.625, "gpu": 56.937, "soc012": 55.375, "soc345": 55.812},
                     rails=4, source="VIN", power=124.486, ts=datetime(2026, 8, 8, 21, 0, 39)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_parse_real_lines(name):
    c = CASES[name]
    s = parse_line(c["line"])
    assert (s.ram_used_mb, s.ram_total_mb) == c["ram"]
    assert ((s.swap_used_mb, s.swap_total_mb) if s.swap_total_mb is not None else None) == c["swap"]
    assert s.cpu_loads == c["cpus"]
    assert s.cpu_freqs_mhz == c["freqs"]
    assert s.gpu_load_pct == c["gpu"]
    assert s.gpu_freqs_mhz == c["gpu_f"]
    assert (s.emc_load_pct, s.emc_freq_mhz) == c["emc"]
    assert s.temperatures == c["temps"]
    assert len(s.rails) == c["rails"]
    assert s.power_source == c["source"]
    assert s.total_power_w == pytest.approx(c["power"])
    assert s.timestamp == c["ts"]
    assert s.raw == c["line"]


def test_rail_values_current_and_average():
    s = parse_line(XAVIER_NX_JP5)
    assert (s.rails["VDD_IN"].current_mw, s.rails["VDD_IN"].average_mw) == (2763, 2846)
    assert (s.rails["VDD_SOC"].current_mw, s.rails["VDD_SOC"].average_mw) == (650, 711)
    nano = parse_line(NANO)
    assert (nano.rails["POM_5V_CPU"].current_mw, nano.rails["POM_5V_CPU"].average_mw) == (366, 406)
    assert "RAM" not in nano.rails and "SWAP" not in nano.rails and "IRAM" not in nano.rails
    assert set(parse_line(AGX_XAVIER).rails) == {"GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"}


def test_off_cores_and_mean_load():
    s = parse_line(NANO_OFF)
    assert s.cpu_load_mean == pytest.approx(7.0)  # (8 + 6) / 2, off cores left out
    assert parse_line(XAVIER_NX_JP4).cpu_load_mean == pytest.approx((47 + 23 + 32 + 22 + 31 + 96) / 6)


def test_unknown_tokens_do_not_change_the_result():
    junk = " FOO_FREQ 12%@[1,2] BAR 7 NEWENGINE off XYZ 1.5kW MTS fg 0% bg 0% DLA0_FREQ @[0]"
    for name in ("tx2", "orin_nano_busy", "agx_orin"):
        line = CASES[name]["line"]
        a, b = parse_line(line), parse_line(line + junk)
        assert (b.cpu_loads, b.gpu_load_pct, b.temperatures, b.rails, b.total_power_w) == \
            (a.cpu_loads, a.gpu_load_pct, a.temperatures, a.rails, a.total_power_w)


def test_offline_sensor_reading_is_dropped():
    # AGX Orin sensors that are off read -256C (e.g. CV0@-256C in JetPack 6 logs)
    s = parse_line(ORIN_NANO_IDLE.replace("cpu@48.562C", "CV0@-256C cpu@48.562C"))
    assert "CV0" not in s.temperatures and s.temperatures["cpu"] == 48.562


def test_old_cpu_format_with_shared_frequency():
    # the DRIVE OS / early L4T form "CPU [X%,Y%,...]@Z" documented in NVIDIA's tegrastats table
    s = parse_line("RAM 3468/3983MB (lfb 48x4MB) CPU [17%,13%,29%,5%]@408 EMC 1%@408 GR3D 3%@76")
    assert s.cpu_loads == [17, 13, 29, 5] and s.cpu_freqs_mhz == [408] * 4
    assert (s.gpu_load_pct, s.gpu_freqs_mhz, s.emc_load_pct, s.emc_freq_mhz) == (3, [76], 1, 408)
    assert s.total_power_w is None and s.power_source is None


@pytest.mark.parametrize("line", ["", "   ", "hello world", "NVPM WARN: fan mode is not set!",
                                  "RAM usage is high", "Error: tegrastats must be run as root",
                                  "GR3D_FREQ 0% VDD_IN 5000mW/5000mW"])
def test_not_tegrastats_is_a_clear_error(line):
    with pytest.raises(TegrastatsParseError, match="not a tegrastats line") as e:
        parse_line(line)
    assert isinstance(e.value, YoloEdgeError)


def test_thor_input_rail_is_not_added_to_its_sub_rails():
    s = parse_line(THOR_VIN)
    assert s.power_source == "VIN"
    assert s.total_power_w == pytest.approx(26.686)
    assert sum(r.current_mw for r in s.rails.values()) / 1000 == pytest.approx(45.777)  # what a sum would say
    # without VIN (JetPack 7.0 lines) the sub-rails are all there is: their sum, named as such
    assert parse_line(THOR).power_source == "sum of rails"


def test_third_max_value_in_rails():
    s = parse_line(THOR_R39)
    assert s.rails["VIN"] == PowerRail(124486, 36487, 124486)
    assert s.rails["VDD_GPU"] == PowerRail(37939, 8660, 37939)
    assert set(s.rails) == {"VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0", "VIN"}
    assert parse_line(THOR_VIN).rails["VIN"].max_mw is None  # two values: no max


def test_pmic_dummy_is_never_the_hottest_sensor():
    # Nano: PMIC@100C is a fixed dummy reading; the real hottest sensor is AO at 48 C
    s = parse_line(NANO_OFF)
    assert s.temperatures["PMIC"] == 100.0  # kept as printed
    assert s.hottest == ("AO", 48.0)
    summary = summarize([parse_line(NANO_OFF), parse_line(NANO_OFF.replace("AO@48C", "AO@49.5C"))])
    assert (summary.hottest_sensor, summary.hottest_c) == ("AO", 49.5)
    text = "\n".join(summary.lines())
    assert "hottest: AO 49.5C" in text and "PMIC 100.0C (dummy)" in text
    assert parse_line(TX2).hottest[1] == 42.5 and parse_line(TX2).hottest[0] != "PMIC"
    assert parse_line(THOR_R39).hottest == ("tj", 66.625)


def test_summarize_by_hand():
    s = summarize([parse_line(ORIN_NANO_IDLE), parse_line(ORIN_NANO_BUSY), parse_line(ORIN_NANO_IDLE)], duration_s=3)
    assert s.n_samples == 3
    assert s.mean_power_w == pytest.approx((5.251 + 16.321 + 5.251) / 3)
    assert s.max_power_w == pytest.approx(16.321)
    assert s.power_source == "VDD_IN"
    assert s.mean_gpu_load_pct == pytest.approx(33.0) and s.max_gpu_load_pct == 99.0
    assert s.max_temperatures["tj"] == 58.312 and s.max_temperatures["cpu"] == 57.125
    assert s.max_ram_used_mb == 6712
    assert "power: mean 8.94 W, max 16.32 W (VDD_IN)" in s.lines()
    empty = summarize([])
    assert (empty.n_samples, empty.mean_power_w, empty.max_temperatures) == (0, None, {})
    assert json.loads(json.dumps(s.to_dict()))["n_samples"] == 3


# --- TegrastatsReader with a fake tegrastats ----------------------------------------------------
FAKE_TEGRASTATS = '''
import signal, sys, time
lines = {lines!r}
if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
for line in lines:
    print(line, file=sys.stderr if line.startswith("NVPM") else sys.stdout, flush=True)
    time.sleep(0.01)
while True:  # like tegrastats: runs until stopped
    time.sleep(0.05)
'''


def fake_tegrastats(tmp_path: Path, lines: list[str]) -> Path:
    script = tmp_path / "tegrastats.py"
    script.write_text(FAKE_TEGRASTATS.format(lines=lines))
    return script


def test_reader_collects_samples_and_stops_the_process(tmp_path):
    script = fake_tegrastats(tmp_path, [ORIN_NANO_IDLE, ORIN_NANO_BUSY, "NVPM WARN: something odd", ORIN_NANO_IDLE])
    with TegrastatsReader(interval_ms=20, command=[sys.executable, str(script), "--interval", "20"]) as ts:
        proc = ts.process
        assert ts.running and proc.pid == ts.pid
        assert ts.wait_for(3, timeout=30)
    assert proc.poll() is not None  # terminated and reaped
    assert not ts.running and ts.process is None
    s = ts.summary()
    assert s.n_samples == 3 and s.bad_lines == 1 and ts.last_bad_line == "NVPM WARN: something odd"
    assert s.mean_power_w == pytest.approx((5.251 + 16.321 + 5.251) / 3)
    assert s.max_temperatures["tj"] == 58.312
    assert [x.gpu_load_pct for x in ts.samples()] == [0.0, 99.0, 0.0]


def test_reader_kills_a_process_that_ignores_sigterm(tmp_path):
    script = fake_tegrastats(tmp_path, [NANO])
    ts = TegrastatsReader(command=[sys.executable, str(script), "--ignore-term"], stop_timeout=0.5)
    with ts:
        proc = ts.process
        assert ts.wait_for(1, timeout=30)
    assert proc.poll() == -9 and ts.returncode == -9


def test_reader_stops_the_process_when_the_block_raises(tmp_path):
    script = fake_tegrastats(tmp_path, [NANO])
    with pytest.raises(RuntimeError, match="boom"):
        with TegrastatsReader(command=[sys.executable, str(script)]) as ts:
            proc = ts.process
            raise RuntimeError("boom")
    assert proc.poll() is not None


def test_reader_keeps_at_most_max_samples(tmp_path):
    script = fake_tegrastats(tmp_path, [TX2, NANO, NANO_OFF])
    with TegrastatsReader(command=[sys.executable, str(script)], max_samples=2) as ts:
        # the third line arrives last: wait until it is in (two samples kept, the first dropped)
        for _ in range(1500):
            if [x.raw for x in ts.samples()][-1:] == [NANO_OFF]:
                break
            ts.wait_for(3, timeout=0.02)
    assert [x.raw for x in ts.samples()] == [NANO, NANO_OFF]


def test_reader_without_tegrastats(tmp_path):
    with pytest.raises(YoloEdgeError, match="not found"):
        TegrastatsReader(command=[str(tmp_path / "tegrastats")]).start()
    with pytest.raises(YoloEdgeError, match="interval_ms"):
        TegrastatsReader(interval_ms=0)
    assert TegrastatsReader().command == ["tegrastats", "--interval", "1000"]


def test_available_looks_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert tegrastats_mod.available() is False and TegrastatsReader.available() is False
    exe = tmp_path / "tegrastats"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert tegrastats_mod.available() is True


# --- nvpmodel / jetson_clocks with an injected runner ------------------------------------------
class FakeRunner:
    """Answers commands from a table (a list of answers is used in order) and records the calls."""

    def __init__(self, answers: dict):
        self.answers = {tuple(k.split()): (list(v) if isinstance(v, list) else v) for k, v in answers.items()}
        self.calls: list[str] = []

    def __call__(self, cmd, timeout):
        key = tuple(cmd)
        self.calls.append(" ".join(cmd))
        if key not in self.answers:
            raise CommandNotFound(f"{cmd[0]!r} not found")
        a = self.answers[key]
        if isinstance(a, list):
            a = a.pop(0) if len(a) > 1 else a[0]
        return a if isinstance(a, CommandResult) else CommandResult(0, a)


@pytest.mark.parametrize("text, mode", [
    ("NV Power Mode: MAXN\n0\n", PowerMode(0, "MAXN")),
    ("NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n1\n", PowerMode(1, "15W")),
    ("NV Power Mode: MODE_30W_ALL\n3", PowerMode(3, "MODE_30W_ALL")),
    ("NV Power Mode: MAXN_SUPER\n2\n", PowerMode(2, "MAXN_SUPER")),
])
def test_parse_nvpmodel_query(text, mode):
    assert parse_nvpmodel_query(text) == mode


@pytest.mark.parametrize("text, match", [("", "no 'NV Power Mode:' line"), ("garbage\n", "no 'NV Power Mode:' line"),
                                         ("NV Power Mode: MAXN\n", "no mode id")])
def test_parse_nvpmodel_query_errors(text, match):
    with pytest.raises(YoloEdgeError, match=match):
        parse_nvpmodel_query(text)


NVPMODEL_CONF = """\
< PARAM TYPE=FILE NAME=CPU_ONLINE >
CORE_0 /sys/devices/system/cpu/cpu0/online
< POWER_MODEL ID=0 NAME=MAXN >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=1 NAME=5W >
CPU_ONLINE CORE_0 1
< PM_CONFIG DEFAULT=0 >
"""


def test_parse_nvpmodel_conf():
    assert parse_nvpmodel_conf(NVPMODEL_CONF) == [PowerMode(0, "MAXN"), PowerMode(1, "5W")]


def test_current_and_set_power_mode(tmp_path):
    conf = tmp_path / "nvpmodel.conf"
    conf.write_text(NVPMODEL_CONF)
    run = FakeRunner({"nvpmodel -q": ["NV Power Mode: MAXN\n0\n", "NV Power Mode: 5W\n1\n"],
                      "sudo -n nvpmodel -m 1": ""})
    assert current_power_mode(run) == PowerMode(0, "MAXN")
    assert set_power_mode(1, run, sudo=True, conf=conf) == PowerMode(1, "5W")
    assert run.calls == ["nvpmodel -q", "sudo -n nvpmodel -m 1", "nvpmodel -q"]
    with pytest.raises(YoloEdgeError, match=r"power mode 7 is not defined on this board; modes: MAXN \(mode 0\)"):
        set_power_mode(7, run, conf=conf)
    with pytest.raises(YoloEdgeError, match="id >= 0"):
        set_power_mode(-1, run, conf=None)


# /etc/nvpmodel.conf mode lines of an Orin Nano developer kit on JetPack 6.2 (L4T 36.4.3): mode 0 is
# 15W, MAXN_SUPER is 2 (NVIDIA Jetson Linux Developer Guide r36.4.3, "Supported Modes and Power
# Efficiency" for Jetson Orin Nano; the same lines are quoted from boards in public test fixtures)
ORIN_NANO_SUPER_CONF = """\
< PM_CONFIG DEFAULT=2 >
< POWER_MODEL ID=0 NAME=15W >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=1 NAME=25W >
< POWER_MODEL ID=2 NAME=MAXN_SUPER >
< POWER_MODEL ID=3 NAME=7W >
"""
AGX_ORIN_CONF = ("< POWER_MODEL ID=0 NAME=MAXN >\n< POWER_MODEL ID=1 NAME=MODE_15W >\n"
                 "< POWER_MODEL ID=2 NAME=MODE_30W >\n< POWER_MODEL ID=3 NAME=MODE_50W >\n")
WATTS_ONLY_CONF = "< POWER_MODEL ID=0 NAME=10W >\n< POWER_MODEL ID=1 NAME=20W >\n< POWER_MODEL ID=2 NAME=15W >\n"


@pytest.mark.parametrize("conf, spec, expected", [
    (ORIN_NANO_SUPER_CONF, "max", PowerMode(2, "MAXN_SUPER")),  # not 0, which is 15 W here
    (ORIN_NANO_SUPER_CONF, "MAX", PowerMode(2, "MAXN_SUPER")),
    (ORIN_NANO_SUPER_CONF, "maxn_super", PowerMode(2, "MAXN_SUPER")),
    (ORIN_NANO_SUPER_CONF, "15w", PowerMode(0, "15W")),
    (ORIN_NANO_SUPER_CONF, "3", PowerMode(3, "7W")),
    (ORIN_NANO_SUPER_CONF, 1, PowerMode(1, "25W")),
    (AGX_ORIN_CONF, "max", PowerMode(0, "MAXN")),
    (NVPMODEL_CONF, "max", PowerMode(0, "MAXN")),
    (WATTS_ONLY_CONF, "max", PowerMode(1, "20W")),
])
def test_resolve_power_mode_by_name(conf, spec, expected):
    assert resolve_power_mode(spec, parse_nvpmodel_conf(conf)) == expected


@pytest.mark.parametrize("spec, match", [("fast", "no power mode named 'fast'"), ("9", "9 is not defined"),
                                         (True, "an id, a name")])
def test_resolve_power_mode_errors(spec, match):
    with pytest.raises(YoloEdgeError, match=match):
        resolve_power_mode(spec, parse_nvpmodel_conf(ORIN_NANO_SUPER_CONF))


def test_set_power_mode_max_on_an_orin_nano_super(tmp_path):
    conf = tmp_path / "nvpmodel.conf"
    conf.write_text(ORIN_NANO_SUPER_CONF)
    run = FakeRunner({"nvpmodel -m 2": "", "nvpmodel -q": "NV Power Mode: MAXN_SUPER\n2\n"})
    assert set_power_mode("max", run, conf=conf) == PowerMode(2, "MAXN_SUPER")
    assert run.calls[0] == "nvpmodel -m 2"
    with pytest.raises(YoloEdgeError, match="is missing; give the id"):
        set_power_mode("max", run, conf=tmp_path / "absent.conf")


def test_set_power_mode_failures():
    reboot = FakeRunner({"nvpmodel -m 2": "NVPM WARN: Reboot required for changing to this power mode: 2\n"
                                          "NVPM WARN: DO YOU WANT TO REBOOT NOW? enter YES/yes to confirm:\n"})
    with pytest.raises(YoloEdgeError, match="only after a reboot"):
        set_power_mode(2, reboot, conf=None)
    denied = FakeRunner({"nvpmodel -m 0": CommandResult(255, "",
                                                        "NVPM ERROR: failed to open file: Permission denied\n")})
    with pytest.raises(YoloEdgeError, match="needs root"):
        set_power_mode(0, denied, conf=None)
    wrong = FakeRunner({"nvpmodel -m 0": "", "nvpmodel -q": "NV Power Mode: 15W\n1\n"})
    with pytest.raises(YoloEdgeError, match="reports 15W"):
        set_power_mode(0, wrong, conf=None)


# `jetson_clocks --show` on a Jetson TX1 after jetson_clocks (L4T 28.1; real output in
# github.com/hordiales/jetson-tx1-dev SCRIPTS.md, misspelt "Gonvernor" included)
CLOCKS_SHOW_MAXED = """\
SOC family:tegra210  Machine:jetson_tx1
Online CPUs: 0-3
CPU Cluster Switching: Disabled
cpu0: Gonvernor=interactive MinFreq=1734000 MaxFreq=1734000 CurrentFreq=1734000
cpu1: Gonvernor=interactive MinFreq=1734000 MaxFreq=1734000 CurrentFreq=1734000
cpu2: Gonvernor=interactive MinFreq=1734000 MaxFreq=1734000 CurrentFreq=1734000
cpu3: Gonvernor=interactive MinFreq=1734000 MaxFreq=1734000 CurrentFreq=1734000
GPU MinFreq=998400000 MaxFreq=998400000 CurrentFreq=998400000
EMC MinFreq=12750000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1
Fan: speed=255
"""
# AGX Orin CPU lines as posted in github.com/rbonghi/jetson_stats issue #381 (dynamic clocks); the
# GPU line is written in the same format for this test
CLOCKS_SHOW_DYNAMIC = """\
SOC family:tegra234  Machine:NVIDIA Orin Jetson-Small Developer Kit
Online CPUs: 0-11
cpu0: Online=1 Governor=schedutil MinFreq=115200 MaxFreq=2201600 CurrentFreq=2112000 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=115200 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1
cpu10: Online=1 Governor=schedutil MinFreq=115200 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1
cpu11: Online=0 Governor=schedutil MinFreq=115200 MaxFreq=2201600 CurrentFreq=1190400 IdleStates: WFI=1 c7=1
GPU MinFreq=306000000 MaxFreq=1300500000 CurrentFreq=306000000
"""


def test_parse_jetson_clocks_show():
    maxed = parse_jetson_clocks_show(CLOCKS_SHOW_MAXED)
    assert maxed["cpu"] == [(1734000, 1734000, 1734000)] * 4
    assert maxed["gpu"] == (998400000, 998400000, 998400000)
    assert maxed["emc"] == (12750000, 1600000000, 1600000000)
    dynamic = parse_jetson_clocks_show(CLOCKS_SHOW_DYNAMIC)
    assert len(dynamic["cpu"]) == 3  # cpu11 is offline
    assert clocks_maxed(FakeRunner({"jetson_clocks --show": CLOCKS_SHOW_MAXED})) is True
    assert clocks_maxed(FakeRunner({"jetson_clocks --show": CLOCKS_SHOW_DYNAMIC})) is False
    assert clocks_maxed(FakeRunner({"jetson_clocks --show": CommandResult(1, "", "Error: run as root")})) is None
    assert clocks_maxed(FakeRunner({})) is None  # no jetson_clocks


def test_jetson_clocks_on_and_off():
    on = FakeRunner({"jetson_clocks --show": CLOCKS_SHOW_DYNAMIC, "jetson_clocks --store": "", "jetson_clocks": ""})
    jetson_clocks(True, on)
    assert on.calls == ["jetson_clocks --show", "jetson_clocks --store", "jetson_clocks"]
    again = FakeRunner({"sudo -n jetson_clocks --show": CLOCKS_SHOW_MAXED, "sudo -n jetson_clocks": ""})
    jetson_clocks(True, again, sudo=True)  # already pinned: storing now would make "off" a no-op
    assert again.calls == ["sudo -n jetson_clocks --show", "sudo -n jetson_clocks"]
    off = FakeRunner({"jetson_clocks --restore": ""})
    jetson_clocks(False, off)
    assert off.calls == ["jetson_clocks --restore"]
    nothing_stored = FakeRunner({"jetson_clocks --restore": CommandResult(1, "", "Error: /root/l4t_dfs.conf not found"),
                                 "nvpmodel -q": "NV Power Mode: MAXN\n0\n", "nvpmodel -m 0": ""})
    jetson_clocks(False, nothing_stored)
    assert nothing_stored.calls == ["jetson_clocks --restore", "nvpmodel -q", "nvpmodel -m 0"]


def test_jetson_info_from_files(tmp_path):
    rel = tmp_path / "nv_tegra_release"
    rel.write_text(TEGRA_RELEASE_36_4_4)
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    conf = tmp_path / "nvpmodel.conf"
    conf.write_text(NVPMODEL_CONF)
    run = FakeRunner({"nvpmodel -q": "NV Power Mode: MAXN\n0\n",
                      "jetson_clocks --show": CommandResult(1, "", "Error: Run as root")})
    info = jetson_info(run, tegra_release=rel, model_path=model, conf=conf)
    assert (info.model, info.l4t, info.jetpack, info.board) == ("NVIDIA Jetson AGX Orin Developer Kit", "36.4.4",
                                                                "6.2.1", "generic")
    assert info.power_mode == PowerMode(0, "MAXN") and info.power_modes == [PowerMode(0, "MAXN"), PowerMode(1, "5W")]
    assert info.clocks_maxed is None
    assert "L4T: 36.4.4  JetPack: 6.2.1  board: generic" in info.lines()
    assert json.loads(json.dumps(info.to_dict()))["power_mode"] == {"id": 0, "name": "MAXN"}


@pytest.mark.parametrize("fps, watts, expected", [(30, 10, 3.0), (0, 5.5, 0.0), (62.5, 12.5, 5.0)])
def test_fps_per_watt(fps, watts, expected):
    assert fps_per_watt(fps, watts) == pytest.approx(expected)


@pytest.mark.parametrize("fps, watts, match", [(30, 0, "watts must be > 0"), (30, -1, "watts must be > 0"),
                                               (-1, 5, "fps must be >= 0"), (30, None, "watts must be a finite"),
                                               (float("nan"), 5, "fps must be a finite"),
                                               (30, float("inf"), "watts must be a finite")])
def test_fps_per_watt_errors(fps, watts, match):
    with pytest.raises(YoloEdgeError, match=match):
        fps_per_watt(fps, watts)


# --- off a Jetson -------------------------------------------------------------------------------
not_on_jetson = pytest.mark.skipif(is_jetson() or shutil.which("nvpmodel") is not None, reason="this is a Jetson")


@not_on_jetson
def test_queries_return_none_off_a_jetson(tmp_path):
    assert current_power_mode() is None
    assert clocks_maxed() is None
    assert jetson_info() is None
    assert jetson_info(tegra_release=tmp_path / "missing") is None


@not_on_jetson
def test_actions_raise_off_a_jetson():
    with pytest.raises(NotOnJetson, match="does not look like a Jetson"):
        set_power_mode(0, conf=None)
    with pytest.raises(NotOnJetson, match="does not look like a Jetson"):
        jetson_clocks(True)


# --- CLI ----------------------------------------------------------------------------------------
def test_cli_help():
    from yolo_edge.cli import main

    for argv in (["jetson", "--help"], ["jetson", "tegrastats", "--help"], ["jetson", "power", "--help"],
                 ["jetson", "clocks", "--help"], ["jetson", "info", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0


@not_on_jetson
@pytest.mark.parametrize("argv, match", [(["jetson", "info"], "not a Jetson"), (["jetson", "power"], "not a Jetson"),
                                         (["jetson", "power", "--mode", "0"], "not look like a Jetson"),
                                         (["jetson", "clocks", "on"], "not look like a Jetson"),
                                         (["jetson", "tegrastats", "--seconds", "1"], "not look like a Jetson")])
def test_cli_off_a_jetson(argv, match, capsys, monkeypatch, tmp_path):
    from yolo_edge.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no tegrastats / nvpmodel / jetson_clocks anywhere
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("yolo-edge jetson: error:") and match in err and len(err.strip().splitlines()) == 1


def test_cli_tegrastats_summary_and_fps_per_watt(tmp_path, capsys):
    from yolo_edge.cli import main

    script = fake_tegrastats(tmp_path, [ORIN_NANO_IDLE, ORIN_NANO_BUSY, ORIN_NANO_IDLE, ORIN_NANO_BUSY])
    out = tmp_path / "power.json"
    cmd = shlex.join([sys.executable, str(script), "--interval", "20"])
    argv = ["jetson", "tegrastats", "--seconds", "0.5", "--interval", "20", "--tegrastats-cmd", cmd,
            "--fps", "30", "--json", str(out)]
    for _ in range(3):  # a loaded CI machine may start the interpreter slowly: give it more time
        assert main(argv) == 0
        data = json.loads(out.read_text())
        if data["n_samples"] == 4:
            break
        argv[3] = str(float(argv[3]) * 4)
    printed = capsys.readouterr().out
    assert data["n_samples"] == 4
    mean = (5.251 + 16.321) / 2
    assert data["mean_power_w"] == pytest.approx(mean) and data["power_source"] == "VDD_IN"
    assert data["fps_per_watt"] == pytest.approx(30 / mean)
    assert f"FPS/W: {30 / mean:.2f}" in printed and "GPU load: mean 49.5%, max 99.0%" in printed


def test_cli_tegrastats_no_samples(tmp_path, capsys):
    from yolo_edge.cli import main

    script = tmp_path / "broken.py"
    script.write_text("print('tegrastats: cannot open /sys/kernel/debug', flush=True)\n")
    rc = main(["jetson", "tegrastats", "--seconds", "0.2", "--interval", "20",
               "--tegrastats-cmd", shlex.join([sys.executable, str(script)])])
    assert rc == 1
    err = capsys.readouterr().err
    assert "no tegrastats samples" in err and "cannot open /sys/kernel/debug" in err


# The jetson/ kit (scripts, systemd unit, setup.sh plans) is tested in tests/test_jetson_kit.py.
