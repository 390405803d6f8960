"""Receptive fields on the traced op graph (aten level), through branches, gates, reshapes and upsampling.

No library does this on a graph with branches (torchscan and the rf calculators only walk a chain), so we do it
here and cross-check it against gradient support in the tests.

Every tensor produced during the traced forward gets a `Field`:

* per spatial axis an `Axis`: a quasi-periodic index map, exact for every unit. With period P (units), shift J
  (input pixels when the unit index grows by P) and per phase q < P the interval ``[lo0[q], hi0[q]]``, unit o
  sees input pixels ``[lo0[o mod P] + (o // P)·J, hi0[o mod P] + (o // P)·J]`` (unclipped: as if the input were
  unbounded; negative o extrapolates into the padding). A plain conv / pool chain keeps P = 1: the classic
  size r, jump j, start s. Nearest / bilinear upsampling, transposed convs and unpooling read input unit
  ⌊o/2⌋ (and neighbours): even and odd units differ, so P becomes 2 (or more);
* a layout: for each tensor dim the atoms it is made of, ``(label, size)`` with label ``"h"``, ``"w"`` or
  ``None``; a view that merges or splits dims re-factorises the atoms, so permutes, flattens and
  channels-last detours (ConvNeXt) keep their spatial axes. A layout we cannot follow becomes ``None`` (lost);
* ``glob``: some unit of the input anywhere can influence every output unit (global pooling, SE gates,
  flatten → linear, attention). The convolutional-path field stays in ``h`` / ``w`` beside it.

Every supported op is a quasi-periodic index relation: output unit o reads the input-unit set S(o), with
S(o + B) = S(o) + A (conv: B = 1, A = stride; nearest ×2: B = 2, A = 1). The new map has period
P' = B·P / gcd(A, P); each of its phases is the min / max over S(q) of the input map (`Axis.relate`). Where
branches meet (add, mul, cat) the maps are brought to a common period and united phase by phase.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from typing import Callable, Iterable, Optional

Atom = tuple  # (label, size)
Layout = Optional[tuple]  # tuple over dims of tuple of atoms; None = lost

# A map whose period grows beyond this (odd sizes resampled again and again) is coarsened to its average-jump
# period, each phase the union of the phases it stands for: a superset, said in the notes.
MAX_PERIOD = 4096


def _num(x):
    """Keep exact fractions but hand out ints where they are whole."""
    if isinstance(x, Fraction) and x.denominator == 1:
        return int(x)
    return x


def _lcm(a: int, b: int) -> int:
    return a * b // gcd(a, b)


@dataclass(frozen=True)
class Axis:
    """Quasi-periodic map unit index -> inclusive interval of input pixels (see the module docstring).

    A phase whose units read no input at all (a stride-2 transposed conv with a 1-wide kernel) has
    ``lo0[q] = hi0[q] = None``."""

    P: int = 1
    J: int = 1
    lo0: tuple = (0,)
    hi0: tuple = (0,)
    approx: bool = False  # a superset: coarsened, or a union of maps with different jumps

    # -- one unit ----------------------------------------------------------------------------------------------
    def unit(self, o: int):
        """(lo, hi): the inclusive input-pixel interval unit ``o`` sees (None where it sees nothing)."""
        k, q = divmod(o, self.P)
        lo = self.lo0[q]
        if lo is None:
            return None
        return lo + k * self.J, self.hi0[q] + k * self.J

    def sizes(self) -> tuple:
        """Field size per phase (0 where a phase sees nothing)."""
        return tuple(0 if lo is None else hi - lo + 1 for lo, hi in zip(self.lo0, self.hi0))

    def size_at(self, o: int) -> int:
        return self.sizes()[o % self.P]

    @property
    def uniform(self) -> bool:
        """Every unit sees the same size and neighbours step by the same jump (an affine map); maps are kept
        at their shortest period, so that is P = 1."""
        return self.reduced().P == 1 and self.lo0[0] is not None

    # -- the classic figures (exact for uniform maps; for others of unit 0, and the average jump) -------------
    @property
    def r(self) -> int:
        return self.size_at(0)

    @property
    def j(self):
        return _num(Fraction(self.J, self.P))

    @property
    def s(self):
        u = self.unit(0)
        return None if u is None else u[0]

    @property
    def centre(self):
        u = self.unit(0)
        if u is None:
            return None
        return _num(Fraction(u[0] + u[1], 2))

    def as_dict(self) -> dict:
        """Serialisable exact map."""
        return {"P": self.P, "J": self.J, "lo0": list(self.lo0), "hi0": list(self.hi0), "approx": self.approx}

    # -- index relations --------------------------------------------------------------------------------------
    def relate(self, reads: Callable[[int], Iterable[int]], B: int, A: int, approx: bool = False) -> "Axis":
        """The map of an op whose output unit o reads input units ``reads(o)``, with reads(o + B) = reads(o) + A."""
        g = gcd(A, self.P)
        m = self.P // g
        P2, J2 = B * m, (A // g) * self.J
        lo, hi = [], []
        for q in range(P2):
            units = [u for u in (self.unit(i) for i in reads(q)) if u is not None]
            lo.append(min(u[0] for u in units) if units else None)
            hi.append(max(u[1] for u in units) if units else None)
        return Axis(P2, J2, tuple(lo), tuple(hi), self.approx or approx).reduced()

    def conv(self, k, stride, pad, dil) -> "Axis":
        return self.relate(lambda o: range(o * stride - pad, o * stride - pad + dil * (k - 1) + 1, dil), 1, stride)

    def transposed(self, k, stride, pad, dil) -> "Axis":
        # Output o = i·stride − pad + t·dil: o reads every i that reaches it through some tap t.
        def reads(o):
            return [(o + pad - t * dil) // stride for t in range(k) if (o + pad - t * dil) % stride == 0]

        return self.relate(reads, stride, 1)

    def expand(self, P2: int) -> "Axis":
        """The same map written with period ``P2`` (a multiple of P)."""
        if P2 == self.P:
            return self
        reps = P2 // self.P
        lo = tuple(None if self.lo0[q % self.P] is None else self.lo0[q % self.P] + (q // self.P) * self.J
                   for q in range(P2))
        hi = tuple(None if self.hi0[q % self.P] is None else self.hi0[q % self.P] + (q // self.P) * self.J
                   for q in range(P2))
        return Axis(P2, self.J * reps, lo, hi, self.approx)

    def reduced(self) -> "Axis":
        """The shortest period that writes the same map (after ×2 up and stride 2 down, often 1 again);
        coarsened (a superset, ``approx``) when it would exceed MAX_PERIOD."""
        P = self.P
        if P > 1:
            for d in range(1, P):
                if P % d or (self.J * d) % P:
                    continue
                step = self.J * d // P
                if all(_shift(self.lo0[q + d], -step) == self.lo0[q] and _shift(self.hi0[q + d], -step) == self.hi0[q]
                       for q in range(P - d)):
                    return Axis(d, step, self.lo0[:d], self.hi0[:d], self.approx)
        if P > MAX_PERIOD:
            return self._coarsened()
        return self

    def _coarsened(self) -> "Axis":
        avg = Fraction(self.J, self.P)
        d = avg.denominator  # the shortest period that can carry the average jump
        step = avg.numerator
        lo, hi = [None] * d, [None] * d
        for q in range(self.P):
            if self.lo0[q] is None:
                continue
            k, p = divmod(q, d)
            a, b = self.lo0[q] - k * step, self.hi0[q] - k * step
            lo[p] = a if lo[p] is None else min(lo[p], a)
            hi[p] = b if hi[p] is None else max(hi[p], b)
        return Axis(d, step, tuple(lo), tuple(hi), True)

    def same_jump(self, other: "Axis") -> bool:
        return self.J * other.P == other.J * self.P

    def union(self, other: "Axis", n: Optional[int] = None) -> "Axis":
        """Phase by phase union at a common period. Different average jumps (two grids that no period
        reconciles): for the ``n`` units the tensor has, each unit's union, written as one long period with the
        smaller average jump, marked approximate (without ``n``: the first period only)."""
        if self == other:
            return self
        if not self.same_jump(other):
            a, b = (self, other) if Fraction(self.J, self.P) <= Fraction(other.J, other.P) else (other, self)
            P = a.P * n if n else _lcm(a.P, b.P)
            a = a.expand(P)
            lo = tuple(_min(a.lo0[q], (b.unit(q) or (None, None))[0]) for q in range(P))
            hi = tuple(_max(a.hi0[q], (b.unit(q) or (None, None))[1]) for q in range(P))
            return Axis(P, a.J, lo, hi, True).reduced()
        P = _lcm(self.P, other.P)
        a, b = self.expand(P), other.expand(P)
        return Axis(P, a.J, tuple(_min(x, y) for x, y in zip(a.lo0, b.lo0)),
                    tuple(_max(x, y) for x, y in zip(a.hi0, b.hi0)), a.approx or b.approx).reduced()


def _shift(v, d):
    return None if v is None else v + d


def _min(a, b):
    return b if a is None else a if b is None else min(a, b)


def _max(a, b):
    return b if a is None else a if b is None else max(a, b)


def centre_unit(n: int) -> int:
    """The unit the figures of a tensor with ``n`` units are given for: ⌊(n − 1)/2⌋."""
    return max(0, (n - 1) // 2)


_PARITY = {0: "even", 1: "odd"}


def phase_text(ax: Axis, n: Optional[int] = None) -> Optional[str]:
    """"435 at odd units, 467 at even units" (period 2) or "435 at units with index mod 4 = 1 or 2, 467 at
    units with index mod 4 = 0 or 3" where the units of an axis see different sizes (over the phases a
    tensor of ``n`` units has), else None."""
    sizes = ax.sizes()
    phases = range(min(ax.P, n)) if n else range(ax.P)
    seen = {q: sizes[q] for q in phases}
    if len(set(seen.values())) <= 1:
        return None
    lo, hi = min(seen.values()), max(seen.values())

    def where(size):
        qs = [q for q, v in seen.items() if v == size]
        if ax.P == 2:
            return f"{_PARITY[qs[0]]} units"
        runs = _runs(qs)
        if len(runs) > 3:  # a long, scattered period (resized to an odd size): say how many, and one example
            return f"{len(qs)} of every {ax.P} units (e.g. unit {qs[0]})"
        items = [f"{r[0]}–{r[-1]}" if len(r) > 2 else " or ".join(map(str, r)) for r in runs]
        return "units with index mod {} = {}".format(ax.P, " or ".join(items))

    return f"{lo:,} at {where(lo)}, {hi:,} at {where(hi)}"


def _runs(qs: list) -> list:
    """[0, 1, 2, 5, 6, 9] -> [[0, 1, 2], [5, 6], [9]]: consecutive phases grouped."""
    out = []
    for q in qs:
        if out and q == out[-1][-1] + 1:
            out[-1].append(q)
        else:
            out.append([q])
    return out


def size_range(ax: Axis, n: Optional[int] = None):
    """(smallest, largest) field size over the units of a tensor with ``n`` units; None where all agree."""
    sizes = ax.sizes()
    seen = [sizes[q] for q in (range(min(ax.P, n)) if n else range(ax.P))]
    return None if min(seen) == max(seen) else (min(seen), max(seen))


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
        return Field(None, Axis(), Axis())
    return Field(tuple(dims), Axis(), Axis())


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
        self.approx_at: dict[str, int] = {}  # ops whose field is a superset (different jumps united, coarsened)
        self.upper_bound_at: dict[str, int] = {}  # data-dependent ops whose field is an upper bound (unpooling)
        self.pool_windows: dict[int, tuple] = {}  # id(indices of a max pool) -> (kernel, stride, pad, dil)

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
            h, w = h.union(f.h, psz[0]), w.union(f.w, psz[1])
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
        was_approx = any((f := self.get(t)) is not None and (f.h.approx or f.w.approx) for t in tensors_in)
        if not was_approx and any(g.h.approx or g.w.approx
                                  for g in ([res] if isinstance(res, Field) else [g for _, g in res])):
            self.approx_at[name] = self.approx_at.get(name, 0) + 1
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
    outs = _tensors(out)
    if len(outs) == 2 and tr.get(x) is not None:  # max_pool_with_indices: max_unpool2d needs the windows
        n = outs[1].dim() - 2
        tr.pool_windows[id(outs[1])] = tuple(_pair(v, n) for v in (kernel, stride, pad, dil))
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
        g = gcd(in_sz[i], out_sz[i])
        a, b = in_sz[i] // g, out_sz[i] // g
        if a == b:
            continue
        # PyTorch's bins: [⌊o·a/b⌋, ⌈(o+1)·a/b⌉ − 1], near-equal and overlapping where a/b is not whole.
        new[lab] = new[lab].relate(lambda q, a=a, b=b: range(q * a // b, -(-(q + 1) * a // b)), b, a)
    return Field(_fresh_dims(tuple(o.shape), axes), new["h"], new["w"], f.glob)


def _ratio(in_size: int, out_size: int, scale) -> Fraction:
    """Input units per output unit as PyTorch's resampling kernels take it: 1/scale_factor where one was given
    (as a fraction with a short period), else in/out."""
    if scale is not None and scale > 0:
        return Fraction(1 / float(scale)).limit_denominator(1024)
    return Fraction(in_size, out_size)


def _resample_reads(mode: str, in_size: int, out_size: int, align_corners: bool, scale):
    """(reads, B, A) of one axis of an upsample_* op: which input units output unit o reads."""
    if mode in ("nearest", "nearest_exact"):
        r = _ratio(in_size, out_size, scale)
        if mode == "nearest":  # src = ⌊o·scale⌋
            return (lambda o: [(o * r.numerator) // r.denominator]), r.denominator, r.numerator
        return (lambda o: [int((o + Fraction(1, 2)) * r // 1)]), r.denominator, r.numerator
    taps = (0, 1) if mode == "linear" else (-1, 0, 1, 2)  # bilinear: ⌊src⌋, ⌊src⌋ + 1; bicubic: four
    if align_corners:
        r = Fraction(in_size - 1, out_size - 1) if out_size > 1 else Fraction(0)
        src = lambda o: o * r  # noqa: E731
    else:
        r = _ratio(in_size, out_size, scale)
        src = lambda o: (o + Fraction(1, 2)) * r - Fraction(1, 2)  # noqa: E731

    def reads(o):
        s = src(o)
        base = s.numerator // s.denominator
        if s == base:  # on an input unit: the other taps have weight exactly 0
            return [base]
        return [base + t for t in taps]

    if r == 0:
        return (lambda o: [0]), 1, 0
    return reads, r.denominator, r.numerator


def _upsample(mode: str):
    def handler(tr, args, kwargs, out):
        x = args[0]
        f = tr.get(x)
        axes = _spatial_axes(f, x.dim())
        if axes is None:
            return f.with_(dims=None)
        n = len(axes)
        rest = list(args[2:])
        align = False
        if mode not in ("nearest", "nearest_exact"):
            align = bool(rest.pop(0)) if rest else bool(kwargs.get("align_corners", False))
        scales = [kwargs.get("scales_h"), kwargs.get("scales_w")][-n:]
        if len(rest) >= n:
            scales = rest[:n]
        elif len(rest) == 1 and isinstance(rest[0], (list, tuple)):
            scales = list(rest[0])
        approx = mode == "linear_aa" and any(out.shape[-n + i] < x.shape[-n + i] for i in range(n))
        new = {"h": f.h, "w": f.w}
        for i, lab in enumerate(axes):
            a, b = x.shape[-n + i], out.shape[-n + i]
            reads, B, A = _resample_reads("linear" if mode == "linear_aa" else mode, a, b, align,
                                          scales[i] if i < len(scales) else None)
            if approx:  # antialiased downsampling: a triangle as wide as the ratio, taken as its hull
                half = Fraction(a, b)
                reads = (lambda o, a=a, b=b, half=half: range(
                    ((o + Fraction(1, 2)) * Fraction(a, b) - half) // 1 - 1,
                    ((o + Fraction(1, 2)) * Fraction(a, b) + half) // 1 + 1))
            new[lab] = new[lab].relate(reads, B, A, approx=approx)
        return Field(_fresh_dims(tuple(out.shape), axes), new["h"], new["w"], f.glob)

    return handler


def _max_unpool(tr, args, kwargs, out):
    """max_unpool2d(self, indices, output_size): where each value lands depends on where the maxima were. Output
    unit o can only hold the maximum of a pooling window that covers it, so its field is at most the union of
    those windows' fields (an upper bound, said in the notes)."""
    x, indices = args[0], args[1]
    f = tr.get(x)
    axes = _spatial_axes(f, x.dim())
    if axes is None:
        return f.with_(dims=None)
    n = len(axes)
    window = tr.pool_windows.get(id(indices))
    new = {"h": f.h, "w": f.w}
    for i, lab in enumerate(axes):
        if window is not None:
            k, s, p, d = (v[i] for v in window)
            reach = d * (k - 1)
            reads = (lambda o, k=k, s=s, p=p, reach=reach:
                     range(-(-(o + p - reach) // s), (o + p) // s + 1))
            B, A = s, 1
        else:  # indices from elsewhere: the nearest pooled unit, on the grid of the sizes
            r = Fraction(x.shape[-n + i], out.shape[-n + i])
            reads, B, A = (lambda o, r=r: [o * r.numerator // r.denominator]), r.denominator, r.numerator
        new[lab] = new[lab].relate(reads, B, A, approx=True)
    tr.upper_bound_at["max_unpool2d"] = tr.upper_bound_at.get("max_unpool2d", 0) + 1
    return Field(_fresh_dims(tuple(out.shape), axes), new["h"], new["w"], f.glob)


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
    nh, nw = (_spatial_size(base.dims, lab) if base.dims is not None else None for lab in ("h", "w"))
    for f in known[1:]:
        h, w = h.union(f.h, nh), w.union(f.w, nw)
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
    """slice(self, dim, start, end, step): on a spatial axis (a U-Net's crop) output unit o is input unit
    start + o·step."""
    x = args[0]
    f = tr.get(x)
    if f.dims is None:
        return f
    nd = len(f.dims)
    d = (args[1] if len(args) > 1 else 0) % nd
    dims = list(f.dims)
    if _has_spatial(f.dims[d]):
        if out.shape[d] == x.shape[d]:
            return f
        labs = [a for a in f.dims[d] if a[1] != 1]
        if len(labs) != 1 or labs[0][0] is None:
            return f.with_(dims=None)  # a slice through merged dims: not one grid any more
        lab, size = labs[0]
        start = args[2] if len(args) > 2 and args[2] is not None else 0
        step = args[4] if len(args) > 4 and args[4] is not None else 1
        start = min(max(start + size if start < 0 else start, 0), size)
        dims[d] = ((lab, out.shape[d]),)
        ax = getattr(f, lab).relate(lambda o: [start + o * step], 1, step)
        return f.with_(dims=tuple(dims), **{lab: ax})
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
    """constant_pad_nd / reflection_pad / replication_pad (self, pad): output unit o is input unit o − before
    (unclipped: the border values they copy are the padding of the unbounded map; a negative pad crops)."""
    x, pad = args[0], list(args[1])
    f = tr.get(x)
    axes = _spatial_axes(f, x.dim())
    if axes is None:
        return f.with_(dims=None) if len(pad) > 2 * 0 and _pads_spatial(f, pad, x.dim()) else f
    new = {"h": f.h, "w": f.w}
    # pad lists (before, after) pairs from the last dim backwards
    for i, lab in enumerate(reversed(axes)):
        if 2 * i < len(pad) and pad[2 * i]:
            before = pad[2 * i]
            new[lab] = new[lab].relate(lambda o, before=before: [o - before], 1, 1)
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
    "upsample_nearest2d": _upsample("nearest"), "_upsample_nearest_exact2d": _upsample("nearest_exact"),
    "upsample_nearest1d": _upsample("nearest"), "_upsample_nearest_exact1d": _upsample("nearest_exact"),
    "upsample_bilinear2d": _upsample("linear"), "upsample_linear1d": _upsample("linear"),
    "_upsample_bilinear2d_aa": _upsample("linear_aa"), "upsample_bicubic2d": _upsample("cubic"),
    "max_unpool2d": _max_unpool,
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
    "reflection_pad1d": _pad, "reflection_pad2d": _pad, "replication_pad1d": _pad, "replication_pad2d": _pad,
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
