"""torch.fx tracing that is safe while other sessions run models in other threads.

For the length of a trace torch.fx patches ``nn.Module.__call__`` and ``__getattr__`` on the class, process-wide.
A forward that another Streamlit session runs meanwhile is routed into the tracer and fails ("module is not
installed as a submodule"), and two traces at once corrupt fx's global patcher ("CURRENT_PATCHER is None in
finally block"). `bench/load.py` measured it: at 30 concurrent sessions 58 of 60 steps failed this way.

So here: traces run one at a time (a lock), and the tracer torchvision's ``create_feature_extractor`` uses hands
module calls and attribute reads made by any other thread straight back to the originals. Every trace in the
explorer goes through this module.
"""
from __future__ import annotations

import threading

from torch import nn
from torchvision.models import feature_extraction

__all__ = ["create_feature_extractor", "node_qualnames", "ThreadAwareNodePathTracer"]

_TRACE_LOCK = threading.RLock()


class ThreadAwareNodePathTracer(feature_extraction.NodePathTracer):
    """torchvision's tracer, tracing only in the thread that called ``trace``; other threads run untouched."""

    _owner: int | None = None

    def trace(self, root, concrete_args=None):
        self._owner = threading.get_ident()
        try:
            return super().trace(root, concrete_args)
        finally:
            self._owner = None

    def call_module(self, m, forward, args, kwargs):
        if threading.get_ident() != self._owner:
            return forward(*args, **kwargs)  # another session's forward: the original Module.__call__
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if threading.get_ident() != self._owner:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)


# create_feature_extractor looks the tracer class up in its module at call time.
feature_extraction.NodePathTracer = ThreadAwareNodePathTracer


def create_feature_extractor(model: nn.Module, return_nodes: dict) -> nn.Module:
    """torchvision's ``create_feature_extractor``, one trace at a time, harmless to other threads."""
    with _TRACE_LOCK:
        return feature_extraction.create_feature_extractor(model, return_nodes=return_nodes)


def node_qualnames(model: nn.Module) -> dict:
    """fx node name -> qualified name ("layer1.0.add") as ``create_feature_extractor`` names the nodes of
    ``model`` (traced as it is, in its current mode)."""
    with _TRACE_LOCK:
        tracer = ThreadAwareNodePathTracer(**feature_extraction._set_default_tracer_kwargs(None))
        tracer.trace(model)
    return {node.name: q for node, q in tracer.node_to_qualname.items()}
