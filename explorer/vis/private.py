"""Per-call private copies of a shared model, and taps that read any layer's output on such a copy.

Why: a model cached with ``st.cache_resource`` is used by many sessions (threads) at once. A forward hook
registered on it fires in every thread's forward, so one session's activations leak into another's (measured:
200 of 240 concurrent calls). Anything that needs hooks, state or a changed module therefore runs on
`private_copy`: new module objects around the very same parameter and buffer tensors (nothing copied, 7–25 ms).
Hooks and attributes set on the copy touch only the copy; the tensors stay shared, so nothing may write to them
(no ``.train()`` — BatchNorm would update the shared running statistics — and no ``requires_grad_`` on
parameters: gradients are taken for input tensors only).

`attach_taps` makes the output of a module path observable (and a hookable module of its own, for captum's
layer methods). For ordinary modules that is a forward hook on the copy. A catalog backbone inside a composed
model is a torchvision ``create_feature_extractor`` graph: its containers (``layer1``, ``features.3``) are empty
shells whose ``forward`` never runs, so their output is found the way torchvision finds return nodes (the last
graph node whose qualified name lies under the path) and an identity tap is spliced into the copy's graph there.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from typing import Callable, Optional

import torch
from torch import fx, nn

__all__ = ["private_copy", "Tap", "attach_taps", "first_tensor", "model_device_dtype"]


def private_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode whose modules are new objects sharing every parameter and buffer tensor.

    Hooks, attributes and flags set on the copy never reach ``model`` (safe while other threads run it); the
    weights are not duplicated. Eval mode is not optional: copying a torchvision feature-extractor graph resets
    it to *training* mode (its ``__deepcopy__`` re-runs ``__init__``), in which BatchNorm would write batch
    statistics into the running mean / var it shares with ``model``, and dropout would make maps random."""
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo=shared).eval()


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of the model's first floating-point parameter (else buffer); CPU float32 for a stateless one."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def first_tensor(out):
    """The first tensor in a (nested) tuple / list / dict output, or None."""
    if isinstance(out, torch.Tensor):
        return out
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else ()
    for v in values:
        t = first_tensor(v)
        if t is not None:
            return t
    return None


class Tap(nn.Module):
    """Identity that reports what passes through it: ``callback(path, value)``. Lives on a private copy only;
    being a module of its own, captum's layer methods can hook it like any layer."""

    def __init__(self, path: str, callback: Optional[Callable] = None) -> None:
        super().__init__()
        self.path = path
        self.callback = callback

    def forward(self, x):
        if self.callback is not None:
            self.callback(self.path, x)
        return x


# -- feature-extractor graphs ------------------------------------------------------------------------------------
_TAP_PREFIX = "_explorer_tap_"


@lru_cache(maxsize=128)
def _traced_qualnames(name: str) -> dict:
    """fx node name -> torchvision qualified name ("layer1.0.add") for catalog model ``name`` in eval mode.

    ``create_feature_extractor`` traced exactly this model with the same tracer, so node names agree; the meta
    build costs no memory. Empty when the model does not trace."""
    from .. import catalog
    from ..tracing import node_qualnames

    try:
        return node_qualnames(catalog.build_meta(name).eval())
    except Exception:  # noqa: BLE001 - any tracing failure: fall back to the neighbour rule
        return {}


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def _common(a: str, b: str) -> str:
    out = []
    for x, y in zip(a.split("."), b.split(".")):
        if x != y:
            break
        out.append(x)
    return ".".join(out)


def _qualnames(gm: fx.GraphModule, origin: Optional[str]) -> dict:
    """fx node -> qualified module path (relative to ``gm``) for every computing node of ``gm``'s graph;
    ``origin``: the catalog model ``gm`` was traced from, if known."""
    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    traced = _traced_qualnames(origin) if origin else {}
    if traced and all(n.name in traced for n in nodes):
        return {n: traced[n.name] for n in nodes}
    # Unknown origin: a call of a module is that module; any other op belongs to the deepest container shared
    # by the module calls around it (a residual add at a block's end may be attributed one level too high).
    calls = [i for i, n in enumerate(nodes) if n.op == "call_module"]
    out = {}
    for i, n in enumerate(nodes):
        if n.op == "call_module":
            out[n] = str(n.target)
            continue
        before = [j for j in calls if j < i]
        after = [j for j in calls if j > i]
        a = _parent(str(nodes[before[-1]].target)) if before else ""
        b = _parent(str(nodes[after[0]].target)) if after else ""
        prefix = _common(a, b) if before and after else ""
        out[n] = f"{prefix}.{n.name}" if prefix else n.name
    return out


def _graph_owner(net: nn.Module, path: str):
    """(graph module path, graph module, path relative to it) when ``path`` is a container inlined in an fx
    graph (its forward never runs), else None (a forward hook on the module sees its output)."""
    parts = path.split(".") if path else []
    for i in range(len(parts) - 1, -1, -1):
        gm = net.get_submodule(".".join(parts[:i]))
        if isinstance(gm, fx.GraphModule):
            rel = ".".join(parts[i:])
            called = {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
            if any(rel == t or rel.startswith(t + ".") for t in called):
                return None  # called by the graph itself, or inside a module that is
            return ".".join(parts[:i]), gm, rel
    return None


def _splice(gm: fx.GraphModule, items: list, origin: Optional[str]) -> None:
    """Insert taps for ``items`` = [(relative path, Tap)] into ``gm``'s graph (a private copy's); a path with no
    node at all (never computed) gets no tap and so never reports."""
    qual = _qualnames(gm, origin)
    order = list(qual)
    ends: dict = {}
    for rel, tap in items:
        inside = [n for n in order if qual[n] == rel or qual[n].startswith(rel + ".")]
        if inside:
            ends.setdefault(inside[-1], []).append((rel, tap))
    graph = gm.graph
    count = sum(1 for name, _ in gm.named_children() if name.startswith(_TAP_PREFIX))
    for end, taps in ends.items():
        cur = end
        for rel, tap in sorted(taps, key=lambda t: -t[0].count(".")):  # inner containers finish first
            name = f"{_TAP_PREFIX}{count}"
            count += 1
            gm.add_submodule(name, tap)
            with graph.inserting_after(cur):
                node = graph.call_module(name, (cur,))
            cur.replace_all_uses_with(node, delete_user_cb=lambda user, node=node: user is not node)
            cur = node
    if ends:
        gm.recompile()


def attach_taps(net: nn.Module, paths, callback: Optional[Callable] = None,
                origins: Optional[dict] = None) -> dict:
    """Route the output of each module path of the private copy ``net`` through a `Tap` (returned by path).

    Must only be given a private copy. A module that runs several times reports each call. Raises ValueError
    naming an unknown path. ``origins``: fx graph module path -> the catalog model it was traced from
    (`explorer.network.Network.graph_origins`), whose node names place a tap exactly; without it a graph's
    containers are placed by their neighbours (a residual add at a block's end may fall one level too high)."""
    taps: dict = {}
    spliced: dict = {}
    for path in paths:
        try:
            module = net.get_submodule(path)
        except AttributeError:
            raise ValueError(f"The model has no layer '{path}'; pick one of its module paths, "
                             "e.g. from spatial_layers().") from None
        tap = taps[path] = Tap(path, callback)
        owner = _graph_owner(net, path)
        if owner is None:
            module.register_forward_hook(lambda m, args, out, tap=tap: tap(out))
        else:
            gm_path, gm, rel = owner
            spliced.setdefault(gm_path, (gm, []))[1].append((rel, tap))
    for gm_path, (gm, items) in spliced.items():
        _splice(gm, items, (origins or {}).get(gm_path))
    return taps

