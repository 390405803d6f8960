"""Take a composition out of the explorer: spec JSON, a standalone Python file, ONNX.

The standalone file carries the explorer's model code (no app, no streamlit) and the spec inside it, so it needs
only torch and torchvision: ``python model.py`` rebuilds the composed model and prints the same parameter count
the explorer shows; ``from model import build_model`` gives the module.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from . import components
from .spec import ArchitectureSpec

__all__ = ["ExportError", "spec_json", "standalone_python", "to_onnx"]

_PACKAGE = Path(__file__).resolve().parent
# The library minus what a rebuilt model does not need (UI glue, CLI, export itself).
_SKIP = {"ui", "__main__.py", "export.py"}


class ExportError(ValueError):
    """An export that cannot be done for this composition; the message says why and what works instead."""


def spec_json(spec: ArchitectureSpec) -> str:
    return spec.to_json(indent=2) + "\n"


def _sources() -> dict:
    out = {}
    for path in sorted(_PACKAGE.rglob("*.py")):
        rel = path.relative_to(_PACKAGE)
        if rel.parts[0] in _SKIP:
            continue
        parts = ("explorer",) + rel.with_suffix("").parts
        is_pkg = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_pkg else parts)
        out[name] = (is_pkg, path.read_text())
    return out


_LOADER = '''
import importlib
import importlib.abc
import importlib.util
import sys


class _Embedded(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports the explorer's model code from the strings above (nothing is written to disk)."""

    def find_spec(self, name, path=None, target=None):
        if name in SOURCES:
            return importlib.util.spec_from_loader(name, self, is_package=SOURCES[name][0])
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        is_pkg, src = SOURCES[module.__name__]
        if is_pkg:
            module.__path__ = []
        exec(compile(src, "<explorer:" + module.__name__ + ">", "exec"), module.__dict__)


if not any(isinstance(f, _Embedded) for f in sys.meta_path):
    sys.meta_path.insert(0, _Embedded())


def build_model():
    """The composed model (untrained) for SPEC."""
    from explorer.components.registry import PACKAGES
    from explorer.compose import build
    from explorer.spec import ArchitectureSpec

    # The registry finds its declaring modules on disk; embedded, they are imported here instead.
    for name in SOURCES:
        if name.rpartition(".")[0] in PACKAGES:
            importlib.import_module(name)

    return build(ArchitectureSpec.from_json(SPEC))


if __name__ == "__main__":
    import torch

    model = build_model().eval()
    params = sum(p.numel() for p in model.parameters())  # parameters() yields each tied tensor once
    print(f"parameters: {params:,}")
    spec = __import__("json").loads(SPEC)
    shape = (1, spec["input"]["channels"], spec["input"]["height"], spec["input"]["width"])
    with torch.no_grad():
        out = model(torch.randn(shape))
    if isinstance(out, torch.Tensor):
        print("output:", "x".join(map(str, out.shape)))
'''


def standalone_python(spec: ArchitectureSpec) -> str:
    """A single .py file that rebuilds the composition with only torch and torchvision installed."""
    head = (f'"""{spec.summary()} — exported by the CNN Architecture Explorer.\n\n'
            "Run `python this_file.py` to rebuild the model and print its parameter count, or\n"
            "`from this_file import build_model`. Needs only torch and torchvision.\n\"\"\"\n")
    body = "SPEC = " + repr(spec.to_json()) + "\n\nSOURCES = " + repr(_sources()) + "\n"
    return head + body + _LOADER


def to_onnx(spec: ArchitectureSpec, opset: int = 17) -> bytes:
    """ONNX bytes of the composed model (random weights), checked with ``onnx.checker``."""
    if components.get("head", spec.head.kind).fact("two_stage"):
        raise ExportError("Two-stage detectors (Faster R-CNN, Mask R-CNN) cannot be exported to ONNX here: their "
                          "region proposals depend on the data (top-k and NMS). Pick a YOLO-style or SSD head, "
                          "or export the spec and the Python file instead.")
    import onnx

    from .compose import build

    model = build(spec).eval()
    x = torch.randn((1,) + spec.input.shape)
    buf = io.BytesIO()
    try:
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset, input_names=["image"])
        proto = onnx.load_from_string(buf.getvalue())
        onnx.checker.check_model(proto)
    except Exception as e:  # an op ONNX has no form for: say which, keep the other exports available
        raise ExportError(f"This composition could not be exported to ONNX ({str(e).splitlines()[0][:160]}); "
                          "the spec and the Python file still work.") from None
    return buf.getvalue()
