"""Build modules without allocating or initialising their weights.

`with torch.device("meta")` is the usual trick, but it also sends every *non-parameter* tensor created in
``__init__`` to the meta device, and some builders need real values there (torchvision's RegNet computes its
stage widths with tensors and calls ``.tolist()``). Here only parameters and buffers move to meta, the moment
they are registered, so the builder's own arithmetic still runs on the CPU. Initialisers called after
registration (``reset_parameters``, ``kaiming_normal_`` loops) then act on meta tensors and cost nothing.

The patch is installed on ``nn.Module`` while any thread is inside the context, but it only acts in threads that
asked for it (a thread-local flag), so a server thread building a real model at the same time is unaffected.
"""
from __future__ import annotations

import contextlib
import threading

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

_local = threading.local()
_lock = threading.Lock()
_users = 0
_orig_register_parameter = nn.Module.register_parameter
_orig_register_buffer = nn.Module.register_buffer


def _active() -> bool:
    return getattr(_local, "depth", 0) > 0


def _register_parameter(self, name, param):
    if param is not None and _active() and param.device.type != "meta":
        param = type(param)(param.to("meta"), requires_grad=param.requires_grad)
    _orig_register_parameter(self, name, param)


def _register_buffer(self, name, tensor, persistent=True):
    if tensor is not None and _active() and tensor.device.type != "meta":
        tensor = tensor.to("meta")
    _orig_register_buffer(self, name, tensor, persistent=persistent)


_INIT_FUNCS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
               "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
               "sparse_")
_orig_init = {n: getattr(nn.init, n) for n in _INIT_FUNCS if hasattr(nn.init, n)}


def _skip_on_meta(fn):
    def init(tensor, *args, **kwargs):
        if _active() and isinstance(tensor, torch.Tensor) and tensor.is_meta:
            return tensor  # nothing to initialise, and the fan-in arithmetic is not free
        return fn(tensor, *args, **kwargs)

    init.__wrapped__ = fn
    return init


_patched_init = {n: _skip_on_meta(f) for n, f in _orig_init.items()}


class _SkipInit(TorchDispatchMode):
    """Initialisers on meta tensors do nothing but still cost a Python meta kernel each (~1 ms for normal_):
    answer them directly. Other ops go through the shape cache."""

    _INIT = {"normal_", "uniform_", "fill_", "zero_", "bernoulli_", "exponential_", "random_", "copy_",
             "erfinv_", "clamp_", "mul_", "add_", "sub_", "div_", "trunc_", "log_normal_", "geometric_",
             "cauchy_"}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if args and isinstance(args[0], torch.Tensor) and args[0].is_meta \
                and func._overloadpacket.__name__ in self._INIT:
            return args[0]
        from .analysis import fast_meta

        return fast_meta.call(func, args, kwargs)


@contextlib.contextmanager
def meta_init():
    """Inside this context, parameters and buffers of new modules live on the meta device."""
    global _users
    with _lock:
        if _users == 0:
            nn.Module.register_parameter = _register_parameter
            nn.Module.register_buffer = _register_buffer
            for n, f in _patched_init.items():
                setattr(nn.init, n, f)
        _users += 1
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        with _SkipInit():
            yield
    finally:
        _local.depth -= 1
        with _lock:
            _users -= 1
            if _users == 0:
                nn.Module.register_parameter = _orig_register_parameter
                nn.Module.register_buffer = _orig_register_buffer
                for n, f in _orig_init.items():
                    setattr(nn.init, n, f)


def to_meta_copy(model: nn.Module) -> nn.Module:
    """A structural copy of ``model`` whose parameters and buffers are meta tensors.

    Only Python objects are copied; tied parameters stay tied (one meta tensor per original), and the
    original model is never touched, so a model shared between sessions can be analysed safely.
    """
    import copy

    memo = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)
