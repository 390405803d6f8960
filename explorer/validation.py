"""One-sentence validation shared by the spec and the component registry.

Every problem raises `SpecError` with one sentence that names the field and says what to change.
"""
from __future__ import annotations

__all__ = ["MAX_CLASSES", "MAX_HIDDEN_LAYERS", "MAX_WIDTH", "SpecError", "check_bool", "check_choice", "check_int",
           "check_keys", "check_str_list", "fail", "show"]


class SpecError(ValueError):
    """A spec a person wrote that cannot be built; the message is one sentence saying what to change."""


def fail(msg: str):
    raise SpecError(msg)


def show(v, limit: int = 60) -> str:
    """A value as a message quotes it: its repr on one line (control characters escaped), at most ``limit``
    characters, so a hostile value can neither break the sentence nor flood the screen."""
    try:
        text = repr(v)
    except RecursionError:  # pragma: no cover (JSON cannot nest this deep; a hand-made dict can)
        text = type(v).__name__
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= limit else text[:limit - 1] + "…"


def check_keys(where: str, data: dict, allowed) -> None:
    if not isinstance(data, dict):
        fail(f"'{where}' must be an object with keys {', '.join(allowed)}; got {type(data).__name__}.")
    unknown = sorted((k for k in data if k not in allowed), key=str)
    if unknown and not allowed:
        fail(f"'{where}' takes no settings; remove {show(unknown[0])}.")
    if unknown:
        fail(f"'{where}' has no setting {show(unknown[0])}; its settings are: {', '.join(allowed)}.")


def check_int(where: str, v, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        fail(f"'{where}' must be a whole number between {lo:,} and {hi:,}; got {show(v)}.")
    if not lo <= v <= hi:
        fail(f"'{where}' must be between {lo:,} and {hi:,}; got {show(v) if abs(v) > 10**15 else f'{v:,}'}.")
    return v


def check_bool(where: str, v) -> bool:
    if not isinstance(v, bool):
        fail(f"'{where}' must be true or false; got {show(v)}.")
    return v


def check_choice(where: str, v, options):
    # The type must match too: JSON's true equals 1 and 2.0 equals 2 in Python, but neither is a stride.
    if not any(type(v) is type(o) and v == o for o in options):
        fail(f"'{where}' must be one of {', '.join(map(str, options))}; got {show(v)}.")
    return v


def check_str_list(where: str, v) -> list:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        fail(f"'{where}' must be a list of stage names; got {show(v)}.")
    if len(set(v)) != len(v):
        fail(f"'{where}' names a stage twice; list each stage once.")
    return list(v)


# Limits that keep one person's spec from occupying the server, shared by the spec and the kinds' settings
# (spec.py re-exports them with its other limits).
MAX_WIDTH = 4096  # channels of a stage, a neck level, a head's outputs or embedding
MAX_CLASSES = 100_000
MAX_HIDDEN_LAYERS = 8
