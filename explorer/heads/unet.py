"""The U-Net decoder on a backbone's levels: up-convolutions, skip concatenations, two conv–BN–ReLU each."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..blocks.conv import ConvBNReLU
from ..components import Setting, register
from ..validation import MAX_CLASSES
from .common import Features, check_levels

__all__ = ["UNetHead"]

LEVELS_ERROR = "A U-Net decoder needs at least two backbone stages; choose stages 1–4 or pick the FCN head."


def _unet_cost(settings: dict, levels: list) -> tuple:
    params = acts = 0
    for (skip, sh, sw), (prev, _, _) in zip(reversed(levels[:-1]), reversed(levels[1:])):
        params += 4 * prev * skip + 27 * skip * skip
        acts += 3 * skip * sh * sw
    c0, h0, w0 = levels[0]
    return params + c0 * settings["num_classes"], acts + settings["num_classes"] * h0 * w0


@register("head", "unet", title="U-Net", tasks=("segmentation",), order=80, min_levels=2,
          levels_error=LEVELS_ERROR, default_levels=4, estimate=_unet_cost,
          settings=(Setting("num_classes", "int", 21, 1, MAX_CLASSES, help="Classes per pixel."),),
          description="A decoder that climbs back through the chosen stages with up-convolutions and skip "
                      "connections.")
def _unet(in_channels, *, input_size, num_classes, upsample="transpose", **_):
    return UNetHead(in_channels, num_classes, input_size, upsample=upsample)


class _UNetUp(nn.Module):
    """One U-Net decoder step: upsample, fix the size to the skip's, concatenate the skip, two conv–BN–ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, upsample: str) -> None:
        super().__init__()
        if upsample == "transpose":
            # The paper's "up-convolution": 2×2 transposed conv, stride 2, halving towards the skip's width.
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, skip_channels, 2, stride=2)
            cat_channels = 2 * skip_channels
        else:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            cat_channels = in_channels + skip_channels
        self.conv1 = ConvBNReLU(cat_channels, skip_channels, 3)
        self.conv2 = ConvBNReLU(skip_channels, skip_channels, 3)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x)
        if x.shape[-2:] != skip.shape[-2:]:  # odd sizes or levels not exactly ×2 apart
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.conv2(self.conv1(torch.cat([skip, x], dim=1)))


class UNetHead(nn.Module):
    """U-Net decoder (Ronneberger et al., 2015, "U-Net: Convolutional Networks for Biomedical Image
    Segmentation") on a backbone's levels.

    From the coarsest level up: at each finer level an up-convolution (``upsample="transpose"``, a 2×2
    stride-2 transposed conv to the skip's channel count) or bilinear upsampling (``"bilinear"``, channels
    kept), concatenation of the skip, two 3×3 conv–BN–ReLU to the skip's channel count; then a 1×1 conv to
    ``num_classes`` and bilinear upsampling to ``input_size`` (backbones start below input resolution).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        input_size: Sequence[int],
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        if upsample not in ("transpose", "bilinear"):
            raise ValueError(f"Unknown U-Net upsampling {upsample!r}; choose 'transpose' or 'bilinear'.")
        if len(in_channels) < 2:
            raise ValueError(LEVELS_ERROR)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        # decoder[j] joins level L−2−j (coarse → fine).
        ups = []
        c = in_channels[-1]
        for skip_c in reversed(in_channels[:-1]):
            ups.append(_UNetUp(c, skip_c, upsample))
            c = skip_c
        self.decoder = nn.ModuleList(ups)
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, features: Features) -> Tensor:
        xs = check_levels(features, len(self.decoder) + 1, type(self).__name__)
        x = xs[-1]
        for up, skip in zip(self.decoder, reversed(xs[:-1])):
            x = up(x, skip)
        x = self.classifier(x)
        return F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
