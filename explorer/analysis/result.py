"""`Analysis`: the per-layer table and totals of one traced run, queryable by layer, by stage and in total."""
from __future__ import annotations

import dataclasses
import io
import json
from fractions import Fraction
from typing import Optional

from ..fields import fmt_pair, fmt_rf

GLOBAL = "global"

# Layer kinds whose outputs count in the lecture's activation-memory convention: input + conv / pool / fc.
_COUNTED_KINDS = ("Conv", "Linear", "Pool", "ConvTranspose")


def counts_in_lecture_memory(kind: str) -> bool:
    return any(k in kind for k in _COUNTED_KINDS)


def _plain(v):
    if isinstance(v, Fraction):
        return float(v)
    if isinstance(v, tuple):
        return tuple(_plain(x) for x in v)
    return v


def _map_unit(ax: dict, o: int):
    """The interval of unit ``o`` of a serialised index map (see explorer.analysis.receptive_field.Axis)."""
    k, q = divmod(o, ax["P"])
    if ax["lo0"][q] is None:
        return None
    return ax["lo0"][q] + k * ax["J"], ax["hi0"][q] + k * ax["J"]


class _Costs:
    """Derived totals shared by a layer row and a stage roll-up."""

    weights: int
    biases: int
    macs: int

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclasses.dataclass
class Layer(_Costs):
    """One row: a leaf layer call (or a module doing work of its own, or the input)."""

    name: str  # module path, "input" for the input row; a second call of a module gets " #2"
    kind: str  # module class name, e.g. "Conv2d"
    output_shape: Optional[tuple]  # without the batch dim, e.g. (64, 224, 224)
    activations: int  # output values per image
    weights: int = 0  # parameters that are not biases (each tensor counted once, at its first use)
    biases: int = 0
    trainable: int = 0
    frozen: int = 0
    macs: int = 0
    counted: bool = False  # counts in the lecture's activation memory (input + conv / pool / fc outputs)
    rf: Optional[tuple] = None  # (h, w) of the convolutional path; None where not followed
    jump: Optional[tuple] = None
    offset: Optional[tuple] = None  # centre of output unit (0, 0) in input pixels
    padding: Optional[tuple] = None  # effective padding = -(start of unit 0's field)
    is_global: bool = False  # some input pixel anywhere influences this output (pooling, SE, attention)
    ran: bool = True  # False for modules whose parameters exist but did not run in this forward
    depth: int = 0
    # Where units see different sizes (after upsampling, transposed convs, unpooling): rf is the centre unit's,
    # rf_range ((min_h, max_h), (min_w, max_w)) the range over units, rf_phases which units give which.
    rf_range: Optional[tuple] = None
    rf_phases: Optional[str] = None

    @property
    def receptive_field(self):
        """(h, w), or "global" where the whole input can reach this layer's outputs."""
        return GLOBAL if self.is_global else self.rf

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["params"] = self.params
        d["flops"] = self.flops
        for k in ("rf", "jump", "offset", "padding", "rf_range"):
            d[k] = _plain(d[k])
        d["output_shape"] = list(self.output_shape) if self.output_shape else None
        return d


@dataclasses.dataclass
class Stage(_Costs):
    name: str
    kind: str
    output_shape: Optional[tuple]
    layers: int
    weights: int
    biases: int
    trainable: int
    frozen: int
    macs: int
    activations: int  # lecture convention, summed over the stage's rows
    rf: Optional[tuple]
    is_global: bool


@dataclasses.dataclass
class Analysis:
    """Everything one traced run knows about a model at one input size. Pure data: pickles, caches, compares."""

    model_name: str
    input_shape: tuple  # without batch
    dtype: str
    bytes_per_element: int
    layers: list
    # module path -> {"kind", "output_shape", "rf", "jump", "offset", "is_global", "rf_range", "rf_phases",
    # "rf_map", "rf_approx"} (last call); rf is the centre unit's field, rf_map the exact per-unit map per axis
    modules: dict
    params: int
    trainable_params: int
    weights_total: int
    biases_total: int
    buffers: int
    macs: int
    activations: int  # lecture convention, per image
    training_bytes: Optional[int]  # bytes autograd saves for backward, per image
    weight_bytes: int
    all_activations: int  # every row's output, per image (ReLU etc. included)
    uncounted_ops: dict  # aten op -> count: ops with no MAC formula and not zero by convention
    notes: list
    device: str = "meta"
    flow: Optional[object] = None  # explorer.analysis.graph.Flow: which call made each tensor (the diagram's graph)

    # -- totals ------------------------------------------------------------------------------------------------
    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def frozen_params(self) -> int:
        return self.params - self.trainable_params

    @property
    def activation_bytes(self) -> int:
        return self.activations * self.bytes_per_element

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def memory(self, batch_size: int = 1) -> dict:
        """Bytes for a batch: forward activations (lecture convention), training (autograd-saved), weights."""
        return {
            "forward_activations": self.activation_bytes * batch_size,
            "training_saved": None if self.training_bytes is None else self.training_bytes * batch_size,
            "weights": self.weight_bytes,
        }

    # -- queries -----------------------------------------------------------------------------------------------
    def layer(self, name: str) -> Layer:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"No layer called '{name}' in {self.model_name}.")

    def _module(self, path: str) -> dict:
        if path in self.modules:
            return self.modules[path]
        raise KeyError(f"{self.model_name} has no module '{path}'; stages are: {', '.join(self.stage_names())}.")

    def receptive_field(self, path: str):
        """(h, w) in input pixels at the output of the module ``path``; "global" where it is global."""
        m = self._module(path)
        return GLOBAL if m["is_global"] else m["rf"]

    def local_receptive_field(self, path: str):
        """The convolutional-path field at ``path``, kept even where the field is global."""
        return self._module(path)["rf"]

    def _field_map(self, path: str, level: Optional[str] = None) -> dict:
        m = self._module(path)
        if level is not None:
            found = [lv for lv in m.get("levels", []) if lv["name"] == str(level)]
            if not found:
                raise KeyError(f"{path or 'The model'} has no output level '{level}'.")
            m = found[0]
        return m

    def unit_field(self, path: str, i: int, j: int, level: Optional[str] = None) -> tuple:
        """((top, bottom), (left, right)): the inclusive input rows and columns output unit (i, j) of ``path``
        (or of its output ``level``) sees, exact for every unit, unclipped (the image border not applied; a
        negative start is padding). None where the layout was not followed."""
        fm = self._field_map(path, level).get("rf_map")
        if fm is None:
            return None
        return _map_unit(fm[0], i), _map_unit(fm[1], j)

    def output_levels(self, path: str = "") -> list:
        """Per output level of a module that returns several maps (an FPN neck, a detection head, the model):
        dicts with name, output_shape, rf (the centre unit's), jump, offset, is_global, and where units differ
        rf_range / rf_phases (rf_map: the exact map, see `unit_field`). One entry for a single-tensor output."""
        m = self._module(path)
        if "levels" in m:
            return m["levels"]
        return [dict(name=path or "output", output_shape=m["output_shape"], rf=m["rf"], jump=m["jump"],
                     offset=m["offset"], is_global=m["is_global"], rf_range=m.get("rf_range"),
                     rf_phases=m.get("rf_phases"), rf_map=m.get("rf_map"), rf_approx=m.get("rf_approx", False))]

    def stage_names(self) -> list:
        return self.stage_paths()

    def stage_paths(self, depth: Optional[int] = None) -> list:
        """Module paths that make the stages. By default the top-level modules, except that the one
        Sequential holding the whole trunk (``features`` of EfficientNet, DenseNet, Swin, RegNet's
        ``trunk_output``) is opened one level; ResNet's layer1..layer4 stay as they are."""
        paths = [p for p in self.modules if p]
        children: dict[str, list] = {}
        for p in paths:
            parent = p.rsplit(".", 1)[0] if "." in p else ""
            children.setdefault(parent, []).append(p)
        if depth is not None:
            return [p for p in paths if p.count(".") == depth - 1]
        tops = children.get("", [])
        trunks = [t for t in tops if sum(1 for c in children.get(t, []) if children.get(c)) >= 3]
        out = []
        for top in tops:
            opened = len(trunks) == 1 and top == trunks[0] and self.modules[top]["kind"] == "Sequential"
            out.extend(children[top] if opened else [top])
        return out

    def stages(self, depth: Optional[int] = None) -> list:
        """Roll-up per stage (see `stage_paths`) or per named block at ``depth`` (1 = top-level modules)."""
        paths = self.stage_paths(depth)
        groups: dict[str, list] = {p: [] for p in paths}
        for row in self.layers:
            if row.name == "input":
                continue
            base = row.name.split(" #")[0]
            # Rows outside every called stage (an R-CNN head's parts, blocks that fx traced through inside a
            # cut backbone) group under their path prefix at this depth.
            key = next((p for p in paths if base == p or base.startswith(p + ".")),
                       ".".join(base.split(".")[:depth or 1]))
            groups.setdefault(key, []).append(row)
        out = []
        for key, rows in groups.items():
            if not rows:
                continue
            m = self.modules.get(key, {})
            out.append(Stage(
                name=key or "(model)", kind=m.get("kind", rows[0].kind),
                output_shape=m.get("output_shape", rows[-1].output_shape), layers=len(rows),
                weights=sum(r.weights for r in rows), biases=sum(r.biases for r in rows),
                trainable=sum(r.trainable for r in rows), frozen=sum(r.frozen for r in rows),
                macs=sum(r.macs for r in rows), activations=sum(r.activations for r in rows if r.counted),
                rf=m.get("rf", rows[-1].rf), is_global=m.get("is_global", rows[-1].is_global),
            ))
        return out

    # -- exports -----------------------------------------------------------------------------------------------
    def to_frame(self, biases: bool = True):
        import pandas as pd

        recs = []
        for r in self.layers:
            recs.append({
                "layer": r.name, "kind": r.kind,
                "output": "×".join(str(v) for v in r.output_shape) if r.output_shape else "",
                "activations": r.activations, "counted": r.counted,
                "weights": r.weights, "biases": r.biases,
                "params": r.params if biases else r.weights,
                "trainable": r.trainable, "frozen": r.frozen,
                "MACs": r.macs, "FLOPs": r.flops,
                "rf": fmt_rf(r.rf, r.is_global, sep=False, rf_range=r.rf_range), "global": r.is_global,
                "jump": fmt_pair(r.jump, sep=False), "offset": fmt_pair(r.offset, sep=False),
            })
        return pd.DataFrame.from_records(recs)

    def totals(self) -> dict:
        return {
            "model": self.model_name, "input": list(self.input_shape), "dtype": self.dtype,
            "params": self.params, "trainable_params": self.trainable_params, "frozen_params": self.frozen_params,
            "weights": self.weights_total, "biases": self.biases_total, "buffers": self.buffers,
            "macs": self.macs, "flops": self.flops, "activations": self.activations,
            "activation_bytes": self.activation_bytes, "training_bytes": self.training_bytes,
            "weight_bytes": self.weight_bytes, "uncounted_ops": self.uncounted_ops, "notes": self.notes,
        }

    def to_csv(self) -> str:
        buf = io.StringIO()
        self.to_frame().to_csv(buf, index=False)
        return buf.getvalue()

    def to_markdown(self) -> str:
        df = self.to_frame()
        for col in ("activations", "weights", "biases", "params", "trainable", "frozen", "MACs", "FLOPs"):
            df[col] = df[col].map("{:,}".format)
        t = self.totals()
        shapes = self.input_shape if isinstance(self.input_shape[0], tuple) else (self.input_shape,)  # RAFT: 2
        head = (f"**{self.model_name}** at {' and '.join('×'.join(map(str, s)) for s in shapes)} ({self.dtype}): "
                f"{t['params']:,} parameters, {t['macs']:,} MACs = {t['flops']:,} FLOPs, "
                f"{t['activations']:,} activations per image ({t['activation_bytes'] / 1e6:.2f} MB)\n\n")
        return head + df.to_markdown(index=False)

    def to_json(self) -> str:
        return json.dumps({"totals": self.totals(), "layers": [r.as_dict() for r in self.layers]}, indent=1)

    def to_table(self) -> str:
        """A plain-text table for terminals."""
        df = self.to_frame()
        cols = ["layer", "kind", "output", "activations", "params", "MACs", "rf"]
        return df[cols].to_string(index=False, formatters={
            c: "{:,}".format for c in ("activations", "params", "MACs")})
