"""`ArchitectureSpec`: what a person built — task, input, backbone, neck, head — as plain data.

The spec is the single source of truth the whole app shares: the URL carries it (`to_url`), downloads save it
(`to_json`), caches are keyed on it. Validation speaks to a person: every problem raises `SpecError` with one
sentence that names the field and says what to change.

JSON shape::

    {"task": "detection",
     "input": {"channels": 3, "height": 512, "width": 512},
     "backbone": {"name": "resnet50", "pretrained": false, "frozen_stages": ["conv1", "layer1"],
                  "out_stages": ["layer2", "layer3", "layer4"]},
     "neck": {"kind": "fpn", "width": 256},
     "head": {"kind": "yolo", "num_classes": 20, "anchors_per_cell": 3}}

A custom backbone is ``{"name": "custom", "stages": [{"block": "residual", "repeats": 2, "width": 64,
"stride": 2}, ...]}``. Settings not given take the defaults below; ``from_json(s).to_json()`` is canonical.
"""
from __future__ import annotations

import base64
import copy
import dataclasses
import json
import zlib
from typing import Any, Optional

TASKS = ("classification", "regression", "detection", "segmentation", "similarity")
NECKS = ("none", "se", "cbam", "spatial", "fpn", "panet", "bifpn")
HEADS = ("classification", "regression", "yolo", "ssd", "faster_rcnn", "mask_rcnn", "fcn", "unet", "siamese")
BLOCKS = ("conv", "vgg", "residual", "bottleneck", "preact", "separable", "inverted_residual", "shuffle",
          "inception", "dense", "convnext", "se", "cbam")
POOLINGS = ("gap", "flatten")

HEADS_FOR_TASK = {
    "classification": ("classification",),
    "regression": ("regression",),
    "detection": ("yolo", "ssd", "faster_rcnn", "mask_rcnn"),
    "segmentation": ("fcn", "unet"),
    "similarity": ("siamese",),
}
DEFAULT_HEAD = {t: hs[0] for t, hs in HEADS_FOR_TASK.items()}

# Settings each head kind takes, with their defaults (the documented defaults of the spec).
HEAD_SETTINGS: dict[str, dict[str, Any]] = {
    "classification": {"num_classes": 1000, "hidden": [], "dropout": 0.0, "pooling": "gap"},
    "regression": {"outputs": 1, "hidden": [], "dropout": 0.0, "pooling": "gap"},
    "yolo": {"num_classes": 20, "anchors_per_cell": 3},
    "ssd": {"num_classes": 20},
    "faster_rcnn": {"num_classes": 20},
    "mask_rcnn": {"num_classes": 20},
    "fcn": {"num_classes": 21},
    "unet": {"num_classes": 21},
    "siamese": {"embedding_dim": 128},
}
NECK_SETTINGS: dict[str, dict[str, Any]] = {
    "none": {}, "se": {}, "cbam": {}, "spatial": {},
    "fpn": {"width": 256}, "panet": {"width": 256}, "bifpn": {"width": 64, "repeats": 2},
}
MULTI_LEVEL_NECKS = ("fpn", "panet", "bifpn")
TWO_STAGE = ("faster_rcnn", "mask_rcnn")

# Limits that keep one person's spec from occupying the server (the app refuses before any work is done).
MAX_SIDE = 2048
MAX_CHANNELS = 16
MAX_STAGES = 64
MAX_REPEATS = 64
MAX_WIDTH = 4096
MAX_CLASSES = 100_000
MAX_HIDDEN_LAYERS = 8


class SpecError(ValueError):
    """A spec a person wrote that cannot be built; the message is one sentence saying what to change."""


def _err(msg: str):
    raise SpecError(msg)


def _check_keys(where: str, data: dict, allowed) -> None:
    if not isinstance(data, dict):
        _err(f"'{where}' must be an object with keys {', '.join(allowed)}; got {type(data).__name__}.")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        _err(f"'{where}' has no setting '{unknown[0]}'; its settings are: {', '.join(allowed) or 'none'}.")


def _int(where: str, v, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        _err(f"'{where}' must be a whole number between {lo:,} and {hi:,}; got {v!r}.")
    if not lo <= v <= hi:
        _err(f"'{where}' must be between {lo:,} and {hi:,}; got {v:,}.")
    return v


def _bool(where: str, v) -> bool:
    if not isinstance(v, bool):
        _err(f"'{where}' must be true or false; got {v!r}.")
    return v


def _choice(where: str, v, options) -> str:
    if v not in options:
        _err(f"'{where}' must be one of {', '.join(map(str, options))}; got {v!r}.")
    return v


def _str_list(where: str, v) -> list:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        _err(f"'{where}' must be a list of stage names; got {v!r}.")
    if len(set(v)) != len(v):
        _err(f"'{where}' names a stage twice; list each stage once.")
    return list(v)


@dataclasses.dataclass
class InputSpec:
    channels: int = 3
    height: int = 224
    width: int = 224

    @property
    def shape(self) -> tuple:
        return (self.channels, self.height, self.width)


@dataclasses.dataclass
class StageSpec:
    block: str = "residual"
    repeats: int = 1
    width: int = 64
    stride: int = 2


@dataclasses.dataclass
class BackboneSpec:
    name: str = "resnet18"
    pretrained: bool = False
    frozen_stages: list = dataclasses.field(default_factory=list)
    out_stages: Optional[list] = None  # None: the task's default (see compose.default_out_stages)
    stages: Optional[list] = None  # custom backbones only: list of StageSpec

    @property
    def is_custom(self) -> bool:
        return self.name == "custom"


@dataclasses.dataclass
class NeckSpec:
    kind: str = "none"
    settings: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class HeadSpec:
    kind: str = "classification"
    settings: dict = dataclasses.field(default_factory=lambda: copy.deepcopy(HEAD_SETTINGS["classification"]))

    def __getattr__(self, item):  # head.num_classes etc.
        settings = self.__dict__.get("settings", {})
        if item in settings:
            return settings[item]
        raise AttributeError(item)


@dataclasses.dataclass
class ArchitectureSpec:
    task: str = "classification"
    input: InputSpec = dataclasses.field(default_factory=InputSpec)
    backbone: BackboneSpec = dataclasses.field(default_factory=BackboneSpec)
    neck: NeckSpec = dataclasses.field(default_factory=NeckSpec)
    head: HeadSpec = dataclasses.field(default_factory=HeadSpec)

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> "ArchitectureSpec":
        """Validate and fill defaults. Raises SpecError with one sentence for anything wrong."""
        _check_keys("spec", data, ("task", "input", "backbone", "neck", "head"))
        task = _choice("task", data.get("task", "classification"), TASKS)

        inp = data.get("input", {})
        _check_keys("input", inp, ("channels", "height", "width"))
        i = InputSpec(
            channels=_int("input.channels", inp.get("channels", 3), 1, MAX_CHANNELS),
            height=_int("input.height", inp.get("height", 224), 1, MAX_SIDE),
            width=_int("input.width", inp.get("width", 224), 1, MAX_SIDE),
        )

        bb = data.get("backbone", {})
        _check_keys("backbone", bb, ("name", "pretrained", "frozen_stages", "out_stages", "stages"))
        name = bb.get("name", "resnet18")
        if not isinstance(name, str):
            _err(f"'backbone.name' must be a catalog name or \"custom\"; got {name!r}.")
        b = BackboneSpec(
            name=name,
            pretrained=_bool("backbone.pretrained", bb.get("pretrained", False)),
            frozen_stages=_str_list("backbone.frozen_stages", bb.get("frozen_stages", [])),
            out_stages=None if bb.get("out_stages") is None else _str_list("backbone.out_stages", bb["out_stages"]),
        )
        if b.out_stages == []:
            _err("'backbone.out_stages' is empty; choose at least one stage, or leave it out for the task's "
                 "default.")
        if name == "custom":
            b.stages = _parse_stages(bb.get("stages"))
            if b.pretrained:
                _err("A custom backbone has no pretrained weights; set 'backbone.pretrained' to false.")
        else:
            if "stages" in bb:
                _err("'backbone.stages' is only for a custom backbone; set 'backbone.name' to \"custom\" "
                     "or remove the stages.")
            from . import catalog

            try:
                catalog.info(name)
            except catalog.UnknownModelError as e:
                _err(f"'backbone.name': {e}")

        nk = data.get("neck", {})
        if not isinstance(nk, dict):
            _err(f"'neck' must be an object like {{\"kind\": \"fpn\"}}; got {nk!r}.")
        kind = _choice("neck.kind", nk.get("kind", "none"), NECKS)
        _check_keys("neck", nk, ("kind",) + tuple(NECK_SETTINGS[kind]))
        ns = dict(NECK_SETTINGS[kind])
        for k in ns:
            if k in nk:
                ns[k] = _int(f"neck.{k}", nk[k], 1, MAX_WIDTH if k == "width" else 8)
        n = NeckSpec(kind, ns)

        hd = data.get("head", {})
        if not isinstance(hd, dict):
            _err(f"'head' must be an object like {{\"kind\": \"classification\"}}; got {hd!r}.")
        hkind = _choice("head.kind", hd.get("kind", DEFAULT_HEAD[task]), HEADS)
        if hkind not in HEADS_FOR_TASK[task]:
            _err(f"The {hkind} head does not do {task}; for {task} choose "
                 f"{' or '.join(HEADS_FOR_TASK[task])}, or change the task.")
        _check_keys("head", hd, ("kind",) + tuple(HEAD_SETTINGS[hkind]))
        hs = copy.deepcopy(HEAD_SETTINGS[hkind])
        for k, v in hd.items():
            if k == "kind":
                continue
            hs[k] = _head_setting(k, v)
        h = HeadSpec(hkind, hs)

        spec = cls(task=task, input=i, backbone=b, neck=n, head=h)
        spec._check_combination()
        return spec

    def _check_combination(self) -> None:
        """Rules between parts that need no model built."""
        n_out = None if self.backbone.out_stages is None else len(self.backbone.out_stages)
        if self.neck.kind in MULTI_LEVEL_NECKS and n_out is not None and n_out < 2:
            _err(f"A {self.neck.kind.upper()} neck needs at least two backbone stages; choose two or more "
                 "output stages or pick no neck.")
        if self.head.kind == "unet" and n_out is not None and n_out < 2:
            _err("A U-Net decoder needs at least two backbone stages; choose stages 1–4 or pick the FCN head.")
        if self.head.kind in TWO_STAGE and self.neck.kind not in MULTI_LEVEL_NECKS + ("none",):
            _err(f"A {_TITLE[self.head.kind]} head takes a multi-scale neck (FPN, PANet or BiFPN) or none; "
                 f"change the neck from {self.neck.kind}.")
        if self.head.kind in TWO_STAGE and self.neck.kind == "none" and n_out not in (None, 1):
            _err(f"Without a neck, {_TITLE[self.head.kind]} takes one backbone stage (its levels must share a "
                 "width); choose one output stage or add an FPN neck.")
        if self.head.kind in TWO_STAGE and self.input.channels != 3:
            _err(f"{_TITLE[self.head.kind]} normalises RGB images; set input.channels to 3.")
        if self.backbone.pretrained and not self.backbone.is_custom:
            from . import catalog

            if catalog.info(self.backbone.name).source != "torchvision":
                _err(f"There are no pretrained weights for {self.backbone.name}; set 'backbone.pretrained' "
                     "to false.")

    # -- serialisation ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        bb: dict = {"name": self.backbone.name, "pretrained": self.backbone.pretrained,
                    "frozen_stages": list(self.backbone.frozen_stages)}
        if self.backbone.out_stages is not None:
            bb["out_stages"] = list(self.backbone.out_stages)
        if self.backbone.is_custom:
            bb["stages"] = [dataclasses.asdict(s) for s in self.backbone.stages]
        return {
            "task": self.task,
            "input": dataclasses.asdict(self.input),
            "backbone": bb,
            "neck": {"kind": self.neck.kind, **self.neck.settings},
            "head": {"kind": self.head.kind, **self.head.settings},
        }

    @classmethod
    def from_json(cls, text: str) -> "ArchitectureSpec":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as e:
            raise SpecError(f"The spec is not valid JSON ({e}); check the file or paste it again.") from None
        return cls.from_dict(data)

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, separators=None if indent else (",", ":"))

    def to_url(self) -> str:
        """A compact, URL-safe string (deflated JSON in base64url) for the query string."""
        raw = zlib.compress(self.to_json().encode(), 9)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def from_url(cls, text: str) -> "ArchitectureSpec":
        if not isinstance(text, str) or not text or len(text) > 20_000:
            raise SpecError("The link does not carry a composition; open the app without it or share it again.")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = zlib.decompressobj().decompress(raw, 200_000)  # bounded: a hostile link cannot balloon
            return cls.from_json(data.decode())
        except SpecError:
            raise
        except Exception:
            raise SpecError("The composition in this link is damaged; open the app without it or share the "
                            "link again.") from None

    # -- derived ---------------------------------------------------------------------------------------------
    def summary(self) -> str:
        """One line for the sidebar: 'resnet18 → SE → classification (1000) at 3×224×224'."""
        neck = "" if self.neck.kind == "none" else f" → {_TITLE.get(self.neck.kind, self.neck.kind)}"
        return (f"{self.backbone.name}{neck} → {_TITLE.get(self.head.kind, self.head.kind)} "
                f"at {'×'.join(map(str, self.input.shape))}")

    def replace(self, **changes) -> "ArchitectureSpec":
        """A validated copy with top-level parts replaced, e.g. spec.replace(task="detection")."""
        d = self.to_dict()
        d.update(changes)
        return ArchitectureSpec.from_dict(d)


_TITLE = {"none": "none", "se": "SE", "cbam": "CBAM", "spatial": "spatial attention", "fpn": "FPN",
          "panet": "PANet", "bifpn": "BiFPN", "classification": "classification", "regression": "regression",
          "yolo": "YOLO-style", "ssd": "SSD", "faster_rcnn": "Faster R-CNN", "mask_rcnn": "Mask R-CNN",
          "fcn": "FCN", "unet": "U-Net", "siamese": "Siamese"}


def _head_setting(k: str, v):
    if k in ("num_classes",):
        return _int(f"head.{k}", v, 1, MAX_CLASSES)
    if k in ("outputs", "embedding_dim"):
        return _int(f"head.{k}", v, 1, MAX_WIDTH)
    if k == "anchors_per_cell":
        return _int("head.anchors_per_cell", v, 1, 16)
    if k == "hidden":
        if not isinstance(v, list) or len(v) > MAX_HIDDEN_LAYERS:
            _err(f"'head.hidden' must be a list of at most {MAX_HIDDEN_LAYERS} layer widths, e.g. [512, 256].")
        return [_int("head.hidden", w, 1, MAX_WIDTH * 4) for w in v]
    if k == "dropout":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            _err(f"'head.dropout' must be a number from 0 up to (not including) 1; got {v!r}.")
        return float(v)
    if k == "pooling":
        return _choice("head.pooling", v, POOLINGS)
    _err(f"'head' has no setting '{k}'.")  # pragma: no cover (keys are checked before)


def _parse_stages(stages) -> list:
    if not isinstance(stages, list) or not stages:
        _err("A custom backbone needs 'backbone.stages': a list like "
             "[{\"block\": \"residual\", \"repeats\": 2, \"width\": 64, \"stride\": 2}].")
    if len(stages) > MAX_STAGES:
        _err(f"A custom backbone may have at most {MAX_STAGES} stages; this one has {len(stages)}.")
    out = []
    for n, st in enumerate(stages, 1):
        where = f"backbone.stages[{n}]"
        _check_keys(where, st, ("block", "repeats", "width", "stride"))
        out.append(StageSpec(
            block=_choice(f"{where}.block", st.get("block", "residual"), BLOCKS),
            repeats=_int(f"{where}.repeats", st.get("repeats", 1), 1, MAX_REPEATS),
            width=_int(f"{where}.width", st.get("width", 64), 1, MAX_WIDTH),
            stride=_choice(f"{where}.stride", st.get("stride", 2), (1, 2)),
        ))
    return out
