"""Receptive fields to look at: the growth curve per layer, the lecture's stage table, the box one output unit
can see, and the effective field (gradient magnitude) of that unit on a real image.

Theoretical receptive field: every input pixel that can influence an output unit (from the analysis: size r,
jump j, centre offset per axis). Effective receptive field: where the gradient of that unit with respect to the
input is actually large. Always inside the theoretical box, usually much smaller and roughly Gaussian.

No streamlit here. ``effective_rf`` never registers anything on the model it is given (a model shared through
``st.cache_resource`` is used by several sessions at once); see `effective_rf`.
"""
from __future__ import annotations

import functools
import threading
import weakref
from fractions import Fraction
from typing import Mapping, Optional

import numpy as np
import pandas as pd
import torch

from .. import images as _images
from torch import nn

from ..analysis import GLOBAL, Analysis
from .private import private_copy

__all__ = ["SAMPLE_IMAGES", "stage_table", "rf_warnings", "theoretical_box", "effective_rf",
           "output_size", "spatial_stages", "default_stage", "unit_centre", "unit_size", "field_sentence",
           "sample_images", "center_crop", "to_input", "read_image", "rgb_uint8"]

MISSING = "—"  # a stage the model does not have
MAX_IMAGE_PIXELS = _images.MAX_PIXELS  # an upload larger than this is refused before it is decoded

# scikit-image's sample photos that ship inside the package (no download): name -> title.
SAMPLE_IMAGES = _images.SAMPLES


def _num(v):
    """Fraction / integral float -> int where whole, else float (for tables and plots)."""
    if v is None:
        return None
    if isinstance(v, Fraction):
        return int(v) if v.denominator == 1 else float(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _is_spatial(m: Mapping) -> bool:
    shape = m.get("output_shape")
    return bool(m.get("nchw")) and shape is not None and len(shape) == 3


# -- per layer ------------------------------------------------------------------------------------------------
# -- per stage, several models side by side --------------------------------------------------------------------
def _stage_cell(a: Analysis, path: str):
    if path not in a.modules:
        return MISSING
    rf = a.receptive_field(path)
    if rf == GLOBAL:
        return GLOBAL
    if rf is None:
        return MISSING
    if a.modules[path].get("rf_range") is not None:  # units differ (after upsampling): the range over units
        from ..fields import fmt_range

        return fmt_range(a.modules[path]["rf_range"], sep=False)
    h, w = (_num(v) for v in rf)
    return h if h == w else f"{h}×{w}"


def stage_table(analyses: Mapping[str, Analysis], all_stages: bool = False) -> pd.DataFrame:
    """Theoretical receptive field (input pixels) at the output of each stage, one column per model.

    Cells are ints (square fields), "h×w" text, "435–467 × 435–467" where units see different sizes,
    "global" or "—" (no such stage). Stages that change no model's
    field (BatchNorm, ReLU, the fc after global pooling) only repeat the row above and are left out, as
    ``python -m explorer rf`` does, unless ``all_stages``."""
    names: list[str] = []
    for a in analyses.values():
        for s in a.stages():
            if s.name not in names:
                names.append(s.name)
    rows: list[list] = []
    for name in names:
        cells = [_stage_cell(a, name) for a in analyses.values()]
        if all_stages or not rows or any(c != MISSING and c != p for c, p in zip(cells, rows[-1][1:])):
            rows.append([name] + cells)
    return pd.DataFrame(rows, columns=["stage"] + list(analyses), dtype=object)


# -- the lecture's advice --------------------------------------------------------------------------------------
def _positions(shape) -> int:
    return int(np.prod(shape[1:])) if shape is not None and len(shape) >= 2 else 1


def _px(h, w) -> str:
    h, w = _num(h), _num(w)
    return f"{h} px" if h == w else f"{h}×{w} px"


def rf_warnings(analysis: Analysis, input_hw: Optional[tuple] = None) -> list[str]:
    """Sentences for a person when the input is larger than the field of the deepest feature map.

    The lecture's rule: the input size should not exceed the receptive field. The deepest spatial stage is the
    last stage with an N×C×H×W output other than global pooling; its convolutional-path field is compared with
    the input per axis. Models that turn global through attention after that stage (ViT) see the whole image
    anyway: no warning."""
    if input_hw is None:
        input_hw = tuple(analysis.input_shape[-2:])
    H, W = (int(v) for v in input_hw)
    stages = [s for s in analysis.stage_paths() if s in analysis.modules]
    # Global pooling (a 1×1 map that sees everything) is not a feature map of its own.
    spatial = [i for i, s in enumerate(stages) if _is_spatial(m := analysis.modules[s]) and m.get("rf") is not None
               and not (m.get("is_global") and m["output_shape"][1] * m["output_shape"][2] == 1)]
    if not spatial:
        return []
    last = spatial[-1]
    for later in stages[last + 1:]:
        m = analysis.modules[later]
        if m.get("is_global") and _positions(m.get("output_shape")) > 1:
            return []  # attention over many positions after the last map: every token sees the whole image
    name = stages[last]
    m = analysis.modules[name]
    rh, rw = m["rf"]
    if H <= rh and W <= rw:
        return []
    msg = (f"The input ({_px(H, W)}) is larger than the receptive field at {name} ({_px(rh, rw)}): one output "
           "unit cannot see the whole image.")
    if m.get("is_global"):
        msg += (" (That is its convolutional path; a squeeze-excitation gate or attention in it reaches every "
                "pixel, but only as a summary of the whole image.)")
    limit = _num(min(rh, rw))
    msg += f" Use an input of at most {limit} px, or a model whose field is larger."
    return [msg]


# -- one output unit -------------------------------------------------------------------------------------------
def _output_hw(analysis: Analysis, path: str) -> tuple[int, int]:
    m = analysis.modules[path]
    if not _is_spatial(m):
        raise ValueError(f"{path} of {analysis.model_name} has no spatial output map "
                         f"(its output is {m.get('output_shape')}); pick a convolutional stage.")
    return int(m["output_shape"][1]), int(m["output_shape"][2])


def output_size(analysis: Analysis, path: str) -> tuple[int, int]:
    """(rows, cols) of the output map of ``path``."""
    return _output_hw(analysis, path)


def spatial_stages(analysis: Analysis) -> list[str]:
    """Stages with an N×C×H×W output whose field differs from the stage before (no bn1 / relu repeats):
    the places where one output unit can be pointed at."""
    def pick(paths):
        out, prev = [], None
        for path in paths:
            m = analysis.modules.get(path)
            if m is None or not _is_spatial(m) or m.get("rf") is None:
                continue
            key = (m["rf"], m.get("rf_range"), m.get("jump"), m.get("offset"), m.get("is_global"),
                   tuple(m["output_shape"][1:]))
            if key != prev:
                out.append(path)
            prev = key
        return out

    out = pick(analysis.stage_paths())
    if len(out) < 3:  # one big trunk (VGG's features): its children are the stages worth pointing at
        finer = pick(analysis.stage_paths(depth=2))
        out = finer if len(finer) > len(out) else out
    return out


def default_stage(analysis: Analysis) -> Optional[str]:
    """The deepest spatial stage whose field still fits inside the input (its box is not clipped), else the
    first spatial stage: the one that shows best how far a unit sees."""
    stages = spatial_stages(analysis)
    fits = [p for p in stages if _positions(analysis.modules[p]["output_shape"]) > 1
            and _unclipped(analysis, p) == theoretical_box(analysis, p, local=True)]
    return fits[-1] if fits else (stages[0] if stages else None)


def _raw_box(analysis: Analysis, path: str, unit) -> tuple:
    """(x0, y0, x1, y1) of the unclipped field of ``unit``: the exact interval of that unit (`unit_field`),
    which after upsampling is not offset + i·jump ± (rf − 1)/2."""
    i, j = unit
    field = analysis.unit_field(path, i, j)
    if field is not None and None not in field:
        (y0, y1), (x0, x1) = field
        return x0, y0, x1, y1
    m = analysis.modules[path]  # an analysis from before exact maps (a pickled cache): the affine rule
    cy = Fraction(m["offset"][0]) + i * Fraction(m["jump"][0])
    cx = Fraction(m["offset"][1]) + j * Fraction(m["jump"][1])
    hh, hw = (Fraction(m["rf"][0]) - 1) / 2, (Fraction(m["rf"][1]) - 1) / 2
    return cx - hw, cy - hh, cx + hw, cy + hh


def _unclipped(analysis: Analysis, path: str) -> tuple:
    oh, ow = _output_hw(analysis, path)
    return tuple(_num(v) for v in _raw_box(analysis, path, (oh // 2, ow // 2)))


def unit_centre(analysis: Analysis, path: str, unit: Optional[tuple] = None) -> tuple:
    """(x, y): the input pixel the theoretical field of ``unit`` (default: the centre unit) is centred on."""
    oh, ow = _output_hw(analysis, path)
    unit = unit if unit is not None else (oh // 2, ow // 2)
    x0, y0, x1, y1 = _raw_box(analysis, path, unit)
    return _num((x0 + x1) / 2), _num((y0 + y1) / 2)


def unit_size(analysis: Analysis, path: str, unit: tuple) -> tuple:
    """(rows, cols): how many input pixels the field of ``unit`` spans per axis, unclipped."""
    x0, y0, x1, y1 = _raw_box(analysis, path, unit)
    return _num(y1 - y0 + 1), _num(x1 - x0 + 1)


def field_sentence(analysis: Analysis, path: str) -> Optional[str]:
    """Where the units of ``path`` see different sizes (after upsampling, transposed convs, unpooling): the range
    and which units give which, e.g. "Units of neck differ: 435–467 × 435–467 px (435 at odd units, 467 at even
    units (rows and columns))." None where every unit sees the same size."""
    from ..fields import fmt_range

    m = analysis.modules[path]
    if m.get("rf_range") is None:
        return None
    return (f"Units of {path or 'the output'} see different fields: {fmt_range(m['rf_range'])} px "
            f"({m['rf_phases']}); the centre unit sees {_px(*m['rf'])}.")


def theoretical_box(analysis: Analysis, path: str, unit: Optional[tuple] = None, local: bool = False) -> tuple:
    """(x0, y0, x1, y1), inclusive input-pixel bounds of the theoretical field of output unit ``unit`` = (row,
    col) of module ``path`` (default: the centre unit), clipped to the image. x is the column (width) axis.

    Per axis the exact interval of that unit (`Analysis.unit_field`; for a plain conv chain centre = offset +
    i·jump, field = centre ± (rf − 1)/2; after upsampling units differ). A global field is the whole image, unless
    ``local``: then the box of the convolutional path (what the kernels reach, without SE gates or attention)."""
    if path not in analysis.modules:
        raise KeyError(f"{analysis.model_name} has no module '{path}'.")
    oh, ow = _output_hw(analysis, path)
    i, j = unit if unit is not None else (oh // 2, ow // 2)
    if not (0 <= i < oh and 0 <= j < ow):
        raise ValueError(f"Unit ({i}, {j}) is outside the {oh}×{ow} output of {path}.")
    H, W = (int(v) for v in analysis.input_shape[-2:])
    m = analysis.modules[path]
    if m["is_global"] and not local:
        return (0, 0, W - 1, H - 1)

    x0, y0, x1, y1 = (Fraction(v) for v in _raw_box(analysis, path, (i, j)))
    return (_num(max(Fraction(0), x0)), _num(max(Fraction(0), y0)),
            _num(min(Fraction(W - 1), x1)), _num(min(Fraction(H - 1), y1)))


# Feature extractors per (model, node), built once: tracing is the only step that touches module state.
_EXTRACTORS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_TRACE_LOCK = threading.Lock()


def _extractor(model: nn.Module, node: str) -> nn.Module:
    from ..tracing import create_feature_extractor

    with _TRACE_LOCK:
        per_model = _EXTRACTORS.setdefault(model, {})
        if node not in per_model:
            # create_feature_extractor switches its model to train() and back to trace both graphs; on a shared
            # model another session would run in training mode meanwhile. So trace a private copy (the very same
            # tensors, nothing registered on `model`).
            per_model[node] = create_feature_extractor(private_copy(model), return_nodes={node: "out"}).eval()
        return per_model[node]


def effective_rf(model: nn.Module, node: str, image: torch.Tensor, unit: Optional[tuple] = None) -> np.ndarray:
    """Effective receptive field of one output unit of ``node``: |∂ (sum over channels of the unit) / ∂ input|,
    summed over input channels, normalised to [0, 1]. Returns a float32 (H, W) array.

    ``unit`` is (row, col) in the node's output map (default: its centre). ``model`` is left exactly as it was:
    no hooks, no mode switch, no ``.grad`` on its parameters (the gradient is taken for the input only), so a
    model shared between threads can be passed."""
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"Expected one image as a (1, C, H, W) tensor, got {tuple(image.shape)}.")
    fx = _extractor(model, node)
    try:
        dtype = next(model.parameters()).dtype
    except StopIteration:
        dtype = image.dtype
    x = image.detach().to(dtype=dtype).clone().requires_grad_(True)
    with torch.enable_grad():
        out = fx(x)["out"]
        if out.dim() == 4:
            oh, ow = out.shape[-2:]
            i, j = unit if unit is not None else (oh // 2, ow // 2)
            if not (0 <= i < oh and 0 <= j < ow):
                raise ValueError(f"Unit ({i}, {j}) is outside the {oh}×{ow} output of {node}.")
            target = out[0, :, i, j].sum()
        else:  # no spatial map (a classifier output): the whole output
            target = out.sum()
        (grad,) = torch.autograd.grad(target, x)
    heat = grad[0].abs().sum(0).double()
    top = heat.max()
    if top > 0:
        heat = heat / top
    return heat.float().numpy()


# -- images ----------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _samples() -> dict:
    from ..images import sample_image

    out = {}
    for name in SAMPLE_IMAGES:
        img = np.ascontiguousarray(np.asarray(sample_image(name)))
        img.setflags(write=False)
        out[name] = img
    return out


def sample_images() -> dict[str, np.ndarray]:
    """scikit-image's sample photos (they ship with the package): name -> uint8 H×W×3."""
    return dict(_samples())


def rgb_uint8(img: np.ndarray) -> np.ndarray:
    """Any picture (PIL, H×W grey, H×W×1/3/4, uint8 or float in [0, 1]) as contiguous uint8 H×W×3."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.clip(a * 255.0 if a.dtype.kind == "f" and a.max() <= 1.0 else a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"Expected an H×W×3 image, got shape {a.shape}.")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(a[..., :3])


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The picture the network sees, as uint8 size×size×3: `explorer.images.resize_crop` (the shorter side resized,
    bilinear, then the centre cut), the one path every page takes, so boxes and heatmaps are drawn on it."""
    from PIL import Image

    return np.asarray(_images.resize_crop(Image.fromarray(rgb_uint8(img)), (size, size)))


def to_input(img: np.ndarray, size: int, channels: int = 3, model_name: Optional[str] = None) -> torch.Tensor:
    """(1, channels, size, size) float tensor through `explorer.images.resize_crop_normalise`, with the
    normalisation of ``model_name``'s published weights where it has them (else ImageNet's for three channels,
    0.5 / 0.5 for one, grey)."""
    from PIL import Image

    mean, std = _images.weights_statistics(model_name)
    x, _ = _images.resize_crop_normalise(Image.fromarray(rgb_uint8(img)), (channels, size, size), mean, std,
                                         model_name=model_name or "This model")
    return x


def read_image(data: bytes, filename: str = "upload") -> np.ndarray:
    """Decode an uploaded image into uint8 H×W×3 with `explorer.images.load_image` (formats, EXIF, size limits);
    raises ImageError (a ValueError) with a sentence for anything it refuses."""
    from ..images import load_image

    return np.asarray(load_image(data, filename))
