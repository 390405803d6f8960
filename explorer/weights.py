"""Weights for the explorer's models: torchvision's published ones, uploaded files and the bundled ready models.

Why this module is careful:

* A ``.pt``/``.pth`` file is a pickle, and unpickling runs whatever code the file names. Uploads are therefore
  read only as safetensors (no code at all) or with ``torch.load(..., weights_only=True)``, whose restricted
  unpickler refuses every global that is not a tensor building block (DESIGN.md, "Security"). The format is
  recognised by the bytes, never by the file name.
* Loading is strict: the file's keys, shapes and dtypes are compared with ``model.state_dict()`` first, and a
  file that does not fit raises ``WeightsError`` with one sentence a person can act on plus a table
  (``.mismatches``) of every missing, unexpected or wrong-shaped tensor. Only a file that fits completely is
  loaded, so a failed load leaves the model exactly as it was.
* Pretrained torchvision weights live where torchvision itself keeps them (``torch.hub.get_dir()/checkpoints``,
  so ``TORCH_HOME`` is honoured and a file placed there by hand is found). Loading never downloads;
  ``download_pretrained`` is the one explicit, streamed, hash-checked download, and when it fails the message
  says exactly where to put the file so an offline machine can still use it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.client
import io
import json
import os
import pathlib
import pickle
import pickletools
import re
import socket
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from typing import Callable
from urllib.parse import urlparse

import torch
from torch import nn

from . import catalog
from .images import display_name

__all__ = [
    "WeightsError", "Mismatch", "WeightsReport", "ReadyModel", "READY_MODELS", "MAX_UPLOAD_BYTES",
    "read_state_dict", "load_weights", "categories", "weights_entry", "cache_dir", "cached_path",
    "download_pretrained", "offline_hint", "load_pretrained", "load_pretrained_backbone", "ready_model",
]

MAX_UPLOAD_BYTES = 600 * 2**20  # larger than any CNN in the catalog saved in float32, except the huge ViTs
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "weights")  # training checkpoints nest the weights
MAX_NESTING = 4  # checkpoint dicts inside each other: real ones nest once or twice
PREFIXES = ("module.", "_orig_mod.")  # added by DataParallel/DDP and torch.compile
AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")  # GoogLeNet / Inception v3 auxiliary classifiers
DOWNLOAD_CHUNK = 1 << 20
_ASSETS = pathlib.Path(__file__).resolve().parents[1] / "assets" / "weights"


# -- results and errors ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Mismatch:
    """One row of the mismatch table."""
    key: str
    problem: str  # "missing" | "unexpected" | "wrong shape" | "wrong dtype"
    expected: str  # "64×3×7×7" (with the dtype for dtype rows), or "—"
    found: str


class WeightsError(ValueError):
    """Weights that cannot be read or do not fit; the message is one sentence saying what to change."""

    def __init__(self, message: str, mismatches: list[Mismatch] | None = None):
        super().__init__(message)
        self.mismatches: list[Mismatch] = list(mismatches or [])


@dataclasses.dataclass
class WeightsReport:
    source: str  # file name, "torchvision ResNet18_Weights.IMAGENET1K_V1", or the bundled file's path
    format: str  # "safetensors" | "PyTorch (weights_only)" | "PyTorch legacy (weights_only)"
    tensors: int
    values: int
    notes: list[str] = dataclasses.field(default_factory=list)
    part: str | None = None  # the part of the model the file was loaded into ("the resnet18 backbone"), if not all
    random_parts: list[str] = dataclasses.field(default_factory=list)  # what then keeps its random weights

    def summary(self) -> str:
        if self.part is None:
            return f"Loaded {self.tensors:,} tensors ({self.values:,} values) from {self.source}."
        rest = " and ".join(self.random_parts)
        stays = f"; the {rest} stay{'s' if len(self.random_parts) == 1 else ''} random" if rest else ""
        return f"Loaded {self.tensors:,} tensors ({self.values:,} values) into {self.part} from {self.source}{stays}."


def _shape(t: torch.Tensor) -> str:
    return "×".join(map(str, t.shape)) if t.dim() else "scalar"


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _size(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


# -- reading a file ----------------------------------------------------------------------------------------------
def _kind(data: bytes) -> str:
    """'safetensors', 'zip', 'pickle' or 'unknown', from the bytes alone."""
    if data[:2] == b"PK":
        return "zip"
    if data[:1] == b"\x80":
        return "pickle"
    if len(data) >= 9 and data[8:9] == b"{":  # 8-byte little-endian header length, then the JSON header
        return "safetensors"
    return "unknown"


def _pickle_strings(data: bytes, kind: str) -> set[str]:
    """The strings inside the file's pickle(s), read with pickletools (disassembly only: nothing is executed)."""
    found: set[str] = set()
    try:
        if kind == "zip":
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
        stream = io.BytesIO(data)
        while stream.tell() < len(data):  # the legacy format is several pickles, then the raw tensor data
            for _, arg, _ in pickletools.genops(stream):
                if isinstance(arg, str):
                    found.add(arg)
    except Exception:  # damaged, or the raw tensor data after the legacy pickles: keep what was read
        pass
    return found


def _torch_load(data: bytes, name: str, kind: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the answer is the same
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "truncated" in str(e):
            raise WeightsError(f"{name} is truncated or damaged (it cannot be read as a PyTorch file); save it "
                               "again and upload the complete file.") from None
        if {"_modules", "_parameters"} <= _pickle_strings(data, kind):
            raise WeightsError(f"{name} is a whole pickled model (torch.save(model)), which could run code when "
                               "opened; save model.state_dict() instead, or use safetensors.") from None
        raise WeightsError(f"{name} contains Python objects other than tensors, which could run code when "
                           "opened, so it was not loaded; save model.state_dict() or use safetensors.") from None
    except Exception:  # untrusted bytes: any other failure means the file is damaged
        raise WeightsError(f"{name} is truncated or damaged (it cannot be read as a PyTorch file); save it again "
                           "and upload the complete file.") from None


def _unwrap(obj, name: str, notes: list[str]) -> dict:
    """The flat ``{key: tensor}`` dict inside a loaded object (checkpoints nest it under 'state_dict' etc.)."""
    for _ in range(MAX_NESTING + 1):
        key = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None) if isinstance(obj, dict) else None
        if key is None:
            break
        notes.append(f"weights taken from the checkpoint's '{key}' entry")
        obj = obj[key]
    else:  # a pickle can hold a dict that contains itself; real checkpoints nest once or twice
        raise WeightsError(f"{name} nests its weights more than {MAX_NESTING} levels deep (under "
                           f"{', '.join(repr(k) for k in WRAPPER_KEYS)}); save model.state_dict() and upload that.")
    if not isinstance(obj, dict):
        raise WeightsError(f"{name} holds a {type(obj).__name__}, not a dictionary of tensors; save "
                           "model.state_dict() and upload that.")
    if not obj:
        raise WeightsError(f"{name} holds no tensors; save model.state_dict() of a model and upload that.")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise WeightsError(f"{name} holds a non-tensor value ({type(value).__name__}) under {key!r}; save only "
                               "model.state_dict() (or use safetensors) and upload that.")
        if value.layout != torch.strided or value.is_quantized or value.device.type != "cpu":
            raise WeightsError(f"{name} holds a sparse, quantized or data-less tensor under {key!r}; save the "
                               "ordinary float weights with model.state_dict() and upload that.")
    return dict(obj)


def _is_finite(t: torch.Tensor) -> bool:
    # A NaN or infinity anywhere makes the sum non-finite; the sum is much cheaper than a full mask and only a
    # non-finite sum (possibly an overflow of large finite values) needs the exact check.
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _check_finite(state_dict: dict, name: str) -> None:
    bad = {k: int((~torch.isfinite(t)).sum()) for k, t in state_dict.items()
           if (t.is_floating_point() or t.is_complex()) and not _is_finite(t)}
    if bad:
        first = next(iter(bad))
        others = f" and {len(bad) - 1:,} more tensor{'s' if len(bad) > 2 else ''}" if len(bad) > 1 else ""
        raise WeightsError(f"{name} contains NaN or infinite values ({bad[first]:,} in '{first}'{others}); upload "
                           "weights from a training run that did not diverge.")


def _read(data: bytes, filename: str) -> tuple[dict, str, list[str]]:
    """(state dict, format, notes) for the file's bytes; raises WeightsError for anything unsafe or unusable."""
    name = display_name(filename)
    if len(data) == 0:
        raise WeightsError(f"{name} is empty (0 bytes); upload the weights file again.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise WeightsError(f"{name} is {_size(len(data))}, more than the {_size(MAX_UPLOAD_BYTES)} this app "
                           "accepts; upload the weights of a smaller model.")
    kind, notes = _kind(data), []
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load as load_safetensors

        header_len = int.from_bytes(data[:8], "little")
        try:
            if header_len > len(data) - 8:
                raise ValueError("header longer than the file")
            state_dict, fmt = dict(sorted(load_safetensors(data).items())), "safetensors"  # a stable order
        except (SafetensorError, ValueError, RuntimeError):
            raise WeightsError(f"{name} is a truncated or damaged safetensors file; save it again and upload the "
                               "complete file.") from None
    elif kind in ("zip", "pickle"):
        fmt = "PyTorch (weights_only)" if kind == "zip" else "PyTorch legacy (weights_only)"
        state_dict = _torch_load(data, name, kind)
    else:
        raise WeightsError(f"{name} is neither a safetensors nor a PyTorch weights file; upload a .safetensors "
                           "file or a .pt/.pth saved with torch.save(model.state_dict(), path).")
    state_dict = _unwrap(state_dict, name, notes)
    _check_finite(state_dict, name)
    return state_dict, fmt, notes


def read_state_dict(data: bytes, filename: str) -> dict[str, torch.Tensor]:
    """The tensors of an uploaded ``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin`` file, validated (no model yet)."""
    return _read(data, filename)[0]


# -- fitting a state dict to a model -----------------------------------------------------------------------------
def _strip_prefixes(state_dict: dict, model_keys, notes: list[str]) -> dict:
    stripped = True
    while stripped:
        stripped = False
        for prefix in PREFIXES:
            in_file = bool(state_dict) and all(k.startswith(prefix) for k in state_dict)
            if in_file and not all(k.startswith(prefix) for k in model_keys):
                state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
                notes.append(f"prefix '{prefix}' removed")
                stripped = True
    return state_dict


def _mismatches(state_dict: dict, expected: dict) -> list[Mismatch]:
    missing, unexpected = expected.keys() - state_dict.keys(), state_dict.keys() - expected.keys()
    rows = [Mismatch(k, "missing", _shape(expected[k]), "—") for k in sorted(missing)]
    rows += [Mismatch(k, "unexpected", "—", _shape(state_dict[k])) for k in sorted(unexpected)]
    shared = sorted(expected.keys() & state_dict.keys())
    rows += [Mismatch(k, "wrong shape", _shape(expected[k]), _shape(state_dict[k]))
             for k in shared if state_dict[k].shape != expected[k].shape]
    for k in shared:  # integer/bool data where the model has floats (or the reverse) cannot be converted safely
        want, got = expected[k], state_dict[k]
        if got.shape == want.shape and (want.is_floating_point() != got.is_floating_point()
                                        or want.is_complex() != got.is_complex()):
            rows.append(Mismatch(k, "wrong dtype", f"{_shape(want)} {_dtype(want.dtype)}",
                                 f"{_shape(got)} {_dtype(got.dtype)}"))
    return rows


def _convert_dtypes(state_dict: dict, expected: dict, notes: list[str]) -> dict:
    """Floats of another precision (fp16, bf16, fp64) become the model's dtype; the report says how many."""
    converted: dict[tuple, int] = {}
    out = {}
    for k, t in state_dict.items():
        want = expected[k].dtype
        if t.dtype != want:
            if t.is_floating_point():
                converted[(_dtype(t.dtype), _dtype(want))] = converted.get((_dtype(t.dtype), _dtype(want)), 0) + 1
            t = t.to(want)
        out[k] = t
    for (src, dst), n in sorted(converted.items()):
        notes.append(f"{n:,} {src} tensor{'s' if n != 1 else ''} converted to {dst}")
    return out


def _counts(rows: list[Mismatch]) -> str:
    """ "3 missing, 2 unexpected and 1 wrong-shaped tensors" """
    labels = {"missing": "missing", "unexpected": "unexpected", "wrong shape": "wrong-shaped",
              "wrong dtype": "wrong-dtype"}
    parts = [f"{n:,} {label}" for problem, label in labels.items() if (n := sum(r.problem == problem for r in rows))]
    noun = "tensor" if len(rows) == 1 else "tensors"
    return (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]) + " " + noun


def _backbone_only(state_dict: dict, model_keys, parts: dict) -> tuple | None:
    """(key prefix, what it is) of the part of the model the file fits ("backbone.body.", "the resnet18 backbone"
    when a catalog model's state dict is uploaded into a composition: ``parts`` names such prefixes), or None."""
    prefixes = {m[: i + 1] for m in model_keys for i, c in enumerate(m) if c == "." and m[i + 1:] in state_dict}
    for prefix in sorted(prefixes, key=len):
        part = {m for m in model_keys if m.startswith(prefix)}
        matched = {prefix + k for k in state_dict if prefix + k in part}
        # The file is that part, or holds all of it plus a little more (a catalog model's classifier).
        if len(matched) == len(state_dict) or (matched == part and 2 * len(matched) > len(state_dict)):
            return prefix, parts.get(prefix, f"the '{prefix.rstrip('.')}' part")
    return None


def _fit_and_load(model: nn.Module, state_dict: dict, name: str, source: str, fmt: str, notes: list[str],
                  action: str | None = None, network=None) -> WeightsReport:
    """Strict load of ``state_dict`` into ``model`` after every check; nothing is changed unless all fit.
    ``action`` replaces "upload weights saved from this same model" in the refusal; ``network`` (an
    `explorer.network.Network`) names what the model is ("this composition") and its parts."""
    expected = model.state_dict()
    state_dict = _strip_prefixes(state_dict, expected.keys(), notes)
    rows = _mismatches(state_dict, expected)
    if rows:
        what = network.noun if network is not None else "model"
        parts = dict(network.weight_parts) if network is not None else {}
        found = None if action else _backbone_only(state_dict, expected.keys(), parts)
        if found and found[0] in parts:  # e.g. torchvision's resnet18 state dict into a resnet18 composition
            return _load_part(model, found, state_dict, name, source, fmt, notes, what)
        part = found[1] if found else None
        if part:
            raise WeightsError(f"{name} holds weights for {part} alone, not this whole {what} ({_counts(rows)}, "
                               f"table below); upload weights saved from this same {what}, or use pretrained "
                               "backbone weights instead.", rows)
        action = action or f"upload weights saved from this same {what}"
        raise WeightsError(f"{name} does not fit this {what}: {_counts(rows)} (table below); {action}.", rows)
    state_dict = _convert_dtypes(state_dict, expected, notes)
    _check_finite(state_dict, name)  # a float64 value too large for float32 becomes inf
    try:
        with torch.no_grad():
            model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:  # not expected after the checks above; keep the promise of one sentence
        raise WeightsError(f"{name} could not be loaded ({str(e).splitlines()[0]}); upload weights saved from "
                           "this same model.") from None
    values = sum(t.numel() for t in state_dict.values())
    return WeightsReport(source=source, format=fmt, tensors=len(state_dict), values=values, notes=notes)


def _load_part(model: nn.Module, found: tuple, state_dict: dict, name: str, source: str, fmt: str, notes: list,
               what: str) -> WeightsReport:
    """A file that is one named part of the model (a catalog model's state dict, classifier or not, for the
    backbone of a composition): loaded strictly into that part; the rest keeps its random weights, and the report
    says so. A file that covers the part only in half is refused with its table."""
    prefix, part = found
    body = model.get_submodule(prefix.rstrip("."))
    body_keys = body.state_dict().keys()
    used = {k: v for k, v in state_dict.items() if k in body_keys}
    unused = len(state_dict) - len(used)
    report = _fit_and_load(body, used, name, source, fmt, notes,
                           action=f"upload the whole state dict of {part} or weights saved from this same {what}")
    report.part = part
    random = [p for p, m in model.named_children() if not prefix.startswith(p + ".")
              and any(True for _ in m.parameters())]
    report.random_parts = random
    if unused:
        report.notes.append(f"{unused:,} tensors of {name} beyond {part} (such as its classifier) not used")
    if random:
        report.notes.append(f"the {' and '.join(random)} keep{'s' if len(random) == 1 else ''} random weights "
                            "(untrained)")
    return report


def load_weights(model: nn.Module, data: bytes, filename: str, *, network=None) -> WeightsReport:
    """Load an uploaded file into ``model`` (strict); raises WeightsError and leaves the model unchanged if the
    file is unsafe, damaged or does not fit. ``network``: the `explorer.network.Network` the model was built
    for, so a refusal says "this composition" and names the part a file fits ("the resnet18 backbone")."""
    state_dict, fmt, notes = _read(data, filename)
    name = display_name(filename)
    return _fit_and_load(model, state_dict, name, name if filename else "the uploaded file", fmt, notes,
                         network=network)


# -- torchvision's pretrained weights ----------------------------------------------------------------------------
def weights_entry(name: str):
    """The torchvision WeightsEnum member for catalog model ``name`` (its default weights), or None."""
    if name not in catalog.names():
        return None
    enum_name = catalog.info(name).weights
    if enum_name is None:
        return None
    import torchvision

    return torchvision.models.get_weight(enum_name)


def categories(name: str) -> list[str] | None:
    """Class names published with the model's torchvision weights, or None."""
    entry = weights_entry(name)
    cats = entry.meta.get("categories") if entry is not None else None
    return list(cats) if cats else None


def cache_dir() -> pathlib.Path:
    """Where torchvision keeps downloaded weights (``$TORCH_HOME/hub/checkpoints``)."""
    return pathlib.Path(torch.hub.get_dir()) / "checkpoints"


def _file_name(entry) -> str:
    return os.path.basename(urlparse(entry.url).path)


def cached_path(name: str) -> pathlib.Path | None:
    """The file torchvision would load for ``name``, if it is already in the cache."""
    entry = weights_entry(name)
    if entry is None:
        return None
    path = cache_dir() / _file_name(entry)
    return path if path.is_file() else None


def _no_weights(name: str) -> WeightsError:
    if name == "custom":
        return WeightsError("A custom backbone has no published pretrained weights; upload a weights file for it "
                            "instead.")
    return WeightsError(f"{name} has no published pretrained weights; upload a weights file for it instead.")


def _place_clause(entry) -> str:
    return (f"download {entry.url} on a machine with internet and copy it into {cache_dir()} as "
            f"{_file_name(entry)} so the app finds it, and until then the app keeps working with random weights, "
            "labelled \"untrained\"")


def offline_hint(name: str) -> str:
    """One sentence: the exact directory and file name to put the weights at so the app finds them."""
    entry = weights_entry(name)
    if entry is None:
        return str(_no_weights(name))
    clause = _place_clause(entry)
    return clause[0].upper() + clause[1:] + "."


def _why(exc: BaseException) -> str:
    """A few words on why a download failed."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"the server answered HTTP {exc.code}"
    reason = getattr(exc, "reason", exc)
    text = (str(reason).splitlines() or [""])[0] or type(reason).__name__
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "the connection timed out"
    if isinstance(reason, socket.gaierror):
        return "no internet connection: the server name could not be resolved"
    if isinstance(exc, (urllib.error.URLError, http.client.HTTPException, ConnectionError)):
        return f"no connection: {text}"
    return f"the file could not be written: {text}"


def _hash_prefix(file_name: str) -> str | None:
    """The sha256 prefix torchvision embeds in file names ("resnet18-f37072fd.pth"), as torch.hub checks it."""
    match = re.search(r"-([a-f0-9]+)\.[^.-]+$", file_name)
    return match.group(1) if match else None


def download_pretrained(name: str, progress: Callable[[int, int], None] | None = None,
                        timeout: float = 30) -> pathlib.Path:
    """Download ``name``'s torchvision weights into the cache (streamed, sha256-checked, renamed into place
    atomically) and return the file; returns at once if the file is already there."""
    entry = weights_entry(name)
    if entry is None:
        raise _no_weights(name)
    file_name = _file_name(entry)
    target = cache_dir() / file_name
    if target.is_file():
        return target
    expected_hash = _hash_prefix(file_name)
    tmp_path = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        request = urllib.request.Request(entry.url, headers={"User-Agent": "cnn-architecture-explorer"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            sha256, done = hashlib.sha256(), 0
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{file_name}.", suffix=".partial",
                                             delete=False) as tmp:
                tmp_path = pathlib.Path(tmp.name)
                while chunk := response.read(DOWNLOAD_CHUNK):
                    tmp.write(chunk)
                    sha256.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        if total and done != total:
            raise WeightsError(f"Downloading {file_name} stopped after {_size(done)} of {_size(total)}; try again, "
                               f"or {_place_clause(entry)}.")
        if expected_hash and not sha256.hexdigest().startswith(expected_hash):
            raise WeightsError(f"Downloading {file_name} gave a damaged file (its sha256 does not start with "
                               f"{expected_hash}); try again, or {_place_clause(entry)}.")
        os.replace(tmp_path, target)
        tmp_path = None
        return target
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:  # HTTP, DNS, timeout, reset, disk
        raise WeightsError(f"Downloading {file_name} failed ({_why(e)}); {_place_clause(entry)}.") from None
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def _torchvision_state_dict(name: str) -> tuple[dict, str, str]:
    """(state dict, source, file name) of the cached torchvision file for ``name``; never downloads."""
    entry = weights_entry(name)
    if entry is None:
        raise _no_weights(name)
    path = cached_path(name)
    if path is None:
        raise WeightsError(f"The pretrained weights for {name} are not downloaded yet; download them, or "
                           f"{_place_clause(entry)}.")
    try:
        state_dict = _unwrap(torch.load(path, map_location="cpu", weights_only=True), path.name, [])
    except Exception:  # a hand-placed file may be anything
        raise WeightsError(f"The cached file {path} is damaged or not a weights file; delete it and download the "
                           f"weights for {name} again.") from None
    if name.startswith("densenet"):  # torchvision renames DenseNet's old keys ("norm.1" -> "norm1") the same way
        pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|"
                             r"running_var))$")
        state_dict = {(m.group(1) + m.group(2) if (m := pattern.match(k)) else k): v for k, v in state_dict.items()}
    return dict(state_dict), f"torchvision {entry}", _file_name(entry)


def _fill_step_counters(state_dict: dict, expected, notes: list[str]) -> dict:
    """Older published files (DenseNet's) predate BatchNorm's ``num_batches_tracked``; like BatchNorm's own loader
    for such files, start those counters at 0."""
    absent = [k for k in expected if k.endswith(".num_batches_tracked") and k not in state_dict
              and k.removesuffix("num_batches_tracked") + "running_mean" in state_dict]
    if absent:
        state_dict = {**state_dict, **{k: torch.zeros((), dtype=torch.long) for k in absent}}
        notes.append(f"{len(absent):,} BatchNorm step counters (num_batches_tracked) not in the file set to 0")
    return state_dict


def _redownload(name: str) -> str:
    return f"delete {cache_dir() / _file_name(weights_entry(name))} and download the weights for {name} again"


def load_pretrained(model: nn.Module, name: str) -> WeightsReport:
    """Load torchvision's weights for catalog model ``name`` into ``model`` (built by ``catalog.build(name)``),
    from the cache only."""
    state_dict, source, file_name = _torchvision_state_dict(name)
    notes: list[str] = []
    model_keys = model.state_dict().keys()
    aux = [k for k in state_dict if k.startswith(AUX_PREFIXES) and k not in model_keys]
    if aux:  # the catalog builds GoogLeNet / Inception v3 without the auxiliary classifiers, as torchvision does
        state_dict = {k: v for k, v in state_dict.items() if k not in aux}
        notes.append(f"{len(aux):,} tensors of the auxiliary classifiers (used only in training) left out")
    state_dict = _fill_step_counters(state_dict, model_keys, notes)
    report = _fit_and_load(model, state_dict, file_name, source, "PyTorch (weights_only)", notes,
                           action=f"build the model with catalog.build('{name}') or {_redownload(name)}")
    if getattr(model, "transform_input", None) is False and name in ("googlenet", "inception_v3"):
        model.transform_input = True  # these weights expect it, and torchvision turns it on with them
        report.notes.append("transform_input turned on, as torchvision does with these weights")
    return report


def load_pretrained_backbone(model: nn.Module, spec) -> WeightsReport:
    """Give a composed model's backbone the catalog model's torchvision weights (from the cache only); the neck
    and head keep their random initialisation, which the report's notes say."""
    from .spec import ArchitectureSpec

    if isinstance(spec, str):
        spec = ArchitectureSpec.from_json(spec)
    elif isinstance(spec, dict):
        spec = ArchitectureSpec.from_dict(spec)
    name = spec.backbone.name
    if spec.backbone.is_custom:
        raise WeightsError("A custom backbone has no published pretrained weights; upload a weights file saved "
                           "from this composition instead.")
    state_dict, source, file_name = _torchvision_state_dict(name)
    from .compose import STAGE_PREFIX

    body = model.get_submodule(STAGE_PREFIX.rstrip("."))  # where compose puts the catalog model's stages
    body_keys = body.state_dict().keys()
    used = {k: v for k, v in state_dict.items() if k in body_keys}  # the stages kept; all of them must be there
    unused = len(state_dict) - len(used)
    notes: list[str] = []
    used = _fill_step_counters(used, body_keys, notes)
    report = _fit_and_load(body, used, file_name, source, "PyTorch (weights_only)", notes, action=_redownload(name))
    if unused:
        report.notes.append(f"{unused:,} tensors of {name} beyond the chosen stages (such as its classifier) "
                            "not used")
    parts = [p for p in ("neck", "head") if any(True for _ in getattr(model, p).parameters())]
    if parts:
        report.notes.append(f"the {' and '.join(parts)} keep{'s' if len(parts) == 1 else ''} random weights "
                            "(untrained)")
    return report


# -- ready models: bundled, trained weights ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ReadyModel:
    name: str
    title: str
    catalog_name: str
    path: pathlib.Path
    classes: list[str]
    accuracy: float  # on the held-out test split, from the training record next to the weights
    description: str
    dataset: str  # the `explorer.samples.DIGIT_SETS` entry it was trained on (its samples and preprocessing)


def _ready(name: str, title: str, catalog_name: str, dataset: str) -> ReadyModel:
    """A bundled model from ``assets/weights/<name>.safetensors`` and the training record beside it."""
    from .samples import DIGIT_SETS

    path = _ASSETS / f"{name}.safetensors"
    record = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    accuracy = float(record["test_accuracy"])
    return ReadyModel(
        name=name, title=title, catalog_name=catalog_name, path=path, classes=[str(d) for d in range(10)],
        accuracy=accuracy, dataset=dataset,
        description=(f"{title}: {record.get('epochs', '?')} epochs on scikit-learn's handwritten digits "
                     f"({DIGIT_SETS[dataset].about}); {accuracy:.1%} correct on the held-out 20%."),
    )


READY_MODELS: dict[str, ReadyModel] = {m.name: m for m in (
    _ready("lenet5_digits", "LeNet-5 trained on digits", "lenet5", "digits"),
    # LeNet-5 flattens its last maps, so Grad-CAM cannot say where the digit is; this one averages them (GAP).
    _ready("gap_cnn_digits_canvas", "GAP CNN trained on digits placed on a canvas", "gap_cnn", "digits_on_canvas"),
)}


def ready_model(name: str) -> nn.Module:
    """The catalog model with the bundled trained weights loaded (through the same checks as uploads), in eval."""
    if name not in READY_MODELS:
        raise WeightsError(f"There is no ready model called '{name}'; choose one of {', '.join(READY_MODELS)}.")
    ready = READY_MODELS[name]
    model = catalog.build(ready.catalog_name, num_classes=len(ready.classes))
    state_dict, fmt, notes = _read(ready.path.read_bytes(), ready.path.name)
    _fit_and_load(model, state_dict, ready.path.name, f"assets/weights/{ready.path.name}", fmt, notes)
    return model.eval()

