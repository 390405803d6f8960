"""Measure a receptive field the honest way: the gradient support of one output unit.

Random positive weights, BatchNorm as identity, max-pool replaced by average pool (same window), positive input,
float64: then every path from an input pixel to the unit carries a positive gradient, so the support of the
gradient is exactly the theoretical field. Traps that would make the measurement lie are removed: ReLU6 /
Hardtanh saturate under positive weights (MobileNet v2), tiny layer-scale factors underflow far contributions
(ConvNeXt), and SE gates make the support global (removed when measuring the convolutional path).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops.misc import SqueezeExcitation
from torchvision.models.feature_extraction import create_feature_extractor


def prepare(model: nn.Module, remove_se: bool = False) -> nn.Module:
    def swap(parent: nn.Module):
        for name, child in parent.named_children():
            if isinstance(child, (nn.BatchNorm2d, nn.ReLU6, nn.Hardtanh, nn.Dropout)) \
                    or (remove_se and isinstance(child, SqueezeExcitation)):
                setattr(parent, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                   ceil_mode=child.ceil_mode))
            else:
                swap(child)

    swap(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_scale" in name:
                p.fill_(1.0)
                continue
            fan_in = max(1, p[0].numel()) if p.dim() > 1 else 1
            p.copy_((torch.rand(p.shape, generator=gen) * 0.5 + 0.5) / fan_in)
    return model.double().eval()


def gradient_support(model: nn.Module, node: str, size: int, channels: int = 3):
    """(rows, cols, unit): inclusive pixel ranges whose gradient is non-zero for the centre unit of ``node``."""
    fx = create_feature_extractor(model, return_nodes={node: "out"})
    x = (torch.rand(1, channels, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
         + 0.5).requires_grad_(True)
    out = fx(x)["out"]
    i, j = out.shape[-2] // 2, out.shape[-1] // 2
    out[0, :, i, j].sum().backward()
    g = x.grad[0].abs().sum(0)
    rows = torch.nonzero(g.sum(1)).flatten()
    cols = torch.nonzero(g.sum(0)).flatten()
    return (int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max())), (i, j)
