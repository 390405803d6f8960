"""Architectures side by side (no streamlit): stages aligned by the stride of the map they produce.

Stage names do not line up across families (mobilenet_v2's ``features.2`` is a 56×56 map, efficientnet_b0's
``features.2`` too, but ``features.4`` is 28×28 in one and 14×14 in the other), so `align` lines models up by
**stride**: one row per stride a model's stages produce, and per model the stage that produces that stride
*last*, with its channels, receptive field and the parameters / MACs spent so far (everything executed up to
and including it). A model that makes no map at a stride has no entry there.

The stride of a map is its jump from the analysis (input pixels between neighbouring units), which is input
size / output size at the weights' sizes (224 → 112 is stride 2) and stays exact where padding rounds a size
(300 → 38 is stride 8). A global pooling's 1×1 output is not a map of the pyramid and is left out. A stage
that downsamples more than once (VGG's one ``features`` Sequential) is opened into its layers, so that each
stride it passes through has its row.
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Optional

from .analysis.result import Analysis

__all__ = ["StageAtStride", "stage_paths", "stages_by_stride", "align"]


@dataclasses.dataclass(frozen=True)
class StageAtStride:
    stride: tuple  # (h, w) input pixels per output unit
    resolution: tuple  # (h, w) of the map at this model's input size
    stage: str  # the stage that produces this stride last (a composition's backbone stages without the prefix)
    first: str  # the first stage at this stride (== stage when only one)
    kind: str  # the stage's module class, e.g. "InvertedResidual"
    channels: Optional[int]
    rf: Optional[tuple]  # convolutional-path field (h, w)
    is_global: bool
    params_so_far: int  # every parameter used up to and including `stage`, in execution order
    macs_so_far: int


def stage_paths(a: Analysis) -> list[tuple[str, str]]:
    """(stage path, name shown) of the stages to align, in `Analysis.stages` order: a catalog model's stages;
    for a composition its backbone's stages (named as in the catalog model) followed by its neck and head."""
    from .compose import STAGE_PREFIX  # where a composition puts the catalog model's stages

    names = [s.name for s in a.stages()]
    if "backbone" not in names:
        return [(p, p) for p in _open_multi_stride(a, names)]
    # By prefix, not a.modules: blocks that fx traced through inside a cut backbone have rows but no module.
    inner = [s.name for s in a.stages(depth=STAGE_PREFIX.count(".") + 1) if s.name.startswith(STAGE_PREFIX)]
    return ([(p, p[len(STAGE_PREFIX):]) for p in _open_multi_stride(a, inner)]
            + [(p, p) for p in ("neck", "head") if p in names])


def _row_stride(a: Analysis, row) -> Optional[tuple]:
    nchw = a.modules.get(row.name.split(" #")[0], {}).get("nchw", True)
    return _map_stride(a.input_shape, dict(output_shape=row.output_shape, jump=row.jump, nchw=nchw))


def _open_multi_stride(a: Analysis, paths: list, levels: int = 3) -> list:
    """``paths`` with every stage that downsamples more than once (VGG's and AlexNet's one ``features``
    Sequential) replaced by its children, so that each stride it passes through gets a row of its own."""
    out, before = [], None  # before: the stride of the map entering the stage
    for path in paths:
        rows = [r for r in a.layers if r.name != "input" and (r.name.split(" #")[0] + ".").startswith(path + ".")]
        strides = {s for s in (_row_stride(a, r) for r in rows) if s is not None}
        children = [s.name for s in a.stages(depth=path.count(".") + 2) if s.name.startswith(path + ".")]
        if levels and len(strides - {before, (1, 1)}) > 1 and len(children) > 1:
            out.extend(_open_multi_stride(a, children, levels - 1))
        else:
            out.append(path)
        last = [s for s in (_row_stride(a, r) for r in rows) if s is not None]
        before = last[-1] if last else before
    return out


def _exact(v):
    v = Fraction(v)
    return int(v) if v.denominator == 1 else v


def _map_stride(input_shape: tuple, out: dict) -> Optional[tuple]:
    """The stride of the map described by ``out`` (output_shape, jump, nchw), or None for no feature map."""
    shape = out.get("output_shape")
    if not shape or len(shape) != 3 or not out.get("nchw", True) or len(input_shape) != 3:
        return None
    size, full = shape[1:], input_shape[1:]
    jump = out.get("jump")
    if tuple(size) == (1, 1):
        # A 1×1 output where the grid at this jump has several units is a vector, not a level of the pyramid:
        # global pooling (it keeps the jump of the map it pooled), a squeeze-excitation's squeeze, or a convolution
        # as large as its input (LeNet's C5).
        if jump is None or any(i / j >= 2 for i, j in zip(full, jump)):
            return None
    elif jump is None or any(not 0.5 <= i / j / o <= 2 for i, j, o in zip(full, jump, size)):
        # No jump, or one the field tracker could not follow (MaxViT's window partitions): input / output size.
        jump = tuple(max(1, round(i / o)) for i, o in zip(full, size))
    stride = tuple(_exact(j) for j in jump)
    return stride


def stages_by_stride(a: Analysis) -> dict:
    """``{stride: StageAtStride}`` in increasing stride; for a composition then ``"neck"`` and ``"head"``
    (entries with no stride: their costs so far, after the backbone)."""
    paths = stage_paths(a)
    first_row: dict[str, int] = {}
    last_row: dict[str, int] = {}  # stage path -> index of its last layer row (execution order)
    for i, row in enumerate(a.layers):
        base = row.name.split(" #")[0]
        path = next((p for p, _ in paths if base == p or base.startswith(p + ".")), None)
        if path is not None:
            first_row.setdefault(path, i)
            last_row[path] = i
    params_upto, macs_upto, p, m = [], [], 0, 0
    for row in a.layers:
        p, m = p + row.params, m + row.macs
        params_upto.append(p)
        macs_upto.append(m)
    parts = ("neck", "head") if "backbone" in a.stage_paths() else ()  # a composition's parts after its backbone
    out: dict = {}
    for _, path, name in sorted((first_row[p], p, n) for p, n in paths if p in last_row):
        i = last_row[path]
        row = a.layers[i]
        # The module's own output (after a residual add) where it ran as a module, else its last layer row.
        mod = a.modules.get(path) or dict(kind=row.kind, output_shape=row.output_shape, jump=row.jump, rf=row.rf,
                                          is_global=row.is_global)
        stride = None if name in parts else _map_stride(a.input_shape, mod)
        key = name if name in parts else stride
        if key is None:
            continue
        shape = mod["output_shape"]
        prev = out.get(key)
        out[key] = StageAtStride(
            stride=stride, resolution=tuple(shape[1:]) if stride else None, stage=name,
            first=prev.first if prev else name, kind=mod["kind"], channels=shape[0] if stride else None,
            rf=mod.get("rf"), is_global=bool(mod.get("is_global")),
            params_so_far=params_upto[i], macs_so_far=macs_upto[i])
    strides = sorted((k for k in out if isinstance(k, tuple)), key=lambda s: (max(s), s))
    return {k: out[k] for k in strides + [k for k in parts if k in out]}


def align(analyses: dict) -> tuple[list, dict]:
    """Rows (strides, increasing, then "neck" / "head") and per label ``{row: StageAtStride}`` for the
    analyses ``{label: Analysis}``; a label missing a row makes no map at that stride."""
    per = {label: stages_by_stride(a) for label, a in analyses.items()}
    keys = {k for d in per.values() for k in d}
    rows = sorted((k for k in keys if isinstance(k, tuple)), key=lambda s: (max(s), s))
    rows += [k for k in ("neck", "head") if k in keys]
    return rows, per
