"""The two ready digit models read the digits people print and draw (issue 13).

tests/data/people_digits holds 40 pictures made by tests/data/make_people_digits.py: each digit four times, printed
in Liberation Sans, Liberation Serif or DejaVu Sans Bold and drawn with a thick round pen, in both polarities, on
RGB pictures of 64–300 px a side, the digit off centre. Nothing trains on them (nor on those fonts). Each is read
as Predict reads an upload: `load_image`, then the ready model's own preprocessing.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from explorer import catalog
from explorer.images import load_image
from explorer.network import Network
from explorer.samples import (TRAINING_FONTS, digits, digits_on_canvas, printed_digits, render_printed_digits,
                              stroke_width)
from explorer.train import PEOPLE_DIGITS, evaluate
from explorer.training.digit_augment import DigitAugmentation, make_digit_augment
from explorer.weights import READY_MODELS

DATA = Path(__file__).resolve().parent / "data" / "people_digits"
FILES = sorted(DATA.glob("*.png"))
HELD_OUT = {"lenet5_digits": lambda: digits()[:3], "gap_cnn_digits_canvas": lambda: digits_on_canvas()[:3]}


def _record(name: str) -> dict:
    return json.loads(READY_MODELS[name].path.with_suffix(".json").read_text(encoding="utf-8"))


def _upload(path: Path) -> Image.Image:
    return load_image(path.read_bytes(), path.name)


def test_the_forty_digits_are_what_their_names_say():
    assert DATA == PEOPLE_DIGITS and len(FILES) == 40
    labels = [int(p.name.split("_")[0]) for p in FILES]
    assert sorted(labels) == sorted(list(range(10)) * 4)
    how = [p.stem.split("_")[1] for p in FILES]
    assert sum(h.startswith("pen") for h in how) == 20
    assert {h for h in how if not h.startswith("pen")} == {"liberation-sans", "liberation-serif", "dejavu-sans-bold"}
    polarity = [p.stem.split("_")[2] for p in FILES]
    assert polarity.count("dark-on-light") == 20 and polarity.count("light-on-dark") == 20
    for path, dark_ink in zip(FILES, (p == "dark-on-light" for p in polarity)):
        image = _upload(path)
        w, h = image.size
        assert image.mode == "RGB" and 64 <= min(w, h) and max(w, h) <= 300 and w != h, path.name
        grey = np.asarray(image.convert("L"), dtype=np.float32) / 255
        border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
        assert (np.median(border) > 0.5) == dark_ink, path.name  # the paper is light where the ink is dark
        assert np.median(border) == pytest.approx(np.median(grey), abs=0.02), path.name  # a margin all round


def test_the_training_fonts_are_not_the_fonts_tested_on():
    tested = ("LiberationSans-", "LiberationSerif-", "DejaVuSans-", "DejaVuSans.")
    assert TRAINING_FONTS and not any(f.name.startswith(tested) for f in TRAINING_FONTS)


@pytest.mark.parametrize("name", list(READY_MODELS))
def test_each_ready_model_reads_at_least_36_of_the_40_and_its_record_says_how_many(name):
    network = Network.ready(name)
    model = network.build().model
    right, inverted = [], []
    for path in FILES:
        x, steps = network.preprocess(_upload(path))
        assert x.shape == (1, *network.input_shape), path.name
        with torch.no_grad():
            right.append(int(model(x).argmax(1)) == int(path.name[0]))
        inverted.append("inverted" in steps)
    assert sum(right) >= 36, [p.name for p, ok in zip(FILES, right) if not ok]
    # dark ink on light paper is turned round for the model, light ink on a dark ground is left as it is
    assert inverted == ["dark-on-light" in p.name for p in FILES]
    record = _record(name)
    assert (record["people_digits_correct"], record["people_digits_count"]) == (sum(right), 40)


@pytest.mark.parametrize("name", list(READY_MODELS))
def test_the_held_out_scikit_learn_accuracy_stays_at_least_97_percent_and_is_the_records(name):
    ready = READY_MODELS[name]
    model = catalog.build(ready.catalog_name)
    model.load_state_dict(load_file(str(ready.path)), strict=True)
    x, y, split = HELD_OUT[name]()
    correct, _ = evaluate(model, x[split["test"]], y[split["test"]])
    record = _record(name)
    assert correct / 360 >= 0.97 and correct == record["test_correct"]
    assert math.isclose(correct / 360, record["test_accuracy"], abs_tol=1e-12) and ready.accuracy == correct / 360
    assert record["augmentation"]["summary"].endswith("polarity normalised at input, not augmented")


def test_an_upload_is_made_like_the_training_digits_whatever_its_polarity():
    network = Network.ready("lenet5_digits")
    path = DATA / "3_liberation-serif_dark-on-light.png"
    dark_on_light = _upload(path)
    light_on_dark = Image.fromarray(255 - np.asarray(dark_on_light))
    x_dark, steps_dark = network.preprocess(dark_on_light)
    x_light, steps_light = network.preprocess(light_on_dark)
    assert torch.allclose(x_dark, x_light, atol=1e-5)  # the same digit to the model
    inverted = "inverted (dark ink on a light ground; the training digits are light on dark) → "
    assert steps_dark == ("grayscale → " + inverted + "the ink cropped and scaled to fill a 32×32 box, as high as "
                          "the box (as the scikit-learn digits were drawn) → strokes thickened by 1 px a side (to "
                          "about 5 px, as the training digits' pen) → averaged over 4×4 blocks to 8×8 (as they "
                          "were), the strongest block 1 → upsampled to 32×32 (bilinear) → normalise with mean 0.5 / "
                          "std 0.5")
    assert steps_light == steps_dark.replace(inverted, "")
    # as the training digits: the ink reaches the top and bottom rows, the ground is -1 at the sides, the ink as
    # strong as theirs (their strongest pixel is above 0.79 in 99 % of them)
    assert float(x_dark.max()) > 0.79 and float(x_dark[..., :, :2].max()) == -1.0
    assert float(x_dark[..., 1, :].max()) > 0 and float(x_dark[..., -2, :].max()) > 0


def test_a_drawing_canvas_white_on_black_and_a_blank_page():
    network = Network.ready("gap_cnn_digits_canvas")
    drawing = _upload(DATA / "7_pen-2_light-on-dark.png")
    x, steps = network.preprocess(drawing)
    assert "inverted" not in steps and "placed at the centre of a blank 64×64 canvas" in steps
    assert float(x.sum()) == pytest.approx(float(x[..., 20:44, 20:44].sum()))  # all ink in the central 24×24
    lenet = Network.ready("lenet5_digits")
    for blank in (Image.new("RGB", (120, 80), (255, 255, 255)), Image.new("RGB", (80, 120), (0, 0, 0))):
        x, steps = lenet.preprocess(blank)
        assert steps == "grayscale → resize to 32×32 (bilinear) → normalise with mean 0.5 / std 0.5"
        assert float(x.min()) == float(x.max()) == -1.0  # empty, as the training digits' ground


def test_stroke_width_measures_a_band():
    bitmap = torch.zeros(1, 1, 32, 32)
    bitmap[..., 4:28, 10:14] = 1.0  # a band 4 px wide and 24 long
    assert stroke_width(bitmap) == pytest.approx(2 * 96 / (2 * 24 + 2 * 2), rel=1e-6)  # 3.7: its ends count too


def test_the_digit_augmentation_is_seeded_keeps_the_range_and_changes_strokes():
    x = digits()[0][:16]
    augment = make_digit_augment(DigitAugmentation(), mean=0.5, std=0.5)
    torch.manual_seed(3)
    a = augment(x)
    torch.manual_seed(3)
    assert torch.equal(a, augment(x)) and a.shape == x.shape
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0 and not torch.equal(a, x)
    still = make_digit_augment(DigitAugmentation(stroke=0.0, scale=(1, 1), aspect=(1, 1), shear=0, rotation=0,
                                                 shift=0), mean=0.5, std=0.5)
    assert torch.allclose(still(x), x, atol=1e-5)  # nothing drawn: the digits themselves
    thicker = make_digit_augment(DigitAugmentation(stroke=1.0, thin_share=0.0, scale=(1, 1), aspect=(1, 1), shear=0,
                                                   rotation=0, shift=0))
    line = torch.zeros(4, 1, 32, 32)
    line[..., 8:24, 15] = 1.0
    assert torch.all(thicker(line).sum((1, 2, 3)) > line.sum((1, 2, 3)))  # ink grows, never shrinks here


def test_a_small_digit_in_a_big_photo_is_still_found():
    # 12 million pixels, 946 of them ink (1 in 12,700): the ink is the few pixels furthest from the paper, not a share
    small = _upload(DATA / "5_liberation-sans_dark-on-light.png")
    paper = tuple(int(v) for v in np.asarray(small)[0, 0])
    photo = Image.new("RGB", (4000, 3000), paper)
    photo.paste(small, (2600, 700))
    network = Network.ready("lenet5_digits")
    x, steps = network.preprocess(photo)
    assert "inverted" in steps and "the ink cropped" in steps
    with torch.no_grad():
        assert int(network.build().model(x).argmax(1)) == 5
    assert torch.allclose(x, network.preprocess(small)[0], atol=0.05)  # the same digit as the small picture


def test_the_printed_training_digits_and_a_missing_font():
    x, y = printed_digits()  # the committed file: training needs no font
    assert x.shape == (80, 1, 8, 8) and y.tolist() == list(range(10)) * 8
    assert torch.allclose(x.amax((1, 2, 3)), torch.ones(80))  # as an upload: the strongest block 1
    with pytest.raises(FileNotFoundError, match=r"^The font /no/such\.ttf is not installed; install Debian's "
                                                r"fonts-dejavu-core, fonts-dejavu-extra and fonts-liberation\.$"):
        render_printed_digits((Path("/no/such.ttf"),))


@pytest.mark.skipif(not all(f.is_file() for f in TRAINING_FONTS), reason="the training fonts are not installed")
def test_the_committed_printed_digits_are_the_fonts_rendered_now():
    rendered_x, rendered_y = render_printed_digits()
    x, y = printed_digits()
    assert torch.equal(rendered_x, x) and torch.equal(rendered_y, y)
