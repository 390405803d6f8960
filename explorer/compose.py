"""`build(spec) -> nn.Module`: backbone → neck → head, as one plain module the analysis reads part by part.

The composed model's children are named ``backbone``, ``neck`` and ``head``, so every figure of the analysis
(parameters, MACs, memory, receptive field per output level) is reported per part. Catalog backbones are cut
at the chosen stages with torchvision's ``create_feature_extractor`` (no hooks: it is safe on shared models).
The neck and head come from their kinds' declarations (`explorer.components`); a head that is a whole model
(the two-stage detectors) names the composed-model class it needs. This module knows no kind by name.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from functools import lru_cache

import torch
from torch import nn

from . import catalog, components
from .spec import ArchitectureSpec, SpecError, check_budget, default_level_count, last_of_each_scale

__all__ = ["build", "build_meta", "backbone_stages", "default_out_stages", "ComposedModel", "StageInfo", "STAGE_PREFIX",
           "stage_path"]


def __getattr__(name: str):
    # The two-stage parts moved to explorer.heads.rcnn, beside their declarations; still found here.
    if name in ("RCNNHead", "TwoStageDetector"):
        from .heads import rcnn

        return getattr(rcnn, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# Where a composed model's backbone stages sit (BackboneStages.body); only this module knows the layout.
STAGE_PREFIX = "backbone.body."


def stage_path(stage: str) -> str:
    """The module path of a backbone stage inside a composed model ("layer1" -> "backbone.body.layer1")."""
    return STAGE_PREFIX + stage


@dataclasses.dataclass(frozen=True)
class StageInfo:
    name: str
    channels: int
    stride: int  # input pixels per output unit (input height / output height, rounded)
    size: tuple  # (h, w) at the spec's input size

    @property
    def label(self) -> str:
        """How a stage option reads: "features.6 · 28×28 · stride 8"."""
        return f"{self.name} · {'×'.join(map(str, self.size))} · stride {self.stride}"


# -- backbone stages ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=256)
def _catalog_analysis(name: str, input_shape: tuple):
    """The catalog model's analysis at this input (shared by stage discovery and the frozen-stage check)."""
    from .analysis import AnalysisError, analyze

    try:
        return analyze(name, input_shape, training_memory=False)
    except AnalysisError as e:
        raise SpecError(str(e)) from None


@lru_cache(maxsize=256)
def _catalog_stages(name: str, input_shape: tuple) -> tuple:
    a = _catalog_analysis(name, input_shape)
    out, prev = [], None
    for path in a.stage_paths():
        for sub in _resolution_runs(a, path):
            m = a.modules[sub]
            shape = m["output_shape"]
            if shape is None or not m["nchw"] or m["kind"].startswith("Adaptive") \
                    or (m["is_global"] and shape[1:] == (1, 1)):
                continue
            macs = sum(r.macs for r in a.layers if r.name == sub or r.name.startswith(sub + "."))
            # Stages that change nothing visible (BatchNorm, ReLU right after the stem) are not offered.
            if prev is not None and macs == 0 and shape == prev:
                continue
            out.append(StageInfo(sub, shape[0], max(1, round(input_shape[1] / shape[1])), tuple(shape[1:])))
            prev = shape
    if not out:
        raise SpecError(f"{name} has no convolutional stages to use as a backbone (its feature maps are tokens); "
                        "pick a CNN backbone.")
    return tuple(out)


def _resolution_runs(a, path: str) -> list:
    """A stage made only of plain layers (VGG's ``features``, LeNet's) is offered per resolution: the last
    layer before each downsampling, so conv4_3-style taps exist. Other stages stay whole."""
    children = [p for p in a.modules if p.startswith(path + ".") and p.count(".") == path.count(".") + 1]
    if not children or any(any(q.startswith(c + ".") for q in a.modules) for c in children):
        return [path]
    runs = []
    for i, c in enumerate(children):
        nxt = children[i + 1] if i + 1 < len(children) else None
        shape = a.modules[c]["output_shape"]
        if nxt is None or (shape and a.modules[nxt]["output_shape"]
                           and shape[1:] != a.modules[nxt]["output_shape"][1:]):
            runs.append(c)
    return runs if len(runs) > 1 else [path]


def _custom_module(spec: ArchitectureSpec) -> nn.Module:
    from .blocks import CustomBackbone

    stages = [dataclasses.asdict(s) for s in spec.backbone.stages]
    stem = None if spec.backbone.stem is None else dataclasses.asdict(spec.backbone.stem)
    try:
        return CustomBackbone(stages=stages, in_channels=spec.input.channels, stem=stem)
    except ValueError as e:
        raise SpecError(str(e)) from None


@lru_cache(maxsize=256)
def _custom_stages(spec_json: str) -> tuple:
    spec = ArchitectureSpec.from_json(spec_json)
    with _meta_build():
        body = _custom_module(spec).eval()  # eval: BatchNorm in training mode refuses a 1×1 map of one image
    x = torch.empty((1,) + spec.input.shape, device="meta")
    try:
        with torch.no_grad():
            outs = body(x)
    except (RuntimeError, ValueError) as e:
        raise SpecError(f"The custom backbone cannot take a {'×'.join(map(str, spec.input.shape))} input "
                        f"({str(e).splitlines()[0]}); use a larger input or fewer stride-2 stages.") from None
    return tuple(StageInfo(k, v.shape[1], max(1, round(spec.input.height / v.shape[2])), tuple(v.shape[2:]))
                 for k, v in outs.items())


def backbone_stages(spec: ArchitectureSpec) -> list:
    """The backbone's stages that can feed a neck or head, fine → coarse, at the spec's input size."""
    if spec.backbone.is_custom:
        return list(_custom_stages(spec.to_json()))
    return list(_catalog_stages(spec.backbone.name, spec.input.shape))


def default_out_stages(spec: ArchitectureSpec) -> list:
    """Classification, regression, similarity and FCN read the last stage; detection necks and U-Net the
    last three (four for U-Net): the last stage of each distinct stride, so a multi-scale neck gets distinct
    scales (mobilenet_v2's last three stages are all 7×7 at stride 32; features.6, .13 and .18 are 8, 16, 32)."""
    return last_of_each_scale([(s.name, tuple(s.size)) for s in backbone_stages(spec)], default_level_count(spec))


def resolve(spec: ArchitectureSpec) -> tuple:
    """(out_stages, StageInfo per out stage), with every stage name checked against the backbone."""
    stages = {s.name: s for s in backbone_stages(spec)}
    names = list(stages)
    outs = spec.backbone.out_stages if spec.backbone.out_stages is not None else default_out_stages(spec)
    for field, chosen in (("out_stages", outs), ("frozen_stages", spec.backbone.frozen_stages)):
        bad = [s for s in chosen if s not in stages and not (field == "frozen_stages" and _is_any_stage(spec, s))]
        if bad:
            raise SpecError(f"'backbone.{field}': {spec.backbone.name} has no stage '{bad[0]}'; its stages are "
                            f"{', '.join(names)}.")
    order = {n: i for i, n in enumerate(names)}
    outs = sorted(outs, key=order.__getitem__)
    for part in (components.get("neck", spec.neck.kind), components.get("head", spec.head.kind)):
        part.check_levels(len(outs))
    infos = [stages[n] for n in outs]
    # The budget again, now that the stages are known (for a catalog backbone the spec alone cannot tell its
    # widths, so a giant neck or head on it is caught here, still before the composition is built).
    backbone = None
    if not spec.backbone.is_custom:
        a = _catalog_analysis(spec.backbone.name, spec.input.shape)
        backbone = (a.params, a.activations)
    check_budget(spec, [(i.channels, *i.size) for i in infos], backbone)
    return outs, infos


def _is_any_stage(spec, name) -> bool:
    # Frozen stages may name any top-level stage of a catalog model, also ones not offered as outputs (bn1).
    if spec.backbone.is_custom:
        return False
    return name in _catalog_analysis(spec.backbone.name, spec.input.shape).modules


def freezable_stages(spec: ArchitectureSpec) -> list:
    """Every module of the backbone (as cut after its last output stage) that holds parameters, in order: the
    body's top-level modules (resnet18: conv1, bn1, layer1–4; a custom stack: its rows), and inside a top-level
    module that holds offered stages (VGG's or MobileNet's ``features``) its children, so freezing them all
    freezes the whole backbone."""
    outs, infos = resolve(spec)
    bb = spec.to_dict()["backbone"]
    # Keyed by what the backbone's modules depend on: a change of the head or neck does not trace it again.
    key = (spec.input.shape, bb["name"], repr(bb.get("stem")), repr(bb.get("stages")), tuple(outs))
    if key not in _FREEZABLE:
        if len(_FREEZABLE) >= 256:
            _FREEZABLE.clear()
        _FREEZABLE[key] = _freezable(spec, outs, infos)
    return list(_FREEZABLE[key])


_FREEZABLE: dict = {}


def _freezable(spec: ArchitectureSpec, outs: list, infos: list) -> tuple:
    offered = [s.name for s in backbone_stages(spec)]
    with _meta_build():
        body = _backbone(spec, outs, infos).body

    def units(module: nn.Module, prefix: str):
        for name, child in module.named_children():
            path = prefix + name
            if any(o.startswith(path + ".") for o in offered):
                yield from units(child, path + ".")
            elif any(True for _ in child.parameters()):
                yield path

    return tuple(units(body, ""))


# -- the parts ---------------------------------------------------------------------------------------------------
class BackboneStages(nn.Module):
    """A backbone body that returns a dict of stage outputs, restricted to the chosen stages (fine → coarse).

    For a catalog model the body is the model cut after the last chosen stage by torchvision's
    ``create_feature_extractor``; for a custom stack it is the ``CustomBackbone`` itself.
    """

    def __init__(self, body: nn.Module, out_stages: list, channels: list):
        super().__init__()
        self.body = body
        self.out_stages = list(out_stages)
        self.out_channels = list(channels)

    def forward(self, x):
        out = self.body(x)
        return OrderedDict((s, out[s]) for s in self.out_stages)

    def stage(self, name: str) -> nn.Module:
        return self.body.get_submodule(name)


class ComposedModel(nn.Module):
    """backbone → neck → head. ``decode`` (detection) turns raw outputs into boxes outside the traced forward."""

    def __init__(self, spec: ArchitectureSpec, backbone: nn.Module, neck: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.input_size = (spec.input.height, spec.input.width)

    def forward(self, x):
        return self.head(self.neck(self.backbone(x)))

    def decode(self, outputs, **kwargs):
        return self.head.decode(outputs, self.input_size, **kwargs)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Siamese: cosine similarity of the embeddings of two batches (one shared backbone)."""
        return self.head.similarity(self(a), self(b))


# -- build -------------------------------------------------------------------------------------------------------
def _meta_build():
    from .meta_init import meta_init

    return meta_init()


def _backbone(spec: ArchitectureSpec, outs: list, infos: list) -> nn.Module:
    channels = [i.channels for i in infos]
    if spec.backbone.is_custom:
        return BackboneStages(_custom_module(spec), outs, channels)
    from .tracing import create_feature_extractor

    model = catalog.build(spec.backbone.name)
    body = BackboneStages(create_feature_extractor(model, return_nodes={s: s for s in outs}), outs, channels)
    # The traced body rebuilds the blocks above its layers as plain nn.Module: their classes, for the diagram.
    body.source_kinds = {f"body.{p}": type(m).__name__ for p, m in model.named_modules() if p}
    return body


def _freeze(backbone: nn.Module, stages: list) -> None:
    for name in stages:
        try:
            module = backbone.stage(name)
        except AttributeError:
            raise SpecError(f"'backbone.frozen_stages': {name} is not part of the backbone as cut after "
                            f"{backbone.out_stages[-1]}; freeze only stages up to it.") from None
        for p in module.parameters():
            p.requires_grad_(False)


def build(spec: ArchitectureSpec | str | dict, *, meta: bool = False) -> nn.Module:
    """The composed ``nn.Module`` for ``spec`` (an ArchitectureSpec, its JSON, or a dict).

    ``meta=True`` builds without allocating or initialising weights (what the analysis uses).
    """
    if isinstance(spec, str):
        spec = ArchitectureSpec.from_json(spec)
    elif isinstance(spec, dict):
        spec = ArchitectureSpec.from_dict(spec)
    outs, infos = resolve(spec)
    if meta:
        with _meta_build():
            return _assemble(spec, outs, infos)
    return _assemble(spec, outs, infos)


def build_meta(spec) -> nn.Module:
    return build(spec, meta=True)


def _assemble(spec: ArchitectureSpec, outs: list, infos: list) -> nn.Module:
    from .necks import build_neck

    backbone = _backbone(spec, outs, infos)
    _freeze(backbone, spec.backbone.frozen_stages)
    head_kind = components.get("head", spec.head.kind)
    try:
        neck = build_neck(spec.neck.kind, [i.channels for i in infos], **spec.neck.settings)
        head = head_kind.build(list(neck.out_channels), input_size=(spec.input.height, spec.input.width),
                               feature_sizes=[i.size for i in infos], strides=[i.stride for i in infos],
                               levels=list(outs), **spec.head.settings)
    except ValueError as e:
        raise SpecError(str(e)) from None
    return (head_kind.model or ComposedModel)(spec, backbone, neck, head)


def analyze_spec(spec: ArchitectureSpec, dtype: torch.dtype = torch.float32, **kwargs):
    """The analysis of a composition, built the cheapest way."""
    from .analysis import analyze

    model = build(spec, meta=True)
    a = analyze(model, spec.input.shape, dtype=dtype, **kwargs)
    a.model_name = spec.summary()
    return a
