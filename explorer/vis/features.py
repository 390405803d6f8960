"""Feature maps: what one layer of a network outputs for an image, channel by channel.

A layer is named by its dotted module path, as in ``named_modules`` ("features.3"; a composition's backbone stage
is at `compose.stage_path`).
The model may be shared between sessions, so every forward here runs on a `private_copy` with taps on the copy
(see `explorer.vis.private` for why hooks on the shared model are not allowed). No streamlit here.
"""
from __future__ import annotations

import math
import threading
import weakref

import torch
from torch import nn

from ..describe import shape_text
from .private import attach_taps, first_tensor, model_device_dtype, private_copy

__all__ = ["feature_maps", "channel_stats", "top_channels", "feature_grid", "spatial_layers", "as_batch"]


def as_batch(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` (C×H×W or N×C×H×W) as a detached N×C×H×W tensor on the model's device and dtype."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] < 1:
        raise ValueError(f"Expected an image as a C×H×W or N×C×H×W tensor, got shape {tuple(x.shape)}.")
    device, dtype = model_device_dtype(model)
    return x.detach().to(device=device, dtype=dtype)


def _origins(network) -> dict:
    """fx graph module path -> catalog model it was traced from, as the network describes it (`attach_taps`)."""
    return dict(network.graph_origins) if network is not None else {}


def feature_maps(model: nn.Module, x: torch.Tensor, layer: str, *, network=None) -> torch.Tensor:
    """Output of module ``layer`` for input ``x`` (C×H×W or N×C×H×W): a float32 CPU (C, H, W) tensor of the
    first image.

    A tuple / dict output gives its first tensor; an N×C vector (after global pooling, a classifier) comes back
    as (C, 1, 1). Token sequences (N×L×C) have no spatial map: ValueError, as for an unknown layer. A layer that
    runs several times (a shared ReLU) gives its last call. Runs under ``torch.inference_mode``.
    ``network`` (an `explorer.network.Network`): where its graph-traced backbone comes from, so a stage's output
    is found exactly."""
    xb = as_batch(model, x)
    net = private_copy(model)
    seen: dict = {}

    def record(path, out):
        t = first_tensor(out)
        # Cloned now: an in-place op later in the forward (ReLU(inplace=True)) would otherwise change it.
        seen["out"] = t.detach().clone() if t is not None else None
        seen["raw"] = out

    attach_taps(net, [layer], record, origins=_origins(network))
    with torch.inference_mode():
        net(xb)
    if "out" not in seen:
        raise ValueError(f"Layer '{layer}' did not run for this input, so it has no output to show.")
    t = seen["out"]
    if t is None:
        raise ValueError(f"Layer '{layer}' returns {type(seen['raw']).__name__} without a tensor; "
                         "it has no spatial map to show.")
    shape = tuple(t.shape)
    if t.dim() == 4:
        maps = t[0]
    elif t.dim() == 2:
        maps = t[0][:, None, None]
    else:
        raise ValueError(f"Layer '{layer}' outputs {shape_text(shape)} (tokens or a vector, not N×C×H×W), so it "
                         "has no spatial map to show; pick a convolutional layer.")
    return maps.to(device="cpu", dtype=torch.float32).clone()  # a plain tensor, no longer an inference tensor


# -- per channel -------------------------------------------------------------------------------------------------
def _check_maps(maps: torch.Tensor) -> torch.Tensor:
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3:
        raise ValueError(f"Expected feature maps as a (C, H, W) tensor, got "
                         f"{tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__}.")
    return maps.detach().to(device="cpu", dtype=torch.float32)


def channel_stats(maps: torch.Tensor) -> list[dict]:
    """Per channel, by channel index: ``{"channel", "mean", "std", "min", "max", "fraction_active"}`` (Python
    numbers; std over the map's positions without Bessel's correction; active means > 0)."""
    m = _check_maps(maps).flatten(1)
    mean, std = m.mean(1), m.std(1, correction=0)
    lo, hi = m.amin(1), m.amax(1)
    active = (m > 0).float().mean(1)
    return [{"channel": c, "mean": float(mean[c]), "std": float(std[c]), "min": float(lo[c]),
             "max": float(hi[c]), "fraction_active": float(active[c])} for c in range(m.shape[0])]


_RANKINGS = {"mean": lambda m: m.mean(1), "max": lambda m: m.amax(1), "std": lambda m: m.std(1, correction=0)}


def top_channels(maps: torch.Tensor, k: int = 16, by: str = "mean") -> list[int]:
    """The ``k`` most active channels, most active first: by mean activation, peak ("max") or spread ("std").
    Ties keep channel order."""
    if by not in _RANKINGS:
        raise ValueError(f"Rank channels by one of {', '.join(_RANKINGS)}, not '{by}'.")
    score = _RANKINGS[by](_check_maps(maps).flatten(1))
    order = sorted(range(score.numel()), key=lambda c: (-float(score[c]), c))
    return order[:max(0, int(k))]


def feature_grid(maps: torch.Tensor, channels: list[int], shared_scale: bool = True, columns: int = 4):
    """A plotly figure: one heatmap per channel in ``channels``, titled "ch 12", rows of ``columns``.

    ``shared_scale``: one colour scale (and one colorbar) for all, so channels compare by brightness;
    otherwise each channel spans the full colour range of its own minimum..maximum (no colorbars)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    m = _check_maps(maps)
    channels = [int(c) for c in channels]
    if not channels:
        raise ValueError("Choose at least one channel to show.")
    bad = [c for c in channels if not 0 <= c < m.shape[0]]
    if bad:
        raise ValueError(f"Channel {bad[0]} does not exist; this layer has channels 0–{m.shape[0] - 1}.")
    cols = max(1, min(int(columns), len(channels)))
    rows = math.ceil(len(channels) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"ch {c}" for c in channels],
                        horizontal_spacing=0.02, vertical_spacing=0.12 / rows)
    sel = m[channels]
    lo, hi = float(sel.min()), float(sel.max())
    for i, c in enumerate(channels):
        z = m[c].numpy()
        kw = dict(coloraxis="coloraxis") if shared_scale else dict(colorscale="Viridis", showscale=False)
        fig.add_trace(go.Heatmap(z=z, hovertemplate=f"ch {c}<br>row %{{y}}, col %{{x}}: %{{z:.3g}}<extra></extra>",
                                 **kw), row=i // cols + 1, col=i % cols + 1)
    if shared_scale:
        fig.update_layout(coloraxis=dict(colorscale="Viridis", cmin=lo, cmax=hi if hi > lo else lo + 1e-6))
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed", scaleanchor="x")
    for i in range(2, len(channels) + 1):  # keep every map's pixels square
        fig.layout[f"yaxis{i}"].scaleanchor = f"x{i}"
    fig.update_layout(height=max(220, 180 * rows), margin=dict(l=10, r=10, t=40, b=10))
    return fig


# -- which layers have maps --------------------------------------------------------------------------------------
_SPATIAL: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_SPATIAL_LOCK = threading.Lock()


def spatial_layers(model: nn.Module, input_shape, *, network=None) -> list[tuple[str, tuple]]:
    """(module path, output shape C×H×W) of every module whose output is an N×C×H×W tensor, in forward order
    (when each finishes; a module run several times counts at its last call, with that call's shape).

    One forward of a private copy on a zero input of ``input_shape`` (C×H×W), remembered per model and shape.
    Works for composed models with any head (their graph-traced backbones included; ``network`` says where such
    a backbone comes from, as for `feature_maps`). A channels-last grid (Swin's N×H×W×C) is listed as it comes."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3:
        raise ValueError(f"Give the input shape as C×H×W, not {shape_text(shape)}.")
    device, dtype = model_device_dtype(model)
    origins = _origins(network)
    key = (shape, str(device), dtype, tuple(sorted(origins.items())))
    with _SPATIAL_LOCK:
        found = _SPATIAL.get(model, {}).get(key)
    if found is None:
        found = _spatial_layers(model, shape, device, dtype, origins)
        with _SPATIAL_LOCK:
            _SPATIAL.setdefault(model, {})[key] = found
    return list(found)


def _spatial_layers(model, shape, device, dtype, origins: dict) -> tuple:
    net = private_copy(model)
    seen: dict = {}

    def record(path, out):
        if isinstance(out, torch.Tensor) and out.dim() == 4:
            seen[path] = tuple(int(s) for s in out.shape[1:])
        else:
            seen.pop(path, None)  # its last call is what feature_maps shows
        order.append(path)

    order: list = []
    paths = [p for p, _ in net.named_modules() if p]
    attach_taps(net, paths, record, origins=origins)
    try:
        with torch.inference_mode():
            net(torch.zeros((1,) + shape, device=device, dtype=dtype))
    except (RuntimeError, ValueError, AssertionError) as e:
        raise ValueError(f"The model cannot run on a {shape_text(shape)} input: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    last = {p: i for i, p in enumerate(order)}
    return tuple((p, seen[p]) for p in sorted(seen, key=last.__getitem__))
