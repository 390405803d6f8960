"""Compare aligned by stride and the Calculator's RoI pooling, as a person sees them in headless Chromium
(issue 14, item 3). Screenshots go to tests/artifacts/ for a person to look at (column names whole, the bins'
colours apart); the test reads what it can from the page: the curves' colours, the sentences, a typed change.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.server import CHROMIUM, launch_chromium, serving

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
WIDTH = 1400

if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is missing: install Debian's chromium (`make browser` or "
                "`apt-get install -y chromium`) to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXPLORER_RUNS", str(tmp_path_factory.mktemp("runs")))
        with serving(ARTIFACTS / "streamlit-server-compare-roi.log") as url, sync_api.sync_playwright() as p:
            browser = launch_chromium(p)
            pg = browser.new_page(viewport={"width": WIDTH, "height": 900}, locale="en-US")
            pg.set_default_timeout(60_000)
            pg.app_url = url
            try:
                yield pg
            finally:
                browser.close()


def idle(pg) -> None:
    """Until Streamlit has finished the run (its "Running…" status widget is gone)."""
    for _ in range(2):
        pg.wait_for_timeout(250)
        pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)


def shot(pg, name: str, clip_from: str | None = None) -> Path:
    """The whole page (or from the heading ``clip_from`` down): grow the viewport to the content first."""
    height = pg.evaluate("() => Math.max(document.querySelector('[data-testid=\"stMain\"]').scrollHeight, "
                         "document.body.scrollHeight)")
    pg.set_viewport_size({"width": WIDTH, "height": min(max(int(height), 900), 8000)})
    idle(pg)
    pg.wait_for_timeout(1000)
    path = ARTIFACTS / name
    if clip_from:
        top = pg.get_by_role("heading", name=clip_from).bounding_box()["y"] - 20
        pg.screenshot(path=str(path), clip={"x": 0, "y": top, "width": WIDTH, "height": int(height) - top})
    else:
        pg.screenshot(path=str(path), full_page=True)
    pg.set_viewport_size({"width": WIDTH, "height": 900})
    return path


def test_compare_three_models_by_stride(page):
    pg = page
    pg.goto(pg.app_url + "/compare")
    idle(pg)
    pg.get_by_role("heading", name="Stage by stage, aligned by stride").wait_for()
    remove = pg.locator('[data-testid="stMultiSelect"]').get_by_role("button", name="Remove")
    for _ in range(8):  # the defaults, removed as a person would (a rerun landing mid-click can bring one back)
        idle(pg)
        if not remove.count():
            break
        remove.first.click()
    pg.get_by_text("Choose at least two architectures to compare.").wait_for()
    assert remove.count() == 0, "the default picks could not be removed"
    box = pg.get_by_role("combobox", name="Architectures (2–4)")
    for model in ("mobilenet_v2", "efficientnet_b0", "resnet18"):
        # The picked model's chip (the open list's options are drawn outside the widget).
        chip = pg.locator('[data-testid="stMultiSelect"]').get_by_text(f"model: {model}", exact=True)
        for attempt in range(4):  # a rerun that lands while the list is open closes it (or drops the pick): again
            if chip.count():
                break
            box.click()
            box.fill(model)
            try:
                pg.get_by_role("option", name=f"model: {model}", exact=True).click(timeout=15_000)
            except sync_api.TimeoutError:
                pg.screenshot(path=str(ARTIFACTS / f"compare_pick_{model}_{attempt}.png"))
                pg.keyboard.press("Escape")
            idle(pg)
        chips = pg.locator('[data-testid="stMultiSelect"]').inner_text()
        assert chip.count() == 1, f"{model} could not be picked (the box holds: {chips!r})"
    pg.keyboard.press("Escape")
    idle(pg)
    pg.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length === 3")
    assert pg.get_by_test_id("stException").count() == 0
    # The three curves in D3's first three hues (blue, orange, green), not two shades of one blue.
    strokes = pg.eval_on_selector_all(".js-plotly-plot .scatterlayer .trace path.js-line",
                                      "paths => paths.map(p => p.style.stroke)")
    assert strokes == ["rgb(31, 119, 180)", "rgb(255, 127, 14)", "rgb(44, 160, 44)"]
    legend = pg.eval_on_selector_all(".js-plotly-plot .legend .legendtext", "ts => ts.map(t => t.textContent)")
    assert legend == ["mobilenet_v2", "efficientnet_b0", "resnet18"]
    assert pg.get_by_test_id("stDataFrame").count() == 3  # costs, stages by stride, costs so far
    shot(pg, "compare_aligned_by_stride.png")


def test_calculator_roi_pooling_both_ways(page):
    pg = page
    pg.goto(pg.app_url + "/calculator")
    idle(pg)
    pg.get_by_role("heading", name="RoI pooling").scroll_into_view_if_needed()
    info = pg.get_by_test_id("stAlert").filter(has_text="roi_pool rounds the box")
    info.wait_for()
    assert "here row 5 and column 3" in info.inner_text()
    assert "bin (1, 2) 0.96 instead of 0.84" in info.inner_text()
    pg.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .heatmaplayer').length >= 2")
    shot(pg, "calculator_roi_pooling.png", clip_from="RoI pooling")
    # A person types the last row 6: four rows split 2 + 2 both ways, only column 3 still shared.
    field = pg.get_by_role("spinbutton", name="y2 (last row)")
    field.fill("6")
    field.press("Enter")
    idle(pg)
    info = pg.get_by_test_id("stAlert").filter(has_text="roi_pool rounds the box")
    # the sentence is redrawn by the rerun the Enter started: wait for the new one (idle can come before it)
    sync_api.expect(info).to_contain_text("bin (2, 1) 0.86 instead of 0.69", timeout=30_000)
    assert "here column 3" in info.inner_text()
    assert pg.get_by_test_id("stException").count() == 0
