"""The lecture experiments on the Train page in headless Chromium: choose the homework preset, start it at the tiny
budget with its one button, wait for its three runs, and see the table and the side-by-side grid of predictions
(screenshot in tests/artifacts/experiments_homework.png)."""
import re

import pytest

from bench.server import CHROMIUM, serving

if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is missing: install Debian's chromium (`make browser` or "
                "`apt-get install -y chromium`) to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")

from test_browser import ARTIFACTS, browser, full_page_screenshot, page, wait_until_idle  # noqa: E402,F401

pytestmark = [pytest.mark.browser, pytest.mark.training]
expect = sync_api.expect
GROUP_MS = 300_000  # three spawned workers, one after another, each importing torch and training a few seconds


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXPLORER_RUNS", str(tmp_path_factory.mktemp("runs")))
        with serving(ARTIFACTS / "streamlit-server-experiments.log") as url:
            yield url


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
        assert "experiment=" in page.url
        grid = page.get_by_text(re.compile(r"^Predictions on the same \d+ validation images"))
        expect(grid.first).to_be_visible(timeout=30_000)
        expect(page.get_by_role("button", name="Download the report (Markdown and figures, .zip)")).to_be_visible()
        assert page.get_by_test_id("stException").count() == 0
        grid.first.scroll_into_view_if_needed()
        full_page_screenshot(page, "experiments_homework.png")
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "experiments_failure.png"), full_page=True)
        raise
