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


# int8 quantized modules (torch.ao.nn.quantized) call `quantized::` ops whose weight is a packed C++ object that
# torch's table has no formula for. Same convention as the float ops: MACs of the convolution / matmul, read
# from the unpacked weight's shape.
def _quantized_conv(qx, packed, *args, out_val=None, **kwargs):
    weight, _ = packed.unpack()
    return _fc.conv_flop_count(tuple(qx.shape), tuple(weight.shape), tuple(out_val.shape),
                               transposed=bool(packed.transpose()))


def _quantized_linear(x, packed, *args, out_val=None, **kwargs):
    weight, _ = packed.unpack()
    rows = x.numel() // x.shape[-1]
    return 2 * rows * weight.shape[0] * weight.shape[1]


_QUANTIZED = {name: _quantized_conv for name in (
    "conv1d", "conv2d", "conv3d", "conv1d_relu", "conv2d_relu", "conv3d_relu", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d")}
_QUANTIZED.update({name: _quantized_linear for name in (
    "linear", "linear_relu", "linear_dynamic", "linear_relu_dynamic", "linear_dynamic_fp16",
    "linear_relu_dynamic_fp16", "linear_leaky_relu", "linear_tanh")})
for _name, _fn in _QUANTIZED.items():
    _op = getattr(torch.ops.quantized, _name, None)
    if _op is not None:
        FLOP_FORMULAS[_op] = _fn
