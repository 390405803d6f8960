"""`predict(model, images)`: one timed, batched inference pass with the task's post-processing.

The model given here is *shared* (``st.cache_resource``: one instance, eval mode, gradients off, used by many
sessions and threads at once), so nothing here changes it: no hooks, no ``.train()``/``.eval()``, no moving its
parameters. On the CPU the model is used as it is; for another device a private copy is made once per
(model, device) and kept in a ``WeakKeyDictionary`` (it goes away with the model).

Devices, in order of preference: CUDA, then Apple MPS, then the CPU. Only CUDA gets the extras: pinned input
moved with ``non_blocking=True``, ``channels_last`` input and weights, and autocast in bfloat16 (float16 where
the GPU has no bfloat16). Post-processing is always done in float32.

Per task (the ``network``'s — an `explorer.network.Network` — or ``task=``; else guessed from the output):

``classification``  softmax probabilities and the top-k (index, label, probability) per image
``regression``      the values (N, outputs)
``detection``       boxes, scores and labels per image above ``score_threshold`` (``model.decode`` for YOLO /
                    SSD; Faster / Mask R-CNN decode themselves and are filtered here; labels 0-based)
``segmentation``    argmax class per pixel (N, H, W) and each image's class fractions
``similarity``      the embeddings and their N×N cosine similarity matrix
``outputs``         anything else: the raw output, moved to the CPU
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import re
import threading
import time
import weakref
from functools import cached_property, lru_cache
from typing import Any, Optional

import torch
from torch import nn

from .describe import describe_output, shape_text

__all__ = ["available_devices", "choose_device", "device_label", "Prediction", "predict", "TASKS"]

TASKS = ("classification", "regression", "detection", "segmentation", "similarity", "outputs")
_DEVICE_NAMES = {"cuda": "CUDA", "mps": "Apple MPS", "cpu": "CPU"}
_CPU = torch.device("cpu")


# -- devices -----------------------------------------------------------------------------------------------------
def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The device types this machine can run on, best first: ``cuda``, then ``mps``, then ``cpu``."""
    out = []
    if torch.cuda.is_available():
        out.append("cuda")
    if _mps_available():
        out.append("mps")
    out.append("cpu")
    return out


def choose_device(preference: str | torch.device | None = None) -> torch.device:
    """``None`` / ``"auto"``: the best available device; otherwise the one asked for (``"cuda:1"`` keeps its
    index). Raises ``ValueError`` with one sentence naming the available devices if it is not available here."""
    if preference == "cpu" or (isinstance(preference, torch.device) and preference.type == "cpu"):
        return _CPU  # always there; no need to ask the GPU runtimes
    available = available_devices()
    if preference is None or (isinstance(preference, str) and preference.strip().lower() in ("", "auto")):
        return torch.device(available[0])
    try:
        device = torch.device(preference.strip().lower() if isinstance(preference, str) else preference)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"There is no device called {preference!r}; choose auto or one of the available "
                         f"devices: {', '.join(available)}.") from None
    if device.type not in available:
        name = _DEVICE_NAMES.get(device.type, device.type)
        raise ValueError(f"{name} is not available on this machine; choose auto or one of the available "
                         f"devices: {', '.join(available)}.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"There is no GPU cuda:{device.index} (this machine has {torch.cuda.device_count()}); "
                         f"choose auto or one of the available devices: {', '.join(available)}.")
    return device


def _autocast_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def device_label(device: str | torch.device | None) -> str:
    """Human text for a device: "CPU (2 threads)", "CUDA — NVIDIA A100 (bf16 autocast)", "Apple MPS"."""
    device = torch.device(device) if device is not None else choose_device(None)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        precision = "bf16" if _autocast_dtype() == torch.bfloat16 else "fp16"
        return f"CUDA — {torch.cuda.get_device_name(index)} ({precision} autocast)"
    if device.type == "mps":
        return "Apple MPS"
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"CPU ({n} thread{'s' if n != 1 else ''})"
    return device.type


# -- the model on a device -----------------------------------------------------------------------------------------
_COPIES: "weakref.WeakKeyDictionary[nn.Module, dict[str, nn.Module]]" = weakref.WeakKeyDictionary()
_COPIES_LOCK = threading.Lock()


def _first_tensor(model: nn.Module, kind: str = "_parameters") -> Optional[torch.Tensor]:
    """The model's first parameter (else buffer) in ``parameters()`` order, found without building generators (this
    runs on every call, and a 1 ms model notices)."""
    for t in getattr(model, kind).values():
        if t is not None:
            return t
    for child in model._modules.values():
        if child is not None:
            t = _first_tensor(child, kind)
            if t is not None:
                return t
    return None


def _first_parameter_or_buffer(model: nn.Module) -> Optional[torch.Tensor]:
    t = _first_tensor(model)
    return t if t is not None else _first_tensor(model, "_buffers")


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    index = lambda d: d.index if d.index is not None else torch.cuda.current_device()  # noqa: E731
    return index(a) == index(b)


def _model_on(model: nn.Module, device: torch.device, first: Optional[torch.Tensor] = None) -> nn.Module:
    """The shared model itself when it already lives on ``device`` (the CPU case); otherwise a private copy made
    once per (model, device): ``deepcopy`` then ``.to(device)`` (``channels_last`` on CUDA). The shared model's
    parameters are never moved. ``first``: the model's first parameter, when the caller has it already."""
    first = first if first is not None else _first_parameter_or_buffer(model)
    home = first.device if first is not None else _CPU
    if home.type == device.type == "cpu" or _same_device(home, device):
        return model
    key = str(device)
    with _COPIES_LOCK:
        per_model = _COPIES.setdefault(model, {})
        moved = per_model.get(key)
        if moved is None:
            moved = copy.deepcopy(model)
            if device.type == "cuda":
                moved = moved.to(device, memory_format=torch.channels_last)
            else:
                moved = moved.to(device)
            moved.eval().requires_grad_(False)
            per_model[key] = moved
        return moved


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# -- the result ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Prediction:
    task: str  # classification | regression | detection | segmentation | similarity | outputs
    device: str  # "cpu", "cuda", "mps"
    batch_size: int
    latency_ms: float  # wall time of the timed forward + post-processing, per image
    throughput: float  # images per second
    # classification
    top_indices: Optional[torch.Tensor] = None  # N×k class indices, most probable first (k = top_k), CPU int64
    top_probabilities: Optional[torch.Tensor] = None  # N×k their softmax probabilities, CPU float32
    probabilities: Optional[torch.Tensor] = None  # N×K softmax, CPU float32
    # regression
    values: Optional[torch.Tensor] = None  # N×outputs
    # detection
    detections: Optional[list] = None  # per image {"boxes" K×4 xyxy px, "scores" K, "labels" K (0-based)[, "masks"]}
    # segmentation
    masks: Optional[torch.Tensor] = None  # N×H×W int64 class per pixel
    class_fractions: Optional[list] = None  # per image {class index: fraction of the pixels}
    # similarity
    embeddings: Optional[torch.Tensor] = None  # N×D
    similarity: Optional[torch.Tensor] = None  # N×N cosine similarities
    labels: Optional[list] = None  # class names used
    raw: Any = None  # the raw output on the CPU: classification logits, regression values, or an unknown output

    @cached_property
    def top(self) -> Optional[list]:
        """Classification: per image the top-k ``[(index, label, probability)]``, most probable first; else None.
        Built from ``top_indices`` / ``top_probabilities`` when first read: it is text for a person (about 0.7 µs
        per image), which a batch run that keeps the tensors need not pay for."""
        if self.top_indices is None:
            return None
        names = self.labels if self.labels is not None else _default_labels(int(self.top_indices.max()) + 1)
        return [list(zip(ii, map(names.__getitem__, ii), vv))
                for ii, vv in zip(self.top_indices.tolist(), self.top_probabilities.tolist())]


# -- inputs, task, names -------------------------------------------------------------------------------------------
def _as_batch(images) -> torch.Tensor:
    if type(images) is torch.Tensor and images.dim() == 4 and images.shape[0] and images.is_floating_point():
        return images  # the common case, as it is: no copy
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("No images were given; pass at least one C×H×W image.")
        images = [torch.as_tensor(i) for i in images]
        shapes = {tuple(i.shape) for i in images}
        if any(i.dim() != 3 for i in images):
            bad = next(i for i in images if i.dim() != 3)
            raise ValueError(f"Each image in a list must be a C×H×W tensor; got one of shape "
                             f"{shape_text(bad.shape)}.")
        if len(shapes) > 1:
            a, b = sorted(shapes)[:2]
            raise ValueError(f"All images must have the same size to be batched; got {shape_text(a)} and "
                             f"{shape_text(b)} (resize them to the model's input first).")
        x = torch.stack(images)
    else:
        x = torch.as_tensor(images)
        if x.dim() == 3:
            x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"Images must be an N×C×H×W or C×H×W tensor (or a list of C×H×W tensors); got shape "
                         f"{shape_text(x.shape) or 'scalar'}.")
    if x.shape[0] == 0:
        raise ValueError("No images were given; pass at least one C×H×W image.")
    if not x.is_floating_point():
        raise ValueError(f"Images must be float tensors (scaled and normalised as the model expects); got {x.dtype}.")
    return x


def _first_conv(model: nn.Module) -> Optional[nn.Module]:
    return next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Conv3d))), None)


def _expectation(model: nn.Module, network) -> tuple[str, Optional[tuple]]:
    """(what to call the model in a sentence, the (C, H, W) it expects with H, W None where unknown): the
    network's, where one is given; else the module's class and its first convolution's channels."""
    spec = network.spec if network is not None else None
    if spec is not None:
        from . import components

        backbone = "custom-backbone" if spec.backbone.is_custom else spec.backbone.name
        return (f"This {backbone} → {components.get('head', spec.head.kind).short_title} model",
                tuple(spec.input.shape))
    conv = _first_conv(model)
    channels = conv.in_channels if conv is not None else None
    if network is not None:
        c, h, w = network.input_shape
        return network.title, (channels or c, h, w)
    size = getattr(model, "image_size", None)  # torchvision's ViT checks its size with an assert
    if isinstance(size, int) and channels is not None:
        return type(model).__name__, (channels, size, size)
    return type(model).__name__, (channels, None, None) if channels is not None else None


def _input_error(model: nn.Module, x: torch.Tensor, error: BaseException | None,
                 network=None) -> Optional[ValueError]:
    """The one-sentence ValueError for an input the model cannot take, or None when the input looks right (the
    error then is not the person's and is raised as it is)."""
    name, expected = _expectation(model, network)
    got = tuple(x.shape[1:])
    if expected is not None:
        c, h, w = expected
        if c is not None and c != got[0] or (h is not None and (h, w) != got[1:]):
            if h is None:
                return ValueError(f"{name} expects {c}-channel images; got {shape_text(got)}.")
            return ValueError(f"{name} expects {shape_text(expected)} images; got {shape_text(got)}.")
        if h is not None or error is None:
            return None
    if error is not None and _SHAPE_ERROR.search(str(error)):
        return ValueError(f"{name} cannot take {shape_text(got)} images (its layers need another size); resize "
                          "the images to the size the model was built for.")
    return None


# What a forward raises on an input of the wrong shape (checked further by _input_error before it is rephrased).
_INPUT_ERRORS = (RuntimeError, AssertionError, ValueError, IndexError)
# Messages of errors that come from an input of the wrong shape (conv channels, linear sizes, asserts on sizes).
_SHAPE_ERROR = re.compile(r"channels|shape|size|cannot be multiplied|dimension|Wrong image|mismatch|expected input",
                          re.IGNORECASE)


def _infer_task(out) -> str:
    """The task told from an output, for a model that comes without one."""
    if torch.is_tensor(out) and out.dim() == 2 and out.shape[1] > 1:
        return "classification"
    if isinstance(out, list) and out and all(isinstance(d, dict) and "boxes" in d and "scores" in d for d in out):
        return "detection"
    return "outputs"


@lru_cache(maxsize=32)
def _default_labels(k: int) -> tuple:
    return tuple(str(i) for i in range(k))


def _label_names(labels, k: int) -> list:
    if labels is None:
        return list(_default_labels(k))
    labels = list(labels)  # a shallow copy (C speed even for 1,000 names); the caller's list stays theirs
    if len(labels) < k:
        raise ValueError(f"The model predicts {k} classes but {len(labels)} labels were given; give one per class.")
    return labels


def _map_tensors(obj, fn):
    """``obj`` (a tensor, or dicts / lists / tuples / namedtuples of them) with ``fn`` applied to every tensor."""
    if torch.is_tensor(obj):
        return fn(obj)
    if isinstance(obj, dict):
        out = type(obj)() if type(obj) is not dict else {}
        for k, v in obj.items():
            out[k] = _map_tensors(v, fn)
        return out
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
        return type(obj)(*(_map_tensors(v, fn) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.is_floating_point() and t.dtype != torch.float32 else t


def _float32(obj):
    """``obj`` with floating tensors in float32 (autocast outputs), on their device."""
    return _map_tensors(obj, _f32)


def _to_cpu(obj):
    """``obj`` with every tensor on the CPU in float32 (integer tensors keep their type); no copy on the CPU."""
    return _map_tensors(obj, lambda t: _f32(t).cpu())


def _cat(parts: list):
    """Join the per-chunk outputs: tensors along the batch, dicts key by key, lists end to end."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if torch.is_tensor(first):
        return torch.cat(parts)
    if isinstance(first, dict):
        out = type(first)() if type(first) is not dict else {}
        for k in first:
            out[k] = _cat([p[k] for p in parts])
        return out
    if isinstance(first, list):
        return [v for p in parts for v in p]
    if isinstance(first, tuple):
        joined = [_cat([p[i] for p in parts]) for i in range(len(first))]
        return type(first)(*joined) if hasattr(first, "_fields") else tuple(joined)
    return parts


# -- post-processing per task --------------------------------------------------------------------------------------
def _decode(model: nn.Module, out, score_threshold: float) -> list:
    # A composition's decode passes keyword arguments on to its head's, so the head's signature names the threshold.
    target = getattr(getattr(model, "head", None), "decode", None) or model.decode
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        params = {}
    key = next((k for k in ("score_threshold", "conf_threshold", "score_thresh") if k in params), None)
    dets = model.decode(out, **({key: score_threshold} if key else {}))
    return dets if key else [_keep(d, score_threshold) for d in dets]


def _keep(det: dict, score_threshold: float, label_offset: int = 0) -> dict:
    keep = det["scores"] > score_threshold
    out = {k: (v[keep] if torch.is_tensor(v) and v.shape[:1] == keep.shape else v) for k, v in det.items()}
    if label_offset:
        out["labels"] = out["labels"] - label_offset
    return out


def _post(task: str, model: nn.Module, spec, out, score_threshold: float) -> dict:
    """Task post-processing of one chunk, on the device; returns tensors / lists to be joined and moved.
    ``spec``: the composition's, when the network is one (its head kind decides the detection label offset)."""
    if task == "classification":
        if not (torch.is_tensor(out) and out.dim() == 2):
            raise ValueError(f"A classification model must output N×K logits; this one gives {describe_output(out)}.")
        logits = out if out.dtype == torch.float32 else out.float()
        return {"logits": logits, "probabilities": logits.softmax(dim=1)}
    if task == "regression":
        if not torch.is_tensor(out):
            raise ValueError("A regression model must output an N×outputs tensor; this one gives "
                             f"{describe_output(out)}.")
        return {"values": out.float().reshape(out.shape[0], -1)}
    if task == "detection":
        out = _float32(out)
        if hasattr(model, "decode") and not isinstance(out, list):
            return {"detections": _decode(model, out, score_threshold)}
        if isinstance(out, list) and all(isinstance(d, dict) and "scores" in d for d in out):
            # Faster / Mask R-CNN: torchvision's labels count the background as 0; shift them to 0-based classes
            # like YOLO's and SSD's, for compositions (whose spec has the class count without background).
            from . import components

            offset = 0 if spec is None else components.get("head", spec.head.kind).fact("label_offset", 0)
            return {"detections": [_keep(d, score_threshold, offset) for d in out]}
        raise ValueError(f"A detection model must output boxes or have a decode method; this one gives "
                         f"{describe_output(out)}.")
    if task == "segmentation":
        if not (torch.is_tensor(out) and out.dim() == 4):
            raise ValueError("A segmentation model must output N×K×H×W logits; this one gives "
                             f"{describe_output(out)}.")
        n, k = out.shape[:2]
        masks = out.argmax(dim=1)
        offsets = torch.arange(n, device=masks.device).view(n, 1, 1) * k
        counts = (masks + offsets).flatten().bincount(minlength=n * k).view(n, k)
        return {"masks": masks, "counts": counts, "classes": k}
    if task == "similarity":
        if not (torch.is_tensor(out) and out.dim() == 2):
            raise ValueError(f"A similarity model must output N×D embeddings; this one gives {describe_output(out)}.")
        return {"embeddings": out.float()}
    return {"raw": out}


def _finish(task: str, parts: list, num_classes: Optional[int], labels, top_k: int, pred: dict) -> None:
    """Join the chunks' results, move them to the CPU and fill the Prediction fields."""
    if task == "classification":
        if len(parts) == 1:
            logits, probs = parts[0]["logits"], parts[0]["probabilities"]
        else:
            logits, probs = _cat([p["logits"] for p in parts]), _cat([p["probabilities"] for p in parts])
        k = probs.shape[1]
        names = _label_names(labels, k)
        kk = min(top_k, k)
        values, indices = probs.topk(kk, dim=1)
        pred["top_indices"] = indices if indices.device.type == "cpu" else indices.cpu()
        pred["top_probabilities"] = values if values.device.type == "cpu" else values.cpu()
        pred["probabilities"] = probs if probs.device.type == "cpu" else probs.cpu()
        pred["raw"] = logits if logits.device.type == "cpu" else logits.cpu()
        pred["labels"] = names
    elif task == "regression":
        pred["values"] = _cat([p["values"] for p in parts]).cpu()
        pred["raw"] = pred["values"]
    elif task == "detection":
        dets = [_to_cpu(d) for p in parts for d in p["detections"]]
        pred["detections"] = dets
        k = num_classes
        if k is None and labels is None:
            k = max((int(d["labels"].max()) + 1 for d in dets if d["labels"].numel()), default=0) or None
        pred["labels"] = _label_names(labels, k) if k else (list(labels) if labels is not None else None)
    elif task == "segmentation":
        masks = _cat([p["masks"] for p in parts]).cpu()
        counts = _cat([p["counts"] for p in parts]).cpu()
        k = parts[0]["classes"]
        fractions = (counts.double() / float(masks.shape[1] * masks.shape[2])).tolist()
        pred["masks"] = masks
        pred["class_fractions"] = [{c: f for c, f in enumerate(row) if f > 0} for row in fractions]
        pred["labels"] = _label_names(labels, k)
    elif task == "similarity":
        e = _cat([p["embeddings"] for p in parts])
        unit = torch.nn.functional.normalize(e, dim=1)
        s = unit @ unit.T
        s = ((s + s.T) / 2).clamp_(-1.0, 1.0)
        pred["embeddings"] = e.cpu()
        pred["similarity"] = s.cpu()
        pred["labels"] = list(labels) if labels is not None else None
    else:
        pred["raw"] = _to_cpu(_cat([p["raw"] for p in parts]))
        pred["labels"] = list(labels) if labels is not None else None


# -- predict -------------------------------------------------------------------------------------------------------
def predict(model: nn.Module, images, device: str | torch.device | None = None, *, network=None,
            task: str | None = None, labels: list[str] | None = None, top_k: int = 5, score_threshold: float = 0.3,
            batch_size: int = 32, warmup: bool = False) -> Prediction:
    """Run ``model`` on ``images`` (N×C×H×W, C×H×W, or a list of C×H×W tensors of one size) on ``device``
    (None / "auto": the best available) in chunks of ``batch_size``, and post-process for the task.

    ``network`` (the `explorer.network.Network` the model was built from) gives the task, the class names, the
    input it expects and what to call it; ``task`` and ``labels`` override it. Without either the task is
    classification for an N×K output (K > 1), else "outputs", and the classes are named by their index. The
    timed part is the whole batched forward plus post-processing; ``warmup`` runs one untimed chunk first. An
    input the model cannot take raises ``ValueError`` with one sentence saying what it expects.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    if model.training:
        raise ValueError("predict needs a model in eval mode (it never changes a shared model); call "
                         "model.eval() once where the model is built.")
    if batch_size < 1:
        raise ValueError(f"The batch size must be at least 1; got {batch_size}.")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1; got {top_k}.")
    x = _as_batch(images)
    dev = choose_device(device)
    spec = network.spec if network is not None else None
    if network is not None:
        task = task if task is not None else network.task
        labels = labels if labels is not None else (list(network.classes) if network.classes else None)
    if spec is not None:
        # Known from the spec: the channels always; the size where the head is tied to it (boxes, masks).
        c, h, w = spec.input.shape
        if x.shape[1] != c or (spec.task in ("detection", "segmentation") and tuple(x.shape[2:]) != (h, w)):
            raise _input_error(model, x, None, network)
    first = _first_parameter_or_buffer(model)
    on_cpu = dev.type == "cpu"
    run = model if on_cpu and (first is None or first.device.type == "cpu") else _model_on(model, dev, first)
    if first is not None and first.is_floating_point() and x.dtype != first.dtype:
        x = x.to(first.dtype)  # a float64 batch for a float32 model, say (copies only then)

    cuda = dev.type == "cuda"
    amp = torch.autocast("cuda", dtype=_autocast_dtype()) if cuda else None
    n = x.shape[0]

    def forward(chunk):
        if on_cpu:
            return run(chunk)
        if cuda:  # ``chunk`` is a view of the pinned batch: an asynchronous copy, then NHWC on the GPU
            chunk = chunk.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with amp:
                return run(chunk)
        return run(chunk.to(dev))

    def failed(e: BaseException):
        # Errors a person causes (wrong channels or size) become one sentence; anything else is raised as it is.
        if isinstance(e, torch.OutOfMemoryError):
            return None
        return _input_error(model, x, e, network)

    chosen = task
    errors = _INPUT_ERRORS
    with torch.inference_mode():
        if warmup:
            try:
                forward(x[:batch_size])
            except errors as e:
                if (err := failed(e)) is None:
                    raise
                raise err from None
            _sync(dev)
        parts = []
        t0 = time.perf_counter()
        if cuda and not x.is_pinned():
            x = x.pin_memory()
        for chunk in ((x,) if n <= batch_size else x.split(batch_size)):
            try:
                out = run(chunk) if on_cpu else forward(chunk)  # the CPU: the shared model on the caller's tensor
            except errors as e:
                if (err := failed(e)) is None:
                    raise
                raise err from None
            if chosen is None:
                chosen = _infer_task(out)
            parts.append(_post(chosen, model, spec, out, score_threshold))
        pred: dict = {}
        _finish(chosen, parts, network.num_classes if network is not None else None, labels, top_k, pred)
        if not on_cpu:
            _sync(dev)
        elapsed = time.perf_counter() - t0
    elapsed = max(elapsed, 1e-9)
    return Prediction(task=chosen, device=dev.type, batch_size=min(batch_size, n), latency_ms=elapsed * 1000 / n,
                      throughput=n / elapsed, **pred)
