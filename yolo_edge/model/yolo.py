"""The YOLO11 reference detector: backbone, FPN+PAN neck, decoupled DFL head, and decode.

    backbone    stem (P1/2) -> down2 (P2/4) -> stage2 -> down3 (P3/8) -> stage3          = p3
                -> down4 (P4/16) -> stage4                                            = p4
                -> down5 (P5/32) -> stage5 -> SPPF -> C2PSA                           = p5
    neck (FPN)  n4    = fpn4(cat(up(p5), p4))                 # (B, c4, H/16, W/16)
                out8  = fpn3(cat(up(n4), p3))                 # (B, c3, H/8,  W/8)
    neck (PAN)  out16 = pan4(cat(pan_down3(out8), n4))        # (B, c4, H/16, W/16)
                out32 = pan5(cat(pan_down4(out16), p5))       # (B, c5, H/32, W/32)
    head        per level, box: 3x3 -> 3x3 -> 1x1             (4*reg_max DFL logits)
                           cls: dw3x3 -> 1x1 -> dw3x3 -> 1x1 -> 1x1   (nc class logits)

Scales follow YOLO11 (depth multiple, width multiple, channel cap):
n = 0.50/0.25/1024, s = 0.50/0.50/1024, m = 0.50/1.00/512. For m, every C3k2 uses
C3k inner blocks; for n and s only the two deepest backbone stages and the last PAN stage do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from yolo_edge.model.blocks import C2PSA, SPPF, Attention, C3k2, ConvBNSiLU

# scale -> (depth multiple, width multiple, max channels)
SCALES: dict[str, tuple[float, float, int]] = {
    "n": (0.50, 0.25, 1024),
    "s": (0.50, 0.50, 1024),
    "m": (0.50, 1.00, 512),
}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; stored verbatim in checkpoints."""

    scale: str = "n"
    nc: int = 80
    reg_max: int = 16
    strides: tuple = (8, 16, 32)
    names: list[str] | None = field(default=None)  # defaults to class0..class{nc-1}

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; choose one of {sorted(SCALES)}")
        if int(self.nc) < 1:
            raise ValueError(f"nc must be >= 1, got {self.nc}")
        if int(self.reg_max) < 2:
            raise ValueError(f"reg_max must be >= 2 (softmax over reg_max bins), got {self.reg_max}")
        self.nc = int(self.nc)
        self.reg_max = int(self.reg_max)
        self.strides = tuple(int(s) for s in self.strides)
        if self.strides != (8, 16, 32):
            raise ValueError(f"the YOLO11 reference model has strides (8, 16, 32), got {self.strides}")
        if self.names is None:
            self.names = [f"class{i}" for i in range(self.nc)]
        self.names = [str(n) for n in self.names]
        if len(self.names) != self.nc:
            raise ValueError(f"names has {len(self.names)} entries but nc={self.nc}")

    @property
    def no(self) -> int:
        """Output channels per level: 4*reg_max DFL logits + nc class logits."""
        return 4 * self.reg_max + self.nc

    def channels(self, c: int) -> int:
        """Base channel count -> this scale's channel count (capped, width-scaled, multiple of 8)."""
        _, width, max_ch = SCALES[self.scale]
        return int(math.ceil(min(c, max_ch) * width / 8) * 8)

    def repeats(self, n: int) -> int:
        """Base block repeat count -> this scale's repeat count (at least 1)."""
        depth, _, _ = SCALES[self.scale]
        return max(round(n * depth), 1)

    def to_dict(self) -> dict:
        return {
            "scale": self.scale,
            "nc": self.nc,
            "reg_max": self.reg_max,
            "strides": list(self.strides),
            "names": list(self.names),
        }


class DetectHead(nn.Module):
    """Decoupled anchor-free head, one box branch and one class branch per level.

    The box branch is narrow (c_box = max(16, ch0/4, 4*reg_max)); the class branch uses
    depthwise-separable convs at c_cls = max(ch0, min(nc, 100)) channels, as in YOLO11.
    """

    def __init__(self, chs: tuple[int, ...], nc: int, reg_max: int, strides: tuple[int, ...]):
        super().__init__()
        self.nc, self.reg_max, self.strides = nc, reg_max, strides
        c_box = max(16, chs[0] // 4, 4 * reg_max)
        c_cls = max(chs[0], min(nc, 100))
        self.box = nn.ModuleList(
            nn.Sequential(
                ConvBNSiLU(c, c_box, 3),
                ConvBNSiLU(c_box, c_box, 3),
                nn.Conv2d(c_box, 4 * reg_max, 1),
            )
            for c in chs
        )
        self.cls = nn.ModuleList(
            nn.Sequential(
                ConvBNSiLU(c, c, 3, g=c),  # depthwise
                ConvBNSiLU(c, c_cls, 1),  # pointwise
                ConvBNSiLU(c_cls, c_cls, 3, g=c_cls),
                ConvBNSiLU(c_cls, c_cls, 1),
                nn.Conv2d(c_cls, nc, 1),
            )
            for c in chs
        )
        self.init_biases()

    @torch.no_grad()
    def init_biases(self) -> None:
        """Box logits start flat (bias 1.0); class logits start at a small prior probability
        (about 5 objects per 640x640 image spread over the level's cells and classes)."""
        for box, cls, s in zip(self.box, self.cls, self.strides):
            box[-1].bias.fill_(1.0)
            cls[-1].bias.fill_(math.log(5 / self.nc / (640 / s) ** 2))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        # feats[i]: (B, C_i, H/s_i, W/s_i) -> (B, 4*reg_max + nc, H/s_i, W/s_i)
        return [torch.cat((box(x), cls(x)), dim=1) for x, box, cls in zip(feats, self.box, self.cls)]


class YOLO(nn.Module):
    """YOLO11 detector. `forward` returns the raw per-level head outputs in train and eval mode;
    `infer` decodes them to boxes and scores."""

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else ModelConfig()
        ch, rep = cfg.channels, cfg.repeats
        c1, c2, c3, c4, c5 = ch(64), ch(128), ch(256), ch(512), ch(1024)
        n = rep(2)
        c3k = cfg.scale == "m"  # C3k inner blocks everywhere for m; only in deep stages otherwise

        # backbone
        self.stem = ConvBNSiLU(3, c1, 3, 2)  # P1/2
        self.down2 = ConvBNSiLU(c1, c2, 3, 2)  # P2/4
        self.stage2 = C3k2(c2, c3, n, c3k=c3k, e=0.25)
        self.down3 = ConvBNSiLU(c3, c3, 3, 2)  # P3/8
        self.stage3 = C3k2(c3, c4, n, c3k=c3k, e=0.25)
        self.down4 = ConvBNSiLU(c4, c4, 3, 2)  # P4/16
        self.stage4 = C3k2(c4, c4, n, c3k=True)
        self.down5 = ConvBNSiLU(c4, c5, 3, 2)  # P5/32
        self.stage5 = C3k2(c5, c5, n, c3k=True)
        self.sppf = SPPF(c5, c5)
        self.psa = C2PSA(c5, n)

        # neck: top-down (FPN) then bottom-up (PAN)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fpn4 = C3k2(c5 + c4, c4, n, c3k=c3k)
        self.fpn3 = C3k2(c4 + c4, c3, n, c3k=c3k)
        self.pan_down3 = ConvBNSiLU(c3, c3, 3, 2)
        self.pan4 = C3k2(c3 + c4, c4, n, c3k=c3k)
        self.pan_down4 = ConvBNSiLU(c4, c4, 3, 2)
        self.pan5 = C3k2(c4 + c5, c5, n, c3k=True)

        self.head = DetectHead((c3, c4, c5), cfg.nc, cfg.reg_max, cfg.strides)

    @classmethod
    def from_scale(cls, scale: str = "n", nc: int = 80, **kwargs) -> "YOLO":
        return cls(ModelConfig(scale=scale, nc=nc, **kwargs))

    @property
    def names(self) -> list[str]:
        return self.cfg.names

    @property
    def fused(self) -> bool:
        return any(m.fused for m in self.modules() if isinstance(m, ConvBNSiLU))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) float32 in [0, 1], H and W multiples of 32.

        Returns 3 tensors (B, 4*reg_max + nc, H/s, W/s) for s = 8, 16, 32: channels
        [k*reg_max:(k+1)*reg_max] are DFL logits of side k (l, t, r, b), channels
        [4*reg_max:] class logits before sigmoid.
        """
        # backbone
        x = self.stage2(self.down2(self.stem(x)))  # (B, c3, H/4, W/4)
        p3 = self.stage3(self.down3(x))  # (B, c4, H/8, W/8)
        p4 = self.stage4(self.down4(p3))  # (B, c4, H/16, W/16)
        p5 = self.psa(self.sppf(self.stage5(self.down5(p4))))  # (B, c5, H/32, W/32)

        # neck
        n4 = self.fpn4(torch.cat((self.up(p5), p4), dim=1))  # (B, c4, H/16, W/16)
        out8 = self.fpn3(torch.cat((self.up(n4), p3), dim=1))  # (B, c3, H/8, W/8)
        out16 = self.pan4(torch.cat((self.pan_down3(out8), n4), dim=1))  # (B, c4, H/16, W/16)
        out32 = self.pan5(torch.cat((self.pan_down4(out16), p5), dim=1))  # (B, c5, H/32, W/32)

        return self.head([out8, out16, out32])

    def infer(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, 3, H, W) -> boxes (B, A, 4) xyxy in input pixels, scores (B, A, nc) after sigmoid."""
        return decode_torch(self.forward(x), self.cfg.strides, self.cfg.reg_max)

    def fuse(self) -> "YOLO":
        """Fold every BatchNorm into its conv, in place (for inference and export). Returns self."""
        for m in self.modules():
            if isinstance(m, ConvBNSiLU):
                m.fuse()
        return self


def decode_torch(
    feats: list[torch.Tensor], strides: tuple[int, ...] | list[int], reg_max: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode raw head outputs into boxes and scores. Export-friendly: no loops over anchors,
    anchor grids built with arange from the feature shapes (dynamic batch, H and W work).

    feats[i]: (B, 4*reg_max + C, H_i, W_i) at stride strides[i].
    Returns boxes (B, A, 4) as x1, y1, x2, y2 in input pixels and scores (B, A, C) after
    sigmoid, A = sum(H_i * W_i). Anchors run level by level, row-major within a level.
    Anchor centre ((j + 0.5) * s, (i + 0.5) * s); each side is the DFL expectation
    sum_k softmax(logits)_k * k, in units of the stride.
    """
    assert len(feats) == len(strides), f"{len(feats)} feature maps but {len(strides)} strides"
    all_boxes, all_scores = [], []
    for x, s in zip(feats, strides):
        B, _, H, W = x.shape
        x = x.flatten(2)  # (B, 4*R + C, N), N = H*W row-major
        bins = torch.arange(reg_max, dtype=x.dtype, device=x.device).view(1, 1, reg_max, 1)  # (1, 1, R, 1)
        dfl = x[:, : 4 * reg_max].reshape(B, 4, reg_max, -1).softmax(dim=2)  # (B, 4, R, N)
        dist = (dfl * bins).sum(dim=2)  # (B, 4, N): l, t, r, b in stride units
        cy = (torch.arange(H, dtype=x.dtype, device=x.device) + 0.5) * s  # (H,)
        cx = (torch.arange(W, dtype=x.dtype, device=x.device) + 0.5) * s  # (W,)
        cy, cx = torch.meshgrid(cy, cx, indexing="ij")  # (H, W) each
        cx, cy = cx.reshape(1, -1), cy.reshape(1, -1)  # (1, N)
        l, t, r, b = dist.unbind(dim=1)  # (B, N) each
        box = torch.stack((cx - l * s, cy - t * s, cx + r * s, cy + b * s), dim=-1)  # (B, N, 4)
        all_boxes.append(box)
        all_scores.append(x[:, 4 * reg_max :].sigmoid().transpose(1, 2))  # (B, N, C)
    return torch.cat(all_boxes, dim=1), torch.cat(all_scores, dim=1)


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def gflops(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> float:
    """GFLOPs of one forward pass on a (1, 3, imgsz, imgsz) input, counted as 2 x multiply-adds
    of Conv2d, Linear and attention matmuls (forward hooks; BN, activations, pooling not counted)."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    macs = 0

    def conv_hook(m: nn.Conv2d, inp, out) -> None:
        nonlocal macs
        kh, kw = m.kernel_size
        macs += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp, out) -> None:
        nonlocal macs
        macs += out.numel() * m.in_features

    def attn_hook(m: Attention, inp, out) -> None:
        nonlocal macs
        macs += m.matmul_macs(inp[0].shape)

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, Attention):
            hooks.append(m.register_forward_hook(attn_hook))
    was_training = model.training
    p = next(model.parameters())
    try:
        model.eval()
        model(torch.zeros(1, 3, h, w, dtype=p.dtype, device=p.device))
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was_training)
    return 2 * macs / 1e9


def model_summary(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> dict:
    """{"params": int, "gflops": float} for `model` at `imgsz`."""
    return {"params": count_params(model), "gflops": gflops(model, imgsz)}
