"""The running app in headless Chromium: a shared link shows the lecture's numbers and survives a reload.

Starts `streamlit run app.py` on a free port, drives Debian's /usr/bin/chromium with Playwright (it cannot
download its own browser here), and saves full-page screenshots to tests/artifacts/ for a person to look at.
"""
import json
from pathlib import Path

import pytest

from bench.server import CHROMIUM, launch_chromium, serving

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
WIDTH = 1400  # a desktop / projector width

if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is missing: install Debian's chromium (`make browser` or "
                "`apt-get install -y chromium`) to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with serving(ARTIFACTS / "streamlit-server.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = launch_chromium(p)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": WIDTH, "height": 900}, locale="en-US")
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


def wait_until_idle(pg) -> None:
    """Until Streamlit has finished the run (its "Running…" status widget is gone)."""
    pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000)


def metric(pg, value: str):
    # .first: total and trainable parameters show the same number
    return pg.get_by_test_id("stMetricValue").filter(has_text=value).first


def model_box(pg):
    return pg.get_by_role("combobox", name="Model")


def full_page_screenshot(pg, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its own container, so grow the viewport to the content first."""
    height = pg.evaluate("""() => {
        const main = document.querySelector('[data-testid="stMain"]') || document.body;
        return Math.max(main.scrollHeight, document.body.scrollHeight);
    }""")
    pg.set_viewport_size({"width": WIDTH, "height": min(max(int(height), 900), 12000)})
    pg.wait_for_timeout(500)  # let the tables re-layout at the new size
    path = ARTIFACTS / name
    pg.screenshot(path=str(path), full_page=True)
    pg.set_viewport_size({"width": WIDTH, "height": 900})
    return path


def test_shared_link_shows_vgg16_and_survives_reload(app_url, page):
    # The Layers page is the default page, which Streamlit serves at the app's root URL.
    page.goto(f"{app_url}/layers?model=vgg16&input=224")
    sync_api.expect(metric(page, "138,357,544")).to_be_visible(timeout=60_000)
    sync_api.expect(metric(page, "15,237,608")).to_be_visible()
    sync_api.expect(model_box(page)).to_have_value("vgg16 — VGG (2014)")
    sync_api.expect(page.get_by_text("24M × 4 bytes ≈ 96 MB", exact=False)).to_be_visible()
    wait_until_idle(page)
    assert page.get_by_test_id("stException").count() == 0
    full_page_screenshot(page, "layers_vgg16.png")

    page.reload()
    sync_api.expect(metric(page, "138,357,544")).to_be_visible(timeout=60_000)
    sync_api.expect(model_box(page)).to_have_value("vgg16 — VGG (2014)")
    sync_api.expect(page.get_by_test_id("stNumberInput").first.locator("input")).to_have_value("224")
    assert "model=vgg16" in page.url and "input=224" in page.url
    wait_until_idle(page)
    full_page_screenshot(page, "layers_vgg16_reloaded.png")


def test_impossible_input_shows_a_sentence_not_a_traceback(app_url, page):
    page.goto(f"{app_url}/layers?model=vgg16&input=16")
    error = page.get_by_test_id("stAlertContentError")
    sync_api.expect(error).to_contain_text("cannot take a 3×16×16 input", timeout=60_000)
    sync_api.expect(model_box(page)).to_have_value("vgg16 — VGG (2014)")
    wait_until_idle(page)
    assert page.get_by_test_id("stException").count() == 0
    assert "Traceback" not in page.inner_text("body")
    full_page_screenshot(page, "layers_vgg16_16px_error.png")


def test_compose_resnet18_se_then_layers_reload_and_download(app_url, page):
    """Issue 4's walk: compose resnet18 + SE + classification, read the count, visit Layers, reload, download."""
    page.goto(f"{app_url}/")  # the root forwards to Compose, the default page
    wait_until_idle(page)
    metric(page, "11,689,512").wait_for()  # resnet18 → classification, = torchvision's resnet18
    # The address bar changes in place (no page load): /compose with the composition in ?spec=.
    page.wait_for_function("() => location.pathname.endsWith('/compose') && location.search.includes('spec=')")
    page.get_by_role("combobox", name="Neck", exact=True).click()
    page.get_by_role("option", name="SE").click()
    wait_until_idle(page)
    params = metric(page, "11,722,824")  # + one SE gate on layer4: 2·512·32 + 32 + 512
    params.wait_for()
    assert "spec=" in page.url
    link = page.url
    full_page_screenshot(page, "compose_resnet18_se.png")

    page.get_by_role("link", name="Layers").click()
    wait_until_idle(page)
    page.get_by_text("Layer by layer").first.wait_for()
    full_page_screenshot(page, "layers_after_compose.png")

    page.get_by_role("link", name="Receptive fields").click()
    wait_until_idle(page)
    page.get_by_text("On an image").first.wait_for(timeout=120_000)
    full_page_screenshot(page, "receptive_fields_after_compose.png")

    page.goto(link)  # a reload of the shared link restores the composition exactly
    wait_until_idle(page)
    metric(page, "11,722,824").wait_for()
    assert page.get_by_role("combobox", name="Neck", exact=True).input_value() == "SE" or \
        page.get_by_text("resnet18 → SE → classification").first.is_visible()
    page.get_by_text("Save or load this composition").click()
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download spec JSON").click()
    data = json.loads(Path(dl.value.path()).read_text())
    assert data["backbone"]["name"] == "resnet18" and data["neck"] == {"kind": "se"}
    assert data["head"]["kind"] == "classification"


def test_predict_an_uploaded_image_then_feature_maps_and_explain(app_url, page, tmp_path):
    """Issue 5's walk: the ready LeNet-5 reads an uploaded digit; feature maps and Grad-CAM of it; the catalog
    model untrained on a photo, labelled so."""
    from PIL import Image

    from explorer.images import digit_image, digit_samples

    index, label = digit_samples()[5]
    digit = tmp_path / "my_digit.png"
    digit_image(index).resize((96, 96), Image.NEAREST).save(digit)

    page.goto(f"{app_url}/predict?source=lenet5_digits")
    wait_until_idle(page)
    page.get_by_text("held-out digits classified correctly").first.wait_for(timeout=120_000)
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Upload images")
    uploader.locator("input[type=file]").set_input_files(str(digit))
    wait_until_idle(page)
    page.get_by_text("my_digit.png").first.wait_for()
    # The upload's own verdict: its top class, with the probability, above its bar chart.
    verdict = page.get_by_test_id("stMarkdownContainer").filter(has_text="·").last
    sync_api.expect(verdict).to_contain_text(f"{label} ·")
    assert page.get_by_test_id("stException").count() == 0
    assert "Traceback" not in page.inner_text("body")
    sync_api.expect(metric(page, "images/s")).to_be_visible()
    full_page_screenshot(page, "predict_lenet_digits_upload.png")

    for link, shown, shot in (("Feature maps", "Channel statistics", "feature_maps_lenet.png"),
                              ("Explain", "The map alone", "explain_lenet_grad_cam.png")):
        page.get_by_role("link", name=link).click()
        wait_until_idle(page)
        page.get_by_text(shown).first.wait_for(timeout=60_000)
        wait_until_idle(page)
        assert page.get_by_test_id("stException").count() == 0
        # the network chosen on Predict is still the one shown (the radio, not only the model)
        sync_api.expect(page.get_by_role("radio", name="Ready: LeNet-5", exact=False)).to_be_checked()
        full_page_screenshot(page, shot)

    page.goto(f"{app_url}/predict?source=catalog&model=resnet18&input=224")
    wait_until_idle(page)
    page.get_by_text("Weights: untrained").first.wait_for(timeout=120_000)
    sync_api.expect(metric(page, "images/s")).to_be_visible()
    assert page.get_by_test_id("stException").count() == 0
    full_page_screenshot(page, "predict_resnet18_untrained.png")
