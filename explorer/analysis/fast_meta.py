"""Skip repeated meta kernels: the same op on the same shapes always gives the same output metadata.

Many meta kernels are written in Python (BatchNorm's takes ~1 ms), and a network repeats the same op on the
same shapes block after block. For ops that neither alias nor mutate their inputs we remember the output
metadata (shape, stride, dtype) per input signature and afterwards create empty meta tensors directly.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_cache: dict = {}
_cacheable: dict = {}
_MAX = 200_000


def _is_cacheable(func) -> bool:
    ok = _cacheable.get(func)
    if ok is None:
        schema = func._schema
        ok = not schema.is_mutable and all(r.alias_info is None and str(r.type) in ("Tensor", "List[Tensor]")
                                           for r in schema.returns)
        _cacheable[func] = ok
    return ok


def _arg_key(args) -> tuple:
    """A hashable signature of the arguments; TypeError for anything we should not cache on."""
    key = []
    for a in args:
        if isinstance(a, torch.Tensor):
            if not a.is_meta:
                raise TypeError("not a meta tensor")
            key.append((a.shape, a.stride(), a.dtype, a.storage_offset()))
        elif type(a) is list or type(a) is tuple:
            key.append(_arg_key(a))
        else:
            key.append(a)
    return tuple(key)


def _template(out):
    if isinstance(out, torch.Tensor):
        return ("T", tuple(out.shape), out.stride(), out.dtype)
    if isinstance(out, (list, tuple)):
        return ("L", type(out), tuple(_template(o) for o in out))
    return ("V", out)


def _make(t):
    kind = t[0]
    if kind == "T":
        return torch.empty_strided(t[1], t[2], dtype=t[3], device="meta")
    if kind == "L":
        items = [_make(x) for x in t[2]]
        return items if t[1] is list else tuple(items)
    return t[1]


def call(func, args, kwargs):
    """``func(*args, **kwargs)`` on meta tensors, from the cache where the same call was seen before."""
    if not _is_cacheable(func):
        return func(*args, **kwargs)
    try:
        key = (func, _arg_key(args), _arg_key(tuple(kwargs.values())) + tuple(kwargs) if kwargs else None)
        t = _cache.get(key)
    except TypeError:  # a real tensor or an unhashable argument
        return func(*args, **kwargs)
    if t is not None:
        return _make(t)
    out = func(*args, **kwargs)
    if len(_cache) < _MAX and _all_meta(out):
        _cache[key] = _template(out)
    return out


def _all_meta(out) -> bool:
    if isinstance(out, torch.Tensor):
        return out.is_meta
    if isinstance(out, (list, tuple)):
        return all(_all_meta(o) for o in out)
    return True


class FastMetaMode(TorchDispatchMode):
    """Only the cache, no recording: for the training-memory pass."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return call(func, args, kwargs or {})
