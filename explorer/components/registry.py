"""The registry itself: `Setting`, `Component`, `register`, and the queries.

Thread safety: declarations are added while their modules are imported, which Python serialises with the import
lock; `_load` runs once under `_LOCK`, and after it the registry is only read.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import threading
from typing import Any, Callable, Mapping, Optional

from ..validation import SpecError, check_choice, check_int, show

__all__ = ["CATEGORIES", "Component", "Setting", "all_components", "get", "names", "register", "titles"]

CATEGORIES = ("block", "neck", "head")
# Packages whose every module is imported to collect the declarations (a new kind is one new file in one).
_PACKAGES = ("explorer.blocks", "explorer.necks", "explorer.heads")

_REGISTRY: dict[str, dict[str, "Component"]] = {c: {} for c in CATEGORIES}
_LOCK = threading.Lock()
_loaded = False


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

    * ``build``: blocks ``build(in_channels, out_channels, stride)``; necks ``build(in_channels, **settings)``;
      heads ``build(in_channels, *, input_size, feature_sizes, strides, levels, **settings)`` — each returns an
      ``nn.Module`` (see the category's package for the exact contract).
    * ``tasks``: the tasks a head serves (the first head registered for a task is its default).
    * ``min_levels``: backbone stages it needs; ``default_levels``: how many it reads when the person leaves the
      output stages out (an int, or ``f(spec) -> int``).
    * ``estimate``: its cost for the budget (category contract in ``spec.estimate``).
    * ``check``: ``f(spec)`` raising `SpecError` for a rule between parts that needs no model built.
    * ``facts``: anything else a caller may ask of the kind (``multi_scale`` for necks, ``min_width`` …).
    """

    category: str
    name: str
    title: str
    build: Callable
    description: str = ""
    settings: tuple = ()
    tasks: tuple = ()
    min_levels: int = 1
    default_levels: Any = 1
    estimate: Optional[Callable] = None
    check: Optional[Callable] = None
    order: int = 100
    paper: str = ""
    year: Optional[int] = None
    facts: Mapping = dataclasses.field(default_factory=dict)

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


def register(category: str, name: str, **fields) -> Callable:
    """Declare a kind. Used as a decorator on its class or builder (``build`` defaults to the decorated object)::

        @register("neck", "fpn", title="FPN", min_levels=2, settings=(Setting("width", "int", 256, 1, 4096),))
        class FPN(nn.Module): ...
    """
    if category not in CATEGORIES:
        raise ValueError(f"Unknown category {category!r}; choose one of {', '.join(CATEGORIES)}.")

    def declare(obj):
        comp = Component(category=category, name=name, build=fields.get("build", obj),
                         **{k: v for k, v in fields.items() if k != "build"})
        existing = _REGISTRY[category].get(name)
        if existing is not None and existing.build is not comp.build:
            raise ValueError(f"The {category} kind {name!r} is declared twice.")
        _REGISTRY[category][name] = comp
        return obj

    return declare


def _load() -> None:
    global _loaded
    if _loaded:
        return
    with _LOCK:
        if _loaded:
            return
        for package in _PACKAGES:
            pkg = importlib.import_module(package)
            for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
                importlib.import_module(f"{package}.{info.name}")
        _loaded = True


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


def titles(category: str) -> dict:
    return {c.name: c.title for c in _ordered(category)}
