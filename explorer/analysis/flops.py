"""FLOP formulas per aten op: torch's own `FlopCounterMode` table, plus the CPU attention kernels it lacks.

`torch.utils.flop_counter.flop_registry` is the per-op handler table `FlopCounterMode` uses (FLOPs = 2 × MACs);
on the meta device it reproduces torchvision's published `_ops` for every classification model. Attention run
for real on the CPU dispatches to kernels that table does not know, so we add them here with the same formula.
"""
from __future__ import annotations

import torch
from torch.utils import flop_counter as _fc

aten = torch.ops.aten


def _sdpa_cpu(query, key, value, *args, out_val=None, **kwargs):
    return _fc.sdpa_flop_count(query.shape, key.shape, value.shape)


def _native_mha(query, key, value, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight, proj_bias,
                *args, out_val=None, **kwargs):
    # In-projection of q, k, v, attention per head, out-projection: the same work nn.MultiheadAttention's
    # slow path spells out as linear + sdpa ops.
    b, lq, e = query.shape
    lk = key.shape[1]
    proj = 2 * b * e * e * (lq + 2 * lk)
    hd = e // num_head
    attn = _fc.sdpa_flop_count((b, num_head, lq, hd), (b, num_head, lk, hd), (b, num_head, lk, hd))
    out = 2 * b * lq * e * e
    return proj + attn + out


FLOP_FORMULAS = dict(_fc.flop_registry)
_EXTRA = {
    "_scaled_dot_product_flash_attention_for_cpu": _sdpa_cpu,
    "_scaled_dot_product_fused_attention_overrideable": _sdpa_cpu,
    "_native_multi_head_attention": _native_mha,
}
for _name, _fn in _EXTRA.items():
    _op = getattr(aten, _name, None)
    if _op is not None:
        FLOP_FORMULAS[_op] = _fn


def flops_of(packet, args, kwargs, out) -> int:
    fn = FLOP_FORMULAS[packet]
    return int(fn(*args, **kwargs, out_val=out))
