"""Heads on the last (coarsest) level: classification and regression MLPs, the Siamese projection."""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..components import Setting, register
from ..validation import MAX_CLASSES, MAX_HIDDEN_LAYERS, MAX_WIDTH
from .common import Features

__all__ = ["ClassificationHead", "RegressionHead", "SiameseHead"]


class _MLPHead(nn.Module):
    """Pool or flatten the last level, then an MLP (Linear → ReLU → Dropout per hidden width), then a Linear."""

    def __init__(
        self,
        in_channels: int,
        out_features: int,
        *,
        pooling: str = "gap",
        feature_size: Sequence[int] | None = None,
        hidden: Sequence[int] = (),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pooling == "gap":
            # Global average pooling: 7×7×512 → 512, whatever the spatial size.
            self.pool: nn.Module = nn.AdaptiveAvgPool2d(1)
            in_features = in_channels
            self.expected_size: tuple[int, int] | None = None
        elif pooling == "flatten":
            # Flattening keeps every position: 7×7×512 → 25,088, so the spatial size is fixed at build time.
            if feature_size is None:
                raise ValueError("Flattening needs the size of the last feature map.")
            self.pool = nn.Identity()
            self.expected_size = (int(feature_size[0]), int(feature_size[1]))
            in_features = in_channels * self.expected_size[0] * self.expected_size[1]
        else:
            raise ValueError(f"Unknown pooling {pooling!r}; choose 'gap' or 'flatten'.")
        self.flatten = nn.Flatten(1)
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        for i, width in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Linear(in_features, int(width))
            layers[f"relu{i}"] = nn.ReLU()
            if dropout > 0:  # a Dropout(0) would only clutter the layer table
                layers[f"dropout{i}"] = nn.Dropout(dropout)
            in_features = int(width)
        self.mlp = nn.Sequential(layers)
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, features: Features) -> Tensor:
        x = list(features.values())[-1]
        if self.expected_size is not None and tuple(x.shape[-2:]) != self.expected_size:
            raise ValueError(
                f"The flattening head was built for a {self.expected_size[0]}×{self.expected_size[1]} map "
                f"but received {x.shape[-2]}×{x.shape[-1]}; use global average pooling for other sizes."
            )
        return self.fc(self.mlp(self.flatten(self.pool(x))))


class ClassificationHead(_MLPHead):
    """Classification head: GAP or flatten → MLP → logits (N, num_classes).

    Softmax is not part of ``forward`` (``nn.CrossEntropyLoss`` expects logits); :meth:`predict`
    applies it.
    """

    def predict(self, features: Features) -> Tensor:
        """Class probabilities (N, num_classes), softmax over the logits."""
        return self.forward(features).softmax(dim=1)


class RegressionHead(_MLPHead):
    """Regression head: the classification trunk with a linear output (N, outputs), e.g. a count or an angle."""


class SiameseHead(nn.Module):
    """Projection head of a Siamese network (Bromley et al., 1993, "Signature Verification using a
    'Siamese' Time Delay Neural Network"; Koch et al., 2015, "Siamese Neural Networks for One-shot Image
    Recognition").

    The backbone is shared by both images; this head maps one image's last level to an image code:
    GAP → Linear(C, C) → ReLU → Linear(C, embedding_dim) → L2 normalisation, so the dot product of two
    codes is their cosine similarity.
    """

    def __init__(self, in_channels: int, embedding_dim: int = 128) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(in_channels, in_channels)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(in_channels, embedding_dim)

    def forward(self, features: Features) -> Tensor:
        x = list(features.values())[-1]
        e = self.fc2(self.relu(self.fc1(self.flatten(self.pool(x)))))
        return F.normalize(e, p=2.0, dim=1)

    @staticmethod
    def similarity(e1: Tensor, e2: Tensor) -> Tensor:
        """Cosine similarity of each pair of embeddings, shape (N,)."""
        return F.cosine_similarity(e1, e2, dim=-1)



# -- kinds ---------------------------------------------------------------------------------------------------------
def _hidden() -> Setting:
    return Setting("hidden", "int_list", (), 1, 4 * MAX_WIDTH, max_items=MAX_HIDDEN_LAYERS,
                   list_text="layer widths, e.g. [512, 256]", label="Hidden layer widths",
                   help="Comma-separated, e.g. 4096, 4096 (VGG); empty for a single linear layer.")


_DROPOUT = Setting("dropout", "float", 0.0, 0.0, 1.0, label="Dropout", step=0.05,
                   help="After each hidden layer, in training only.")
_POOLING = Setting("pooling", "choice", "gap", choices=("gap", "flatten"), label="Pooling",
                   choice_titles=(("gap", "global average (7×7×512 → 512)"),
                                  ("flatten", "flatten (7×7×512 → 25,088)")),
                   help="Global average pooling keeps one value per channel; flattening keeps every position.")


def _mlp_cost(out_setting: str):
    def cost(settings: dict, levels: list) -> tuple:
        c, h, w = levels[-1]
        sizes = [c * h * w if settings["pooling"] == "flatten" else c] + list(settings["hidden"])
        sizes.append(settings[out_setting])
        return sum(a * b for a, b in zip(sizes, sizes[1:])), sum(sizes[1:])
    return cost


def _hidden_params(settings: dict) -> int:  # known before the backbone is
    hidden = settings.get("hidden") or []
    return sum(a * b for a, b in zip(hidden, hidden[1:]))


@register("head", "classification", title="classification (GAP/flatten + MLP)", short_title="classification",
          tasks=("classification",), order=10, estimate=_mlp_cost("num_classes"),
          settings=(Setting("num_classes", "int", 1000, 1, MAX_CLASSES, help="Logits the head outputs."),
                    _hidden(), _DROPOUT, _POOLING),
          facts={"fixed_params": _hidden_params},
          description="Global average pooling or flattening of the last stage, an MLP, then one logit per class.")
def _classification(in_channels, *, feature_sizes, num_classes, hidden=(), dropout=0.0, pooling="gap", **_):
    return ClassificationHead(in_channels[-1], num_classes, pooling=pooling, feature_size=feature_sizes[-1],
                              hidden=hidden, dropout=dropout)


@register("head", "regression", title="regression (linear outputs)", short_title="regression",
          tasks=("regression",), order=20, estimate=_mlp_cost("outputs"),
          settings=(Setting("outputs", "int", 1, 1, MAX_WIDTH, help="Values the head outputs (linear)."),
                    _hidden(), _DROPOUT, _POOLING),
          facts={"fixed_params": _hidden_params},
          description="The classification trunk with linear outputs, e.g. a count or an angle.")
def _regression(in_channels, *, feature_sizes, outputs, hidden=(), dropout=0.0, pooling="gap", **_):
    return RegressionHead(in_channels[-1], outputs, pooling=pooling, feature_size=feature_sizes[-1],
                          hidden=hidden, dropout=dropout)


@register("head", "siamese", title="Siamese (embedding)", short_title="Siamese", tasks=("similarity",), order=90,
          settings=(Setting("embedding_dim", "int", 128, 1, MAX_WIDTH, help="Length of the image code."),),
          estimate=lambda settings, levels: (levels[-1][0] ** 2 + levels[-1][0] * settings["embedding_dim"],
                                             levels[-1][0] + settings["embedding_dim"]),
          description="A shared backbone, GAP and a two-layer projection to an L2-normalised image code.")
def _siamese(in_channels, *, embedding_dim, **_):
    return SiameseHead(in_channels[-1], embedding_dim)
