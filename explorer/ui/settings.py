"""What the Compose widgets are made of, asked of the component registry: the kinds of each category, their titles
and their settings, and one generic widget per `Setting` type.

The page spells no kind: it asks `kinds("neck")`, `title("head", kind)`, `settings("head", kind)` and draws each
setting with `setting_widget`, so a kind declared in `explorer.components` appears on Compose with its settings.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from .. import components
from ..components import Setting
from .format import md_escape

__all__ = ["kinds", "title", "description", "settings", "defaults", "tasks", "default_head", "setting_widget",
           "widget_value", "parse_setting_input"]


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


def parse_setting_input(s: Setting, raw: Any) -> Any:
    """A widget's value as the spec takes it; text that is no list of whole numbers is kept as text, so the spec
    check turns it into a sentence naming the setting."""
    if s.type == "int_list":
        text = str(raw or "")
        try:
            return [int(t) for t in text.replace(" ", "").split(",") if t]
        except ValueError:
            return text
    if s.type == "int":
        return int(raw)
    if s.type == "float":
        return float(raw)
    return raw


def setting_widget(container, s: Setting, key: str, on_change: Callable, args: tuple = (), prefix: str = ""):
    """Draw ``s`` in ``container`` with widget key ``key`` (its value seeded in session state before the call)."""
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
        return container.selectbox(label, list(s.choices), key=key, format_func=s.choice_title,
                                   on_change=on_change, args=args, help=help_)
    return container.text_input(label, key=key, on_change=on_change, args=args, help=help_)
