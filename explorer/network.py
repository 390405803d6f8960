"""What the Feature maps, Explain and Predict pages run: one `Network` type for every kind of network.

A `Network` is a frozen description — how to build it, how a photo becomes its input, its class names, input
shape, task, where its weights come from, its `ArchitectureSpec` where it has one, a title and a cache key. One
constructor per kind sets all of it, so nothing downstream asks which kind it has:

* `Network.composition(spec)` — what the person built on Compose;
* `Network.catalog(name)` — a catalog model whole, as published;
* `Network.ready(name)` — a model that ships trained (`weights.READY_MODELS`: LeNet-5 on the digits, the GAP CNN
  on digits placed on a canvas);
* `Network.trained(folder)` — a finished run of the Train page: its model as the run built it, the run's
  final weights, the data set's class names and preprocessing; provenance "trained in the app".

`with_pretrained()` and `with_upload(...)` give the same network with other weights. `build()` makes the
model (eval mode, gradients off: ready to share between sessions) and returns it with what the weights loader
adapted, as a `BuiltNetwork`. The library functions that run a model (`explorer.predict.predict`,
`explorer.vis.attribution`, `explorer.vis.features`, `explorer.weights.load_weights`) take the task, class
names and layout from a ``network=`` argument instead of reading attributes off the module. No streamlit here.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pathlib
from typing import Callable

import torch
from PIL import Image
from torch import nn

from . import catalog
from .images import (IMAGENET_MEAN, IMAGENET_STD, digit_preprocess, preprocess, resize_crop_normalise,
                     weights_statistics)
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
    description: str | None = None  # a ready or trained model: what it was trained on, how well it does
    dataset: str | None = None  # a model trained on digits: its `samples.DIGIT_SETS` entry (its held-out samples)
    # A digit drawn or photographed is prepared as this `samples.DIGIT_SETS` entry's digits (Predict's canvas).
    digit_set: str | None = None
    # A held-out sample of ``dataset`` (normalised as that set) as this network's input; None: it is one already.
    dataset_input: Callable[[torch.Tensor], torch.Tensor] | None = dataclasses.field(default=None, repr=False)
    label: str | None = None  # how the network choice lists it (a run: "lenet5 on Digits · trained in the app · …")
    target_label: str | None = None  # a regression network's output, with its unit: "rotation angle (°)"
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
        network = self
        if report is not None and getattr(report, "random_parts", None):
            # A file for the backbone alone: the head keeps its random weights, so the network is not all trained.
            network = dataclasses.replace(self, fully_trained=False)
        return BuiltNetwork(network, model.eval().requires_grad_(False), notes)

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
                          description=ready.description, dataset=ready.dataset, digit_set=ready.dataset)

    @classmethod
    def trained(cls, folder: str | os.PathLike) -> "Network":
        """The finished run in ``folder`` (a Train page run: config.json, result.json, final.safetensors): the model
        its config builds (`training.networks.prepare_model`, the head fitted to the data set) with the run's final
        weights loaded strictly, photos prepared as the data set's images were, its class names and test score.
        `TrainingError` (a sentence) for a run that has not finished or whose files are missing."""
        from .training import TrainingError, datasets
        from .training.networks import network_input_shape
        from .training.runfolder import RunFolder
        from .weights import READY_MODELS

        run = RunFolder(folder)
        run_id = run.run_id
        if not run.path.is_dir():
            raise TrainingError(f"There is no run {run_id!r} in {run.path.parent}; pick a finished run on Train.")
        state = run.status().get("state")
        if state != "finished":
            raise TrainingError(f"The run {run_id} is {state}, not finished; wait for it to finish on Train, or "
                                "pick a finished run.")
        missing = [p.name for p in (run.config_path, run.result_path, run.final_path) if not p.is_file()]
        if missing:
            raise TrainingError(f"The run {run_id} has no {' or '.join(missing)} in its folder; train it again on "
                                "Train.")
        cfg = run.config()
        result = run.result()
        if result is None:
            raise TrainingError(f"The run {run_id}'s result.json cannot be read; train it again on Train.")
        dataset = datasets.get(cfg.dataset)
        if dataset.task == "segmentation":
            raise TrainingError(f"The run {run_id} segments {dataset.title}: Predict, Explain and Feature maps open "
                                "classification and regression runs only; its predicted masks, per-class IoU and "
                                "confusion matrix are on Train.")
        final = run.final_path
        digest = _file_digest(str(final), *_stamp(final))
        kind, what = _run_network(cfg.network)
        if kind == "composition":
            spec = _fitted_spec(what, dataset)
            base = cls.composition(spec)
            title = spec.summary()
        else:
            arch = READY_MODELS[what].catalog_name if kind == "ready" else what
            base = cls.catalog(arch)
            title = arch
        shape = tuple(int(v) for v in network_input_shape(cfg.network))
        norm = _run_input_norm(cfg, kind, what, dataset)
        test = result.get("test") or {}
        score = _score(test, dataset)
        short = score.removeprefix("test accuracy ").removeprefix("test ")  # "98.6 %", "MAE 3.21°"
        digit_set = _DIGIT_SETS_OF.get(dataset.name)
        dataset_input = _to_network_input(dataset, shape, norm)

        def build() -> nn.Module:
            from .training.networks import prepare_model

            # The run's architecture, seeded; its starting weights do not matter (the final ones replace them), so
            # a pretrained start is not loaded again (its file or cache may be gone by now).
            return prepare_model(cfg.replace(mode="scratch", pretrained_from=None), dataset).model

        def load_final(model: nn.Module):
            from safetensors.torch import load_file

            try:
                state = load_file(str(final))
            except Exception as e:  # safetensors' own error type: a file damaged or replaced by hand
                raise TrainingError(f"The final weights of run {run_id} cannot be read ({str(e)[:120]}); train it "
                                    "again on Train.") from None
            expected = model.state_dict()
            missing = [k for k in expected if k not in state]
            wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
            extra = [k for k in state if k not in expected]
            if missing or wrong or extra:  # not what the run wrote: changed by hand, or by another version
                key = (missing or wrong or extra)[0]
                problem = "lacks" if missing else "has another shape for" if wrong else "has the unknown tensor"
                raise TrainingError(f"The final weights of run {run_id} do not fit its network: its "
                                    f"final.safetensors {problem} {key!r} ({len(missing)} missing, {len(wrong)} of "
                                    f"another shape, {len(extra)} unknown); train it again on Train.")
            model.load_state_dict(state, strict=True)
            return None

        def prepare(image: Image.Image) -> tuple[torch.Tensor, str]:
            if digit_set is not None:
                x, steps = digit_preprocess(image, digit_set)
            else:
                x, steps = resize_crop_normalise(image, dataset.input_shape, dataset.mean, dataset.std,
                                                 model_name=title)
            notes: list[str] = []
            x = dataset_input(x, notes)
            return x, " → ".join([steps, *notes]) if notes else steps

        total = result.get("total_parameters")
        epochs = result.get("epochs_run", cfg.epochs)
        trained_on = f"trained in the app on {dataset.title}"
        return dataclasses.replace(
            base, kind="trained", key=run_id, title=title, input_shape=shape, task=dataset.task,
            num_classes=dataset.num_classes, classes=tuple(dataset.classes) if dataset.classes else None,
            provenance="trained in the app", weights_key=f"run:{digest}",
            weights_label=f"{trained_on}, {score} (run {run_id})", fully_trained=True, builder=build,
            preprocessing=prepare, load_weights=load_final,
            count_params=(lambda: int(total)) if total else base.count_params,
            spec=base.spec, backbone_name=None,  # its weights are the run's: no pretrained switch
            description=(f"{title} {trained_on}: {epochs} epoch{'s' if epochs != 1 else ''} "
                         f"{_MODE_PHRASES.get(cfg.mode, cfg.mode)}, {_RECIPE_PHRASES.get(cfg.recipe, cfg.recipe)}; "
                         f"{score} on its {test.get('count', '?')} test images."),
            dataset=digit_set, digit_set=digit_set, dataset_input=lambda x: dataset_input(x, []),
            label=f"{title} on {dataset.title} · trained in the app · {short}",
            target_label=f"{dataset.target.name} ({dataset.target.unit})" if dataset.target else None)

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


# -- trained runs ----------------------------------------------------------------------------------------------------
# A training data set of digits -> the `samples.DIGIT_SETS` entry whose held-out digits and photo preprocessing it
# shares (rotated digits are the same 32×32 digits, turned).
_DIGIT_SETS_OF = {"digits": "digits", "digits_canvas": "digits_on_canvas", "rotated_digits": "digits"}
_MODE_PHRASES = {"scratch": "from scratch", "frozen": "on a frozen pretrained backbone",
                 "finetune": "fine-tuned from pretrained weights",
                 "discriminative": "fine-tuned from pretrained weights, the backbone slower"}
_RECIPE_PHRASES = {"adam": "Adam", "one_cycle": "the one-cycle recipe", "resnet": "the ResNet recipe"}


def _stamp(path: pathlib.Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    """sha256 of a file, computed once per version of it (its time and size name the version)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run_network(network) -> tuple[str, object]:
    """("composition", spec) | ("catalog", name) | ("ready", name) of a run config's network."""
    from .spec import ArchitectureSpec
    from .weights import READY_MODELS

    if isinstance(network, ArchitectureSpec):
        return "composition", network
    if isinstance(network, dict):
        return "composition", ArchitectureSpec.from_dict(network)
    if isinstance(network, str) and network.lstrip().startswith("{"):
        return "composition", ArchitectureSpec.from_json(network)
    return ("ready" if network in READY_MODELS else "catalog"), network


def _fitted_spec(spec: ArchitectureSpec, dataset) -> ArchitectureSpec:
    """The composition as the run trained it: its head sized to the data set, as `training.networks` does."""
    d = spec.to_dict()
    if dataset.task == "classification":
        d["head"]["num_classes"] = dataset.num_classes
    else:
        d["head"]["outputs"] = 1
    return ArchitectureSpec.from_dict(d)


def _run_input_norm(cfg, kind: str, what, dataset) -> tuple | None:
    """(mean, std) the run's images were normalised with (`Prepared.input_norm`): what its pretrained start expects,
    or None for the data set's own (from scratch, or from an earlier run's file)."""
    from .samples import DIGIT_SETS
    from .weights import READY_MODELS

    if cfg.mode == "scratch" or cfg.pretrained_from is not None:
        return None
    if kind == "composition":
        arch = what.backbone.name
    else:
        arch = READY_MODELS[what].catalog_name if kind == "ready" else what
    ready = READY_MODELS[what] if kind == "ready" else next(
        (r for r in READY_MODELS.values() if r.catalog_name == arch), None)
    if ready is not None:
        digits = DIGIT_SETS[ready.dataset]
        return (digits.mean,), (digits.std,)
    return IMAGENET_MEAN, IMAGENET_STD  # torchvision's weights


def _to_network_input(dataset, shape: tuple, norm: tuple | None):
    """A function of (images normalised as ``dataset``, notes) -> the run's input: exactly the conversion its
    training data went through (`training.networks.fit_data`: resize, channels, normalisation)."""
    from .training.datasets import Splits
    from .training.networks import fit_data

    def convert(x: torch.Tensor, notes: list[str]) -> torch.Tensor:
        y = torch.zeros(len(x), dtype=torch.int64)
        return fit_data(Splits(x, y, x, y, x, y), dataset, shape, notes, norm)[0].x_train

    return convert


def _score(test: dict, dataset) -> str:
    """The run's test score as the pages print it: "test accuracy 98.6 %", "test MAE 3.21°"."""
    if "accuracy" in test:
        return f"test accuracy {test['accuracy'] * 100:.1f} %"
    if "mae" in test:
        unit = dataset.target.unit if dataset.target else ""
        return f"test MAE {test['mae']:.3g}{'' if unit in ('°', '') else ' '}{unit}"
    return "no test score"


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
