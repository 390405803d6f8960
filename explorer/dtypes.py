"""The one dtype table: the names a person picks (the pages, the CLI, the URL) and the torch dtypes they mean.

`DTYPES` is what the app offers (bytes per element 4 or 2, the lecture's memory figures); the CLI also takes
float64 (`ALL_DTYPES`).
"""
from __future__ import annotations

import torch

__all__ = ["DTYPES", "ALL_DTYPES"]

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
ALL_DTYPES: dict[str, torch.dtype] = {**DTYPES, "float64": torch.float64}
