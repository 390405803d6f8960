"""The architecture as a Graphviz diagram (a DOT string): backbone → neck → head, stages collapsed with their costs.

Pure text, no streamlit and no graphviz package needed: ``st.graphviz_chart`` renders the string in the browser.
"""
from __future__ import annotations

from ..analysis import Analysis

_COLOURS = {"backbone": "#dbe9f6", "neck": "#fde8c8", "head": "#d9f0d3"}


def _count(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def _shape(shape) -> str:
    return "×".join(str(s) for s in shape) if shape else ""


def _label(name: str, kind: str, shape, params: int, macs: int, rf, is_global: bool) -> str:
    lines = [f"{name}", f"{kind}  {_shape(shape)}"]
    cost = []
    if params:
        cost.append(f"{_count(params)} params")
    if macs:
        cost.append(f"{_count(macs)} MACs")
    if cost:
        lines.append(", ".join(cost))
    if rf:
        lines.append(f"RF {'global' if is_global else rf[0] if rf[0] == rf[1] else f'{rf[0]}×{rf[1]}'}")
    return "\\n".join(s.replace('"', "'") for s in lines)


def architecture_dot(a: Analysis, expand: bool = False, max_nodes: int = 60) -> str:
    """DOT for a composed model (children backbone / neck / head) or any model (one cluster).

    ``expand=False`` shows each part's stages (one level below the part); ``expand=True`` every layer. Long
    chains are cut to ``max_nodes`` per part with a "… n more" node, so a DenseNet stays readable.
    """
    parts = [p for p in ("backbone", "neck", "head") if any(r.name.startswith(p + ".") or r.name == p
                                                             for r in a.layers)]
    out = ["digraph architecture {", "rankdir=TB; nodesep=0.25; ranksep=0.3;",
           'node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, fillcolor=white];',
           f'input [label="input\\n{_shape(a.input_shape)}", fillcolor="#eeeeee"];']
    prev = "input"
    groups = parts or [""]
    for part in groups:
        rows = _rows(a, part, expand)
        shown = rows[:max_nodes]
        out.append(f'subgraph "cluster_{part or "model"}" {{ label="{part or a.model_name}"; style="rounded,filled"; '
                   f'fillcolor="{_COLOURS.get(part, "#f4f4f4")}"; fontname="Helvetica";')
        for i, r in enumerate(shown):
            node = f'"{part}:{i}"'
            out.append(f'{node} [label="{_label(*r)}"];')
            out.append(f"{prev} -> {node};")
            prev = node
        if len(rows) > len(shown):
            node = f'"{part}:more"'
            out.append(f'{node} [label="… {len(rows) - len(shown)} more", style=dashed];')
            out.append(f"{prev} -> {node};")
            prev = node
        out.append("}")
    out.append("}")
    return "\n".join(out)


def _rows(a: Analysis, part: str, expand: bool) -> list:
    if expand:
        rows = [r for r in a.layers if r.name != "input" and (not part or r.name.startswith(part + "."))]
        return [(r.name, r.kind, r.output_shape, r.params, r.macs, r.rf, r.is_global) for r in rows]
    depth = part.count(".") + 2 if part else 1
    stages = [s for s in a.stages(depth=depth) if not part or s.name.startswith(part + ".")]
    if part and not stages:  # a part with no children of its own (an identity neck)
        stages = [s for s in a.stages(depth=1) if s.name == part]
    # A composition's backbone stages sit one level further down (compose.STAGE_PREFIX): open that level
    # instead of one box for the whole body.
    from ..compose import STAGE_PREFIX

    if len(stages) == 1 and part and stages[0].name + "." == STAGE_PREFIX:
        stages = [s for s in a.stages(depth=depth + 1) if s.name.startswith(STAGE_PREFIX)]
    return [(_short(s.name, STAGE_PREFIX) if part else s.name, s.kind, s.output_shape, s.params, s.macs, s.rf,
             s.is_global) for s in stages]


def _short(name: str, stage_prefix: str) -> str:
    """A stage's name inside its part's box: "layer1" for a backbone stage, "<child>" for "neck.<child>"."""
    return name[len(stage_prefix):] if name.startswith(stage_prefix) else name.split(".", 1)[-1]
