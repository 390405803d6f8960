"""The architecture catalog: every torchvision classification model plus the classic ones it lacks.

Reads like torchvision's own registry: one `ModelInfo` per name with metadata (family, year, paper, default
input, ImageNet accuracy, parameters and GMACs as published with the weights), and `build(name, **kwargs)`.
"""
from __future__ import annotations

import dataclasses
import difflib
import threading
from functools import lru_cache
from typing import Callable

import torch
import torchvision
from torch import nn

from .meta_init import meta_init

__all__ = ["ModelInfo", "names", "info", "build", "build_meta", "families", "UnknownModelError"]


class UnknownModelError(KeyError, ValueError):
    """Raised for a name that is not in the catalog; its message is one sentence a person can act on."""

    def __str__(self) -> str:  # KeyError would otherwise show the repr with quotes
        return self.args[0] if self.args else ""


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    year: int
    paper: str
    introduced: str  # one line: what the family brought (LECTURES.md §2)


# Families, in the order a lecture meets them. Prefixes decide membership (longest prefix wins).
_FAMILIES: dict[str, Family] = {
    "alexnet": Family("AlexNet", 2012, "ImageNet Classification with Deep Convolutional Neural Networks",
                      "11×11 stride-4 first conv, ReLU, dropout, two GPUs: the network that started the deep era."),
    "vgg": Family("VGG", 2014, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
                  "Only 3×3 convolutions and 2×2 max pools, stacked deep; most parameters sit in the FC layers."),
    "googlenet": Family("GoogLeNet", 2014, "Going Deeper with Convolutions",
                        "Inception modules (1×1, 3×3, 5×5, pool in parallel with 1×1 reductions) and global "
                        "average pooling instead of big FC layers."),
    "inception_v3": Family("Inception v3", 2015, "Rethinking the Inception Architecture for Computer Vision",
                           "Factorised convolutions (n×1 then 1×n), label smoothing and an auxiliary classifier."),
    "resnet": Family("ResNet", 2015, "Deep Residual Learning for Image Recognition",
                     "Residual blocks y = F(x) + x with projection shortcuts; bottleneck 1×1→3×3→1×1 for depth."),
    "wide_resnet": Family("Wide ResNet", 2016, "Wide Residual Networks",
                          "Fewer, wider residual blocks: width instead of depth."),
    "resnext": Family("ResNeXt", 2016, "Aggregated Residual Transformations for Deep Neural Networks",
                      "Cardinality: the 3×3 of the bottleneck split into many groups (grouped convolutions)."),
    "densenet": Family("DenseNet", 2016, "Densely Connected Convolutional Networks",
                       "Every layer receives all previous feature maps by concatenation; transition layers shrink."),
    "squeezenet": Family("SqueezeNet", 2016,
                         "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
                         "Fire modules: squeeze with 1×1, expand with 1×1 and 3×3, for very few parameters."),
    "mobilenet_v2": Family("MobileNet v2", 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
                           "Inverted residual: expand with 1×1, depthwise 3×3, project with a linear 1×1."),
    "mobilenet_v3": Family("MobileNet v3", 2019, "Searching for MobileNetV3",
                           "Architecture search plus SE blocks and hard-swish on the inverted residual."),
    "shufflenet_v2": Family("ShuffleNet v2", 2018,
                            "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
                            "Channel split and channel shuffle so grouped 1×1 convs still mix information."),
    "mnasnet": Family("MNASNet", 2018, "MnasNet: Platform-Aware Neural Architecture Search for Mobile",
                      "Architecture found by search with measured phone latency in the objective."),
    "efficientnet_b": Family("EfficientNet", 2019,
                             "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
                             "Compound scaling of depth, width and resolution together from a searched B0."),
    "efficientnet_v2": Family("EfficientNet v2", 2021, "EfficientNetV2: Smaller Models and Faster Training",
                              "Fused-MBConv early stages and progressive learning for faster training."),
    "regnet": Family("RegNet", 2020, "Designing Network Design Spaces",
                     "Design spaces AnyNet A–E narrowed to a quantised linear rule for stage widths."),
    "convnext": Family("ConvNeXt", 2022, "A ConvNet for the 2020s",
                       "A ResNet modernised towards Swin: inverted bottleneck, large depthwise conv moved up, LN."),
    "vit": Family("ViT", 2020, "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale",
                  "The transformer alternative: image patches as tokens, global self-attention from layer one."),
    "swin": Family("Swin", 2021, "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows",
                   "Attention inside shifted local windows, with a CNN-like pyramid of stages."),
    "swin_v2": Family("Swin v2", 2021, "Swin Transformer V2: Scaling Up Capacity and Resolution",
                      "Swin with scaled cosine attention and log-spaced position bias for large models."),
    "maxvit": Family("MaxViT", 2022, "MaxViT: Multi-Axis Vision Transformer",
                     "MBConv plus block and grid attention: local and global mixing in every stage."),
    "raft": Family("RAFT", 2020, "RAFT: Recurrent All-Pairs Field Transforms for Optical Flow",
                   "Optical flow between two frames: a correlation volume of all pixel pairs, read by a "
                   "recurrent (GRU) update that refines the flow field step by step."),
}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    year: int
    paper: str
    description: str
    input_size: tuple  # (C, H, W) the model is built for (the weights' crop size); one per input if several
    num_classes: int
    source: str  # "torchvision", "classic", "segmentation", "quantized" (int8) or "optical_flow"
    acc1: float | None = None  # ImageNet-1K top-1 of the default weights
    acc5: float | None = None
    num_params: int | None = None  # as published with the weights
    gmacs: float | None = None  # torchvision's `_ops`: GMACs at the crop size
    weights: str | None = None  # default weights enum, e.g. "ResNet50_Weights.IMAGENET1K_V2"
    build_kwargs: tuple = ()  # defaults passed to the builder, as (key, value) pairs
    note: str = ""

    @property
    def input_shapes(self) -> tuple:
        """One (C, H, W) per model input: RAFT takes two frames, every other model one image."""
        return self.input_size if isinstance(self.input_size[0], tuple) else (self.input_size,)

    @property
    def gflops(self) -> float | None:
        return None if self.gmacs is None else round(2 * self.gmacs, 3)


def _family_for(name: str) -> Family:
    keys = [k for k in _FAMILIES if name.startswith(k)]
    return _FAMILIES[max(keys, key=len)]


def _torchvision_info(name: str) -> ModelInfo:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    crop = weights.transforms.keywords.get("crop_size", 224)
    kwargs: dict = {}
    note = ""
    if name.startswith("vit_") and crop != 224:
        kwargs["image_size"] = crop  # e.g. vit_h_14's SWAG weights are for 518 px
    if name in ("googlenet", "inception_v3"):
        # As used with pretrained weights: no auxiliary classifiers (pass aux_logits=True to get them).
        kwargs.update(aux_logits=False, init_weights=True)
    if name == "inception_v3":
        note = ("torchvision's published num_params (27,161,264) includes the auxiliary classifier, which is "
                "only used in training; built with aux_logits=True the counts agree.")
    return _published_info(name, name, weights, "torchvision", kwargs, note)


def _published_info(name: str, family_of: str, weights, source: str, kwargs: dict, note: str) -> ModelInfo:
    """A catalog entry from torchvision's weights metadata (ImageNet-1K figures, parameters, `_ops`, crop)."""
    meta = weights.meta
    crop = weights.transforms.keywords.get("crop_size", 224)
    fam = _family_for(family_of)
    metrics = meta["_metrics"]["ImageNet-1K"]
    return ModelInfo(
        name=name, family=fam.name, year=fam.year, paper=fam.paper, description=fam.introduced,
        input_size=(3, crop, crop), num_classes=len(meta["categories"]), source=source,
        acc1=metrics["acc@1"], acc5=metrics["acc@5"], num_params=meta["num_params"], gmacs=meta["_ops"],
        weights=str(weights), build_kwargs=tuple(kwargs.items()), note=note,
    )


_QUANTIZED_NOTE = ("int8, quantized after training (torch.ao.quantization: BatchNorm folded into the "
                   "convolutions, weights packed as int8); inference only, on the CPU. torchvision's published "
                   "num_params is the float model's count: folding drops one value per BatchNorm channel, so "
                   "the int8 model holds slightly fewer.")


def _quantized_info(name: str) -> ModelInfo:
    """torchvision's int8 models (`torchvision.models.quantization`), built with ``quantize=True``: the float
    quantizable model fused, calibrated and converted on the CPU, as the builder does before loading weights."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    meta = weights.meta
    float_name = name.removeprefix("quantized_")
    kwargs: dict = {"quantize": True, "backend": meta["backend"]}
    note = _QUANTIZED_NOTE
    if float_name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=True)  # as the int8 weights are used
    if float_name == "inception_v3":
        note += " Its published num_params also includes the auxiliary classifier, which is not built."
    return _published_info(name, float_name, weights, "quantized", kwargs, note)


# The frame size torchvision's published `_ops` for RAFT is measured at (checked: analyze gives it exactly).
_FLOW_FRAME = (3, 512, 512)


def _flow_info(name: str) -> ModelInfo:
    """torchvision's optical-flow models: two frames in, a flow field out (RAFT)."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    meta = weights.meta
    fam = _family_for(name)
    return ModelInfo(
        name=name, family=fam.name, year=fam.year, paper=fam.paper, description=fam.introduced,
        input_size=(_FLOW_FRAME, _FLOW_FRAME), num_classes=0, source="optical_flow",
        num_params=meta["num_params"], gmacs=meta["_ops"], weights=str(weights),
        note=("Takes two frames (image1, image2) and returns the flow after each of its 12 refinement steps; "
              f"frames at least {meta['min_size'][0]}×{meta['min_size'][1]}, sides divisible by 8."),
    )


def _own_info(name: str, entry: dict, source: str) -> ModelInfo:
    return ModelInfo(
        name=name, family=entry["family"], year=entry["year"], paper=entry["paper"],
        description=entry["description"], input_size=tuple(entry["input_size"]),
        num_classes=entry["num_classes"], source=source,
    )


@lru_cache(maxsize=1)
def _registry() -> dict[str, tuple[ModelInfo, Callable[..., nn.Module]]]:
    from .models.classic import CLASSIC_MODELS
    from .models.segmentation import SEGMENTATION_MODELS

    reg = {}
    for name in torchvision.models.list_models(module=torchvision.models):
        reg[name] = (_torchvision_info(name), torchvision.models.get_model_builder(name))
    for name in torchvision.models.list_models(module=torchvision.models.quantization):
        reg[name] = (_quantized_info(name), _quantized_builder(name))
    for name in torchvision.models.list_models(module=torchvision.models.optical_flow):
        reg[name] = (_flow_info(name), torchvision.models.get_model_builder(name))
    for source, models in (("classic", CLASSIC_MODELS), ("segmentation", SEGMENTATION_MODELS)):
        for name, entry in models.items():
            reg[name] = (_own_info(name, entry, source), entry["builder"])
    return reg


_engine_lock = threading.Lock()


def _quantized_builder(name: str) -> Callable[..., nn.Module]:
    builder = torchvision.models.get_model_builder(name)

    def build_int8(**kwargs) -> nn.Module:
        # The builder calibrates on torch.rand and sets the process-wide quantized engine: keep both to itself.
        with _engine_lock, torch.random.fork_rng(devices=[]):
            engine = torch.backends.quantized.engine
            try:
                return builder(**kwargs).eval()
            finally:
                torch.backends.quantized.engine = engine

    return build_int8


def names(source: str | None = None) -> list[str]:
    """Every registered architecture name (optionally only "torchvision": the classification models, "classic",
    "segmentation": the homework's complete encoder–decoders, "quantized": torchvision's int8 models, or
    "optical_flow"), sorted."""
    return sorted(n for n, (i, _) in _registry().items() if source in (None, i.source))


def info(name: str) -> ModelInfo:
    try:
        return _registry()[name][0]
    except KeyError:
        close = difflib.get_close_matches(name, names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else " Run `python -m explorer list` to see them."
        shown = str(name)  # quoted on one line and short, whatever was asked for (a link can carry anything)
        shown = shown if shown.isprintable() else shown.encode("unicode_escape").decode("ascii")
        shown = shown if len(shown) <= 60 else shown[:59] + "…"
        raise UnknownModelError(f"There is no architecture called '{shown}' in the catalog.{hint}") from None


def families() -> list[str]:
    return sorted({info(n).family for n in names()})


def build(name: str, **kwargs) -> nn.Module:
    """An ordinary CPU model for ``name``, untrained; keyword arguments pass through to the builder."""
    mi = info(name)
    builder = _registry()[name][1]
    return builder(**{**dict(mi.build_kwargs), **kwargs})


def build_meta(name: str, **kwargs) -> nn.Module:
    """The same model with every parameter and buffer on the meta device: no memory, no initialisation.

    Tries the fast path (all factories on meta) first; builders that need real tensors while they are being
    constructed (RegNet computes its widths with ``.tolist()``) fall back to moving only parameters and buffers.
    An int8 quantized model comes back real: its packed weights are C++ objects with no meta form.
    """
    if info(name).source == "quantized":
        return build(name, **kwargs)
    try:
        with meta_init(), torch.device("meta"):
            return build(name, **kwargs)
    except (NotImplementedError, RuntimeError):
        with meta_init():
            return build(name, **kwargs)
