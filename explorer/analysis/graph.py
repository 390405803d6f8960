"""The module-level dataflow graph of one traced forward: which module call produced each tensor, which tensors
each call and each merge (add / concat / multiply) read, so a diagram can draw shortcuts, skips, lateral and
top-down paths as they ran, not as the modules happen to be listed.

`FlowRecorder` is fed by the dispatch recorder (`trace.Recorder`): module enter / exit and every aten op. It keeps
only plain data (`Flow`), which the cached `Analysis` carries. `graph_view` turns a `Flow` into the nodes and
edges of one view: stages collapsed to one node each (named by their block type, with shape, parameters and
MACs), or opened to their layers; BatchNorm / activation layers fold into the layer before them.
"""
from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Iterable, Optional

import torch

# Ops whose reading of two different tensors is a merge the diagram draws (a residual add, a U-Net concat, an SE
# gate's multiply). Only on feature maps (≥ 3 dims): box arithmetic in a detector's post-processing is not one.
MERGE_OPS = {"add": "add", "add_": "add", "sub": "add", "mul": "mul", "mul_": "mul", "cat": "cat",
             "stack": "cat", "bmm": "matmul", "mm": "matmul", "matmul": "matmul"}
# Ops run outside any module that change the resolution: drawn as a node of their own (FPN's top-down path).
RESAMPLE_OPS = {"upsample_nearest2d", "upsample_bilinear2d", "_upsample_nearest_exact2d",
                "_upsample_bilinear2d_aa", "upsample_bicubic2d", "upsample_nearest1d", "upsample_nearest3d",
                "upsample_linear1d", "upsample_trilinear3d", "grid_sampler_2d"}
# Layers that fold into the node before them (conv → BN → ReLU is one node).
FOLDED = re.compile(r"BatchNorm|GroupNorm|LayerNorm\d|InstanceNorm|^Identity$|ReLU|SiLU|GELU|Hardswish|"
                    r"Hardsigmoid|Sigmoid|Tanh|Mish|ELU|Dropout|Softplus|FrozenBatchNorm")
_GENERIC = {"Sequential", "ModuleList", "ModuleDict", "Module"}  # containers that name no block type
_ROW = re.compile(r"NormActivation$|^BasicConv2d$|^ConvBN")  # conv–norm–act rows: a block's part, not a block
_MAX_ORIGINS = 8  # provenance kept per tensor (a detector's post-processing unites many)
INPUT = 0  # node id of the input


@dataclasses.dataclass
class FlowNode:
    """One module call, one merge / resample op, or the input."""

    id: int
    kind: str  # module class name; for ops "add" / "cat" / "mul" / "matmul" / "resample"; "Input"
    path: str = ""  # module path; for an op the path of the module whose own code ran it
    index: int = 1  # call number of this module (1 = first call)
    parent: int = -1  # the enclosing module call's node id
    is_op: bool = False
    leaf: bool = True  # a module without children (or an op, or the input)
    inputs: list = dataclasses.field(default_factory=list)  # per tensor read: tuple of chains (see FlowRecorder)
    shape: Optional[tuple] = None  # first output tensor, without the batch dim
    detail: str = ""  # "3×3/2" for a conv, "512→1000" for a linear, "×2 nearest" for a resample

    @property
    def label(self) -> str:
        """The layer table's row name of this call ("layer1.0.relu #2")."""
        return self.path if self.index == 1 else f"{self.path} #{self.index}"


@dataclasses.dataclass
class Flow:
    nodes: list  # FlowNode, by id
    outputs: list  # provenance of each tensor the model returned
    kinds: dict = dataclasses.field(default_factory=dict)  # module path -> class name, every module


class FlowRecorder:
    """Provenance of every traced tensor: a tuple of chains, each chain the node that made it followed by each
    module call that then returned it (innermost first). A view picks the outermost node it draws."""

    def __init__(self, x, model=None):
        self.nodes = [FlowNode(INPUT, "Input", path="input")]
        self.kinds = {}
        for path, m in (model.named_modules() if model is not None else ()):
            self.kinds.setdefault(path, type(m).__name__)
            # A block's class where torch.fx left a plain nn.Module (compose.BackboneStages says which)
            for sub, kind in (getattr(m, "source_kinds", None) or {}).items():
                self.kinds[f"{path}.{sub}" if path else sub] = kind
        self._ops_in = Counter()  # aten ops run inside each call
        self._op_reads: dict[int, list] = {}
        self._tick = 0  # ops so far; _written: tensor id -> the tick of the last op that wrote it
        self._written: dict[int, int] = {}
        self._entered: dict[int, int] = {}
        self._read_ids: dict[int, set] = {}
        self.prov: dict[int, tuple] = {}
        self._alive = []  # traced tensors stay alive so their ids stay unique during the run
        self.stack: list[int] = []
        self.outputs: list = []
        self._calls_in = Counter()  # module calls made inside each call
        for t in ([x] if isinstance(x, torch.Tensor) else list(x)):
            self.nodes[0].shape = tuple(t.shape[1:])
            self._set(t, ((INPUT,),))

    def _set(self, t, p):
        self.prov[id(t)] = p
        self._alive.append(t)

    def _read(self, obj) -> list:
        return [self.prov[id(t)] for t in _flat_tensors(obj) if id(t) in self.prov]

    def enter(self, path: str, index: int, module, args, kwargs):
        node = FlowNode(len(self.nodes), type(module).__name__, path=path, index=index,
                        parent=self.stack[-1] if self.stack else -1, leaf=not module._modules,
                        inputs=_unique(self._read(args) + self._read(kwargs)), detail=_detail(module))
        self.nodes.append(node)
        self._calls_in[node.parent] += 1
        self._read_ids[node.id] = {id(t) for t in _flat_tensors(args) + _flat_tensors(kwargs)}
        self._entered[node.id] = self._tick
        self.stack.append(node.id)

    def exit(self, output):
        node = self.nodes[self.stack.pop()]
        if self.stack:
            self._ops_in[self.stack[-1]] += self._ops_in[node.id]
        outs = _flat_tensors(output)
        read = self._read_ids.pop(node.id, set())
        if not self._ops_in[node.id] and outs and all(id(t) in read for t in outs):
            node.leaf = False  # hands its input on untouched (an identity neck, nn.Identity): drawn as nothing
            node.kind = "(pass-through)"
        elif not self._calls_in[node.id]:
            node.leaf = True  # its children never ran (nn.MultiheadAttention reads out_proj's weights itself)
        if outs:
            node.shape = tuple(outs[0].shape[1:])
        entered = self._entered.pop(node.id, 0)
        reads = self._op_reads.pop(node.id, None)
        if node.leaf and reads:
            node.inputs = _unique(reads)
        for t in outs:
            untouched = id(t) in read and self._written.get(id(t), -1) <= entered
            if id(t) not in self.prov or (node.leaf and not untouched):
                self._set(t, ((node.id,),))
            elif not node.leaf:  # a container returned it: its chains grow by this call
                self._set(t, tuple(chain + (node.id,) for chain in self.prov[id(t)]))
            # a layer handing on what it was given (FPN's extra max-pool level returns the others too): as it was
        if not self.stack:
            self.outputs = _unique(self._read(output))

    def op(self, name: str, args, out):
        if self.stack:
            self._ops_in[self.stack[-1]] += 1
        self._tick += 1
        for t in _flat_tensors(out):
            self._written[id(t)] = self._tick
        ins = _unique(self._read(args))
        if not ins:
            return
        if self.stack and self.nodes[self.stack[-1]].leaf:  # what a layer's own ops read (not all it was given)
            self._op_reads.setdefault(self.stack[-1], []).extend(ins)
        outs = _flat_tensors(out)
        merge = MERGE_OPS.get(name)
        parent = self.stack[-1] if self.stack else -1
        if merge and len(ins) >= 2 and outs and outs[0].dim() >= 3:
            node = FlowNode(len(self.nodes), merge, path=self.nodes[parent].path if parent >= 0 else "",
                            parent=parent, is_op=True, inputs=ins, shape=tuple(outs[0].shape[1:]))
        elif name in RESAMPLE_OPS and outs and parent >= 0 and not self.nodes[parent].leaf:
            shape = tuple(outs[0].shape[1:])
            node = FlowNode(len(self.nodes), "resample", path=self.nodes[parent].path, parent=parent, is_op=True,
                            inputs=ins, shape=shape, detail=_resample_detail(name, args, shape))
        else:  # everything else passes its inputs' provenance on
            p = tuple(dict.fromkeys(c for q in ins for c in q))[:_MAX_ORIGINS]
            for t in outs:
                self._set(t, p)
            return
        self.nodes.append(node)
        for t in outs:
            self._set(t, ((node.id,),))

    def finish(self) -> Flow:
        return Flow(self.nodes, self.outputs, self.kinds)


def _unique(provs: list) -> list:
    return list(dict.fromkeys(provs))


def _flat_tensors(obj, depth: int = 0) -> list:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if depth > 4:
        return []
    if isinstance(obj, dict):
        obj = list(obj.values())
    elif not isinstance(obj, (list, tuple)) and hasattr(obj, "tensors"):  # torchvision's ImageList
        obj = [obj.tensors]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _flat_tensors(o, depth + 1)]
    return []


def _pair(v) -> str:
    v = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    return str(v[0]) if len(set(v)) == 1 else "×".join(map(str, v))


def _detail(m) -> str:
    """What a layer does, in the lecture's words: kernel / stride for a conv or pool, in → out for a linear."""
    name = type(m).__name__
    try:
        if "Conv" in name and hasattr(m, "kernel_size"):
            k, s = m.kernel_size, m.stride
            ks = "×".join(map(str, k)) if len(set(k)) > 1 else f"{k[0]}×{k[0]}"
            out = ks + (f"/{_pair(s)}" if max(s) > 1 else "")
            return out + (f" g{m.groups}" if getattr(m, "groups", 1) > 1 else "")
        if name == "Linear":
            return f"{m.in_features}→{m.out_features}"
        if "Pool" in name and hasattr(m, "kernel_size"):
            return f"{_pair(m.kernel_size)}×{_pair(m.kernel_size)}/{_pair(m.stride)}" \
                if not isinstance(m.kernel_size, (tuple, list)) else f"{_pair(m.kernel_size)}/{_pair(m.stride)}"
        if "AdaptiveAvgPool" in name or "AdaptiveMaxPool" in name:
            return f"→{_pair(m.output_size)}"
    except Exception:  # a custom module with the same attribute names meaning something else
        return ""
    return ""


def _resample_detail(name: str, args, shape) -> str:
    mode = "bilinear" if "bilinear" in name else "nearest" if "nearest" in name else name.split("_")[0]
    src = _flat_tensors(args[:1])
    if src and len(shape) >= 2 and src[0].dim() >= 3:
        h0, h1 = src[0].shape[-1], shape[-1]
        if h0 and h1 % h0 == 0:
            return f"×{h1 // h0} {mode}"
    return mode


# -- one view ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class GraphNode:
    id: str  # "n<flow node id>"; "input", "output"
    path: str  # module path ("" for an op in the model's own forward)
    kind: str  # class name, or the merge's kind: "add", "cat", "mul", "matmul"; "resample"
    role: str  # "layer" (a leaf), "stage" / "block" (a collapsed container), "merge", "resample", "io"
    shape: Optional[tuple]
    params: int = 0
    macs: int = 0
    blocks: str = ""  # a collapsed container's content: "2× BasicBlock", "Conv2d · BatchNorm2d · ReLU"
    folded: list = dataclasses.field(default_factory=list)  # kinds of the layers folded into this node
    detail: str = ""
    cluster: str = ""  # path of the opened container it is drawn in ("" = top level)
    order: int = 0  # creation order (a topological order)


@dataclasses.dataclass
class GraphEdge:
    src: str
    dst: str
    role: str = "flow"  # "skip": the shallower input of a merge (a shortcut, a U-Net skip, an FPN lateral)


@dataclasses.dataclass
class Graph:
    nodes: dict  # id -> GraphNode, in topological order
    edges: list  # GraphEdge
    clusters: dict  # opened container path -> (kind, parent cluster path)
    collapsible: list  # container paths a person can open in this model
    opened: list  # of those, the ones open in this view

    def inputs(self, node_id: str) -> list:
        return [e.src for e in self.edges if e.dst == node_id]

    def outputs(self, node_id: str) -> list:
        return [e.dst for e in self.edges if e.src == node_id]

    def merges(self, kind: Optional[str] = None) -> list:
        return [n for n in self.nodes.values() if n.role == "merge" and (kind is None or n.kind == kind)]

    def by_path(self, path: str) -> list:
        return [n for n in self.nodes.values() if n.path == path and n.role not in ("merge", "resample")]


class _Tree:
    """The module-call tree of a flow, with what a view needs to know about each call.

    A module traced by torch.fx (torchvision's feature extractor: a backbone's stages) runs its leaves directly,
    so its stages and blocks were never called: they are put back as containers from the module paths, and each
    merge goes to the deepest module holding the layers that ran just before and just after it."""

    def __init__(self, flow: Flow):
        self.flow = flow
        self.nodes = list(flow.nodes)
        self._restore_containers()
        self.children: dict[int, list] = {}
        for n in self.nodes[1:]:
            self.children.setdefault(n.parent, []).append(n.id)
        for kids in self.children.values():
            kids.sort(key=lambda c: self.pos[c])
        self.content = {}  # node id -> does any leaf call or op run inside
        for n in sorted(self.nodes, key=lambda n: self.pos[n.id], reverse=True):
            self.content[n.id] = n.leaf or any(self.content.get(c) for c in self.children.get(n.id, []))
        self._sub: dict[int, set] = {}
        self.kind_of = {n.id: self._classify(n) for n in self.nodes if not n.leaf}
        self._repeated_blocks()

    def _restore_containers(self):
        self.pos = {n.id: float(n.id) for n in self.nodes}
        kinds = self.flow.kinds
        virtual: dict[str, int] = {}
        for i, n in enumerate(list(self.nodes)):
            if n.parent < 0 or n.id == INPUT:
                continue
            top = self.nodes[n.parent]
            if not top.kind.startswith("GraphModule"):
                continue
            path = n.path
            if n.is_op:  # the block of the layer run just before (a BasicBlock, not its downsample Sequential)
                before = next((m.path for m in reversed(self.flow.nodes[:i]) if not m.is_op
                               and m.path.startswith(top.path + ".") and m.id > top.id), "")
                inner = before.rsplit(".", 1)[0] if "." in before else ""
                up = inner
                while up and (kinds.get(up, "Module") in _GENERIC or _ROW.search(kinds.get(up, ""))):
                    up = up.rsplit(".", 1)[0] if "." in up else ""
                inner = up if up.startswith(top.path + ".") else inner
            else:
                inner = path.rsplit(".", 1)[0] if "." in path else ""
            parent = top.id
            base = top.path + "." if top.path else ""
            if not inner.startswith(base):
                continue
            parts = inner[len(base):].split(".") if inner != top.path else []
            for k in range(1, len(parts) + 1):
                vpath = base + ".".join(parts[:k])
                if vpath not in virtual:
                    v = FlowNode(len(self.nodes), kinds.get(vpath, "Module"), path=vpath, parent=parent,
                                 leaf=False)
                    self.nodes.append(v)
                    self.pos[v.id] = n.id - 0.5
                    virtual[vpath] = v.id
                parent = virtual[vpath]
            if parent != n.parent:
                self.nodes[n.id] = dataclasses.replace(n, parent=parent)
        made = set(virtual.values())
        for n in sorted(self.nodes, key=lambda n: self.pos[n.id]):  # a restored container's output: its last
            up = n.parent
            while up in made and n.shape is not None:
                self.nodes[up].shape = n.shape
                up = self.nodes[up].parent

    def _repeated_blocks(self):
        """A model with no stages (Inception's Mixed_5b…, MobileNet's features.1…): each of its repeated
        top-level blocks with a merge inside is one node by default ("block"), opened on request."""
        root = next((n.id for n in self.nodes if n.parent == -1 and n.id != INPUT), None)
        if root is None:
            return
        def merges(k):
            return any(self.nodes[m].is_op for m in self.subtree(k))

        # stages of blocks that merge (ResNet's layer1, a composition's backbone), not a branch's two convs
        stages = {nid for nid, k in self.kind_of.items() if k == "stage" and nid != root and merges(nid)}
        tops = [c for c in self.calls(root) if not self.nodes[c].leaf]
        levels = [tops] + [self.calls(t) for t in tops if self.kind_of.get(t) == "open"]
        blocks = []
        for kids in levels:
            kinds = Counter(self.nodes[k].kind for k in kids if not self.nodes[k].leaf)
            merging = {self.nodes[k].kind for k in kids if merges(k)}
            found = [k for k in kids if self.kind_of.get(k) in ("open", "stage") and self.nodes[k].kind in merging
                     and self.nodes[k].kind not in _GENERIC and not (self.subtree(k) & stages)]
            if len(found) >= 3 and any(kinds[self.nodes[k].kind] >= 2 for k in found):  # a row of blocks, some
                blocks += found  # repeated (Inception's Mixed_5b…7c), not a composition's backbone / neck / head
        inside = set().union(*(self.subtree(b) for b in blocks)) if blocks else set()
        if stages - inside:
            return  # a model with stages (a ResNet, a composition's backbone): the stages are the default view
        for b in blocks:
            self.kind_of[b] = "block"

    def subtree(self, nid: int) -> set:
        if nid not in self._sub:
            out = {nid}
            for c in self.children.get(nid, []):
                out |= self.subtree(c)
            self._sub[nid] = out
        return self._sub[nid]

    def calls(self, nid: int) -> list:
        return [c for c in self.children.get(nid, []) if not self.nodes[c].is_op]

    def ops(self, nid: int) -> list:
        return [c for c in self.children.get(nid, []) if self.nodes[c].is_op]

    def _chained(self, kids: list) -> bool:
        """Each child reads what the one before it made (a plain sequence, no branch)."""
        for prev, cur in zip(kids, kids[1:]):
            made = self.subtree(prev)
            chains = [c for m in self.subtree(cur) for p in self.nodes[m].inputs for c in p]
            if not any(e in made for c in chains for e in c):
                return False
        return True

    def _classify(self, n: FlowNode) -> str:
        """"stage": repeated blocks in a row (layer1 of a ResNet); "layer": a row of layers (conv–BN–ReLU, VGG's
        features); "single": a wrapper of one layer; "open": anything else (a block with a merge, a head)."""
        kids = self.calls(n.id)
        if not kids or not self._chained(kids):
            return "single" if len(kids) == 1 and self.nodes[kids[0]].leaf and not self.ops(n.id) else "open"
        if len(kids) >= 2 and not any(self.nodes[k].leaf for k in kids) \
                and len({self.nodes[k].kind for k in kids}) == 1:
            return "stage"  # (a DenseNet block's closing concat may run in the stage itself)
        if self.ops(n.id):
            return "open"
        if all(self.nodes[k].leaf for k in kids):
            return "single" if len(kids) == 1 else "layer"
        return "open"


def collapsible(flow: Flow) -> list:
    """Paths of the containers drawn as one node by default that a person can open (stages, rows of layers),
    outermost only, in call order, each once."""
    tree = _Tree(flow)
    out = []
    for n in tree.nodes:
        if n.leaf or n.parent == -1 or not tree.content[n.id] or not (
                tree.kind_of[n.id] in ("stage", "block")
                or (tree.kind_of[n.id] == "layer" and len(tree.calls(n.id)) > 4)):
            continue  # a short row (conv–BN–ReLU) draws as one node either way
        anc, hidden = n.parent, False
        while anc >= 0 and tree.nodes[anc].parent >= 0:  # the root call is never one node
            if tree.kind_of.get(anc) in ("stage", "layer", "single", "block"):
                hidden = True
                break
            anc = tree.nodes[anc].parent
        if not hidden and n.path not in out:
            out.append(n.path)
    return out


def graph_view(flow: Flow, layers: Optional[list] = None, open_paths: Iterable[str] = (),
               open_all: bool = False) -> Graph:
    """The nodes and edges of one view. ``layers``: the analysis' rows (for parameters and MACs per node);
    ``open_paths``: containers drawn as their layers; ``open_all``: every container opened."""
    tree = _Tree(flow)
    nodes = tree.nodes
    open_paths = set(open_paths)
    rows = {r.name: r for r in (layers or [])}

    def collapsed(nid: int) -> bool:
        n = nodes[nid]
        k = tree.kind_of.get(nid)
        if k == "single":
            return True
        return k in ("stage", "layer", "block") and not open_all and n.path not in open_paths

    # disp: the node a flow node is drawn as (its outermost collapsed ancestor, or itself if a leaf / an op).
    ordered = sorted(nodes[1:], key=lambda n: tree.pos[n.id])  # parents before children
    disp: dict[int, Optional[int]] = {INPUT: INPUT}
    for n in ordered:
        up = disp.get(n.parent) if n.parent >= 0 else None
        if up is not None:
            disp[n.id] = up  # inside a collapsed container (or a leaf's own ops)
        elif n.leaf or (n.parent >= 0 and tree.content[n.id] and collapsed(n.id)):
            disp[n.id] = n.id  # the root call is never one node
        else:
            disp[n.id] = None  # an opened container: its children are drawn

    def source(chain: tuple) -> Optional[int]:
        for e in reversed(chain):
            d = disp.get(e)
            if d is not None:
                return d
        return None

    shown = sorted({d for d in disp.values() if d is not None}, key=lambda d: tree.pos[d])
    edges: dict[tuple, None] = {}
    for n in ordered:
        d = disp.get(n.id)
        if d is None:
            continue
        for p in n.inputs:
            for chain in p:
                s = source(chain)
                if s is not None and s != d:
                    edges[(s, d)] = None
    OUT = -1
    for p in flow.outputs:
        for chain in p:
            s = source(chain)
            if s is not None:
                edges[(s, OUT)] = None

    # Clusters: the opened containers a drawn node sits in.
    def cluster_of(nid: int) -> str:
        anc = nodes[nid].parent
        while anc >= 0 and nodes[anc].parent >= 0:  # the root call is the page itself, not a cluster
            if disp.get(anc) is None:
                return nodes[anc].path + (f" #{nodes[anc].index}" if nodes[anc].index > 1 else "")
            anc = nodes[anc].parent
        return ""

    def costs(nid: int):
        params = macs = 0
        for s in tree.subtree(nid):
            r = rows.get(nodes[s].label)
            if r is not None and not nodes[s].is_op:
                params += r.params
                macs += r.macs
        return params, macs

    graph_nodes: dict[str, GraphNode] = {}
    ids = {INPUT: "input", OUT: "output"}
    graph_nodes["input"] = GraphNode("input", "input", "Input", "io", nodes[0].shape, order=0)
    clusters: dict[str, tuple] = {}
    for order, nid in enumerate(shown[1:], 1):
        n = nodes[nid]
        gid = f"n{nid}"
        ids[nid] = gid
        params, macs = costs(nid)
        if n.is_op:
            role = "merge" if n.kind != "resample" else "resample"
        elif n.leaf:
            role = "layer"
        else:
            role = "stage" if tree.kind_of[nid] == "stage" else "block"
        blocks, kind, detail = "", n.kind, n.detail
        if not n.leaf:
            kids = [nodes[k] for k in tree.calls(nid)]
            if tree.kind_of[nid] == "single":
                kind, detail, role = kids[0].kind, kids[0].detail, "layer"
            elif tree.kind_of[nid] != "block":  # a block is named by its class alone
                blocks = _content(kids)
                detail = kids[0].detail if tree.kind_of[nid] == "layer" else ""
        cl = cluster_of(nid)
        graph_nodes[gid] = GraphNode(gid, n.path, kind, role, n.shape, params, macs, blocks,
                                     detail=detail, cluster=cl, order=order)
        # Register the clusters up to the top.
        anc = nodes[nid].parent
        while anc >= 0 and nodes[anc].parent >= 0:
            if disp.get(anc) is None:
                key = nodes[anc].path + (f" #{nodes[anc].index}" if nodes[anc].index > 1 else "")
                parent_cluster = cluster_of(anc)
                clusters.setdefault(key, (nodes[anc].kind, parent_cluster))
            anc = nodes[anc].parent
    out_shapes = [nodes[s].shape for s, d in edges if d == OUT]
    graph_nodes["output"] = GraphNode("output", "output", "Output", "io", out_shapes[0] if len(out_shapes) == 1
                                      else None, order=len(shown) + 1)
    edge_list = [GraphEdge(ids[s], ids[d]) for s, d in edges if s in ids and d in ids]
    _fold(graph_nodes, edge_list)
    _mark_skips(graph_nodes, edge_list)
    opened = [p for p in collapsible(flow) if open_all or p in open_paths]
    return Graph(graph_nodes, edge_list, clusters, collapsible(flow), opened)


def _content(kids: list) -> str:
    """A collapsed container's content: "2× BasicBlock", or "Conv2d · BatchNorm2d · ReLU" for a short row."""
    kinds = [k.kind for k in kids]
    if len(set(kinds)) == 1 and len(kinds) > 1:
        return f"{len(kinds)}× {kinds[0]}"
    if len(kinds) <= 4:
        return " · ".join(kinds)
    counts = Counter(kinds)
    return ", ".join(f"{v}× {k}" for k, v in counts.most_common())


def _fold(nodes: dict, edges: list) -> None:
    """Fold each BatchNorm / activation layer into the node before it, where it is that node's only reader and in
    the same cluster (conv → BN → ReLU draws as one node)."""
    ins: dict[str, list] = {}
    outs: dict[str, list] = {}
    for e in edges:
        ins.setdefault(e.dst, []).append(e)
        outs.setdefault(e.src, []).append(e)
    for gid in list(nodes):
        n = nodes[gid]
        if n.role != "layer" or not FOLDED.search(n.kind):
            continue
        srcs = ins.get(gid, [])
        if len(srcs) != 1:
            continue
        p = nodes[srcs[0].src]
        if p.role in ("io", "stage", "block") or len(outs.get(p.id, [])) != 1 or p.cluster != n.cluster:
            continue
        p.folded += [n.kind] + n.folded
        p.params += n.params
        p.macs += n.macs
        p.shape = n.shape
        edges.remove(srcs[0])
        outs[p.id] = []
        for e in outs.get(gid, []):
            e.src = p.id
            outs[p.id].append(e)
        del nodes[gid]


def _mark_skips(nodes: dict, edges: list) -> None:
    """Of a merge's two inputs, the one from fewer layers deep is its skip path (a shortcut, a U-Net skip, an FPN
    lateral)."""
    order = list(nodes)
    depth = {gid: 0 for gid in order}
    ins: dict[str, list] = {}
    for e in edges:
        ins.setdefault(e.dst, []).append(e)
    for gid in order:  # nodes are in topological order (creation order)
        for e in ins.get(gid, []):
            depth[gid] = max(depth[gid], depth[e.src] + 1)
    for gid in order:
        n = nodes[gid]
        if n.role != "merge" or len(ins.get(gid, [])) != 2:
            continue  # a concat of many levels has no shortcut
        deepest = max(depth[e.src] for e in ins[gid])
        for e in ins[gid]:
            if depth[e.src] < deepest:
                e.role = "skip"
