"""The architecture as a Graphviz diagram (a DOT string), drawn from the traced dataflow graph
(`explorer.analysis.graph`): every add / concat / multiply with its inputs (residual shortcuts, U-Net skips, FPN
laterals and top-down paths), stages as one node named by their block type ("layer1 · 2× BasicBlock") or opened
into a cluster of their layers, parallel per-level layers side by side (``rank=same``).

Pure text: ``st.graphviz_chart`` renders it in the browser; `svg` renders it with Graphviz's ``dot`` where that
program is installed.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from typing import Iterable, Optional

from ..analysis import Analysis
from ..analysis.graph import Graph, graph_view

_COLOURS = {"backbone": "#dbe9f6", "neck": "#fde8c8", "head": "#d9f0d3"}
_STAGE_FILL = {"backbone": "#a9cbe8", "neck": "#f9c98a", "head": "#a8dba0"}
_MERGE_SYMBOL = {"add": "+", "cat": "concat", "mul": "×", "matmul": "matmul"}
_SHORT = {"BatchNorm2d": "BN", "BatchNorm1d": "BN", "FrozenBatchNorm2d": "BN", "GroupNorm": "GN",
          "LayerNorm2d": "LN", "LayerNorm": "LN", "Dropout": "dropout"}
SKIP_COLOUR = "#d62728"


def _count(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def _shape(shape) -> str:
    return "×".join(str(s) for s in shape) if shape else ""


def _q(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', "'")


def diagram_graph(a: Analysis, expand: bool = False, open_stages: Iterable[str] = ()) -> Graph:
    """The graph a diagram draws: stages collapsed (``open_stages`` opened), or every layer (``expand``)."""
    if a.flow is None:
        raise ValueError("This analysis carries no dataflow graph; analyse the model again.")
    return graph_view(a.flow, a.layers, open_paths=open_stages, open_all=expand)


def architecture_dot(a: Analysis, expand: bool = False, open_stages: Iterable[str] = ()) -> str:
    """DOT for any analysed model. Every node is drawn: nothing is cut."""
    g = diagram_graph(a, expand, open_stages)
    parts = {p for p in ("backbone", "neck", "head") if p in g.clusters}
    openable = set(g.collapsible) - set(g.opened)
    out = ["digraph architecture {",
           'graph [rankdir=TB, nodesep=0.22, ranksep=0.28, fontname="Helvetica", fontsize=11, '
           'newrank=true, bgcolor="transparent"];',
           'node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, fillcolor=white, '
           'margin="0.08,0.04", height=0.3];',
           'edge [color="#555555", arrowsize=0.6];']

    # Which cluster each node and each cluster is drawn in; a cluster holding a single item is not drawn
    # (backbone > body > layers shows as backbone > layers), except the backbone / neck / head boxes.
    members: dict[str, list] = {}
    for n in g.nodes.values():
        members.setdefault(n.cluster, []).append(n.id)
    subs: dict[str, list] = {}
    for key, (_, parent) in g.clusters.items():
        subs.setdefault(parent, []).append(key)

    def size(key: str) -> int:
        return len(members.get(key, [])) + sum(1 for s in subs.get(key, []) if size(s))

    def drawn(key: str) -> bool:
        parent = g.clusters[key][1]
        alone = parent and size(parent) == 1  # the only thing in its parent's box: the parent's box says it
        return key in parts or (size(key) >= 2 and not alone)

    def part_of(path: str) -> str:
        top = path.split(".", 1)[0]
        return top if top in parts else ""

    def prefix(key: str) -> str:
        """The path the names inside cluster ``key`` are written relative to."""
        return key.split(" #")[0] + "." if key else ""

    def shown_in(key: str) -> str:
        """The cluster whose path names inside ``key`` are written relative to: ``key``, or where ``key`` holds
        a single item (a shortcut's one conv node), the cluster around it."""
        while key and not drawn(key) and size(key) < 2:
            key = g.clusters[key][1]
        return key

    def node_line(gid: str) -> str:
        n = g.nodes[gid]
        pre = prefix(shown_in(n.cluster))
        name = n.path[len(pre):] if pre and n.path.startswith(pre) else n.path
        tip = f"{n.path or a.model_name} · {n.kind}"
        attrs = {}
        if n.role == "io":
            label = [n.kind.lower() if n.kind != "Input" else "input", _shape(n.shape)]
            if n.id == "output" and n.shape is None:
                label = ["output", f"{len(g.inputs('output'))} tensors"]
            attrs.update(fillcolor="#eeeeee")
        elif n.role == "merge":
            sym = _MERGE_SYMBOL.get(n.kind, n.kind)
            label = [" ".join([sym] + [_SHORT.get(k, k) for k in n.folded])]
            if n.kind != "add":
                label.append(_shape(n.shape))
            attrs.update(shape="ellipse", fillcolor="#fff3b0", fontsize="9", height="0.25", margin="0.04,0.02")
            attrs["class"] = f"merge {n.kind}"
        elif n.role == "resample":
            label = [f"upsample {n.detail}", _shape(n.shape)]
            attrs.update(shape="box", style="filled,dashed", fillcolor="#f2f2f2", fontsize="9")
            attrs["class"] = "resample"
        else:
            what = n.blocks if n.role == "stage" else " ".join(x for x in (n.kind, n.detail) if x)
            if n.role == "block" and n.blocks:  # a short row of layers: "Conv2d 3×3 · BN · ReLU"
                kinds = [_SHORT.get(k, k) for k in n.blocks.split(" · ")]
                what = " · ".join([" ".join(x for x in (kinds[0], n.detail) if x)] + kinds[1:]) \
                    if " · " in n.blocks else f"{n.kind} ({n.blocks})"
            what = " · ".join([what] + [_SHORT.get(k, k) for k in n.folded])
            label = [f"{name} · {what}" if name else what, _shape(n.shape)]
            cost = [f"{_count(n.params)} params"] if n.params else []
            cost += [f"{_count(n.macs)} MACs"] if n.macs else []
            if cost:
                label.append(" · ".join(cost))
            if n.role == "stage" or n.path in openable:  # drawn as one node, opened on request
                attrs.update(fillcolor=_STAGE_FILL.get(part_of(n.path), "#cfd8e3"), penwidth="1.5")
                attrs["class"] = "stage" if n.role == "stage" else "block"
            tip += f" · {n.params:,} params · {n.macs:,} MACs"
        attrs["tooltip"] = tip
        attrs["label"] = "\\n".join(_q(s) for s in label if s)
        return f'"{gid}" [' + ", ".join(f'{k}="{v}"' for k, v in attrs.items()) + "];"

    def emit(key: str, depth: int):
        """(lines, the nodes drawn loose in the box around ``key``: its own where ``key`` is not drawn)."""
        inner = [node_line(m) for m in members.get(key, [])]
        loose = list(members.get(key, []))
        for s in subs.get(key, []):
            if size(s):
                lines, more = emit(s, depth + 1)
                inner += lines
                loose += more
        if key and not drawn(key):
            return inner, loose
        inner += _same_rank(g, loose)
        if not key:
            return inner, []
        kind = g.clusters[key][0]
        parent = shown_in(g.clusters[key][1])
        pre = prefix(parent) if parent else ""
        name = key[len(pre):] if pre and key.startswith(pre) else key
        label = name if key in parts else f"{name} · {kind}"
        fill = _COLOURS.get(key, "#ffffff" if depth % 2 else "#f7f7f7")
        style = "rounded,filled" if key in parts else "rounded,filled,dashed"
        return [f'subgraph "cluster_{_q(key)}" {{ label="{_q(label)}"; style="{style}"; fillcolor="{fill}"; '
                f'color="#999999"; fontname="Helvetica"; fontsize=10; labeljust=l;'] + inner + ["}"], []

    out += emit("", 0)[0]
    for e in g.edges:
        if e.role == "skip":
            out.append(f'"{e.src}" -> "{e.dst}" [class="skip", color="{SKIP_COLOUR}", penwidth=1.6, '
                       f'tooltip="skip / shortcut"];')
        else:
            out.append(f'"{e.src}" -> "{e.dst}" [class="flow"];')
    out.append("}")
    return "\n".join(out)


def _same_rank(g: Graph, ids: list) -> list:
    """Parallel copies of one layer (a neck's per-level convs, a head per level) on one row: same path with the
    level index taken out, none reachable from another."""
    groups: dict[str, list] = {}
    for gid in ids:
        n = g.nodes[gid]
        if n.role in ("merge", "resample", "io"):
            continue
        groups.setdefault(re.sub(r"\.\d+(?=\.|$)", ".*", n.path), []).append(gid)
    out = []
    reach = None
    for members in groups.values():
        if len(members) < 2:
            continue
        if reach is None:
            reach = _reachability(g)
        if any(b in reach[a] for a in members for b in members if a != b):
            continue
        out.append("{rank=same; " + " ".join(f'"{m}";' for m in members) + "}")
    return out


def _reachability(g: Graph) -> dict:
    succ: dict[str, list] = {}
    for e in g.edges:
        succ.setdefault(e.src, []).append(e.dst)
    reach: dict[str, set] = {}
    for gid in reversed(list(g.nodes)):  # reverse topological order
        r = set()
        for s in succ.get(gid, []):
            r.add(s)
            r |= reach.get(s, set())
        reach[gid] = r
    return reach


def has_renderer() -> bool:
    """Is Graphviz's ``dot`` program installed (the SVG download needs it)?"""
    return shutil.which("dot") is not None


def node_count(dot: str) -> int:
    """Nodes in a DOT text made by `architecture_dot` (one ``label=`` per node; edges carry none)."""
    return sum(1 for line in dot.splitlines() if "label=" in line and "->" not in line)


def svg(dot: str) -> Optional[bytes]:
    """The diagram as SVG, rendered by Graphviz's ``dot`` program; None where it is not installed."""
    exe = shutil.which("dot")
    if exe is None:
        return None
    done = subprocess.run([exe, "-Tsvg"], input=dot.encode(), capture_output=True, timeout=60)
    return done.stdout if done.returncode == 0 else None
