"""Building blocks of the YOLO11 reference model.

Every learned convolution goes through `ConvBNSiLU`, so `fuse()` on that one
class is all Conv+BN folding needs. Shapes in comments use (B, C, H, W).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class ConvBNSiLU(nn.Module):
    """Conv2d (no bias, 'same' padding) -> BatchNorm2d -> SiLU.

    `act=False` leaves out the SiLU (used inside attention and the PSA feed-forward).
    `g` groups the convolution; `g == c_in == c_out` makes it depthwise.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, g: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, padding=k // 2, groups=g, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, c_out, H/s, W/s)
        return self.act(self.bn(self.conv(x)))

    @property
    def fused(self) -> bool:
        return not isinstance(self.bn, nn.BatchNorm2d)

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the BatchNorm running statistics into the conv weight and bias, in place.

        BN(conv(x)) = gamma * (W x + b - mean) / sqrt(var + eps) + beta
                    = (W * k) x + (beta + (b - mean) * k),   k = gamma / sqrt(var + eps)
        """
        if self.fused:
            return
        bn = self.bn
        k = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (c_out,)
        bias = self.conv.bias if self.conv.bias is not None else torch.zeros_like(bn.running_mean)
        self.conv.weight.mul_(k.view(-1, 1, 1, 1))
        self.conv.bias = nn.Parameter(bn.bias + (bias - bn.running_mean) * k)
        self.bn = nn.Identity()


class Bottleneck(nn.Module):
    """Two 3x3 ConvBNSiLU with a residual connection when shapes allow."""

    def __init__(self, c_in: int, c_out: int, shortcut: bool = True, e: float = 1.0):
        super().__init__()
        hidden = int(c_out * e)
        self.cv1 = ConvBNSiLU(c_in, hidden, 3)
        self.cv2 = ConvBNSiLU(hidden, c_out, 3)
        self.add = shortcut and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3k(nn.Module):
    """CSP block with two 1x1 branches: one through `n` Bottlenecks, one straight, then merged."""

    def __init__(self, c_in: int, c_out: int, n: int = 2, shortcut: bool = True, e: float = 0.5):
        super().__init__()
        hidden = int(c_out * e)
        self.cv1 = ConvBNSiLU(c_in, hidden, 1)
        self.cv2 = ConvBNSiLU(c_in, hidden, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut) for _ in range(n)))
        self.cv3 = ConvBNSiLU(2 * hidden, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, c_out, H, W)
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))


class C3k2(nn.Module):
    """YOLO11's CSP stage: split a 1x1 projection in two halves, run the second half
    through `n` inner blocks keeping every intermediate output, concatenate all, project.

    Inner block is a Bottleneck squeezing to half width (e=0.5), or a C3k (two full-width
    Bottlenecks in a CSP) when `c3k=True`.
    """

    def __init__(self, c_in: int, c_out: int, n: int = 1, c3k: bool = False, e: float = 0.5, shortcut: bool = True):
        super().__init__()
        self.hidden = int(c_out * e)
        self.cv1 = ConvBNSiLU(c_in, 2 * self.hidden, 1)
        self.m = nn.ModuleList(
            C3k(self.hidden, self.hidden, 2, shortcut) if c3k
            else Bottleneck(self.hidden, self.hidden, shortcut, e=0.5)
            for _ in range(n)
        )
        self.cv2 = ConvBNSiLU((2 + n) * self.hidden, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, c_out, H, W)
        ys = list(self.cv1(x).split((self.hidden, self.hidden), dim=1))  # 2 x (B, hidden, H, W)
        for block in self.m:
            ys.append(block(ys[-1]))
        return self.cv2(torch.cat(ys, dim=1))  # (B, (2+n)*hidden, H, W) -> (B, c_out, H, W)


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max-pools (receptive fields 5, 9, 13)."""

    def __init__(self, c_in: int, c_out: int, k: int = 5):
        super().__init__()
        hidden = c_in // 2
        self.cv1 = ConvBNSiLU(c_in, hidden, 1)
        self.pool = nn.MaxPool2d(k, stride=1, padding=k // 2)
        self.cv2 = ConvBNSiLU(4 * hidden, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, c_out, H, W)
        y0 = self.cv1(x)
        y1 = self.pool(y0)
        y2 = self.pool(y1)
        y3 = self.pool(y2)
        return self.cv2(torch.cat((y0, y1, y2, y3), dim=1))


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map.

    Queries and keys are `key_dim = head_dim * attn_ratio` wide, values `head_dim`.
    A depthwise 3x3 conv on the values adds positional information. Written with
    explicit matmuls (not scaled_dot_product_attention) so ONNX export gives plain
    MatMul/Softmax nodes that every TensorRT version and the INT8 quantizer handle.
    """

    def __init__(self, dim: int, num_heads: int, attn_ratio: float = 0.5):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} not divisible by num_heads {num_heads}"
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim**-0.5
        self.qkv = ConvBNSiLU(dim, dim + 2 * self.key_dim * num_heads, 1, act=False)
        self.proj = ConvBNSiLU(dim, dim, 1, act=False)
        self.pe = ConvBNSiLU(dim, dim, 3, g=dim, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        B, C, H, W = x.shape
        qkv = self.qkv(x).reshape(B, self.num_heads, 2 * self.key_dim + self.head_dim, H * W)
        q, k, v = qkv.split((self.key_dim, self.key_dim, self.head_dim), dim=2)  # (B, h, kd|kd|hd, N)
        attn = (q.transpose(-2, -1) @ k) * self.scale  # (B, h, N, N)
        attn = attn.softmax(dim=-1)
        y = v @ attn.transpose(-2, -1)  # (B, h, hd, N)
        y = y.reshape(B, C, H, W) + self.pe(v.reshape(B, C, H, W))
        return self.proj(y)

    def matmul_macs(self, x_shape: torch.Size) -> int:
        """Multiply-adds of the two attention matmuls for an input of `x_shape` (for `gflops`)."""
        B, _, H, W = x_shape
        n = H * W
        return B * self.num_heads * n * n * (self.key_dim + self.head_dim)


class PSABlock(nn.Module):
    """Transformer-style block: x + attention(x), then x + feed-forward(x) (1x1 convs, 2x expansion)."""

    def __init__(self, c: int, num_heads: int, attn_ratio: float = 0.5):
        super().__init__()
        self.attn = Attention(c, num_heads, attn_ratio)
        self.ffn = nn.Sequential(ConvBNSiLU(c, 2 * c, 1), ConvBNSiLU(2 * c, c, 1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        x = x + self.attn(x)
        return x + self.ffn(x)


class C2PSA(nn.Module):
    """CSP wrapper around `n` PSABlocks: attention runs on half the channels, the other half skips."""

    def __init__(self, c: int, n: int = 1, e: float = 0.5):
        super().__init__()
        self.hidden = int(c * e)
        self.cv1 = ConvBNSiLU(c, 2 * self.hidden, 1)
        self.m = nn.Sequential(*(PSABlock(self.hidden, num_heads=max(1, self.hidden // 64)) for _ in range(n)))
        self.cv2 = ConvBNSiLU(2 * self.hidden, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        a, b = self.cv1(x).split((self.hidden, self.hidden), dim=1)  # 2 x (B, hidden, H, W)
        return self.cv2(torch.cat((a, self.m(b)), dim=1))
