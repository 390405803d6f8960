"""A run trained on the Train page is a network on Predict, and Predict reads a digit drawn with the mouse, in
headless Chromium.

The server trains into a temporary runs folder (``EXPLORER_RUNS``); screenshots go to tests/artifacts/
(predict_run.png: Predict with the run; predict_canvas.png: a digit drawn on the canvas, predicted).
"""
import re
from urllib.parse import urlsplit

import pytest

from bench.server import CHROMIUM, serving

if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is missing: install Debian's chromium (`make browser` or "
                "`apt-get install -y chromium`) to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")

from test_browser import ARTIFACTS, browser, full_page_screenshot, metric, page, wait_until_idle  # noqa: E402,F401
from test_browser_train import run_line, type_number  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.training]
expect = sync_api.expect
RUN_MS = 120_000  # a spawned worker imports torch (~3 s), then trains a second


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXPLORER_RUNS", str(tmp_path_factory.mktemp("runs")))  # the server inherits it
        with serving(ARTIFACTS / "streamlit-server-trained.log") as url:
            yield url


def no_traceback(pg) -> None:
    wait_until_idle(pg)
    assert pg.get_by_test_id("stException").count() == 0
    assert "Traceback" not in pg.inner_text("body")


def test_a_finished_run_predicts_on_predict(app_url, page):
    try:
        train_then_predict(app_url, page)
    except Exception:  # what the page showed when it failed, for a person to look at
        page.screenshot(path=str(ARTIFACTS / "predict_run_failure.png"), full_page=True)
        raise


def train_then_predict(app_url, page):
    page.goto(f"{app_url}/train")
    expect(metric(page, "61,706")).to_be_visible(timeout=90_000)  # LeNet-5 from scratch on the digits
    type_number(page, "Epochs", 2)
    type_number(page, "Training images (0: all)", 512)
    page.get_by_role("button", name="Start training").click()
    expect(run_line(page)).to_contain_text("finished", timeout=RUN_MS)
    run_id = re.search(r"run=([0-9a-f-]+)", page.url).group(1)
    page.get_by_role("link", name="Predict with it").click()  # in this session: the link switches the source
    expect(page.get_by_text(re.compile(r"\d of 8\b.*held-out digits classified correctly"))).to_be_visible(
        timeout=90_000)
    badge = page.get_by_text(re.compile(r"Trained in the app: lenet5 · Weights: trained in the app on Digits "
                                        rf"\(32×32\), test accuracy \d+\.\d % \(run {run_id}\)"))
    expect(badge).to_be_visible()
    assert f"source=run%3A{run_id}" in page.url or f"source=run:{run_id}" in page.url
    no_traceback(page)
    full_page_screenshot(page, "predict_run.png")


def test_a_digit_drawn_with_the_mouse_is_predicted(app_url, page):
    try:
        draw_a_one(app_url, page)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "predict_canvas_failure.png"), full_page=True)
        raise


def draw_a_one(app_url, page):
    own = urlsplit(app_url).netloc
    outside: list[str] = []  # the canvas component loads its script and style from the app itself, nothing else
    page.on("request", lambda r: outside.append(r.url)
            if urlsplit(r.url).scheme in ("http", "https", "ws", "wss") and urlsplit(r.url).netloc != own else None)
    page.goto(f"{app_url}/predict?source=lenet5_digits")
    expect(page.get_by_text(re.compile(r"of 8\b.*held-out digits classified correctly"))).to_be_visible(
        timeout=90_000)
    wait_until_idle(page)
    page.get_by_text("Draw a digit", exact=True).click()
    # Fabric.js draws on its upper canvas; the component sits in the page itself (components v2: no iframe)
    canvas = page.locator("canvas.upper-canvas").first
    expect(canvas).to_be_visible(timeout=30_000)
    wait_until_idle(page)
    box = canvas.bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    # a "1": one stroke down the middle, from the top to the bottom
    page.mouse.move(x0 + 0.5 * w, y0 + 0.12 * h)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(x0 + 0.5 * w, y0 + (0.12 + 0.76 * i / 20) * h)
    page.mouse.up()
    drawing = page.get_by_test_id("stImage").filter(has_text="your drawing")
    expect(drawing).to_be_visible(timeout=30_000)
    prediction = page.get_by_test_id("stMarkdownContainer").filter(has_text=re.compile(r"^\d · \d+\.\d%$"))
    expect(prediction.first).to_be_visible()
    no_traceback(page)
    full_page_screenshot(page, "predict_canvas.png")
    assert outside == [], outside
