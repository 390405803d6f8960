"""One traced forward: every aten op, attributed to the module call it ran in.

A `TorchDispatchMode` sees each op below autograd; forward pre/post hooks on the analysis' *private* copy of the
model keep a stack of module calls (never on a shared model: hooks there leak between sessions). For every op we
add its FLOPs (torch's formula table) to the innermost call and push receptive fields one op further.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Optional

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from . import fast_meta
from .graph import FlowRecorder
from .flops import FLOP_FORMULAS, flops_of
from .receptive_field import _HANDLERS, _POINTWISE, _VIEWS, Field, FieldTracker, input_field

# Ops that do no multiply-accumulates by the usual convention (MACs count conv / matmul / attention only).
# Anything neither here nor in the formula table is reported as uncounted, never silently zero.
_NO_MACS = (_POINTWISE | _VIEWS | set(_HANDLERS)) - {"mm", "addmm", "bmm", "baddbmm", "convolution",
                                                      "_convolution", "convolution_overrideable"}
_NO_MACS |= {
    "empty", "empty_strided", "zeros", "ones", "full", "arange", "scalar_tensor", "new_empty", "new_zeros",
    "new_ones", "new_full", "fill", "detach_", "set_", "resize_", "_unsafe_index", "index", "index_select",
    "gather", "scatter", "roll", "constant_pad_nd", "pad", "reflection_pad2d", "replication_pad2d", "stack",
    "repeat", "flip", "topk", "sort", "argmax", "embedding", "native_group_norm", "native_layer_norm",
    "_assert_tensor_metadata", "linspace", "meshgrid", "unfold", "tril", "triu", "isnan", "any", "all",
    "cumsum", "max_unpool2d", "masked_fill_", "index_put", "index_put_", "new_empty_strided", "select_scatter",
    "slice_scatter", "copy", "rand", "randn", "normal", "uniform", "_unsafe_view", "sym_size", "sym_numel",
    "lift_fresh_copy", "clamp_", "floor_divide", "remainder", "unsqueeze_", "squeeze_", "mean", "sum",
    "_safe_softmax", "as_strided_", "linalg_vector_norm", "zeros_like", "empty_like", "ones_like", "full_like",
    "zero_", "fill_", "normal_", "uniform_", "nonzero", "_unique2", "bitwise_and", "bitwise_or", "log2",
    "clamp_max", "floor", "where", "exp_", "sigmoid_",
    # int8 (torch.ao.nn.quantized): (de)quantising, elementwise and pooling ops
    "quantize_per_tensor", "quantize_per_channel", "dequantize", "add_relu", "add_scalar", "mul_scalar",
    "cat_relu", "quantized_max_pool2d", "q_scale", "q_zero_point", "int_repr", "relu6",
}


@dataclasses.dataclass
class Call:
    """One call of one module during the traced forward."""

    path: str
    module: nn.Module
    index: int  # 1 for the first call of this module, 2 for the second, ...
    macs: int = 0  # MACs of ops run directly in this call (not in child module calls)
    flops: int = 0
    own_ops: int = 0
    children: int = 0
    input_shape: Optional[tuple] = None
    output_shape: Optional[tuple] = None
    field: Optional[Field] = None
    levels: Optional[list] = None  # (key, shape, field) per tensor of a dict / list output (FPN levels, ...)
    order: int = -1


class Recorder(TorchDispatchMode):
    def __init__(self, model: nn.Module, x):  # x: the input tensor, or a list of them (one per model input)
        super().__init__()
        self.model = model
        self.stack: list[Call] = []
        self.calls: list[Call] = []  # in completion order
        self.root_macs = 0
        self.uncounted: Counter = Counter()
        self.tracker = FieldTracker()
        self.rf_errors: Counter = Counter()
        self._names: dict[Any, str] = {}
        self._counts: Counter = Counter()
        self.active = False
        self.param_ids = {id(p) for p in model.parameters()}
        self.used_params: set = set()
        self._paths = {}
        for path, m in model.named_modules():
            self._paths.setdefault(id(m), path)
        inputs = [x] if isinstance(x, torch.Tensor) else list(x)
        for t in inputs:
            self.tracker.set(t, input_field(tuple(t.shape)))
        self.meta = inputs[0].device.type == "meta"
        self.flow = FlowRecorder(inputs, model)  # which call made each tensor, for the dataflow diagram

    # -- module stack ---------------------------------------------------------------------------------------
    def __enter__(self):
        # The model is the analysis' private copy, so wrapping each module's forward is safe, and cheaper than
        # tens of thousands of hook handles. The wrappers stay but do nothing once the recorder has exited.
        self.active = True
        for m in self.model.modules():
            if "forward" not in m.__dict__:
                m.forward = _tracked(self, m, m.forward)
        return super().__enter__()

    def __exit__(self, *exc):
        self.active = False
        return super().__exit__(*exc)

    def _pre(self, module, args):
        path = self._paths.get(id(module), "?")
        self._counts[path] += 1
        if self.stack:
            self.stack[-1].children += 1
        x = _first_tensor(args)
        self.stack.append(Call(path, module, self._counts[path], input_shape=None if x is None else tuple(x.shape)))

    def _post(self, module, output):
        call = self.stack.pop()
        out = _first_tensor(output)
        if out is not None:
            call.output_shape = tuple(out.shape)
            call.field = self.tracker.get(out)
        if isinstance(output, (dict, list, tuple)) and not isinstance(output, torch.Tensor):
            items = output.items() if isinstance(output, dict) else enumerate(output)
            call.levels = [(str(k), tuple(v.shape), self.tracker.get(v)) for k, v in items
                           if isinstance(v, torch.Tensor)]
        call.order = len(self.calls)
        self.calls.append(call)

    # -- every op -------------------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = fast_meta.call(func, args, kwargs) if self.meta else func(*args, **kwargs)
        for a in args:
            if id(a) in self.param_ids:
                self.used_params.add(id(a))
        packet = func._overloadpacket
        name = self._names.get(packet)
        if name is None:
            name = self._names[packet] = packet.__name__
        if packet in FLOP_FORMULAS:
            fl = flops_of(packet, args, kwargs, out)
            if self.stack:
                call = self.stack[-1]
                call.flops += fl
                call.macs += fl // 2
            else:
                self.root_macs += fl // 2
        elif name not in _NO_MACS:
            self.uncounted[name] += 1
        if self.stack:
            self.stack[-1].own_ops += 1
        self.flow.op(name, args, out)
        try:
            if packet in _QUANTIZED_AS_ATEN:
                name, args = _QUANTIZED_AS_ATEN[packet](args)
            self.tracker.propagate(name, args, kwargs, out)
        except Exception:  # a rule that does not fit this op: lose the layout here, keep analysing
            self.rf_errors[name] += 1
            for t in _tensors(out):
                f = next((self.tracker.get(a) for a in args if isinstance(a, torch.Tensor)
                          and self.tracker.get(a) is not None), None)
                if f is not None:
                    self.tracker.set(t, f.with_(dims=None))
        return out


def _quantized_conv_args(args):
    qx, packed = args[0], args[1]
    weight, bias = packed.unpack()
    return "convolution", (qx, weight, bias, packed.stride(), packed.padding(), packed.dilation(),
                           bool(packed.transpose()), packed.output_padding(), packed.groups())


def _quantized_linear_args(args):
    out_features, in_features = args[1].unpack()[0].shape  # a per-channel int8 weight cannot be transposed
    return "mm", (args[0], torch.empty(in_features, out_features, device="meta"))


# int8 ops (torch.ao.nn.quantized) told to the receptive-field tracker as the float aten op they compute.
_QUANTIZED_AS_ATEN = {}
for _n in ("conv1d", "conv2d", "conv3d", "conv1d_relu", "conv2d_relu", "conv3d_relu", "conv_transpose1d",
           "conv_transpose2d", "conv_transpose3d"):
    if hasattr(torch.ops.quantized, _n):
        _QUANTIZED_AS_ATEN[getattr(torch.ops.quantized, _n)] = _quantized_conv_args
for _n in ("linear", "linear_relu"):
    if hasattr(torch.ops.quantized, _n):
        _QUANTIZED_AS_ATEN[getattr(torch.ops.quantized, _n)] = _quantized_linear_args
for _n, _aten in (("add", "add"), ("add_relu", "add"), ("mul", "mul"),
                  ("add_scalar", "add"), ("mul_scalar", "mul"), ("cat", "cat"), ("cat_relu", "cat"),
                  ("hardswish", "hardswish"), ("sigmoid", "sigmoid"), ("relu6", "relu")):
    if hasattr(torch.ops.quantized, _n):
        _QUANTIZED_AS_ATEN[getattr(torch.ops.quantized, _n)] = lambda args, _aten=_aten: (_aten, args)
_QUANTIZED_AS_ATEN[torch.ops.aten.quantized_max_pool2d] = lambda args: ("max_pool2d", args)
for _n in ("quantize_per_tensor", "dequantize", "quantize_per_channel"):
    _QUANTIZED_AS_ATEN[getattr(torch.ops.aten, _n)] = lambda args: ("clone", args)


def _tracked(rec: "Recorder", module: nn.Module, forward):
    def forward_tracked(*args, **kwargs):
        if not rec.active:
            return forward(*args, **kwargs)
        rec._pre(module, args)
        rec.flow.enter(rec.stack[-1].path, rec.stack[-1].index, module, args, kwargs)
        out = forward(*args, **kwargs)
        rec.flow.exit(out)
        rec._post(module, out)
        return out

    return forward_tracked


def _tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for t in out if isinstance(t, torch.Tensor)]
    return []


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (list, tuple)):
        for o in out:
            t = _first_tensor(o)
            if t is not None:
                return t
    if isinstance(out, dict):
        for o in out.values():
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


class SavedTensorMeter:
    """Bytes autograd keeps for the backward pass, each storage once, parameters and buffers excluded."""

    def __init__(self, model: nn.Module):
        self.exclude = {t.untyped_storage()._cdata for t in list(model.parameters()) + list(model.buffers())}
        self.seen: dict[int, int] = {}
        self._alive = []

    def pack(self, t: torch.Tensor):
        st = t.untyped_storage()
        key = st._cdata
        if key not in self.exclude and key not in self.seen:
            self.seen[key] = st.nbytes()
            self._alive.append(t)
        return t

    @staticmethod
    def unpack(t):
        return t

    @property
    def total(self) -> int:
        return sum(self.seen.values())
