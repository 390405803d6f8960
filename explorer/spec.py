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
import functools
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
# A spec inside every single limit above can still describe a giant network (64 stages × 64 dense blocks of width
# 4096, a flattening head on a 2048² map). So the whole composition also has a budget, checked on a cheap estimate
# from the spec alone (`estimate`), before any module is built. The budget admits every catalog CNN as a backbone
# (the largest, regnet_y_128gf, has 645 M parameters and 211 M activations per image at its 384 px).
MAX_BLOCKS = 256  # blocks of a custom backbone in all (the sum of the stages' repeats)
MAX_PARAMS = 700_000_000  # estimated parameters of the whole composition (2.8 GB in float32)
MAX_ACTIVATIONS = 1_000_000_000  # estimated activation values per image, lecture convention (4 GB in float32)


class SpecError(ValueError):
    """A spec a person wrote that cannot be built; the message is one sentence saying what to change."""


def _err(msg: str):
    raise SpecError(msg)


def _show(v, limit: int = 60) -> str:
    """A value as a message quotes it: its repr on one line (control characters escaped), at most ``limit``
    characters, so a hostile value can neither break the sentence nor flood the screen."""
    try:
        text = repr(v)
    except RecursionError:  # pragma: no cover (JSON cannot nest this deep; a hand-made dict can)
        text = type(v).__name__
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _check_keys(where: str, data: dict, allowed) -> None:
    if not isinstance(data, dict):
        _err(f"'{where}' must be an object with keys {', '.join(allowed)}; got {type(data).__name__}.")
    unknown = sorted((k for k in data if k not in allowed), key=str)
    if unknown:
        _err(f"'{where}' has no setting {_show(unknown[0])}; its settings are: {', '.join(allowed) or 'none'}.")


def _int(where: str, v, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        _err(f"'{where}' must be a whole number between {lo:,} and {hi:,}; got {_show(v)}.")
    if not lo <= v <= hi:
        _err(f"'{where}' must be between {lo:,} and {hi:,}; got {_show(v) if abs(v) > 10**15 else f'{v:,}'}.")
    return v


def _bool(where: str, v) -> bool:
    if not isinstance(v, bool):
        _err(f"'{where}' must be true or false; got {_show(v)}.")
    return v


def _choice(where: str, v, options) -> str:
    # The type must match too: JSON's true equals 1 and 2.0 equals 2 in Python, but neither is a stride.
    if not any(type(v) is type(o) and v == o for o in options):
        _err(f"'{where}' must be one of {', '.join(map(str, options))}; got {_show(v)}.")
    return v


def _str_list(where: str, v) -> list:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        _err(f"'{where}' must be a list of stage names; got {_show(v)}.")
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
        if not isinstance(name, str) or not name.isprintable() or len(name) > 100:
            _err(f"'backbone.name' must be a catalog name or \"custom\"; got {_show(name)}.")
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
            _err(f"'neck' must be an object like {{\"kind\": \"fpn\"}}; got {_show(nk)}.")
        kind = _choice("neck.kind", nk.get("kind", "none"), NECKS)
        _check_keys("neck", nk, ("kind",) + tuple(NECK_SETTINGS[kind]))
        ns = dict(NECK_SETTINGS[kind])
        for k in ns:
            if k in nk:
                ns[k] = _int(f"neck.{k}", nk[k], 1, MAX_WIDTH if k == "width" else 8)
        n = NeckSpec(kind, ns)

        hd = data.get("head", {})
        if not isinstance(hd, dict):
            _err(f"'head' must be an object like {{\"kind\": \"classification\"}}; got {_show(hd)}.")
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
        check_budget(spec)
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
        except json.JSONDecodeError as e:
            raise SpecError(f"The spec is not valid JSON ({e}); check the file or paste it again.") from None
        except RecursionError:
            raise SpecError("The spec nests lists or objects too deeply to be a composition; check the file or "
                            "paste it again.") from None
        except (ValueError, TypeError):  # e.g. a number with thousands of digits, or bytes that are not text
            raise SpecError("The spec is not valid JSON (it holds a value that cannot be read, such as a number "
                            "with thousands of digits); check the file or paste it again.") from None
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
            _err(f"'head.dropout' must be a number from 0 up to (not including) 1; got {_show(v)}.")
        return float(v)
    if k == "pooling":
        return _choice("head.pooling", v, POOLINGS)
    _err(f"'head' has no setting {_show(k)}.")  # pragma: no cover (keys are checked before)


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


# -- the budget: a cheap estimate of the whole composition, from the spec alone -----------------------------------
@dataclasses.dataclass(frozen=True)
class Estimate:
    """Rough size of a composition (within about a factor of two of the built model), for the budget only."""

    blocks: int  # blocks of a custom backbone (0 for a catalog one)
    params: int  # parameters: backbone + neck + head
    activations: int  # activation values per image, lecture convention (input + conv / pool / fc outputs)
    parts: dict  # part -> estimated parameters ("backbone", "neck", "head")


def _half(n: int) -> int:
    return -(-n // 2)  # a stride-2 layer: ceil(n / 2) (the pooling kinds floor; ceil is the larger)


def _block_cost(kind: str, ci: int, co: int, stride: int, hw_in: int, hw_out: int) -> tuple:
    """(parameters, activation values) of one block of ``kind`` (explorer.blocks.make_block), BatchNorm and
    biases left out (a few per channel)."""
    proj = stride != 1 or ci != co
    if kind == "conv":
        return 9 * ci * co, co * hw_out
    if kind == "vgg":
        return 9 * ci * co + 9 * co * co, 2 * co * hw_in + (co * hw_out if stride == 2 else 0)
    if kind in ("residual", "preact"):
        return 9 * ci * co + 9 * co * co + proj * ci * co, (2 + proj) * co * hw_out
    if kind in ("bottleneck", "shuffle"):
        m = max(1, co // 4)
        inner = 9 * m * m if kind == "bottleneck" else 9 * m
        return ci * m + inner + m * co + proj * ci * co, m * hw_in + m * hw_out + (1 + proj) * co * hw_out
    if kind == "separable":
        return 9 * ci + ci * co, ci * hw_out + co * hw_out
    if kind == "inverted_residual":
        e = 6 * ci
        return ci * e + 9 * e + e * co, e * hw_in + e * hw_out + co * hw_out
    if kind == "inception":  # the widths of explorer.blocks.inception_widths
        c1, c5, pool = max(1, co // 4), max(1, co // 8), max(1, co // 8)
        c3 = co - c1 - c5 - pool
        c3r, c5r = max(1, 3 * c3 // 4), max(1, c5 // 2)
        return (ci * (c1 + c3r + c5r + pool) + 9 * c3r * c3 + 25 * c5r * c5,
                (co + c3r + c5r) * hw_in + (co * hw_out if stride == 2 else 0))
    if kind == "dense":  # four layers of growth co/4 (bottleneck 4×), then the transition
        return 5 * ci * co + 23 * co * co // 2, 6 * co * hw_in + (co * hw_out if stride == 2 else 0)
    if kind == "convnext":
        down = 4 * ci * co if stride == 2 else ci * co if ci != co else 0
        return 49 * co + 8 * co * co + down, 8 * co * hw_out
    # se / cbam: a 3×3 conv, then a gate with co/16 hidden units
    return 9 * ci * co + 2 * co * max(1, co // 16), co * hw_out


def _custom_levels(spec: "ArchitectureSpec") -> tuple:
    """(stage name -> (channels, h, w), blocks, parameters, activations) of a custom backbone."""
    c, h, w = spec.input.shape
    stages = spec.backbone.stages
    width = stages[0].width // 2 or 32  # the stem of explorer.blocks.CustomBackbone
    h, w = _half(h), _half(w)
    params, acts = 9 * c * width, width * h * w
    levels = {"stem": (width, h, w)}
    blocks = 0
    for n, st in enumerate(stages, 1):
        for r in range(st.repeats):
            stride = st.stride if r == 0 else 1
            hw_in = h * w
            if stride == 2:
                h, w = _half(h), _half(w)
            p, a = _block_cost(st.block, width, st.width, stride, hw_in, h * w)
            params, acts, width = params + p, acts + a, st.width
        blocks += st.repeats
        levels[f"stage{n}"] = (width, h, w)
    return levels, blocks, params, acts


def default_level_count(spec: "ArchitectureSpec") -> int:
    """How many backbone stages feed the neck / head when 'out_stages' is left out: the last one for
    classification, regression, similarity and FCN; the last three for detection necks and heads; four for U-Net."""
    multi = spec.neck.kind in MULTI_LEVEL_NECKS or spec.head.kind in ("yolo", "ssd", "unet") \
        or (spec.head.kind in TWO_STAGE and spec.neck.kind != "none")
    return 4 if spec.head.kind == "unet" else 3 if multi else 1


def _neck_cost(kind: str, settings: dict, levels: list) -> tuple:
    """(parameters, activation values, output levels) of the neck on ``levels`` [(channels, h, w), ...]."""
    width = settings.get("width", 0)
    if kind in ("none", "se", "cbam", "spatial"):
        gate = {"none": lambda c: 0, "spatial": lambda c: 98}.get(kind, lambda c: 2 * c * max(1, c // 16))
        return (sum(gate(c) for c, _, _ in levels),
                0 if kind == "none" else sum(c * h * w for c, h, w in levels), list(levels))
    out = [(width, h, w) for _, h, w in levels]
    hw = sum(h * w for _, h, w in levels)
    params = sum(c * width for c, _, _ in levels)  # lateral / projection 1×1 convs
    if kind in ("fpn", "panet"):  # a 3×3 conv per level; PANet adds two per level on its way down
        params += 9 * width * width * (len(levels) + (2 * (len(levels) - 1) if kind == "panet" else 0))
        acts = width * hw * (2 if kind == "fpn" else 3)
    else:  # bifpn: per repeat, 2 (L - 1) separable convs
        params += settings.get("repeats", 1) * 2 * (len(levels) - 1) * (9 * width + width * width)
        acts = width * hw * (1 + 3 * settings.get("repeats", 1))
    return params, acts, out


def _head_cost(spec: "ArchitectureSpec", levels: list) -> tuple:
    """(parameters, activation values) of the head on the neck's ``levels`` [(channels, h, w), ...]."""
    kind, s = spec.head.kind, spec.head.settings
    c, h, w = levels[-1]
    if kind in ("classification", "regression"):
        sizes = [c * h * w if s["pooling"] == "flatten" else c] + list(s["hidden"])
        sizes.append(s["num_classes"] if kind == "classification" else s["outputs"])
        return sum(a * b for a, b in zip(sizes, sizes[1:])), sum(sizes[1:])
    if kind == "siamese":
        return c * c + c * s["embedding_dim"], c + s["embedding_dim"]
    if kind in ("yolo", "ssd"):
        per = s["anchors_per_cell"] * (5 + s["num_classes"]) if kind == "yolo" else 4 * (5 + s["num_classes"])
        k = 1 if kind == "yolo" else 9
        return sum(k * lc * per for lc, _, _ in levels), sum(per * lh * lw for _, lh, lw in levels)
    if kind == "fcn":
        inter = max(1, c // 4)
        return 9 * c * inter + inter * s["num_classes"], (inter + s["num_classes"]) * h * w
    if kind == "unet":
        params = acts = 0
        for (skip, sh, sw), (prev, _, _) in zip(reversed(levels[:-1]), reversed(levels[1:])):
            params += 4 * prev * skip + 27 * skip * skip
            acts += 3 * skip * sh * sw
        c0, h0, w0 = levels[0]
        return params + c0 * s["num_classes"], acts + s["num_classes"] * h0 * w0
    # Faster / Mask R-CNN: RPN conv, 2×1024 box MLP on 7×7 RoIs, predictors; 1000 proposals at inference
    n = s["num_classes"] + 1
    params = 9 * c * c + 15 * c + 49 * c * 1024 + 1024 * 1024 + 5 * 1024 * n
    acts = sum(lc * lh * lw for lc, lh, lw in levels) + 1000 * (49 * c + 2048)
    if kind == "mask_rcnn":  # four 3×3 convs of 256, a 2×2 up-convolution, a 1×1 predictor; 100 detections
        params += 9 * 256 * (c + 3 * 256) + 4 * 256 * 256 + 256 * n
        acts += 100 * (196 * (c + 5 * 256) + 784 * (256 + n))
    return params, acts


def estimate(spec: "ArchitectureSpec", levels: Optional[list] = None, backbone: Optional[tuple] = None) -> Estimate:
    """A cheap estimate of the whole composition, no module built.

    A custom backbone is estimated from its stages. For a catalog backbone pass what is known about it:
    ``backbone`` = (parameters, activations with the input) and ``levels`` = [(channels, h, w)] of the chosen
    output stages; without them its published parameter count stands for the backbone, and the neck and head are
    counted only as far as they do not depend on the backbone (the hidden layers of an MLP head)."""
    blocks = 0
    if spec.backbone.is_custom:
        named, blocks, b_params, b_acts = _custom_levels(spec)
        outs = spec.backbone.out_stages
        if not outs or not all(o in named for o in outs):
            outs = list(named)[-default_level_count(spec):]
        order = list(named)
        levels = [named[o] for o in sorted(outs, key=order.index)]
    elif backbone is not None:
        b_params, b_acts = backbone
    else:
        from . import catalog

        b_params, b_acts = catalog.info(spec.backbone.name).num_params or 0, 0
    if backbone is None:  # (a catalog analysis counts the input already)
        b_acts += spec.input.channels * spec.input.height * spec.input.width  # the input itself
    if levels:
        n_params, n_acts, out = _neck_cost(spec.neck.kind, spec.neck.settings, levels)
        h_params, h_acts = _head_cost(spec, out)
    else:  # the backbone's stages are not known yet: count what does not depend on them
        n_params = n_acts = h_acts = 0
        hidden = spec.head.settings.get("hidden") or []
        h_params = sum(a * b for a, b in zip(hidden, hidden[1:]))
    return Estimate(blocks, b_params + n_params + h_params, b_acts + n_acts + h_acts,
                    {"backbone": b_params, "neck": n_params, "head": h_params})


_ADVICE = {
    "backbone": "use fewer or narrower stages (width) or fewer repeats",
    "neck": "use a smaller neck width or fewer BiFPN repeats",
    "head": "use global average pooling instead of flatten, fewer or narrower hidden layers, or fewer classes",
}


@functools.lru_cache(maxsize=256)
def parsed(spec_json: str) -> "ArchitectureSpec":
    """``ArchitectureSpec.from_json``, remembered: pages and predict parse the same JSON on every rerun. The spec
    returned is shared, so read it; change a copy (``replace``)."""
    return ArchitectureSpec.from_json(spec_json)


def check_budget(spec: "ArchitectureSpec", levels: Optional[list] = None, backbone: Optional[tuple] = None) -> None:
    """Refuse a composition too big for the server (MAX_BLOCKS, MAX_PARAMS, MAX_ACTIVATIONS) with a sentence
    naming the limit and what to change; see `estimate` for ``levels`` and ``backbone``."""
    if spec.backbone.is_custom:
        blocks = sum(st.repeats for st in spec.backbone.stages)
        if blocks > MAX_BLOCKS:
            _err(f"A custom backbone may have at most {MAX_BLOCKS:,} blocks in all (the sum of the stages' "
                 f"repeats); this one has {blocks:,}, so use fewer stages or fewer repeats.")
    e = estimate(spec, levels, backbone)
    if e.params > MAX_PARAMS:
        part = max(e.parts, key=e.parts.get)
        _err(f"This composition would have about {e.params:,} parameters, more than the {MAX_PARAMS:,} parameter "
             f"limit of this app; most are in the {part}, so {_ADVICE[part]}.")
    if e.activations > MAX_ACTIVATIONS:
        _err(f"At {spec.input.height}×{spec.input.width} this composition would hold about {e.activations:,} "
             f"activation values per image, more than the {MAX_ACTIVATIONS:,} activation limit of this app; use "
             "a smaller input, or fewer or narrower stages before the first strides.")
