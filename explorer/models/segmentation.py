"""The three encoder–decoders of the segmentation homework, as complete models.

Each maps an image (N, in_channels, H, W) to per-pixel class logits (N, num_classes, H, W) at the input
resolution (softmax across channels at prediction time). The course trains them on Oxford-IIIT Pets
resized to 3×128×128 with three classes (pet, background, outline), hence the defaults. They differ in
how the decoder recovers spatial detail:

* :func:`encoder_decoder` — none: strided convs down, transposed convs up, no skips;
* :func:`pool_unpool` — SegNet: the decoder un-pools with the encoder's max-pooling indices;
* :func:`unet` — U-Net: encoder feature maps are concatenated into the decoder.

Like ``explorer.models.classic``, every model builds under ``with torch.device("meta"):`` and its forward
has no data-dependent control flow (``MaxUnpool2d`` also runs on meta tensors). Per-call tensors such as
pooling indices are local variables, never stored on the module. ``SEGMENTATION_MODELS`` at the bottom
describes each builder in the shape of ``CLASSIC_MODELS``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explorer.blocks.conv import ConvBNReLU

__all__ = [
    "SEGMENTATION_MODELS",
    "EncoderDecoder",
    "PoolUnpool",
    "UNet",
    "encoder_decoder",
    "pool_unpool",
    "unet",
]


def _to_input_size(logits: Tensor, x: Tensor) -> Tensor:
    # Exact for sizes divisible by 2^depth (128 at the defaults); otherwise fix the last pixel or two.
    if logits.shape[-2:] != x.shape[-2:]:
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return logits


class _UpConvBNReLU(nn.Sequential):
    """2×2 stride-2 transposed conv → BN → ReLU: exactly doubles the size (U-Net's "up-convolution")."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            OrderedDict(
                conv=nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False),
                bn=nn.BatchNorm2d(out_channels),
                relu=nn.ReLU(),
            )
        )


class EncoderDecoder(nn.Module):
    """Encoder–decoder without skip connections.

    Encoder: one 3×3 stride-2 conv–BN–ReLU per width (128 → 8 at four widths). Decoder: one 2×2 stride-2
    transposed conv–BN–ReLU per width in reverse (the same up-convolution as :class:`UNet`, so skips are the
    difference), back to the first width, then a 1×1 conv to classes. Everything the decoder knows about
    *where* things are must pass through the bottleneck, which is why boundaries come out blurry.
    """

    def __init__(
        self, num_classes: int = 3, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 256)
    ) -> None:
        super().__init__()
        widths = list(widths)
        enc: "OrderedDict[str, nn.Module]" = OrderedDict()
        c = in_channels
        for i, w in enumerate(widths, start=1):
            enc[f"down{i}"] = ConvBNReLU(c, w, 3, stride=2)
            c = w
        self.encoder = nn.Sequential(enc)
        dec: "OrderedDict[str, nn.Module]" = OrderedDict()
        targets = list(reversed(widths[:-1])) + [widths[0]]  # 256 → 128 → 64 → 32 → 32
        for i, w in enumerate(targets, start=1):
            dec[f"up{i}"] = _UpConvBNReLU(c, w)
            c = w
        self.decoder = nn.Sequential(dec)
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return _to_input_size(self.classifier(self.decoder(self.encoder(x))), x)


class PoolUnpool(nn.Module):
    """Pooling–unpooling encoder–decoder in the style of SegNet (Badrinarayanan et al., 2017).

    Encoder stage: 3×3 conv–BN–ReLU, then 2×2 max pooling that also returns the argmax indices.
    Decoder stage (reverse order): ``MaxUnpool2d`` puts each value back at the position its maximum came
    from (zeros elsewhere), then a 3×3 conv–BN–ReLU densifies the sparse map and narrows it to the previous
    width. A 1×1 conv gives the classes. Only the indices cross from encoder to decoder, not feature maps.
    """

    def __init__(
        self, num_classes: int = 3, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 256)
    ) -> None:
        super().__init__()
        widths = list(widths)
        self.enc = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.enc.append(ConvBNReLU(c, w, 3))
            c = w
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        # dec[j] undoes enc stage L−1−j: it narrows width L−1−j to width L−2−j (the first width at the end).
        self.dec = nn.ModuleList()
        for j in range(len(widths) - 1, -1, -1):
            self.dec.append(ConvBNReLU(widths[j], widths[max(j - 1, 0)], 3))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = x
        indices: list[tuple[Tensor, torch.Size]] = []
        for conv in self.enc:
            y = conv(y)
            size = y.shape[-2:]
            y, idx = self.pool(y)
            indices.append((idx, size))
        for conv, (idx, size) in zip(self.dec, reversed(indices)):
            y = conv(self.unpool(y, idx, output_size=size))  # output_size restores odd sizes exactly
        return _to_input_size(self.classifier(y), x)


class _DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            OrderedDict(conv1=ConvBNReLU(in_channels, out_channels, 3), conv2=ConvBNReLU(out_channels, out_channels, 3))
        )


class UNet(nn.Module):
    """Small U-Net (Ronneberger et al., 2015, "U-Net: Convolutional Networks for Biomedical Image Segmentation").

    Contracting path: two 3×3 conv–BN–ReLU per width with 2×2 max pooling between widths (the last width
    is the bottleneck, 16×16 at 128 input with four widths). Expanding path: 2×2 up-convolution halving the
    channels, concatenation of the encoder map of the same size (the skip), two 3×3 conv–BN–ReLU. A 1×1 conv
    maps to classes. Padded convs (unlike the paper's valid convs) keep the output at the input size;
    BN is a later addition the paper did not have.
    """

    def __init__(
        self, num_classes: int = 3, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 256)
    ) -> None:
        super().__init__()
        widths = list(widths)
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(_DoubleConv(c, w))
            c = w
        self.pool = nn.MaxPool2d(2, 2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(c, w, 2, stride=2))
            self.dec.append(_DoubleConv(2 * w, w))  # skip (w) + upsampled (w) channels
            c = w
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        y = x
        for i, block in enumerate(self.down):
            if i > 0:
                y = self.pool(y)
            y = block(y)
            skips.append(y)
        skips.pop()  # the bottleneck output is the decoder's input, not a skip
        for up, block, skip in zip(self.up, self.dec, reversed(skips)):
            y = up(y)
            if y.shape[-2:] != skip.shape[-2:]:  # odd input sizes
                y = F.interpolate(y, size=skip.shape[-2:], mode="nearest")
            y = block(torch.cat([skip, y], dim=1))
        return _to_input_size(self.classifier(y), x)


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def encoder_decoder(
    num_classes: int = 3, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 256)
) -> EncoderDecoder:
    """Strided-conv encoder and transposed-conv decoder without skip connections. Input 3×128×128."""
    return EncoderDecoder(num_classes=num_classes, in_channels=in_channels, widths=widths)


def pool_unpool(
    num_classes: int = 3, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 256)
) -> PoolUnpool:
    """Max-pooling encoder and max-unpooling decoder reusing the pooling indices (SegNet). Input 3×128×128."""
    return PoolUnpool(num_classes=num_classes, in_channels=in_channels, widths=widths)


def unet(num_classes: int = 3, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 256)) -> UNet:
    """Small U-Net with skip concatenations (Ronneberger et al., 2015). Input 3×128×128."""
    return UNet(num_classes=num_classes, in_channels=in_channels, widths=widths)


SEGMENTATION_MODELS: dict[str, dict] = {
    "seg_encoder_decoder": dict(
        builder=encoder_decoder,
        family="Encoder–decoder",
        year=2015,
        paper="Learning Deconvolution Network for Semantic Segmentation",
        input_size=(3, 128, 128),
        num_classes=3,
        description="Strided convs down to 8×8, transposed convs back up, no skips: detail must pass the bottleneck.",
    ),
    "seg_pool_unpool": dict(
        builder=pool_unpool,
        family="SegNet",
        year=2015,  # arXiv 2015, TPAMI 2017
        paper="SegNet: A Deep Convolutional Encoder-Decoder Architecture for Image Segmentation",
        input_size=(3, 128, 128),
        num_classes=3,
        description="Max pooling down, max unpooling up at the remembered argmax positions, each followed by a conv.",
    ),
    "seg_unet": dict(
        builder=unet,
        family="U-Net",
        year=2015,
        paper="U-Net: Convolutional Networks for Biomedical Image Segmentation",
        input_size=(3, 128, 128),
        num_classes=3,
        description="Contracting path, up-convolutions and skip concatenations of encoder maps, final 1×1 conv.",
    ),
}
