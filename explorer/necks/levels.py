"""What every neck shares: the check that a forward gets the levels the neck was built for."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor

__all__ = ["check_level_count"]


def check_level_count(features: "OrderedDict[str, Tensor]", expected: int, name: str) -> None:
    # zip() would silently drop levels, so a mismatch between build and call is reported instead.
    if len(features) != expected:
        raise ValueError(f"{name} was built for {expected} feature level(s) but received {len(features)}.")
