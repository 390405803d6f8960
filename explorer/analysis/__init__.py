"""`analyze(model, input_shape)`: one traced run on the meta device gives every figure.

Parameters (weights / biases, trainable / frozen, tied tensors once), MACs and FLOPs per layer (torch's
`FlopCounterMode` formula table), output shapes and activation memory, receptive fields through branches, and the
bytes autograd saves for training. No real arithmetic is done, so a 600 M-parameter model analyses in a blink.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Optional, Union

import torch
from torch import nn

from ..describe import shape_text
from ..meta_init import to_meta_copy
from .receptive_field import Field, centre_unit, phase_text, size_range
from .result import GLOBAL, Analysis, Layer, Stage, counts_in_lecture_memory
from .fast_meta import FastMetaMode
from .trace import Recorder, SavedTensorMeter

__all__ = ["analyze", "Analysis", "Layer", "Stage", "AnalysisError", "GLOBAL", "min_input_size"]


class AnalysisError(ValueError):
    """A model that cannot be analysed at the requested input; the message says what to change."""


def _prepare(model: Union[str, nn.Module], build_kwargs: dict, real: bool = False):
    """(name, private copy): on meta, or with ``real`` a copy that keeps a module's own weights (a CPU run)."""
    from .. import catalog

    if isinstance(model, str):
        return model, catalog.build_meta(model, **build_kwargs)  # an int8 model comes back real (see build_meta)
    if not isinstance(model, nn.Module):
        raise AnalysisError(f"analyze() takes a catalog name or an nn.Module, not {type(model).__name__}.")
    if is_quantized(model) or (real and not any(t.is_meta for t in model.state_dict().values())):
        return type(model).__name__, copy.deepcopy(model)  # packed int8 weights cannot move to meta
    return type(model).__name__, to_meta_copy(model)


def is_quantized(model: nn.Module) -> bool:
    """Does the model hold int8 packed weights (torch.ao.nn.quantized modules)? Those are C++ objects, not
    parameters: they have no meta form, and `parameters()` does not see them."""
    return any(isinstance(getattr(m, "_packed_params", None), torch.ScriptObject) for m in model.modules())


def packed_weights(model: nn.Module) -> list:
    """(name, tensor) of every int8 packed weight and its float bias, named like parameters ("fc.weight")."""
    out = []
    for path, m in model.named_modules():
        packed = getattr(m, "_packed_params", None)
        if not isinstance(packed, torch.ScriptObject):
            continue
        owner = path[: -len("._packed_params")] if path.endswith("._packed_params") else path  # Linear's holder
        weight, bias = packed.unpack()
        out.append((f"{owner}.weight" if owner else "weight", weight))
        if bias is not None:
            out.append((f"{owner}.bias" if owner else "bias", bias))
    return out


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
    """Analyse ``model`` (a catalog name or an ``nn.Module``) for one input of ``input_shape`` (no batch dim), or
    for a model with several inputs (RAFT takes two frames) a tuple of shapes, one per positional input.

    ``device="meta"`` (default) does no arithmetic; ``"cpu"`` runs a real forward (to cross-check, or for ops
    without a meta kernel, which the meta run falls back to by itself and records in ``notes``). int8 quantized
    models always run on the CPU: their packed weights have no meta form.
    """
    from .. import catalog

    name, net = _prepare(model, build_kwargs, real=device != "meta")
    if input_shape is None:
        if not isinstance(model, str):
            raise AnalysisError("Give an input shape, e.g. analyze(model, (3, 224, 224)).")
        input_shape = catalog.info(model).input_size
    shapes = _input_shapes(input_shape)
    for s in shapes:
        if any(n < 1 for n in s):
            raise AnalysisError(f"Input shape {shape_text(s)} has an empty axis; every size must be ≥ 1.")
    input_shape = shapes[0] if len(shapes) == 1 else tuple(shapes)
    if not dtype.is_floating_point:
        raise AnalysisError(f"Analysis needs a floating-point dtype, not {dtype}.")
    _check_arity(name, net, shapes)
    notes: list[str] = []
    if is_quantized(net):
        if dtype != torch.float32:
            raise AnalysisError(f"{name} is an int8 quantized model and takes float32 input; analyse it as "
                                f"float32, not {str(dtype).replace('torch.', '')}.")
        device = "cpu"
        notes.append("int8 quantized model: its packed weights have no meta form, so the figures come from one "
                     "real forward on the CPU; parameters are the packed int8 weights and their float biases.")
        if training_memory:
            notes.append("int8 quantized models run inference only: no training memory.")
            training_memory = False
    if dtype != torch.float32:
        net = net.to(dtype)
    net.eval()

    def run(net, dev):
        xs = [torch.empty((1,) + s, device=dev, dtype=dtype) for s in shapes]
        if dev != "meta":
            for x in xs:
                x.normal_()
        rec = Recorder(net, xs)
        # A model whose cost depends on what it computes (a detector's proposal count) may offer a mode that
        # fixes those counts, and say in a note what it assumed.
        fixed = getattr(net, "fixed_counts", None)
        with torch.no_grad(), rec, (fixed() if callable(fixed) else contextlib.nullcontext()):
            net(*xs)
        return rec

    placeholder = False  # did the forward run on placeholder (random) weights the analysis made up?
    try:
        if device == "meta":
            try:
                rec = run(net, "meta")
            except (NotImplementedError, RuntimeError) as e:
                if not _needs_real_data(e):
                    raise
                # An op without a meta kernel: fall back to one small real forward on the CPU.
                notes.append(f"An op could not run on the meta device ({_cause(e)}); "
                             "the figures come from one real forward on the CPU instead.")
                # A fresh copy: the failed meta run may have left caches on modules (RoI poolers do).
                net = _materialise(_prepare(model, build_kwargs)[1].to(dtype).eval())
                device, placeholder = "cpu", True
                rec = run(net, "cpu")
        else:
            if any(p.is_meta for p in net.parameters()):
                net, placeholder = _materialise(net), True
            rec = run(net, device)
    except (RuntimeError, ValueError, IndexError, AssertionError, TypeError) as e:
        if placeholder:
            raise AnalysisError(
                f"{name} has to run one real forward on the CPU here, and that forward failed on the placeholder "
                f"(random) weights the analysis gives it ({_cause(e)}); analyse the model itself with its real "
                "weights loaded, with device=\"cpu\".") from None
        raise _input_error(name, model, input_shape, e, build_kwargs) from None

    counts_note = getattr(net, "counts_note", None)
    if callable(counts_note) and counts_note():
        notes.insert(0, counts_note())
    result = _collect(name, net, rec, input_shape, dtype, notes, device)
    if training_memory:
        result.training_bytes = _training_bytes(net, input_shape, dtype, device, notes)
    return result


def _input_shapes(input_shape) -> list:
    """One shape (3, 224, 224) or a tuple of shapes ((3, 440, 1024), (3, 440, 1024)) -> a list of int tuples."""
    items = tuple(input_shape)
    several = bool(items) and all(isinstance(s, (tuple, list, torch.Size)) for s in items)
    try:
        shapes = [tuple(int(n) for n in s) for s in items] if several else [tuple(int(n) for n in items)]
    except (TypeError, ValueError):
        raise AnalysisError(f"An input shape is a tuple of sizes such as (3, 224, 224), or one such tuple per "
                            f"input; {input_shape!r:.60} is neither.") from None
    if not all(shapes):
        raise AnalysisError("An input shape needs at least one size, e.g. (3, 224, 224).")
    return shapes


def _check_arity(name: str, net: nn.Module, shapes: list) -> None:
    """A model whose forward takes another number of inputs gets a sentence saying so, before anything runs."""
    import inspect

    try:
        sig = inspect.signature(type(net).forward)
    except (TypeError, ValueError):
        return
    params = list(sig.parameters.values())[1:]  # without self
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return
    # Inputs are the positional parameters without a default or defaulting to None; RAFT's third,
    # num_flow_updates=12, is a setting, not an input.
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and (p.default is p.empty or p.default is None)]
    required = [p for p in positional if p.default is p.empty]
    if len(required) <= len(shapes) <= len(positional):
        return
    want = len(required) if len(shapes) < len(required) else len(positional)
    names = ", ".join(p.name for p in (required if len(shapes) < len(required) else positional))
    example = ", ".join([shape_text(shapes[0]).replace("×", ", ").join("()")] * want)
    raise AnalysisError(f"{name} takes {want} input{'s' if want != 1 else ''} ({names}), got {len(shapes)}: give "
                        f"one shape per input, e.g. ({example}).")


# Torch's wording of the failures a person meets most, said in ours (the raw text names internals).
_CAUSES = (
    ("requantization scale", "a quantization scale of 0, which int8 kernels refuse"),
    ("kernel size can't be greater", "a kernel is larger than the feature map that reaches it"),
    ("output size is too small", "a pooling layer's output would be smaller than 1×1"),
    ("mat1 and mat2 shapes cannot be multiplied", "a fully connected layer expects a different number of "
                                                  "features than the layers before it give"),
    ("expected more than 1 value per channel", "BatchNorm cannot normalise a single value per channel"),
    ("item() cannot be called on meta", "an op reads a value from a tensor (.item()), which needs data"),
    ("too small to be down-sampled by the correlation pyramid", "the frames are too small for its correlation "
                                                               "pyramid"),
)


def _cause(err: Exception, limit: int = 120) -> str:
    """What went wrong, as a short phrase: ours for known failures, else torch's first line cut at a word."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    low = text.lower()
    for key, ours in _CAUSES:
        if key in low:
            return ours
    text = text.rstrip(".")
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:(")
    return cut + "…"


def _needs_real_data(err: Exception) -> bool:
    """Errors that mean "this op cannot run without data", as opposed to a wrong input size."""
    msg = str(err).lower()
    return isinstance(err, NotImplementedError) or any(
        k in msg for k in ("meta", "fake impl", "data-dependent", "item() cannot"))


# Causes that a larger input would cure (as opposed to a wrong number of channels, a bug, missing data).
_SIZE_CAUSES = ("kernel size", "output size is too small", "input size", "too small", "padding size",
                "mat1 and mat2", "size mismatch", "must match the size", "expected input", "shape")


def _input_error(name, model, input_shape, err, build_kwargs) -> AnalysisError:
    from .. import catalog

    cause = _cause(err)
    default = catalog.info(model).input_size if isinstance(model, str) else None
    several = isinstance(input_shape[0], tuple)
    shown = " and ".join(shape_text(s) for s in input_shape) if several else shape_text(input_shape)
    smallest = None
    if not several and len(input_shape) == 3:
        try:
            smallest = min_input_size(model, input_shape[0], upper=default[1] if default else 1024, **build_kwargs)
        except Exception:
            smallest = None
    sized = any(k in str(err).lower() for k in _SIZE_CAUSES)
    if smallest and smallest > max(input_shape[1:]):
        hint = f" The smallest square input that works is {input_shape[0]}×{smallest}×{smallest}."
    elif default and isinstance(default[0], tuple):
        hint = f" Its default inputs are {' and '.join(shape_text(d) for d in default)}."
    elif default:
        hint = (f" Its default input is {shape_text(default)}; a fully connected layer or position embeddings "
                "fix the size some models take.")
    elif sized and smallest is None and not several:
        hint = " Try a larger input."
    else:
        hint = ""
    return AnalysisError(f"{name} cannot take a {shown} input{'s' if several else ''} ({cause}).{hint}")


def min_input_size(model: Union[str, nn.Module], channels: int = 3, upper: int = 1024, **build_kwargs) -> Optional[int]:
    """Smallest square side the model accepts (binary search with meta forwards), or None if none ≤ upper."""
    _, net = _prepare(model, build_kwargs)
    net.eval()
    dev = "cpu" if is_quantized(net) else "meta"  # int8 models only run for real

    def ok(n: int) -> bool:
        try:
            with torch.no_grad():
                net(torch.empty(1, channels, n, n, device=dev).normal_() if dev == "cpu"
                    else torch.empty(1, channels, n, n, device=dev))
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
    """(rf, jump, offset, padding, is_global) of a field, with None where the layout was not followed.

    rf is the field size of the tensor's centre unit (⌊(n − 1)/2⌋ per axis); where units differ (after
    upsampling) `_field_extras` gives the range. jump is the average J/P, offset the centre of unit 0 and
    padding −(start of unit 0's field), as for a plain conv chain."""
    if f is None:
        return None, None, None, None, False
    if f.dims is None and not f.glob:
        return None, None, None, None, False
    ch, cw = (centre_unit(n) for n in _axis_sizes(f))
    pad = tuple(None if ax.s is None else -ax.s for ax in (f.h, f.w))  # None: unit 0 reads nothing
    return ((f.h.size_at(ch), f.w.size_at(cw)), (f.h.j, f.w.j), (f.h.centre, f.w.centre), pad, f.glob)


def _axis_sizes(f: Field) -> tuple:
    """Units per spatial axis of the tensor a field belongs to (the whole period where the layout is lost)."""
    from .receptive_field import _spatial_size

    if f.dims is None:
        return f.h.P, f.w.P
    return _spatial_size(f.dims, "h"), _spatial_size(f.dims, "w")


def _field_extras(f: Optional[Field]) -> dict:
    """rf_range ((min_h, max_h), (min_w, max_w)) over the tensor's units, None when every unit sees the same
    size; rf_phases: the sentence saying which units see which; rf_map: the exact map per axis (serialisable);
    rf_approx: the field is a superset somewhere upstream (an unpooling upper bound, an approximate union)."""
    if f is None or (f.dims is None and not f.glob):
        return {"rf_range": None, "rf_phases": None, "rf_map": None, "rf_approx": False}
    nh, nw = _axis_sizes(f)
    ranges = (size_range(f.h, nh), size_range(f.w, nw))
    rng = None
    if any(r is not None for r in ranges):
        rng = tuple(r if r is not None else (ax.size_at(centre_unit(n)),) * 2
                    for r, ax, n in zip(ranges, (f.h, f.w), (nh, nw)))
    texts = (phase_text(f.h, nh), phase_text(f.w, nw))
    if texts[0] == texts[1]:
        phases = texts[0]  # rows and columns alike
    else:
        phases = "; ".join(f"{name}: {t}" for name, t in zip(("rows", "columns"), texts) if t) or None
    return {"rf_range": rng, "rf_phases": phases, "rf_map": (f.h.as_dict(), f.w.as_dict()),
            "rf_approx": f.h.approx or f.w.approx}


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
    packed = packed_weights(net)  # int8 weights are no parameters; each belongs to its (called) conv / linear
    for pname, t in packed:
        owner = _parent(pname)
        while owner not in called and owner != "":
            owner = _parent(owner)
        owned.setdefault(owner, []).append((pname, t))

    def param_split(items):
        w = sum(p.numel() for n, p in items if not _is_bias(n))
        b = sum(p.numel() for n, p in items if _is_bias(n))
        tr = sum(p.numel() for _, p in items if p.requires_grad)
        return w, b, tr, w + b - tr

    shapes = input_shape if isinstance(input_shape[0], tuple) else (input_shape,)
    rows = [Layer(name="input" if len(shapes) == 1 else f"input {i}", kind="Input", output_shape=shape,
                  activations=_numel(shape), counted=True,
                  rf=(1, 1), jump=(1, 1), offset=(0, 0), padding=(0, 0)) for i, shape in enumerate(shapes, 1)]
    modules = {}
    for call in rec.calls:
        m = call.module
        leaf = len(m._modules) == 0
        first = call.index == 1
        items = owned.get(call.path, []) if first else []
        rf, jump, offset, pad, glob = _field_values(call.field)
        extras = _field_extras(call.field)
        modules[call.path] = {"kind": type(m).__name__, "output_shape": _nobatch(call.output_shape),
                              "rf": rf, "jump": jump, "offset": offset, "is_global": glob,
                              "nchw": _is_nchw(call.field, call.output_shape), **extras}
        if call.levels:
            modules[call.path]["levels"] = [
                dict(zip(("name", "output_shape", "rf", "jump", "offset", "padding", "is_global"),
                         (key, _nobatch(shape)) + _field_values(f)), **_field_extras(f))
                for key, shape, f in call.levels]
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
                          offset=offset, padding=pad, is_global=glob, depth=label.count("."),
                          rf_range=extras["rf_range"], rf_phases=extras["rf_phases"]))
    for path, items in not_run.items():
        w, b, tr, fr = param_split(items)
        mod = net.get_submodule(path) if path else net
        rows.append(Layer(name=path, kind=type(mod).__name__, output_shape=None, activations=0, weights=w,
                          biases=b, trainable=tr, frozen=fr, ran=False, depth=path.count(".")))
        notes.append(f"{path} ({type(mod).__name__}) holds {w + b:,} parameters but did not run in this forward.")

    params = list(net.parameters())
    total = sum(p.numel() for p in params) + sum(t.numel() for _, t in packed)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    packed_bytes = sum(t.numel() * t.element_size() for _, t in packed)  # int8 weights, float32 biases
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
    if rec.tracker.upper_bound_at:
        notes.append("Receptive field: an upper bound after "
                     + ", ".join(sorted(rec.tracker.upper_bound_at))
                     + " — unpooling puts each value where its pooling window's maximum was, so a unit's field "
                       "depends on the data; shown is the union of the pooling windows that could have chosen it.")
    approx_at = set(rec.tracker.approx_at) - set(rec.tracker.upper_bound_at)
    if approx_at:
        notes.append("Receptive field approximate at " + ", ".join(sorted(approx_at))
                     + ": maps with different jumps meet there (or the index map's period grew too long), so the "
                       "field shown is a superset.")
    if rec.rf_errors:
        notes.append("Receptive field not followed through: " + ", ".join(sorted(rec.rf_errors)) + ".")
    return Analysis(
        model_name=name, input_shape=input_shape, dtype=str(dtype).replace("torch.", ""), bytes_per_element=bpe,
        layers=rows, modules=modules, params=total, trainable_params=trainable,
        weights_total=sum(r.weights for r in rows), biases_total=sum(r.biases for r in rows),
        buffers=sum(b.numel() for b in net.buffers()), macs=macs,
        activations=sum(r.activations for r in rows if r.counted),
        training_bytes=None, weight_bytes=sum(p.numel() for p in params) * bpe + packed_bytes,
        all_activations=sum(r.activations for r in rows if r.ran),
        uncounted_ops=dict(rec.uncounted), notes=notes, device=device, flow=rec.flow.finish(),
    )


def _training_bytes(net: nn.Module, input_shape, dtype, device, notes) -> Optional[int]:
    """Exact bytes autograd saves for backward in one training-mode forward, per image."""
    net.train()
    try:
        for batch in (1, 2):
            meter = SavedTensorMeter(net)
            shapes = input_shape if isinstance(input_shape[0], tuple) else (input_shape,)
            xs = [torch.empty((batch,) + s, device=device, dtype=dtype) for s in shapes]
            try:
                with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack), \
                        (FastMetaMode() if device == "meta" else contextlib.nullcontext()):
                    net(*xs)
            except ValueError:
                continue  # BatchNorm on a 1×1 map refuses a batch of one in training mode
            if batch == 2:
                notes.append("Training memory measured with a batch of 2 (BatchNorm needs it) and halved.")
            return meter.total // batch
    except Exception as e:  # training-only code paths (aux heads) may fail where inference does not
        notes.append(f"Training memory could not be measured: {_cause(e)}.")
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
