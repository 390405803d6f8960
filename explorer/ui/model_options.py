"""How backbone stage options read in the Compose form: name, resolution and stride; stored values stay names."""
from __future__ import annotations

from typing import Callable

from ..analysis import AnalysisError
from ..spec import SpecError
from .composition import cached_stages
from .draft import _backbone_only, _spec_of


def stage_label(d: dict) -> Callable[[str], str]:
    """A ``format_func`` for the draft's stage multiselects: "features.6 · 28×28 · stride 8" for a stage of
    its backbone at its input, the plain name for anything else (a parameterised module such as bn1)."""
    try:
        stages, _ = cached_stages(_spec_of(_backbone_only(d)))
    except (SpecError, AnalysisError):
        return str
    labels = {s.name: s.label for s in stages}
    return lambda name: labels.get(name, name)
