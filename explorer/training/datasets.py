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

Opt-in downloads (declared with a `Download`; fetched, checked and unpacked into the data folder by
`explorer.training.downloads` only when a person asks; a folder filled by hand works offline):

* ``cifar10`` — CIFAR-10 through ``torchvision.datasets.CIFAR10``: train 45,000 / validation 5,000 (stratified,
  from the training set) / test 10,000, 32×32 colour.
* ``oxford_pets`` — Oxford-IIIT Pet through ``torchvision.datasets.OxfordIIITPet`` (two archives, images and
  annotations): the 37 breeds, trainval 90/10 into train / validation, test as test, each photo resized and
  centre-cropped to 96×96 (at 224 px the 7,349 photos would take 4.4 GB as float32; at 96 px, 0.8 GB); the
  resized pixels are kept beside the photos so later runs start in a second.

Segmentation (masks N×H×W of class indices; ``Dataset.ignore_index`` pixels are neither trained on nor scored):

* ``shapes`` — offline: 900 64×64 scenes of textured circles, squares, triangles and thin rings drawn with
  ``skimage.draw`` (`explorer.training.shapes`), exact masks; 600 / 150 / 150.
* ``pets_trimaps`` — the Oxford-IIIT Pet download's trimaps: pet / background, the border ignored (255), each
  photo and its trimap (nearest) resized and centre-cropped to 96×96.

Your own data: `from_zip(data, limits)` reads a zip of one folder per class (ImageFolder layout), checked before
anything is decompressed to memory, each refusal one sentence. `store_upload(data)` checks it the same way, keeps
it in the data folder (``uploads/<sha256[:16]>.zip``) and returns a name (``"zip:<sha256[:16]>"``) that `get`
resolves in any process, so a run started in its own process can train on it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import posixpath
import re
import stat
import tempfile
import threading
import weakref
import zipfile
from typing import Callable

import numpy as np
import torch

from . import downloads
from .downloads import Archive
from .errors import DatasetError

__all__ = ["Dataset", "Splits", "Target", "Download", "Archive", "PreviewSample", "ZipLimits", "names", "get",
           "register", "from_zip", "store_upload", "uploads_folder", "prepare", "SPLIT_SEED", "PETS_SIDE"]

SPLIT_SEED = 0  # the splits are part of a data set, not of a run: every run of a data set sees the same test split
TASKS = ("classification", "regression", "segmentation")


@dataclasses.dataclass(frozen=True)
class Target:
    """The regression target: its name and unit, as labels and axes print them."""
    name: str
    unit: str


@dataclasses.dataclass(frozen=True)
class Download:
    """Where an opt-in data set comes from: its archives (address, md5, size, what each unpacks to; fetched by
    `downloads.fetch` when a person asks), the folder under the data folder it lives in, and the
    torchvision.datasets class that reads it."""
    archives: tuple[Archive, ...]
    folder: str
    via: str

    @property
    def url(self) -> str:
        return self.archives[0].url

    @property
    def md5(self) -> str:
        return self.archives[0].md5

    @property
    def megabytes(self) -> float:
        return sum(a.megabytes for a in self.archives)

    @property
    def hosts(self) -> str:
        return ", ".join(dict.fromkeys(a.host for a in self.archives))


@dataclasses.dataclass(frozen=True)
class Splits:
    """Normalised images (float32, N×C×H×W) and targets (int64 class indices, float32 values, or int64 masks
    N×H×W for segmentation) per split."""
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
    task: str  # "classification" | "regression" | "segmentation"
    input_shape: tuple[int, int, int]  # C, H, W of one sample
    source: str  # where the data comes from, in a sentence
    classes: tuple[str, ...] | None = None  # classification; segmentation: the name of each mask value
    target: Target | None = None  # regression
    mean: tuple[float, ...] = (0.5,)  # the normalisation the splits carry: x = (pixel - mean) / std
    std: tuple[float, ...] = (0.5,)
    loader: Callable[[], Splits] | None = dataclasses.field(default=None, repr=False)
    download: Download | None = None
    ignore_index: int | None = None  # segmentation: the mask value that is neither trained on nor scored

    @property
    def num_classes(self) -> int | None:
        return len(self.classes) if self.classes else None

    @property
    def available(self) -> bool:
        """Whether the data is there: always for an offline set; for a download, when its archives are unpacked
        in the data folder or placed there by hand (looks at the disk, never the network)."""
        if self.loader is None:
            return False
        return self.download is None or downloads.present(self.download)

    def splits(self) -> Splits:
        """The fixed splits (loaded once per process; do not change the tensors in place)."""
        if self.loader is None or not self.available:
            raise DatasetError(self.missing())
        return _cached_splits(self)

    def missing(self) -> str:
        """The sentence for a download that is not in the data folder (what to do about it)."""
        d = self.download
        if d is None:
            return f"{self.title} cannot be loaded; choose one of the data sets: {', '.join(names())}."
        files = " and ".join(a.filename for a in d.archives)
        return (f"{self.title} is an opt-in download ({d.megabytes:.0f} MB from {d.hosts}) that is not in "
                f"{downloads.data_folder()} yet; download it on the Train page, or put {files} there yourself, or "
                f"choose one of the offline data sets: {', '.join(names())}.")

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
        if self.task == "segmentation":  # a mask: the classes in it, background (value 0) left out
            values = set(torch.as_tensor(y).unique().tolist())
            found = [c for i, c in enumerate(self.classes) if i in values and i > 0]
            return ", ".join(found) or self.classes[0]
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
    if dataset.task == "segmentation":
        for y in (s.y_train, s.y_val, s.y_test):
            assert y.dtype == torch.int64 and tuple(y.shape[1:]) == dataset.input_shape[1:], (dataset.name, y.shape)


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


# -- the opt-in downloads ----------------------------------------------------------------------------------------
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                "batches.meta")
# The breeds in the order of their class ids in the annotations (1-37), named as torchvision names them.
PETS_CLASSES = (
    "Abyssinian", "American Bulldog", "American Pit Bull Terrier", "Basset Hound", "Beagle", "Bengal", "Birman",
    "Bombay", "Boxer", "British Shorthair", "Chihuahua", "Egyptian Mau", "English Cocker Spaniel", "English Setter",
    "German Shorthaired", "Great Pyrenees", "Havanese", "Japanese Chin", "Keeshond", "Leonberger", "Maine Coon",
    "Miniature Pinscher", "Newfoundland", "Persian", "Pomeranian", "Pug", "Ragdoll", "Russian Blue",
    "Saint Bernard", "Samoyed", "Scottish Terrier", "Shiba Inu", "Siamese", "Sphynx", "Staffordshire Bull Terrier",
    "Wheaten Terrier", "Yorkshire Terrier")
_PETS_FOLDER = "oxford-iiit-pet"
PETS_SIDE = 96  # 7,349 photos × 3×96×96 float32 = 0.8 GB in memory; at 224 px they would take 4.4 GB


def _normalised(pixels: np.ndarray, dataset: Dataset) -> torch.Tensor:
    """N×H×W×3 uint8 pixels as the data set's normalised N×3×H×W float32 (one float copy, normalised in place)."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    mean = torch.tensor(dataset.mean).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std).contiguous()


def _pixel_splits(dataset: Dataset, pixels: np.ndarray, labels: np.ndarray, train, val, test) -> Splits:
    """Splits made from uint8 pixels part by part, so no full-size float copy of the whole set is held twice."""
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    parts = [(_normalised(pixels[idx], dataset), y[idx].contiguous()) for idx in (train, val, test)]
    return Splits(parts[0][0], parts[0][1], parts[1][0], parts[1][1], parts[2][0], parts[2][1])


def _cifar10_class():
    from torchvision.datasets import CIFAR10

    class FilesCIFAR10(CIFAR10):
        """torchvision's CIFAR10 that checks the files are there rather than their per-file md5s: the archive's
        md5 was checked before it was unpacked, and a folder placed by hand is read as it is."""

        def _check_integrity(self) -> bool:
            folder = pathlib.Path(self.root) / self.base_folder
            return all((folder / f).is_file() for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            import pickle

            with open(pathlib.Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return FilesCIFAR10


def _load_cifar10() -> Splits:
    import pickle

    dataset = _REGISTRY["cifar10"]
    root = downloads.unpacked(dataset.download, dataset.title)
    folder = root / _CIFAR_FOLDER
    try:
        cifar = _cifar10_class()
        train, test = cifar(str(root), train=True), cifar(str(root), train=False)
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as e:
        raise DatasetError(f"The CIFAR-10 files in {folder} cannot be read ({str(e)[:80]}); delete that folder and "
                           "download CIFAR-10 again.") from None
    if tuple(train.classes) != CIFAR10_CLASSES:
        raise DatasetError(f"The files in {folder} name the classes {', '.join(map(str, train.classes))[:120]}, not "
                           "CIFAR-10's ten; delete that folder and download CIFAR-10 again.")
    labels = np.asarray(train.targets + test.targets, dtype=np.int64)
    pixels = np.concatenate([train.data, test.data])
    val, train_idx = stratified_split(labels[:len(train.targets)], (0.1,))
    test_idx = np.arange(len(train.targets), len(labels))
    return _pixel_splits(dataset, pixels, labels, train_idx, val, test_idx)


def _pets_kept(base: pathlib.Path, side: int, name: str, targets: str):
    """(the split lists' key, the cache file ``base / name``, (pixels, ``targets``, trainval count) as it keeps
    them, or None when it is not made yet, damaged, or made from other split lists)."""
    try:
        key = _pets_cache_key(base, side)
    except OSError as e:
        raise DatasetError(f"The Oxford-IIIT Pet split lists in {base / 'annotations'} cannot be read "
                           f"({e.strerror}); delete {base} and download the data set again.") from None
    cache = base / name
    kept = _read_kept(cache, "key", "pixels", targets, "trainval")
    if kept is not None and str(kept[0]) == key:
        return key, cache, (kept[1], kept[2], int(kept[3]))
    return key, cache, None  # not made yet, damaged, or stale: made again by the caller


def _read_kept(cache: pathlib.Path, *names: str) -> list[np.ndarray] | None:
    """The arrays ``names`` of a data set kept as ``cache`` (.npz, `_save_decoded`), or None when it is not made
    yet or damaged."""
    try:
        with np.load(cache, allow_pickle=False) as kept:
            return [kept[n] for n in names]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def _pets_cache_key(base: pathlib.Path, side: int) -> str:
    digest = hashlib.sha256(f"{side}px".encode())
    for split in ("trainval", "test"):
        digest.update((base / "annotations" / f"{split}.txt").read_bytes())
    return digest.hexdigest()[:16]


def _save_decoded(cache: pathlib.Path, **arrays) -> None:
    """Keep a decoded data set beside its files as ``cache`` (.npz), written atomically."""
    try:
        with tempfile.NamedTemporaryFile(dir=cache.parent, prefix=f".{cache.name}.", suffix=".partial",
                                         delete=False) as f:
            np.savez(f, **arrays)
        os.replace(f.name, cache)
    except OSError:  # a read-only folder filled by hand: decoded again next time
        with contextlib.suppress(OSError, NameError):
            os.unlink(f.name)


def _pets_pixels(root: pathlib.Path, side: int = PETS_SIDE,
                 progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(N×side×side×3 uint8 pixels, class ids, how many of them are trainval): the trainval photos then the test
    photos, each resized and centre-cropped. Decoded once and kept beside the photos (``explorer-<side>px.npz``,
    keyed by the split lists), since decoding 7,349 JPEGs takes a minute and each run is its own process."""
    from torchvision.datasets import OxfordIIITPet

    from ..images import resize_crop

    base = root / _PETS_FOLDER
    key, cache, kept = _pets_kept(base, side, f"explorer-{side}px.npz", "labels")
    if kept is not None:
        return kept

    def picture(image) -> np.ndarray:
        return np.asarray(resize_crop(image, (side, side)).convert("RGB"), dtype=np.uint8)

    try:
        parts = [OxfordIIITPet(str(root), split=split, transform=picture) for split in ("trainval", "test")]
    except (RuntimeError, OSError, ValueError) as e:
        raise DatasetError(f"The Oxford-IIIT Pet files in {base} cannot be read ({str(e)[:80]}); delete that folder "
                           "and download the data set again.") from None
    total = sum(len(p) for p in parts)
    pixels = np.empty((total, side, side, 3), dtype=np.uint8)
    labels = np.empty(total, dtype=np.int64)
    i = 0
    for part in parts:
        for j in range(len(part)):
            try:
                pixels[i], labels[i] = part[j]
            except (OSError, ValueError, SyntaxError):  # PIL: missing, truncated or not an image
                photo = getattr(part, "_images", [None] * (j + 1))[j]  # only to name it
                raise DatasetError(f"The photo {getattr(photo, 'name', f'number {j + 1}')} in {base / 'images'} is "
                                   f"missing, damaged or not an image; delete {base} and download the data set "
                                   "again.") from None
            i += 1
            if progress is not None and (i % 64 == 0 or i == total):
                progress(i, total)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(PETS_CLASSES):
        raise DatasetError(f"The split lists in {base / 'annotations'} have class ids outside 1–{len(PETS_CLASSES)}; "
                           f"delete {base} and download the data set again.")
    _save_decoded(cache, pixels=pixels, labels=labels, trainval=len(parts[0]), key=key)
    return pixels, labels, len(parts[0])


def _load_pets() -> Splits:
    dataset = _REGISTRY["oxford_pets"]
    root = downloads.unpacked(dataset.download, dataset.title)
    pixels, labels, trainval = _pets_pixels(root)
    val, train = stratified_split(labels[:trainval], (0.1,))
    return _pixel_splits(dataset, pixels, labels, train, val, np.arange(trainval, len(labels)))


# -- segmentation ------------------------------------------------------------------------------------------------
SHAPES_SIZES = (600, 150, 150)  # train / validation / test: an epoch of a homework model in seconds on one thread
TRIMAPS_SIDE = 96  # 7,349 photos: 0.8 GB of float32 pixels and 0.5 GB of int64 masks at 96 px
TRIMAPS_IGNORE = 255  # the trimaps' border pixels (value 3): between pet and background, not scored


def _mask_splits(dataset: Dataset, pixels: np.ndarray, masks: np.ndarray, train, val, test) -> Splits:
    """Splits of uint8 pixels (N×H×W×3) and masks (N×H×W, any integer type) as normalised images and int64 masks."""
    y = torch.from_numpy(np.asarray(masks)).to(torch.int64)
    parts = [(_normalised(pixels[idx], dataset), y[torch.from_numpy(np.asarray(idx))].contiguous())
             for idx in (train, val, test)]
    return Splits(parts[0][0], parts[0][1], parts[1][0], parts[1][1], parts[2][0], parts[2][1])


def _load_shapes() -> Splits:
    n_train, n_val, n_test = SHAPES_SIZES
    pixels, masks = _shapes_kept(n_train + n_val + n_test)
    cut = np.cumsum(SHAPES_SIZES)
    return _mask_splits(_REGISTRY["shapes"], pixels, masks, np.arange(cut[0]), np.arange(cut[0], cut[1]),
                        np.arange(cut[1], cut[2]))


def _shapes_kept(n: int) -> tuple[np.ndarray, np.ndarray]:
    """`shapes.generate(n, SPLIT_SEED)`, kept in the data folder after the first time (drawing them takes seconds in
    every new worker process), keyed by the generator's source and the libraries that draw, so a change draws anew."""
    import scipy
    import skimage

    from . import shapes

    digest = hashlib.sha256(pathlib.Path(shapes.__file__).read_bytes())
    digest.update(f"{n} {SPLIT_SEED} {np.__version__} {scipy.__version__} {skimage.__version__}".encode())
    cache = downloads.data_folder() / f"explorer-shapes-{digest.hexdigest()[:16]}.npz"
    kept = _read_kept(cache, "pixels", "masks")
    if kept is not None:
        return kept[0], kept[1].astype(np.int64)
    pixels, masks = shapes.generate(n, seed=SPLIT_SEED)  # not made yet, or damaged: drawn (again)
    with contextlib.suppress(OSError):  # a folder that cannot be written: drawn again next time
        cache.parent.mkdir(parents=True, exist_ok=True)
        _save_decoded(cache, pixels=pixels, masks=masks.astype(np.uint8))  # the classes are 0–4
    return pixels, masks


def _trimaps_pixels(root: pathlib.Path, side: int = TRIMAPS_SIDE,
                    progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(N×side×side×3 uint8 photos, N×side×side uint8 masks, how many are trainval): the trainval photos then the
    test photos with their trimaps (1 pet, 2 background, 3 border) as masks 0 pet, 1 background, 255 border.
    Decoded once and kept beside the photos (``explorer-trimaps-<side>px.npz``, keyed by the split lists)."""
    from PIL import Image
    from torchvision.datasets import OxfordIIITPet

    from ..images import resize_crop

    base = root / _PETS_FOLDER
    key, cache, kept = _pets_kept(base, side, f"explorer-trimaps-{side}px.npz", "masks")
    if kept is not None:
        return kept
    to_mask = np.full(256, TRIMAPS_IGNORE, dtype=np.uint8)
    to_mask[1], to_mask[2] = 0, 1  # 1 pet → 0, 2 background → 1, 3 border (and anything else) → ignored

    def pair(image, trimap):
        photo = np.asarray(resize_crop(image, (side, side)).convert("RGB"), dtype=np.uint8)
        return photo, to_mask[np.asarray(resize_crop(trimap, (side, side), Image.NEAREST), dtype=np.uint8)]

    try:
        parts = [OxfordIIITPet(str(root), split=split, target_types="segmentation", transforms=pair)
                 for split in ("trainval", "test")]
    except (RuntimeError, OSError, ValueError) as e:
        raise DatasetError(f"The Oxford-IIIT Pet files in {base} cannot be read ({str(e)[:80]}); delete that folder "
                           "and download the data set again.") from None
    total = sum(len(p) for p in parts)
    pixels = np.empty((total, side, side, 3), dtype=np.uint8)
    masks = np.empty((total, side, side), dtype=np.uint8)
    i = 0
    for part in parts:
        for j in range(len(part)):
            try:
                pixels[i], masks[i] = part[j]
            except (OSError, ValueError, SyntaxError):  # PIL: a photo or trimap missing, truncated or not an image
                photo = getattr(part, "_images", [None] * (j + 1))[j]
                raise DatasetError(f"The photo {getattr(photo, 'name', f'number {j + 1}')} or its trimap in {base} "
                                   f"is missing, damaged or not an image; delete {base} and download the data set "
                                   "again.") from None
            i += 1
            if progress is not None and (i % 64 == 0 or i == total):
                progress(i, total)
    _save_decoded(cache, pixels=pixels, masks=masks, trainval=len(parts[0]), key=key)
    return pixels, masks, len(parts[0])


def _load_pets_trimaps() -> Splits:
    dataset = _REGISTRY["pets_trimaps"]
    root = downloads.unpacked(dataset.download, dataset.title)
    pixels, masks, trainval = _trimaps_pixels(root)
    order = np.random.default_rng(SPLIT_SEED).permutation(trainval)
    n_val = max(1, round(0.1 * trainval)) if trainval > 1 else 0
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return _mask_splits(dataset, pixels, masks, train, val, np.arange(trainval, len(masks)))


def prepare(name, progress: Callable[[int, int], None] | None = None) -> None:
    """Do once what loading ``name`` needs beyond its files, with ``progress(done, total)``: for Oxford-IIIT Pets
    (breeds or trimaps), decode and resize the photos (kept beside them); nothing for the others."""
    dataset = get(name)
    if dataset.name == "oxford_pets" and dataset.available:
        _pets_pixels(downloads.unpacked(dataset.download, dataset.title), progress=progress)
    elif dataset.name == "pets_trimaps" and dataset.available:
        _trimaps_pixels(downloads.unpacked(dataset.download, dataset.title), progress=progress)


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
register(Dataset(
    "shapes", "Shapes (segmentation, 64×64)", "segmentation", (3, 64, 64),
    f"generated offline with skimage.draw (explorer.training.shapes, seed {SPLIT_SEED}): 64×64 colour scenes of two "
    "to five circles, squares, triangles and thin rings of random size, colour and texture on striped or "
    "checkered backgrounds, slightly blurred and noisy, with exact masks; "
    f"{SHAPES_SIZES[0]} training, {SHAPES_SIZES[1]} validation and {SHAPES_SIZES[2]} test scenes",
    classes=("background", "circle", "square", "triangle", "ring"), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    loader=_load_shapes))
# Opt-in downloads: listed always, trainable once their archives are in the data folder (`Dataset.available`).
register(Dataset(
    "cifar10", "CIFAR-10", "classification", (3, 32, 32),
    "CIFAR-10 (Krizhevsky, 2009): 60,000 32×32 colour images in 10 classes, an opt-in download read with "
    "torchvision.datasets.CIFAR10; 45,000 training and 5,000 validation images (stratified, from the training "
    "set), the 10,000 test images as test, normalised with the training set's mean / std per channel",
    classes=CIFAR10_CLASSES, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), loader=_load_cifar10,
    download=Download((Archive("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                               "c58f30108f718f92721af3b95e74349a", 170_498_071, "",
                               tuple(f"{_CIFAR_FOLDER}/{f}" for f in _CIFAR_FILES)),),
                      _CIFAR_FOLDER, "torchvision.datasets.CIFAR10")))
register(Dataset(
    "oxford_pets", f"Oxford-IIIT Pets, 37 breeds at {PETS_SIDE}×{PETS_SIDE}", "classification",
    (3, PETS_SIDE, PETS_SIDE),
    "Oxford-IIIT Pet (Parkhi et al., 2012): 7,349 photos of 37 cat and dog breeds, an opt-in download read with "
    "torchvision.datasets.OxfordIIITPet; the trainval photos split 90/10 (stratified) into training and "
    f"validation, the test photos as test, each resized and centre-cropped to {PETS_SIDE}×{PETS_SIDE} and "
    "normalised with ImageNet's mean / std",
    classes=PETS_CLASSES, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), loader=_load_pets,
    download=Download((Archive("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
                               "5c4f3ee8e5d25df40f4fd59a7f44e54c", 791_918_971, _PETS_FOLDER,
                               (f"{_PETS_FOLDER}/images",)),
                       Archive("https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
                               "95a8c909bbe2e81eed6a22bccdf3f68f", 19_173_078, _PETS_FOLDER,
                               (f"{_PETS_FOLDER}/annotations/trainval.txt", f"{_PETS_FOLDER}/annotations/test.txt"))),
                      _PETS_FOLDER, "torchvision.datasets.OxfordIIITPet")))
# Segmentation: masks N×H×W of class indices (int64); ``ignore_index`` pixels are neither trained on nor scored.
_PETS_ARCHIVES = _REGISTRY["oxford_pets"].download.archives
register(Dataset(
    "pets_trimaps", f"Oxford-IIIT Pets trimaps (segmentation, {TRIMAPS_SIDE}×{TRIMAPS_SIDE})", "segmentation",
    (3, TRIMAPS_SIDE, TRIMAPS_SIDE),
    "Oxford-IIIT Pet (Parkhi et al., 2012): 7,349 photos of cats and dogs with trimaps, an opt-in download read "
    "with torchvision.datasets.OxfordIIITPet(target_types=\"segmentation\"); pet and background, the border "
    f"between them not scored; the trainval photos split 90/10 into training and validation, the test photos as "
    f"test, each resized and centre-cropped to {TRIMAPS_SIDE}×{TRIMAPS_SIDE} (the trimap nearest) and normalised "
    "with ImageNet's mean / std",
    classes=("pet", "background"), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    loader=_load_pets_trimaps, ignore_index=TRIMAPS_IGNORE,
    # the same two archives as the breeds; the annotations archive must also have given the trimaps
    download=Download((_PETS_ARCHIVES[0],
                       dataclasses.replace(_PETS_ARCHIVES[1], gives=_PETS_ARCHIVES[1].gives
                                           + (f"{_PETS_FOLDER}/annotations/trimaps",))),
                      _PETS_FOLDER, "torchvision.datasets.OxfordIIITPet")))


def names(include_downloads: bool = False) -> list[str]:
    """The registered data sets that can be trained on now (with ``include_downloads``, also the declared
    opt-in downloads)."""
    return [n for n, d in _REGISTRY.items() if include_downloads or d.available]


def get(name) -> Dataset:
    """The data set called ``name`` (a `Dataset` is returned as it is; ``"zip:<16 hex digits>"`` is a zip kept by
    `store_upload`, read from the data folder)."""
    if isinstance(name, Dataset):
        return name
    if isinstance(name, str) and name.startswith("zip:"):
        return _stored_upload(name)
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
    ds = Dataset(f"zip:{_upload_key(data, limits)}", name, "classification", tuple(x.shape[1:]),
                 f"{name}: {len(y):,} images in {len(classes)} folders, resized and centre-cropped to "
                 f"{side}×{side}{', greyscale' if grey else ''}; 70/15/15 stratified split",
                 classes=tuple(classes), mean=mean, std=std)
    x = ds.normalise(x)
    splits = _from_indices(x, torch.from_numpy(y), train, val, test)
    object.__setattr__(ds, "loader", lambda: splits)
    return ds



# -- uploads kept for runs in other processes --------------------------------------------------------------------
_UPLOAD_NAME = re.compile(r"zip:[0-9a-f]{16}")
MAX_KEPT_UPLOADS = 4  # decoded uploads held per process (each up to a few hundred MB of tensors)
_uploads: dict[str, Dataset] = {}  # oldest first
_uploads_lock = threading.Lock()


def _upload_key(data: bytes, limits: ZipLimits) -> str:
    """The zip's sha256 (16 hex digits); with other limits than the defaults they are hashed too, since the same
    zip at another image size is another data set."""
    digest = hashlib.sha256(data)
    if limits != ZipLimits():
        digest.update(json.dumps(dataclasses.asdict(limits), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def uploads_folder() -> pathlib.Path:
    return downloads.data_folder() / "uploads"


def _remember(dataset: Dataset) -> Dataset:
    with _uploads_lock:
        _uploads.pop(dataset.name, None)
        _uploads[dataset.name] = dataset
        while len(_uploads) > MAX_KEPT_UPLOADS:
            _uploads.pop(next(iter(_uploads)))
    return dataset


def _write_atomically(path: pathlib.Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".partial", delete=False) as f:
        tmp = pathlib.Path(f.name)
        try:
            f.write(data)
        except OSError:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, path)


def store_upload(data: bytes, limits: ZipLimits | None = None, title: str = "your data") -> str:
    """Check a zip of one folder per class as `from_zip` does (each refusal a sentence), keep it in the data folder
    (``uploads/<sha256[:16]>.zip``, beside what it was read with) and return its name, ``"zip:<sha256[:16]>"``,
    which `get` resolves in this or any other process."""
    limits = limits or ZipLimits()
    dataset = from_zip(data, limits, name=title)
    key = dataset.name[len("zip:"):]
    folder = uploads_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # the description first: a zip is never there without it
        _write_atomically(folder / f"{key}.json", json.dumps({"title": title, "limits": dataclasses.asdict(limits)},
                                                             indent=1).encode())
        if not (folder / f"{key}.zip").is_file():
            _write_atomically(folder / f"{key}.zip", bytes(data))
    except OSError as e:
        raise DatasetError(f"{title} cannot be kept in {folder} ({e.strerror or e}); set EXPLORER_DATA to a folder "
                           "you can write to, with room for it.") from None
    _remember(dataset)
    return dataset.name


def _stored_upload(name: str) -> Dataset:
    if not _UPLOAD_NAME.fullmatch(name):
        raise DatasetError(f"{name[:60]!r} is not the name of an uploaded data set (zip: and 16 hex digits); upload "
                           "the zip again.")
    with _uploads_lock:
        dataset = _uploads.get(name)
    if dataset is not None:
        return _remember(dataset)
    key, folder = name[len("zip:"):], uploads_folder()
    try:
        data = (folder / f"{key}.zip").read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"The uploaded data set {name} is not in {folder} (deleted, or uploaded while "
                           "EXPLORER_DATA pointed elsewhere); upload its zip again.") from None
    except OSError as e:
        raise DatasetError(f"The uploaded data set {name} in {folder} cannot be read ({e.strerror}); upload its zip "
                           "again.") from None
    try:
        kept = json.loads((folder / f"{key}.json").read_text())
        title, limits = str(kept["title"]), ZipLimits(**kept["limits"])
    except (OSError, ValueError, TypeError, KeyError):  # no description (or a damaged one): the defaults
        title, limits = "your data", ZipLimits()
    dataset = from_zip(data, limits, name=title)
    if dataset.name != name:
        raise DatasetError(f"The uploaded data set {name} in {folder} was changed since it was uploaded; upload its "
                           "zip again.")
    return _remember(dataset)
