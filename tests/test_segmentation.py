"""Segmentation in the training library (explorer.training.segmentation, .shapes, the "shapes" data set): metrics
worked out by hand from one confusion matrix and cross-checked against torchmetrics, ignored pixels left out, the
joint augmentation moving each image and its mask together, exact shape masks, and a segmentation run's history,
test metrics and samples."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.training import TrainConfig, datasets, shapes, train
from explorer.training.segmentation import (colour_mask, confusion_matrix, make_joint_augmenter, scores,
                                            segmentation_loss)

# 3 classes on a 3×4 mask; 255 is the ignored border value (as the Pets trimaps' border).
TRUTH = torch.tensor([[0, 0, 1, 1],
                      [0, 2, 2, 1],
                      [255, 2, 2, 255]])
PRED = torch.tensor([[0, 1, 1, 1],
                     [0, 2, 0, 1],
                     [2, 2, 2, 0]])


def test_the_confusion_matrix_and_its_scores_by_hand():
    c = confusion_matrix(PRED, TRUTH, 3, ignore_index=255)
    # rows: truth 0 (3 pixels: 0, 1, 0), truth 1 (3: all 1), truth 2 (4: 0 once, 2 three times); the two 255s
    # are not counted
    assert c.tolist() == [[2, 1, 0], [0, 3, 0], [1, 0, 3]]
    s = scores(c)
    assert s["pixel_accuracy"] == pytest.approx(8 / 10)
    # IoU = TP / (row + column - TP): class 0: 2 / (3 + 3 - 2); class 1: 3 / (3 + 4 - 3); class 2: 3 / (4 + 3 - 3)
    assert s["iou"] == pytest.approx([2 / 4, 3 / 4, 3 / 4])
    assert s["miou"] == pytest.approx((0.5 + 0.75 + 0.75) / 3)
    # Dice = 2 TP / (row + column)
    assert s["dice"] == pytest.approx([4 / 6, 6 / 7, 6 / 7])
    assert s["mean_dice"] == pytest.approx((4 / 6 + 12 / 7) / 3)


def test_a_class_in_neither_truth_nor_prediction_is_left_out_of_the_mean():
    s = scores(confusion_matrix(PRED, TRUTH, 4, ignore_index=255))  # class 3 appears nowhere
    assert s["iou"][3] is None and s["dice"][3] is None
    assert s["miou"] == pytest.approx((0.5 + 0.75 + 0.75) / 3)
    wrong = scores(torch.tensor([[3, 1], [0, 0]]))  # class 1 predicted once, never true: IoU 0, counted
    assert wrong["iou"] == [0.75, 0.0] and wrong["miou"] == 0.375


def test_the_metrics_agree_with_torchmetrics_on_random_masks():
    torchmetrics = pytest.importorskip("torchmetrics")
    from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

    g = torch.Generator().manual_seed(0)
    truth = torch.randint(0, 5, (4, 32, 32), generator=g)
    truth[:, :3] = 255  # an ignored band
    pred = torch.where(torch.rand(4, 32, 32, generator=g) < 0.6, truth.clamp(max=4),
                       torch.randint(0, 5, (4, 32, 32), generator=g))
    ours = confusion_matrix(pred, truth, 5, ignore_index=255)
    theirs = MulticlassConfusionMatrix(5, ignore_index=255)(pred, truth)
    assert torch.equal(ours, theirs.long())
    jaccard = MulticlassJaccardIndex(5, average=None, ignore_index=255)(pred, truth)
    assert scores(ours)["iou"] == pytest.approx(jaccard.tolist(), abs=1e-6)
    macro = MulticlassJaccardIndex(5, average="macro", ignore_index=255)(pred, truth)
    assert scores(ours)["miou"] == pytest.approx(float(macro), abs=1e-6)
    assert torchmetrics.__version__ >= "1.9"


def test_the_loss_leaves_ignored_pixels_out():
    logits = torch.randn(1, 3, 3, 4, generator=torch.Generator().manual_seed(1))
    scored = TRUTH != 255
    by_hand = -torch.log_softmax(logits, 1)[0].gather(0, TRUTH.clamp(max=2)[None])[0][scored].mean()
    assert float(segmentation_loss(logits, TRUTH[None], ignore_index=255)) == pytest.approx(float(by_hand))


def test_a_mask_is_coloured_by_the_palette_and_ignored_pixels_grey():
    picture = colour_mask(TRUTH, ignore_index=255)
    assert picture.shape == (3, 4, 3)
    assert picture[0, 0].tolist() == [0.0, 0.0, 0.0]  # background black
    assert picture[2, 0].tolist() == pytest.approx([0.5, 0.5, 0.5])  # the ignored border grey
    assert len({tuple(picture[i, j]) for i, j in ((0, 0), (0, 2), (1, 1))}) == 3  # three classes, three colours


def test_the_joint_augmenter_moves_image_and_mask_together():
    from explorer.training.config import Augmentation

    # Each image's red channel is its mask's class / 4: after any flip or crop the two must still agree.
    g = torch.Generator().manual_seed(2)
    masks = torch.randint(0, 5, (8, 16, 16), generator=g)
    images = torch.stack([masks.float() / 4, torch.zeros(8, 16, 16), torch.ones(8, 16, 16)], 1)
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    batch = (images - 0.5) / 0.5
    augment = make_joint_augmenter(Augmentation(hflip=True, crop_padding=4), mean, std, (16, 16), ignore_index=255)
    torch.manual_seed(3)
    out, out_masks = augment(batch, masks)
    pixels = out * 0.5 + 0.5
    changed = 0
    for img, mask, before in zip(pixels, out_masks, masks):
        inside = mask != 255  # pixels the crop brought in are ignored in the mask and black in the image
        assert torch.allclose(img[0][inside], mask[inside].float() / 4, atol=1e-6)
        assert torch.all(img[2][~inside] == 0)
        changed += not torch.equal(mask, before)
    assert changed >= 6  # the flips and crops did move most pairs


def test_shape_masks_are_exactly_the_drawn_pixels_and_the_set_is_reproducible():
    circle = shapes.Placed("circle", 20.0, 20.0, 5.0)
    rr, cc = shapes.draw(circle)
    assert len(rr) == 69  # skimage.draw.disk of radius 5: the 69 pixel centres strictly inside it
    assert ((rr - 20) ** 2 + (cc - 20) ** 2 < 25).all()
    ring = shapes.draw(shapes.Placed("ring", 32.0, 32.0, 10.0))
    assert 0 < len(ring[0]) < 0.5 * len(shapes.draw(shapes.Placed("circle", 32.0, 32.0, 10.0))[0])
    a, ma = shapes.generate(5, seed=7)
    b, mb = shapes.generate(5, seed=7)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert a.shape == (5, 64, 64, 3) and ma.shape == (5, 64, 64) and set(np.unique(ma)) <= set(range(5))


def test_the_shapes_are_drawn_once_then_read_from_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_DATA", str(tmp_path))
    pixels, masks = datasets._shapes_kept(6)
    kept = list(tmp_path.glob("explorer-shapes-*.npz"))
    fresh = shapes.generate(6, seed=datasets.SPLIT_SEED)
    assert len(kept) == 1 and np.array_equal(pixels, fresh[0]) and np.array_equal(masks, fresh[1])
    with monkeypatch.context() as m:  # the second time nothing is drawn, and the bytes and types are the same
        m.setattr(shapes, "generate", lambda *a, **k: pytest.fail("the kept shapes were drawn again"))
        again = datasets._shapes_kept(6)
    assert np.array_equal(again[0], pixels) and np.array_equal(again[1], masks) and again[1].dtype == np.int64
    kept[0].write_bytes(b"damaged")  # a damaged file is drawn again, and replaced
    assert np.array_equal(datasets._shapes_kept(6)[1], masks) and np.load(kept[0])["masks"].shape == (6, 64, 64)


def test_the_shapes_data_set_has_its_splits_and_every_class():
    ds = datasets.get("shapes")
    assert ds.task == "segmentation" and ds.classes == shapes.CLASSES and ds.input_shape == (3, 64, 64)
    splits = ds.splits()
    assert splits.sizes() == {"train": 600, "validation": 150, "test": 150}
    assert splits.x_train.shape[1:] == (3, 64, 64) and splits.y_train.shape[1:] == (64, 64)
    counts = torch.bincount(splits.y_train.reshape(-1), minlength=5)
    assert (counts > 0).all() and counts[0] > counts[1:].max()  # every class present, background the most


@pytest.mark.training
def test_a_segmentation_run_records_pixel_metrics_and_per_class_iou():
    result = train(TrainConfig(network="seg_encoder_decoder", dataset="shapes", epochs=1, train_samples=32,
                               batch_size=16, seed=0, threads=1))
    row = result.history[-1]
    for key in ("train_loss", "train_pixel_accuracy", "val_loss", "val_pixel_accuracy", "val_miou", "val_mean_dice"):
        assert 0 <= row[key] < 10, key
    test = result.test
    assert len(test["iou"]) == 5 and 0 <= test["miou"] <= 1
    c = torch.tensor(test["confusion"])
    assert c.shape == (5, 5) and int(c.sum()) == test["pixels"] == 150 * 64 * 64
    assert scores(c)["miou"] == pytest.approx(test["miou"])  # the reported numbers are the matrix's
