"""The lecture slides' CNN arithmetic as small pure functions.

Sizes, parameter counts and multiply–accumulate counts (MACs, "multiplications" on the slides) are
returned as ``int``; ratios, averages and probabilities as ``float``. No torch needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

__all__ = [
    "BottleneckCost",
    "SeparableCost",
    "avg_pool",
    "bottleneck_comparison",
    "conv_macs",
    "conv_output_size",
    "conv_params",
    "fc_params",
    "max_pool",
    "separable_comparison",
    "softmax",
]


def _pair(kernel: int | Sequence[int]) -> tuple[int, int]:
    """``3`` → ``(3, 3)``; ``(3, 5)`` → ``(3, 5)``."""
    if isinstance(kernel, int):
        return kernel, kernel
    kh, kw = kernel
    return int(kh), int(kw)


def _check_groups(c_in: int, c_out: int, groups: int) -> None:
    if groups < 1 or c_in % groups or c_out % groups:
        raise ValueError(
            f"groups={groups} must be at least 1 and divide both the input channels ({c_in}) "
            f"and the output channels ({c_out})."
        )


def conv_output_size(n_in: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output size along one axis of a convolution or pooling window.

    ``N_out = ⌊(N_in + 2P − D·(K − 1) − 1) / S⌋ + 1``, which for ``D = 1`` is the slide's
    ``(N_in − F + 2P) / S + 1`` rounded down (as PyTorch does).

    >>> conv_output_size(224, 3, 1, 1)
    224
    >>> conv_output_size(227, 11, 4, 0)
    55

    Raises ``ValueError`` when the kernel does not fit the (padded) input.
    """
    if n_in < 1 or kernel < 1 or stride < 1 or padding < 0 or dilation < 1:
        raise ValueError(
            f"Need input size ≥ 1, kernel ≥ 1, stride ≥ 1, padding ≥ 0 and dilation ≥ 1; got "
            f"n_in={n_in}, kernel={kernel}, stride={stride}, padding={padding}, dilation={dilation}."
        )
    span = dilation * (kernel - 1) + 1  # the input extent one output value sees
    n_out = (n_in + 2 * padding - span) // stride + 1
    if n_out < 1:
        needed = math.ceil((span - n_in) / 2)  # smallest padding that lets the kernel fit once
        dilated = f" (dilation {dilation} spreads it over {span} pixels)" if dilation > 1 else ""
        raise ValueError(
            f"A {kernel}×{kernel} kernel{dilated} does not fit a {n_in}-pixel input with padding "
            f"{padding}; use padding ≥ {needed} or a smaller kernel."
        )
    return n_out


def conv_params(
    c_in: int, c_out: int, kernel: int | Sequence[int], bias: bool = True, groups: int = 1
) -> int:
    """Learnable parameters of a 2-D convolution: ``(C_in/groups · K_h · K_w + bias) · C_out``.

    Each of the ``C_out`` filters sees ``C_in/groups`` channels (all of them for an ordinary conv,
    one for a depthwise conv with ``groups = C_in``).

    >>> conv_params(3, 64, 3, bias=False)
    1728
    """
    _check_groups(c_in, c_out, groups)
    kh, kw = _pair(kernel)
    return (c_in // groups * kh * kw + int(bias)) * c_out


def fc_params(n_in: int, n_out: int, bias: bool = True) -> int:
    """Learnable parameters of a fully connected layer: ``(N_in + 1) · N_out`` with bias.

    >>> fc_params(25088, 4096, bias=False)
    102760448
    """
    return (n_in + int(bias)) * n_out


def conv_macs(
    c_in: int, c_out: int, kernel: int | Sequence[int], h_out: int, w_out: int, groups: int = 1
) -> int:
    """Multiplications of a convolution: ``K_h · K_w · C_in/groups`` per output value, times
    ``H_out · W_out · C_out`` output values (bias additions not counted).

    >>> conv_macs(200, 92, 5, 32, 32)
    471040000
    """
    _check_groups(c_in, c_out, groups)
    kh, kw = _pair(kernel)
    return kh * kw * (c_in // groups) * h_out * w_out * c_out


@dataclass(frozen=True)
class BottleneckCost:
    """Multiplications of a direct conv versus a 1×1 reduction followed by the same conv."""

    direct: int  # K×K conv straight from C_in to C_out
    reduce: int  # 1×1 conv C_in → C_mid
    conv: int  # K×K conv C_mid → C_out
    bottleneck: int  # reduce + conv
    ratio: float  # direct / bottleneck: how many times cheaper the bottleneck is


@dataclass(frozen=True)
class SeparableCost:
    """Multiplications of a normal conv versus a depthwise separable one."""

    normal: int  # C_out kernels of K×K×C_in
    depthwise: int  # one K×K kernel per input channel
    pointwise: int  # C_out kernels of 1×1×C_in
    separable: int  # depthwise + pointwise
    ratio: float  # normal / separable: how many times cheaper the separable conv is


def bottleneck_comparison(
    h: int = 32, w: int = 32, c_in: int = 200, c_out: int = 92, kernel: int = 5, c_mid: int = 16
) -> BottleneckCost:
    """The slide's 1×1 bottleneck example ("same" padding, so outputs are h × w).

    Defaults: 5×5 conv, 200 → 92 channels on 32×32 costs 471,040,000 multiplications; reducing to
    16 channels with a 1×1 conv first costs 3,276,800 + 37,683,200 = 40,960,000 (≈ 11.5× fewer).
    """
    direct = conv_macs(c_in, c_out, kernel, h, w)
    reduce = conv_macs(c_in, c_mid, 1, h, w)
    conv = conv_macs(c_mid, c_out, kernel, h, w)
    total = reduce + conv
    return BottleneckCost(direct=direct, reduce=reduce, conv=conv, bottleneck=total, ratio=direct / total)


def separable_comparison(
    h: int = 8, w: int = 8, c_in: int = 3, c_out: int = 256, kernel: int = 5
) -> SeparableCost:
    """The slide's depthwise separable example ("same" padding: h·w = 64 output positions).

    Defaults: 256 kernels of 5×5×3 cost 1,228,800 multiplications; depthwise 5×5 per channel
    (4,800) plus pointwise 1×1×3 × 256 (49,152) cost 53,952 (≈ 22.8× fewer).
    """
    normal = conv_macs(c_in, c_out, kernel, h, w)
    depthwise = conv_macs(c_in, c_in, kernel, h, w, groups=c_in)
    pointwise = conv_macs(c_in, c_out, 1, h, w)
    total = depthwise + pointwise
    return SeparableCost(
        normal=normal, depthwise=depthwise, pointwise=pointwise, separable=total, ratio=normal / total
    )


def _pool(grid: Sequence[Sequence[float]], size: int, stride: int, reduce) -> list[list]:
    """Slide a ``size × size`` window with ``stride`` over ``grid`` (no padding) and reduce each window."""
    rows = len(grid)
    if rows == 0 or any(len(row) != len(grid[0]) for row in grid):
        raise ValueError("The grid must be a non-empty list of rows that all have the same length.")
    cols = len(grid[0])
    h_out = conv_output_size(rows, size, stride)
    w_out = conv_output_size(cols, size, stride)
    return [
        [
            reduce([grid[i * stride + di][j * stride + dj] for di in range(size) for dj in range(size)])
            for j in range(w_out)
        ]
        for i in range(h_out)
    ]


def max_pool(grid: Sequence[Sequence[float]], size: int = 2, stride: int = 2) -> list[list]:
    """Max pooling on a list of lists (valid windows, no padding).

    >>> max_pool([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])
    [[6, 8], [3, 4]]
    """
    return _pool(grid, size, stride, max)


def avg_pool(grid: Sequence[Sequence[float]], size: int = 2, stride: int = 2) -> list[list[float]]:
    """Average pooling on a list of lists (valid windows, no padding), as in LeNet.

    >>> avg_pool([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])
    [[3.25, 5.25], [2.0, 2.0]]
    """
    return _pool(grid, size, stride, lambda window: sum(window) / len(window))


def softmax(logits: Sequence[float]) -> list[float]:
    """Softmax ``exp(z_i) / Σ_j exp(z_j)``, shifted by the maximum so large logits do not overflow.

    >>> [round(p, 2) for p in softmax([2.0, 1.0, 0.1])]
    [0.66, 0.24, 0.1]
    """
    if len(logits) == 0:
        raise ValueError("Softmax needs at least one logit.")
    top = max(logits)
    exps = [math.exp(z - top) for z in logits]
    total = sum(exps)
    return [e / total for e in exps]
