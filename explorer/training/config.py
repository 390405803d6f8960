"""`TrainConfig`: everything a run needs, as plain data, checked when it is made (one sentence per mistake)."""
from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any

from .errors import TrainingError

__all__ = ["TrainConfig", "Augmentation", "MODES", "RECIPES", "RECIPE_DEFAULTS", "MODE_TITLES", "DEVICES"]

MODES = ("scratch", "frozen", "finetune", "discriminative")
MODE_TITLES = {
    "scratch": "from scratch (fresh random weights)",
    "frozen": "pretrained backbone frozen, only the head trains (its BatchNorm statistics frozen too)",
    "finetune": "pretrained backbone, everything trains",
    "discriminative": "pretrained backbone, everything trains, the backbone at a lower learning rate",
}
RECIPES = ("adam", "one_cycle", "resnet")
# lr and weight decay each recipe uses when the config leaves them out.
RECIPE_DEFAULTS = {
    "adam": {"lr": 1e-3, "weight_decay": 0.0},
    "one_cycle": {"lr": 3e-3, "weight_decay": 0.0},  # the peak of the cycle (the shipped LeNet's recipe)
    "resnet": {"lr": 0.1, "weight_decay": 1e-5},  # the lecture's: SGD momentum 0.9, ÷10 on a plateau
}
DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_EPOCHS = 1000
MAX_BATCH = 4096


def _sentence(msg: str):
    raise TrainingError(msg)


def _number(field: str, v, lo: float, hi: float, *, whole: bool = False, lo_open: bool = False):
    kind = "a whole number" if whole else "a number"
    ok_type = isinstance(v, int) if whole else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok_type or (not whole and not math.isfinite(v)):
        _sentence(f"'{field}' must be {kind} from {lo:g} to {hi:g}; got {str(v)[:40]!r}.")
    if v < lo or v > hi or (lo_open and v == lo):
        bound = f"above {lo:g}" if lo_open else f"from {lo:g}"
        _sentence(f"'{field}' must be {bound} up to {hi:g}; got {v:g}.")
    return v


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Random changes to each training image (torchvision.transforms.v2), drawn anew for every image in every
    epoch; validation and test images are never changed."""
    hflip: bool = False  # mirror left–right with probability 0.5 (not for digits: a mirrored 2 is no 2)
    crop_padding: int = 0  # pad by this many pixels, then crop back at a random place (a shift)
    rotation: float = 0.0  # rotate by an angle drawn from [-rotation, rotation] degrees
    color_jitter: float = 0.0  # brightness and contrast each scaled by a factor from [1 - c, 1 + c]

    def __post_init__(self):
        if not isinstance(self.hflip, bool):
            _sentence(f"'augmentation.hflip' must be true or false; got {str(self.hflip)[:40]!r}.")
        _number("augmentation.crop_padding", self.crop_padding, 0, 64, whole=True)
        _number("augmentation.rotation", self.rotation, 0, 180)
        _number("augmentation.color_jitter", self.color_jitter, 0, 1)

    @property
    def active(self) -> bool:
        return bool(self.hflip or self.crop_padding or self.rotation or self.color_jitter)

    def describe(self) -> str:
        parts = []
        if self.hflip:
            parts.append("left–right flips")
        if self.crop_padding:
            parts.append(f"random crops after {self.crop_padding} px padding")
        if self.rotation:
            parts.append(f"rotation up to ±{self.rotation:g}°")
        if self.color_jitter:
            parts.append(f"brightness and contrast ±{self.color_jitter:.0%}")
        return ", ".join(parts) or "no augmentation"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One run. ``network``: an `ArchitectureSpec`, a catalog name ("lenet5") or a ready-model name
    ("lenet5_digits"). ``dataset``: a name of `datasets.names()` or a `datasets.Dataset` (e.g. from `from_zip`).
    ``lr`` and ``weight_decay`` default to the recipe's (`RECIPE_DEFAULTS`). ``pretrained_from``: a state dict
    file (.safetensors / .pt) of an earlier run whose backbone starts this one. ``early_stopping``: stop after this
    many epochs without a lower validation loss. ``time_budget``: seconds; the run stops after the epoch that
    passes it. ``train_samples``: use only this many training images (a seeded random subset), for quick runs;
    ``eval_samples`` likewise for the validation and the test images (each split its own subset; the metrics then
    rest on fewer images, and the run's notes say so).
    ``threads``: torch intra-op threads while the run trains (None: leave as it is)."""
    network: Any = "lenet5"
    dataset: Any = "digits"
    mode: str = "scratch"
    recipe: str = "adam"
    epochs: int = 10
    batch_size: int = 32
    lr: float | None = None
    weight_decay: float | None = None
    label_smoothing: float = 0.0
    dropout: float | None = None  # None: the network's own
    augmentation: Augmentation = dataclasses.field(default_factory=Augmentation)
    early_stopping: int | None = None
    time_budget: float | None = None
    seed: int = 0
    pretrained_from: str | pathlib.Path | None = None
    backbone_lr_factor: float = 0.1  # discriminative mode: the backbone's lr is lr × this
    plateau_patience: int = 2  # resnet recipe: epochs without a lower validation loss before lr ÷ 10
    train_samples: int | None = None
    eval_samples: int | None = None
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self):
        if isinstance(self.augmentation, dict):
            object.__setattr__(self, "augmentation", Augmentation(**self.augmentation))
        elif self.augmentation is None:
            object.__setattr__(self, "augmentation", Augmentation())
        if self.mode not in MODES:
            _sentence(f"'mode' must be one of {', '.join(MODES)}; got {str(self.mode)[:40]!r}.")
        if self.recipe not in RECIPES:
            _sentence(f"'recipe' must be one of {', '.join(RECIPES)}; got {str(self.recipe)[:40]!r}.")
        _number("epochs", self.epochs, 1, MAX_EPOCHS, whole=True)
        _number("batch_size", self.batch_size, 1, MAX_BATCH, whole=True)
        if self.lr is not None:
            _number("lr", self.lr, 0, 10, lo_open=True)
        if self.weight_decay is not None:
            _number("weight_decay", self.weight_decay, 0, 1)
        _number("label_smoothing", self.label_smoothing, 0, 0.5)
        if self.dropout is not None:
            _number("dropout", self.dropout, 0, 0.95)
        if self.early_stopping is not None:
            _number("early_stopping", self.early_stopping, 1, MAX_EPOCHS, whole=True)
        if self.time_budget is not None:
            _number("time_budget", self.time_budget, 0, 7 * 24 * 3600, lo_open=True)
        _number("seed", self.seed, 0, 2**62, whole=True)
        _number("backbone_lr_factor", self.backbone_lr_factor, 0, 1, lo_open=True)
        _number("plateau_patience", self.plateau_patience, 0, 100, whole=True)
        if self.train_samples is not None:
            _number("train_samples", self.train_samples, 2, 10**9, whole=True)
        if self.eval_samples is not None:
            _number("eval_samples", self.eval_samples, 1, 10**9, whole=True)
        if self.device not in DEVICES:
            _sentence(f"'device' must be one of {', '.join(DEVICES)}; got {str(self.device)[:40]!r}.")
        if self.threads is not None:
            _number("threads", self.threads, 1, 256, whole=True)
        if self.mode == "scratch" and self.pretrained_from is not None:
            _sentence("'pretrained_from' gives a pretrained backbone, which a run from scratch does not use; choose "
                      "mode frozen, finetune or discriminative, or leave pretrained_from out.")

    @property
    def learning_rate(self) -> float:
        return RECIPE_DEFAULTS[self.recipe]["lr"] if self.lr is None else float(self.lr)

    @property
    def decay(self) -> float:
        return RECIPE_DEFAULTS[self.recipe]["weight_decay"] if self.weight_decay is None else float(self.weight_decay)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain data (JSON-ready) for a run folder; the network as its spec dict or name."""
        from ..spec import ArchitectureSpec
        from . import datasets

        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(self.network, ArchitectureSpec):
            d["network"] = self.network.to_dict()
        if isinstance(self.dataset, datasets.Dataset):
            d["dataset"] = self.dataset.name
        d["augmentation"] = dataclasses.asdict(self.augmentation)
        if self.pretrained_from is not None:
            d["pretrained_from"] = str(self.pretrained_from)
        return d

    @classmethod
    def from_dict(cls, data: Any) -> "TrainConfig":
        """The inverse of `to_dict`: a network given as a dict is an `ArchitectureSpec`; an unknown key is a
        sentence."""
        from ..spec import ArchitectureSpec

        if not isinstance(data, dict):
            _sentence(f"A training config must be a mapping of settings; got {type(data).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            _sentence(f"A training config has no setting {unknown[0][:40]!r}; the settings are "
                      f"{', '.join(sorted(known))}.")
        values = dict(data)
        if isinstance(values.get("network"), dict):
            values["network"] = ArchitectureSpec.from_dict(values["network"])
        return cls(**values)
