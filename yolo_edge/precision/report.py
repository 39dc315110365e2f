"""The per-layer calibration report: ``report.json``, ``report.html`` (self-contained), ``ranges.png``,
``histograms.png`` and ``sqnr.png``.

For every quantized tensor: min/max, the chosen ``amax`` (and what each method would choose),
percentiles of ``|x|``, the histogram, the saturation (share of values beyond ``amax``, which
INT8 clips) and the SQNR of the INT8 graph against FP32 at that tensor::

    SQNR = 10 log10( sum x^2 / sum (x - x_q)^2 )

where ``x`` is the tensor in the FP32 graph and ``x_q`` the output of its ``DequantizeLinear`` in
the INT8 graph, on the same images. It therefore includes the error accumulated upstream; the
``local`` SQNR (the tensor's own quantize-dequantize in numpy) separates the two.

Flags (:data:`FLAGS`): ``narrow_range`` (99.9 % of values use fewer than 8 of the 127 levels:
the range is set by rare outliers), ``heavy_saturation`` (more than 0.5 % clipped),
``fp16_overflow_risk`` (``|x|`` beyond half of 65504), ``low_sqnr`` (the tensor's own
quantize-dequantize below 20 dB; the accumulated SQNR of deep layers is lower by nature and is not
flagged). Tensors are listed worst first (lowest accumulated SQNR).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..deps import require
from ..errors import MissingDependency
from .fp16 import DEFAULT_OVERFLOW_FRACTION, FP16_MAX
from .int8 import fake_quant

PERCENTILES = (99.0, 99.9, 99.99, 99.999)
NARROW_LEVELS = 8
HEAVY_SATURATION = 0.005
LOW_SQNR_DB = 20.0
FLAGS = {
    "narrow_range": f"99.9 % of values use fewer than {NARROW_LEVELS} of 127 levels (range set by outliers)",
    "heavy_saturation": f"more than {HEAVY_SATURATION * 100:g} % of values clipped at amax",
    "fp16_overflow_risk": f"|x| beyond {DEFAULT_OVERFLOW_FRACTION:g} x 65504",
    "low_sqnr": f"the tensor's own quantize-dequantize SQNR (local) below {LOW_SQNR_DB:g} dB",
}


def budget_sentence(budget: dict) -> str:
    """One readable line for the report's ``budget`` entry (drop in points, its bootstrap interval, verdict)."""
    drop, limit = budget.get("drop"), budget.get("max_map_drop")
    parts = ["INT8 ΔmAP50-95 " + ("not measured" if drop is None else f"{-drop:+.2f} points")]
    noise = budget.get("noise") or {}
    if noise.get("ci90"):
        lo, hi = noise["ci90"]
        parts.append(f"90 % bootstrap interval {lo:+.2f} … {hi:+.2f} ({noise.get('images', '?')} images)")
    if noise.get("agreement_map50_95") is not None:
        parts.append(f"agreement with FP32's detections {100 * noise['agreement_map50_95']:.1f} (mAP50-95, "
                     "FP32 detections at score >= 0.25 as labels; 100 = reproduced)")
    if limit is not None:
        verdict = {True: "within", False: "OVER", None: "not judged"}[budget.get("within")]
        parts.append(f"budget {limit:g} points: {verdict}")
    if noise.get("too_noisy"):
        parts.append("the validation set is too small to resolve this budget")
    for key in ("excluded", "kept"):
        if budget.get(key):
            parts.append(f"{key}: {', '.join(map(str, budget[key]))}")
    return "; ".join(parts)


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """``10 log10(||ref||^2 / ||ref - test||^2)`` in dB (inf when equal)."""
    ref = np.asarray(ref, np.float64)
    noise = float(((ref - np.asarray(test, np.float64)) ** 2).sum())
    signal = float((ref ** 2).sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def unshifted_view(qdq_model, pairs: Mapping[str, str], scales: Mapping[str, float]):
    """Shifted sites (:func:`~yolo_edge.precision.qdq.shift_activations`) seen in their FP32
    tensor's own space. ``pairs`` / ``scales`` are keyed by the tensors the ``QuantizeLinear`` nodes
    read (:func:`~yolo_edge.precision.int8.qdq_layers`); a shifted one reads ``x - c`` (after a
    ``Pad`` for padded consumers), which the FP32 graph does not have. Returns ``(model, pairs,
    scales, offsets)``: a copy of ``qdq_model`` where each shifted site's DequantizeLinear output
    plus ``c`` (cropped back to the unpadded size) is a tensor, keyed by the FP32 tensor, and
    ``offsets`` ``{FP32 tensor: c}``."""
    from onnx import helper, numpy_helper

    from .graph import copy_model
    from .qdq import shifted_tensors

    shifts = shifted_tensors(qdq_model)
    if not any(t in shifts for t in pairs):
        return qdq_model, dict(pairs), dict(scales), {}
    m = copy_model(qdq_model)
    prod = {o: n for n in m.graph.node for o in n.output}
    inits = {t.name: t for t in m.graph.initializer}
    out_pairs = {t: d for t, d in pairs.items() if t not in shifts}
    out_scales = {t: v for t, v in scales.items() if t not in shifts}
    offsets = {}
    for z in sorted(pairs, key=lambda z: shifts.get(z, {}).get("padded", False)):  # unpadded views first
        if z not in shifts or shifts[z]["source"] in out_pairs:
            continue
        src, c, d = shifts[z]["source"], shifts[z]["shift"], pairs[z]
        view = f"{d}::unshifted"
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(c, np.float32), f"{view}_c"))
        m.graph.node.append(helper.make_node("Add", [d, f"{view}_c"], [view], name=f"{view}_Add"))
        if shifts[z]["padded"]:
            pad = prod[z]
            pads = (numpy_helper.to_array(inits[pad.input[1]]).tolist() if len(pad.input) > 1
                    else next(list(a.ints) for a in pad.attribute if a.name == "pads"))
            nd = len(pads) // 2
            axes = [i for i in range(nd) if pads[i] or pads[i + nd]]
            starts = [pads[i] for i in axes]
            ends = [-pads[i + nd] if pads[i + nd] else np.iinfo(np.int64).max for i in axes]
            for k, v in (("starts", starts), ("ends", ends), ("axes", axes)):
                m.graph.initializer.append(numpy_helper.from_array(np.asarray(v, np.int64), f"{view}_{k}"))
            crop = f"{view}::crop"
            m.graph.node.append(helper.make_node("Slice", [view, f"{view}_starts", f"{view}_ends", f"{view}_axes"],
                                                 [crop], name=f"{crop}_Slice"))
            view = crop
        out_pairs[src] = view
        out_scales[src] = scales[z]
        offsets[src] = c
    return m, out_pairs, out_scales, offsets


def measure_sqnr(fp32_model, qdq_model, pairs: Mapping[str, str], batches: Sequence[np.ndarray],
                 scales: Mapping[str, float] | None = None, offsets: Mapping[str, float] | None = None
                 ) -> dict[str, dict]:
    """SQNR at each tensor: ``pairs`` maps an FP32 tensor to its DequantizeLinear output in
    ``qdq_model``. Returns ``{tensor: {"sqnr_db", "local_sqnr_db"}}`` (local: numpy quantize-dequantize
    of the FP32 tensor with ``scales[tensor]``, on the grid shifted by ``offsets[tensor]`` where given).
    The graph outputs are measured too (``boxes``, ``scores``)."""
    from .calibration import ort_session
    from .graph import expose

    outs = [o.name for o in fp32_model.graph.output]
    fp = ort_session(expose(fp32_model, list(pairs)))
    q = ort_session(expose(qdq_model, list(pairs.values())))
    fp_names = [o.name for o in fp.get_outputs()]
    q_names = [o.name for o in q.get_outputs()]
    acc = {t: [0.0, 0.0, 0.0] for t in [*pairs, *outs]}  # signal, noise, local noise
    for x in batches:
        a = dict(zip(fp_names, fp.run(fp_names, {fp.get_inputs()[0].name: x})))
        b = dict(zip(q_names, q.run(q_names, {q.get_inputs()[0].name: x})))
        for t in [*pairs, *outs]:
            ref = a[t].astype(np.float64)
            test = b[pairs.get(t, t)].astype(np.float64)
            acc[t][0] += float((ref ** 2).sum())
            acc[t][1] += float(((ref - test) ** 2).sum())
            if scales and t in scales:
                off = (offsets or {}).get(t, 0.0)
                acc[t][2] += float(((ref - fake_quant(a[t] - off, scales[t]) - off) ** 2).sum())

    def db(signal, noise):
        return math.inf if noise == 0 else (-math.inf if signal == 0 else 10 * math.log10(signal / noise))

    return {t: {"sqnr_db": db(s, n), **({"local_sqnr_db": db(s, ln)} if scales and t in scales else {})}
            for t, (s, n, ln) in acc.items()}


def weight_sqnr(fp32_model, qdq_model) -> dict[str, float]:
    """``{layer: SQNR (dB) of its per-channel INT8 weights}``."""
    from onnx import numpy_helper

    from .int8 import qdq_layers

    inits = {t.name: t for t in fp32_model.graph.initializer}
    out = {}
    for name, layer in qdq_layers(qdq_model).items():
        if layer.weight in inits and layer.weight_q is not None and layer.weight_scales is not None:
            w = numpy_helper.to_array(inits[layer.weight]).astype(np.float64)
            shape = [-1] + [1] * (w.ndim - 1)
            wq = layer.weight_q.astype(np.float64) * layer.weight_scales.reshape(shape)
            out[name] = sqnr_db(w, wq)
    return out


def _finite(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else (None if math.isnan(v) else (1e9 if v > 0 else -1e9))


def tensor_entries(stats, amax: Mapping[str, float], consumers: Mapping[str, Sequence[str]],
                   sqnr: Mapping[str, dict] | None = None, percentile: float = 99.99,
                   calibrated: Mapping[str, float] | None = None,
                   offsets: Mapping[str, float] | None = None) -> list[dict]:
    """One report entry per quantized tensor, worst first (lowest SQNR, then most saturated).
    ``calibrated``: the calibration method's ranges when ``amax`` are refined ones (``amax_calibrated``).
    ``offsets``: ``{tensor: c}`` of shifted sites, whose grid covers ``[2c - amax, amax]`` (``shift``,
    ``lower`` and their own ``scale`` in the entry)."""
    from .calibration import BASE_METHODS as METHODS  # auto is per model, not per tensor

    rows = []
    limit = DEFAULT_OVERFLOW_FRACTION * FP16_MAX
    for order, (t, a) in enumerate(amax.items()):
        st = stats.tensors.get(t)
        if st is None:
            continue
        off = (offsets or {}).get(t)
        scale = a / 127.0 if off is None else (a - off) / 127.0
        sat = st.saturation(a)
        p = {f"p{q:g}": st.percentile(q) for q in PERCENTILES}
        s = (sqnr or {}).get(t, {})
        flags = []
        if st.has_hist and p["p99.9"] < NARROW_LEVELS * scale:
            flags.append("narrow_range")
        if sat > HEAVY_SATURATION:
            flags.append("heavy_saturation")
        if st.absmax > limit:
            flags.append("fp16_overflow_risk")
        if s.get("local_sqnr_db") is not None and s["local_sqnr_db"] < LOW_SQNR_DB:
            flags.append("low_sqnr")
        rows.append({
            "tensor": t, "order": order, "consumers": list(consumers.get(t, [])),
            "min": st.min, "max": st.max, "min_exact": st.min_exact, "amax": a, "scale": scale,
            "amax_by_method": {m: st.amax(m, percentile) for m in METHODS},
            "percentiles_abs": p, "saturation_pct": 100.0 * sat,
            "sqnr_db": _finite(s.get("sqnr_db")), "local_sqnr_db": _finite(s.get("local_sqnr_db")),
            "flags": flags, "histogram": st.to_dict().get("hist"), "hist_top": st.top,
            "images": st.n_images,
            **({"amax_calibrated": float(calibrated[t])} if calibrated and t in calibrated else {}),
            **({"shift": off, "lower": 2 * off - a} if off is not None else {}),
        })
    rows.sort(key=lambda r: (r["sqnr_db"] if r["sqnr_db"] is not None else 1e9, -r["saturation_pct"]))
    return rows


# --- plots -----------------------------------------------------------------------------------
def _figure(w: float, h: float):
    require("matplotlib", extra="eval")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def plot_ranges(entries: Sequence[dict]) -> bytes:
    """Per-tensor min/max bars and the ends of the chosen INT8 grid (``-amax .. amax``, or ``lower ..
    amax`` for a shifted one), in graph order (symlog scale). When the ranges
    were refined, the calibration method's amax as hollow markers, and a second panel with the
    ratio refined / calibrated per tensor."""
    rows = sorted(entries, key=lambda r: r["order"])
    moved = [(i, r["amax_calibrated"]) for i, r in enumerate(rows)
             if r.get("amax_calibrated") and abs(r["amax_calibrated"] - r["amax"]) > 1e-6 * r["amax"]]
    fig = _figure(max(8.0, 0.12 * len(rows)), 6.5 if moved else 4.5)
    ax = fig.add_axes((0.08, 0.38, 0.9, 0.56)) if moved else fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    ax.bar(x, [r["max"] for r in rows], color="#4c72b0", width=0.8, label="max")
    ax.bar(x, [r["min"] for r in rows], color="#dd8452", width=0.8, label="min")
    ax.scatter(x, [r["amax"] for r in rows], color="black", s=8, zorder=3, label="INT8 grid ends (chosen)")
    ax.scatter(x, [r.get("lower", -r["amax"]) for r in rows], color="black", s=8, zorder=3)  # shifted: its lower end
    if moved:  # refined ranges: where the calibration method had put them
        ix, cal = [i for i, _ in moved], [c for _, c in moved]
        ax.scatter(ix, cal, facecolors="none", edgecolors="#2ca02c", s=22, zorder=3,
                   label="amax before refinement")
        sym = [(i, c) for i, c in moved if "lower" not in rows[i]]
        ax.scatter([i for i, _ in sym], [-c for _, c in sym], facecolors="none", edgecolors="#2ca02c", s=22, zorder=3)
    bad = [i for i, r in enumerate(rows) if r["flags"]]
    ax.scatter(bad, [0] * len(bad), marker="x", color="red", s=20, zorder=4, label="flagged")
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.set_ylabel("value")
    ax.set_title("Activation ranges per quantized tensor")
    ax.legend(loc="lower right", fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    if moved:
        ax.tick_params(labelbottom=False)
        ax2 = fig.add_axes((0.08, 0.08, 0.9, 0.24), sharex=ax)
        ratio = [r["amax"] / r["amax_calibrated"] if r.get("amax_calibrated") else 1.0 for r in rows]
        ax2.bar(x, [v - 1.0 for v in ratio], bottom=1.0, width=0.8,
                color=["#2ca02c" if v >= 1 else "#d62728" for v in ratio])
        ax2.axhline(1.0, color="black", lw=0.8)
        ax2.set_ylabel("refined / calibrated")
        ax2.grid(axis="y", alpha=0.3)
        ax = ax2
    ax.set_xlabel("quantized tensor (graph order)")
    return _png(fig)


def plot_histograms(entries: Sequence[dict], n: int = 10) -> bytes:
    """|x| histograms of the ``n`` worst tensors with the chosen amax and the min/max amax."""
    rows = [r for r in entries if r["histogram"]][:n]
    cols = 5
    nrows = max(1, math.ceil(len(rows) / cols))
    fig = _figure(3.2 * cols, 2.6 * nrows)
    for i, r in enumerate(rows):
        ax = fig.add_subplot(nrows, cols, i + 1)
        h = np.asarray(r["histogram"], np.float64)
        edges = np.linspace(0, r["hist_top"], h.size + 1)
        ax.stairs(np.maximum(h, 0.5), edges, fill=True, color="#4c72b0", baseline=0.5)
        ax.axvline(r["amax"], color="red", lw=1, label="amax")
        ax.axvline(max(abs(r["min"]), abs(r["max"])), color="black", lw=1, ls="--", label="max |x|")
        ax.set_yscale("log")
        name = r["tensor"] if len(r["tensor"]) < 34 else "…" + r["tensor"][-33:]
        sq = f"{r['sqnr_db']:.1f} dB" if r["sqnr_db"] is not None else "n/a"
        ax.set_title(f"{name}\nSQNR {sq}, sat {r['saturation_pct']:.2f} %", fontsize=7)
        ax.tick_params(labelsize=6)
        if i == 0:
            ax.legend(fontsize=6)
    return _png(fig)


def plot_sqnr(entries: Sequence[dict]) -> bytes:
    rows = sorted(entries, key=lambda r: r["order"])
    fig = _figure(max(8.0, 0.12 * len(rows)), 3.5)
    ax = fig.add_subplot(1, 1, 1)
    y = [r["sqnr_db"] if r["sqnr_db"] is not None else np.nan for r in rows]
    yl = [r["local_sqnr_db"] if r["local_sqnr_db"] is not None else np.nan for r in rows]
    ax.plot(y, marker="o", ms=3, label="INT8 graph vs FP32 (accumulated)")
    ax.plot(yl, marker=".", ms=3, alpha=0.7, label="local quantize-dequantize")
    ax.axhline(LOW_SQNR_DB, color="red", lw=0.8, ls="--", label=f"low_sqnr flag (local < {LOW_SQNR_DB:g} dB)")
    ax.set_xlabel("quantized tensor (graph order)")
    ax.set_ylabel("SQNR (dB)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def _short(node: str) -> str:
    """``/model.2/m/m.0/cv1/conv/Conv`` -> ``2/m/m.0/cv1``: a layer name short enough for an axis."""
    for end in ("/conv/Conv", "/Conv"):
        if node.endswith(end):
            node = node[: -len(end)]
    return node[len("/model."):] if node.startswith("/model.") else node.lstrip("/")


def guard_details(report: dict) -> dict | None:
    """The sensitive guard's measurements in a report (``int8.head_guard.sensitive``), if any."""
    g = ((report.get("int8") or {}).get("head_guard") or {}).get("sensitive")
    return g if g and g.get("layers") else None


def plot_guard(guard: dict, n: int = 30) -> bytes:
    """The sensitive guard's measurements: for the ``n`` layers of largest gain, how much output
    loss the full INT8 model sheds with only that layer FP16 (bars, orange where the guard kept the
    layer FP16), and the layer's share of the convolution FLOPs (dots, right axis)."""
    rows = guard["layers"][:n]
    fig = _figure(max(7.0, 0.3 * len(rows) + 2.5), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    ax.bar(x, [r["gain"] for r in rows], color=["tab:orange" if r["kept_fp16"] else "tab:blue" for r in rows])
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(x)
    ax.set_xticklabels([_short(r["node"]) for r in rows], rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("output loss removed\nwith this layer FP16")
    ax2 = ax.twinx()
    ax2.plot(x, [100 * r["flop_share"] for r in rows], "k.", ms=5)
    ax2.set_ylabel("% of the convolution FLOPs (dots)")
    ax2.set_ylim(bottom=0)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="tab:orange", label="kept FP16 by the guard"), Patch(color="tab:blue", label="INT8")],
              fontsize=8, loc="upper right")
    ax.set_title(f"{len(guard['nodes'])} layers kept FP16: {100 * guard['flop_share']:.2f} % of the convolution FLOPs "
                 f"(full INT8 output loss {guard['full_int8_output_loss']:.3g}, {guard['images']} images)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


# --- files -----------------------------------------------------------------------------------
def write_report(report: dict, out_dir, worst: int = 10) -> dict[str, Path]:
    """Write ``report.json``, the PNGs and ``report.html`` into ``out_dir`` (atomically). Returns the paths."""
    from ..util import atomic_write

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    pngs: dict[str, bytes] = {}
    entries = report.get("tensors", [])
    if entries:
        try:
            pngs = {"ranges.png": plot_ranges(entries), "histograms.png": plot_histograms(entries, worst),
                    "sqnr.png": plot_sqnr(entries)}
            if guard_details(report):
                pngs["guard.png"] = plot_guard(guard_details(report))
        except MissingDependency as e:
            report.setdefault("notes", []).append(f"plots skipped: {e}")
    for name, data in pngs.items():
        with atomic_write(out_dir / name) as f:
            f.write(data)
        paths[name] = out_dir / name
    with atomic_write(out_dir / "report.json", "w") as f:
        json.dump(report, f, indent=1, default=_json_default)
    paths["report.json"] = out_dir / "report.json"
    with atomic_write(out_dir / "report.html", "w") as f:
        f.write(render_html(report, pngs, worst))
    paths["report.html"] = out_dir / "report.html"
    return paths


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if not math.isfinite(v) or abs(v) >= 1e8:
            return "∞" if v > 0 else "−∞"
        return f"{v:.{digits}g}"
    return html.escape(str(v))


def _table(rows: Sequence[Sequence], head: Sequence[str], cls: Sequence[str] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for i, r in enumerate(rows):
        c = f' class="{cls[i]}"' if cls and cls[i] else ""
        out.append(f"<tr{c}>" + "".join(f"<td>{x}</td>" for x in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_precision_map(pmap: Mapping[str, Mapping[str, dict]]) -> str:
    """The precision-map section: ``{file: {TensorRT version: PrecisionMap.summary()}}``."""
    e = html.escape
    rows, cls, islands = [], [], []
    for file, by_version in pmap.items():
        for v, s in by_version.items():
            sh = s["flops_share"]
            out = s["fp32_nodes_outside_tail"]
            flag = " (INT8+FP16 flags)" if s.get("fp16_flag") else (" (INT8 flag)" if s.get("fp16_flag") is False else "")
            rows.append([e(file), e(f"{v}{flag}"), f"{100 * sh['int8']:.1f}", f"{100 * sh['fp16']:.1f}",
                         f"{100 * sh['fp32']:.1f}", f"{100 * s['conv_flops_int8_share']:.1f}", str(len(out)),
                         str(sum(1 for i in s["fp32_islands"] if i["tail"])),
                         str(sum(1 for i in s["fp32_islands"] if not i["tail"]))])
            cls.append("worst" if out else "")
            for i in s["fp32_islands"]:
                if not i["tail"]:
                    islands.append(f"<li>{e(file)}, TensorRT {e(v)}: {len(i['nodes'])} node(s) "
                                   f"({e(', '.join(i['op_types']))}), {i['flops'] / 1e6:.2f} MFLOPs: "
                                   f"<code>{e(', '.join(i['nodes'][:12]))}{' …' if len(i['nodes']) > 12 else ''}</code></li>")
    parts = ["<h2>Precision map (predicted TensorRT compute precision)</h2>",
             "<p>Static prediction from the ONNX graph (<code>yolo-edge info --precision</code>): strongly typed "
             "TensorRT 10/11 take each DequantizeLinear's output type from its scale, Cast sets the type, other "
             "layers inherit; a convolution fed by DQ on its input and weights runs INT8. TensorRT 8.6: builder "
             "flags. FP32 islands inside the decode tail are intended.</p>",
             _table(rows, ["file", "TensorRT", "INT8 % FLOPs", "FP16 %", "FP32 %", "conv FLOPs INT8 %",
                           "FP32 nodes outside tail", "FP32 islands (tail)", "FP32 islands (elsewhere)"], cls)]
    if islands:
        parts.append("<details><summary>FP32 islands outside the decode tail</summary><ul>" + "".join(islands)
                     + "</ul></details>")
    return "\n".join(parts)


def render_html(report: dict, pngs: Mapping[str, bytes], worst: int = 10) -> str:
    """A self-contained HTML page (PNGs inlined as base64)."""
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>yolo-edge calibration report</title>",
             "<style>body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;"
             "font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}tr.worst{background:#fff3f0}.flag{color:#b00}"
             "img{max-width:100%}code{font-size:12px}</style></head><body>",
             "<h1>yolo-edge INT8 / FP16 calibration report</h1>"]
    cal = report.get("calibration", {})
    parts.append(_table([[e(str(k)), e(json.dumps(v) if isinstance(v, (dict, list)) else str(v))]
                         for k, v in cal.items()], ["calibration", "value"]))
    if report.get("evaluation"):
        def pts(v):
            return "—" if v is None else f"{100 * v:.2f}"

        rows = [[e(r["precision"]), _fmt(r.get("size_mb"), 3), pts(r.get("map50_95")), pts(r.get("map50")),
                 _fmt(r.get("delta_map50_95"), 3), _fmt(r.get("latency_ms"), 4)] for r in report["evaluation"]]
        parts.append("<h2>Accuracy and speed (ONNX Runtime, CPU)</h2>")
        parts.append(_table(rows, ["precision", "MB", "mAP50-95", "mAP50", "ΔmAP50-95 (points)", "p50 ms"]))
    if report.get("budget"):
        parts.append(f"<p><b>Budget:</b> {e(budget_sentence(report['budget']))}</p>")
    if report.get("precision_map"):
        parts.append(render_precision_map(report["precision_map"]))
    ex = (report.get("int8") or {}).get("excluded", [])
    if ex:
        tail = [x["node"] for x in ex if x["reason"].startswith("decode tail")]
        other = [x for x in ex if not x["reason"].startswith("decode tail")]
        parts.append("<h2>Nodes kept in higher precision (INT8 model)</h2>")
        rows = [[e(x["node"]), e(x["reason"])] for x in other]
        if tail:
            rows.append([f"decode tail: {len(tail)} nodes <details><summary>list</summary>"
                         + "<br>".join(e(t) for t in tail) + "</details>",
                         e(ex[[x["node"] for x in ex].index(tail[0])]["reason"])])
        parts.append(_table(rows, ["node", "reason"]))
    guard = guard_details(report)
    if guard:
        parts.append("<h2>FP16 guard: where the non-INT8 FLOPs go (--int8-guard sensitive)</h2>")
        parts.append(f"<p>The full INT8 model ran on {guard['images']} calibration images once as it is and once per "
                     "layer with only that layer FP16; a layer's gain is how much its detector output loss against "
                     "FP32 fell. Layers were kept FP16 by gain per FLOP, best first, within "
                     f"{100 * guard['budget']:.2f} % of the convolution FLOPs (the share less the convolutions not "
                     f"INT8 anyway); {len(guard['skipped_over_share'])} layers over that alone were not measured "
                     f"({guard['seconds']:.0f} s).</p>")
        if "guard.png" in pngs:
            b64 = base64.b64encode(pngs["guard.png"]).decode()
            parts.append(f"<img alt='guard.png' src='data:image/png;base64,{b64}'>")
        kept = [r for r in guard["layers"] if r["kept_fp16"]]
        parts.append(_table([[e(r["node"]), _fmt(100 * r["flop_share"], 3), _fmt(r["gain"], 3),
                              _fmt(r["gain"] / max(100 * r["flop_share"], 1e-9), 3)] for r in kept],
                            ["kept FP16", "% of conv FLOPs", "gain (output loss)", "gain per % FLOPs"]))
    fp16 = report.get("fp16", {})
    if fp16:
        parts.append("<h2>FP16: nodes kept in FP32</h2>")
        over = fp16.get("overflow", [])
        if over:
            parts.append("<p class='flag'>Overflow risk: " + ", ".join(
                f"{e(o['tensor'])} ({o['amax']:.4g})" for o in over) + "</p>")
        kept = fp16.get("kept", [])
        tail = [k for k in kept if k["reason"].startswith("decode tail")]
        rows = [[e(k["node"]), e(k["op_type"]), e(k["reason"])] for k in kept if not k["reason"].startswith("decode tail")]
        if tail:
            rows.append([f"decode tail: {len(tail)} nodes <details><summary>list</summary>"
                         + "<br>".join(e(k["node"]) for k in tail) + "</details>", "", e(tail[0]["reason"])])
        parts.append(_table(rows, ["node", "op", "reason"]))
    sens = report.get("sensitivity")
    if sens:
        parts.append("<h2>Sensitivity (output error with only this layer quantized)</h2>")
        parts.append(f"<p>full INT8 output error: {_fmt(sens.get('full_error'))}</p>")
        parts.append(_table([[e(s["node"]), _fmt(s["output_error"]), _fmt(s.get("delta_map50_95_if_excluded"), 3)]
                             for s in sens.get("ranking", [])[:25]],
                            ["layer", "output error", "ΔmAP50-95 if excluded (points)"]))
        if sens.get("budget"):
            parts.append(_table([[e(s["node"]), _fmt(100 * s["map50_95_before"], 4), _fmt(100 * s["map50_95_after"], 4),
                                  "kept" if s["kept"] else "reverted"] for s in sens["budget"].get("steps", [])],
                                ["excluded layer", "mAP50-95 before", "after", "decision"]))
    outputs = report.get("outputs", {})
    if outputs:
        parts.append("<h2>Output SQNR (INT8 vs FP32)</h2>")
        parts.append(_table([[e(k), _fmt(v.get("sqnr_db"))] for k, v in outputs.items()], ["output", "SQNR dB"]))
    for name, title in (("ranges.png", "Ranges"), ("sqnr.png", "SQNR per tensor"),
                        ("histograms.png", f"Histograms of the {worst} worst tensors")):
        if name in pngs:
            b64 = base64.b64encode(pngs[name]).decode()
            parts.append(f"<h2>{title}</h2><img alt='{name}' src='data:image/png;base64,{b64}'>")
    entries = report.get("tensors", [])
    if entries:
        parts.append(f"<h2>Quantized tensors ({len(entries)}), worst first</h2>")
        parts.append("<p>" + "; ".join(f"<b>{e(k)}</b>: {e(v)}" for k, v in FLAGS.items()) + "</p>")
        rows, cls = [], []
        for i, r in enumerate(entries):
            rows.append([e(r["tensor"]), _fmt(r["min"]), _fmt(r["max"]), _fmt(r["amax"]),
                         _fmt(r["percentiles_abs"]["p99.99"]), _fmt(r["saturation_pct"], 3), _fmt(r["sqnr_db"], 3),
                         _fmt(r["local_sqnr_db"], 3), "<span class='flag'>" + e(", ".join(r["flags"])) + "</span>"])
            cls.append("worst" if i < worst else "")
        parts.append(_table(rows, ["tensor", "min", "max", "amax", "p99.99 |x|", "saturation %", "SQNR dB",
                                   "local SQNR dB", "flags"], cls))
    for note in report.get("notes", []):
        parts.append(f"<p><i>{e(note)}</i></p>")
    parts.append("</body></html>")
    return "\n".join(parts)
