"""`ArchitectureSpec`: what a person built — task, input, backbone, neck, head — as plain data.

The spec is the single source of truth the whole app shares: the URL carries it (`to_url`), downloads save it
(`to_json`), caches are keyed on it. Validation speaks to a person: every problem raises `SpecError` with one
sentence that names the field and says what to change.

JSON shape::

    {"task": "detection",
     "input": {"channels": 3, "height": 512, "width": 512},
     "backbone": {"name": "resnet50", "pretrained": false, "frozen_stages": ["conv1", "layer1"],
                  "out_stages": ["layer2", "layer3", "layer4"]},
     "neck": {"kind": <a neck kind>, <its settings>},
     "head": {"kind": <a head kind for the task>, <its settings>}}

A custom backbone is ``{"name": "custom", "stem": {"width": 32, "stride": 2}, "stages": [{"block": <a block kind>,
"repeats": 2, "width": 64, "stride": 2}, ...]}``; ``"stem": null`` is a stack without a stem (the first stage reads
the input). A custom spec saved before the stem was its own field (no ``"stem"`` key) gets the stem it was built
with then: half the first stage's width (32 when that is 0), stride 2. The kinds and their settings are the
component registry's (``python -m explorer kinds``; README). Settings not given take their declared defaults;
``from_json(s).to_json()`` is canonical.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import zlib
from typing import Any, Optional

from . import components
from .validation import MAX_CLASSES, MAX_HIDDEN_LAYERS, MAX_WIDTH, SpecError  # noqa: F401 (re-exported)
from .validation import check_bool as _bool
from .validation import check_choice as _choice
from .validation import check_int as _int
from .validation import check_keys as _check_keys
from .validation import check_str_list as _str_list
from .validation import fail as _err
from .validation import show as _show

# The task vocabulary (not a kind: each head declares the tasks it serves, explorer.components).
TASKS = ("classification", "regression", "detection", "segmentation", "similarity")


def __getattr__(name: str):
    """The kinds and their defaults, derived from the registry when first read: NECKS, HEADS, BLOCKS (display
    order), HEADS_FOR_TASK, DEFAULT_HEAD, HEAD_SETTINGS / NECK_SETTINGS (kind -> default settings),
    MULTI_LEVEL_NECKS (necks that fuse levels), TWO_STAGE (heads assembled as a whole model), POOLINGS (the MLP
    heads' pooling choices)."""
    derived = {
        "NECKS": lambda: components.names("neck"),
        "HEADS": lambda: components.names("head"),
        "BLOCKS": lambda: components.names("block"),
        "HEADS_FOR_TASK": lambda: {t: components.names("head", task=t) for t in TASKS},
        "DEFAULT_HEAD": lambda: {t: components.default("head", t) for t in TASKS},
        "HEAD_SETTINGS": lambda: {c.name: c.defaults() for c in components.all_components("head")},
        "NECK_SETTINGS": lambda: {c.name: c.defaults() for c in components.all_components("neck")},
        "MULTI_LEVEL_NECKS": lambda: components.with_fact("neck", "multi_scale"),
        "TWO_STAGE": lambda: components.with_fact("head", "two_stage"),
        "POOLINGS": lambda: components.get("head", components.default("head", TASKS[0])).setting("pooling").choices,
    }
    if name in derived:
        return derived[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Limits that keep one person's spec from occupying the server (the app refuses before any work is done).
MAX_SIDE = 2048
MAX_CHANNELS = 16
MAX_STAGES = 64
MAX_REPEATS = 64
# A spec inside every single limit above can still describe a giant network (64 stages × 64 dense blocks of width
# 4096, a flattening head on a 2048² map). So the whole composition also has a budget, checked on a cheap estimate
# from the spec alone (`estimate`), before any module is built. The budget admits every catalog CNN as a backbone
# (the largest, regnet_y_128gf, has 645 M parameters and 211 M activations per image at its 384 px).
MAX_BLOCKS = 256  # blocks of a custom backbone in all (the sum of the stages' repeats)
MAX_PARAMS = 700_000_000  # estimated parameters of the whole composition (2.8 GB in float32)
MAX_ACTIVATIONS = 1_000_000_000  # estimated activation values per image, lecture convention (4 GB in float32)


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
    block: str = dataclasses.field(default_factory=lambda: components.default("block"))
    repeats: int = 1
    width: int = 64
    stride: int = 2


@dataclasses.dataclass
class StemSpec:
    """A custom backbone's stem: one 3×3 ConvBNReLU (explorer.blocks.CustomBackbone)."""
    width: int = 32
    stride: int = 2


@dataclasses.dataclass
class BackboneSpec:
    name: str = "resnet18"
    pretrained: bool = False
    frozen_stages: list = dataclasses.field(default_factory=list)
    out_stages: Optional[list] = None  # None: the task's default (see compose.default_out_stages)
    stages: Optional[list] = None  # custom backbones only: list of StageSpec
    stem: Optional[StemSpec] = None  # custom backbones only: None is no stem

    @property
    def is_custom(self) -> bool:
        return self.name == "custom"


@dataclasses.dataclass
class NeckSpec:
    kind: str = dataclasses.field(default_factory=lambda: components.default("neck"))
    settings: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class HeadSpec:
    kind: str = dataclasses.field(default_factory=lambda: components.default("head", TASKS[0]))
    settings: dict = dataclasses.field(default_factory=lambda: components.get(
        "head", components.default("head", TASKS[0])).defaults())

    def __getattr__(self, item):  # head.num_classes etc.
        settings = self.__dict__.get("settings", {})
        if item in settings:
            return settings[item]
        raise AttributeError(item)


@dataclasses.dataclass
class ArchitectureSpec:
    task: str = TASKS[0]
    input: InputSpec = dataclasses.field(default_factory=InputSpec)
    backbone: BackboneSpec = dataclasses.field(default_factory=BackboneSpec)
    neck: NeckSpec = dataclasses.field(default_factory=NeckSpec)
    head: HeadSpec = dataclasses.field(default_factory=HeadSpec)

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> "ArchitectureSpec":
        """Validate and fill defaults. Raises SpecError with one sentence for anything wrong."""
        _check_keys("spec", data, ("task", "input", "backbone", "neck", "head"))
        task = _choice("task", data.get("task", TASKS[0]), TASKS)

        inp = data.get("input", {})
        _check_keys("input", inp, ("channels", "height", "width"))
        i = InputSpec(
            channels=_int("input.channels", inp.get("channels", 3), 1, MAX_CHANNELS),
            height=_int("input.height", inp.get("height", 224), 1, MAX_SIDE),
            width=_int("input.width", inp.get("width", 224), 1, MAX_SIDE),
        )

        bb = data.get("backbone", {})
        _check_keys("backbone", bb, ("name", "pretrained", "frozen_stages", "out_stages", "stages", "stem"))
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
            b.stem = _parse_stem(bb["stem"] if "stem" in bb else _stem_before_rows(b.stages))
            if b.pretrained:
                _err("A custom backbone has no pretrained weights; set 'backbone.pretrained' to false.")
        else:
            if "stages" in bb or "stem" in bb:
                key = "stages" if "stages" in bb else "stem"
                _err(f"'backbone.{key}' is only for a custom backbone; set 'backbone.name' to \"custom\" "
                     f"or remove the {key}.")
            from . import catalog

            try:
                whole = catalog.info(name)
            except catalog.UnknownModelError as e:
                _err(f"'backbone.name': {e}")
            if whole.source == "segmentation":  # its forward resizes to the input: it cannot be cut at a stage
                _err(f"'backbone.name': {name} is a whole encoder–decoder (it outputs a class per pixel), not a "
                     "backbone; open it on Layers, or choose a classification CNN or a custom stack.")
            if whole.source == "quantized":  # packed int8 weights: no meta form, no training, no cutting
                _err(f"'backbone.name': {name} is an int8 model for inference only; open it on Layers, or use "
                     f"its float version {name.removeprefix('quantized_')} as a backbone.")
            if whole.source == "optical_flow":
                _err(f"'backbone.name': {name} takes two frames and outputs optical flow, not a backbone; open it "
                     "on Layers, or choose a classification CNN or a custom stack.")

        nk = data.get("neck", {})
        if not isinstance(nk, dict):
            _err(f"'neck' must be an object like {{\"kind\": \"fpn\"}}; got {_show(nk)}.")
        kind = _choice("neck.kind", nk.get("kind", components.default("neck")), components.names("neck"))
        n = NeckSpec(kind, _parse_settings("neck", components.get("neck", kind), nk))

        hd = data.get("head", {})
        if not isinstance(hd, dict):
            _err(f"'head' must be an object like {{\"kind\": \"classification\"}}; got {_show(hd)}.")
        hkind = _choice("head.kind", hd.get("kind", components.default("head", task)), components.names("head"))
        if hkind not in components.names("head", task=task):
            _err(f"The {hkind} head does not do {task}; for {task} choose "
                 f"{' or '.join(components.names('head', task=task))}, or change the task.")
        h = HeadSpec(hkind, _parse_settings("head", components.get("head", hkind), hd))

        spec = cls(task=task, input=i, backbone=b, neck=n, head=h)
        spec._check_combination()
        check_budget(spec)
        return spec

    def _check_combination(self) -> None:
        """Rules between parts that need no model built: the stages each part needs, then each kind's own."""
        parts = (components.get("neck", self.neck.kind), components.get("head", self.head.kind))
        if self.backbone.out_stages is not None:
            for part in parts:
                part.check_levels(len(self.backbone.out_stages))
        for part in parts:
            if part.check is not None:
                part.check(self)
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
            bb["stem"] = None if self.backbone.stem is None else dataclasses.asdict(self.backbone.stem)
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
        neck = components.get("neck", self.neck.kind)
        neck = "" if neck.fact("identity") else f" → {neck.short_title}"
        return (f"{self.backbone.name}{neck} → {components.get('head', self.head.kind).short_title} "
                f"at {'×'.join(map(str, self.input.shape))}")

    def replace(self, **changes) -> "ArchitectureSpec":
        """A validated copy with top-level parts replaced, e.g. spec.replace(task="detection")."""
        d = self.to_dict()
        d.update(changes)
        return ArchitectureSpec.from_dict(d)


def _parse_settings(part: str, kind: "components.Component", given: dict) -> dict:
    """The kind's settings: its defaults, with each one ``given`` checked by its declaration (in the order given)."""
    _check_keys(part, given, ("kind",) + tuple(s.name for s in kind.settings))
    settings = kind.defaults()
    for k, v in given.items():
        if k != "kind":
            settings[k] = kind.setting(k).parse(f"{part}.{k}", v)
    return settings


def _stem_before_rows(stages: list) -> dict:
    # The migration of a spec saved before the stem was a field: the stem CustomBackbone then always added.
    from .blocks import default_stem

    return default_stem(stages[0].width)


def _parse_stem(stem) -> Optional[StemSpec]:
    if stem is None:
        return None
    _check_keys("backbone.stem", stem, ("width", "stride"))
    return StemSpec(width=_int("backbone.stem.width", stem.get("width", 32), 1, MAX_WIDTH),
                    stride=_choice("backbone.stem.stride", stem.get("stride", 2), (1, 2)))


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
        if st.get("block") == "stem":  # Compose's editor shows 'backbone.stem' as a first row of that name
            _err(f"Stage {n} is a stem row: the stem is one 3×3 conv layer and only ever the first row, with "
                 "repeats 1; move it to the top with repeats 1, or choose a block kind for it.")
        out.append(StageSpec(
            block=_choice(f"{where}.block", st.get("block", components.default("block")),
                          components.names("block")),
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


def _custom_levels(spec: "ArchitectureSpec") -> tuple:
    """(stage name -> (channels, h, w), blocks, parameters, activations) of a custom backbone."""
    c, h, w = spec.input.shape
    stages, stem = spec.backbone.stages, spec.backbone.stem
    width, params, acts, levels = c, 0, 0, {}
    if stem is not None:  # explorer.blocks.CustomBackbone's stem
        width = stem.width
        if stem.stride == 2:
            h, w = _half(h), _half(w)
        params, acts = 9 * c * width, width * h * w
        levels["stem"] = (width, h, w)
    blocks = 0
    for n, st in enumerate(stages, 1):
        block = components.get("block", st.block)  # BatchNorm and biases left out (a few per channel)
        for r in range(st.repeats):
            stride = st.stride if r == 0 else 1
            hw_in = h * w
            if stride == 2:
                h, w = _half(h), _half(w)
            p, a = block.estimate(width, st.width, stride, hw_in, h * w)
            params, acts, width = params + p, acts + a, st.width
        blocks += st.repeats
        levels[f"stage{n}"] = (width, h, w)
    return levels, blocks, params, acts


def default_level_count(spec: "ArchitectureSpec") -> int:
    """How many backbone stages feed the neck / head when 'out_stages' is left out: the most either part asks for
    (its declaration's ``default_levels``): the last one for classification, regression, similarity and FCN; the
    last three for detection necks and heads; four for U-Net."""
    return max(components.get("neck", spec.neck.kind).levels_by_default(spec),
               components.get("head", spec.head.kind).levels_by_default(spec))


def last_of_each_scale(stages: list, count: int) -> list:
    """The default output stages from [(name, (h, w))] in order: the last stage at each resolution, the last
    ``count`` of those, so a multi-scale neck gets distinct scales (with fewer scales than levels: the last
    ``count`` stages)."""
    last = {size: name for name, size in stages}
    names = [name for name, size in stages if last[size] == name]
    if len(names) < count:
        names = [name for name, _ in stages]
    return names[-count:]


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
            outs = last_of_each_scale([(n, tuple(lv[1:])) for n, lv in named.items()], default_level_count(spec))
        order = list(named)
        levels = [named[o] for o in sorted(outs, key=order.index)]
    elif backbone is not None:
        b_params, b_acts = backbone
    else:
        from . import catalog

        b_params, b_acts = catalog.info(spec.backbone.name).num_params or 0, 0
    if backbone is None:  # (a catalog analysis counts the input already)
        b_acts += spec.input.channels * spec.input.height * spec.input.width  # the input itself
    neck, head = components.get("neck", spec.neck.kind), components.get("head", spec.head.kind)
    if levels:
        n_params, n_acts, out = neck.estimate(spec.neck.settings, list(levels))
        h_params, h_acts = head.estimate(spec.head.settings, out)
    else:  # the backbone's stages are not known yet: count what does not depend on them
        n_params = n_acts = h_acts = 0
        h_params = head.fact("fixed_params", lambda settings: 0)(spec.head.settings)
    return Estimate(blocks, b_params + n_params + h_params, b_acts + n_acts + h_acts,
                    {"backbone": b_params, "neck": n_params, "head": h_params})


_ADVICE = {
    "backbone": "use fewer or narrower stages (width) or fewer repeats",
    "neck": "use a smaller neck width or fewer BiFPN repeats",
    "head": "use global average pooling instead of flatten, fewer or narrower hidden layers, or fewer classes",
}


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
