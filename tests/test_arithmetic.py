"""The lecture slides' numbers, reproduced exactly by explorer.arithmetic."""

import doctest

import pytest
import torch
from torch import nn

from explorer import arithmetic
from explorer.arithmetic import (
    avg_pool,
    bottleneck_comparison,
    conv_macs,
    conv_output_size,
    conv_params,
    fc_params,
    max_pool,
    separable_comparison,
    softmax,
)

LECTURE_GRID = [[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]]


def test_docstring_examples():
    result = doctest.testmod(arithmetic)
    assert result.attempted > 0 and result.failed == 0


def test_conv_output_size():
    assert conv_output_size(224, 3, 1, 1) == 224
    assert conv_output_size(227, 11, 4, 0) == 55
    assert conv_output_size(32, 5) == 28  # LeNet C1, valid conv
    assert conv_output_size(224, 7, 2, 3) == 112  # ResNet conv1
    assert conv_output_size(10, 3, dilation=2) == 6
    assert isinstance(conv_output_size(224, 3, 1, 1), int)


@pytest.mark.parametrize("n, k, s, p, d", [(224, 7, 2, 3, 1), (13, 3, 2, 0, 1), (17, 3, 1, 2, 2), (5, 1, 3, 0, 1)])
def test_conv_output_size_matches_pytorch(n, k, s, p, d):
    conv = nn.Conv2d(1, 1, k, s, p, d, device="meta")
    assert conv(torch.empty(1, 1, n, n, device="meta")).shape[-1] == conv_output_size(n, k, s, p, d)


def test_conv_output_size_error_sentence():
    with pytest.raises(ValueError) as err:
        conv_output_size(3, 5)
    assert str(err.value) == (
        "A 5×5 kernel does not fit a 3-pixel input with padding 0; use padding ≥ 1 or a smaller kernel."
    )
    with pytest.raises(ValueError, match="stride"):
        conv_output_size(10, 3, stride=0)


def test_conv_params():
    assert conv_params(3, 64, 3, bias=False) == 1728  # VGG16 first conv, slide table
    assert conv_params(3, 64, 3) == 1792
    assert conv_params(64, 64, (3, 3), bias=False) == 36_864
    assert conv_params(32, 32, 3, bias=False, groups=32) == 288  # depthwise
    assert conv_params(6, 16, 5) == 2416  # LeNet C3
    with pytest.raises(ValueError, match="groups"):
        conv_params(6, 16, 3, groups=4)


@pytest.mark.parametrize(
    "c_in, c_out, k, bias, groups", [(3, 64, 3, True, 1), (64, 128, (1, 3), False, 1), (32, 64, 3, False, 32)]
)
def test_conv_params_matches_pytorch(c_in, c_out, k, bias, groups):
    conv = nn.Conv2d(c_in, c_out, k, bias=bias, groups=groups, device="meta")
    assert sum(p.numel() for p in conv.parameters()) == conv_params(c_in, c_out, k, bias, groups)


def test_fc_params():
    assert fc_params(25088, 4096, bias=False) == 102_760_448  # VGG16 first FC, slide table
    assert fc_params(4096, 4096, bias=False) == 16_777_216
    assert fc_params(120, 84) == 10_164


def test_conv_macs():
    assert conv_macs(200, 92, 5, 32, 32) == 471_040_000
    assert conv_macs(3, 3, 5, 8, 8, groups=3) == 4_800


def test_bottleneck_comparison():
    cost = bottleneck_comparison()
    assert cost.direct == 471_040_000
    assert cost.reduce == 3_276_800
    assert cost.conv == 37_683_200
    assert cost.bottleneck == 40_960_000
    assert cost.ratio == pytest.approx(471_040_000 / 40_960_000)  # ≈ 11.5, "about 1/10"


def test_separable_comparison():
    cost = separable_comparison()
    assert cost.normal == 1_228_800
    assert cost.depthwise == 4_800
    assert cost.pointwise == 49_152
    assert cost.separable == 4_800 + 49_152 == 53_952
    assert cost.ratio == pytest.approx(1_228_800 / 53_952)


def test_max_pool_lecture_example():
    assert max_pool(LECTURE_GRID) == [[6, 8], [3, 4]]
    assert max_pool(LECTURE_GRID, size=3, stride=1) == [[7, 8], [7, 8]]


def test_avg_pool():
    assert avg_pool(LECTURE_GRID) == [[3.25, 5.25], [2.0, 2.0]]
    with pytest.raises(ValueError):
        avg_pool([[1, 2], [3]])


def test_pooling_matches_pytorch():
    t = torch.tensor(LECTURE_GRID, dtype=torch.float32)[None, None]
    assert max_pool(LECTURE_GRID) == nn.MaxPool2d(2)(t)[0, 0].int().tolist()
    assert avg_pool(LECTURE_GRID) == nn.AvgPool2d(2)(t)[0, 0].tolist()


def test_softmax_lecture_example():
    probs = softmax([2.0, 1.0, 0.1])
    assert [round(p, 2) for p in probs] == [0.66, 0.24, 0.10]
    assert probs == pytest.approx([0.659, 0.242, 0.099], abs=1e-3)
    assert sum(probs) == pytest.approx(1.0)
    assert softmax([1000.0, 1000.0]) == [0.5, 0.5]  # no overflow
