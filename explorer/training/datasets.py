"""The data sets a network can be trained on: one registry, each entry a declaration.

Every `Dataset` says its task ("classification" or "regression"), its class names or its target (name and unit),
the input shape of one sample, where its data comes from, and how to load it. Loading gives fixed `Splits`
(train / validation / test, the same for every run: they are drawn with seed 0, whatever the run's seed), held
in memory as normalised float32 tensors N×C×H×W, so a batch is an index into a tensor.

Offline, always available:

* ``digits`` — scikit-learn's 1,797 handwritten 8×8 digits at LeNet's 32×32, exactly as
  `explorer.samples.digits` makes them (the shipped LeNet-5 model's input); its test split is the shipped model's
  held-out 20 %, and the validation split is 1/8 of the rest.
* ``digits_canvas`` — the same digits 24 px high at a random place on a blank 64×64 canvas
  (`explorer.samples.digits_on_canvas`, the GAP CNN's input), same splits.
* ``rotated_digits`` — regression: each digit rotated by an angle drawn uniformly from [-45°, 45°]
  (``torchvision.transforms.v2.functional.rotate``, counter-clockwise positive); the target is that angle in
  degrees.
* ``faces`` — scikit-image's ``lfw_subset``: 200 greyscale 25×25 images, 100 faces and 100 non-faces (binary).

Opt-in downloads (declared with a `Download`, not loadable in this version): ``cifar10``, ``oxford_pets``.

Your own data: `from_zip(data, limits)` reads a zip of one folder per class (ImageFolder layout), checked before
anything is decompressed to memory, each refusal one sentence.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import posixpath
import stat
import weakref
import zipfile
from typing import Callable

import numpy as np
import torch

from .errors import DatasetError

__all__ = ["Dataset", "Splits", "Target", "Download", "PreviewSample", "ZipLimits", "names", "get", "register",
           "from_zip", "SPLIT_SEED"]

SPLIT_SEED = 0  # the splits are part of a data set, not of a run: every run of a data set sees the same test split
TASKS = ("classification", "regression")


@dataclasses.dataclass(frozen=True)
class Target:
    """The regression target: its name and unit, as labels and axes print them."""
    name: str
    unit: str


@dataclasses.dataclass(frozen=True)
class Download:
    """Where an opt-in data set comes from (fetched with a progress bar by the later job runner; no network code
    here): the archive's address and checksum, and the folder under the data folder it unpacks to."""
    url: str
    md5: str
    megabytes: float
    folder: str
    via: str  # the torchvision.datasets class that reads it


@dataclasses.dataclass(frozen=True)
class Splits:
    """Normalised images (float32, N×C×H×W) and targets (int64 class indices, or float32 values) per split."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}


@dataclasses.dataclass(frozen=True)
class PreviewSample:
    image: np.ndarray  # H×W (grey) or H×W×3, float in [0, 1], as a person sees it
    label: str  # the class name, or the target value with its unit


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    title: str
    task: str  # "classification" | "regression"
    input_shape: tuple[int, int, int]  # C, H, W of one sample
    source: str  # where the data comes from, in a sentence
    classes: tuple[str, ...] | None = None  # classification
    target: Target | None = None  # regression
    mean: tuple[float, ...] = (0.5,)  # the normalisation the splits carry: x = (pixel - mean) / std
    std: tuple[float, ...] = (0.5,)
    loader: Callable[[], Splits] | None = dataclasses.field(default=None, repr=False)
    download: Download | None = None

    @property
    def num_classes(self) -> int | None:
        return len(self.classes) if self.classes else None

    @property
    def available(self) -> bool:
        return self.loader is not None

    def splits(self) -> Splits:
        """The fixed splits (loaded once per process; do not change the tensors in place)."""
        if self.loader is None:
            d = self.download
            raise DatasetError(f"{self.title} is an opt-in download ({d.megabytes:.0f} MB from {d.url}) that this "
                               "version cannot fetch yet; choose one of the offline data sets: "
                               f"{', '.join(names())}.")
        return _cached_splits(self)

    def unnormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images back to pixel values in [0, 1]."""
        mean = torch.tensor(self.mean, dtype=x.dtype).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(-1, 1, 1)
        return (x * std + mean).clamp(0.0, 1.0)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=pixels.dtype).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=pixels.dtype).view(-1, 1, 1)
        return (pixels - mean) / std

    def label(self, y) -> str:
        if self.task == "regression":
            unit = self.target.unit
            return f"{float(y):.1f}{'' if unit == '°' else ' '}{unit}"
        return self.classes[int(y)]

    def preview(self, n: int = 8) -> list[PreviewSample]:
        """The first ``n`` training samples as a person sees them (pixel values, with their labels)."""
        s = self.splits()
        return [PreviewSample(_as_picture(self.unnormalise(s.x_train[i])), self.label(s.y_train[i]))
                for i in range(min(n, len(s.y_train)))]

    def class_counts(self) -> dict[str, dict[str, int]] | None:
        """Per split, how many samples each class has (classification only)."""
        if self.task != "classification":
            return None
        s = self.splits()
        out = {}
        for split, y in (("train", s.y_train), ("validation", s.y_val), ("test", s.y_test)):
            counts = torch.bincount(y, minlength=len(self.classes)).tolist()
            out[split] = dict(zip(self.classes, counts))
        return out


_cache: "weakref.WeakKeyDictionary[Dataset, Splits]" = weakref.WeakKeyDictionary()


def _cached_splits(dataset: Dataset) -> Splits:
    splits = _cache.get(dataset)
    if splits is None:
        splits = dataset.loader()
        _check_splits(dataset, splits)
        _cache[dataset] = splits
    return splits


def _check_splits(dataset: Dataset, s: Splits) -> None:
    # A declaration that does not match its data is a bug of the declaration, caught on first load.
    for x in (s.x_train, s.x_val, s.x_test):
        assert tuple(x.shape[1:]) == dataset.input_shape, (dataset.name, tuple(x.shape), dataset.input_shape)


def _as_picture(x: torch.Tensor) -> np.ndarray:
    a = x.detach().float().cpu().numpy()
    return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))


# -- splits ------------------------------------------------------------------------------------------------------
def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int = SPLIT_SEED) -> list[np.ndarray]:
    """Indices per part, each class divided in ``fractions`` (the last part takes the rest), sorted; every part
    gets at least one sample of every class that has enough of them."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for p, fraction in enumerate(fractions):
            take = max(1, round(fraction * len(idx))) if len(idx) > len(fractions) else 0
            parts[p].extend(idx[start:start + take].tolist())
            start += take
        parts[-1].extend(idx[start:].tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _digit_parts(labels: torch.Tensor, test_and_train: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """train / validation / test indices: the shipped models' 80/20 split, then 1/8 of the 80 % for validation."""
    train = test_and_train["train"].numpy()
    val_local, train_local = stratified_split(labels.numpy()[train], (1 / 8,))
    return (torch.from_numpy(train[train_local]), torch.from_numpy(train[val_local]), test_and_train["test"])


def _from_indices(x: torch.Tensor, y: torch.Tensor, train, val, test) -> Splits:
    return Splits(x[train].contiguous(), y[train].contiguous(), x[val].contiguous(), y[val].contiguous(),
                  x[test].contiguous(), y[test].contiguous())


# -- the offline data sets ---------------------------------------------------------------------------------------
def _load_digits() -> Splits:
    from .. import samples

    x, y, split = samples.digits(SPLIT_SEED)
    return _from_indices(x, y, *_digit_parts(y, split))


def _load_digits_canvas() -> Splits:
    from .. import samples

    x, y, split, _ = samples.digits_on_canvas(SPLIT_SEED)
    return _from_indices(x, y, *_digit_parts(y, split))


MAX_ANGLE = 45.0


def _load_rotated_digits() -> Splits:
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    from .. import samples

    x, labels, split = samples.digits(SPLIT_SEED)
    pixels = x * samples.DIGITS_STD + samples.DIGITS_MEAN  # rotate the ink on its black background, not -1s
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    angles = (torch.rand(len(x), generator=generator, dtype=torch.float64) * 2 - 1) * MAX_ANGLE
    angles = angles.to(torch.float32)
    rotated = torch.stack([TF.rotate(img, float(a), interpolation=InterpolationMode.BILINEAR, fill=0.0)
                           for img, a in zip(pixels, angles)])
    x_rot = ((rotated - samples.DIGITS_MEAN) / samples.DIGITS_STD).contiguous()
    return _from_indices(x_rot, angles, *_digit_parts(labels, split))


def _load_faces() -> Splits:
    from skimage.data import lfw_subset

    images = torch.from_numpy(np.asarray(lfw_subset(), dtype=np.float32)).unsqueeze(1)  # 200×1×25×25 in [0, 1]
    labels = np.array([1] * 100 + [0] * 100, dtype=np.int64)  # scikit-image: the first 100 are faces
    val, test, train = stratified_split(labels, (0.2, 0.2))
    x = (images - 0.5) / 0.5
    return _from_indices(x, torch.from_numpy(labels), train, val, test)


_REGISTRY: dict[str, Dataset] = {}


def register(dataset: Dataset) -> Dataset:
    """Add a data set to the registry (its name must be new)."""
    if dataset.name in _REGISTRY:
        raise ValueError(f"A data set called {dataset.name!r} is already registered.")
    if dataset.task not in TASKS:
        raise ValueError(f"A data set's task is one of {', '.join(TASKS)}, not {dataset.task!r}.")
    _REGISTRY[dataset.name] = dataset
    return dataset


_DIGITS_SOURCE = ("scikit-learn's bundled handwritten digits (sklearn.datasets.load_digits: 1,797 8×8 images by "
                  "43 people), shipped with scikit-learn, nothing downloaded")
register(Dataset(
    "digits", "Digits (32×32)", "classification", (1, 32, 32),
    _DIGITS_SOURCE + "; upsampled bilinearly to 32×32, normalised with mean 0.5 / std 0.5 (LeNet-5's input)",
    classes=tuple(str(d) for d in range(10)), mean=(0.5,), std=(0.5,), loader=_load_digits))
register(Dataset(
    "digits_canvas", "Digits on a 64×64 canvas", "classification", (1, 64, 64),
    _DIGITS_SOURCE + "; each 24×24 at a random place on a blank 64×64 canvas, values 0–1 (the GAP CNN's input)",
    classes=tuple(str(d) for d in range(10)), mean=(0.0,), std=(1.0,), loader=_load_digits_canvas))
register(Dataset(
    "rotated_digits", "Rotated digits (angle in degrees)", "regression", (1, 32, 32),
    _DIGITS_SOURCE + f"; at 32×32, each rotated by an angle drawn uniformly from [-{MAX_ANGLE:.0f}°, "
                     f"{MAX_ANGLE:.0f}°] (counter-clockwise positive, torchvision.transforms.v2.functional.rotate); "
                     "the target is that angle",
    target=Target("rotation angle", "°"), mean=(0.5,), std=(0.5,), loader=_load_rotated_digits))
register(Dataset(
    "faces", "Faces or not (LFW subset)", "classification", (1, 25, 25),
    "scikit-image's bundled skimage.data.lfw_subset(): 200 greyscale 25×25 images, the first 100 faces from "
    "Labeled Faces in the Wild, the other 100 not faces; 60/20/20 stratified split",
    classes=("not a face", "face"), mean=(0.5,), std=(0.5,), loader=_load_faces))
# Opt-in downloads: declared so pages can list them; fetching (progress, checksum, data folder) comes with the job
# runner. Until then `splits()` says so in a sentence.
register(Dataset(
    "cifar10", "CIFAR-10", "classification", (3, 32, 32),
    "CIFAR-10 (Krizhevsky, 2009): 60,000 32×32 colour images in 10 classes, an opt-in download",
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
    download=Download("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                      163, "cifar-10-batches-py", "torchvision.datasets.CIFAR10")))
register(Dataset(
    "oxford_pets", "Oxford-IIIT Pets (37 breeds)", "classification", (3, 224, 224),
    "Oxford-IIIT Pet (Parkhi et al., 2012): 7,349 photos of 37 cat and dog breeds, an opt-in download",
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    download=Download("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
                      "5c4f3ee8e5d25df40f4fd59a7f44e54c", 792, "oxford-iiit-pet",
                      "torchvision.datasets.OxfordIIITPet")))


def names(include_downloads: bool = False) -> list[str]:
    """The registered data sets that can be trained on now (with ``include_downloads``, also the declared
    opt-in downloads)."""
    return [n for n, d in _REGISTRY.items() if include_downloads or d.available]


def get(name) -> Dataset:
    """The data set called ``name`` (a `Dataset` is returned as it is)."""
    if isinstance(name, Dataset):
        return name
    if name not in _REGISTRY:
        raise DatasetError(f"There is no data set called {str(name)[:60]!r}; choose one of "
                           f"{', '.join(names())}, or upload a zip of one folder per class.")
    return _REGISTRY[name]


# -- your own data: a zip of one folder per class ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ZipLimits:
    """What an uploaded data set zip may hold; each limit is named in its refusal."""
    max_files: int = 5_000
    max_bytes: int = 200 * 2**20  # uncompressed, all entries together
    max_ratio: float = 100.0  # uncompressed / compressed, per entry: images barely compress, bombs compress 1000×
    image_size: int = 64  # every image is resized and centre-cropped to image_size × image_size
    min_per_class: int = 3  # one each for train, validation and test


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} kB" if n >= 1024 else f"{n} bytes"


def _skipped(path: str) -> bool:
    """Files a zip tool adds that are not data: macOS resource forks and hidden files."""
    parts = path.split("/")
    return parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts if p)


def _unsafe(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"the entry {name[:80]!r} is a symbolic link"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"the entry {name[:80]!r} has an absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return f"the entry {name[:80]!r} points outside the folder with '..'"
    return None


def from_zip(data: bytes, limits: ZipLimits | None = None, name: str = "your data") -> Dataset:
    """A classification data set from a zip of one folder per class (``cats/1.png``, ``dogs/7.jpg``; one
    enclosing folder is allowed), decoded into memory at ``limits.image_size`` square, split 70/15/15 per class.

    Checked before decompressing (in this order, each a `DatasetError` sentence): not a zip; more entries than
    ``max_files``; links, absolute paths or ``..``; more than ``max_bytes`` in all or an entry compressed more than
    ``max_ratio`` times (a zip bomb); then files outside a class folder, one class only, a class with fewer than
    ``min_per_class`` images, and any file that is not a readable image.
    """
    from ..images import ImageError, load_image, resize_crop

    limits = limits or ZipLimits()
    if not isinstance(data, (bytes, bytearray)) or not zipfile.is_zipfile(io.BytesIO(data)):
        raise DatasetError(f"{name} is not a zip archive; upload a .zip with one folder of images per class.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, NotImplementedError) as e:
        raise DatasetError(f"{name} is a damaged zip archive ({str(e)[:80]}); make the zip again.") from None
    files = [i for i in infos if not i.is_dir() and not _skipped(i.filename)]
    if len(infos) > limits.max_files:
        raise DatasetError(f"{name} holds {len(infos):,} entries, more than the {limits.max_files:,} file limit; "
                           "upload fewer images.")
    for info in infos:
        reason = _unsafe(info)
        if reason:
            raise DatasetError(f"{name} is refused because {reason}; zip plain folders of images only.")
    total = sum(i.file_size for i in files)
    if total > limits.max_bytes:
        raise DatasetError(f"{name} unpacks to {_size(total)}, more than the {_size(limits.max_bytes)} limit; "
                           "upload fewer or smaller images.")
    for info in files:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 2**20 and ratio > limits.max_ratio:
            raise DatasetError(f"{name} looks like a zip bomb: {info.filename[:80]!r} unpacks {ratio:,.0f} times "
                               f"larger than it is stored (the limit is {limits.max_ratio:,.0f}×); upload the "
                               "images themselves.")
    paths = [i.filename.replace("\\", "/") for i in files]
    roots = {p.split("/")[0] for p in paths}
    strip = len(roots) == 1 and all(p.count("/") >= 2 for p in paths)  # one enclosing folder, class folders in it
    by_class: dict[str, list[zipfile.ZipInfo]] = {}
    for info, path in zip(files, paths):
        parts = path.split("/")[1:] if strip else path.split("/")
        if len(parts) < 2:
            raise DatasetError(f"{name} has the file {path[:80]!r} outside a class folder; put every image in a "
                               "folder named after its class (cats/1.png, dogs/2.png).")
        by_class.setdefault(parts[0], []).append(info)
    if len(by_class) < 2:
        only = next(iter(by_class), None)
        what = f"one class only ({only!r})" if only else "no images"
        raise DatasetError(f"{name} holds {what}; a classifier needs at least two folders of images, one per class.")
    classes = sorted(by_class)
    for cls in classes:
        if len(by_class[cls]) < limits.min_per_class:
            raise DatasetError(f"The class {cls[:60]!r} in {name} has {len(by_class[cls])} image(s); each class needs "
                               f"at least {limits.min_per_class} (for training, validation and test).")
    pictures, labels, grey = [], [], True
    side = limits.image_size
    for label, cls in enumerate(classes):
        for info in by_class[cls]:
            try:
                with archive.open(info) as f:
                    raw = f.read(info.file_size + 1)
                image = load_image(raw, posixpath.basename(info.filename))
            except ImageError as e:
                raise DatasetError(f"{info.filename[:80]!r} in {name} is not a readable image ({e}); remove it or "
                                   "replace it with a PNG or JPEG.") from None
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
                raise DatasetError(f"{info.filename[:80]!r} in {name} cannot be read from the zip "
                                   f"({str(e)[:80]}); make the zip again.") from None
            a = np.asarray(resize_crop(image, (side, side)).convert("RGB"), dtype=np.float32) / 255.0
            grey = grey and bool(np.all(a[..., 0] == a[..., 1]) and np.all(a[..., 1] == a[..., 2]))
            pictures.append(a)
            labels.append(label)
    x = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).contiguous()
    if grey:
        x, mean, std = x[:, :1].contiguous(), (0.5,), (0.5,)
    else:  # colour photos: the statistics torchvision's pretrained backbones expect
        from ..images import IMAGENET_MEAN, IMAGENET_STD

        mean, std = tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)
    y = np.asarray(labels, dtype=np.int64)
    val, test, train = stratified_split(y, (0.15, 0.15))
    digest = hashlib.sha256(data).hexdigest()[:12]
    ds = Dataset(f"zip:{digest}", name, "classification", tuple(x.shape[1:]),
                 f"{name}: {len(y):,} images in {len(classes)} folders, resized and centre-cropped to "
                 f"{side}×{side}{', greyscale' if grey else ''}; 70/15/15 stratified split",
                 classes=tuple(classes), mean=mean, std=std)
    x = ds.normalise(x)
    splits = _from_indices(x, torch.from_numpy(y), train, val, test)
    object.__setattr__(ds, "loader", lambda: splits)
    return ds

