"""Train page (AppTest) with a segmentation run: an encoder–decoder on the shapes set, started on the page, trains
in its own process and shows what a person checks of a segmentation model — the test mIoU, pixel accuracy and
mean Dice, the pixel scores per epoch, each class's IoU, the pixel confusion matrix, and validation images beside
their true and predicted masks — with the numbers the same config gives when trained in this process."""
import pytest

from apptest_pages import assert_clean, open_page
from explorer.training import RunManager, train
from explorer.training.shapes import CLASSES
from test_train_page import charts, metrics, param, run_line, run_until

pytestmark = pytest.mark.training


def test_a_segmentation_run_shows_miou_per_class_iou_and_masks(runs_root):
    at = open_page("train")
    at.selectbox(key="w.train.catalog").set_value("seg_encoder_decoder").run()
    at.selectbox(key="w.train.dataset").set_value("shapes").run()
    at.number_input(key="w.train.epochs").set_value(1).run()
    at.number_input(key="w.train.batch").set_value(16).run()
    at.number_input(key="w.train.samples").set_value(32).run()
    assert_clean(at)
    at.button(key="w.train.start").click().run()
    assert_clean(at)
    run_id = param(at, "run")
    run_until(at, lambda a: "**finished**" in run_line(a), "the segmentation run to finish", timeout=180)

    cfg = RunManager(runs_root).config(run_id)
    expected = train(cfg.replace(threads=1))  # the worker's one thread: the same numbers
    test = expected.test
    m = metrics(at)
    assert m["Test mIoU"] == f"{test['miou']:.1%}"
    assert m["Test pixel accuracy"] == f"{test['pixel_accuracy']:.1%}"
    assert m["Test mean Dice"] == f"{test['mean_dice']:.1%}"
    assert f"Test images: **150**, {150 * 64 * 64:,} pixels scored." in [x.value for x in at.markdown]

    shown = charts(at)
    per_epoch = shown["Pixel accuracy and mIoU per epoch"]["data"]
    assert [t["name"] for t in per_epoch] == ["training pixel accuracy", "validation pixel accuracy",
                                              "validation mIoU", "validation mean Dice"]
    assert per_epoch[2]["y"] == pytest.approx([r["val_miou"] for r in expected.history])
    assert shown["Confusion matrix (test pixels)"]["data"][0]["z"] == test["confusion"]

    classes = next(df.value for df in at.dataframe if "IoU" in df.value.columns)
    assert list(classes["class"]) == list(CLASSES)
    assert list(classes["test pixels"]) == [sum(row) for row in test["confusion"]]
    assert list(classes["IoU"]) == ["–" if v is None else f"{v:.1%}" for v in test["iou"]]

    grid = [x.value for x in at.markdown if x.value.startswith("**Predictions on ")]
    assert grid and grid[0].startswith("**Predictions on 8 validation images after epoch 1** (each: the image, its "
                                       "true mask, the predicted mask; mean of their mIoU")
    pictures = at.get("image")[-1].proto.imgs  # one picture per image: the image, its truth, its prediction
    assert len(pictures) == 8 and all(c.caption.startswith("truth: ") and " · mIoU " in c.caption for c in pictures)
    runs = at.dataframe[-1].value
    assert list(runs["test"]) == [f"mIoU {test['miou']:.1%}"]
    assert not at.get("page_link")  # Predict, Explain and Feature maps do not open segmentation runs yet

    # a link to it there is answered with a sentence, not a traceback
    predict = open_page("predict", source=f"run:{run_id}")
    assert any(e.value.startswith(f"The run {run_id} segments Shapes") for e in predict.error), \
        [e.value for e in predict.error]
