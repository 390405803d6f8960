"""Compose as a person uses it, in headless Chromium: every edit sticks, and every part of the app shows the same
composition (the sidebar, the address bar, the download, Layers) the moment it is made. Issue 12, items 1–7, and
the app's promise of no network request unless a person asks for a download.

One server for the module; each test opens its own session (a fresh page load). Screenshots go to
tests/artifacts/ for a person to look at.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bench.server import CHROMIUM, launch_chromium, serving
from explorer.spec import ArchitectureSpec

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
WIDTH = 1400

if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is missing: install Debian's chromium (`make browser` or "
                "`apt-get install -y chromium`) to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
expect = sync_api.expect

pytestmark = pytest.mark.browser

VGG16_FLATTEN = ArchitectureSpec.from_dict({"backbone": {"name": "vgg16"},
                                            "head": {"kind": "classification", "num_classes": 1000,
                                                     "pooling": "flatten", "hidden": [4096, 4096], "dropout": 0.5}})


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXPLORER_RUNS", str(tmp_path_factory.mktemp("runs")))  # the Train page's runs, if it is opened
        with serving(ARTIFACTS / "streamlit-server-compose.log") as url:
            yield url


@pytest.fixture(scope="module")
def context():
    with sync_api.sync_playwright() as p:
        b = launch_chromium(p)
        ctx = b.new_context(viewport={"width": WIDTH, "height": 900}, locale="en-US", accept_downloads=True)
        try:
            yield ctx
        finally:
            ctx.close()
            b.close()


@pytest.fixture(scope="module")
def shared_page(context):
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    return pg


@pytest.fixture
def page(shared_page):
    """The module's one page; every test starts with its own page load, so with its own session."""
    yield shared_page


# -- what a person does ----------------------------------------------------------------------------------------
def idle(pg) -> None:
    """Until Streamlit has finished the run (its "Running…" status widget is gone)."""
    for _ in range(2):  # twice: a rerun that starts just after the first look is waited for too
        pg.wait_for_timeout(250)
        pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)


def open_(pg, url: str, shown: str = "Parameters") -> None:
    pg.goto(url)
    idle(pg)
    pg.get_by_test_id("stMetricLabel").filter(has_text=shown).first.wait_for(timeout=120_000)
    idle(pg)


def download(pg, button: str, tries: int = 3):
    """Click the download button named ``button`` and return the download. Under load a click can land on a button
    that a rerun is replacing, and its file never comes (seen in a clean-clone run); then the page is let settle
    and the new button is clicked, up to ``tries`` times."""
    for attempt in range(tries):
        idle(pg)
        try:
            with pg.expect_download(timeout=20_000) as dl:
                pg.get_by_role("button", name=button).click()
            return dl.value
        except sync_api.TimeoutError:
            if attempt == tries - 1:
                raise


def metric_value(pg, label: str) -> str:
    """The value of the metric labelled ``label`` in the main panel."""
    box = pg.get_by_test_id("stMain").get_by_test_id("stMetric").filter(
        has=pg.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)).first
    return box.get_by_test_id("stMetricValue").inner_text().strip()


def choose(pg, label: str, option: str) -> None:
    """Open the selectbox ``label``, type to filter, pick ``option``."""
    box = pg.get_by_role("combobox", name=label, exact=True)
    box.click()
    box.fill(option.split(" — ")[0])
    pg.get_by_role("option", name=option, exact=False).first.click()
    idle(pg)


def type_number(pg, label, value) -> None:
    """Type into the number box ``label`` (a string, or a pattern for a label the registry words) and press Enter."""
    field = pg.get_by_role("spinbutton", name=label, exact=True) if isinstance(label, str) else \
        pg.get_by_role("spinbutton", name=label)
    field.first.fill(str(value))
    field.first.press("Enter")
    idle(pg)


def sidebar_text(pg) -> str:
    return pg.get_by_test_id("stSidebar").inner_text()


def query(pg) -> dict:
    return dict(p.split("=", 1) for p in urlsplit(pg.url).query.split("&") if "=" in p)


def url_spec(pg) -> ArchitectureSpec:
    return ArchitectureSpec.from_url(query(pg)["spec"])


def assert_clean(pg) -> None:
    assert pg.get_by_test_id("stException").count() == 0
    assert "Traceback" not in pg.inner_text("body")


def shot(pg, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its own container, so grow the viewport to the content first."""
    height = pg.evaluate("""() => {
        const main = document.querySelector('[data-testid="stMain"]') || document.body;
        return Math.max(main.scrollHeight, document.body.scrollHeight);
    }""")
    pg.set_viewport_size({"width": WIDTH, "height": min(max(int(height), 900), 8000)})
    pg.wait_for_timeout(500)
    path = ARTIFACTS / name
    pg.screenshot(path=str(path), full_page=True)
    pg.set_viewport_size({"width": WIDTH, "height": 900})
    return path


def edit_cell(pg, grid, row: int, column: int, value) -> None:
    """As a person does with the keyboard: click the row's first cell (35 px rows under a 35 px header, after the
    row-marker column), walk to the column with the arrow keys, Enter opens the cell, type, Enter saves."""
    box = grid.bounding_box()
    pg.mouse.click(box["x"] + 60, box["y"] + 35 * (row + 1) + 17)
    pg.wait_for_timeout(200)
    for _ in range(column):
        pg.keyboard.press("ArrowRight")
    pg.keyboard.press("Enter")
    pg.wait_for_timeout(300)
    pg.keyboard.press("Control+A")
    pg.keyboard.type(str(value))
    pg.wait_for_timeout(200)
    pg.keyboard.press("Enter")
    idle(pg)


def pick(pg, combobox, option: str) -> None:
    """Choose ``option`` in a multiselect: type it, arrow down to it, Enter."""
    combobox.click()
    combobox.fill(option)
    combobox.press("ArrowDown")
    combobox.press("Enter")
    idle(pg)


# -- 1 ---------------------------------------------------------------------------------------------------------
def test_custom_stack_keeps_every_edit(app_url, page):
    open_(page, f"{app_url}/compose")
    choose(page, "Backbone", "custom")
    expect(page.get_by_test_id("stMain").get_by_test_id("stMetricValue").first).to_have_text("293,048")
    grid = page.get_by_test_id("stDataFrame").first
    grid.scroll_into_view_if_needed()
    # Row 0 is the stem (16 wide: half the first stage's 32); it no longer follows the first stage's width.
    edit_cell(page, grid, 1, 2, 48)  # the first stage's width 32 → 48
    expect(page.get_by_test_id("stMain").get_by_test_id("stMetricValue").first).to_have_text("305,624")
    edit_cell(page, grid, 0, 2, 24)  # the stem's width 16 → 24: as the hidden stem of a 48-wide stage was
    expect(page.get_by_test_id("stMain").get_by_test_id("stMetricValue").first).to_have_text("309,312")
    edit_cell(page, grid, 2, 1, 3)  # the second stage's repeats 2 → 3: the third edit must stick too
    expect(page.get_by_test_id("stMain").get_by_test_id("stMetricValue").first).to_have_text("383,296")
    stages = url_spec(page).backbone.stages
    assert [(s.block, s.repeats, s.width) for s in stages] == [("conv", 1, 48), ("residual", 3, 64),
                                                             ("separable", 2, 128)]
    assert (url_spec(page).backbone.stem.width, url_spec(page).backbone.stem.stride) == (24, 2)
    expect(page.get_by_test_id("stSidebar")).to_contain_text("383,296")
    assert_clean(page)
    shot(page, "compose_custom_stack_edited.png")


# -- 2 ---------------------------------------------------------------------------------------------------------
def test_download_saves_what_is_on_screen(app_url, page):
    open_(page, f"{app_url}/compose")
    type_number(page, re.compile(r"classes", re.I), 10)
    expect(page.get_by_test_id("stMain").get_by_test_id("stMetricValue").first).to_have_text("11,181,642")
    page.get_by_text("Save or load this composition").click()
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download spec JSON").click()
    data = json.loads(Path(dl.value.path()).read_text())
    assert data["head"]["num_classes"] == 10
    assert ArchitectureSpec.from_dict(data) == url_spec(page)


# -- 3 ---------------------------------------------------------------------------------------------------------
def test_an_uploaded_spec_sets_the_widgets_and_survives_the_next_change(app_url, page, tmp_path):
    spec_file = tmp_path / "vgg16_flatten.json"
    spec_file.write_text(VGG16_FLATTEN.to_json(indent=2))
    open_(page, f"{app_url}/compose")
    page.get_by_text("Save or load this composition").click()
    page.get_by_test_id("stFileUploader").locator("input[type=file]").set_input_files(str(spec_file))
    idle(page)
    expect(page.get_by_test_id("stMain").get_by_test_id("stMetricValue").first).to_have_text("138,357,544",
                                                                                             timeout=60_000)
    expect(page.get_by_role("combobox", name="Backbone", exact=True)).to_have_value(re.compile(r"^vgg16"))
    expect(page.get_by_role("textbox", name=re.compile(r"hidden", re.I))).to_have_value("4096, 4096")
    type_number(page, "Batch size", 8)  # an unrelated change
    expect(page.get_by_test_id("stMain").get_by_test_id("stMetricValue").first).to_have_text("138,357,544")
    assert url_spec(page) == VGG16_FLATTEN
    expect(page.get_by_test_id("stSidebar")).to_contain_text("138,357,544")
    assert_clean(page)


# -- 4 ---------------------------------------------------------------------------------------------------------
def test_the_sidebar_follows_each_change_at_once(app_url, page):
    open_(page, f"{app_url}/compose")
    choose(page, "Neck", "SE")
    expect(page.get_by_test_id("stMain").get_by_test_id("stMetricValue").first).to_have_text("11,722,824")
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar).to_contain_text("resnet18 → SE → classification")
    expect(sidebar).to_contain_text("11,722,824")
    type_number(page, re.compile(r"classes", re.I), 10)
    expect(page.get_by_test_id("stMain").get_by_test_id("stMetricValue").first).to_have_text("11,214,954")
    # 11,722,824 − 990 × 513, in the sidebar in the same run: it is not one change behind
    expect(sidebar).to_contain_text("11,214,954")
    assert "11,722,824" not in sidebar_text(page)
    shot(page, "compose_resnet18_se_10_classes.png")


# -- 5 ---------------------------------------------------------------------------------------------------------
def test_zoo_open_in_compose_puts_the_composition_in_the_address_bar(app_url, page):
    open_(page, f"{app_url}/zoo", shown="ImageNet acc@1")
    choose(page, "Selected model", "mobilenet_v3_small")  # 1,504,008 with Compose's GAP + linear head
    page.get_by_role("button", name="Open in Compose").click()
    idle(page)
    page.wait_for_url(re.compile(r"/compose\?"))
    expect(page.get_by_test_id("stMain").get_by_test_id("stMetricValue").first).to_have_text("1,504,008")
    page.wait_for_function("() => location.search.includes('spec=')")
    assert url_spec(page).backbone.name == "mobilenet_v3_small"
    shot(page, "zoo_to_compose.png")
    page.reload()  # a reload (or the link sent to someone) shows the same composition
    idle(page)
    expect(page.get_by_test_id("stMain").get_by_test_id("stMetricValue").first).to_have_text("1,504,008")
    expect(page.get_by_role("combobox", name="Backbone", exact=True)).to_have_value(
        re.compile(r"^mobilenet_v3_small"))
    assert_clean(page)


# -- 6 ---------------------------------------------------------------------------------------------------------
def test_layers_opened_with_a_spec_shows_that_composition(app_url, page):
    open_(page, f"{app_url}/layers?spec={VGG16_FLATTEN.to_url()}")
    main = page.get_by_test_id("stMain")
    expect(main.get_by_role("heading", name=VGG16_FLATTEN.summary())).to_be_visible()
    assert metric_value(page, "Parameters") == "138,357,544"
    assert metric_value(page, "Activations per image") == "15,237,608"
    assert "resnet50" not in main.inner_text()
    assert VGG16_FLATTEN.summary() in sidebar_text(page)
    assert "model" not in query(page)  # the address bar names the composition, not a catalog model
    assert url_spec(page) == VGG16_FLATTEN
    assert_clean(page)
    shot(page, "layers_with_spec.png")
    page.reload()
    idle(page)
    expect(main.get_by_role("heading", name=VGG16_FLATTEN.summary())).to_be_visible(timeout=60_000)


# -- 7 ---------------------------------------------------------------------------------------------------------
def test_switching_the_backbone_keeps_what_applies_and_says_what_was_reset(app_url, page):
    open_(page, f"{app_url}/compose")
    type_number(page, "Height (px)", 320)
    type_number(page, "Width (px)", 320)
    frozen = page.get_by_role("combobox", name=re.compile(r"^Frozen stages"))
    for stage in ("conv1", "layer1"):
        pick(page, frozen, stage)
    page.keyboard.press("Escape")
    idle(page)
    assert url_spec(page).backbone.frozen_stages == ["conv1", "layer1"]
    choose(page, "Backbone", "resnet50 — ResNet")
    expect(page.get_by_test_id("stMain").get_by_role("heading", name=re.compile(r"^resnet50 → "))).to_be_visible()
    spec = url_spec(page)
    assert spec.backbone.name == "resnet50"
    assert (spec.input.height, spec.input.width) == (320, 320)  # the size the person chose stays
    assert spec.backbone.frozen_stages == ["conv1", "layer1"]  # resnet50 has the same stages
    expect(page.get_by_role("spinbutton", name="Height (px)", exact=True)).to_have_value("320")
    info = page.get_by_test_id("stMain").get_by_test_id("stAlertContentInfo").filter(has_text="resnet50")
    expect(info.first).to_contain_text("320")
    choose(page, "Backbone", "vgg16")
    expect(page.get_by_test_id("stMain").get_by_role("heading", name=re.compile(r"^vgg16 → "))).to_be_visible()
    spec = url_spec(page)
    assert spec.backbone.frozen_stages == []  # vgg16 has no conv1 / layer1
    note = page.get_by_test_id("stMain").get_by_test_id("stAlertContentInfo").filter(has_text="vgg16").first
    expect(note).to_contain_text("conv1")
    assert_clean(page)
    shot(page, "compose_backbone_switched.png")


# -- no network ------------------------------------------------------------------------------------------------
# Every page in app_pages/ (a new page is walked too); the three run pages on the small ready LeNet-5, so the
# walk stays short.
RUN_PAGES = ("feature_maps", "explain", "predict")
PAGES = [p.stem + ("?source=lenet5_digits" if p.stem in RUN_PAGES else "")
         for p in sorted((ROOT / "app_pages").glob("*.py"))]


def test_no_request_leaves_the_app_on_any_page(app_url, context):
    own = urlsplit(app_url).netloc
    outside: list[str] = []
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.on("request", lambda r: outside.append(r.url)
          if urlsplit(r.url).scheme in ("http", "https", "ws", "wss") and urlsplit(r.url).netloc != own else None)
    try:
        for name in PAGES:
            pg.goto(f"{app_url}/{name}")
            idle(pg)
            pg.get_by_test_id("stMain").get_by_role("heading").first.wait_for(timeout=180_000)
            idle(pg)
            pg.wait_for_timeout(500)
    finally:
        pg.close()
    assert outside == [], outside
