"""Receptive fields on the traced op graph (aten level), through branches, gates and reshapes.

No library does this on a graph with branches (torchscan and the rf calculators only walk a chain), so we do it
here and cross-check it against gradient support in the tests.

Every tensor produced during the traced forward gets a `Field`:

* per spatial axis an `Axis(r, j, s)`: a unit at index i of this tensor sees input pixels
  ``[s + i*j, s + i*j + r - 1]`` (size r, jump j, start s; ``-s`` is the effective padding);
* a layout: for each tensor dim the atoms it is made of, ``(label, size)`` with label ``"h"``, ``"w"`` or
  ``None``; a view that merges or splits dims re-factorises the atoms, so permutes, flattens and
  channels-last detours (ConvNeXt) keep their spatial axes. A layout we cannot follow becomes ``None`` (lost);
* ``glob``: some unit of the input anywhere can influence every output unit (global pooling, SE gates,
  flatten → linear, attention). The convolutional-path field stays in ``h`` / ``w`` beside it.

Conv or pool with kernel k, stride s, dilation d, padding p: k' = d(k-1)+1, r' = r + (k'-1)j, j' = js,
start' = start - p·j. Where branches meet (add, mul, cat) the fields are united. Upsampling divides the jump.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

Atom = tuple  # (label, size)
Layout = Optional[tuple]  # tuple over dims of tuple of atoms; None = lost


def _num(x):
    """Keep exact fractions but hand out ints where they are whole."""
    if isinstance(x, Fraction) and x.denominator == 1:
        return int(x)
    return x


@dataclass(frozen=True)
class Axis:
    r: object  # size in input pixels
    j: object  # jump: input pixels between neighbouring units
    s: object  # start of unit 0's field (negative: effective padding)

    def conv(self, k, stride, pad, dil):
        ke = dil * (k - 1) + 1
        return Axis(_num(self.r + (ke - 1) * self.j), _num(self.j * stride), _num(self.s - pad * self.j))

    def transposed(self, k, stride, pad, dil):
        # Output unit o reads input units i with i*stride - pad + t*dil = o for some tap t: for unit 0 that is
        # i from ceil((pad - (k'-1)) / stride) to floor(pad / stride). Neighbouring units step by j / stride.
        ke = dil * (k - 1) + 1
        lo = -((ke - 1 - pad) // stride)
        hi = pad // stride
        return Axis(_num(self.r + (hi - lo) * self.j), _num(Fraction(self.j) / stride), _num(self.s + lo * self.j))

    def resample(self, scale, extra_units=0, shift=0):
        """Upsampling by ``scale``: the jump divides; bilinear reads one more input unit."""
        j = Fraction(self.j) / scale
        return Axis(_num(self.r + extra_units * self.j), _num(j), _num(self.s + shift * self.j))

    def union(self, other: "Axis") -> "Axis":
        s = min(self.s, other.s)
        e = max(self.s + self.r, other.s + other.r)
        return Axis(_num(e - s), _num(min(self.j, other.j)), _num(s))

    @property
    def centre(self):
        if isinstance(self.r, int) and (self.r - 1) % 2 == 0:
            return self.s + (self.r - 1) // 2
        return _num(self.s + Fraction(self.r - 1) / 2)


@dataclass(frozen=True)
class Field:
    dims: Layout
    h: Axis
    w: Axis
    glob: bool = False

    def with_(self, **kw) -> "Field":
        d = dict(dims=self.dims, h=self.h, w=self.w, glob=self.glob)
        d.update(kw)
        return Field(**d)


def input_field(shape) -> Field:
    """The field of the network input: each pixel sees itself. Layout (N, C, H, W) or (N, C, W)."""
    dims = [((None, shape[0]),), ((None, shape[1]),)]
    if len(shape) == 4:
        dims += [(("h", shape[2]),), (("w", shape[3]),)]
    elif len(shape) == 3:
        dims += [(("w", shape[2]),)]
    else:
        return Field(None, Axis(1, 1, 0), Axis(1, 1, 0))
    return Field(tuple(dims), Axis(1, 1, 0), Axis(1, 1, 0))


def _fresh_dims(shape, spatial: tuple[str, ...]):
    n_sp = len(spatial)
    dims = [((None, d),) for d in shape[: len(shape) - n_sp]]
    dims += [((lab, d),) for lab, d in zip(spatial, shape[len(shape) - n_sp:])]
    return tuple(dims)


def _labels(dim) -> tuple:
    return tuple(a[0] for a in dim if a[0] is not None and a[1] != 1)


def _spatial_axes(f: Field, ndim: int):
    """('h','w') or ('w',) when the last dims are exactly the spatial axes (N, C, H, W layout), else None."""
    if f.dims is None or len(f.dims) != ndim:
        return None
    if ndim == 4 and _labels(f.dims[2]) in (("h",), ()) and _labels(f.dims[3]) in (("w",), ()) \
            and not any(_labels(d) for d in f.dims[:2]):
        return ("h", "w")
    if ndim == 3 and _labels(f.dims[2]) in (("w",), ()) and not any(_labels(d) for d in f.dims[:2]):
        return ("w",)
    return None


def _has_spatial(dim) -> bool:
    return bool(_labels(dim))


def _flat_atoms(dims):
    return [a for d in dims for a in d if a[1] != 1]


def refactor(dims, out_shape) -> Layout:
    """Re-factorise a layout for a view/reshape to ``out_shape``; None when a spatial axis would be split."""
    if dims is None:
        return None
    atoms = _flat_atoms(dims)
    out = []
    for size in out_shape:
        if size == 1:
            out.append(())
            continue
        taken, prod = [], 1
        while prod < size:
            if not atoms:
                return None
            lab, a = atoms.pop(0)
            if size % (prod * a) == 0:
                taken.append((lab, a))
                prod *= a
            elif lab is None and size % prod == 0 and a % (size // prod) == 0:
                need = size // prod
                taken.append((None, need))
                atoms.insert(0, (None, a // need))
                prod *= need
            else:
                return None  # a spatial axis is split (e.g. into windows): not followed
        if prod != size:
            return None
        out.append(tuple(taken))
    if atoms:
        return None
    return tuple(out)


def _spatial_size(dims, label):
    for d in dims or ():
        for lab, a in d:
            if lab == label:
                return a
    return 1


class FieldTracker:
    """Propagates `Field`s op by op. ``propagate`` is called from the dispatch recorder."""

    def __init__(self):
        self.fields: dict[int, Field] = {}
        self._alive = []  # keep traced tensors alive so their ids stay unique during the run
        self.assumed_pointwise: dict[str, int] = {}
        self.lost_at: dict[str, int] = {}  # ops where a spatial layout could not be followed

    # -- bookkeeping -------------------------------------------------------------------------------------
    def set(self, t, f: Field):
        self.fields[id(t)] = f
        self._alive.append(t)

    def get(self, t) -> Optional[Field]:
        return self.fields.get(id(t))

    # -- combination ---------------------------------------------------------------------------------------
    def _pointwise(self, out, inputs):
        """Elementwise ops with broadcasting: unite fields of inputs aligned with the output; a broadcast input
        whose spatial axes collapsed to 1 (an SE-style gate) only passes on its globality."""
        fields = [(t, self.get(t)) for t in inputs]
        fields = [(t, f) for t, f in fields if f is not None]
        if not fields:
            return None
        oshape = tuple(out.shape)
        primary = None
        for t, f in fields:
            if tuple(t.shape) == oshape and f.dims is not None:
                primary = f
                break
        if primary is None:
            for t, f in fields:
                if tuple(t.shape) == oshape:
                    primary = f
                    break
        glob = any(f.glob for _, f in fields)
        if primary is None:
            # Output bigger than every input with a field: broadcast from a collapsed map, or unknown.
            base = fields[0][1]
            return base.with_(dims=None, glob=glob)
        h, w = primary.h, primary.w
        psz = (_spatial_size(primary.dims, "h"), _spatial_size(primary.dims, "w"))
        for t, f in fields:
            if f is primary:
                continue
            fsz = (_spatial_size(f.dims, "h"), _spatial_size(f.dims, "w"))
            if f.dims is not None and fsz != psz and fsz == (1, 1):
                continue  # a gate: contributes globality only
            h, w = h.union(f.h), w.union(f.w)
        return Field(primary.dims, h, w, glob)

    # -- the op table ----------------------------------------------------------------------------------------
    def propagate(self, name: str, args, kwargs, out):
        tensors_in = [a for a in args if _is_tensor(a)]
        for a in args:
            if isinstance(a, (list, tuple)):
                tensors_in += [x for x in a if _is_tensor(x)]
        if not any(id(t) in self.fields for t in tensors_in):
            return
        if name in _NO_FIELD:
            return
        handler = _HANDLERS.get(name)
        if handler is not None:
            res = handler(self, args, kwargs, out)
        elif name in _POINTWISE:
            res = self._pointwise(_first_tensor(out), tensors_in)
        elif name in _VIEWS:
            f = self.get(args[0])
            res = None if f is None else f.with_(dims=refactor(f.dims, _first_tensor(out).shape))
        else:
            res = self._unknown(name, tensors_in, out)
        if res is None:
            return
        if isinstance(res, Field) and res.dims is None and not res.glob:
            if any((f := self.get(t)) is not None and f.dims is not None for t in tensors_in):
                self.lost_at[name] = self.lost_at.get(name, 0) + 1
        if isinstance(res, list):
            for t, f in res:
                self.set(t, f)
        else:
            for t in _tensors(out):
                self.set(t, res)

    def _unknown(self, name, tensors_in, out):
        o = _first_tensor(out)
        if o is None:
            return None
        # No rule of its own: said in the analysis notes. Same shape in and out is taken as elementwise;
        # otherwise the field carries on but the layout is no longer followed.
        self.assumed_pointwise[name] = self.assumed_pointwise.get(name, 0) + 1
        if any(tuple(t.shape) == tuple(o.shape) for t in tensors_in):
            return self._pointwise(o, tensors_in)
        f = next(self.get(t) for t in tensors_in if self.get(t) is not None)
        return f.with_(dims=None)


def _is_tensor(x) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


def _tensors(out):
    if _is_tensor(out):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for t in out if _is_tensor(t)]
    return []


def _first_tensor(out):
    ts = _tensors(out)
    return ts[0] if ts else None


def _pair(v, n=2):
    if isinstance(v, int):
        return (v,) * n
    v = list(v)
    if len(v) == 1:
        return tuple(v) * n
    return tuple(v)


def _window(tr: FieldTracker, x, out, kernel, stride, pad, dil, transposed=False):
    f = tr.get(x)
    if f is None:
        return None
    axes = _spatial_axes(f, x.dim())
    if axes is None:
        return f.with_(dims=None, glob=f.glob)
    n = len(axes)
    kernel, stride, pad, dil = (_pair(v, n) for v in (kernel, stride, pad, dil))
    new = {"h": f.h, "w": f.w}
    for i, lab in enumerate(axes):
        ax = new[lab]
        new[lab] = (ax.transposed if transposed else ax.conv)(kernel[i], stride[i], pad[i], dil[i])
    return Field(_fresh_dims(tuple(out.shape), axes), new["h"], new["w"], f.glob)


def _conv(tr, args, kwargs, out):
    x, w = args[0], args[1]
    stride, pad, dil = args[3], args[4], args[5]
    transposed = bool(args[6]) if len(args) > 6 else False
    return _window(tr, x, out, tuple(w.shape[2:]), stride, pad, dil, transposed)


def _pool(tr, args, kwargs, out):
    x, kernel = args[0], args[1]
    stride = args[2] if len(args) > 2 and args[2] else kernel
    pad = args[3] if len(args) > 3 else 0
    dil = args[4] if len(args) > 4 and not isinstance(args[4], bool) else 1
    return _window(tr, x, _first_tensor(out), kernel, stride, pad, dil)


def _avg_pool(tr, args, kwargs, out):
    x, kernel = args[0], args[1]
    stride = args[2] if len(args) > 2 and args[2] else kernel
    pad = args[3] if len(args) > 3 else 0
    return _window(tr, x, out, kernel, stride, pad, 1)


def _pool3d(tr, args, kwargs, out):
    """3-D pooling over (D, H, W). LocalResponseNorm uses it over channels (D) with a 1×1 spatial window."""
    x, kernel = args[0], _pair(args[1], 3)
    stride = _pair(args[2], 3) if len(args) > 2 and args[2] else kernel
    pad = _pair(args[3], 3) if len(args) > 3 else (0, 0, 0)
    f = tr.get(x)
    if f.dims is None or x.dim() != 5 or _has_spatial(f.dims[2]) or _labels(f.dims[3]) not in (("h",), ()) \
            or _labels(f.dims[4]) not in (("w",), ()):
        return f.with_(dims=None)
    h = f.h.conv(kernel[1], stride[1], pad[1], 1)
    w = f.w.conv(kernel[2], stride[2], pad[2], 1)
    return Field(_fresh_dims(tuple(out.shape), ("h", "w")), h, w, f.glob)


def _adaptive_pool(tr, args, kwargs, out):
    x = args[0]
    f = tr.get(x)
    o = _first_tensor(out)
    axes = _spatial_axes(f, x.dim())
    if axes is None:
        return f.with_(dims=None)
    n = len(axes)
    in_sz, out_sz = tuple(x.shape[-n:]), tuple(o.shape[-n:])
    if all(s == 1 for s in out_sz) and in_sz != out_sz:
        return Field(_fresh_dims(tuple(o.shape), axes), f.h, f.w, True)
    new = {"h": f.h, "w": f.w}
    for i, lab in enumerate(axes):
        a, b = in_sz[i], out_sz[i]
        if a == b:
            continue
        # Bins of size ceil(a/b) (the largest), starting every a/b units.
        k = -(-a // b)
        ax = new[lab]
        new[lab] = Axis(_num(ax.r + (k - 1) * ax.j), _num(Fraction(a, b) * ax.j), ax.s)
    return Field(_fresh_dims(tuple(o.shape), axes), new["h"], new["w"], f.glob)


def _upsample(bilinear: bool):
    def handler(tr, args, kwargs, out):
        x = args[0]
        f = tr.get(x)
        axes = _spatial_axes(f, x.dim())
        if axes is None:
            return f.with_(dims=None)
        n = len(axes)
        new = {"h": f.h, "w": f.w}
        for i, lab in enumerate(axes):
            a, b = x.shape[-n + i], out.shape[-n + i]
            scale = Fraction(b, a)
            if bilinear:
                # Output unit o samples at (o + 1/2)/scale - 1/2: two neighbouring input units.
                new[lab] = new[lab].resample(scale, extra_units=1, shift=Fraction(1, 2) / scale - 1)
            else:
                new[lab] = new[lab].resample(scale)
        return Field(_fresh_dims(tuple(out.shape), axes), new["h"], new["w"], f.glob)

    return handler


def _reduce(tr, args, kwargs, out):
    """mean / sum / amax over dims: reducing a spatial axis makes the field global."""
    x = args[0]
    f = tr.get(x)
    dims_arg = args[1] if len(args) > 1 else kwargs.get("dim")
    keep = args[2] if len(args) > 2 and isinstance(args[2], bool) else kwargs.get("keepdim", False)
    nd = x.dim()
    if dims_arg is None or (isinstance(dims_arg, (list, tuple)) and len(dims_arg) == 0):
        red = set(range(nd))
    else:
        red = {d % nd for d in _pair(dims_arg, 1)} if not isinstance(dims_arg, int) else {dims_arg % nd}
    if f.dims is None:
        return f.with_(glob=True)
    spatial = any(_has_spatial(f.dims[d]) for d in red)
    if keep:
        dims = tuple(() if i in red else d for i, d in enumerate(f.dims))
    else:
        dims = tuple(d for i, d in enumerate(f.dims) if i not in red)
    return Field(dims, f.h, f.w, f.glob or spatial)


def _permute(tr, args, kwargs, out):
    f = tr.get(args[0])
    if f.dims is None:
        return f
    perm = [p % len(f.dims) for p in args[1]]
    return f.with_(dims=tuple(f.dims[p] for p in perm))


def _transpose(tr, args, kwargs, out):
    f = tr.get(args[0])
    if f.dims is None:
        return f
    nd = len(f.dims)
    a, b = (args[1] % nd, args[2] % nd) if len(args) > 2 else (0, 1)
    dims = list(f.dims)
    dims[a], dims[b] = dims[b], dims[a]
    return f.with_(dims=tuple(dims))


def _cat(tr, args, kwargs, out):
    tensors = [t for t in args[0] if _is_tensor(t)]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    fields = [tr.get(t) for t in tensors]
    known = [f for f in fields if f is not None]
    if not known:
        return None
    base = known[0]
    nd = out.dim()
    d = dim % nd
    glob = any(f.glob for f in known)
    h, w = base.h, base.w
    for f in known[1:]:
        h, w = h.union(f.h), w.union(f.w)
    if base.dims is None or any(f.dims is None for f in known) or _has_spatial(base.dims[d]):
        return Field(None, h, w, glob)  # concatenating along a spatial axis (ViT's class token): not followed
    dims = list(base.dims)
    dims[d] = ((None, out.shape[d]),)
    return Field(tuple(dims), h, w, glob)


def _split(tr, args, kwargs, out):
    """split / chunk / unbind: pieces along a channel axis keep the layout; along a spatial axis it is lost."""
    x = args[0]
    f = tr.get(x)
    outs = _tensors(out)
    if f.dims is None:
        return [(t, f) for t in outs]
    nd = len(f.dims)
    d = (args[1] if len(args) > 1 and isinstance(args[1], int) else kwargs.get("dim", 0)) % nd
    if len(args) > 2 and isinstance(args[2], int):
        d = args[2] % nd  # split(self, split_size, dim)
    res = []
    for t in outs:
        if _has_spatial(f.dims[d]):
            res.append((t, f.with_(dims=None)))
        elif t.dim() < nd:  # unbind removes the dim
            res.append((t, f.with_(dims=f.dims[:d] + f.dims[d + 1:])))
        else:
            dims = list(f.dims)
            dims[d] = ((None, t.shape[d]),) if t.shape[d] != 1 else ()
            res.append((t, f.with_(dims=tuple(dims))))
    return res


def _layer_norm(tr, args, kwargs, out):
    """LayerNorm normalises over the last dims: pointwise over channels, global if a spatial axis is among them."""
    x = args[0]
    f = tr.get(x)
    n = len(args[1])
    spatial = f.dims is None or any(_has_spatial(d) for d in f.dims[-n:])
    return [(t, f.with_(glob=f.glob or spatial)) for t in _tensors(out)[:1]]


def _slice(tr, args, kwargs, out):
    f = tr.get(args[0])
    if f.dims is None:
        return f
    nd = len(f.dims)
    d = (args[1] if len(args) > 1 else 0) % nd
    if _has_spatial(f.dims[d]):
        return f.with_(dims=None) if out.shape[d] != args[0].shape[d] else f
    dims = list(f.dims)
    dims[d] = ((None, out.shape[d]),) if out.shape[d] != 1 else ()
    return f.with_(dims=tuple(dims))


def _select(tr, args, kwargs, out):
    f = tr.get(args[0])
    if f.dims is None:
        return f
    d = args[1] % len(f.dims)
    if _has_spatial(f.dims[d]):
        return f.with_(dims=None)
    return f.with_(dims=f.dims[:d] + f.dims[d + 1:])


def _unsqueeze(tr, args, kwargs, out):
    f = tr.get(args[0])
    if f.dims is None:
        return f
    d = args[1] % (len(f.dims) + 1)
    return f.with_(dims=f.dims[:d] + ((),) + f.dims[d:])


def _matmul(contract_a: int, contract_b: int, a_idx: int, b_idx: int):
    """mm / addmm / bmm / baddbmm: contracting over a spatial axis (flatten → linear, attention) is global."""

    def handler(tr, args, kwargs, out):
        a, b = args[a_idx], args[b_idx]
        fa, fb = tr.get(a), tr.get(b)
        known = [f for f in (fa, fb) if f is not None]
        h, w = known[0].h, known[0].w
        for f in known[1:]:
            h, w = h.union(f.h), w.union(f.w)
        glob = any(f.glob for f in known)
        if any(f.dims is None for f in known):
            # Mixing over a dim we could not follow (tokens after a window split or a class token): global.
            return Field(None, h, w, True)
        mixes = (fa is not None and _has_spatial(fa.dims[contract_a])) or \
                (fb is not None and _has_spatial(fb.dims[contract_b]))
        if mixes:
            return Field(_fresh_dims(tuple(out.shape), ()), h, w, True)
        rows = fa.dims[-2] if fa is not None else ((None, out.shape[-2]),)
        cols = fb.dims[-1] if fb is not None else ((None, out.shape[-1]),)
        if fa is not None and fb is None:
            cols = ((None, out.shape[-1]),)
        if fb is not None and fa is None:
            rows = ((None, out.shape[-2]),)
        lead = (fa or fb).dims[:-2]
        return Field(tuple(lead) + (rows, cols), h, w, glob)

    return handler


def _attention(tr, args, kwargs, out):
    """Scaled dot-product / multi-head attention: every token sees every other token."""
    q = args[0]
    f = tr.get(q) or next((tr.get(a) for a in args if _is_tensor(a) and tr.get(a)), None)
    if f is None:
        return None
    o = _first_tensor(out)
    return [(o, f.with_(glob=True, dims=f.dims if tuple(o.shape) == tuple(q.shape) else None))]


def _vector_norm(tr, args, kwargs, out):
    # linalg_vector_norm(self, ord, dim, keepdim): a reduction like mean/sum with the dims one place later.
    dim = args[2] if len(args) > 2 else kwargs.get("dim")
    keep = args[3] if len(args) > 3 else kwargs.get("keepdim", False)
    return _reduce(tr, (args[0], dim, keep), {}, out)


def _pad(tr, args, kwargs, out):
    """constant_pad_nd(self, pad): zeros around the map shift unit 0's field outwards."""
    x, pad = args[0], list(args[1])
    f = tr.get(x)
    axes = _spatial_axes(f, x.dim())
    if axes is None:
        return f.with_(dims=None) if len(pad) > 2 * 0 and _pads_spatial(f, pad, x.dim()) else f
    new = {"h": f.h, "w": f.w}
    # pad lists (before, after) pairs from the last dim backwards
    for i, lab in enumerate(reversed(axes)):
        if 2 * i < len(pad):
            ax = new[lab]
            new[lab] = Axis(ax.r, ax.j, _num(ax.s - pad[2 * i] * ax.j))
    return Field(_fresh_dims(tuple(out.shape), axes), new["h"], new["w"], f.glob)


def _pads_spatial(f: Field, pad, ndim) -> bool:
    if f.dims is None:
        return True
    for i in range(len(pad) // 2):
        if (pad[2 * i] or pad[2 * i + 1]) and _has_spatial(f.dims[ndim - 1 - i]):
            return True
    return False


def _roll(tr, args, kwargs, out):
    # A cyclic shift of a spatial axis wraps positions around: the layout is no longer one grid.
    f = tr.get(args[0])
    dims = args[2] if len(args) > 2 else kwargs.get("dims", ())
    dims = [dims] if isinstance(dims, int) else list(dims)
    if f.dims is None or not dims or any(_has_spatial(f.dims[d % len(f.dims)]) for d in dims):
        return f.with_(dims=None)
    return f


def _group_norm(tr, args, kwargs, out):
    # Statistics over channels *and* space: every output unit depends on the whole map.
    f = tr.get(args[0])
    return [(_first_tensor(out), f.with_(glob=True))]


_HANDLERS = {
    "convolution": _conv, "_convolution": _conv, "convolution_overrideable": _conv,
    "max_pool2d_with_indices": _pool, "max_pool2d": _pool, "max_pool1d": _pool,
    "max_pool1d_with_indices": _pool, "avg_pool2d": _avg_pool, "avg_pool1d": _avg_pool,
    "avg_pool3d": _pool3d, "max_pool3d_with_indices": _pool3d,
    "_adaptive_avg_pool2d": _adaptive_pool, "adaptive_max_pool2d": _adaptive_pool,
    "adaptive_avg_pool1d": _adaptive_pool, "adaptive_max_pool1d": _adaptive_pool,
    "upsample_nearest2d": _upsample(False), "_upsample_nearest_exact2d": _upsample(False),
    "upsample_bilinear2d": _upsample(True), "_upsample_bilinear2d_aa": _upsample(True),
    "upsample_bicubic2d": _upsample(True), "max_unpool2d": _upsample(False),
    "mean": _reduce, "sum": _reduce, "amax": _reduce, "amin": _reduce, "max": _reduce, "std": _reduce,
    "var": _reduce, "var_mean": _reduce, "logsumexp": _reduce,
    "permute": _permute, "transpose": _transpose, "t": _transpose,
    "cat": _cat, "split": _split, "split_with_sizes": _split, "chunk": _split, "unbind": _split,
    "slice": _slice, "select": _select, "unsqueeze": _unsqueeze,
    "mm": _matmul(1, 0, 0, 1), "addmm": _matmul(1, 0, 1, 2),
    "bmm": _matmul(2, 1, 0, 1), "baddbmm": _matmul(2, 1, 1, 2),
    "_scaled_dot_product_flash_attention_for_cpu": _attention,
    "_scaled_dot_product_flash_attention": _attention, "_scaled_dot_product_efficient_attention": _attention,
    "_scaled_dot_product_cudnn_attention": _attention, "_native_multi_head_attention": _attention,
    "native_group_norm": _group_norm, "native_layer_norm": _layer_norm,
    "linalg_vector_norm": _vector_norm, "constant_pad_nd": _pad, "roll": _roll,
}

# Outputs that do not depend on the input's values: no field.
_NO_FIELD = {"new_zeros", "new_empty", "new_ones", "new_full", "zeros_like", "empty_like", "ones_like",
             "full_like", "new_empty_strided", "arange", "scalar_tensor", "sym_size", "sym_stride"}

_VIEWS = {"view", "_unsafe_view", "reshape", "expand", "squeeze", "alias", "flatten", "_reshape_alias",
          "as_strided", "as_strided_", "view_as", "lift_fresh"}

_POINTWISE = {
    "add", "sub", "mul", "div", "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "sigmoid", "tanh", "gelu",
    "silu", "silu_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "leaky_relu", "elu", "clamp",
    "clamp_min", "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional", "batch_norm", "native_dropout", "dropout",
    "clone", "contiguous", "_to_copy", "copy", "copy_", "detach", "neg", "exp", "log", "sqrt", "rsqrt", "pow",
    "abs", "softmax", "_softmax", "log_softmax", "_log_softmax", "where", "mish", "softplus", "add_", "mul_",
    "div_", "sub_", "bernoulli_", "bernoulli", "addcmul", "_safe_softmax", "addcdiv", "lerp", "maximum", "minimum", "erf", "_local_scalar_dense", "masked_fill",
    "rsub", "reciprocal", "sign", "floor", "ceil", "round", "logical_not", "eq", "ne", "lt", "gt", "le", "ge",
    "native_dropout_backward", "threshold", "threshold_", "glu", "prelu", "_prelu_kernel", "rms_norm",
    "_fused_rms_norm", "channel_shuffle", "native_channel_shuffle", "hardswish_backward",
}
