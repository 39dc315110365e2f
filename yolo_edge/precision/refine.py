"""Activation ranges refined end to end: learned INT8 clipping against the FP32 model's own outputs.

One calibration pass gives each activation tensor an amax from its own histogram (entropy, minmax,
...). Each tensor's choice is local: it trades clipping against rounding on that tensor, and cannot
see what its error does downstream. ``refine_amax`` starts from those ranges and adjusts every
activation amax jointly by gradient descent on the *detector outputs*: the FP32 graph and the
fake-quantized graph (the same Q/DQ sites, per-channel INT8 weights, round half to even, the same
grid TensorRT and ONNX Runtime use) run on the calibration images, and the loss is how far the
quantized boxes and scores move from FP32's. No labels: the target is FP32's own output, so the
calibration set can be any representative images. The step size of each range is learned through
the straight-through estimator (the LSQ gradient, Esser et al. 2020, "Learned Step Size
Quantization"), on the log of the amax so that it stays positive; the weights are not changed.

The ONNX graph is run by a small interpreter over PyTorch operators (:class:`TorchGraph`), so
PyTorch is needed (imported here only). An op it does not know raises
:class:`UnsupportedGraph`; the precision job then keeps the calibrated ranges and says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import YoloEdgeError
from .qdq import DEFAULT_WEIGHT_SCALE, _node_attrs as _attrs, _weight_axis, quantize_weight


class UnsupportedGraph(YoloEdgeError):
    """The graph uses an operator :class:`TorchGraph` does not implement."""


def _pads(p, nd: int):
    """ONNX pads (begin..., end...) -> symmetric torch padding, or None when asymmetric."""
    p = list(p) if p else [0] * (2 * nd)
    if p[:nd] != p[nd:]:
        return None
    return tuple(p[:nd])


class TorchGraph:
    """An ONNX graph (float, static shapes) evaluated with PyTorch ops, so it can be differentiated.

    ``quant`` maps ``(consumer node, input index)`` to an activation tensor name: that input reads the
    fake-quantized tensor (per-tensor symmetric INT8, scale ``amax / 127``) instead of the float one,
    where ``amax`` comes from the ``amax`` dict passed to :meth:`run`. ``weights`` names the weighted
    nodes whose constant weight (input 1) is fake-quantized per output channel, with the scales
    ``weight_scale`` picks (:func:`~yolo_edge.precision.qdq.quantize_weight`: the INT8 weights
    ``insert_qdq`` writes), or the ``(q, scale)`` of ``int8_weights`` (by weight initializer name,
    e.g. :func:`~yolo_edge.precision.rounding.gptq_weights`) where it has one. Tensors in ``lower``
    (``{tensor: lower bound}``, :func:`~yolo_edge.precision.qdq.shift_bounds`) use the shifted grid
    over ``[lower, amax]`` that ``insert_qdq(shift=...)`` writes.
    """

    def __init__(self, model, quant: Mapping[tuple[str, int], str] | None = None, weights: Iterable[str] = (),
                 weight_scale: str = DEFAULT_WEIGHT_SCALE, int8_weights: Mapping[str, tuple] | None = None,
                 lower: Mapping[str, float] | None = None):
        import torch
        from onnx import numpy_helper

        self.torch = torch
        g = model.graph
        self.nodes = list(g.node)
        self.input = g.input[0].name
        self.outputs = [o.name for o in g.output]
        self.consts = {}
        for t in g.initializer:
            self.consts[t.name] = torch.from_numpy(np.array(numpy_helper.to_array(t)))
        for n in self.nodes:
            if n.op_type == "Constant":
                self.consts[n.output[0]] = torch.from_numpy(np.array(numpy_helper.to_array(_attrs(n)["value"])))
        self.attrs = [_attrs(n) for n in self.nodes]  # by position: node names may be empty
        self.quant = dict(quant or {})
        self.lower = dict(lower or {})
        self._wq = {}  # the INT8 weights insert_qdq writes, dequantized
        for n in self.nodes:
            if n.name in set(weights) and len(n.input) > 1 and n.input[1] in self.consts:
                w = self.consts[n.input[1]].numpy()
                q, scale = (int8_weights or {}).get(n.input[1]) or quantize_weight(w, _weight_axis(n, w), weight_scale)
                shape = [1] * w.ndim
                if scale.ndim:
                    shape[_weight_axis(n, w)] = -1
                self._wq[n.name] = torch.from_numpy(q.astype(np.float32) * scale.reshape(shape))
        missing = sorted({n.op_type for n in self.nodes} - set(_OPS) - {"Constant"})
        if missing:
            raise UnsupportedGraph(f"operators not supported by the refinement interpreter: {', '.join(missing)}")

    def run(self, x, amax: Mapping[str, object] | None = None, quantize: bool = True,
            on_node: Callable | None = None) -> list:
        """Outputs of the graph for input ``x`` (a torch tensor); fake-quantized where configured
        when ``quantize`` (``amax``: tensor name -> positive scalar tensor). ``on_node(node, attrs,
        inputs)`` is called before each node runs (the inputs it reads)."""
        torch = self.torch
        env = dict(self.consts)
        env[self.input] = x
        fq_cache: dict[str, object] = {}
        for n, attrs in zip(self.nodes, self.attrs):
            if n.op_type == "Constant":
                continue
            ins = []
            for i, name in enumerate(n.input):
                if not name:
                    ins.append(None)
                    continue
                v = env[name]
                t = self.quant.get((n.name, i)) if quantize and amax is not None else None
                if t is not None and t in amax:
                    if t not in fq_cache:
                        fq_cache[t] = ste_fake_quant(v, amax[t], self.lower.get(t))
                    v = fq_cache[t]
                elif quantize and i == 1 and n.name in self._wq:
                    v = self._wq[n.name]
                ins.append(v)
            if on_node is not None:
                on_node(n, attrs, ins)
            out = _OPS[n.op_type](torch, ins, attrs, n)
            if not isinstance(out, (list, tuple)):
                out = (out,)
            for name, v in zip(n.output, out):
                if name:
                    env[name] = v
        return [env[o] for o in self.outputs]


def ste_fake_quant(x, amax, lower: float | None = None):
    """Symmetric INT8 fake quantization of ``x`` with scale ``amax / 127`` (zero point 0, range
    [-128, 127], round half to even as ONNX QuantizeLinear), differentiable in ``amax`` and ``x``
    through the straight-through estimator. With ``lower``: the shifted grid over ``[lower, amax]``
    (:func:`~yolo_edge.precision.qdq.shift_of`: scale ``(amax - lower) / 254``, shift ``c`` a whole
    number of steps), i.e. ``Q(x - c) * scale + c``."""
    import torch

    if lower is None:
        s = amax / 127.0
        c = 0.0
    else:
        s = (amax - lower) / 254.0
        c = torch.round((amax + lower) / (2.0 * s)).detach() * s
    v = (x - c) / s
    r = v + (torch.round(v) - v).detach()
    return torch.clamp(r, -128.0, 127.0) * s + c


# --- operators --------------------------------------------------------------------------------

def _conv(torch, ins, a, n):
    import torch.nn.functional as F

    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    nd = w.ndim - 2
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedGraph(f"{n.name}: auto_pad")
    pads = _pads(a.get("pads"), nd)
    if pads is None:
        p = list(a["pads"])
        x = F.pad(x, [v for i in reversed(range(nd)) for v in (p[i], p[i + nd])])
        pads = (0,) * nd
    stride, dil = a.get("strides", [1] * nd), a.get("dilations", [1] * nd)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    return fn(x, w, b, stride, pads, dil, a.get("group", 1))


def _maxpool(torch, ins, a, n):
    import torch.nn.functional as F

    k = a["kernel_shape"]
    nd = len(k)
    pads = _pads(a.get("pads"), nd)
    if pads is None or a.get("ceil_mode", 0) or nd != 2:
        raise UnsupportedGraph(f"{n.name}: MaxPool with asymmetric pads / ceil_mode")
    return F.max_pool2d(ins[0], k, a.get("strides", [1] * nd), pads, a.get("dilations", [1] * nd))


def _resize(torch, ins, a, n):
    import torch.nn.functional as F

    mode = a.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    ctm = a.get("coordinate_transformation_mode", b"half_pixel")
    ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
    x = ins[0]
    scales = ins[2] if len(ins) > 2 and ins[2] is not None and ins[2].numel() else None
    sizes = ins[3] if len(ins) > 3 and ins[3] is not None else None
    size = [int(v) for v in sizes.tolist()][2:] if sizes is not None else [
        int(math.floor(d * float(s))) for d, s in zip(x.shape[2:], scales.tolist()[2:])]
    if mode == "nearest" and ctm == "asymmetric" and a.get("nearest_mode", b"round_prefer_floor") in (b"floor", "floor"):
        return F.interpolate(x, size=size, mode="nearest")
    if mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=ctm == "align_corners")
    raise UnsupportedGraph(f"{n.name}: Resize mode {mode} / {ctm}")


def _slice(torch, ins, a, n):
    x = ins[0]
    starts, ends = ins[1].tolist(), ins[2].tolist()
    axes = ins[3].tolist() if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
    steps = ins[4].tolist() if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    idx = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if st <= 0:
            raise UnsupportedGraph(f"{n.name}: Slice with step {st}")
        d = x.shape[ax]
        s = max(0, min(d, s + d if s < 0 else s))
        e = max(0, min(d, e + d if e < 0 else e))
        idx[ax] = slice(s, e, st)
    return x[tuple(idx)]


def _split(torch, ins, a, n):
    axis = a.get("axis", 0)
    x = ins[0]
    if len(ins) > 1 and ins[1] is not None:
        sizes = [int(v) for v in ins[1].tolist()]
    elif "split" in a:
        sizes = list(a["split"])
    else:
        k = len(n.output)
        sizes = [x.shape[axis] // k] * k
    return torch.split(x, sizes, dim=axis)


def _reshape(torch, ins, a, n):
    x, shape = ins[0], [int(v) for v in ins[1].tolist()]
    shape = [x.shape[i] if v == 0 and not a.get("allowzero", 0) else v for i, v in enumerate(shape)]
    return x.reshape(shape)


def _unsqueeze(torch, ins, a, n):
    axes = ins[1].tolist() if len(ins) > 1 else a["axes"]
    x = ins[0]
    out_rank = x.ndim + len(axes)
    for ax in sorted(v % out_rank for v in axes):
        x = x.unsqueeze(ax)
    return x


def _squeeze(torch, ins, a, n):
    axes = ins[1].tolist() if len(ins) > 1 and ins[1] is not None else a.get("axes")
    x = ins[0]
    if axes is None:
        return x.squeeze()
    for ax in sorted((v % x.ndim for v in axes), reverse=True):
        x = x.squeeze(ax)
    return x


def _cast(torch, ins, a, n):
    from onnx import helper

    return ins[0].to(getattr(torch, str(np.dtype(helper.tensor_dtype_to_np_dtype(a["to"])))))


def _gather(torch, ins, a, n):
    x, idx = ins[0], ins[1].long()
    axis = a.get("axis", 0) % x.ndim
    idx = torch.where(idx < 0, idx + x.shape[axis], idx)
    out = torch.index_select(x, axis, idx.reshape(-1))
    return out.reshape(list(x.shape[:axis]) + list(idx.shape) + list(x.shape[axis + 1:]))


def _constant_of_shape(torch, ins, a, n):
    from onnx import numpy_helper

    v = np.array(numpy_helper.to_array(a["value"])).reshape(-1) if "value" in a else np.zeros(1, np.float32)
    return torch.full([int(s) for s in ins[0].tolist()], v[0].item(), dtype=getattr(torch, str(v.dtype)))


def _expand(torch, ins, a, n):
    x = ins[0]
    return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(int(s) for s in ins[1].tolist())))


def _range(torch, ins, a, n):
    start, limit, delta = (v.item() for v in ins[:3])
    return torch.arange(start, limit, delta, dtype=ins[0].dtype)


def _reduce(fn):
    def op(torch, ins, a, n):
        axes = ins[1].tolist() if len(ins) > 1 and ins[1] is not None else a.get("axes")
        keep = bool(a.get("keepdims", 1))
        x = ins[0]
        if axes is None:
            axes = list(range(x.ndim))
        return fn(torch, x, [v % x.ndim for v in axes], keep)
    return op


def _binary(fn):
    return lambda torch, ins, a, n: fn(ins[0], ins[1])


_OPS: dict[str, Callable] = {
    "Conv": _conv,
    "MaxPool": _maxpool,
    "Resize": _resize,
    "Slice": _slice,
    "Split": _split,
    "Reshape": _reshape,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Cast": _cast,
    "Gather": _gather,
    "ConstantOfShape": _constant_of_shape,  # the anchor grids of Ultralytics YOLOv8 exports
    "Expand": _expand,
    "Range": _range,
    "Add": _binary(lambda x, y: x + y),
    "Sub": _binary(lambda x, y: x - y),
    "Mul": _binary(lambda x, y: x * y),
    "Div": _binary(lambda x, y: x / y),
    "Pow": _binary(lambda x, y: x ** y),
    "MatMul": _binary(lambda x, y: x @ y),
    "Sigmoid": lambda torch, ins, a, n: torch.sigmoid(ins[0]),
    "Relu": lambda torch, ins, a, n: torch.relu(ins[0]),
    "LeakyRelu": lambda torch, ins, a, n: torch.nn.functional.leaky_relu(ins[0], a.get("alpha", 0.01)),
    "HardSigmoid": lambda torch, ins, a, n: torch.clamp(a.get("alpha", 0.2) * ins[0] + a.get("beta", 0.5), 0, 1),
    "HardSwish": lambda torch, ins, a, n: torch.nn.functional.hardswish(ins[0]),
    "Tanh": lambda torch, ins, a, n: torch.tanh(ins[0]),
    "Exp": lambda torch, ins, a, n: torch.exp(ins[0]),
    "Sqrt": lambda torch, ins, a, n: torch.sqrt(ins[0]),
    "Floor": lambda torch, ins, a, n: torch.floor(ins[0]),
    "Identity": lambda torch, ins, a, n: ins[0],
    "Softmax": lambda torch, ins, a, n: torch.softmax(ins[0], dim=a.get("axis", -1)),
    "Transpose": lambda torch, ins, a, n: ins[0].permute(*a["perm"]) if "perm" in a else ins[0].permute(
        *reversed(range(ins[0].ndim))),
    "Concat": lambda torch, ins, a, n: torch.cat([v for v in ins if v is not None], dim=a["axis"]),
    "Shape": lambda torch, ins, a, n: torch.tensor(list(ins[0].shape)[a.get("start", 0):a.get("end")],
                                                   dtype=torch.int64),
    "Clip": lambda torch, ins, a, n: torch.clamp(ins[0], *(None if v is None else float(v) for v in (
        (ins + [None, None])[1:3]))),
    "ReduceSum": _reduce(lambda torch, x, ax, k: torch.sum(x, dim=ax, keepdim=k)),
    "ReduceMax": _reduce(lambda torch, x, ax, k: torch.amax(x, dim=ax, keepdim=k)),
    "ReduceMean": _reduce(lambda torch, x, ax, k: torch.mean(x, dim=ax, keepdim=k)),
}


# --- refinement -------------------------------------------------------------------------------

# FP32 detections the box term follows: anchors whose best FP32 score reaches this (the precision
# job validates at score 0.001 and deploys at 0.25; 0.05 keeps every anchor that can become a
# detection worth ranking, and leaves out the tens of thousands of background anchors).
BOX_SCORE = 0.05


def output_loss(torch, q_out: Sequence, f_out: Sequence, box_scale: float = 1.0, box_score: float = BOX_SCORE):
    """How far the quantized detector outputs moved from FP32's, for ``boxes (B, N, 4)`` (x1, y1,
    x2, y2) and ``scores (B, N, C)``: the squared score error summed over every anchor and class,
    plus ``1 - IoU`` of each anchor's quantized box with its FP32 box, weighted by FP32's best score,
    over the anchors where that score is at least ``box_score``. It is what mAP against FP32's own
    detections sees: the same objects found, ranked alike, with boxes that overlap at high IoU."""
    qb, qs = q_out
    fb, fs = f_out
    score = ((qs - fs) ** 2).sum()
    w = fs.amax(dim=-1)
    keep = w >= box_score
    a, b = qb[keep], fb[keep]
    ix = torch.clamp(torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0]), min=0)
    iy = torch.clamp(torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1]), min=0)
    inter = ix * iy

    def area(z):
        return torch.clamp(z[:, 2] - z[:, 0], min=0) * torch.clamp(z[:, 3] - z[:, 1], min=0)

    iou = inter / (area(a) + area(b) - inter + 1e-9)
    return score + box_scale * (w[keep] * (1.0 - iou)).sum()


@dataclass
class RefineResult:
    amax: dict[str, float]
    initial_loss: float
    final_loss: float
    steps: int
    images: int
    seconds: float
    history: list[float] = field(default_factory=list)

    @property
    def kept(self) -> bool:
        """The refined ranges were kept (they lowered the loss on the images they were refined on)."""
        return self.final_loss < self.initial_loss

    def summary(self) -> str:
        change = 100.0 * (self.final_loss / self.initial_loss - 1.0) if self.initial_loss else 0.0
        return (f"{self.images} images, output loss vs FP32 {self.initial_loss:.4g} -> {self.final_loss:.4g} "
                f"({change:+.1f} %), {self.seconds:.0f} s; "
                + ("refined ranges used" if self.kept else "not lower: calibrated ranges kept"))

    def to_dict(self) -> dict:
        return {"images": self.images, "steps": self.steps, "kept": self.kept, "seconds": round(self.seconds, 1),
                "initial_loss": self.initial_loss, "final_loss": self.final_loss,
                "loss_history": [round(v, 6) for v in self.history]}


# Measured on yolov5n, coco128, by agreement with FP32's detections on the held-out half (README,
# "INT8 calibration methods"): 32 images x 3 passes at step 0.02 gave 91.7 on four halves, against
# 90.2 at 0.01, 90.7 at 0.05 and 89.8 with 64 images x 2 passes; about 40 s on two cores. With GPTQ
# weights and shifted grids, 64 images x 3 passes lowered the held-out output error on all eight halves
# (-5 %) but not the label means (README "Refining on all 64 calibration images"), so 32 stays.
REFINE_IMAGES = 32
REFINE_EPOCHS = 3
REFINE_LR = 0.02


def refine_amax(model, sites: Mapping[str, Sequence[str]], amax: Mapping[str, float], weighted: Iterable[str],
                batches: Iterable[np.ndarray], epochs: int = REFINE_EPOCHS, lr: float = REFINE_LR,
                accumulate: int = 4, show_progress: bool = False, weight_scale: str = DEFAULT_WEIGHT_SCALE,
                seed: int = 0, int8_weights: Mapping[str, tuple] | None = None,
                lower: Mapping[str, float] | None = None) -> RefineResult:
    """Refined activation ranges (``{tensor: amax}``) for the Q/DQ sites of ``model``.

    Args:
        model: the float graph without NMS whose outputs are ``boxes`` and ``scores`` (the precision
            job's prepared graph).
        sites: ``{activation tensor: [consumer node, ...]}`` that read the tensor through a Q/DQ pair
            (the job's ``acts``); tensors without an ``amax`` stay float.
        amax: the calibrated ranges to start from.
        weighted: the weighted layers whose weights are quantized (the job's quantized nodes).
        weight_scale: how their per-channel scales are chosen (``Int8Config.weight_scale``).
        int8_weights: rounded INT8 weights ``{initializer: (q, scale)}`` used instead of nearest
            rounding (``Int8Config.int8_weights``).
        lower: ``{tensor: lower bound}`` of the sites with a shifted grid
            (:func:`~yolo_edge.precision.qdq.shift_bounds`); their ``amax`` is the top of the range.
        seed: of the order the batches are visited in each pass.
        batches: letterboxed float32 images ``(B, 3, H, W)`` (the batch size the graph takes); the
            FP32 outputs are computed once.
        epochs, lr, accumulate: passes over the batches, Adam step on ``log(amax)``, batches per step.

    The ranges are kept only when they lower the loss on these images (otherwise ``amax`` comes
    back unchanged).
    """
    import torch

    from ..deps import progress

    t0 = time.perf_counter()
    quant = {}
    by_name = {n.name: n for n in model.graph.node}
    for t, consumers in sites.items():
        if t not in amax:
            continue
        for c in consumers:
            n = by_name[c]
            for i, name in enumerate(n.input):
                if name == t:
                    quant[(c, i)] = t
    names = sorted({t for t in quant.values()})
    g = TorchGraph(model, quant, weighted, weight_scale, int8_weights, lower)
    xs = [torch.from_numpy(np.ascontiguousarray(b)) for b in batches]
    n_images = sum(int(x.shape[0]) for x in xs)
    if not xs or not names:
        return RefineResult(dict(amax), 0.0, 0.0, 0, n_images, time.perf_counter() - t0)
    with torch.no_grad():
        targets = [[o.detach() for o in g.run(x, quantize=False)] for x in xs]
    shapes = [tuple(o.shape) for o in targets[0]]
    if len(shapes) != 2 or len(shapes[0]) != 3 or shapes[0][-1] != 4 or shapes[1][:2] != shapes[0][:2]:
        raise UnsupportedGraph(f"outputs {shapes} are not boxes (B, N, 4) and scores (B, N, C)")
    log_a = torch.nn.Parameter(torch.tensor([math.log(max(float(amax[t]), 1e-8)) for t in names], dtype=torch.float32))
    opt = torch.optim.Adam([log_a], lr=lr)

    def amax_dict():
        a = torch.exp(log_a)
        return {t: a[i] for i, t in enumerate(names)}

    def loss_of(x, f):
        return output_loss(torch, g.run(x, amax_dict()), f)

    with torch.no_grad():
        initial = float(sum(float(loss_of(x, f)) for x, f in zip(xs, targets)) / len(xs))
    history = []
    steps = 0
    total = epochs * len(xs)
    bar = progress(range(total), total=total, desc="refine ranges", unit="batch", disable=not show_progress)
    order = np.random.default_rng(seed)
    it = iter(bar)
    for _ in range(epochs):
        perm = order.permutation(len(xs))
        running = 0.0
        opt.zero_grad()
        for k, j in enumerate(perm):
            loss = loss_of(xs[j], targets[j]) / accumulate
            loss.backward()
            running += float(loss.detach()) * accumulate
            next(it, None)
            if (k + 1) % accumulate == 0 or k + 1 == len(perm):
                opt.step()
                opt.zero_grad()
                steps += 1
        history.append(running / len(xs))
    with torch.no_grad():
        final = float(sum(float(loss_of(x, f)) for x, f in zip(xs, targets)) / len(xs))
    out = dict(amax)
    if final < initial:
        a = torch.exp(log_a).detach().numpy()
        out.update({t: float(a[i]) for i, t in enumerate(names)})
    return RefineResult(out, initial, final, steps, n_images, time.perf_counter() - t0, history)
