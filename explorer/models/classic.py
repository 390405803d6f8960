"""Classic CNN architectures that torchvision does not ship.

Written in the style of ``torchvision.models``: small composable ``nn.Module`` classes plus builder
functions with keyword arguments. Every model

* builds under ``with torch.device("meta"):`` (no ``.item()`` / ``.tolist()`` in ``__init__``), and
* has a forward pass without data-dependent Python control flow, so it also runs on meta tensors.

Submodules are named (``features.c1``, ``layer1.0.conv1``, ``blocks.block1.sep1`` ...) so that a
per-layer table reads well. Non-in-place ReLUs are used throughout so that forward hooks recording
activations see each tensor as it was produced.

``CLASSIC_MODELS`` at the bottom describes each builder (family, year, paper, default input).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn
from torchvision.models import DenseNet

from explorer.blocks.conv import ConvBNReLU, SeparableConv2d
from explorer.blocks.mobile import DepthwiseSeparable
from explorer.blocks.residual import PreActBlock

__all__ = [
    "CLASSIC_MODELS",
    "ConvBNReLU",
    "DepthwiseSeparableConv",
    "GapCNN",
    "LeNet5",
    "MiniXception",
    "MobileNetV1",
    "PreActBasicBlock",
    "PreActBottleneck",
    "PreActResNet",
    "SeparableConv2d",
    "XceptionResidualBlock",
    "ZFNet",
    "densenet264",
    "gap_cnn",
    "lenet5",
    "mini_xception",
    "mobilenet_v1",
    "preact_resnet18",
    "preact_resnet50",
    "zfnet",
]


# --------------------------------------------------------------------------------------------------
# Reusable building blocks
# --------------------------------------------------------------------------------------------------


# ConvBNReLU and SeparableConv2d live in explorer.blocks now; they are re-exported here under the same names.


class DepthwiseSeparableConv(DepthwiseSeparable):
    """MobileNet v1 block: depthwise 3×3 + BN + ReLU, then pointwise 1×1 + BN + ReLU (Fig. 3 of the paper).

    :class:`explorer.blocks.DepthwiseSeparable` under the name this module has always used (it also names
    the layer kind in the analysis tables). The stride sits on the depthwise conv, as in the paper's Table 1.
    """


class PreActBasicBlock(PreActBlock):
    """Pre-activation basic block (ResNet v2): BN → ReLU → conv3×3 → BN → ReLU → conv3×3, plus shortcut.

    :class:`explorer.blocks.PreActBlock` with torchvision's ``(in_planes, planes)`` signature for
    :class:`PreActResNet`. The addition is *not* followed by a ReLU, so the identity path stays clean. When
    the shape changes, the 1×1 projection shortcut (``downsample``) is applied to the pre-activated input, as
    in the paper. ``preact=False`` drops the leading BN-ReLU; it is used for the first block, whose input
    already went through the stem's BN-ReLU.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, preact: bool = True) -> None:
        super().__init__(in_planes, planes * self.expansion, stride, preact)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck (ResNet v2): (BN → ReLU → conv) × 3 with 1×1, 3×3, 1×1 convs.

    Width ``planes`` in the middle, ``4·planes`` out. The stride is on the 3×3 conv (torchvision's
    "ResNet v1.5" placement). Shortcut handling as in :class:`PreActBasicBlock`.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, preact: bool = True) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.bn1: nn.Module = nn.BatchNorm2d(in_planes) if preact else nn.Identity()
        self.relu1: nn.Module = nn.ReLU() if preact else nn.Identity()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.relu3 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu2(self.bn2(out)))
        out = self.conv3(self.relu3(self.bn3(out)))
        return out + shortcut


class XceptionResidualBlock(nn.Module):
    """One downsampling block of the Keras "Image classification from scratch" mini-Xception.

    ReLU → SeparableConv 3×3 → BN → ReLU → SeparableConv 3×3 → BN → MaxPool 3×3/2 (padding 1), plus a
    1×1 stride-2 conv projection of the block input (taken before the leading ReLU, as in Keras).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.relu1 = nn.ReLU()  # not in-place: the residual path still needs the raw input
        self.sep1 = SeparableConv2d(in_channels, out_channels, 3)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.sep2 = SeparableConv2d(out_channels, out_channels, 3)
        self.bn2 = nn.BatchNorm2d(out_channels)
        # padding=1 reproduces Keras's padding="same": ceil(n / 2) outputs.
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.residual = nn.Conv2d(in_channels, out_channels, 1, stride=2)  # Keras Conv2D has a bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.sep1(self.relu1(x)))
        out = self.bn2(self.sep2(self.relu2(out)))
        return self.pool(out) + self.residual(x)


# --------------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------------


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al., 1998, "Gradient-Based Learning Applied to Document Recognition").

    Simplified as it is usually taught: S2/S4 are plain average pools (the paper's subsampling layers
    had a trainable coefficient and bias per map) and C3 connects to all 6 maps (the paper used a
    sparse connection table); the RBF output layer is a linear layer. That gives 61,706 parameters
    instead of the paper's 60,000 trainable ones.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                c1=nn.Conv2d(in_channels, 6, 5),  # valid conv: 32 → 28
                tanh1=nn.Tanh(),
                s2=nn.AvgPool2d(2, 2),  # 28 → 14
                c3=nn.Conv2d(6, 16, 5),  # 14 → 10
                tanh3=nn.Tanh(),
                s4=nn.AvgPool2d(2, 2),  # 10 → 5
                c5=nn.Conv2d(16, 120, 5),  # 5 → 1: a conv that acts as a fully connected layer
                tanh5=nn.Tanh(),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                f6=nn.Linear(120, 84),
                tanh6=nn.Tanh(),
                output=nn.Linear(84, num_classes),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


class GapCNN(nn.Module):
    """A small CNN whose head is global average pooling and one linear layer, as in "Network in Network" (Lin et
    al., 2014) and the class activation maps of Zhou et al. (2016), "Learning Deep Features for Discriminative
    Localization".

    Three 3×3 ConvBNReLU stages (16, 32, 64 channels at the defaults) with 2×2 max pools between them; on a 64×64
    input the last stage is a 16×16 map. Each class score is the average over positions of a linear function of
    that map, so the score splits exactly into per-position parts: the class activation map, which Grad-CAM
    equals here. LeNet-5 flattens instead (C5 weighs each of its 25 positions separately), which is why its
    Grad-CAM does not find the digit and this network's does.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        cin = in_channels
        for i, width in enumerate(widths, 1):
            if i > 1:
                layers[f"pool{i - 1}"] = nn.MaxPool2d(2, 2)
            layers[f"conv{i}"] = ConvBNReLU(cin, width, 3)
            cin = width
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # global average pooling: 64×16×16 → 64
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.fc(x)


class ZFNet(nn.Module):
    """ZFNet (Zeiler & Fergus, 2013, "Visualizing and Understanding Convolutional Networks").

    AlexNet with a 7×7 stride-2 first conv (instead of 11×11 stride 4) and a stride-2 5×5 second conv,
    laid out like ``torchvision.models.AlexNet`` (``features``, ``avgpool``, ``classifier``).
    Spatial sizes at 224×224 follow the paper's Fig. 3: 110 → 55 → 26 → 13 → 13 → 13 → 6.
    ``local_response_norm`` inserts the paper's cross-channel normalisation after pool1 and pool2
    (AlexNet-style LRN, size 5; no parameters).
    """

    def __init__(
        self, num_classes: int = 1000, dropout: float = 0.5, local_response_norm: bool = True
    ) -> None:
        super().__init__()

        def norm() -> nn.Module:
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0) if local_response_norm else nn.Identity()

        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, 96, 7, stride=2, padding=1),  # 224 → 110
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(3, 2, padding=1),  # 110 → 55
                norm1=norm(),
                conv2=nn.Conv2d(96, 256, 5, stride=2),  # 55 → 26
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(3, 2, padding=1),  # 26 → 13
                norm2=norm(),
                conv3=nn.Conv2d(256, 384, 3, padding=1),
                relu3=nn.ReLU(),
                conv4=nn.Conv2d(384, 384, 3, padding=1),
                relu4=nn.ReLU(),
                conv5=nn.Conv2d(384, 256, 3, padding=1),
                relu5=nn.ReLU(),
                pool5=nn.MaxPool2d(3, 2),  # 13 → 6
            )
        )
        # As in torchvision's AlexNet: makes the classifier work for other input sizes too.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            OrderedDict(
                dropout6=nn.Dropout(dropout),
                fc6=nn.Linear(256 * 6 * 6, 4096),
                relu6=nn.ReLU(),
                dropout7=nn.Dropout(dropout),
                fc7=nn.Linear(4096, 4096),
                relu7=nn.ReLU(),
                fc8=nn.Linear(4096, num_classes),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# (out_channels, stride) of the 13 depthwise separable blocks, Table 1 of the MobileNet paper.
MOBILENET_V1_CONFIG: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),  # the paper's table writes stride 2 here but its 7×7 output shows it is stride 1
)


class MobileNetV1(nn.Module):
    """MobileNet v1 (Howard et al., 2017, "MobileNets: Efficient Convolutional Neural Networks for
    Mobile Vision Applications").

    3×3 stride-2 conv (32) → 13 depthwise separable blocks → global average pool → FC.
    ``width_mult`` is the paper's width multiplier α (channels = max(8, int(α·c)), as TF-slim).
    At α = 1 and 1000 classes: 4,231,976 parameters (the paper's "4.2 million"), counting the
    BN scale and shift; conv layers have no bias because BN follows each of them.
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return max(8, int(c * width_mult))

        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        layers["stem"] = ConvBNReLU(in_channels, ch(32), 3, stride=2, padding=1)
        c_in = ch(32)
        for i, (c_out, stride) in enumerate(MOBILENET_V1_CONFIG, start=1):
            layers[f"block{i}"] = DepthwiseSeparableConv(c_in, ch(c_out), stride)
            c_in = ch(c_out)
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


class PreActResNet(nn.Module):
    """Pre-activation ResNet (He et al., 2016, "Identity Mappings in Deep Residual Networks").

    Layout and stage names follow ``torchvision.models.ResNet``: ``conv1``, ``bn1``, ``relu``,
    ``maxpool``, ``layer1`` … ``layer4``, then the extra final ``bn`` + ``final_relu`` that a
    pre-activation network needs after its last addition, ``avgpool``, ``fc``.

    As in the paper (and fb.resnet.torch's ``preresnet.lua``), the activation right after ``conv1`` is
    the first block's pre-activation taken *before* the split into the two paths: so the stem keeps
    BN-ReLU and ``layer1.0`` has no BN-ReLU of its own (its ``bn1``/``relu1`` are ``Identity``).
    """

    def __init__(
        self,
        block: type[PreActBasicBlock] | type[PreActBottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], stride=1, first_preact=False)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.bn = nn.BatchNorm2d(512 * block.expansion)
        self.final_relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(
        self,
        block: type[PreActBasicBlock] | type[PreActBottleneck],
        planes: int,
        blocks: int,
        stride: int,
        first_preact: bool = True,
    ) -> nn.Sequential:
        layers = [block(self.in_planes, planes, stride, preact=first_preact)]
        self.in_planes = planes * block.expansion
        layers += [block(self.in_planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.final_relu(self.bn(x))
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


class MiniXception(nn.Module):
    """Small Xception-like model from the Keras example "Image classification from scratch"
    (cats vs dogs, 180×180), after Chollet, 2017, "Xception: Deep Learning with Depthwise Separable
    Convolutions".

    Entry conv 3×3/2 (128) + BN + ReLU → three :class:`XceptionResidualBlock` (256, 512, 728) →
    SeparableConv 1024 + BN + ReLU → global average pool → dropout 0.25 → linear.
    Differences from the Keras code: the ``Rescaling(1/255)`` layer is omitted, and the head always has
    ``num_classes`` outputs (Keras uses a single logit when there are 2 classes).
    """

    def __init__(self, num_classes: int = 2, in_channels: int = 3, dropout: float = 0.25) -> None:
        super().__init__()
        self.entry = ConvBNReLU(in_channels, 128, 3, stride=2, padding=1, bias=True)  # Keras keeps the bias
        blocks: "OrderedDict[str, nn.Module]" = OrderedDict()
        c_in = 128
        for i, size in enumerate((256, 512, 728), start=1):
            blocks[f"block{i}"] = XceptionResidualBlock(c_in, size)
            c_in = size
        self.blocks = nn.Sequential(blocks)
        self.exit = nn.Sequential(
            OrderedDict(
                sep=SeparableConv2d(c_in, 1024, 3),
                bn=nn.BatchNorm2d(1024),
                relu=nn.ReLU(),
            )
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(x)
        x = self.blocks(x)
        x = self.exit(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def lenet5(num_classes: int = 10, in_channels: int = 1) -> LeNet5:
    """LeNet-5 (LeCun et al., 1998). Input 1×32×32; 61,706 parameters at the defaults."""
    return LeNet5(num_classes=num_classes, in_channels=in_channels)


def gap_cnn(num_classes: int = 10, in_channels: int = 1) -> GapCNN:
    """Small CNN with a global-average-pooling head. Input 1×64×64; 24,058 parameters at the defaults."""
    return GapCNN(num_classes=num_classes, in_channels=in_channels)


def zfnet(num_classes: int = 1000, dropout: float = 0.5, local_response_norm: bool = True) -> ZFNet:
    """ZFNet (Zeiler & Fergus, 2013). Input 3×224×224; 62,357,608 parameters at the defaults."""
    return ZFNet(num_classes=num_classes, dropout=dropout, local_response_norm=local_response_norm)


def mobilenet_v1(num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3) -> MobileNetV1:
    """MobileNet v1 (Howard et al., 2017). Input 3×224×224; 4,231,976 parameters at the defaults."""
    return MobileNetV1(num_classes=num_classes, width_mult=width_mult, in_channels=in_channels)


def preact_resnet18(num_classes: int = 1000, in_channels: int = 3) -> PreActResNet:
    """Pre-activation ResNet-18 (He et al., 2016, ResNet v2). 11,687,720 parameters at the defaults."""
    return PreActResNet(PreActBasicBlock, (2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels)


def preact_resnet50(num_classes: int = 1000, in_channels: int = 3) -> PreActResNet:
    """Pre-activation ResNet-50 (He et al., 2016, ResNet v2). 25,549,352 parameters at the defaults."""
    return PreActResNet(PreActBottleneck, (3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels)


def densenet264(num_classes: int = 1000) -> DenseNet:
    """DenseNet-264 (Huang et al., 2017, "Densely Connected Convolutional Networks").

    torchvision has the DenseNet class but no 264 builder: block config (6, 12, 64, 48), growth rate
    32, bottleneck width 4·32, 64 initial features. 33,337,704 parameters at the defaults.
    """
    return DenseNet(
        growth_rate=32,
        block_config=(6, 12, 64, 48),
        num_init_features=64,
        bn_size=4,
        num_classes=num_classes,
    )


def mini_xception(num_classes: int = 2, in_channels: int = 3) -> MiniXception:
    """Mini-Xception of the Keras cats-vs-dogs example. Input 3×180×180; 2,723,802 parameters."""
    return MiniXception(num_classes=num_classes, in_channels=in_channels)


CLASSIC_MODELS: dict[str, dict] = {
    "lenet5": dict(
        builder=lenet5,
        family="LeNet",
        year=1998,
        paper="Gradient-Based Learning Applied to Document Recognition",
        input_size=(1, 32, 32),
        num_classes=10,
        description="The first widely used CNN: conv → pool → conv → pool → FC, trained end to end on digits.",
    ),
    "zfnet": dict(
        builder=zfnet,
        family="ZFNet",
        year=2013,
        paper="Visualizing and Understanding Convolutional Networks",
        input_size=(3, 224, 224),
        num_classes=1000,
        description="AlexNet retuned with a 7×7 stride-2 first conv, found by visualising learned features.",
    ),
    "mobilenet_v1": dict(
        builder=mobilenet_v1,
        family="MobileNet v1",
        year=2017,
        paper="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
        input_size=(3, 224, 224),
        num_classes=1000,
        description="Depthwise separable convolutions everywhere, with width and resolution multipliers.",
    ),
    "preact_resnet18": dict(
        builder=preact_resnet18,
        family="ResNet v2",
        year=2016,
        paper="Identity Mappings in Deep Residual Networks",
        input_size=(3, 224, 224),
        num_classes=1000,
        description="Pre-activation residual blocks (BN → ReLU → conv) that keep the identity path clean.",
    ),
    "preact_resnet50": dict(
        builder=preact_resnet50,
        family="ResNet v2",
        year=2016,
        paper="Identity Mappings in Deep Residual Networks",
        input_size=(3, 224, 224),
        num_classes=1000,
        description="Pre-activation bottleneck blocks (1×1 → 3×3 → 1×1) with a clean identity path.",
    ),
    "densenet264": dict(
        builder=densenet264,
        family="DenseNet",
        year=2016,  # as the torchvision DenseNets in the catalog (arXiv 2016, CVPR 2017)
        paper="Densely Connected Convolutional Networks",
        input_size=(3, 224, 224),
        num_classes=1000,
        description="Each layer receives the concatenated feature maps of all earlier layers in its block.",
    ),
    "gap_cnn": dict(
        builder=gap_cnn,
        family="GAP CNN",
        year=2016,
        paper="Learning Deep Features for Discriminative Localization",
        input_size=(1, 64, 64),
        num_classes=10,
        description="Three conv stages and global average pooling into one linear layer: the head under which "
                    "class activation maps (and Grad-CAM) locate what was classified.",
    ),
    "mini_xception": dict(
        builder=mini_xception,
        family="Xception",
        year=2017,
        paper="Xception: Deep Learning with Depthwise Separable Convolutions",
        input_size=(3, 180, 180),
        num_classes=2,
        description="Small Xception-like cats-vs-dogs model: separable convs with residual projections.",
    ),
}
