"""Which network the Feature maps, Explain and Predict pages run, as plain data.

Three kinds, one interface (`ModelChoice`):

* ``composition`` — what the person built on Compose (``key`` is the spec JSON);
* ``catalog`` — a catalog model whole, as published (``key`` is its name), so pretrained ImageNet weights give
  real class names;
* ``ready`` — a model that ships trained with the app (``key`` is a `weights.READY_MODELS` name: LeNet-5 on the
  digits, or the GAP CNN on digits placed on a canvas), so predictions, feature maps and Grad-CAM mean something
  without any download.

A choice knows its input shape, task, class names, how to turn a photo into an input, which layers have maps,
and builds its model (random weights, or the ready model's trained ones); the UI caches what it builds.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import catalog
from .images import ImageError, preprocess, resize_crop_normalise
from .runtime import seeded
from .spec import ArchitectureSpec, parsed

__all__ = ["ModelChoice", "KINDS", "MAX_RUN_PARAMS", "MAX_RUN_MACS", "feature_layers", "digit_samples", "digit_input",
           "digit_image", "digit_box"]

KINDS = ("composition", "catalog", "ready")
# The pages that run a network build it for real and keep it cached for every session: 200 M parameters is
# 800 MB in fp32. Larger ones (vit_l_*, vit_h_14, regnet_y_128gf) are refused with this limit named.
MAX_RUN_PARAMS = 200_000_000
# And up to 64 G multiply-accumulates per image (a forward in about a second or two on two CPU cores). Every
# catalog model within the parameter limit fits at its own input size (the largest, efficientnet_v2_l at 480 px,
# needs 56 G); a resnet50 composition at 1024×1024 (85 G) does not.
MAX_RUN_MACS = 64_000_000_000


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    kind: str  # one of KINDS
    key: str  # spec JSON | catalog name | ready-model name

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Unknown model kind {self.kind!r}; choose one of {', '.join(KINDS)}.")

    # -- what it is --------------------------------------------------------------------------------------------
    @property
    def spec(self) -> ArchitectureSpec | None:
        return parsed(self.key) if self.kind == "composition" else None

    @property
    def ready(self):
        from .weights import READY_MODELS

        return READY_MODELS[self.key] if self.kind == "ready" else None

    @property
    def catalog_name(self) -> str | None:
        """The catalog model whose whole architecture this is (None for a composition)."""
        if self.kind == "catalog":
            return self.key
        if self.kind == "ready":
            return self.ready.catalog_name
        return None

    @property
    def backbone_name(self) -> str | None:
        """The catalog model whose published weights fit (all of it, or the composition's backbone)."""
        if self.kind == "composition":
            return None if self.spec.backbone.is_custom else self.spec.backbone.name
        return self.key if self.kind == "catalog" else None

    @property
    def title(self) -> str:
        if self.kind == "composition":
            return self.spec.summary()
        if self.kind == "ready":
            return self.ready.title
        return self.key

    @property
    def input_shape(self) -> tuple[int, int, int]:
        if self.kind == "composition":
            return tuple(self.spec.input.shape)
        return tuple(int(v) for v in catalog.info(self.catalog_name).input_size)

    @property
    def task(self) -> str:
        if self.kind == "composition":
            return self.spec.task
        # the homework encoder–decoders are catalog models too: per-pixel classes
        return "segmentation" if catalog.info(self.catalog_name).source == "segmentation" else "classification"

    @property
    def num_classes(self) -> int | None:
        if self.kind == "composition":
            return self.spec.head.settings.get("num_classes")
        return int(catalog.info(self.catalog_name).num_classes)

    def labels(self, pretrained: bool = False) -> list[str] | None:
        """Class names: the ready model's, or the published weights' when they are loaded; else None."""
        if self.kind == "ready":
            return list(self.ready.classes)
        if self.kind == "catalog" and pretrained:
            from .weights import categories

            return categories(self.key)
        return None

    # -- inputs ------------------------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> tuple[torch.Tensor, str]:
        """A photo as this model's (1, C, H, W) input, and the steps taken, in one line."""
        if self.kind == "catalog":
            return preprocess(image, self.key)
        if self.kind == "ready":
            return _digit_preprocess(image, self.ready.dataset)
        c, h, w = self.input_shape
        mean = std = None
        name = self.backbone_name
        if name and catalog.info(name).weights and c == 3:
            import torchvision

            t = torchvision.models.get_weight(catalog.info(name).weights).transforms()
            mean, std = tuple(t.mean), tuple(t.std)
        return resize_crop_normalise(image, (c, h, w), mean, std, model_name="This composition")

    # -- the model ---------------------------------------------------------------------------------------------
    def parameter_count(self) -> int:
        """Parameters, without building the model for real (published count, or a build on the meta device)."""
        if self.kind != "composition" and catalog.info(self.catalog_name).num_params:
            return int(catalog.info(self.catalog_name).num_params)
        if self.kind == "composition":
            from .compose import build_meta

            meta = build_meta(self.spec)
        else:
            meta = catalog.build_meta(self.catalog_name)
        return sum(p.numel() for p in meta.parameters())

    def mac_count(self) -> int:
        """Multiply-accumulates per image at the input size it runs at (published figure, or the meta analysis)."""
        if self.kind != "composition" and catalog.info(self.catalog_name).gmacs:
            return int(catalog.info(self.catalog_name).gmacs * 1e9)
        if self.kind == "composition":
            from .compose import analyze_spec

            return int(analyze_spec(self.spec).macs)
        from .analysis import analyze

        return int(analyze(self.catalog_name).macs)

    def check_runnable(self) -> None:
        """ValueError with a sentence if the model is too large to build and keep, or too slow to run, here."""
        n = self.parameter_count()
        if n > MAX_RUN_PARAMS:
            raise ValueError(f"{self.title} has {n / 1e6:,.0f} M parameters; the pages that run a network take "
                             f"up to {MAX_RUN_PARAMS / 1e6:,.0f} M on this server, so choose a smaller model "
                             "(its costs and fields stay on Compose, Layers and Receptive fields).")
        macs = self.mac_count()
        if macs > MAX_RUN_MACS:
            raise ValueError(f"{self.title} needs {macs / 1e9:,.1f} G multiply-accumulates per image; the pages that "
                             f"run a network take up to {MAX_RUN_MACS / 1e9:,.0f} G on this server, so use a "
                             "smaller input or fewer stages (its costs and fields stay on Compose, Layers and "
                             "Receptive fields).")

    def build(self) -> nn.Module:
        """The model in eval mode with gradients off (ready to share between sessions): random weights, except
        the ready model's trained ones. ValueError (a sentence) if it is larger than `MAX_RUN_PARAMS`.

        The random weights are seeded by the choice itself, so a model rebuilt after the cache dropped it is the
        same model: results cached for it stay true, and everyone who opens one link sees the same untrained
        predictions."""
        self.check_runnable()
        if self.kind == "ready":
            from .weights import ready_model

            return ready_model(self.key).eval().requires_grad_(False)
        with seeded(f"{self.kind}|{self.key}"):
            if self.kind == "composition":
                from .compose import build

                model = build(self.spec)
            else:
                model = catalog.build(self.key)
        return model.eval().requires_grad_(False)


def feature_layers(choice: ModelChoice, model: nn.Module) -> tuple[list[tuple[str, tuple]], list[tuple[str, tuple]]]:
    """(stages, layers) with a spatial map (C×H×W output), each as (module path, output shape), forward order.

    Stages are what a person picks first; every layer with a map comes on expand. Shapes come from one forward of
    a private copy of ``model`` (`explorer.vis.features.spatial_layers`), which also sees the stages of a
    graph-traced backbone (whose containers never run a forward of their own, so the meta analysis lacks them)."""
    from .vis.features import spatial_layers

    layers = spatial_layers(model, choice.input_shape)
    if choice.kind == "composition":
        from .compose import backbone_stages

        wanted = [f"backbone.body.{s.name}" for s in backbone_stages(choice.spec)] + ["neck", "head"]
    else:
        from .analysis import analyze

        wanted = analyze(catalog.build_meta(choice.catalog_name), choice.input_shape,
                         training_memory=False).stage_paths()
    shapes = dict(layers)
    stages = [(p, shapes[p]) for p in wanted if p in shapes and len(shapes[p]) == 3 and shapes[p][1] * shapes[p][2] > 1]
    every = [(p, s) for p, s in layers if len(s) == 3]
    # A network whose stages hide the maps (LeNet-5: one `features` Sequential) is listed layer by layer.
    return (stages if len(stages) >= 2 else every), every


# -- the digits (for the ready models) ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _digits(dataset: str):
    from .samples import DIGIT_SETS

    return DIGIT_SETS[dataset].load()


def digit_samples(count: int = 40, dataset: str = "digits") -> list[tuple[int, int]]:
    """(index into the data set, true label) of the first ``count`` held-out digits (never seen in training)."""
    x, y, split = _digits(dataset)[:3]
    return [(int(i), int(y[i])) for i in split["test"][:count]]


def digit_input(index: int, dataset: str = "digits") -> tuple[torch.Tensor, int]:
    """Held-out digit ``index`` exactly as in training (1×1×32×32, or 1×1×64×64 on the canvas) and its label."""
    x, y, _ = _digits(dataset)[:3]
    return x[index:index + 1].clone(), int(y[index])


def digit_image(index: int, dataset: str = "digits") -> Image.Image:
    """Held-out digit ``index`` as a grey picture at the input's size (white ink on black, as in training)."""
    from .samples import DIGIT_SETS

    x = _digits(dataset)[0]
    a = (DIGIT_SETS[dataset].unnormalise(x[index, 0]).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(a, "L").convert("RGB")


def digit_box(index: int, dataset: str = "digits") -> tuple[int, int, int, int] | None:
    """Where held-out digit ``index`` sits in its input, (top, left, bottom, right), for the digits on a canvas;
    None where the digit fills the frame."""
    data = _digits(dataset)
    return tuple(int(v) for v in data[3][index]) if len(data) > 3 else None


def _digit_preprocess(image: Image.Image, dataset: str = "digits") -> tuple[torch.Tensor, str]:
    """A photo of a digit as a ready model's input: grey, light ink on a dark ground (inverted if the ground is
    light, as on paper), resized to the input's size, normalised as the training digits."""
    from .samples import DIGIT_SETS

    digit_set = DIGIT_SETS[dataset]
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    if grey.size == 0:
        raise ImageError("The image has no pixels; upload a photo of one digit.")
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    steps = ["grayscale"]
    if float(np.median(border)) > 0.5:  # dark ink on light paper: the training digits are the other way round
        grey = 1.0 - grey
        steps.append("inverted (the training digits are light on dark)")
    x = torch.from_numpy(grey)[None, None]
    size = digit_set.size
    if digit_set.on_canvas:
        from .samples import fit_on_canvas

        fitted = fit_on_canvas(x)
        if fitted is not None:
            x = fitted
            steps.append("the ink cropped, fitted into 24×24 and placed at the centre of a blank 64×64 canvas "
                         "(the training digits are 24 px high)")
    if tuple(x.shape[-2:]) != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                            align_corners=False)
        steps.append(f"resize to {size}×{size} (bilinear)")
    if (digit_set.mean, digit_set.std) != (0.0, 1.0):
        x = (x.clamp(0, 1) - digit_set.mean) / digit_set.std
        steps.append(f"normalise with mean {digit_set.mean:g} / std {digit_set.std:g}")
    else:
        x = x.clamp(0, 1)
    return x.float(), " → ".join(steps)
