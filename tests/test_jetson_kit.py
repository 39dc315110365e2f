"""The jetson/ kit on a fresh board, off the board: the systemd unit parsed and checked, setup.sh's
plan for JetPack 5, 6.2 and 7 driven by fake /etc/nv_tegra_release files, power.sh, build_engine.sh,
and the release table they share (yolo_edge/jetson/releases.py).

Release lines are real ones (sources next to each); pip, apt-get, sudo and nvpmodel are replaced by
fake executables that only leave a mark, so nothing is installed and nothing is contacted (the
index check runs against a local file:// index)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from yolo_edge.jetson import releases
from yolo_edge.trt.manifest import parse_tegra_release

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "jetson"
UNIT = KIT / "yolo-edge-camera.service"
ENV_EXAMPLE = KIT / "yolo-edge.env.example"

# /etc/nv_tegra_release first lines. JetPack 7.0: raw board report in rbonghi/jetson_stats issue
# #711 (AGX Thor, L4T 38.2.0). JetPack 6.2.1: github.com/lesomnus/tegra-exporter stats/parse_test.go.
# JetPack 6.2 and 5.1.5: the same format with R36 REVISION 4.3 and R35 REVISION 6.1.
RELEASE = {
    "jp7": "# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic, EABI: aarch64, "
           "DATE: Fri Aug 22 00:55:42 UTC 2025\n",
    "jp621": "# R36 (release), REVISION: 4.4, GCID: 41062509, BOARD: generic, EABI: aarch64, "
             "DATE: Mon Jun 16 16:07:13 UTC 2025\n",
    "jp62": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
            "DATE: Wed Jan  8 01:49:37 UTC 2025\n",
    "jp5": "# R35 (release), REVISION: 6.1, GCID: 39043245, BOARD: t186ref, EABI: aarch64, "
           "DATE: Thu Jan 30 18:59:36 UTC 2025\n",
    "jp4": "# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref, EABI: aarch64, "
           "DATE: Fri Jun  9 04:25:08 UTC 2023\n",
}


# --- the release table ---------------------------------------------------------------------------
@pytest.mark.parametrize("key, l4t, jetpack", [("jp7", "38.2.0", "7.0"), ("jp621", "36.4.4", "6.2.1"),
                                               ("jp62", "36.4.3", "6.2"), ("jp5", "35.6.1", "5.1.5")])
def test_release_table(key, l4t, jetpack):
    rel = parse_tegra_release(RELEASE[key])  # the engine manifest reads the same table
    assert (rel["l4t"], rel["jetpack"]) == (l4t, jetpack)


@pytest.mark.parametrize("l4t, jetpack", [("36.4.7", "6.2.1"), ("35.6.1", "5.1.5"), ("38.4.0", "7.1")])
def test_release_table_has_the_newer_releases(l4t, jetpack):
    # jetson-containers jetson_containers/l4t_version.py get_jetpack_version() (commit dd206bfe)
    major, minor, patch = l4t.split(".")
    text = f"# R{major} (release), REVISION: {minor}.{patch}, GCID: 1, BOARD: generic, EABI: aarch64, DATE: x\n"
    assert parse_tegra_release(text)["jetpack"] == jetpack


@pytest.mark.parametrize("l4t, family, python, cuda, index", [
    ("35.6.1", "5", "3.8", "11.4", None),
    ("36.3.0", "6", "3.10", "12.2", "https://pypi.jetson-ai-lab.io/jp6/cu122"),
    ("36.4.3", "6", "3.10", "12.6", "https://pypi.jetson-ai-lab.io/jp6/cu126"),
    ("36.4.7", "6", "3.10", "12.6", "https://pypi.jetson-ai-lab.io/jp6/cu126"),
    ("38.2.0", "7", "3.12", "13.0", "https://pypi.jetson-ai-lab.io/sbsa/cu130"),
    ("38.4.0", "7", "3.12", "13.0", "https://pypi.jetson-ai-lab.io/sbsa/cu130"),
])
def test_platform_per_release(l4t, family, python, cuda, index):
    p = releases.platform_for(l4t)
    assert (p.family, p.python, p.cuda, p.pip_index, p.supported) == (family, python, cuda, index, True)


def test_jetpack4_and_unknown_releases_are_refused():
    assert releases.platform_for("32.7.4").supported is False
    assert "Python 3.6" in releases.platform_for("32.7.4").note
    assert releases.platform_for("31.1.0").supported is False


def test_the_dead_index_host_is_gone():
    """pypi.jetson-ai-lab.dev moved to pypi.jetson-ai-lab.io in 2025 (jetson-containers #1243, #1317)."""
    assert releases.INDEX_HOST == "https://pypi.jetson-ai-lab.io"
    for path in [*KIT.glob("*.sh"), KIT / "README.md", ROOT / "yolo_edge" / "jetson" / "releases.py"]:
        for line in path.read_text().splitlines():
            if "jetson-ai-lab.dev" in line:  # only ever named as the old host
                assert re.search(r"from pypi\.jetson-ai-lab\.dev|old host|moved|gone", line), (path.name, line)


def test_check_index(tmp_path):
    idx = tmp_path / "index"
    (idx / "onnxruntime-gpu").mkdir(parents=True)
    (idx / "onnxruntime-gpu" / "onnxruntime_gpu-1.23.0-cp310-cp310-linux_aarch64.whl").write_bytes(b"")
    assert releases.check_index(idx.as_uri()) == (True, "")
    ok, why = releases.check_index((tmp_path / "nowhere").as_uri())
    assert not ok and "no onnxruntime-gpu wheels" in why

    import urllib.error

    def gone(url, timeout):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    def missing(url, timeout):
        raise urllib.error.HTTPError(url, 404, "Not Found", None, None)

    ok, why = releases.check_index("https://pypi.jetson-ai-lab.dev/jp6/cu126", opener=gone)
    assert not ok and "not reachable" in why and "onnxruntime-gpu/" in why
    ok, why = releases.check_index("https://pypi.jetson-ai-lab.io/jp6/cu122", opener=missing)
    assert not ok and "HTTP 404" in why


def test_releases_script_runs_without_the_package():
    """setup.sh runs the file as a script before anything is installed: no yolo_edge import."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JETSON_PIP_INDEX")}
    r = subprocess.run([sys.executable, "-S", "-I", str(ROOT / "yolo_edge" / "jetson" / "releases.py"),
                        "platform", "38.2.0"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pip_index: https://pypi.jetson-ai-lab.io/sbsa/cu130" in r.stdout


# --- the systemd unit ----------------------------------------------------------------------------
def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    cur = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            cur = sections.setdefault(m.group(1), {})
            continue
        key, _, value = line.partition("=")
        assert cur is not None, f"{line!r} outside a section"
        cur.setdefault(key.strip(), []).append(value.strip())
    return sections


def _env_example() -> dict[str, str]:
    return dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
                if line and not line.startswith("#"))


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|ms)?", value)
    assert m, value
    return float(m.group(1)) * {"s": 1, "sec": 1, None: 1, "min": 60, "ms": 1e-3}[m.group(2)]


def test_unit_survives_cameras_that_boot_late():
    u, s = _unit(UNIT)["Unit"], _unit(UNIT)["Service"]
    # no start limit: a unit that hit StartLimitBurst stays failed until someone logs in
    assert u["StartLimitIntervalSec"] == ["0"] and "StartLimitBurst" not in u
    assert "StartLimitIntervalSec" not in s and "StartLimitBurst" not in s  # they belong in [Unit]
    assert s["Restart"] in (["always"], ["on-failure"])
    assert _seconds(s["RestartSec"][0]) >= 1
    # back-off where systemd >= 254 knows it: from RestartSec up to RestartMaxDelaySec in RestartSteps
    assert int(s["RestartSteps"][0]) >= 1 and _seconds(s["RestartMaxDelaySec"][0]) > _seconds(s["RestartSec"][0])


def test_unit_groups_for_headless_cuda_and_cameras():
    s = _unit(UNIT)["Service"]
    groups = " ".join(s["SupplementaryGroups"]).split()
    assert {"video", "render"} <= set(groups)  # render: CUDA error 801 without a console login otherwise


def test_unit_runs_the_venv_as_a_system_user_with_nothing_from_a_home():
    s = _unit(UNIT)["Service"]
    assert s["User"] == ["yolo-edge"]
    exec_start = s["ExecStart"][0].split()
    # the venv setup.sh creates (its plan names it; tested below) and the console script pip puts there
    assert exec_start[0] == f"{DEFAULT_PREFIX}/bin/yolo-edge" and exec_start[1] == "run"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^yolo-edge = "yolo_edge\.cli:main"$', pyproject, re.MULTILINE)
    assert s["ProtectHome"] in (["yes"], ["read-only"], ["tmpfs"])
    env = " ".join(s.get("Environment", []))
    assert "PYTHONNOUSERSITE=1" in env
    for text in (UNIT.read_text(), ENV_EXAMPLE.read_text()):
        body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert "/home" not in body and "~" not in body and ".local" not in body
    assert "PATH" not in _env_example()  # ExecStart is absolute: no PATH games


def test_unit_command_parses_and_uses_only_known_variables():
    from yolo_edge.cli import build_parser

    s = _unit(UNIT)["Service"]
    env = _env_example()
    exec_start = s["ExecStart"][0]
    assert set(re.findall(r"\$\{?(\w+)\}?", exec_start)) <= set(env)
    argv = re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], exec_start).split()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    if "run" not in sub.choices:
        pytest.skip("the run command is not in this tree")
    args = parser.parse_args(argv[1:])
    assert (args.source, args.model, args.jsonl, args.no_window) == ("csi://0", "/opt/yolo-edge/model.engine",
                                                                     "/var/lib/yolo-edge/detections.jsonl", True)


def test_unit_layout_and_install():
    unit = _unit(UNIT)
    assert set(unit) == {"Unit", "Service", "Install"}
    u, s = unit["Unit"], unit["Service"]
    assert "network-online.target" in u["After"][0] and "network-online.target" in u["Wants"][0]
    assert s["EnvironmentFile"] == ["/etc/default/yolo-edge"] and s["StateDirectory"] == ["yolo-edge"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert s["KillSignal"] == ["SIGINT"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_verifies_with_systemd(tmp_path):
    """`systemd-analyze verify` on the unit, its ExecStart pointed at an executable that exists here.
    systemd < 254 does not know RestartSteps/RestartMaxDelaySec: those two warnings, nothing else."""
    exe = tmp_path / "yolo-edge"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    unit = tmp_path / "yolo-edge-camera.service"
    unit.write_text(UNIT.read_text().replace(f"ExecStart={DEFAULT_PREFIX}/bin/yolo-edge", f"ExecStart={exe}"))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    version = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True).stdout
    v = int(re.search(r"systemd (\d+)", version).group(1))
    problems = [line for line in r.stderr.splitlines() if line.strip()]
    if v < 254:
        problems = [p for p in problems if not re.search(r"Unknown key '(RestartSteps|RestartMaxDelaySec)'", p)]
    assert not problems, r.stderr


# --- setup.sh ------------------------------------------------------------------------------------
DEFAULT_PREFIX = "/opt/yolo-edge"


@pytest.fixture
def fake_bin(tmp_path):
    """A PATH directory whose pip / apt-get / sudo / nvpmodel only leave a mark: nothing is installed."""
    d = tmp_path / "bin"
    d.mkdir()
    marker = tmp_path / "installed"
    for name in ("pip", "pip3", "apt-get", "apt", "sudo", "nvpmodel", "jetson_clocks"):
        exe = d / name
        exe.write_text(f"#!/bin/sh\necho \"{name} $*\" >> '{marker}'\n")
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return d, marker


def _run_kit(script: str, *args, env=None, path_dir=None, timeout=300):
    e = {k: v for k, v in os.environ.items()
         if k not in ("NV_TEGRA_RELEASE", "JETSON_PIP_INDEX", "PYTHON", "JETSON_ROOT", "YOLO_EDGE_PREFIX", "YOLO_EDGE")}
    if path_dir is not None:
        e["PATH"] = f"{path_dir}{os.pathsep}{e.get('PATH', '')}"
    e.update(env or {})
    return subprocess.run(["bash", str(KIT / script), *args], capture_output=True, text=True, env=e, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _fake_root(tmp_path: Path, key: str, cuda: str | None = None) -> Path:
    root = tmp_path / f"root-{key}"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "nv_tegra_release").write_text(RELEASE[key])
    if cuda:
        (root / "usr" / "local" / "cuda").mkdir(parents=True)
        (root / "usr" / "local" / "cuda" / "version.json").write_text(
            '{"cuda" : {"name" : "CUDA SDK", "version" : "%s"}}' % cuda)
    return root


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """An interpreter without numpy, torch, cv2 (a fresh board before setup)."""
    d = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(d)], check=True, timeout=120)
    py = d / "bin" / "python"
    assert subprocess.run([str(py), "-c", "import numpy"], capture_output=True).returncode != 0
    return py


def _local_index(tmp_path: Path) -> str:
    idx = tmp_path / "index"
    (idx / "onnxruntime-gpu").mkdir(parents=True, exist_ok=True)
    (idx / "onnxruntime-gpu" / "onnxruntime_gpu-1.23.0-cp310-cp310-linux_aarch64.whl").write_bytes(b"")
    return idx.as_uri()


def _plan(r) -> list[str]:
    return [line[2:] for line in r.stdout.splitlines() if line.startswith("+ ")]


PLANS = {  # key: (L4T, JetPack, CUDA in the fake root, cuda-python pin, index path or None)
    "jp5": ("35.6.1", "5.1.5", "11.4.315", "cuda-python>=11,<12", None),
    "jp62": ("36.4.3", "6.2", "12.6.68", "cuda-python>=12,<13", "jp6/cu126"),
    "jp7": ("38.2.0", "7.0", None, "cuda-python>=13,<14", "sbsa/cu130"),  # no toolkit: the table's CUDA 13.0
}


@pytest.mark.parametrize("key", sorted(PLANS))
def test_setup_dry_run_plan_per_jetpack(key, tmp_path, fake_bin, bare_python):
    l4t, jetpack, cuda, cuda_pin, index_path = PLANS[key]
    d, marker = fake_bin
    root = _fake_root(tmp_path, key, cuda)
    prefix = tmp_path / "opt" / "yolo-edge"
    r = _run_kit("setup.sh", "--dry-run", "--root", str(root), "--prefix", str(prefix), "--no-index-check",
                 "--python", str(bare_python), path_dir=d)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"L4T {l4t} (JetPack {jetpack}, Ubuntu " in out and "dry run" in out
    plan = _plan(r)
    vpy = f"{prefix}/bin/python"
    # one venv, created from the system interpreter with --system-site-packages (tensorrt, cv2 from apt)
    assert plan[0] == f"{bare_python} -m venv --system-site-packages {prefix}"
    assert f"== venv: {prefix}" in out
    pip_lines = [line for line in plan if " -m pip install " in line]
    assert pip_lines and all(line.startswith(f"{vpy} -m pip install") for line in pip_lines), pip_lines
    installs = [line for line in pip_lines if "--upgrade pip" not in line]
    assert all(f"--constraint {prefix}/constraints.txt" in line for line in installs)
    assert installs[-1] == f"{vpy} -m pip install --constraint {prefix}/constraints.txt --no-deps {ROOT}"
    assert not any(" -e " in line for line in pip_lines)  # not editable: nothing points into a clone in ~
    assert any(cuda_pin.replace("<", "\\<").replace(">", "\\>").replace(",", "\\,") in line for line in installs)
    ort = [line for line in installs if "onnxruntime-gpu" in line]
    if index_path:
        assert ort == [f"{vpy} -m pip install --constraint {prefix}/constraints.txt --no-deps --index-url "
                       f"https://pypi.jetson-ai-lab.io/{index_path} onnxruntime-gpu"]
    else:  # JetPack 5: no index; the Jetson Zoo wheel, said plainly
        assert ort == [] and "pip index: none for this release" in out and "Jetson_Zoo" in r.stderr
    assert not any(re.search(r"\btorch\b", line.split("constraints.txt", 1)[-1]) for line in installs)
    # numpy not importable yet: still pinned below 2 (apt's OpenCV is built against numpy 1.x)
    assert f"pip constraints ({prefix}/constraints.txt): numpy<2" in out
    assert any(line.endswith(f"{prefix}/jetson/") for line in plan)  # the kit next to the venv
    assert f"command: {prefix}/bin/yolo-edge" in out
    assert not marker.exists()


def test_setup_default_prefix_is_what_the_unit_runs(tmp_path, fake_bin, bare_python):
    d, marker = fake_bin
    r = _run_kit("setup.sh", "--dry-run", "--root", str(_fake_root(tmp_path, "jp62")), "--no-index-check",
                 "--python", str(bare_python), path_dir=d)
    assert r.returncode == 0, r.stderr
    assert f"== venv: {DEFAULT_PREFIX} " in r.stdout
    assert f"{bare_python} -m venv --system-site-packages {DEFAULT_PREFIX}" in _plan(r)
    exec_start = _unit(UNIT)["Service"]["ExecStart"][0].split()[0]
    assert exec_start == f"{DEFAULT_PREFIX}/bin/yolo-edge"
    assert "pip index: https://pypi.jetson-ai-lab.io/jp6/cu126 (from table; not checked" in r.stdout
    assert not marker.exists()


def test_setup_jetpack7_notes_pep668(tmp_path, fake_bin, bare_python):
    d, _ = fake_bin
    r = _run_kit("setup.sh", "--dry-run", "--root", str(_fake_root(tmp_path, "jp7")), "--no-index-check",
                 "--prefix", str(tmp_path / "p"), "--python", str(bare_python), path_dir=d)
    assert r.returncode == 0 and "PEP 668" in r.stdout and "Ubuntu 24.04" in r.stdout


def test_setup_checks_the_index_first(tmp_path, fake_bin, bare_python):
    d, marker = fake_bin
    root = _fake_root(tmp_path, "jp62", "12.6.68")
    prefix = tmp_path / "opt" / "yolo-edge"
    good = _local_index(tmp_path)
    r = _run_kit("setup.sh", "--dry-run", "--root", str(root), "--prefix", str(prefix), "--index", good,
                 "--python", str(bare_python), path_dir=d)
    assert r.returncode == 0, r.stderr
    assert f"pip index: {good} (from JETSON_PIP_INDEX): answers and lists onnxruntime-gpu" in r.stdout
    assert any(f"--index-url {good} onnxruntime-gpu" in line for line in _plan(r))
    # a dead index: a real run stops before it installs anything, with the way out in one message
    dead = (tmp_path / "gone").as_uri()
    r = _run_kit("setup.sh", "--root", str(root), "--prefix", str(prefix), "--python", str(bare_python),
                 env={"JETSON_PIP_INDEX": dead}, path_dir=d)
    assert r.returncode == 1
    assert "cannot serve onnxruntime-gpu" in r.stderr and "moved in 2025" in r.stderr
    assert "--index URL" in r.stderr and "--no-ort" in r.stderr and "Nothing was installed" in r.stderr
    assert not prefix.exists() and not marker.exists() and "+ " not in r.stdout
    # the same in a dry run: said, and the plan goes on
    r = _run_kit("setup.sh", "--dry-run", "--root", str(root), "--prefix", str(prefix), "--index", dead,
                 "--python", str(bare_python), path_dir=d)
    assert r.returncode == 0 and "a real run stops here" in r.stderr


def test_setup_refuses_jetpack4_and_home_prefixes(tmp_path, fake_bin, bare_python):
    d, marker = fake_bin
    r = _run_kit("setup.sh", "--dry-run", "--root", str(_fake_root(tmp_path, "jp4")), "--python", str(bare_python),
                 path_dir=d)
    assert r.returncode == 1 and "JetPack 4 ships Python 3.6" in r.stderr and "Nothing was installed" in r.stderr
    r = _run_kit("setup.sh", "--dry-run", "--prefix", "/home/me/venv", path_dir=d)
    assert r.returncode == 2 and "home directory" in r.stderr
    assert not marker.exists()


def test_setup_off_a_jetson(tmp_path, fake_bin):
    d, marker = fake_bin
    r = _run_kit("setup.sh", "--dry-run", "--root", str(tmp_path), path_dir=d)
    assert r.returncode == 3, r.stderr
    assert "not a Jetson" in r.stderr and "Nothing was installed" in r.stderr
    assert not marker.exists()


def test_setup_usage_errors():
    r = _run_kit("setup.sh", "--bogus")
    assert r.returncode == 2 and "unknown option" in r.stderr
    r = _run_kit("setup.sh", "--prefix")
    assert r.returncode == 2 and "needs a value" in r.stderr
    r = _run_kit("setup.sh", "--help")
    assert r.returncode == 0 and "--dry-run" in r.stdout and "Exit codes" in r.stdout and "--root" in r.stdout


# --- scripts -------------------------------------------------------------------------------------
SCRIPTS = sorted(KIT.glob("*.sh"))


def test_kit_has_the_scripts():
    assert {p.name for p in SCRIPTS} >= {"setup.sh", "build_engine.sh", "power.sh"}
    for p in SCRIPTS:
        assert os.access(p, os.X_OK), f"{p.name} is not executable"
        text = p.read_text()
        assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse(script):
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if shutil.which("shellcheck"):
        r = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


@pytest.fixture
def fake_yolo_edge(tmp_path):
    log = tmp_path / "yolo-edge.log"
    exe = tmp_path / "yolo-edge"
    exe.write_text(f"#!/bin/sh\necho \"$*\" >> '{log}'\n")
    exe.chmod(0o755)
    return exe, log


def test_build_engine_script(tmp_path, fake_yolo_edge):
    exe, log = fake_yolo_edge
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    (tmp_path / "model.fp16.onnx").write_bytes(b"onnx")
    r = _run_kit("build_engine.sh", str(model), "--fp16", "--", "--max-batch", "1", env={"YOLO_EDGE": str(exe)})
    assert r.returncode == 0, r.stderr
    fp16 = tmp_path / "model.fp16.onnx"
    assert log.read_text().splitlines() == [f"build {fp16} --max-batch 1",
                                            f"build {fp16} --max-batch 1 --print-trtexec"]
    log.unlink()
    r = _run_kit("build_engine.sh", str(model), "--out", str(tmp_path / "m.engine"), "--print-only",
                 env={"YOLO_EDGE": str(exe)})
    assert r.returncode == 0 and log.read_text().splitlines() == [f"build {model} --out {tmp_path / 'm.engine'} "
                                                                  "--print-trtexec"]
    r = _run_kit("build_engine.sh", str(model), "--int8", env={"YOLO_EDGE": str(exe)})
    assert r.returncode == 2 and "model.int8.onnx not found" in r.stderr and "yolo-edge calibrate" in r.stderr
    r = _run_kit("build_engine.sh", "--fp16", env={"YOLO_EDGE": str(exe)})
    assert r.returncode == 2


root_only = pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0,
                               reason="power.sh asks sudo for a password when not root")


@root_only
def test_power_script_modes_by_name(fake_yolo_edge):
    exe, log = fake_yolo_edge
    r = _run_kit("power.sh", "max", env={"YOLO_EDGE": str(exe)})
    assert r.returncode == 0, r.stderr
    assert log.read_text().splitlines() == ["jetson power --mode max", "jetson clocks on", "jetson power"]
    log.unlink()
    r = _run_kit("power.sh", "MAXN_SUPER", "--no-clocks", env={"YOLO_EDGE": str(exe)})
    assert r.returncode == 0 and log.read_text().splitlines() == ["jetson power --mode MAXN_SUPER", "jetson power"]
    log.unlink()
    r = _run_kit("power.sh", "--clocks-off", env={"YOLO_EDGE": str(exe)})
    assert r.returncode == 0 and log.read_text().splitlines() == ["jetson clocks off", "jetson power"]
    r = _run_kit("power.sh", "max;reboot", env={"YOLO_EDGE": str(exe)})
    assert r.returncode == 2 and "not a mode name" in r.stderr
    r = _run_kit("power.sh", "--fast", env={"YOLO_EDGE": str(exe)})
    assert r.returncode == 2 and "unknown argument" in r.stderr


@root_only
def test_power_script_under_sudo_finds_the_venv(tmp_path, fake_yolo_edge):
    """sudo resets PATH (secure_path) and drops the user's site-packages: power.sh takes yolo-edge
    from the venv setup.sh made instead of PATH."""
    exe, log = fake_yolo_edge
    prefix = tmp_path / "opt" / "yolo-edge"
    (prefix / "bin").mkdir(parents=True)
    shutil.copy(exe, prefix / "bin" / "yolo-edge")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "YOLO_EDGE_PREFIX": str(prefix)}
    r = _run_kit("power.sh", "max", "--no-clocks", env=env)
    assert r.returncode == 0, r.stderr
    assert log.read_text().splitlines() == ["jetson power --mode max", "jetson power"]
    r = _run_kit("power.sh", "max", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                         "YOLO_EDGE_PREFIX": str(tmp_path / "none")})
    assert r.returncode == 1 and "run jetson/setup.sh" in r.stderr


@pytest.mark.parametrize("path", [KIT / "README.md", UNIT], ids=lambda p: p.name)
def test_useradd_has_the_render_group(path):
    text = path.read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if "useradd --" in line]
    assert lines and all(re.search(r"--groups\s+video,render\b", line) for line in lines), lines
