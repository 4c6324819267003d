"""FOMM building blocks in PaddlePaddle dygraph.

Sub-layer attribute names follow PaddleGAN's ``ppgan/modules/first_order.py`` so that state
dicts carry the checkpoint's structured names (``conv``, ``norm``, ``conv1``/``conv2``/
``norm1``/``norm2``, ``down_blocks``/``up_blocks``, and the anti-alias buffer ``weight``).
BatchNorm layers are ``nn.BatchNorm2D`` (keys ``weight``, ``bias``, ``_mean``, ``_variance``).

Everything inside ``forward`` is made of Paddle ops that export (conv2d, interpolate,
grid_sample, avg_pool2d, softmax, elementwise maths); shapes come from the inputs' static
shapes, never from tensor values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

BN_EPSILON = 1e-5


def _batch_norm(num_features: int) -> nn.BatchNorm2D:
    return nn.BatchNorm2D(num_features, epsilon=BN_EPSILON)


def make_coordinate_grid(h: int, w: int, dtype: Any = "float32") -> paddle.Tensor:
    """A [h, w, 2] grid of (x, y) in [-1, 1]; x = 2*i/(w-1) - 1 runs along the width."""
    x = paddle.arange(w, dtype=dtype)
    y = paddle.arange(h, dtype=dtype)
    x = 2 * (x / (w - 1)) - 1
    y = 2 * (y / (h - 1)) - 1
    xx = x.reshape([1, w]).expand([h, w])
    yy = y.reshape([h, 1]).expand([h, w])
    return paddle.stack([xx, yy], axis=2)


def kp2gaussian(value: paddle.Tensor, h: int, w: int, kp_variance: float) -> paddle.Tensor:
    """Gaussians exp(-0.5 |z - kp|^2 / variance) at ``value`` [B, K, 2] -> [B, K, h, w]."""
    grid = make_coordinate_grid(h, w, dtype=value.dtype)
    grid = grid.reshape([1, 1, h, w, 2])
    mean = value.unsqueeze([2, 3])  # [B, K, 1, 1, 2]
    diff = grid - mean
    return paddle.exp(-0.5 * (diff**2).sum(-1) / kp_variance)


def invert_2x2(m: paddle.Tensor) -> paddle.Tensor:
    """Closed-form inverse of a batch of 2x2 matrices [..., 2, 2] (exports without ``inverse``)."""
    a = m[..., 0, 0]
    b = m[..., 0, 1]
    c = m[..., 1, 0]
    d = m[..., 1, 1]
    det = a * d - b * c
    row0 = paddle.stack([d, -b], axis=-1)
    row1 = paddle.stack([-c, a], axis=-1)
    return paddle.stack([row0, row1], axis=-2) / det.unsqueeze([-1, -2])


def matmul_2x2(p: paddle.Tensor, q: paddle.Tensor) -> paddle.Tensor:
    """Batched product of 2x2 matrices ``p @ q`` written out elementwise."""
    r00 = p[..., 0, 0] * q[..., 0, 0] + p[..., 0, 1] * q[..., 1, 0]
    r01 = p[..., 0, 0] * q[..., 0, 1] + p[..., 0, 1] * q[..., 1, 1]
    r10 = p[..., 1, 0] * q[..., 0, 0] + p[..., 1, 1] * q[..., 1, 0]
    r11 = p[..., 1, 0] * q[..., 0, 1] + p[..., 1, 1] * q[..., 1, 1]
    return paddle.stack([paddle.stack([r00, r01], axis=-1),
                         paddle.stack([r10, r11], axis=-1)], axis=-2)


class ResBlock2d(nn.Layer):
    """Pre-activation residual block: BN, ReLU, conv, BN, ReLU, conv, plus the input."""

    def __init__(self, in_features: int, kernel_size: int, padding: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2D(in_features, in_features, kernel_size, padding=padding)
        self.conv2 = nn.Conv2D(in_features, in_features, kernel_size, padding=padding)
        self.norm1 = _batch_norm(in_features)
        self.norm2 = _batch_norm(in_features)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class UpBlock2d(nn.Layer):
    """Nearest x2 upsampling, then conv, BN, ReLU."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3,
                 padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2D(in_features, out_features, kernel_size, padding=padding)
        self.norm = _batch_norm(out_features)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = F.interpolate(x, scale_factor=2, mode="nearest")
        return F.relu(self.norm(self.conv(out)))


class DownBlock2d(nn.Layer):
    """Conv, BN, ReLU, then 2x2 average pooling."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3,
                 padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2D(in_features, out_features, kernel_size, padding=padding)
        self.norm = _batch_norm(out_features)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = F.relu(self.norm(self.conv(x)))
        return F.avg_pool2d(out, kernel_size=2, stride=2)


class SameBlock2d(nn.Layer):
    """Conv, BN, ReLU at the same resolution."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3,
                 padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2D(in_features, out_features, kernel_size, padding=padding)
        self.norm = _batch_norm(out_features)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.relu(self.norm(self.conv(x)))


class Encoder(nn.Layer):
    """Hourglass encoder; returns the input and every down-block output, shallow to deep."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256) -> None:
        super().__init__()
        blocks = []
        for i in range(num_blocks):
            cin = in_features if i == 0 else min(max_features, block_expansion * (2**i))
            cout = min(max_features, block_expansion * (2 ** (i + 1)))
            blocks.append(DownBlock2d(cin, cout, kernel_size=3, padding=1))
        self.down_blocks = nn.LayerList(blocks)

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Layer):
    """Hourglass decoder: up-block the deepest map, concat ``[up, skip]``, repeat."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            cin = (1 if i == num_blocks - 1 else 2) * min(max_features,
                                                          block_expansion * (2 ** (i + 1)))
            cout = min(max_features, block_expansion * (2**i))
            blocks.append(UpBlock2d(cin, cout, kernel_size=3, padding=1))
        self.up_blocks = nn.LayerList(blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, features: list[paddle.Tensor]) -> paddle.Tensor:
        out = features[-1]
        for i, block in enumerate(self.up_blocks):
            out = block(out)
            out = paddle.concat([out, features[-2 - i]], axis=1)
        return out


class Hourglass(nn.Layer):
    """U-Net style hourglass; output has ``block_expansion + in_features`` channels."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256) -> None:
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.decoder(self.encoder(x))


def gaussian_kernel_2d(channels: int, scale: float) -> np.ndarray:
    """The anti-alias kernel [channels, 1, k, k] (float32) for a downscale by ``scale``."""
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    mean = (size - 1) / 2
    taps = np.exp(-((np.arange(size, dtype=np.float64) - mean) ** 2) / (2 * sigma**2 + 1e-9))
    kernel = np.outer(taps, taps)
    kernel /= kernel.sum()
    return np.tile(kernel[None, None].astype(np.float32), (channels, 1, 1, 1))


class AntiAliasInterpolation2d(nn.Layer):
    """Gaussian blur (zero padded, depthwise) then pick every ``1/scale``-th pixel from 0.

    The kernel is a persistable buffer named ``weight`` (it is in the checkpoints).
    """

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        inv = 1 / scale
        if scale <= 0 or scale > 1 or abs(inv - round(inv)) > 1e-6:
            raise ValueError(f"anti-alias scale must be 1/n for an integer n >= 1, got {scale}")
        self.step = round(inv)
        kernel = gaussian_kernel_2d(channels, scale)
        self.pad = kernel.shape[-1] // 2
        self.groups = channels
        self.register_buffer("weight", paddle.to_tensor(kernel))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = F.conv2d(x, self.weight, padding=self.pad, groups=self.groups)
        return out[:, :, :: self.step, :: self.step]


def box_mask(h: int, w: int, border: int, dtype: Any = "float32") -> paddle.Tensor:
    """[1, 1, h, w]: 1 inside, 0 on a ``border``-pixel frame."""
    inner = paddle.ones([1, 1, h - 2 * border, w - 2 * border], dtype=dtype)
    return F.pad(inner, [border, border, border, border], mode="constant", value=0.0)


def blur_2d(x: paddle.Tensor, taps: tuple[float, ...]) -> paddle.Tensor:
    """Zero-padded separable blur of [N, 1, h, w] with the odd-length 1-D kernel ``taps``."""
    k = len(taps)
    t = paddle.to_tensor(list(taps), dtype=x.dtype)
    out = F.conv2d(x, t.reshape([1, 1, k, 1]), padding=[k // 2, 0])
    return F.conv2d(out, t.reshape([1, 1, 1, k]), padding=[0, k // 2])


def gaussian_taps(size: int, sigma: float) -> tuple[float, ...]:
    """A normalised 1-D Gaussian of odd ``size`` (computed with ``math``; no tensors)."""
    mean = (size - 1) / 2
    raw = [math.exp(-((i - mean) ** 2) / (2 * sigma * sigma)) for i in range(size)]
    total = sum(raw)
    return tuple(v / total for v in raw)
