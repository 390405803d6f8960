"""Photos for the explorer: decode an upload safely, the bundled sample photos (and the held-out digits the ready
models were tested on), and each network's own preprocessing — the one resize-and-crop path every page uses.

No streamlit here. Every refusal is an `ImageError` (a ValueError) whose message is one sentence a person can
act on. Uploads are checked by content, not by extension: PNG, JPEG, WebP, BMP and TIFF are read; anything
else (GIF, HEIC, SVG, ...) is refused. The pixel limit is checked against the size in the file header, before
any pixel is decoded, so a decompression bomb costs nothing.
"""
from __future__ import annotations

import functools
import io
import os
import re
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageError", "load_image", "SAMPLES", "sample_image", "preprocess", "resize_crop", "resize_crop_normalise",
           "weights_statistics", "display_name", "digit_samples", "digit_input", "digit_image", "digit_box",
           "digit_preprocess"]

MAX_BYTES = 20 * 1024 * 1024  # 20 MB
MAX_PIXELS = 40_000_000  # width × height, checked from the header before decoding
ACCEPTED = "PNG, JPEG, WebP, BMP or TIFF"
# Pillow format ids we decode ("MPO" is a JPEG with extra pictures, as many cameras write).
_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
_READ_AS = {"PNG", "JPEG", "MPO", "WEBP", "BMP", "TIFF"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# scikit-image's sample photos, bundled with the package (no download): name -> title.
SAMPLES: dict[str, str] = {
    "chelsea": "Chelsea the cat",
    "coffee": "A cup of coffee",
    "astronaut": "Astronaut Eileen Collins",
    "rocket": "A rocket on the launch pad",
}


class ImageError(ValueError):
    """An image the app will not use; the message is one sentence a person can act on."""


# -- loading ---------------------------------------------------------------------------------------------------
def display_name(filename: str) -> str:
    """A file name fit for a one-line sentence: no folders, no control characters, at most 80 characters."""
    name = os.path.basename(str(filename or "").replace("\\", "/"))
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if len(name) > 80:
        name = name[:77] + "..."
    return name or "The file"


def _sniff(data: bytes) -> str | None:
    """A name for some formats Pillow is not asked to read, to say what the file is."""
    head = data[:64]
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypmsf1", b"ftyphevc"):
        return "HEIC"
    if head[4:12] in (b"ftypavif", b"ftypavis"):
        return "AVIF"
    if head.startswith(b"%PDF"):
        return "PDF"
    if head.startswith(b"8BPS"):
        return "Photoshop (PSD)"
    if head.startswith(b"\x00\x00\x01\x00"):
        return "ICO"
    if head.startswith(b"\xff\x0a") or head[4:8] == b"jxl ":
        return "JPEG XL"
    text = head.lstrip().lower()
    if text.startswith((b"<svg", b"<?xml")):
        return "SVG"
    return None


def _to_8bit(a: np.ndarray, sixteen_bit: bool) -> np.ndarray:
    """Grey values of any range -> uint8 0..255 (scaled, never clipped)."""
    is_float = a.dtype.kind == "f"  # before the conversion below: an integer image of 0s and 1s stays dark
    a = a.astype(np.float64)
    if sixteen_bit:
        return np.round(a / 257.0).astype(np.uint8)  # 0..65535 -> 0..255
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0 and is_float:
        lo, hi = 0.0, 1.0  # float images in [0, 1]
    elif lo >= 0 and hi <= 255:
        lo, hi = 0.0, 255.0
    elif lo >= 0 and hi <= 65535:
        lo, hi = 0.0, 65535.0
    a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
    scaled = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
    return np.round(np.clip(scaled, 0, 255)).astype(np.uint8)


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16"):
        grey = _to_8bit(np.asarray(im), sixteen_bit=True)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("I", "F"):
        a = np.asarray(im)
        grey = _to_8bit(a.astype(np.float64) if mode == "F" else a, sixteen_bit=False)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info) \
            or (mode in ("L", "RGB", "1") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...


def load_image(data: bytes, filename: str) -> Image.Image:
    """Decode uploaded bytes into an RGB image, upright (EXIF orientation applied), first frame only.

    Raises `ImageError` with one sentence for an empty, too large, damaged or unsupported file."""
    name = display_name(filename)
    if data is None or len(data) == 0:
        raise ImageError(f"{name} is empty; upload a {ACCEPTED} file.")
    if len(data) > MAX_BYTES:
        raise ImageError(f"{name} is {len(data) / 1024 / 1024:.1f} MB, more than the 20 MB limit; "
                         "upload a smaller image.")
    too_big = (f"{name} is too large to decode safely (more than the {MAX_PIXELS:,} pixel limit); "
               "upload a smaller image.")
    try:
        # Image.open reads only the header. DecompressionBombWarning becomes an error; the explicit size check
        # below enforces our own (lower) limit without changing Pillow's process-wide MAX_IMAGE_PIXELS.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_FORMATS) as im:
                if im.format not in _READ_AS:
                    raise ImageError(f"{name} is a {im.format} file; upload a {ACCEPTED} file.")
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageError(f"{name} is {w}×{h} pixels, more than the {MAX_PIXELS:,} pixel limit; "
                                     "upload a smaller image.")
                if w <= 0 or h <= 0:
                    raise ImageError(f"{name} has no pixels; upload a {ACCEPTED} file.")
                im.load()  # the first frame of an animated file
                try:
                    upright = ImageOps.exif_transpose(im)
                except Exception:  # damaged EXIF: keep the picture as stored
                    upright = im.copy()
                return _to_rgb(upright)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow refuses at its own (higher) limit before the size reaches us; its message carries the count.
        found = re.search(r"\((\d+) pixels\)", str(e))
        if found:
            raise ImageError(f"{name} has {int(found.group(1)):,} pixels, more than the {MAX_PIXELS:,} pixel "
                             "limit; upload a smaller image.") from None
        raise ImageError(too_big) from None
    except UnidentifiedImageError:
        kind = _sniff(data)
        if kind:
            raise ImageError(f"{name} is a {kind} file, which this app does not read; "
                             f"upload a {ACCEPTED} file.") from None
        raise ImageError(f"{name} is not an image this app can read; upload a {ACCEPTED} file.") from None
    except MemoryError:
        raise ImageError(too_big) from None
    except Exception as e:  # OSError (truncated), SyntaxError, struct.error, EOFError, ValueError, ...
        detail = str(e).split("\n")[0][:80]
        raise ImageError(f"{name} is damaged or truncated and cannot be read ({detail}); "
                         f"upload a complete {ACCEPTED} file.") from None


# -- samples ---------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _sample_array(name: str) -> np.ndarray:
    from skimage import data

    a = np.ascontiguousarray(getattr(data, name)())
    a.setflags(write=False)
    return a


def sample_image(name: str) -> Image.Image:
    """One of scikit-image's bundled photos (`SAMPLES`) as a new RGB image."""
    if name not in SAMPLES:
        raise ImageError(f"There is no sample photo called {name!r}; choose one of {', '.join(SAMPLES)}.")
    a = _sample_array(name)
    if a.ndim == 2:
        return Image.fromarray(np.array(a), "L").convert("RGB")
    return _to_rgb(Image.fromarray(np.array(a[..., :4])))


# -- preprocessing ---------------------------------------------------------------------------------------------
def _stats(mean, std) -> str:
    mean, std = tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)
    if mean == IMAGENET_MEAN and std == IMAGENET_STD:
        return "ImageNet mean/std"
    if len(set(mean)) == 1 and len(set(std)) == 1:
        return f"mean {mean[0]:g} / std {std[0]:g}"
    return f"mean {list(mean)} / std {list(std)}"


def _size(v) -> str:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return str(v[0]) if len(v) == 1 or len(set(v)) == 1 else "×".join(str(x) for x in v)


def preprocess(image: Image.Image, model_name: str) -> tuple[torch.Tensor, str]:
    """The model's own preprocessing: a (1, C, H, W) float tensor and a one-line description of the steps.

    torchvision models use their weights' ``transforms()`` (nothing is downloaded); the classic models: grey
    when they take one channel, resize the shorter side and centre-crop to H×W, scale to [0, 1], normalise
    (mean 0.5 / std 0.5 for one channel, ImageNet statistics for three)."""
    from explorer import catalog

    info = catalog.info(model_name)
    c, h, w = info.input_size
    if image.mode != "RGB":
        image = _to_rgb(image)
    if info.weights:
        import torchvision

        t = torchvision.models.get_weight(info.weights).transforms()
        x = t(image).unsqueeze(0)
        interp = getattr(getattr(t, "interpolation", None), "value", "bilinear")
        steps = []
        if getattr(t, "resize_size", None):
            steps.append(f"resize {_size(t.resize_size)} ({interp})")
        if getattr(t, "crop_size", None):
            steps.append(f"centre crop {_size(t.crop_size)}")
        steps.append(f"normalise with {_stats(t.mean, t.std)}")
        return x, " → ".join(steps)

    return resize_crop_normalise(image, (c, h, w), model_name=model_name)


def weights_statistics(model_name: str | None) -> tuple[tuple | None, tuple | None]:
    """(mean, std) that catalog model ``model_name``'s published weights normalise with, or (None, None) when it
    has none (then `resize_crop_normalise` uses its defaults)."""
    from explorer import catalog

    if not model_name or model_name not in catalog.names() or not catalog.info(model_name).weights:
        return None, None
    import torchvision

    t = torchvision.models.get_weight(catalog.info(model_name).weights).transforms()
    return tuple(t.mean), tuple(t.std)


def resize_crop(image: Image.Image, size: tuple[int, int], resample=Image.BILINEAR) -> Image.Image:
    """``image`` with its shorter side resized (bilinear; a mask: ``resample=Image.NEAREST``, so it keeps only the
    values it had) to cover ``size`` = (H, W), then centre-cropped to it: the picture the network sees, so boxes and
    heatmaps are drawn on it."""
    h, w = (int(v) for v in size)
    iw, ih = image.size
    scale = max(h / ih, w / iw)
    nw, nh = max(w, round(iw * scale)), max(h, round(ih * scale))
    image = image.resize((nw, nh), resample)
    left, top = (nw - w) // 2, (nh - h) // 2
    return image.crop((left, top, left + w, top + h))


def resize_crop_normalise(image: Image.Image, shape: tuple, mean=None, std=None,
                          model_name: str = "this model") -> tuple[torch.Tensor, str]:
    """Any photo to a (1, C, H, W) input of ``shape`` (C, H, W): grey for one channel, the shorter side resized
    to cover H×W, centre crop, scale to [0, 1], normalise (default: mean 0.5 / std 0.5 for one channel,
    ImageNet statistics for three). Returns the tensor and a one-line description of the steps."""
    c, h, w = (int(v) for v in shape)
    if image.mode != "RGB":
        image = _to_rgb(image)
    steps = []
    if c == 1:
        image = image.convert("L")
        steps.append("grayscale")
        mean, std = mean or (0.5,), std or (0.5,)
    elif c == 3:
        mean, std = mean or IMAGENET_MEAN, std or IMAGENET_STD
    else:
        raise ImageError(f"{model_name} takes {c} channels; a photo can only be fed to 1- or 3-channel models.")
    image = resize_crop(image, (h, w))
    a = np.asarray(image, dtype=np.float32) / 255.0
    x = torch.from_numpy(a.copy())
    x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
    x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    side = f"{h}" if h == w else f"{h}×{w}"
    steps += [f"resize shorter side to {side} (bilinear)", f"centre crop {h}×{w}", "scale to [0, 1]",
              f"normalise with {_stats(mean, std)}"]
    return x.unsqueeze(0).float(), " → ".join(steps)


# -- the held-out digits (what the ready models are shown) ------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _digits(dataset: str):
    from .samples import DIGIT_SETS

    return DIGIT_SETS[dataset].load()


def digit_samples(count: int = 40, dataset: str = "digits") -> list[tuple[int, int]]:
    """(index into the data set, true label) of the first ``count`` held-out digits (never seen in training)."""
    x, y, split = _digits(dataset)[:3]
    return [(int(i), int(y[i])) for i in split["test"][:count]]


def digit_input(index: int, dataset: str = "digits") -> tuple[torch.Tensor, int]:
    """Held-out digit ``index`` exactly as in training (1×1×32×32, or 1×1×64×64 on the canvas) and its label."""
    x, y, _ = _digits(dataset)[:3]
    return x[index:index + 1].clone(), int(y[index])


def digit_image(index: int, dataset: str = "digits") -> Image.Image:
    """Held-out digit ``index`` as a grey picture at the input's size (white ink on black, as in training)."""
    from .samples import DIGIT_SETS

    x = _digits(dataset)[0]
    a = (DIGIT_SETS[dataset].unnormalise(x[index, 0]).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(a, "L").convert("RGB")


def digit_box(index: int, dataset: str = "digits") -> tuple[int, int, int, int] | None:
    """Where held-out digit ``index`` sits in its input, (top, left, bottom, right), for the digits on a canvas;
    None where the digit fills the frame."""
    data = _digits(dataset)
    return tuple(int(v) for v in data[3][index]) if len(data) > 3 else None


def digit_preprocess(image: Image.Image, dataset: str = "digits") -> tuple[torch.Tensor, str]:
    """A picture of one digit (printed, drawn, photographed; either polarity) as a ready model's input, made the
    way the training digits were: grey, light ink on a dark ground (inverted if the ink is darker than the
    border), the ink's box scaled to fill the 32×32 bitmap scikit-learn's digits were counted on, averaged to 8×8,
    upsampled bilinearly to the input's size (on the canvas: 24×24 at its centre), normalised as in training.
    A blank picture (no ink) is resized whole. The second value says what was done, step by step."""
    from .samples import BITMAP_SIZE, CANVAS_DIGIT_SIZE, CANVAS_SIZE, DIGIT_SETS, STROKE_WIDTH, digit_as_8x8, \
        find_ink, fit_on_canvas, upsample_digits

    digit_set = DIGIT_SETS[dataset]
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    if grey.size == 0:
        raise ImageError("The image has no pixels; upload a photo of one digit.")
    steps = ["grayscale"]
    size = digit_set.size
    found = find_ink(torch.from_numpy(grey.copy()))
    if found is None:
        border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
        if float(np.median(border)) > 0.5:  # a blank light page: as empty as a blank dark one
            grey = 1.0 - grey
        x = torch.nn.functional.interpolate(torch.from_numpy(grey.copy())[None, None], size=(size, size),
                                            mode="bilinear", antialias=True, align_corners=False)
        steps.append(f"resize to {size}×{size} (bilinear)")
    else:
        ink, inverted = found
        if inverted:
            steps.append("inverted (dark ink on a light ground; the training digits are light on dark)")
        steps.append(f"the ink cropped and scaled to fill a {BITMAP_SIZE}×{BITMAP_SIZE} box, as high as the box "
                     "(as the scikit-learn digits were drawn)")
        digit, grow = digit_as_8x8(ink)
        if grow:
            steps.append(f"strokes thickened by {grow} px a side (to about {STROKE_WIDTH} px, as the training "
                         "digits' pen)")
        steps.append("averaged over 4×4 blocks to 8×8 (as they were), the strongest block 1")
        if digit_set.on_canvas:
            x = fit_on_canvas(upsample_digits(digit, CANVAS_DIGIT_SIZE))
            steps.append(f"upsampled to {CANVAS_DIGIT_SIZE}×{CANVAS_DIGIT_SIZE} (bilinear) and placed at the centre "
                         f"of a blank {CANVAS_SIZE}×{CANVAS_SIZE} canvas (the training digits are "
                         f"{CANVAS_DIGIT_SIZE} px high)")
        else:
            x = upsample_digits(digit, size)
            steps.append(f"upsampled to {size}×{size} (bilinear)")
    if (digit_set.mean, digit_set.std) != (0.0, 1.0):
        x = (x.clamp(0, 1) - digit_set.mean) / digit_set.std
        steps.append(f"normalise with mean {digit_set.mean:g} / std {digit_set.std:g}")
    else:
        x = x.clamp(0, 1)
    return x.float(), " → ".join(steps)
