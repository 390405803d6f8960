"""A backbone assembled from the lecture blocks, stage by stage."""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from numbers import Integral

import torch
from torch import nn

from .conv import ConvBNReLU
from .. import components
from .factory import block_kinds, make_stage

__all__ = ["CustomBackbone", "DEFAULT_STEM", "MAX_STAGES", "STAGE_KEYS", "STEM_KEYS", "default_stem",
           "example_stages"]

MAX_STAGES = 64  # the app refuses bigger stacks
STAGE_KEYS = ("block", "repeats", "width", "stride")


def example_stages() -> list[dict]:
    """The stack a new custom backbone starts from: one stage per block kind that declares an ``example_stage``
    (conv 32, residual 64, separable 128, each stride 2), in display order."""
    return [dict(block=c.name, **c.fact("example_stage")) for c in components.all_components("block")
            if c.fact("example_stage")]


DEFAULT_STEM = object()  # CustomBackbone's stem when none is given: default_stem(first stage's width)
STEM_KEYS = ("width", "stride")


def default_stem(first_width: int) -> dict:
    """The stem a stack had before the stem was a row of its own (and still has when none is given): a 3×3
    stride-2 ConvBNReLU to half the first stage's width (32 when that is 0)."""
    return {"width": first_width // 2 or 32, "stride": 2}


def _validate_stem(stem) -> dict:
    if not isinstance(stem, Mapping) or sorted(stem) != sorted(STEM_KEYS):
        raise ValueError(f"The stem must be a dict with keys {', '.join(STEM_KEYS)} (or None for no stem); "
                         f"got {stem!r}.")
    if not _whole(stem["width"]) or stem["width"] < 1:
        raise ValueError(f"The stem has width={stem['width']!r}; set its width to a whole number of at least 1.")
    if not _whole(stem["stride"]) or stem["stride"] not in (1, 2):
        raise ValueError(f"The stem has stride={stem['stride']!r}; set its stride to 1 or 2.")
    return {"width": int(stem["width"]), "stride": int(stem["stride"])}


def _whole(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _validate(stages) -> list[dict]:
    """Normalised copies of the stage dicts; ValueError with one sentence naming the stage otherwise."""
    if isinstance(stages, (str, bytes, Mapping)) or not isinstance(stages, Sequence):
        raise ValueError(
            f"The stages must be a list of dicts with keys {', '.join(STAGE_KEYS)}; got {type(stages).__name__}."
        )
    if not stages:
        raise ValueError(f"The backbone needs at least one stage; add one such as {json.dumps(example_stages()[0])}.")
    if len(stages) > MAX_STAGES:
        raise ValueError(f"The backbone has {len(stages)} stages; remove stages to keep at most {MAX_STAGES}.")
    out = []
    for i, stage in enumerate(stages, 1):
        name = f"stage{i}"
        if dataclasses.is_dataclass(stage) and not isinstance(stage, type):
            stage = dataclasses.asdict(stage)  # e.g. the app's StageSpec
        if not isinstance(stage, Mapping):
            raise ValueError(
                f"{name} must be a dict with keys {', '.join(STAGE_KEYS)}; got {type(stage).__name__}."
            )
        extra = [k for k in stage if k not in STAGE_KEYS]
        if extra:
            raise ValueError(f"{name} has unknown key {extra[0]!r}; use only {', '.join(STAGE_KEYS)}.")
        missing = [k for k in STAGE_KEYS if k not in stage]
        if missing:
            raise ValueError(f"{name} is missing {missing[0]!r}; give every stage {', '.join(STAGE_KEYS)}.")
        kind, repeats, width, stride = (stage[k] for k in STAGE_KEYS)
        if kind not in block_kinds():
            raise ValueError(f"{name} has unknown block kind {kind!r}; choose one of {', '.join(block_kinds())}.")
        if not _whole(repeats) or repeats < 1:
            raise ValueError(f"{name} has repeats={repeats!r}; set repeats to a whole number of at least 1.")
        block = components.get("block", kind)
        min_width = block.fact("min_width", 1)
        if not _whole(width) or width < min_width:
            why = f" ({block.fact('min_width_why')})" if block.fact("min_width_why") else ""
            raise ValueError(f"{name} has width={width!r}; set width to a whole number of at least {min_width}{why}.")
        if not _whole(stride) or stride not in (1, 2):
            raise ValueError(f"{name} has stride={stride!r}; set stride to 1 or 2.")
        out.append(dict(block=kind, repeats=int(repeats), width=int(width), stride=int(stride)))
    return out


class CustomBackbone(nn.Module):
    """A feature extractor built from ``stages`` of lecture blocks (see :func:`explorer.blocks.make_block`).

    ``stages`` is a list of ``{"block": kind, "repeats": n, "width": channels, "stride": 1 | 2}`` (dicts or
    dataclass instances with those fields). Layout: a stem ``ConvBNReLU(in_channels, width, 3×3, stride)``
    named ``stem``, then ``stage1``, ``stage2``, … each from :func:`make_stage` (the first block of a stage
    takes its stride and channel change). ``stem`` is ``{"width": w, "stride": 1 | 2}``, ``None`` for no stem
    (the first stage reads the input), or left out for the default ``stages[0]["width"] // 2 or 32``, stride 2.

    ``forward(x)`` returns an ``OrderedDict`` of every stage's output keyed ``"stem"``, ``"stage1"``, … so a
    neck can pick any of them. Attributes fixed at construction:

    * ``stage_names``: ``["stem", "stage1", …]`` (no ``"stem"`` without a stem)
    * ``stage_channels``: name → output channels
    * ``stage_strides``: name → cumulative stride relative to the input (the default stem's is 2)

    Raises ``ValueError`` with one sentence naming the stage and what to change for an unknown block kind,
    repeats < 1, width < 1 (< 4 for inception), a stride other than 1 or 2, or more than 64 stages.
    """

    def __init__(self, stages: Sequence[Mapping], in_channels: int = 3, stem=DEFAULT_STEM) -> None:
        super().__init__()
        if not _whole(in_channels) or in_channels < 1:
            raise ValueError(f"in_channels must be a whole number of at least 1; got {in_channels!r}.")
        stages = _validate(stages)
        if stem is DEFAULT_STEM:
            stem = default_stem(stages[0]["width"])
        self.stage_names: list[str] = []
        self.stage_channels: dict[str, int] = {}
        self.stage_strides: dict[str, int] = {}
        channels, total_stride = in_channels, 1
        if stem is not None:
            stem = _validate_stem(stem)
            self.stem = ConvBNReLU(in_channels, stem["width"], 3, stride=stem["stride"])
            channels, total_stride = stem["width"], stem["stride"]
            self.stage_names.append("stem")
            self.stage_channels["stem"] = channels
            self.stage_strides["stem"] = total_stride
        for i, st in enumerate(stages, 1):
            name = f"stage{i}"
            self.add_module(name, make_stage(st["block"], channels, st["width"], st["repeats"], st["stride"]))
            channels, total_stride = st["width"], total_stride * st["stride"]
            self.stage_names.append(name)
            self.stage_channels[name] = channels
            self.stage_strides[name] = total_stride

        # torchvision-style init (a no-op cost on meta tensors).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        for name in self.stage_names:
            x = self._modules[name](x)
            out[name] = x
        return out
