"""The lecture slides' CNN arithmetic as small pure functions.

Sizes, parameter counts and multiply–accumulate counts (MACs, "multiplications" on the slides) are
returned as ``int``; ratios, averages and probabilities as ``float``. No torch needed (except to run
torchvision's own ``roi_pool`` beside the lecture's RoI pooling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

__all__ = [
    "BottleneckCost",
    "ROI_EXAMPLE_BOX",
    "ROI_EXAMPLE_MAP",
    "ROI_EXAMPLE_OUTPUT",
    "RoiBin",
    "SeparableCost",
    "avg_pool",
    "bottleneck_comparison",
    "conv_macs",
    "conv_output_size",
    "conv_params",
    "fc_params",
    "max_pool",
    "roi_axis_bins",
    "roi_pool",
    "separable_comparison",
    "softmax",
    "torchvision_roi_pool",
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


# -- RoI pooling ------------------------------------------------------------------------------------------------
# The lecture's worked example (the deepsense.ai illustration): one 8×8 feature map, one region and a 2×2 output.
ROI_EXAMPLE_MAP = [
    [0.88, 0.44, 0.14, 0.16, 0.37, 0.77, 0.96, 0.27],
    [0.19, 0.45, 0.57, 0.16, 0.63, 0.29, 0.71, 0.70],
    [0.66, 0.26, 0.82, 0.64, 0.54, 0.73, 0.59, 0.26],
    [0.85, 0.34, 0.76, 0.84, 0.29, 0.75, 0.62, 0.25],
    [0.32, 0.74, 0.21, 0.39, 0.34, 0.03, 0.33, 0.48],
    [0.20, 0.14, 0.16, 0.13, 0.73, 0.65, 0.96, 0.32],
    [0.19, 0.69, 0.09, 0.86, 0.88, 0.07, 0.01, 0.48],
    [0.83, 0.24, 0.97, 0.04, 0.24, 0.35, 0.50, 0.91],
]
# (x1, y1, x2, y2), inclusive feature-map cells: columns 0–6 and rows 3–7, a region 7 wide and 5 tall.
ROI_EXAMPLE_BOX = (0, 3, 6, 7)
ROI_EXAMPLE_OUTPUT = (2, 2)  # (rows, columns) of the pooled output
ROI_METHODS = ("lecture", "torchvision")


@dataclass(frozen=True)
class RoiBin:
    """One output cell of RoI pooling: the feature-map rows and columns it reads, and their maximum."""

    rows: range
    cols: range
    value: float  # 0 for an empty bin (torchvision's convention)

    @property
    def cells(self) -> list[tuple[int, int]]:
        return [(r, c) for r in self.rows for c in self.cols]


def roi_axis_bins(first: int, last: int, n: int, method: str = "lecture") -> list[range]:
    """The cells each of ``n`` bins reads along one axis of the region ``first … last`` (inclusive cells).

    ``"lecture"`` splits the region's ``h = last − first + 1`` cells into near-equal parts that tile it: bin ``i``
    starts at ``⌊i·h/n⌋`` (for ``n = 2``: ``⌊h/2⌋`` cells, then the rest). ``"torchvision"`` is
    ``torchvision.ops.roi_pool``'s rule: bin ``i`` spans ``⌊i·h/n⌋ … ⌈(i+1)·h/n⌉ − 1``, so where ``n`` does not
    divide ``h`` neighbouring bins share a cell.

    >>> roi_axis_bins(3, 7, 2)
    [range(3, 5), range(5, 8)]
    >>> roi_axis_bins(3, 7, 2, "torchvision")
    [range(3, 6), range(5, 8)]
    """
    if method not in ROI_METHODS:
        raise ValueError(f"Unknown RoI pooling method '{method}'; choose one of {', '.join(ROI_METHODS)}.")
    h = last - first + 1
    if n < 1:
        raise ValueError(f"The output needs at least 1 cell along each axis; got {n}.")
    if method == "lecture":
        if h < n:
            raise ValueError(f"A region {h} cell(s) long cannot be split into {n} parts: make the box at least "
                             f"{n} cells long or the output smaller.")
        edges = [first + i * h // n for i in range(n + 1)]
        return [range(a, b) for a, b in zip(edges, edges[1:])]
    # torchvision/csrc/ops/cpu/roi_pool_kernel.cpp, in exact integers: floor(i·h/n) … ceil((i+1)·h/n).
    return [range(first + i * h // n, first - (-(i + 1) * h // n)) for i in range(n)]


def _check_roi(grid: Sequence[Sequence[float]], box: Sequence[int], output: Sequence[int]) -> tuple[int, int]:
    rows = len(grid)
    if rows == 0 or any(len(row) != len(grid[0]) for row in grid):
        raise ValueError("The feature map must be a non-empty list of rows that all have the same length.")
    cols = len(grid[0])
    x1, y1, x2, y2 = box
    if not (0 <= x1 <= x2 < cols and 0 <= y1 <= y2 < rows):
        raise ValueError(f"The box ({x1}, {y1}, {x2}, {y2}) must lie on the {rows}×{cols} map with x1 ≤ x2 and "
                         f"y1 ≤ y2: x from 0 to {cols - 1}, y from 0 to {rows - 1}.")
    if len(output) != 2 or min(output) < 1:
        raise ValueError(f"The output size must be two whole numbers ≥ 1 (rows, columns); got {tuple(output)}.")
    return rows, cols


def roi_pool(grid: Sequence[Sequence[float]], box: Sequence[int] = ROI_EXAMPLE_BOX,
             output: Sequence[int] = ROI_EXAMPLE_OUTPUT, method: str = "lecture") -> list[list[RoiBin]]:
    """RoI max pooling of one region of one feature map: ``output`` = (rows, columns) bins, each the maximum of
    the cells it reads (`roi_axis_bins` says which, per ``method``). ``box`` = (x1, y1, x2, y2), inclusive
    feature-map cells (spatial scale 1).

    >>> [[b.value for b in row] for row in roi_pool(ROI_EXAMPLE_MAP)]
    [[0.85, 0.84], [0.97, 0.96]]
    >>> [[b.value for b in row] for row in roi_pool(ROI_EXAMPLE_MAP, method="torchvision")]
    [[0.85, 0.96], [0.97, 0.96]]
    """
    _check_roi(grid, box, output)
    x1, y1, x2, y2 = box
    row_bins = roi_axis_bins(y1, y2, output[0], method)
    col_bins = roi_axis_bins(x1, x2, output[1], method)
    return [[RoiBin(r, c, max((grid[i][j] for i in r for j in c), default=0)) for c in col_bins] for r in row_bins]


def torchvision_roi_pool(grid: Sequence[Sequence[float]], box: Sequence[int] = ROI_EXAMPLE_BOX,
                         output: Sequence[int] = ROI_EXAMPLE_OUTPUT) -> list[list[float]]:
    """``torchvision.ops.roi_pool`` itself on ``grid`` (one channel, float64) and ``box`` at spatial scale 1: the
    reference `roi_pool(..., method="torchvision")` reproduces."""
    import torch  # only here: the rest of this module needs no torch
    from torchvision.ops import roi_pool as tv_roi_pool

    _check_roi(grid, box, output)
    fmap = torch.tensor(grid, dtype=torch.float64)[None, None]
    boxes = torch.tensor([[0, *box]], dtype=torch.float64)  # (batch index, x1, y1, x2, y2)
    return tv_roi_pool(fmap, boxes, output_size=tuple(output), spatial_scale=1.0)[0, 0].tolist()
