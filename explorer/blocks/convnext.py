"""The ConvNeXt block and its channels-first LayerNorm."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..components import register

__all__ = ["ConvNeXtBlock", "LayerNorm2d", "Permute"]


class Permute(nn.Module):
    """``x.permute(*dims)`` as a module, so the layout switch shows up in a layer table."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an N×C×H×W tensor (each pixel normalised on its own), as torchvision's.

    Used by ConvNeXt's downsampling layers (Liu et al., "A ConvNet for the 2020s", 2022). 2·C parameters.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: 7×7 depthwise → LayerNorm → 1×1 expand ×4 → GELU → 1×1 project → layer scale, + input.

    Liu et al., "A ConvNet for the 2020s" (2022), Fig. 4: an inverted bottleneck (as MobileNet v2) with the
    depthwise conv moved up to the narrow end, one normalisation and one activation per block, as a Swin
    transformer block. As torchvision's ``CNBlock``: the LayerNorm runs channels-last and the 1×1 convs are
    ``nn.Linear`` on that layout (the same weights as a 1×1 conv, plus bias); ``layer_scale`` is a learnable
    per-channel factor initialised to ``layer_scale_init`` (1e-6), so each block starts near the identity.
    Stochastic depth (a training regulariser) is left out. Channels and size are kept.
    """

    def __init__(self, channels: int, layer_scale_init: float = 1e-6, kernel_size: int = 7) -> None:
        super().__init__()
        self.block = nn.Sequential(
            OrderedDict(
                dwconv=nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels),
                to_channels_last=Permute((0, 2, 3, 1)),
                norm=nn.LayerNorm(channels, eps=1e-6),
                pwconv1=nn.Linear(channels, 4 * channels),
                act=nn.GELU(),
                pwconv2=nn.Linear(4 * channels, channels),
                to_channels_first=Permute((0, 3, 1, 2)),
            )
        )
        self.layer_scale = nn.Parameter(torch.full((channels, 1, 1), float(layer_scale_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layer_scale * self.block(x)


# -- the kind for a custom backbone (contract: explorer.blocks.factory.make_block) ---------------------------------
def _convnext_cost(ci: int, co: int, stride: int, hw_in: int, hw_out: int) -> tuple:
    down = 4 * ci * co if stride == 2 else ci * co if ci != co else 0
    return 49 * co + 8 * co * co + down, 8 * co * hw_out


@register("block", "convnext", title="ConvNeXt", order=110, year=2022, paper="A ConvNet for the 2020s",
          description="7×7 depthwise conv, LayerNorm, 1×1 expand ×4, GELU, 1×1 project, layer scale, residual.",
          estimate=_convnext_cost)
def _convnext_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    # ConvNeXt's downsampling layer (LayerNorm2d + 2×2 stride-2 conv) at stride 2, LayerNorm2d + 1×1 conv when
    # only the channels change, nothing otherwise.
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    if stride == 2 or in_channels != out_channels:
        k = 2 if stride == 2 else 1
        layers["downsample"] = nn.Sequential(OrderedDict(norm=LayerNorm2d(in_channels, eps=1e-6),
                                                         conv=nn.Conv2d(in_channels, out_channels, k, stride=k)))
    layers["block"] = ConvNeXtBlock(out_channels)
    return nn.Sequential(layers)
