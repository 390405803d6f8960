"""The Train page in headless Chromium: start a tiny run by clicking, watch its curve appear while the page polls,
see it finish with its test accuracy, sample predictions and the images of a confusion cell; start a long one, see
the time left, stop it with its button; a reload re-attaches; compare the two runs. Then a lecture experiment:
the homework preset at the tiny budget, started with its one button, its three runs side by side with the grid of
predictions (screenshot experiments_homework.png).

The server trains into a temporary runs folder (``EXPLORER_RUNS``); screenshots go to tests/artifacts/.
"""
import re

import pytest

from bench.server import CHROMIUM, serving

if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is missing: install Debian's chromium (`make browser` or "
                "`apt-get install -y chromium`) to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")

# One Chromium per module and a fresh context per test, as test_browser.py makes them (imported fixtures).
from test_browser import ARTIFACTS, browser, full_page_screenshot, metric, page, wait_until_idle  # noqa: E402,F401

pytestmark = [pytest.mark.browser, pytest.mark.training]
expect = sync_api.expect
RUN_MS = 120_000  # a spawned worker imports torch (~3 s), then trains a few seconds


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXPLORER_RUNS", str(tmp_path_factory.mktemp("runs")))  # the server inherits it
        with serving(ARTIFACTS / "streamlit-server-train.log") as url:
            yield url


def type_number(pg, label: str, value: int) -> None:
    box = pg.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    wait_until_idle(pg)


def run_line(pg):
    return pg.get_by_test_id("stMarkdownContainer").filter(has_text=re.compile(r"^Run \d{8}-\d{6}-[0-9a-f]{6}"))


def test_start_a_run_watch_it_finish_then_stop_another(app_url, page):
    try:
        walk(app_url, page)
    except Exception:  # what the page showed when it failed, for a person to look at
        page.screenshot(path=str(ARTIFACTS / "train_failure.png"), full_page=True)
        raise
    # The workers did not run the page script again (multiprocessing's spawn did, under `streamlit run`: it
    # installs the script as __main__), which wrote these warnings once per widget into the server's log.
    log = (ARTIFACTS / "streamlit-server-train.log").read_text()
    assert "missing ScriptRunContext" not in log and "Session state does not function" not in log


def walk(app_url, page):
    page.goto(f"{app_url}/train")
    expect(metric(page, "61,706")).to_be_visible(timeout=90_000)  # LeNet-5 from scratch
    expect(page.get_by_text("Learning rate per step")).to_be_visible()
    wait_until_idle(page)
    assert page.get_by_test_id("stException").count() == 0
    full_page_screenshot(page, "train_before.png")

    type_number(page, "Epochs", 3)
    type_number(page, "Training images (0: all)", 256)
    expect(metric(page, "256")).to_be_visible()
    page.get_by_role("button", name="Start training").click()
    expect(run_line(page)).to_contain_text("running", timeout=RUN_MS)
    # .first: while the fragment redraws, the old chart may still be there (hidden) beside the new one
    expect(page.get_by_text("Training loss per batch").first).to_be_visible(timeout=RUN_MS)  # the curve, while it runs
    assert "run=" in page.url
    expect(run_line(page)).to_contain_text("finished", timeout=RUN_MS)
    expect(run_line(page)).to_contain_text("epoch 3 of 3")
    expect(page.get_by_test_id("stMetricLabel").filter(has_text="Test accuracy")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Confusion matrix (test split)")).to_be_visible()
    # the sample predictions of the last epoch, and the images of the most frequent mistake's cell
    expect(page.get_by_text("Predictions on 8 validation images after epoch 3")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^\d+ test images?: true \d, predicted \d$"))).to_be_visible()
    expect(page.get_by_role("button", name="Download a PyTorch training script (.py)")).to_be_visible()
    # a click on the cell true 3, predicted 3 (row 4, column 4 of ten) opens its images
    cells = page.locator(".js-plotly-plot").filter(has_text="Confusion matrix").first.locator(".nsewdrag").first
    cells.scroll_into_view_if_needed()
    box = cells.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 3.5 / 10, box["y"] + box["height"] * 3.5 / 10)
    expect(page.get_by_text(re.compile(r"^\d+ test images?: true 3, predicted 3"))).to_be_visible(timeout=30_000)
    wait_until_idle(page)
    assert page.get_by_test_id("stException").count() == 0
    full_page_screenshot(page, "train_after.png")
    first = re.search(r"run=([0-9a-f-]+)", page.url).group(1)

    # a reload is a new session: the link brings the run and the session's runs back
    page.reload()
    expect(run_line(page)).to_contain_text(first, timeout=90_000)
    expect(run_line(page)).to_contain_text("finished")

    # a second, long run, stopped with its button while it trains
    type_number(page, "Epochs", 200)
    type_number(page, "Training images (0: all)", 0)
    page.get_by_role("button", name="Start training").click()
    page.wait_for_function(f"() => location.search.includes('run=') && !location.search.includes('run={first}')")
    expect(run_line(page)).to_contain_text("running", timeout=RUN_MS)
    expect(page.get_by_text("Training loss per batch").first).to_be_visible(timeout=RUN_MS)
    expect(run_line(page)).to_contain_text(re.compile(r"epoch [2-9]\d* of 200"), timeout=RUN_MS)  # curves grow
    expect(run_line(page)).to_contain_text(re.compile(r"per epoch, ≈ .+ left"))  # the time left, measured
    # .first: while the fragment redraws, the old chart may still be there beside the new one
    expect(page.get_by_text("Loss per epoch").first).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Predictions on 8 validation images after epoch \d+")).first).to_be_visible()
    full_page_screenshot(page, "train_during.png")
    page.get_by_role("button", name="Stop run").click()
    expect(run_line(page)).to_contain_text("stopped", timeout=RUN_MS)
    expect(page.get_by_role("button", name="Resume run")).to_be_visible()
    wait_until_idle(page)
    assert page.get_by_test_id("stException").count() == 0
    assert "Traceback" not in page.inner_text("body")
    full_page_screenshot(page, "train_stopped.png")

    # the two runs compared: curves overlaid, the settings that differ, the results
    second = re.search(r"run=([0-9a-f-]+)", page.url).group(1)
    compare = page.get_by_role("combobox", name=re.compile(r"^Compare runs"))
    for run_id in (first, second):  # type it, arrow down to it, Enter (as test_browser_compose.pick)
        compare.click()
        compare.fill(run_id)
        compare.press("ArrowDown")
        compare.press("Enter")
        wait_until_idle(page)
    page.keyboard.press("Escape")
    expect(page.get_by_text("Validation accuracy per epoch")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("The settings that differ")).to_be_visible()
    wait_until_idle(page)
    assert page.get_by_test_id("stException").count() == 0
    full_page_screenshot(page, "train_compare.png")


GROUP_MS = 300_000  # three spawned workers, one after another, each importing torch and training a few seconds


def test_the_tiny_homework_shows_the_grid(app_url, page):
    try:
        page.goto(f"{app_url}/train")
        expect(page.get_by_text("Experiments from the lectures")).to_be_visible(timeout=90_000)
        wait_until_idle(page)
        page.get_by_text("a quick look (seconds)").click()
        wait_until_idle(page)
        page.get_by_role("button", name="Start the experiment").click()
        line = page.get_by_test_id("stMarkdownContainer").filter(has_text=re.compile(r"^Experiment \d{8}-"))
        expect(line.first).to_contain_text("3 of 3 runs finished", timeout=GROUP_MS)
        expect(page).to_have_url(re.compile(r"experiment=\d{8}-"), timeout=30_000)
        grid = page.get_by_text(re.compile(r"^Predictions on the same \d+ validation images"))
        expect(grid.first).to_be_visible(timeout=30_000)
        # drawn by the page's rerun once the last run ended (no longer polling): give it a loaded machine's time
        expect(page.get_by_role("button", name="Download the report (Markdown and figures, .zip)")).to_be_visible(
            timeout=60_000)
        assert page.get_by_test_id("stException").count() == 0
        grid.first.scroll_into_view_if_needed()
        full_page_screenshot(page, "experiments_homework.png")
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "experiments_failure.png"), full_page=True)
        raise
