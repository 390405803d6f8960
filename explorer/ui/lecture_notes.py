"""Where a lecture slide and the explorer disagree, the page says so next to the numbers (keyed by model)."""
from __future__ import annotations

from typing import Callable

from ..analysis import Analysis
from .format import fmt_bytes, fmt_int, fmt_shape
from .state import Selection, cached_analysis

__all__ = ["slide_notes"]


def _vgg16(sel: Selection, a: Analysis) -> str:
    # The slide's own figure is for one 3×224×224 image in fp32, whatever is on screen now.
    ref = cached_analysis("vgg16", 3, 224, 224, "float32")
    text = (f"**Slide check.** The VGG16 slide's “24M × 4 bytes ≈ 96 MB” is an arithmetic slip: its rows "
            f"(the input plus every conv / pool / fc output, one {fmt_shape(ref.input_shape)} image) sum to "
            f"**{fmt_int(ref.activations)}** values, which is **{fmt_bytes(ref.activation_bytes)}** in fp32. "
            "They are the rows ticked *in sum* in the table below.")
    if (a.input_shape, a.dtype) != (ref.input_shape, ref.dtype):
        text += (f" At the current {fmt_shape(a.input_shape)} in {a.dtype} the same rows sum to "
                 f"{fmt_int(a.activations)} values = {fmt_bytes(a.activation_bytes)}.")
    return text


_NOTES: dict[str, Callable[[Selection, Analysis], str]] = {"vgg16": _vgg16}


def slide_notes(sel: Selection, a: Analysis) -> list[str]:
    """Markdown paragraphs for the model on screen (usually none)."""
    note = _NOTES.get(sel.model)
    return [note(sel, a)] if note else []
