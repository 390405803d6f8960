"""The registry itself: `Setting`, `Component`, `register`, and the queries.

Thread safety: declarations are added while their modules are imported, which Python serialises with the import
lock; `_load` runs once under `_LOCK`, and after it the registry is only read.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import sys
import threading
from typing import Any, Callable, Mapping, Optional

from ..validation import SpecError, check_choice, check_int, show

__all__ = ["CATEGORIES", "Component", "Setting", "all_components", "default", "get", "kinds_markdown", "names",
           "register", "titles", "with_fact"]

CATEGORIES = ("block", "neck", "head")
_CATEGORY_TITLES = {"block": "Blocks** (`explorer.blocks`, the stages of a custom backbone)",
                    "neck": "Necks** (`explorer.necks`)", "head": "Heads** (`explorer.heads`)"}
# Packages whose every module is imported to collect the declarations (a new kind is one new file in one).
PACKAGES = ("explorer.blocks", "explorer.necks", "explorer.heads")

_REGISTRY: dict[str, dict[str, "Component"]] = {c: {} for c in CATEGORIES}
_LOCK = threading.RLock()  # re-entrant so that a read during loading fails with a sentence
_loaded = False
_loading = False


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting of a kind, as the spec stores it and the Compose page shows it.

    ``type``: ``"int"`` (``low``…``high`` inclusive), ``"float"`` (``low`` ≤ v < ``high``), ``"choice"`` (one of
    ``choices``; ``choice_titles`` says how each is shown) or ``"int_list"`` (at most ``max_items`` whole numbers,
    each ``low``…``high``; ``list_text`` names them in the error sentence).
    """

    name: str
    type: str
    default: Any
    low: Any = None
    high: Any = None
    choices: tuple = ()
    choice_titles: tuple = ()  # ((choice, title), ...)
    label: str = ""
    help: str = ""
    max_items: int = 8
    list_text: str = "numbers"
    step: Any = None

    def __post_init__(self):
        if self.type not in ("int", "float", "choice", "int_list"):
            raise ValueError(f"Setting {self.name!r}: unknown type {self.type!r}.")

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def choice_title(self, value) -> str:
        return dict(self.choice_titles).get(value, str(value))

    def parse(self, where: str, value):
        """The value checked (one sentence naming ``where`` for anything wrong), in its canonical type."""
        if self.type == "int":
            return check_int(where, value, self.low, self.high)
        if self.type == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value < self.high:
                raise SpecError(f"'{where}' must be a number from {self.low:g} up to (not including) {self.high:g}; "
                                f"got {show(value)}.")
            return float(value)
        if self.type == "choice":
            return check_choice(where, value, self.choices)
        if not isinstance(value, list) or len(value) > self.max_items:
            raise SpecError(f"'{where}' must be a list of at most {self.max_items} {self.list_text}.")
        return [check_int(where, v, self.low, self.high) for v in value]


@dataclasses.dataclass(frozen=True)
class Component:
    """What one block, neck or head kind is. Fields a category does not use keep their defaults.

    * ``title``: what the Compose page shows (``"classification (GAP/flatten + MLP)"``); ``short_title``: what
      a one-line summary and error sentences say (``"classification"``; the title when left out).
    * ``build``: blocks ``build(in_channels, out_channels, stride)``; necks ``build(in_channels, **settings)``;
      heads ``build(in_channels, *, input_size, feature_sizes, strides, levels, **settings)`` — each returns an
      ``nn.Module`` (see the category's package for the exact contract; a ``ValueError`` is a sentence).
    * ``model``: heads only: the composed-model class it needs (``None``: ``compose.ComposedModel``), called as
      ``model(spec, backbone, neck, head)``.
    * ``tasks``: the tasks a head serves (the first head for a task in display order is its default).
    * ``default``: the kind a spec gets when it names none (one per category; heads: per task, see above).
    * ``min_levels``: backbone stages it needs (``levels_error``: the sentence when fewer are chosen; a generic
      one when left out); ``default_levels``: how many it reads when the person leaves the output stages out
      (an int, or ``f(spec) -> int``; the composition reads the most any of its parts asks for).
    * ``estimate``: its cost for the budget, from the spec alone — blocks ``f(ci, co, stride, hw_in, hw_out)
      -> (params, activations)``; necks ``f(settings, levels) -> (params, activations, out_levels)``; heads
      ``f(settings, levels) -> (params, activations)``, ``levels`` = [(channels, h, w)] fine → coarse.
    * ``check``: ``f(spec)`` raising `SpecError` for a rule between parts that needs no model built.
    * ``order``: display order within the category (lower first).
    * ``facts``: anything else a caller may ask of the kind; the ones in use:
      necks ``identity`` (passes the features through: summaries leave it out), ``multi_scale`` (fuses levels),
      ``uniform_width`` (every output level has one width), ``gate`` (the attention class on each level);
      blocks ``min_width`` / ``min_width_why``, ``gate``, ``example_stage`` (its stage in the stack a new custom
      backbone starts from); heads ``two_stage``, ``label_offset`` (its labels count a background class first),
      ``fixed_params(settings)`` (parameters known before the backbone is: an MLP's hidden layers).
    * ``module``: the declaring module, filled in by `register` (a kind's name is spelled there only).
    """

    category: str
    name: str
    title: str
    build: Callable
    module: str = ""
    short_title: str = ""
    description: str = ""
    settings: tuple = ()
    tasks: tuple = ()
    default: bool = False
    model: Optional[Callable] = None
    min_levels: int = 1
    levels_error: str = ""
    default_levels: Any = 1
    estimate: Optional[Callable] = None
    check: Optional[Callable] = None
    order: int = 100
    paper: str = ""
    year: Optional[int] = None
    facts: Mapping = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.short_title:
            object.__setattr__(self, "short_title", self.title)

    def setting(self, name: str) -> Setting:
        for s in self.settings:
            if s.name == name:
                return s
        raise KeyError(name)

    def defaults(self) -> dict:
        return {s.name: (list(s.default) if isinstance(s.default, (list, tuple)) else s.default)
                for s in self.settings}

    def levels_by_default(self, spec) -> int:
        return self.default_levels(spec) if callable(self.default_levels) else self.default_levels

    def fact(self, key: str, default=None):
        return self.facts.get(key, default)

    def check_levels(self, count: int) -> None:
        """Refuse ``count`` backbone stages when the kind needs more, with its sentence."""
        if count >= self.min_levels:
            return
        n = _WORDS.get(self.min_levels, str(self.min_levels))
        if self.levels_error:
            raise SpecError(self.levels_error)
        if self.category == "neck":
            raise SpecError(f"A {self.name.upper()} neck needs at least {n} backbone stages; choose {n} or more "
                            "output stages or pick no neck.")
        raise SpecError(f"A {self.short_title} {self.category} needs at least {n} backbone stages; choose {n} or "
                        f"more output stages or pick another {self.category}.")


_WORDS = {2: "two", 3: "three", 4: "four"}


def register(category: str, name: str, **fields) -> Callable:
    """Declare a kind. Used as a decorator on its class or builder (``build`` defaults to the decorated object)::

        @register("neck", "my_neck", title="My neck", min_levels=2, settings=(Setting("width", "int", 256, 1, 4096),))
        class FPN(nn.Module): ...
    """
    if category not in CATEGORIES:
        raise ValueError(f"Unknown category {category!r}; choose one of {', '.join(CATEGORIES)}.")
    module = sys._getframe(1).f_globals.get("__name__", "")  # the module that declares the kind

    def declare(obj):
        comp = Component(category=category, name=name, build=fields.get("build", obj), module=module,
                         **{k: v for k, v in fields.items() if k != "build"})
        existing = _REGISTRY[category].get(name)
        if existing is not None and existing.build is not comp.build:
            raise ValueError(f"The {category} kind {name!r} is declared twice.")
        _REGISTRY[category][name] = comp
        return obj

    return declare


def _load() -> None:
    global _loaded, _loading
    if _loaded:
        return
    with _LOCK:
        if _loaded:
            return
        if _loading:  # the same thread, from a declaring module's import: fail loudly, not half-loaded
            raise RuntimeError("The component registry was read while its declaring modules were being imported; "
                               "read it inside functions, not at import time.")
        _loading = True
        try:
            for package in PACKAGES:
                pkg = importlib.import_module(package)
                for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
                    importlib.import_module(f"{package}.{info.name}")
            _loaded = True
        finally:
            _loading = False


def _ordered(category: str) -> list:
    _load()
    items = list(_REGISTRY[category].values())
    return sorted(items, key=lambda c: (c.order, items.index(c)))


def names(category: str, task: Optional[str] = None) -> tuple:
    """The kinds of ``category`` in display order (heads: only those serving ``task`` when given)."""
    return tuple(c.name for c in _ordered(category) if task is None or task in c.tasks)


def get(category: str, name: str) -> Component:
    _load()
    try:
        return _REGISTRY[category][name]
    except KeyError:
        raise KeyError(f"No {category} kind {name!r}; the {category} kinds are {', '.join(names(category))}.") \
            from None


def all_components(category: Optional[str] = None) -> list:
    return [c for cat in (CATEGORIES if category is None else (category,)) for c in _ordered(cat)]


def titles(category: str, short: bool = False) -> dict:
    """name -> title (``short=True``: the short title) in display order."""
    return {c.name: c.short_title if short else c.title for c in _ordered(category)}


def default(category: str, task: Optional[str] = None) -> str:
    """The kind a spec gets when it names none: the one declared ``default=True`` (among those serving
    ``task``, when given), else the first in display order."""
    kinds = [c for c in _ordered(category) if task is None or task in c.tasks]
    if not kinds:
        raise KeyError(f"No {category} kind serves the task {task!r}.")
    return next((c for c in kinds if c.default), kinds[0]).name


def with_fact(category: str, key: str) -> tuple:
    """The kinds of ``category`` whose fact ``key`` is set (truthy), in display order."""
    return tuple(c.name for c in _ordered(category) if c.fact(key))


def kinds_markdown(width: int = 110) -> str:
    """Every kind as a Markdown list, one item per category: `` `name` title`` in display order (the title
    left out where it only spells the name), wrapped at ``width`` (what ``python -m explorer kinds`` prints and
    the README shows)."""
    import textwrap

    def item(c: Component) -> str:
        same = c.title.lower() == c.name.replace("_", " ")
        return f"`{c.name}`" if same else f"`{c.name}` {c.title}"

    items = []
    for category in CATEGORIES:
        kinds = ", ".join(item(c) for c in _ordered(category))
        items.append(textwrap.fill(f"- **{_CATEGORY_TITLES[category]}: {kinds}.", width, subsequent_indent="  ",
                                   break_on_hyphens=False, break_long_words=False))
    return "\n".join(items)
