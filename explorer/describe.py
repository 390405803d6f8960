"""How shapes and model outputs are named in the one-sentence errors (shared by analysis, prediction and the maps)."""
from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["shape_text", "describe_output"]


def shape_text(shape: Sequence[int]) -> str:
    """``(3, 224, 224)`` → ``"3×224×224"``."""
    return "×".join(str(int(s)) for s in shape)


def describe_output(out: Any) -> str:
    """What a module returned, as a phrase: "a 1×10 tensor", "a dict of outputs", "a list of outputs", "a str"."""
    if isinstance(out, torch.Tensor):
        return f"a {shape_text(out.shape)} tensor"
    if isinstance(out, dict):
        return "a dict of outputs"
    if isinstance(out, (list, tuple)):
        return "a list of outputs"
    return f"a {type(out).__name__}"
