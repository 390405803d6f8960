"""What the Compose widgets are made of, asked of the component registry: the kinds of each category, their titles
and their settings, and one generic widget per `Setting` type.

The page spells no kind: it asks `kinds("neck")`, `title("head", kind)`, `settings("head", kind)` and draws each
setting with `setting_widget`, so a kind declared in `explorer.components` appears on Compose with its settings.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Optional

from .. import components
from ..components import Setting
from .format import md_escape

__all__ = ["kinds", "title", "description", "settings", "defaults", "tasks", "default_head", "setting_widget",
           "widget_value", "parse_setting_input", "choice_title_at", "list_problem"]


def tasks() -> tuple:
    """The task vocabulary (each head says which tasks it serves)."""
    from ..spec import TASKS

    return tuple(TASKS)


def kinds(category: str, task: Optional[str] = None) -> tuple:
    """Kinds of ``category`` in display order; heads only those serving ``task`` when given."""
    return tuple(components.names(category, task=task))


def default_head(task: str) -> str:
    return kinds("head", task)[0]  # the first head registered for a task is its default


def title(category: str, name: str) -> str:
    try:
        return components.get(category, name).title
    except KeyError:
        return str(name)


def description(category: str, name: str) -> str:
    try:
        return components.get(category, name).description
    except KeyError:
        return ""


def settings(category: str, name: str) -> tuple:
    """The `Setting` tuple of a neck or head kind (a block's width, repeats and stride are the stage table's)."""
    return tuple(components.get(category, name).settings)


def defaults(category: str, name: str) -> dict:
    return components.get(category, name).defaults()


# -- one widget per setting type -----------------------------------------------------------------------------------
def widget_value(s: Setting, value: Any) -> Any:
    """A spec value as its widget holds it (a list of widths as the text a person types)."""
    if s.type == "int_list":
        return value if isinstance(value, str) else ", ".join(str(v) for v in (value or []))
    if s.type == "float":
        return float(value)
    if s.type == "int":
        return int(value)
    return value


def list_problem(s: Setting, text: Any) -> Optional[str]:
    """What is wrong with typed list text such as "4096, abc, -3", naming the first wrong item; None if nothing."""
    items = [t.strip() for t in str(text or "").split(",") if t.strip()]
    for t in items:
        try:
            v = int(t)
        except ValueError:
            return (f"{s.title}: {t!r} is not a whole number; type whole numbers separated by commas, such as "
                    f"4096, 4096.")
        if v < s.low:
            return f"{s.title}: {v:,} must be at least {s.low:,}; change it or remove it."
        if v > s.high:
            return f"{s.title}: {v:,} must be at most {s.high:,}; change it or remove it."
    if len(items) > s.max_items:
        return f"{s.title}: at most {s.max_items} values; you typed {len(items)}, so remove some."
    return None


def parse_setting_input(s: Setting, raw: Any) -> Any:
    """A widget's value as the spec takes it; list text with a wrong item is kept as text (see `list_problem`,
    which the draft's check answers with)."""
    if s.type == "int_list":
        text = str(raw or "")
        if list_problem(s, text):
            return text
        return [int(t) for t in text.split(",") if t.strip()]
    if s.type == "int":
        return int(raw)
    if s.type == "float":
        return float(raw)
    if s.type == "choice" and raw not in s.choices:
        # The browser answers with the title it shows; after the map changed (another backbone) that is an
        # earlier worked example ("global average (7×7×512 → 512)"): the same choice, whatever the numbers.
        plain = _WORKED_MAP.sub("", str(raw))
        return next((c for c in s.choices if _WORKED_MAP.sub("", s.choice_title(c)) == plain), raw)
    return raw


# A choice title that works an example through ("flatten (7×7×512 → 25,088)"): the map and what it becomes.
_WORKED_MAP = re.compile(r"(\d+)×(\d+)×(\d+) → ([\d,]+)")


def choice_title_at(s: Setting, choice: Any, feature_map: Optional[tuple] = None) -> str:
    """The choice's title with its worked example redone on ``feature_map`` = (channels, height, width), the map
    the choice will really see: the declared example tells whether the choice keeps the channels (7×7×512 → 512)
    or every value (→ 25,088)."""
    title = s.choice_title(choice)
    m = _WORKED_MAP.search(title)
    if feature_map is None or m is None:
        return title
    eh, ew, ec, n = int(m[1]), int(m[2]), int(m[3]), int(m[4].replace(",", ""))
    c, h, w = feature_map
    out = c if n == ec else c * h * w if n == eh * ew * ec else None
    if out is None:
        return title
    return f"{title[:m.start()]}{h}×{w}×{c} → {out:,}{title[m.end():]}"


def setting_widget(container, s: Setting, key: str, on_change: Callable, args: tuple = (), prefix: str = "",
                   feature_map: Optional[tuple] = None):
    """Draw ``s`` in ``container`` with widget key ``key`` (its value seeded in session state before the call);
    ``feature_map`` (c, h, w), the map the head reads, makes worked examples in choice titles true for it."""
    label = f"{prefix}{s.title}" if prefix and not s.title.lower().startswith(prefix.strip().lower()) else s.title
    help_ = md_escape(s.help) if s.help else None
    if s.type == "int":
        return container.number_input(label, int(s.low), int(s.high), step=int(s.step or 1), key=key,
                                      on_change=on_change, args=args, help=help_)
    if s.type == "float":
        step = float(s.step or 0.01)
        high = float(s.high) - step  # the spec takes low ≤ v < high
        return container.number_input(label, float(s.low), high, step=step, key=key, on_change=on_change,
                                      args=args, help=help_)
    if s.type == "choice":
        return container.selectbox(label, list(s.choices), key=key,
                                   format_func=lambda choice: choice_title_at(s, choice, feature_map),
                                   on_change=on_change, args=args, help=help_)
    return container.text_input(label, key=key, on_change=on_change, args=args, help=help_)
