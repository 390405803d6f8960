"""A finished run on Predict, Explain and Feature maps (AppTest): ``?source=run:<id>`` shows it labelled "trained in
the app" with its data set and test score, and its predictions; a link to a run that is not a finished one is a
sentence and the composition is shown; a digit drawn on Predict's canvas is predicted; Train's links to the pages.

The run is tiny (LeNet-5, two epochs on 512 digits), trained in this process by the Train page's worker into a
temporary runs folder (``EXPLORER_RUNS``, which the pages' run manager reads).
"""
from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from apptest_pages import assert_clean, open_page
from explorer.images import digit_input, digit_samples
from explorer.network import Network
from explorer.training.runfolder import RunFolder
from explorer.ui.inference import drawing_picture
from explorer.vis.features import feature_maps
from test_trained_network import ANGLE, LENET, finished_run

APP_PAGES = Path(__file__).resolve().parents[1] / "app_pages"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    return finished_run(tmp_path_factory.mktemp("runs"), LENET)


@pytest.fixture
def run(run_folder, monkeypatch) -> RunFolder:
    monkeypatch.setenv("EXPLORER_RUNS", str(run_folder.parent))
    return RunFolder(run_folder)


def badge(run: RunFolder) -> str:
    percent = f"{run.result()['test']['accuracy'] * 100:.1f} %"
    return (f"Trained in the app: lenet5 · Weights: trained in the app on Digits (32×32), test accuracy {percent} "
            f"(run {run.run_id})")


def captions(at) -> list[str]:
    return [c.value for c in at.caption]


def shows_the_run(at, run: RunFolder, page: str, runs: int = 1) -> None:
    """The page runs ``run``: its badge, the network choice on it, the address bar naming it (``runs``: how many
    finished runs the choice offers)."""
    assert not at.error, [e.value for e in at.error]
    assert any(badge(run) in c for c in captions(at)), captions(at)
    radio = at.radio(key=f"w.{page}.source")
    assert radio.value == "trained"
    assert f"Trained in the app ({runs} finished run{'s' if runs > 1 else ''})" in radio.options
    assert at.selectbox(key=f"w.{page}.run").value == f"run:{run.run_id}"
    assert at.query_params["source"] in (f"run:{run.run_id}", [f"run:{run.run_id}"])


def predicted(run: RunFolder, x) -> str:
    """The class the run's own model gives ``x``."""
    model = Network.trained(run.path).build().model
    return str(int(model(x).argmax(1)))


def test_predict_with_a_finished_run(run):
    at = open_page("predict", source=f"run:{run.run_id}")
    shows_the_run(at, run, "predict")
    net = Network.trained(run.path)
    assert at.selectbox(key="w.predict.run").options == [f"{net.label} (run {run.run_id})"]
    # the first eight held-out digits, predicted by the run's model
    samples = digit_samples(8)
    right = sum(predicted(run, digit_input(i)[0]) == str(y) for i, y in samples)
    assert f"**{right} of 8** held-out digits classified correctly." in [m.value for m in at.markdown]
    first = predicted(run, digit_input(samples[0][0])[0])
    assert at.markdown[2].value.startswith(f"**{first}** · ")  # the first digit's verdict, under the count


def test_explain_and_feature_maps_with_a_finished_run(run):
    at = open_page("explain", source=f"run:{run.run_id}")
    shows_the_run(at, run, "explain")
    index = digit_samples(1)[0][0]
    target = next(s for s in at.selectbox if s.label == "Explain the class")
    assert target.value == int(predicted(run, digit_input(index)[0]))  # the predicted class of the first digit
    at = open_page("feature_maps", source=f"run:{run.run_id}")
    shows_the_run(at, run, "fm")
    layer = at.selectbox(key="w.fm.layer").value
    built = Network.trained(run.path).build()
    c, h, w = feature_maps(built.model, digit_input(index)[0], layer, network=built.network).shape
    assert any(m.value.startswith(f"**{layer}**: {c:,} channels of {h}×{w}") for m in at.markdown)


def test_a_link_to_a_run_that_is_not_there_or_not_finished_says_so(run):
    at = open_page("predict", source="run:20990101-000000-ffffff")
    assert [e.value for e in at.error] == [
        f"There is no run '20990101-000000-ffffff' in {run.path.parent}; pick a finished run on Train."]
    assert at.radio(key="w.predict.source").value == "composition"
    assert at.query_params["source"] in ("composition", ["composition"])
    busy = run.path.parent / "20990101-000000-000001"
    shutil.copytree(run.path, busy)
    try:
        RunFolder(busy).update_status(state="running")
        at = open_page("explain", source=f"run:{busy.name}")
        assert [e.value for e in at.error] == [
            f"The run {busy.name} is running, not finished; wait for it to finish on Train, or pick a finished run."]
        assert at.radio(key="w.explain.source").value == "composition"
    finally:
        shutil.rmtree(busy)
    at = open_page("predict", source="run:../../etc")
    assert [e.value for e in at.error] == [
        f"There is no run '../../etc' in {run.path.parent}; pick a finished run on Train."]


def test_a_link_during_a_session_and_the_choice_switch_to_the_run(run):
    at = open_page("predict", source="lenet5_digits")
    assert at.radio(key="w.predict.source").value == "lenet5_digits"
    at.query_params["source"] = f"run:{run.run_id}"  # Train's "Predict with it", followed in this session
    at.run()
    assert_clean(at)
    shows_the_run(at, run, "predict")
    at.radio(key="w.predict.source").set_value("composition").run()
    assert at.query_params["source"] in ("composition", ["composition"])
    at.radio(key="w.predict.source").set_value("trained").run()  # back to the run shown last
    shows_the_run(at, run, "predict")


def drawn_one() -> tuple[np.ndarray, str]:
    """A canvas with a "1" drawn on it (white on black, RGBA) and the drawing as the component sends it."""
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[40:240, 128:152, :3] = 255
    png = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(png, "PNG")
    return rgba, "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()


def test_a_digit_drawn_on_the_canvas_is_predicted(run):
    at = open_page("predict", source=f"run:{run.run_id}")
    at.toggle(key="w.predict.draw").set_value(True).run()
    assert_clean(at)
    assert at.slider(key="w.predict.stroke").value == 26
    rgba, data_url = drawn_one()
    at.session_state["w.predict.canvas"] = {"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": data_url}}
    at.run()
    assert_clean(at)
    shown = [c for im in at.get("image") for c in im.captions]
    assert shown[0] == "your drawing" and len(shown) == 9  # the drawing first, then the eight held-out digits
    net = Network.trained(run.path)
    x, steps = net.preprocess(drawing_picture(rgba))
    assert at.markdown[2].value.startswith(f"**{predicted(run, x)}** · ")  # its verdict, under the digits' count
    assert f"Preprocessing: {steps}" in captions(at)
    # the drawing alone, predicted live: the same verdict
    at.multiselect(key=f"w.predict.samples.{run.run_id}").set_value([]).run()
    assert [c for im in at.get("image") for c in im.captions] == ["your drawing"]
    assert at.markdown[1].value.startswith(f"**{predicted(run, x)}** · ")


def test_the_canvas_is_offered_for_digit_networks_only(run):
    at = open_page("predict", source="composition")
    assert not [t for t in at.toggle if t.label == "Draw a digit"]
    at = open_page("predict", source="gap_cnn_digits_canvas")
    assert [t.label for t in at.toggle if t.label == "Draw a digit"] == ["Draw a digit"]


def test_an_empty_canvas_is_no_image():
    assert drawing_picture(None) is None
    assert drawing_picture(np.zeros((280, 280, 4), np.uint8)) is None
    rgba, _ = drawn_one()
    picture = drawing_picture(rgba)
    a = np.asarray(picture)
    assert picture.mode == "RGB" and a.shape == (280, 280, 3)
    assert a[:, 128:152][40:240].min() == 255 and a[:, :128].max() == 0


def test_train_links_a_run_to_the_three_pages():
    def app(folder: str):  # the app's frame in small: Train (here, the links alone) and the three pages
        import streamlit as st

        from explorer.ui import trained

        pages = [st.Page(f"{folder}/{name}.py", url_path=name) for name in ("predict", "explain", "feature_maps")]
        home = st.Page(lambda: trained.links("20990101-000000-abcdef"), title="Train", default=True)
        st.navigation([home, *pages]).run()

    at = AppTest.from_function(app, args=(str(APP_PAGES),), default_timeout=60).run()
    assert_clean(at)
    links = [(p.proto.label, p.proto.page, p.proto.query_string) for p in at.get("page_link")]
    assert links == [("Predict with it", "predict", "source=run%3A20990101-000000-abcdef"),
                     ("Explain it", "explain", "source=run%3A20990101-000000-abcdef"),
                     ("Feature maps", "feature_maps", "source=run%3A20990101-000000-abcdef")]


def test_the_run_picker_lists_the_newest_first_and_the_address_bar_follows(run_folder, tmp_path, monkeypatch):
    older = RunFolder(shutil.copytree(run_folder, tmp_path / "20990101-000000-00000a"))
    newer = RunFolder(shutil.copytree(run_folder, tmp_path / "20990101-000001-00000b"))
    newer.update_status(submitted=older.status()["submitted"] + 60)
    owner = "0123456789abcdef"  # the picker lists this session's runs only: both are its own
    older.update_status(owner=owner)
    newer.update_status(owner=owner)
    stranger = RunFolder(shutil.copytree(run_folder, tmp_path / "20990101-000002-00000c"))
    stranger.update_status(submitted=newer.status()["submitted"] + 60, owner="fedcba9876543210")
    monkeypatch.setenv("EXPLORER_RUNS", str(tmp_path))
    at = open_page("predict", source=f"run:{older.run_id}", owner=owner)
    shows_the_run(at, older, "predict", runs=2)
    picker = at.selectbox(key="w.predict.run")
    label = Network.trained(older.path).label  # the same network, data set and score: told apart by their ids
    assert picker.options == [f"{label} (run {newer.run_id})", f"{label} (run {older.run_id})"]  # not the stranger's
    picker.set_value(f"run:{newer.run_id}").run()
    assert_clean(at)
    shows_the_run(at, newer, "predict", runs=2)


@pytest.fixture(scope="module")
def angle_run(tmp_path_factory) -> Path:
    return finished_run(tmp_path_factory.mktemp("angle_runs"), ANGLE)


def test_predict_with_a_regression_run_gives_the_angle(angle_run, monkeypatch):
    monkeypatch.setenv("EXPLORER_RUNS", str(angle_run.parent))
    run = RunFolder(angle_run)
    at = open_page("predict", source=f"run:{run.run_id}")
    assert not at.error, [e.value for e in at.error]
    mae = run.result()["test"]["mae"]
    assert any(f"Weights: trained in the app on Rotated digits (angle in degrees), test MAE {mae:.3g}°" in c
               for c in captions(at))
    table = at.dataframe[0].value
    assert list(table.columns) == ["rotation angle (°)"] and len(table) == 8  # the eight upright held-out digits
    model = Network.trained(run.path).build().model
    expected = [float(model(digit_input(i, "digits")[0])[0, 0]) for i, _ in digit_samples(8)]
    assert table["rotation angle (°)"].tolist() == pytest.approx(expected, abs=1e-4)
    assert at.get("image")[0].captions[0] == f"held-out digit #{digit_samples(1)[0][0]} (a " \
                                             f"{digit_samples(1)[0][1]}): {expected[0]:.3g}"
