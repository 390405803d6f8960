"""`analyze(model, input_shape)`: one traced run on the meta device gives every figure.

Parameters (weights / biases, trainable / frozen, tied tensors once), MACs and FLOPs per layer (torch's
`FlopCounterMode` formula table), output shapes and activation memory, receptive fields through branches, and the
bytes autograd saves for training. No real arithmetic is done, so a 600 M-parameter model analyses in a blink.
"""
from __future__ import annotations

import contextlib
from typing import Optional, Union

import torch
from torch import nn

from ..describe import shape_text
from ..meta_init import to_meta_copy
from .receptive_field import Field
from .result import GLOBAL, Analysis, Layer, Stage, counts_in_lecture_memory
from .fast_meta import FastMetaMode
from .trace import Recorder, SavedTensorMeter

__all__ = ["analyze", "Analysis", "Layer", "Stage", "AnalysisError", "GLOBAL", "min_input_size"]


class AnalysisError(ValueError):
    """A model that cannot be analysed at the requested input; the message says what to change."""


def _prepare(model: Union[str, nn.Module], build_kwargs: dict):
    from .. import catalog

    if isinstance(model, str):
        return model, catalog.build_meta(model, **build_kwargs)
    if not isinstance(model, nn.Module):
        raise AnalysisError(f"analyze() takes a catalog name or an nn.Module, not {type(model).__name__}.")
    return type(model).__name__, to_meta_copy(model)


def _materialise(model: nn.Module) -> nn.Module:
    """Give a meta model real (random, small) CPU tensors, for the rare op without a meta kernel."""
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.fill_(1 if "var" in name else 0)
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model


def analyze(model: Union[str, nn.Module], input_shape: Optional[tuple] = None,
            dtype: torch.dtype = torch.float32, *, training_memory: bool = True,
            device: str = "meta", **build_kwargs) -> Analysis:
    """Analyse ``model`` (a catalog name or an ``nn.Module``) for one input of ``input_shape`` (no batch dim).

    ``device="meta"`` (default) does no arithmetic; ``"cpu"`` runs a real forward (to cross-check, or for ops
    without a meta kernel, which the meta run falls back to by itself and records in ``notes``).
    """
    from .. import catalog

    name, net = _prepare(model, build_kwargs)
    if input_shape is None:
        if not isinstance(model, str):
            raise AnalysisError("Give an input shape, e.g. analyze(model, (3, 224, 224)).")
        input_shape = catalog.info(model).input_size
    input_shape = tuple(int(s) for s in input_shape)
    if any(s < 1 for s in input_shape):
        raise AnalysisError(f"Input shape {shape_text(input_shape)} has an empty axis; every size must be ≥ 1.")
    if not dtype.is_floating_point:
        raise AnalysisError(f"Analysis needs a floating-point dtype, not {dtype}.")
    notes: list[str] = []
    if dtype != torch.float32:
        net = net.to(dtype)
    net.eval()

    def run(net, dev):
        x = torch.empty((1,) + input_shape, device=dev, dtype=dtype)
        if dev != "meta":
            x.normal_()
        rec = Recorder(net, x)
        with torch.no_grad(), rec:
            net(x)
        return rec

    try:
        if device == "meta":
            try:
                rec = run(net, "meta")
            except (NotImplementedError, RuntimeError) as e:
                if not _needs_real_data(e):
                    raise
                # An op without a meta kernel: fall back to one small real forward on the CPU.
                notes.append(f"An op could not run on the meta device ({str(e).splitlines()[0][:120]}); "
                             "the figures come from one real forward on the CPU instead.")
                # A fresh copy: the failed meta run may have left caches on modules (RoI poolers do).
                net = _materialise(_prepare(model, build_kwargs)[1].to(dtype).eval())
                device = "cpu"
                rec = run(net, "cpu")
        else:
            if any(p.is_meta for p in net.parameters()):
                net = _materialise(net)
            rec = run(net, device)
    except (RuntimeError, ValueError, IndexError, AssertionError, TypeError) as e:
        raise _input_error(name, model, input_shape, e, build_kwargs) from None

    result = _collect(name, net, rec, input_shape, dtype, notes, device)
    if training_memory:
        result.training_bytes = _training_bytes(net, input_shape, dtype, device, notes)
    return result


def _needs_real_data(err: Exception) -> bool:
    """Errors that mean "this op cannot run without data", as opposed to a wrong input size."""
    msg = str(err).lower()
    return isinstance(err, NotImplementedError) or any(
        k in msg for k in ("meta", "fake impl", "data-dependent", "item() cannot"))


def _input_error(name, model, input_shape, err, build_kwargs) -> AnalysisError:
    from .. import catalog

    msg = str(err).splitlines()[0]
    default = catalog.info(model).input_size if isinstance(model, str) else None
    smallest = None
    if len(input_shape) == 3:
        try:
            smallest = min_input_size(model, input_shape[0], upper=default[1] if default else 1024, **build_kwargs)
        except Exception:
            smallest = None
    if smallest and smallest > max(input_shape[1:]):
        hint = f" The smallest square input that works is {input_shape[0]}×{smallest}×{smallest}."
    elif default:
        hint = (f" Its default input is {shape_text(default)}; a fully connected layer or position embeddings "
                "fix the size some models take.")
    else:
        hint = " Try a larger input."
    return AnalysisError(f"{name} cannot take a {shape_text(input_shape)} input ({msg}).{hint}")


def min_input_size(model: Union[str, nn.Module], channels: int = 3, upper: int = 1024, **build_kwargs) -> Optional[int]:
    """Smallest square side the model accepts (binary search with meta forwards), or None if none ≤ upper."""
    _, net = _prepare(model, build_kwargs)
    net.eval()

    def ok(n: int) -> bool:
        try:
            with torch.no_grad():
                net(torch.empty(1, channels, n, n, device="meta"))
            return True
        except Exception:
            return False

    if not ok(upper):
        return None
    lo, hi = 1, upper
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _field_values(f: Optional[Field]):
    """(rf, jump, offset, padding, is_global) of a field, with None where the layout was not followed."""
    if f is None:
        return None, None, None, None, False
    if f.dims is None and not f.glob:
        return None, None, None, None, False
    return ((f.h.r, f.w.r), (f.h.j, f.w.j), (f.h.centre, f.w.centre), (-f.h.s, -f.w.s), f.glob)


def _is_nchw(f: Optional[Field], shape) -> bool:
    """Is this output a feature map laid out (N, C, H, W)? Transformers' (N, H, W, C) or token maps are not."""
    from .receptive_field import _spatial_axes

    return f is not None and shape is not None and len(shape) == 4 and _spatial_axes(f, 4) == ("h", "w")


def _is_bias(param_name: str) -> bool:
    return param_name.rsplit(".", 1)[-1].endswith("bias")


def _collect(name, net, rec: Recorder, input_shape, dtype, notes, device) -> Analysis:
    bpe = torch.empty((), dtype=dtype).element_size()
    called = {c.path for c in rec.calls}

    # Each parameter tensor belongs to the innermost module call that owns it (tied tensors once, at their first
    # name). A parent may use a child's tensors without calling it (nn.MultiheadAttention and out_proj), so the
    # owner is the nearest *called* ancestor. Tensors no op ever read (an auxiliary head in eval mode) get a
    # "did not run" row of their own.
    owned: dict[str, list] = {}
    not_run: dict[str, list] = {}
    for pname, p in net.named_parameters():  # remove_duplicate=True: tied tensors once
        path = _parent(pname)
        if id(p) not in rec.used_params:
            top = path
            while _parent(top) not in called and top != "":
                top = _parent(top)
            not_run.setdefault(top, []).append((pname, p))
            continue
        owner = path
        while owner not in called and owner != "":
            owner = _parent(owner)
        owned.setdefault(owner, []).append((pname, p))

    def param_split(items):
        w = sum(p.numel() for n, p in items if not _is_bias(n))
        b = sum(p.numel() for n, p in items if _is_bias(n))
        tr = sum(p.numel() for _, p in items if p.requires_grad)
        return w, b, tr, w + b - tr

    rows = [Layer(name="input", kind="Input", output_shape=input_shape,
                  activations=_numel(input_shape), counted=True,
                  rf=(1, 1), jump=(1, 1), offset=(0, 0), padding=(0, 0))]
    modules = {}
    for call in rec.calls:
        m = call.module
        leaf = len(m._modules) == 0
        first = call.index == 1
        items = owned.get(call.path, []) if first else []
        rf, jump, offset, pad, glob = _field_values(call.field)
        modules[call.path] = {"kind": type(m).__name__, "output_shape": _nobatch(call.output_shape),
                              "rf": rf, "jump": jump, "offset": offset, "is_global": glob,
                              "nchw": _is_nchw(call.field, call.output_shape)}
        if call.levels:
            modules[call.path]["levels"] = [
                dict(zip(("name", "output_shape", "rf", "jump", "offset", "padding", "is_global"),
                         (key, _nobatch(shape)) + _field_values(f))) for key, shape, f in call.levels]
        if not (leaf or call.macs or items):
            continue
        w, b, tr, fr = param_split(items)
        shape = _nobatch(call.output_shape)
        kind = type(m).__name__
        acts = _numel(shape) if shape is not None else 0
        counted = counts_in_lecture_memory(kind) and acts > 0
        if counted and "Pool" in kind and call.field is not None and shape is not None:
            # A pool that leaves its input unchanged (VGG's adaptive 7×7 pool at 224 px) is not counted.
            counted = call.input_shape is None or _nobatch(call.input_shape) != shape
        label = call.path or "(model)"
        if call.index > 1:
            label = f"{label} #{call.index}"
        rows.append(Layer(name=label, kind=kind, output_shape=shape, activations=acts, weights=w, biases=b,
                          trainable=tr, frozen=fr, macs=call.macs, counted=counted, rf=rf, jump=jump,
                          offset=offset, padding=pad, is_global=glob, depth=label.count(".")))
    for path, items in not_run.items():
        w, b, tr, fr = param_split(items)
        mod = net.get_submodule(path) if path else net
        rows.append(Layer(name=path, kind=type(mod).__name__, output_shape=None, activations=0, weights=w,
                          biases=b, trainable=tr, frozen=fr, ran=False, depth=path.count(".")))
        notes.append(f"{path} ({type(mod).__name__}) holds {w + b:,} parameters but did not run in this forward.")

    params = list(net.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    macs = sum(c.macs for c in rec.calls) + rec.root_macs
    if rec.uncounted:
        notes.append("Ops with no MAC formula (not included in MACs): "
                     + ", ".join(f"{k} ×{v}" for k, v in sorted(rec.uncounted.items())) + ".")
    if rec.tracker.assumed_pointwise:
        notes.append("Receptive field: treated as elementwise (no rule of their own): "
                     + ", ".join(sorted(rec.tracker.assumed_pointwise)) + ".")
    if rec.tracker.lost_at:
        notes.append("Receptive field: the spatial layout could not be followed through "
                     + ", ".join(sorted(rec.tracker.lost_at))
                     + " (e.g. a split into windows or a class token); fields after it are shown only where "
                       "they are global (attention over those tokens is taken as global).")
    if rec.rf_errors:
        notes.append("Receptive field not followed through: " + ", ".join(sorted(rec.rf_errors)) + ".")
    return Analysis(
        model_name=name, input_shape=input_shape, dtype=str(dtype).replace("torch.", ""), bytes_per_element=bpe,
        layers=rows, modules=modules, params=total, trainable_params=trainable,
        weights_total=sum(r.weights for r in rows), biases_total=sum(r.biases for r in rows),
        buffers=sum(b.numel() for b in net.buffers()), macs=macs,
        activations=sum(r.activations for r in rows if r.counted),
        training_bytes=None, weight_bytes=total * bpe,
        all_activations=sum(r.activations for r in rows if r.ran),
        uncounted_ops=dict(rec.uncounted), notes=notes, device=device,
    )


def _training_bytes(net: nn.Module, input_shape, dtype, device, notes) -> Optional[int]:
    """Exact bytes autograd saves for backward in one training-mode forward, per image."""
    net.train()
    try:
        for batch in (1, 2):
            meter = SavedTensorMeter(net)
            x = torch.empty((batch,) + input_shape, device=device, dtype=dtype)
            try:
                with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack), \
                        (FastMetaMode() if device == "meta" else contextlib.nullcontext()):
                    net(x)
            except ValueError:
                continue  # BatchNorm on a 1×1 map refuses a batch of one in training mode
            if batch == 2:
                notes.append("Training memory measured with a batch of 2 (BatchNorm needs it) and halved.")
            return meter.total // batch
    except Exception as e:  # training-only code paths (aux heads) may fail where inference does not
        notes.append(f"Training memory could not be measured: {str(e).splitlines()[0][:120]}")
        return None
    finally:
        net.eval()
    return None


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def _nobatch(shape):
    return None if shape is None else tuple(shape[1:])


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
