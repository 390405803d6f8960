"""The model a run trains: built from the config's network, fitted to the data set, given its starting weights and
split into the backbone (what a pretrained start brings, frozen or slowed) and the head (what always trains).

* A composition (`ArchitectureSpec`) is built with `compose.build`, so the trained model keeps its ``backbone``,
  ``neck`` and ``head`` children; its head is sized to the data set (classes or one output). The backbone is
  ``model.backbone``; the neck, which no pretrained weights cover, trains with the head.
* A catalog model or a ready model is trained whole; its head is its last linear layer (replaced when the number
  of classes differs), its backbone everything before it.

Pretrained starts, in this order: the state dict file ``pretrained_from`` (an earlier run), the shipped digit
model of the same architecture (LeNet-5, the GAP CNN), torchvision's weights where they are in its cache (never
downloaded). None of them there: a sentence saying what to do.
"""
from __future__ import annotations

import dataclasses
import pathlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .config import TrainConfig
from .datasets import Dataset, Splits
from .errors import TrainingError

__all__ = ["Prepared", "prepare_model", "network_input_shape", "network_for_task", "fit_data", "fold_target_scale",
           "folded_state", "MAX_DATA_BYTES"]

MAX_DATA_BYTES = 2 * 2**30  # the splits at the network's input, in memory (float32)


@dataclasses.dataclass
class Prepared:
    model: nn.Module
    kind: str  # "composition" | "catalog" | "ready"
    title: str
    input_shape: tuple[int, int, int]
    backbone_params: list[nn.Parameter]
    head_params: list[nn.Parameter]  # neck and head (composition) or the last linear layer (whole model)
    frozen_batchnorms: list[nn.Module]  # kept in eval mode while training: their statistics must not move
    regression_layer: nn.Linear | None  # the output layer the target's scale is folded into (regression)
    pretrained: str | None  # where the starting backbone weights came from, in a phrase
    notes: list[str]
    # (mean, std) the pretrained weights expect their input normalised with; None: the data set's own
    input_norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.backbone_params + self.head_params if p.requires_grad]


def _resolve(network):
    """("composition", spec) | ("catalog", name) | ("ready", name)."""
    from .. import catalog
    from ..spec import ArchitectureSpec, SpecError
    from ..weights import READY_MODELS

    if isinstance(network, ArchitectureSpec):
        return "composition", network
    if isinstance(network, dict):
        try:
            return "composition", ArchitectureSpec.from_dict(network)
        except SpecError as e:
            raise TrainingError(str(e)) from None
    if isinstance(network, str):
        if network in READY_MODELS:
            return "ready", network
        if network in catalog.names():
            if catalog.info(network).source in ("quantized", "optical_flow"):
                raise TrainingError(f"{network} cannot be trained here ("
                                    + ("an int8 model runs inference only" if catalog.info(network).source
                                       == "quantized" else "it takes two frames and outputs flow, not classes")
                                    + "); choose a classification model.")
            return "catalog", network
        if network.lstrip().startswith("{"):
            try:
                return "composition", ArchitectureSpec.from_json(network)
            except SpecError as e:
                raise TrainingError(str(e)) from None
    raise TrainingError(f"'network' must be a composition, a catalog name or a ready model "
                        f"({', '.join(READY_MODELS)}); got {str(network)[:60]!r}.")


def network_input_shape(network) -> tuple[int, int, int]:
    """C, H, W the network is built for (the spec's input, the catalog model's default input)."""
    from .. import catalog
    from ..weights import READY_MODELS

    kind, what = _resolve(network)
    if kind == "composition":
        return tuple(what.input.shape)
    name = READY_MODELS[what].catalog_name if kind == "ready" else what
    return tuple(catalog.info(name).input_size)


def network_for_task(network, task: str):
    """The network of an earlier run, made to do ``task`` (the new data set's): a whole classifier becomes the
    backbone of a composition with a head for the task (the backbone of the digit classifier with a regression
    head for the rotation angle); a composition gets the task's head; anything that already does it is returned
    as it is. A pretrained start from the earlier run's weights then loads its backbone."""
    from .. import catalog, components
    from ..spec import ArchitectureSpec
    from ..weights import READY_MODELS

    kind, what = _resolve(network)
    head = {"kind": components.default("head", task)}  # the task's default head (segmentation: not its name)
    if kind == "composition":
        if what.task == task:
            return what
        d = what.to_dict()
        d["task"] = task
        d["head"] = head
        return ArchitectureSpec.from_dict(d)
    if task == "classification":
        return network
    arch = READY_MODELS[what].catalog_name if kind == "ready" else what
    c, h, w = catalog.info(arch).input_size
    return ArchitectureSpec.from_dict({"task": task, "input": {"channels": c, "height": h, "width": w},
                                       "backbone": {"name": arch}, "head": head})


# -- data at the network's input ---------------------------------------------------------------------------------
def fit_data(splits: Splits, dataset: Dataset, shape: tuple[int, int, int], notes: list[str],
             norm: tuple | None = None) -> tuple[Splits, tuple, tuple]:
    """The splits at ``shape`` and normalised as ``norm`` = (mean, std) says (None: the data set's own), with that
    (mean, std): grey repeated into three channels (or colour averaged into one), resized bilinearly (antialiased)
    to H×W, once, in memory; each change a note. Segmentation masks are resized nearest; the channel change is
    the images' only."""
    c, h, w = shape
    dc, dh, dw = dataset.input_shape
    mean, std = norm if norm is not None else (dataset.mean, dataset.std)
    if len(mean) not in (1, c):
        mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
    renormalise = (tuple(mean), tuple(std)) != (tuple(dataset.mean), tuple(dataset.std))
    if (c, h, w) == (dc, dh, dw) and not renormalise:
        return splits, tuple(mean), tuple(std)
    if dc != c and 1 not in (dc, c):
        raise TrainingError(f"{dataset.title} has {dc} channels and the network takes {c}; build it for 1 or 3 "
                            "input channels.")
    n = sum(splits.sizes().values())
    need = n * c * h * w * 4
    if need > MAX_DATA_BYTES:
        raise TrainingError(f"{dataset.title} at the network's {c}×{h}×{w} input would take {need / 2**30:.1f} GB "
                            f"in memory, more than the {MAX_DATA_BYTES / 2**30:.0f} GB limit; build the network "
                            "for a smaller input.")
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def convert_mask(y: torch.Tensor) -> torch.Tensor:
        # nearest, never bilinear: a resampled mask holds only class indices (and the ignore value) it had
        if dataset.task != "segmentation" or (dh, dw) == (h, w):
            return y
        return F.interpolate(y[:, None].to(torch.float32), size=(h, w), mode="nearest")[:, 0].to(torch.int64)

    def convert(x: torch.Tensor) -> torch.Tensor:
        pixels = dataset.unnormalise(x)  # resample the picture itself, then normalise it for the network
        if (dh, dw) != (h, w):
            pixels = F.interpolate(pixels, size=(h, w), mode="bilinear", align_corners=False,
                                   antialias=h < dh or w < dw).clamp_(0.0, 1.0)
        if dc == 1 and c > 1:
            pixels = pixels.repeat(1, c, 1, 1)
        elif dc > 1 and c == 1:
            pixels = pixels.mean(dim=1, keepdim=True)
        return ((pixels - m) / s).contiguous()

    if (dh, dw) != (h, w):
        notes.append(f"the {dh}×{dw} images are resized to the network's {h}×{w} input")
    if dc != c:
        notes.append(f"the {'grey' if dc == 1 else 'colour'} images are given to the network's {c} input "
                     f"channel{'s' if c > 1 else ''} ({'repeated' if dc == 1 else 'averaged'})")
    if renormalise:
        notes.append("the images are normalised as the pretrained weights expect (mean "
                     f"{', '.join(f'{v:g}' for v in mean)}, std {', '.join(f'{v:g}' for v in std)})")
    if dataset.task == "segmentation" and (dh, dw) != (h, w):
        notes.append(f"the masks are resized to {h}×{w} too (nearest: class indices stay class indices)")
    return (Splits(convert(splits.x_train), convert_mask(splits.y_train), convert(splits.x_val),
                   convert_mask(splits.y_val), convert(splits.x_test), convert_mask(splits.y_test)),
            tuple(mean), tuple(std))


# -- building ----------------------------------------------------------------------------------------------------
def _last_linear(module: nn.Module) -> tuple[str, nn.Linear] | None:
    found = None
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            found = (name, m)
    return found


def _replace(module: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, leaf, new)


def _set_dropout(model: nn.Module, p: float, notes: list[str], where: str) -> None:
    layers = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    for m in layers:
        m.p = p
    if layers:
        notes.append(f"dropout set to {p:g} in the {len(layers)} dropout layer{'s' if len(layers) > 1 else ''} of "
                     f"{where}")
    else:
        notes.append(f"{where} has no dropout layer, so the dropout setting ({p:g}) changes nothing")


def _read_file(path) -> dict:
    from ..weights import WeightsError, read_state_dict

    path = pathlib.Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TrainingError(f"The pretrained file {path} cannot be read ({e.strerror or e}); give the path of a "
                            "state dict saved by an earlier run.") from None
    try:
        return read_state_dict(data, path.name)
    except WeightsError as e:
        raise TrainingError(str(e)) from None


def _load_part(part: nn.Module, state: dict, what: str, source: str) -> None:
    """Load ``state`` into ``part``, every tensor of the part present and of the right shape, else a sentence."""
    expected = part.state_dict()
    missing = [k for k in expected if k not in state]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or wrong:
        key = (missing or wrong)[0]
        problem = "lacks" if missing else "has another shape for"
        raise TrainingError(f"{source} does not fit this {what}: it {problem} {key!r} "
                            f"({len(missing)} missing, {len(wrong)} of another shape); start from a run of the "
                            "same backbone, or train from scratch.")
    with torch.no_grad():
        part.load_state_dict({k: state[k].to(expected[k].dtype) for k in expected}, strict=True)


_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # what torchvision's weights were trained on


def _ready_norm(ready) -> tuple:
    from ..samples import DIGIT_SETS

    digit_set = DIGIT_SETS[ready.dataset]
    return (digit_set.mean,), (digit_set.std,)


def _in_backbone(key: str) -> str:
    """A whole catalog model's state-dict key as it sits in a composition's ``backbone`` (compose's layout)."""
    from ..compose import stage_path

    return stage_path(key).removeprefix("backbone.")


def _check_cached(name: str) -> None:
    """Refuse, with what to do, a pretrained start from torchvision weights that are not in its cache."""
    import os
    from urllib.parse import urlparse

    from ..weights import cache_dir, cached_path, weights_entry

    entry = weights_entry(name)
    if entry is None:
        raise TrainingError(f"{name} has no pretrained weights (torchvision publishes none and no shipped model has "
                            "its architecture); train from scratch, or pass pretrained_from= the state dict of an "
                            "earlier run.")
    if cached_path(name) is None:
        file_name = os.path.basename(urlparse(entry.url).path)
        raise TrainingError(f"The pretrained weights for {name} are not in torchvision's cache; download them on the "
                            f"Weights panel, or copy {entry.url} into {cache_dir()} as {file_name}, or train from "
                            "scratch, or pass pretrained_from= the state dict of an earlier run.")


def _ready_for(catalog_name: str):
    from ..weights import READY_MODELS

    return next((r for r in READY_MODELS.values() if r.catalog_name == catalog_name), None)


def _composition(cfg: TrainConfig, spec, dataset: Dataset, notes: list[str]) -> Prepared:
    from .. import compose
    from ..spec import ArchitectureSpec, SpecError

    if spec.task != dataset.task:
        raise TrainingError(f"{dataset.title} is a {dataset.task} data set and this composition does "
                            f"{spec.task}; set the composition's task to {dataset.task}.")
    d = spec.to_dict()
    head = d["head"]
    if dataset.task in ("classification", "segmentation") and head.get("num_classes") != dataset.num_classes:
        notes.append(f"the head's {head.get('num_classes')} classes set to the data set's {dataset.num_classes}")
        head["num_classes"] = dataset.num_classes
    if dataset.task == "regression" and head.get("outputs") != 1:
        notes.append(f"the head's {head.get('outputs')} outputs set to 1 ({dataset.target.name})")
        head["outputs"] = 1
    if cfg.dropout is not None:
        if head.get("hidden"):
            head["dropout"] = float(cfg.dropout)
            notes.append(f"head dropout {cfg.dropout:g} after each of its {len(head['hidden'])} hidden layers")
        else:
            notes.append(f"the head has no hidden layer, so it has no dropout and the dropout setting "
                         f"({cfg.dropout:g}) changes nothing; give the head a hidden layer to use it")
    if spec.backbone.pretrained and cfg.mode == "scratch":
        notes.append("the composition asks for a pretrained backbone, but the run is from scratch: its weights "
                     "start random")
    try:
        spec = ArchitectureSpec.from_dict(d)
        model = compose.build(spec)
    except SpecError as e:
        raise TrainingError(str(e)) from None

    pretrained = norm = None
    if cfg.mode != "scratch":
        pretrained, norm = _composition_pretrained(cfg, spec, model)
    backbone = [p for p in model.backbone.parameters()]
    ids = {id(p) for p in backbone}
    head_params = [p for p in model.parameters() if id(p) not in ids]
    frozen_bn = [m for m in model.modules() if isinstance(m, _BatchNorm)
                 and any(True for _ in m.parameters()) and not any(p.requires_grad for p in m.parameters())]
    if cfg.mode == "frozen":
        for p in backbone:
            p.requires_grad_(False)
        frozen_bn = [m for m in model.backbone.modules() if isinstance(m, _BatchNorm)]
        if any(True for _ in model.neck.parameters()):
            notes.append("the neck has no pretrained weights, so it trains with the head")
    elif spec.backbone.frozen_stages:
        notes.append(f"the stages {', '.join(spec.backbone.frozen_stages)} stay frozen, as the composition says")
    regression = None
    if dataset.task == "regression":
        regression = _last_linear(model.head)[1]
    return Prepared(model, "composition", spec.summary(), tuple(spec.input.shape), backbone, head_params,
                    frozen_bn, regression, pretrained, notes, norm)


def _composition_pretrained(cfg: TrainConfig, spec, model: nn.Module) -> tuple[str, tuple | None]:
    """Load the backbone's starting weights; (where they came from, the input normalisation they expect)."""
    from ..weights import WeightsError, load_pretrained_backbone, ready_model

    if cfg.pretrained_from is not None:
        state = _read_file(cfg.pretrained_from)
        name = pathlib.Path(cfg.pretrained_from).name
        if any(k.startswith("backbone.") for k in state):  # an earlier composition
            part = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        else:  # an earlier run of the whole model: its layers sit in the body under the same names
            part = {_in_backbone(k): v for k, v in state.items()}
        _load_part(model.backbone, part, f"{spec.backbone.name} backbone", name)
        return f"the backbone of an earlier run ({name})", None
    if spec.backbone.is_custom:
        raise TrainingError("A custom backbone has no pretrained weights; train from scratch, or pass "
                            "pretrained_from= the state dict of an earlier run of this composition.")
    ready = _ready_for(spec.backbone.name)
    if ready is not None:
        state = {_in_backbone(k): v for k, v in ready_model(ready.name).state_dict().items()}
        _load_part(model.backbone, state, f"{spec.backbone.name} backbone", ready.title)
        return f"the backbone of the shipped {ready.title}", _ready_norm(ready)
    _check_cached(spec.backbone.name)
    try:
        report = load_pretrained_backbone(model, spec)
    except WeightsError as e:
        raise TrainingError(str(e)) from None
    return f"torchvision's {report.source.removeprefix('torchvision ')} weights", _IMAGENET


def _whole(cfg: TrainConfig, kind: str, name: str, dataset: Dataset, notes: list[str]) -> Prepared:
    from .. import catalog
    from ..weights import READY_MODELS, WeightsError, load_pretrained, ready_model

    arch = READY_MODELS[name].catalog_name if kind == "ready" else name
    if catalog.info(arch).source == "segmentation":
        return _whole_segmentation(cfg, arch, dataset, notes)
    if dataset.task == "segmentation":
        raise TrainingError(f"{arch} is a classifier as a whole and {dataset.title} needs a class per pixel; choose "
                            "seg_unet, seg_encoder_decoder or seg_pool_unpool, or compose it as the backbone of a "
                            "U-Net or FCN head.")
    if dataset.task != "classification":
        raise TrainingError(f"{arch} is a classifier as a whole; to predict the {dataset.target.name}, compose it as "
                            "the backbone of a regression head.")
    n = dataset.num_classes
    pretrained = norm = None
    if cfg.mode == "scratch":
        if kind == "ready":
            notes.append(f"from scratch: {arch}, the ready model's architecture, with fresh random weights")
        model = _build_catalog(arch, n)
    else:
        if cfg.pretrained_from is not None:
            state = _read_file(cfg.pretrained_from)
            label = pathlib.Path(cfg.pretrained_from).name
            pretrained = f"an earlier run ({label})"
        elif kind == "ready" or _ready_for(arch) is not None:
            ready = READY_MODELS[name] if kind == "ready" else _ready_for(arch)
            state, label = ready_model(ready.name).state_dict(), ready.title
            pretrained, norm = f"the shipped {ready.title}", _ready_norm(ready)
        else:
            _check_cached(arch)
            model = catalog.build(arch)
            try:
                report = load_pretrained(model, arch)
            except WeightsError as e:
                raise TrainingError(str(e)) from None
            state, label = model.state_dict(), report.source
            pretrained = f"torchvision's {report.source.removeprefix('torchvision ')} weights"
            norm = _IMAGENET
        head_path, _ = _last_linear(catalog.build_meta(arch))
        file_classes = state.get(head_path + ".weight")
        classes_in_file = None if file_classes is None else int(file_classes.shape[0])
        model = _build_catalog(arch, classes_in_file or n)
        body = {k: v for k, v in state.items() if not k.startswith(head_path + ".")}
        keep = {k: v for k, v in model.state_dict().items() if k.startswith(head_path + ".")}
        _load_part(model, {**body, **(state if classes_in_file else keep)}, arch, label)
        if classes_in_file != n:
            old = model.get_submodule(head_path)
            _replace(model, head_path, nn.Linear(old.in_features, n, bias=old.bias is not None))
            notes.append(f"the last layer ({head_path}, {classes_in_file} outputs) replaced by a fresh one for the "
                         f"data set's {n} classes")
    head_path, head = _last_linear(model)
    head_params = list(head.parameters())
    ids = {id(p) for p in head_params}
    backbone = [p for p in model.parameters() if id(p) not in ids]
    frozen_bn = []
    if cfg.mode == "frozen":
        for p in backbone:
            p.requires_grad_(False)
        frozen_bn = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        notes.append(f"everything but the last layer ({head_path}) is frozen")
    if cfg.dropout is not None:
        _set_dropout(model, cfg.dropout, notes, arch)
    return Prepared(model, kind, name, network_input_shape(name), backbone, head_params, frozen_bn, None,
                    pretrained, notes, norm)


def _whole_segmentation(cfg: TrainConfig, arch: str, dataset: Dataset, notes: list[str]) -> Prepared:
    """A homework encoder–decoder, trained whole from scratch at the data set's own size (it is fully
    convolutional); its head is the final 1×1 classifier conv."""
    from .. import catalog

    if dataset.task != "segmentation":
        raise TrainingError(f"{arch} outputs a class per pixel and {dataset.title} is a {dataset.task} data set; "
                            "choose a segmentation data set (shapes or pets_trimaps), or a classifier.")
    if cfg.mode != "scratch":
        raise TrainingError(f"{arch} is a homework encoder–decoder with no pretrained backbone, so it trains from "
                            "scratch only; choose mode scratch, or compose a pretrained backbone with a U-Net or "
                            "FCN head.")
    model = catalog.build(arch, num_classes=dataset.num_classes)
    c, h, w = catalog.info(arch).input_size
    _, dh, dw = dataset.input_shape
    if (h, w) != (dh, dw):
        notes.append(f"{arch} is fully convolutional: it is trained at the data set's {dh}×{dw} (built for {h}×{w})")
    head = model.classifier
    ids = {id(p) for p in head.parameters()}
    backbone = [p for p in model.parameters() if id(p) not in ids]
    if cfg.dropout is not None:
        _set_dropout(model, cfg.dropout, notes, arch)
    return Prepared(model, "catalog", arch, (c, dh, dw), backbone, list(head.parameters()), [], None, None, notes)


def _build_catalog(name: str, num_classes: int) -> nn.Module:
    from .. import catalog

    try:
        return catalog.build(name, num_classes=num_classes)
    except TypeError:  # a builder without num_classes: replace its last layer
        model = catalog.build(name)
        path, old = _last_linear(model)
        _replace(model, path, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))
        return model


def prepare_model(cfg: TrainConfig, dataset: Dataset) -> Prepared:
    """The model for ``cfg`` on ``dataset`` with its starting weights (random init seeded by ``cfg.seed``)."""
    kind, what = _resolve(cfg.network)
    notes: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if kind == "composition":
            prepared = _composition(cfg, what, dataset, notes)
        else:
            prepared = _whole(cfg, kind, what, dataset, notes)
    if cfg.mode == "discriminative":
        notes.append(f"the backbone trains at {cfg.backbone_lr_factor:g} × the learning rate "
                     f"({cfg.learning_rate * cfg.backbone_lr_factor:.3g}), the rest at {cfg.learning_rate:.3g}")
    if prepared.pretrained:
        notes.insert(0, f"the backbone starts from {prepared.pretrained}")
    return prepared


def fold_target_scale(layer: nn.Linear, mean: float, std: float) -> None:
    """Make ``layer`` output the target itself: it was trained on (target - mean) / std."""
    with torch.no_grad():
        layer.weight.mul_(std)
        if layer.bias is not None:
            layer.bias.mul_(std).add_(mean)


def folded_state(model: nn.Module, layer: nn.Linear | None, scale: tuple[float, float] | None) -> dict:
    """A copy of the model's state dict with the target scale folded into ``layer``'s tensors."""
    state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
    if layer is not None and scale is not None:
        names = {id(t): k for k, t in model.state_dict(keep_vars=True).items()}
        w, b = names[id(layer.weight)], names.get(id(layer.bias)) if layer.bias is not None else None
        state[w] = state[w] * scale[1]
        if b is not None:
            state[b] = state[b] * scale[1] + scale[0]
    return state
