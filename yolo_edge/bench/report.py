"""Benchmark report: ``bench.md`` (README-ready tables), ``bench.json`` (everything), ``bench.csv`` (one
line per row), ``latency_vs_map.png``, ``stages.png`` and ``command.txt`` (the command and the device).

``read_json(path)`` gives the :class:`~yolo_edge.bench.results.BenchResult` back; ``read_csv(path)``
the rows as dicts of numbers and strings.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from .results import LABELS, BenchResult, Row
from .timing import STAGES

FILES = ("bench.md", "bench.json", "bench.csv", "latency_vs_map.png", "stages.png", "command.txt")
MARKERS = {"fp32": "o", "fp16": "s", "int8": "^", "int8-cpu": "v"}


def _n(v, fmt: str = ".1f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return format(v, fmt)


def _pts(v) -> str:
    """A [0, 1] metric as points."""
    return "—" if v is None else f"{100 * v:.2f}"


def _table(head: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(head) - 1)
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _batches(result: BenchResult) -> tuple[str, str]:
    sizes = result.config.get("batch_sizes") or [1]
    return str(sizes[0]), str(max(sizes))


def _speedup(result: BenchResult, row: Row, baseline: str = "reference fp32") -> str:
    c = next((c for c in result.comparisons if c["row"] == row.key and c["baseline"] == baseline), None)
    if row.key == baseline:
        return "1.00× (baseline)"
    return "—" if c is None or c.get("speedup_e2e_p50") is None else f"{c['speedup_e2e_p50']:.2f}×"


def device_line(ctx: dict[str, Any]) -> str:
    parts = [f"CPU {ctx.get('cpu')} ({ctx.get('cpu_cores')} cores"
             + (f", {ctx.get('memory_gb')} GB RAM" if ctx.get("memory_gb") else "") + ")"]
    if ctx.get("gpu"):
        gpu = f"GPU {ctx['gpu']}"
        extras = [f"{k} {ctx[k]}" for k in ("compute_capability", "cuda", "cudnn", "tensorrt") if ctx.get(k)]
        parts.append(gpu + (f" ({', '.join(extras)})" if extras else ""))
    else:
        parts.append("no GPU" + (f" (TensorRT {ctx['tensorrt']} installed)" if ctx.get("tensorrt") else ""))
    if ctx.get("jetson"):
        parts.append(f"Jetson, L4T {ctx.get('l4t')}, JetPack {ctx.get('jetpack')}, power mode {ctx.get('power_mode')}")
    libs = [f"{k} {ctx[k]}" for k in ("onnxruntime", "torch", "numpy", "opencv", "ultralytics") if ctx.get(k)]
    parts.append(", ".join(libs) + f"; Python {ctx.get('python')}")
    if ctx.get("ort_providers"):
        parts.append("ORT providers " + ", ".join(p.replace("ExecutionProvider", "") for p in ctx["ort_providers"]))
    if ctx.get("omp_wait_policy"):
        parts.append(f"OMP_WAIT_POLICY={ctx['omp_wait_policy']}")
    return "; ".join(parts)


def markdown(result: BenchResult) -> str:
    b1, big = _batches(result)
    ok = [r for r in result.rows if r.status == "ok"]
    art, roof, cfg = result.artifacts, result.roofline or {}, result.config
    out = [f"# yolo-edge benchmark: {Path(str(art.get('checkpoint', 'model'))).name}", ""]
    out.append(f"{result.date}, yolo-edge {result.version}, {_n(result.seconds, '.0f')} s. Command:")
    out += ["", "```bash", result.command or "(not recorded)", "```", ""]
    out.append(f"**Device**: {device_line(result.context)}.")
    imgsz = roof.get("imgsz") or cfg.get("imgsz")
    gfl = roof.get("gflops")
    n_val = next((r.n_val for r in ok if r.n_val), None)
    out.append("")
    out.append(f"**Model**: `{Path(str(art.get('checkpoint', ''))).name}` (sha256 {str(art.get('checkpoint_sha256', ''))[:12]}…)"
               + (f", input {imgsz[0]}×{imgsz[1]}" if imgsz else "") + (f", {gfl:.2f} GFLOPs" if gfl else "")
               + (f"; accuracy on {n_val} images of `{cfg.get('val')}`" if n_val else "") + ".")
    goal = result.goal or {}
    if goal.get("ratio") is not None:
        src = (f" (interleaved head-to-head; the separate rows give {goal['rows_ratio']:.2f}×)"
               if goal.get("source") and goal.get("rows_ratio") is not None else "")
        out += ["", f"**Goal** (ONNX Runtime CPU FP32 end-to-end ≥ {goal['target']:g}× the reference PyTorch eager "
                    f"pipeline, same model, same CPU): **{goal['ratio']:.2f}×, "
                    f"{'met' if goal['met'] else 'NOT met'}**{src}."]

    out += ["", "## Summary", ""]
    head = ["backend", "precision", "file MB", f"e2e p50 ms (b{b1})", "FPS", f"img/s b{big}", "mAP50-95", "mAP50",
            "vs reference"]
    out.append(_table(head, [[LABELS.get(r.backend, r.backend), r.precision, _n(r.size_mb, ".2f"),
                              _n(r.e2e_p50(b1)), _n(r.fps), _n(r.throughput.get(big)), _pts(r.map50_95),
                              _pts(r.map50), _speedup(result, r)] for r in ok], "llrrrrrrr"))

    out += ["", f"## Latency per stage, batch {b1} (ms: p50 / p90 / p99)", ""]

    def ppp(s):
        return "—" if s is None else f"{s.p50:.2f} / {s.p90:.2f} / {s.p99:.2f}"

    rows = [[r.label, *(ppp(r.stage(s, b1)) for s in (*STAGES, "e2e"))] for r in ok]
    out.append(_table(["row", "pre (letterbox)", "infer (model)", "post (NMS, unletterbox)", "end-to-end"], rows))
    if big != b1:
        rows = [[r.label, *(ppp(r.stage(s, big)) for s in (*STAGES, "e2e"))] for r in ok]
        out += ["", f"Batch {big} (ms per batch):", "", _table(["row", "pre", "infer", "post", "end-to-end"], rows)]

    out += ["", "## Throughput, memory, power", ""]
    head = ["row", f"img/s b{b1}", f"img/s b{big}", f"model img/s b{big}", "pipelined FPS", "peak RSS MB",
            "model RSS MB", "GPU MB", "W", "FPS/W"]
    out.append(_table(head, [[r.label, _n(r.throughput.get(b1)), _n(r.throughput.get(big)),
                              _n(r.infer_throughput.get(big)), _n(r.pipelined_fps), _n(r.peak_rss_mb, ".0f"),
                              _n(r.model_rss_mb, ".0f"), _n(r.gpu_mem_mb, ".0f"), _n(r.power_w, ".1f"),
                              _n(r.fps_per_w, ".2f")] for r in ok]))

    out += ["", "## Accuracy (points)", ""]
    out.append(_table(["row", "mAP50-95", "mAP50", "AP small", "AP medium", "AP large", "ECE", "images"],
                      [[r.label, _pts(r.map50_95), _pts(r.map50), _pts(r.ap_small), _pts(r.ap_medium),
                        _pts(r.ap_large), _n(r.ece, ".3f"), _n(r.n_val, "d")] for r in ok]))

    peaks = roof.get("peaks") or {}
    if gfl:
        out += ["", "## Roofline", ""]
        cpu = peaks.get("cpu") or {}
        line = f"Model: {gfl:.2f} GFLOPs per image. Peak: CPU {_n(cpu.get('gflops'))} GFLOP/s ({cpu.get('method', '')})"
        cuda = peaks.get("cuda") or {}
        if cuda:
            line += f"; GPU FP32 {_n(cuda.get('fp32'))}, FP16 {_n(cuda.get('fp16'))} GFLOP/s ({cuda.get('method', '')})"
        out += [line + ".", ""]
        out.append(_table(["row", f"model img/s b{big}", "achieved GFLOP/s", "peak GFLOP/s", "% of peak"],
                          [[r.label, _n(r.infer_throughput.get(big)), _n(r.achieved_gflops_s),
                            f"{_n(r.peak_gflops_s)} ({r.peak_kind})" if r.peak_kind else "—",
                            _n(r.pct_peak, ".1f")] for r in ok]))

    if result.comparisons:
        out += ["", "## Against what users would otherwise run", ""]
        key = f"speedup_throughput_b{big}"
        out.append(_table(["row", "baseline", "e2e p50 ms", "baseline e2e p50 ms", "speed-up (latency)",
                           f"speed-up (img/s b{big})"],
                          [[c["row"], c["baseline"], _n(c["e2e_p50_ms"]), _n(c["baseline_e2e_p50_ms"]),
                            _n(c["speedup_e2e_p50"], ".2f") + "×", _n(c.get(key), ".2f") + "×"]
                           for c in result.comparisons], "llrrrr"))
    hh = result.head_to_head or {}
    if hh.get("times"):
        out += ["", "## Head-to-head, interleaved", "",
                f"The same single images through each pipeline in one process, {hh['rounds']} rounds × {hh['images']} "
                "images, the order rotated every round, so a machine whose speed drifts slows all of them alike "
                "(ratios between the separate rows above inherit that drift).", ""]
        has_ul = "vs_ultralytics" in hh
        head = ["pipeline", "e2e p50 ms", "mean ms", "p90 ms", "vs reference"] + (["vs Ultralytics"] if has_ul else [])
        out.append(_table(head, [[name, _n(t["p50_ms"]), _n(t["mean_ms"]), _n(t["p90_ms"]),
                                  _n(hh["vs_reference"].get(name), ".2f") + "×"]
                                 + ([_n(hh["vs_ultralytics"].get(name), ".2f") + "×"] if has_ul else [])
                                 for name, t in hh["times"].items()], "lrrrr" + ("r" if has_ul else "")))
    failed = [r for r in result.rows if r.status != "ok"]
    if result.skipped or failed:
        out += ["", "## Not measured here", ""]
        groups: dict[tuple[str, str], list[str]] = {}
        for sk in result.skipped:
            groups.setdefault((sk["backend"], sk["reason"]), []).append(sk["precision"])
        out += [f"- {b} {', '.join(precs)}: skipped, {why}" for (b, why), precs in groups.items()]
        out += [f"- {r.key}: failed, {r.note}" for r in failed]
    row_notes = [f"- {r.key}: {r.note}" for r in ok if r.note]
    out += ["", "## How these numbers are made", ""] + [f"- {n}" for n in result.notes] + row_notes
    out += ["", "![latency vs mAP](latency_vs_map.png)", "", "![stage breakdown](stages.png)", ""]
    return "\n".join(out)


# --- CSV ------------------------------------------------------------------------------------------
SCALAR_FIELDS = ("backend", "precision", "device", "status", "note", "model", "size_mb", "fps", "pipelined_fps",
                 "peak_rss_mb", "model_rss_mb", "gpu_mem_mb", "map50_95", "map50", "ap_small", "ap_medium",
                 "ap_large", "ece", "n_val", "gflops", "achieved_gflops_s", "peak_gflops_s", "pct_peak",
                 "peak_kind", "power_w", "fps_per_w", "seconds")
STAT_FIELDS = ("mean", "p50", "p90", "p99")


def csv_columns(result: BenchResult) -> list[str]:
    sizes = [str(b) for b in (result.config.get("batch_sizes") or [1])]
    cols = list(SCALAR_FIELDS)
    for b in sizes:
        cols += [f"throughput_b{b}", f"infer_throughput_b{b}"]
        cols += [f"b{b}_{s}_{f}" for s in (*STAGES, "e2e") for f in STAT_FIELDS]
    return cols


def csv_record(row: Row, columns: list[str]) -> dict[str, Any]:
    rec: dict[str, Any] = {}
    for c in columns:
        if c in SCALAR_FIELDS:
            rec[c] = getattr(row, c)
        elif c.startswith("throughput_b"):
            rec[c] = row.throughput.get(c[len("throughput_b"):])
        elif c.startswith("infer_throughput_b"):
            rec[c] = row.infer_throughput.get(c[len("infer_throughput_b"):])
        else:
            b, stage, f = c[1:].split("_")
            s = row.stage(stage, b)
            rec[c] = getattr(s, f) if s else None
    return rec


def to_csv(result: BenchResult) -> str:
    cols = csv_columns(result)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in result.rows:
        w.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v)
                    for k, v in csv_record(r, cols).items()})
    return buf.getvalue()


def read_csv(path) -> list[dict[str, Any]]:
    """Rows of ``bench.csv`` with numbers as numbers and empty cells as None."""
    out = []
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            d: dict[str, Any] = {}
            for k, v in rec.items():
                if v == "":
                    d[k] = None
                    continue
                try:
                    d[k] = int(v) if v.lstrip("-").isdigit() else float(v)
                except ValueError:
                    d[k] = v
            out.append(d)
    return out


def read_json(path) -> BenchResult:
    return BenchResult.from_dict(json.loads(Path(path).read_text()))


# --- plots ----------------------------------------------------------------------------------------
def _colors(rows: list[Row]) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    backends = list(dict.fromkeys(r.backend for r in rows))
    return {b: cmap(i % 10) for i, b in enumerate(backends)}


def plot_latency_vs_map(result: BenchResult, path) -> Path | None:
    """Scatter: end-to-end p50 latency (batch 1) vs mAP50-95; colour = backend, marker = precision."""
    from ..deps import require
    from ..util import atomic_path

    require("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b1, _ = _batches(result)
    rows = [r for r in result.rows if r.status == "ok" and r.e2e_p50(b1) is not None]
    colors = _colors(rows)
    fig, ax = plt.subplots(figsize=(10, 5))
    plotted = 0
    for r in rows:
        y = 100 * r.map50_95 if r.map50_95 is not None else None
        if y is None:
            continue
        ax.scatter(r.e2e_p50(b1), y, c=[colors[r.backend]], marker=MARKERS.get(r.precision, "o"), s=70,
                   edgecolors="black", linewidths=0.5, label=r.label)
        plotted += 1
    ax.set_xlabel(f"end-to-end latency p50, batch {b1} (ms)")
    ax.set_ylabel("mAP50-95 (points)")
    ax.set_title("Latency vs accuracy per backend and precision")
    ax.grid(alpha=0.3)
    if plotted:  # legend outside the axes: points of similar latency and mAP stay visible
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
        xs = [r.e2e_p50(b1) for r in rows if r.map50_95 is not None]
        if max(xs) / max(min(xs), 1e-9) > 20:
            ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no accuracy measured", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return Path(path)


def plot_stages(result: BenchResult, path) -> Path | None:
    """Stacked horizontal bars: mean pre / infer / post ms at batch 1 per row (they add up to the mean e2e)."""
    from ..deps import require
    from ..util import atomic_path

    require("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b1, _ = _batches(result)
    rows = [r for r in result.rows if r.status == "ok" and r.stage("e2e", b1) is not None]
    fig, ax = plt.subplots(figsize=(8, 0.5 * max(3, len(rows)) + 1.8))
    colors = {"pre": "#4c9be8", "infer": "#f28e2b", "post": "#59a14f"}
    names = {"pre": "pre (letterbox)", "infer": "infer (model)", "post": "post (NMS, unletterbox)"}
    for i, r in enumerate(rows):
        left = 0.0
        for s in STAGES:
            st = r.stage(s, b1)
            v = st.mean if st else 0.0
            ax.barh(i, v, left=left, color=colors[s], label=names[s] if i == 0 else None)
            left += v
        e2e = r.stage("e2e", b1).mean
        ax.text(left, i, f" {e2e:.1f} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r.backend} {r.precision}" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"mean ms per image, batch {b1}")
    ax.set_title("Where the time goes")
    if rows:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / max(3, len(rows))), ncol=3,
                  frameon=False)
        ax.set_xlim(0, max(r.stage("e2e", b1).mean for r in rows) * 1.18)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return Path(path)


def command_text(result: BenchResult) -> str:
    lines = [result.command or "(command not recorded)", "", f"# {result.date}, yolo-edge {result.version}",
             f"# device: {device_line(result.context)}"]
    return "\n".join(lines) + "\n"


def write_report(result: BenchResult, out_dir) -> dict[str, Path]:
    """Write every file of :data:`FILES` into ``out_dir``; returns ``{kind: path}``."""
    from ..util import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    with atomic_write(out / "bench.json", "w") as f:
        json.dump(result.to_dict(), f, indent=1, default=str)
    files["json"] = out / "bench.json"
    with atomic_write(out / "bench.csv", "w") as f:
        f.write(to_csv(result))
    files["csv"] = out / "bench.csv"
    with atomic_write(out / "bench.md", "w") as f:
        f.write(markdown(result))
    files["md"] = out / "bench.md"
    with atomic_write(out / "command.txt", "w") as f:
        f.write(command_text(result))
    files["command"] = out / "command.txt"
    try:
        files["latency_vs_map"] = plot_latency_vs_map(result, out / "latency_vs_map.png")
        files["stages"] = plot_stages(result, out / "stages.png")
    except ImportError as e:  # matplotlib missing: the tables are still written
        result.notes.append(f"plots not written: {e}")
    return files


__all__ = ["FILES", "command_text", "csv_columns", "device_line", "markdown", "plot_latency_vs_map", "plot_stages",
           "read_csv", "read_json", "to_csv", "write_report"]
