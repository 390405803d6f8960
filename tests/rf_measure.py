"""Measure a receptive field the honest way: the gradient support of one output unit.

Random positive weights, BatchNorm as identity, max-pool replaced by average pool (same window), positive input,
float64: then every path from an input pixel to the unit carries a positive gradient, so the support of the
gradient is exactly the theoretical field. Traps that would make the measurement lie are removed: ReLU6 /
Hardtanh saturate under positive weights (MobileNet v2), tiny layer-scale factors underflow far contributions
(ConvNeXt), and SE gates make the support global (removed when measuring the convolutional path).

`gradient_support` measures the centre unit of a torch.fx node; `unit_supports` any units of the model's output
or of a submodule's output (a forward hook, so models with loops and dict outputs — necks, U-Nets — work).
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


def _pick(out, level=None):
    """The tensor of a model or module output: a dict / list / tuple by ``level`` (key or index)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        return out[level] if level is not None else next(iter(out.values()))
    return out[level if level is not None else 0]


def support_of(x: torch.Tensor, out: torch.Tensor, unit, retain: bool = False):
    """((top, bottom), (left, right)) of the input pixels whose gradient is non-zero for output ``unit`` (i, j)
    of ``out`` (all channels summed); None when no pixel reaches it. ``x`` must require grad."""
    i, j = unit
    (g,) = torch.autograd.grad(out[0, :, i, j].sum(), x, retain_graph=retain)
    g = g[0].abs().sum(0)
    rows, cols = torch.nonzero(g.sum(1)).flatten(), torch.nonzero(g.sum(0)).flatten()
    if not len(rows):
        return None
    return (int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))


def unit_supports(model: nn.Module, size, units, module: str | None = None, level=None, channels: int = 3,
                  seed: int = 1):
    """Gradient support of several output units of one forward: of the model's output, or of the output of the
    submodule ``module`` (taken with a forward hook, so models with loops and dict outputs work), or of one
    ``level`` of a dict / tuple output; a unit given as (level, i, j) picks its own level. ``size`` is an int
    (square) or (h, w). Returns the supports and the (h, w) of the (last) tensor measured."""
    h, w = (size, size) if isinstance(size, int) else size
    x = (torch.rand(1, channels, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
         + 0.5).requires_grad_(True)
    got = {}
    handle = None
    if module is not None:
        handle = model.get_submodule(module).register_forward_hook(lambda m, a, o: got.setdefault("out", o))
    try:
        out = model(x)
    finally:
        if handle is not None:
            handle.remove()
    res = got["out"] if module is not None else out
    sups = []
    for u in units:
        t = _pick(res, u[0] if len(u) == 3 else level)
        sups.append(support_of(x, t, u[-2:], retain=True))
    return sups, tuple(t.shape[-2:])
