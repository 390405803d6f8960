"""Where a classifier looks: attribution maps (Grad-CAM, Integrated Gradients, Occlusion, Saliency, Guided
Backprop) and the gates of attention modules, as (H, W) maps in [0, 1] to lay over the picture.

All methods are captum's, each run on a `private_copy` of the model: captum registers hooks on the layers it
reads (and Guided Backprop on every ReLU), which on a model shared between sessions would fire in every
session's forward. The copy shares the weights; gradients are taken with respect to the input (or a layer's
output) only, so the shared parameters are never touched. No streamlit here.

``network`` (an `explorer.network.Network`, optional everywhere) says what the module cannot: its task (a
regression or embedding head is N×K too, but not class scores), the part Grad-CAM's default layer comes from
(a composition's backbone) and where a graph-traced backbone comes from. Without it a model is taken as a
classifier whose every layer counts.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .features import as_batch, spatial_layers
from ..describe import describe_output
from .private import attach_taps, private_copy

__all__ = ["AttentionMap", "METHODS", "default_target_layer", "grad_cam", "attribute", "predicted_class", "attention_maps",
           "overlay"]

METHODS = ("Grad-CAM", "Integrated Gradients", "Occlusion", "Saliency", "Guided Backprop")

# captum warns on every Guided Backprop call that it sets (and removes) ReLU hooks: that is on our copy.
warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")

IG_BATCH = 8  # Integrated Gradients: path images per forward/backward (bounds memory at large inputs)
OCCLUSION_BATCH = 16  # occluded images per forward


# -- the target layer and class ----------------------------------------------------------------------------------
def _origins(network) -> dict:
    return dict(network.graph_origins) if network is not None else {}


def default_target_layer(model: nn.Module, input_shape, *, network=None) -> str:
    """The layer Grad-CAM reads by default: the last module (in forward order) with an N×C×H×W output of more
    than one position, among the modules of ``network.cam_scope`` (a composition's backbone; default: all). On
    ResNet that is ``layer4``, on LeNet-5 the last pooling (5×5), after which the convolution C5 leaves one
    position."""
    layers = spatial_layers(model, input_shape, network=network)
    scope = network.cam_scope if network is not None else ""
    if scope:
        layers = [(p, s) for p, s in layers if p.startswith(scope)]
    maps = [p for p, s in layers if s[1] * s[2] > 1]
    if not maps:
        raise ValueError("The model has no layer with a spatial map of more than one position at this input, "
                         "so there is nothing for Grad-CAM to localise.")
    return maps[-1]


def _scores(out, method: str, network=None) -> torch.Tensor:
    task = network.task if network is not None else "classification"
    if task != "classification":  # a regression or embedding head is N×K too, but not class scores
        raise ValueError(f"{method} needs class scores, but this is a {task} model; use a classification model.")
    if isinstance(out, torch.Tensor) and out.dim() == 2:
        return out
    raise ValueError(f"{method} needs class scores (a classifier's N×K output), but this model returns "
                     f"{describe_output(out)}; use a classification model.")


def _target(scores: torch.Tensor, target: Optional[int]) -> int:
    k = scores.shape[1]
    if target is None:
        return int(scores[0].argmax())
    target = int(target)
    if not 0 <= target < k:
        raise ValueError(f"Class {target} does not exist; the model has classes 0–{k - 1}.")
    return target


def predicted_class(model: nn.Module, x: torch.Tensor, *, network=None) -> int:
    """Index of the highest class score of the first image."""
    net = private_copy(model)
    with torch.inference_mode():
        out = net(as_batch(model, x)[:1])
    return _target(_scores(out, "Predicting a class", network), None)


def _unit(heat: torch.Tensor) -> torch.Tensor:
    """float32 CPU map scaled to [0, 1] by its maximum (all zeros stay zeros)."""
    heat = heat.detach().to(device="cpu", dtype=torch.float64).clamp_min(0)
    top = heat.max()
    if top > 0:
        heat = heat / top
    return heat.float()


# -- Grad-CAM ----------------------------------------------------------------------------------------------------
def grad_cam(model: nn.Module, x: torch.Tensor, target: Optional[int] = None,
             layer: Optional[str] = None, *, network=None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., 2017) of class ``target`` (default: the predicted class) for the first image
    of ``x``: ReLU(Σ_c mean-gradient_c · activation_c) at ``layer`` (default `default_target_layer`),
    upsampled bilinearly to the input's size and scaled to max 1. float32 CPU (H, W) in [0, 1]."""
    from captum.attr import LayerAttribution, LayerGradCam

    xb = as_batch(model, x)[:1]
    layer = layer or default_target_layer(model, tuple(xb.shape[1:]), network=network)
    net = private_copy(model)
    seen: dict = {}
    tap = attach_taps(net, [layer], lambda path, out: seen.__setitem__("out", out), origins=_origins(network))[layer]
    with torch.inference_mode():  # the class to explain, and a check that the layer has a map
        cls = _target(_scores(net(xb), "Grad-CAM", network), target)
    out = seen.get("out")
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        what = "did not run" if "out" not in seen else f"outputs {describe_output(seen['out'])}"
        raise ValueError(f"Layer '{layer}' {what}, so it has no spatial map for Grad-CAM; pick a convolutional "
                         "layer.")
    tap.callback = None
    with torch.enable_grad():
        cam = LayerGradCam(net, tap).attribute(xb.clone(), target=cls, relu_attributions=True)
    up = LayerAttribution.interpolate(cam.detach(), tuple(xb.shape[-2:]), interpolate_mode="bilinear")
    return _unit(up[0, 0])


# -- the other methods -------------------------------------------------------------------------------------------
class _Counted(nn.Module):
    """The private copy, counting the images each forward evaluates for a progress bar (captum batches
    them). A module itself, so Guided Backprop finds the copy's ReLUs through it."""

    def __init__(self, net: nn.Module, total: int, progress: Optional[Callable[[float], None]]):
        super().__init__()
        self.net = net
        self.total = max(1, int(total))
        self.done = 0
        self.progress = progress

    def forward(self, x):
        out = self.net(x)
        self.done += int(x.shape[0])
        if self.progress is not None:
            self.progress(min(1.0, self.done / self.total) * 0.999)  # 1.0 only once the map is ready
        return out


def _occlusion_counts(hw: tuple, window: int, stride: int) -> int:
    n = 1
    for size in hw:
        n *= int(np.ceil((size - window) / stride)) + 1
    return n


def attribute(model: nn.Module, x: torch.Tensor, method: str, target: Optional[int] = None,
              layer: Optional[str] = None, progress: Optional[Callable[[float], None]] = None, steps: int = 32,
              window: Optional[int] = None, *, network=None) -> torch.Tensor:
    """Attribution map of class ``target`` (default: predicted) for the first image of ``x`` by ``method`` (one
    of `METHODS`): float32 CPU (H, W) in [0, 1], scaled by its maximum.

    * Grad-CAM: `grad_cam` at ``layer``.
    * Integrated Gradients: |Σ over channels| of the path integral from a zero (all-0 input) baseline,
      ``steps`` points (batches of `IG_BATCH`).
    * Occlusion: the drop of the class score when a ``window``² patch (default ≈ input / 8, stride half the
      window) is set to 0; drops only (occlusions that raise the score count as 0).
    * Saliency: |∂ score / ∂ input|, max over channels.
    * Guided Backprop: the input gradient with only positive gradients passed back through the ReLUs (the
      copy's ReLUs made non-inplace, which the hooks need), |·| max over channels.

    ``progress(fraction)`` is called as images are evaluated and with 1.0 at the end."""
    from captum.attr import GuidedBackprop, IntegratedGradients, Occlusion, Saliency

    if method not in METHODS:
        raise ValueError(f"Unknown attribution method '{method}'; choose one of {', '.join(METHODS)}.")
    report = progress if progress is not None else (lambda f: None)
    report(0.0)
    if method == "Grad-CAM":
        heat = grad_cam(model, x, target=target, layer=layer, network=network)
        report(1.0)
        return heat
    xb = as_batch(model, x)[:1]
    net = private_copy(model)
    with torch.inference_mode():
        cls = _target(_scores(net(xb), method, network), target)
    h, w = xb.shape[-2:]
    inp = xb.clone()
    with torch.enable_grad():
        if method == "Integrated Gradients":
            steps = max(2, int(steps))
            fn = _Counted(net, steps, progress)
            attr = IntegratedGradients(fn).attribute(inp, baselines=torch.zeros_like(inp), target=cls,
                                                     n_steps=steps, internal_batch_size=min(steps, IG_BATCH))
            heat = attr[0].sum(0).abs()
        elif method == "Occlusion":
            win = int(window) if window else max(1, round(min(h, w) / 8))
            win = max(1, min(win, h, w))
            stride = max(1, win // 2)
            fn = _Counted(net, 1 + _occlusion_counts((h, w), win, stride), progress)
            with torch.no_grad():
                attr = Occlusion(fn).attribute(inp, sliding_window_shapes=(inp.shape[1], win, win),
                                               strides=(inp.shape[1], stride, stride), baselines=0, target=cls,
                                               perturbations_per_eval=OCCLUSION_BATCH)
            heat = attr[0].mean(0)  # the same drop for every channel of a window
        elif method == "Saliency":
            inp.requires_grad_(True)  # our own clone: the gradient is taken for it only
            attr = Saliency(_Counted(net, 1, progress)).attribute(inp, target=cls, abs=True)
            heat = attr[0].amax(0)
        else:  # Guided Backprop
            for m in net.modules():
                if isinstance(m, nn.ReLU):
                    m.inplace = False  # the copy's own module objects: the shared model keeps its flags
            inp.requires_grad_(True)
            attr = GuidedBackprop(_Counted(net, 1, progress)).attribute(inp, target=cls)
            heat = attr[0].abs().amax(0)
    heat = _unit(heat)
    report(1.0)
    return heat


# -- attention gates ---------------------------------------------------------------------------------------------
def _attention_kind(module: nn.Module) -> Optional[str]:
    from torchvision.ops import SqueezeExcitation as TvSE

    from ..blocks.attention import CBAM, ChannelAttention, SpatialAttention, SqueezeExcitation

    if isinstance(module, (SqueezeExcitation, TvSE)):
        return "SE"
    if isinstance(module, CBAM):
        return "CBAM"
    if isinstance(module, ChannelAttention):
        return "channel attention"
    if isinstance(module, SpatialAttention):
        return SPATIAL
    return None


SPATIAL = "spatial attention"  # the label of a gate that gives a map, not channel weights


@dataclasses.dataclass(frozen=True)
class AttentionMap:
    """The gates of one attention module for one image (float32 CPU tensors)."""

    path: str
    kind: str  # "SE" | "CBAM" | "channel attention" | "spatial attention"
    channel: Optional[torch.Tensor]  # C weights in [0, 1], or None
    spatial: Optional[torch.Tensor]  # (h, w) map in [0, 1], or None


def attention_maps(model: nn.Module, x: torch.Tensor) -> list[AttentionMap]:
    """The gates of every attention module for the first image of ``x``, in forward order: an `AttentionMap` per
    module.

    Covers explorer's SE / ChannelAttention / SpatialAttention / CBAM and torchvision's SqueezeExcitation
    (MobileNetV3, EfficientNet, RegNetY); a CBAM's own channel and spatial parts are not listed again. The gates
    are the module's own ``attention(input)`` (torchvision: ``_scale``), computed by hooks on a private copy.
    A module run several times reports its last call."""
    xb = as_batch(model, x)[:1]
    net = private_copy(model)
    found: list = []
    for path, module in net.named_modules():
        kind = _attention_kind(module)
        if kind is None or any(path.startswith(p + ".") for p, _, _ in found):
            continue
        found.append((path, kind, module))
    results: dict = {}
    order: list = []

    def hook_for(path, kind):
        def hook(module, args, out):
            inp = args[0]
            if kind == "CBAM":
                channel, spatial = module.attention(inp)
            elif kind == SPATIAL:
                channel, spatial = None, module.attention(inp)
            else:
                gate = module._scale(inp) if not hasattr(module, "attention") else module.attention(inp)
                channel, spatial = gate, None
            results[path] = AttentionMap(
                path, kind, channel=None if channel is None else channel[0].flatten().float().cpu().clone(),
                spatial=None if spatial is None else spatial[0, 0].float().cpu().clone())
            order.append(path)
        return hook

    for path, kind, module in found:  # modules of the private copy: the shared model never carries a hook
        module.register_forward_hook(hook_for(path, kind))
    if not found:
        return []
    with torch.inference_mode():
        net(xb)
    first = {}
    for i, p in enumerate(order):
        first.setdefault(p, i)
    out = []
    for p in sorted(results, key=first.__getitem__):
        entry = results[p]
        # Plain tensors for the caller (outside inference mode).
        out.append(dataclasses.replace(entry, channel=None if entry.channel is None else entry.channel.clone(),
                                       spatial=None if entry.spatial is None else entry.spatial.clone()))
    return out


# -- pictures ----------------------------------------------------------------------------------------------------
def overlay(image: np.ndarray, heat, opacity: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """``image`` (H×W×3 uint8, or H×W grey) with ``heat`` (h×w in [0, 1]) resized bilinearly to H×W, coloured by
    matplotlib colormap ``cmap`` and blended in with ``opacity`` (0: the image, 1: only the heat). uint8 H×W×3."""
    from matplotlib import colormaps

    from .receptive_field import rgb_uint8

    img = rgb_uint8(image)
    H, W = img.shape[:2]
    t = torch.as_tensor(np.asarray(heat, dtype=np.float32) if not isinstance(heat, torch.Tensor) else heat)
    t = t.detach().to(device="cpu", dtype=torch.float32)
    if t.dim() != 2:
        raise ValueError(f"Expected the heat map as an h×w array, got shape {tuple(t.shape)}.")
    if tuple(t.shape) != (H, W):
        t = F.interpolate(t[None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0]
    t = t.nan_to_num(0.0).clamp(0.0, 1.0).numpy()
    opacity = float(np.clip(opacity, 0.0, 1.0))
    colour = colormaps[cmap](t)[..., :3] * 255.0
    out = (1.0 - opacity) * img.astype(np.float64) + opacity * colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def share_inside(heat, box: tuple[int, int, int, int]) -> float:
    """The fraction of a map's mass inside ``box`` = (top, left, bottom, right), bottom/right exclusive, in the
    map's own pixels: 0 for an all-zero map."""
    t = torch.as_tensor(np.asarray(heat, dtype=np.float32) if not isinstance(heat, torch.Tensor) else heat).float()
    total = float(t.clamp_min(0).sum())
    top, left, bottom, right = (int(v) for v in box)
    return float(t[top:bottom, left:right].clamp_min(0).sum()) / total if total > 0 else 0.0


def outline(image: np.ndarray, box: tuple[int, int, int, int], colour=(255, 255, 255)) -> np.ndarray:
    """A copy of ``image`` (H×W×3 uint8) with a one-pixel frame drawn just inside ``box`` (as `share_inside`)."""
    out = np.array(image, dtype=np.uint8, copy=True)
    top, left, bottom, right = (int(v) for v in box)
    bottom, right = min(bottom, out.shape[0]) - 1, min(right, out.shape[1]) - 1
    out[top, left:right + 1] = out[bottom, left:right + 1] = colour
    out[top:bottom + 1, left] = out[top:bottom + 1, right] = colour
    return out
