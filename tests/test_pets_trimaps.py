"""The Oxford-IIIT Pets trimaps data set read from a pre-filled folder, offline (issue 15): a person who copied the
photos and annotations there trains on them without a download. The folder here is tiny and made by the test:
six photos, each with a trimap whose pet / background / border areas are known exactly."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from explorer.training import datasets
from explorer.training.datasets import TRIMAPS_SIDE

SIDE = 40  # the photos' own size; the data set resizes them to TRIMAPS_SIDE


def _fill(folder, names_trainval, names_test):
    base = folder / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations" / "trimaps").mkdir(parents=True)
    for i, name in enumerate(names_trainval + names_test):
        rgb = np.full((SIDE, SIDE, 3), 40 * i, dtype=np.uint8)
        Image.fromarray(rgb).save(base / "images" / f"{name}.jpg")
        trimap = np.full((SIDE, SIDE), 2, dtype=np.uint8)  # background
        trimap[10:30, 10:30] = 3  # border ring around the pet
        trimap[12:28, 12:28] = 1  # the pet
        Image.fromarray(trimap).save(base / "annotations" / "trimaps" / f"{name}.png")
    for split, names in (("trainval", names_trainval), ("test", names_test)):
        (base / "annotations" / f"{split}.txt").write_text(
            "".join(f"{n} {1 + k % 37} {1 + k % 2} 1\n" for k, n in enumerate(names)))


def test_a_prefilled_folder_gives_pet_background_and_ignored_border(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_DATA", str(tmp_path))
    _fill(tmp_path, [f"Abyssinian_{k}" for k in range(1, 5)], ["Bengal_1", "Bengal_2"])
    ds = datasets.get("pets_trimaps")
    assert ds.available and ds.task == "segmentation"
    assert ds.classes == ("pet", "background") and ds.ignore_index == 255
    s = ds.splits()
    assert s.sizes() == {"train": 3, "validation": 1, "test": 2}
    assert tuple(s.x_train.shape[1:]) == (3, TRIMAPS_SIDE, TRIMAPS_SIDE)
    assert tuple(s.y_test.shape) == (2, TRIMAPS_SIDE, TRIMAPS_SIDE)
    # Resized nearest: only the three values the trimap had, in the same proportions (16² pet, 20² − 16² border).
    mask = s.y_test[0]
    assert set(mask.unique().tolist()) == {0, 1, 255}
    scale = (TRIMAPS_SIDE / SIDE) ** 2
    assert int((mask == 0).sum()) == pytest.approx(16 * 16 * scale, rel=0.1)
    assert int((mask == 255).sum()) == pytest.approx((20 * 20 - 16 * 16) * scale, rel=0.15)
