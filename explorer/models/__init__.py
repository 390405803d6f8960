"""Model definitions the explorer adds on top of torchvision."""

from explorer.models.classic import (
    CLASSIC_MODELS,
    densenet264,
    gap_cnn,
    lenet5,
    mini_xception,
    mobilenet_v1,
    preact_resnet18,
    preact_resnet50,
    zfnet,
)

__all__ = [
    "CLASSIC_MODELS",
    "densenet264",
    "gap_cnn",
    "lenet5",
    "mini_xception",
    "mobilenet_v1",
    "preact_resnet18",
    "preact_resnet50",
    "zfnet",
]
