"""What the Feature maps, Explain and Predict pages run: one `Network` type for every kind of network.

A `Network` is a frozen description — how to build it, how a photo becomes its input, its class names, input
shape, task, where its weights come from, its `ArchitectureSpec` where it has one, a title and a cache key. One
constructor per kind sets all of it, so nothing downstream asks which kind it has:

* `Network.composition(spec)` — what the person built on Compose;
* `Network.catalog(name)` — a catalog model whole, as published;
* `Network.ready(name)` — a model that ships trained (`weights.READY_MODELS`: LeNet-5 on the digits, the GAP CNN
  on digits placed on a canvas);
* a model trained in the app will be one more constructor: its builder loads the run's checkpoint, its
  provenance is "trained in the app".

`with_pretrained()` and `with_upload(...)` give the same network with other weights. `build()` makes the
model (eval mode, gradients off: ready to share between sessions) and returns it with what the weights loader
adapted, as a `BuiltNetwork`. The library functions that run a model (`explorer.predict.predict`,
`explorer.vis.attribution`, `explorer.vis.features`, `explorer.weights.load_weights`) take the task, class
names and layout from a ``network=`` argument instead of reading attributes off the module. No streamlit here.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable

import torch
from PIL import Image
from torch import nn

from . import catalog
from .images import digit_preprocess, preprocess, resize_crop_normalise, weights_statistics
from .runtime import seeded
from .spec import ArchitectureSpec

__all__ = ["Network", "BuiltNetwork", "KINDS", "KIND_TITLES", "PROVENANCES", "MAX_RUN_PARAMS", "MAX_RUN_MACS",
           "feature_layers"]

KINDS = ("composition", "catalog", "ready", "trained")
KIND_TITLES = {"composition": "Your composition", "catalog": "Catalog model", "ready": "Ready model",
               "trained": "Trained in the app"}
PROVENANCES = ("pretrained", "uploaded", "trained in the app", "untrained")
# The pages that run a network build it for real and keep it cached for every session: 200 M parameters is
# 800 MB in fp32. Larger ones (vit_l_*, vit_h_14, regnet_y_128gf) are refused with this limit named.
MAX_RUN_PARAMS = 200_000_000
# And up to 64 G multiply-accumulates per image (a forward in about a second or two on two CPU cores). Every
# catalog model within the parameter limit fits at its own input size (the largest, efficientnet_v2_l at 480 px,
# needs 56 G); a resnet50 composition at 1024×1024 (85 G) does not.
MAX_RUN_MACS = 64_000_000_000


def _keep_starting_weights(model: nn.Module):
    """The weights loader of a network whose builder's weights are the ones it holds: loads nothing."""
    return None


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """One network a run page can run. Make one with `composition`, `catalog` or `ready`; equal (and hashed)
    by `cache_key`."""

    kind: str  # one of KINDS
    key: str  # the architecture within its kind: spec JSON | catalog name | ready-model name
    title: str  # its own name, as sentences use it: "resnet18 → classification (1000) at 3×224×224", "lenet5"
    input_shape: tuple[int, int, int]
    task: str  # classification | regression | detection | segmentation | similarity
    num_classes: int | None
    classes: tuple[str, ...] | None  # class names where the weights give them, else None
    provenance: str  # one of PROVENANCES
    weights_key: str  # "random" | "trained" | "pretrained" | "upload:<sha256>": part of the cache key
    weights_label: str  # what the page says about the weights: "untrained (random weights)", "pretrained: …"
    fully_trained: bool  # every weight trained (a pretrained backbone under a random head is not)
    # How: the architecture with its starting weights (seeded random, or the ready model's trained ones) …
    builder: Callable[[], nn.Module] = dataclasses.field(repr=False)
    # … a photo as its (1, C, H, W) input and the steps in one line …
    preprocessing: Callable[[Image.Image], tuple[torch.Tensor, str]] = dataclasses.field(repr=False)
    # … its parameters and multiply-accumulates per image without a real build, for the limits …
    count_params: Callable[[], int] = dataclasses.field(repr=False)
    count_macs: Callable[[], int] = dataclasses.field(repr=False)
    # … the module paths a person picks first on Feature maps (stages), and the weights its provenance names.
    stage_paths: Callable[[], list[str]] = dataclasses.field(repr=False)
    load_weights: Callable[[nn.Module], object] = dataclasses.field(default=_keep_starting_weights, repr=False)
    spec: ArchitectureSpec | None = None  # the composition's spec (an object: read it, change a copy)
    catalog_name: str | None = None  # the catalog model whose whole architecture this is
    backbone_name: str | None = None  # the catalog model whose published weights fit (all of it, or the backbone)
    description: str | None = None  # a ready model: what it was trained on, how well it does
    dataset: str | None = None  # a ready model: its `samples.DIGIT_SETS` entry (its samples and preprocessing)
    noun: str = "model"  # "composition" or "model", in sentences about weights that do not fit
    cam_scope: str = ""  # module-path prefix Grad-CAM's default layer is taken from ("" = the whole model)
    # fx graph module path -> catalog model it was traced from (its node names give the layers' real paths)
    graph_origins: tuple[tuple[str, str], ...] = ()
    # module-path prefix -> the part it is, for "holds weights for the resnet18 backbone alone"
    weight_parts: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Unknown network kind {self.kind!r}; choose one of {', '.join(KINDS)}.")
        if self.provenance not in PROVENANCES:
            raise ValueError(f"Unknown weights provenance {self.provenance!r}; choose one of "
                             f"{', '.join(PROVENANCES)}.")

    # -- identity ----------------------------------------------------------------------------------------------
    @property
    def cache_key(self) -> str:
        """What it is and which weights it holds: two networks with one key are the same model."""
        return f"{self.kind}|{self.key}|{self.weights_key}"

    def __eq__(self, other) -> bool:
        return isinstance(other, Network) and other.cache_key == self.cache_key

    def __hash__(self) -> int:
        return hash(self.cache_key)

    @property
    def headline(self) -> str:
        """Which network this is, for the top of a page: "Catalog model: resnet18"."""
        return f"{KIND_TITLES[self.kind]}: {self.title}"

    # -- inputs ------------------------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> tuple[torch.Tensor, str]:
        """A photo as this network's (1, C, H, W) input, and the steps taken, in one line."""
        return self.preprocessing(image)

    # -- limits ------------------------------------------------------------------------------------------------
    def parameter_count(self) -> int:
        return int(self.count_params())

    def mac_count(self) -> int:
        return int(self.count_macs())

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

    # -- the model ---------------------------------------------------------------------------------------------
    def build(self) -> "BuiltNetwork":
        """The model in eval mode with gradients off (ready to share between sessions), its weights loaded as
        the provenance says. ValueError (a sentence) if it is too large to run here; `weights.WeightsError` if
        the weights do not load.

        Random weights are seeded by the network itself, so a model rebuilt after the cache dropped it is the same
        model: results cached for it stay true, and everyone who opens one link sees the same predictions."""
        self.check_runnable()
        model = self.builder()
        report = self.load_weights(model)
        notes = tuple(report.notes) if report is not None else ()
        return BuiltNetwork(self, model.eval().requires_grad_(False), notes)

    # -- other weights -----------------------------------------------------------------------------------------
    def with_pretrained(self) -> "Network":
        """The same network with the published torchvision weights of `backbone_name` (from the cache only): the
        whole model for a catalog model, the backbone of a composition. ValueError if there are none."""
        from . import weights

        name = self.backbone_name
        if not name or weights.weights_entry(name) is None:
            raise ValueError(f"{self.title} has no published pretrained weights; upload a weights file for it "
                             "instead.")
        enum = catalog.info(name).weights
        if self.spec is not None:
            spec = self.spec
            return dataclasses.replace(
                self, provenance="pretrained", weights_key="pretrained", fully_trained=False, classes=None,
                weights_label=f"pretrained backbone ({enum})",  # the loader's notes say what stays random
                load_weights=lambda model: weights.load_pretrained_backbone(model, spec))
        return dataclasses.replace(
            self, provenance="pretrained", weights_key="pretrained", fully_trained=True,
            classes=tuple(weights.categories(name) or ()) or None, weights_label=f"pretrained: {enum}",
            load_weights=lambda model: weights.load_pretrained(model, name))

    def with_upload(self, filename: str, data: bytes, digest: str | None = None) -> "Network":
        """The same network with an uploaded weights file (``digest``: its sha256, when the caller has it). The
        class names stay this network's. Loading (strict, every check of `weights.load_weights`) happens in
        `build`."""
        from . import weights

        digest = digest or hashlib.sha256(data).hexdigest()
        base = self
        return dataclasses.replace(
            self, provenance="uploaded", weights_key=f"upload:{digest}", fully_trained=True,
            weights_label=f"uploaded weights: {filename}",
            load_weights=lambda model: weights.load_weights(model, data, filename, network=base))

    # -- constructors ------------------------------------------------------------------------------------------
    @classmethod
    def composition(cls, spec: ArchitectureSpec) -> "Network":
        """The composition ``spec``, with random weights (seeded by the spec)."""
        from . import compose

        key = spec.to_json()
        c, h, w = (int(v) for v in spec.input.shape)
        name = None if spec.backbone.is_custom else spec.backbone.name
        mean, std = weights_statistics(name) if c == 3 else (None, None)
        body = compose.STAGE_PREFIX.rstrip(".")

        def build():
            with seeded(f"composition|{key}"):
                return compose.build(spec)

        return cls(
            kind="composition", key=key, title=spec.summary(), input_shape=(c, h, w), task=spec.task,
            num_classes=spec.head.settings.get("num_classes"), classes=None, provenance="untrained",
            weights_key="random", weights_label="untrained (random weights)", fully_trained=False,
            builder=build,
            preprocessing=lambda image: resize_crop_normalise(image, (c, h, w), mean, std,
                                                              model_name="This composition"),
            count_params=lambda: sum(p.numel() for p in compose.build_meta(spec).parameters()),
            count_macs=lambda: compose.analyze_spec(spec).macs,
            stage_paths=lambda: [compose.stage_path(s.name) for s in compose.backbone_stages(spec)] + ["neck", "head"],
            spec=spec, backbone_name=name, noun="composition", cam_scope="backbone.",
            graph_origins=((body, name),) if name else (),
            weight_parts=((compose.STAGE_PREFIX, f"the {name} backbone"),) if name else ())

    @classmethod
    def catalog(cls, name: str) -> "Network":
        """Catalog model ``name`` whole, as published, with random weights (seeded by the name)."""
        if name not in catalog.names():
            raise ValueError(f"There is no catalog model called {name!r}; pick one on Layers or the Zoo.")

        def build():
            with seeded(f"catalog|{name}"):
                return catalog.build(name)

        return cls._whole(kind="catalog", key=name, title=name, catalog_name=name, backbone_name=name,
                          builder=build, preprocessing=lambda image: preprocess(image, name), classes=None,
                          provenance="untrained", weights_key="random",
                          weights_label="untrained (random weights)", fully_trained=False)

    @classmethod
    def ready(cls, name: str) -> "Network":
        """Ready model ``name`` (`weights.READY_MODELS`) with its bundled trained weights."""
        from . import weights

        if name not in weights.READY_MODELS:
            raise ValueError(f"There is no ready model called {name!r}; choose one of "
                             f"{', '.join(weights.READY_MODELS)}.")
        ready = weights.READY_MODELS[name]
        return cls._whole(kind="ready", key=name, title=ready.title, catalog_name=ready.catalog_name,
                          backbone_name=None, builder=lambda: weights.ready_model(name),
                          preprocessing=lambda image: digit_preprocess(image, ready.dataset),
                          classes=tuple(ready.classes), provenance="pretrained", weights_key="trained",
                          weights_label=f"trained: {ready.path.name}", fully_trained=True,
                          description=ready.description, dataset=ready.dataset)

    @classmethod
    def _whole(cls, catalog_name: str, **fields) -> "Network":
        """A network whose whole architecture is catalog model ``catalog_name``."""
        info = catalog.info(catalog_name)
        shape = tuple(int(v) for v in info.input_size)

        def params() -> int:
            return int(info.num_params) if info.num_params else sum(
                p.numel() for p in catalog.build_meta(catalog_name).parameters())

        def macs() -> int:
            if info.gmacs:
                return int(info.gmacs * 1e9)
            from .analysis import analyze

            return int(analyze(catalog_name).macs)

        def stages() -> list[str]:
            from .analysis import analyze

            return analyze(catalog.build_meta(catalog_name), shape, training_memory=False).stage_paths()

        # the homework encoder–decoders are catalog models too: per-pixel classes
        task = "segmentation" if info.source == "segmentation" else "classification"
        return cls(input_shape=shape, task=task, num_classes=int(info.num_classes), count_params=params,
                   count_macs=macs, stage_paths=stages, catalog_name=catalog_name, **fields)


@dataclasses.dataclass(frozen=True, eq=False)
class BuiltNetwork:
    """A network and its built model (shared: never train, hook or move it), with what the weights loader
    adapted (a prefix removed, fp16 converted, parts left random) for the page to say."""

    network: Network
    model: nn.Module
    notes: tuple[str, ...] = ()

    @property
    def cache_key(self) -> str:
        return self.network.cache_key

    @property
    def labels(self) -> list[str] | None:
        return list(self.network.classes) if self.network.classes else None

    def label_of(self, index: int) -> str:
        classes = self.network.classes
        return classes[index] if classes and 0 <= index < len(classes) else f"class {index}"


def feature_layers(network: Network, model: nn.Module) -> tuple[list[tuple[str, tuple]], list[tuple[str, tuple]]]:
    """(stages, layers) with a spatial map (C×H×W output), each as (module path, output shape), forward order.

    Stages are what a person picks first; every layer with a map comes on expand. Shapes come from one forward of
    a private copy of ``model`` (`explorer.vis.features.spatial_layers`), which also sees the stages of a
    graph-traced backbone (whose containers never run a forward of their own, so the meta analysis lacks them)."""
    from .vis.features import spatial_layers

    layers = spatial_layers(model, network.input_shape, network=network)
    shapes = dict(layers)
    stages = [(p, shapes[p]) for p in network.stage_paths()
              if p in shapes and len(shapes[p]) == 3 and shapes[p][1] * shapes[p][2] > 1]
    every = [(p, s) for p, s in layers if len(s) == 3]
    # A network whose stages hide the maps (LeNet-5: one `features` Sequential) is listed layer by layer.
    return (stages if len(stages) >= 2 else every), every
