"""The architecture diagram in headless Chromium: a U-Net composition's skips and resnet18's eight shortcuts are
edges of the SVG a person sees (Graphviz keeps each edge's class: "skip" for a merge's shortcut / skip input).
Screenshots go to tests/artifacts/ for a person to look at."""
from __future__ import annotations

import re

import pytest

from bench.server import CHROMIUM
from explorer.spec import ArchitectureSpec

if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is missing: install Debian's chromium (`make browser` or "
                "`apt-get install -y chromium`) to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")

from test_browser_compose import app_url, assert_clean, context, idle, open_, pick, shot  # noqa: E402,F401

pytestmark = pytest.mark.browser

UNET = ArchitectureSpec.from_dict({"task": "segmentation", "backbone": {"name": "resnet18"},
                                   "head": {"kind": "unet"}})
FPN_YOLO = ArchitectureSpec.from_dict({"task": "detection", "input": {"height": 256, "width": 256},
                                       "backbone": {"name": "resnet50"}, "neck": {"kind": "fpn"},
                                       "head": {"kind": "yolo", "num_classes": 20}})
CHART = '[data-testid="stGraphVizChart"] svg'


@pytest.fixture(scope="module")
def page(context):
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    return pg


def diagram(pg):
    chart = pg.locator(CHART).first
    chart.scroll_into_view_if_needed()
    chart.wait_for()
    return chart


def count(pg, selector: str) -> int:
    return pg.locator(f"{CHART} {selector}").count()


def test_unet_composition_draws_its_skips(app_url, page):
    open_(page, f"{app_url}/compose?spec={UNET.to_url()}")
    diagram(page)
    assert count(page, "g.edge.skip") == 3  # layer3, layer2, layer1 into the decoder's concats
    assert count(page, "g.node.merge.cat") == 3
    text = page.locator(CHART).first.text_content()
    for line in ("layer3 · 2× BasicBlock", "concat", "classifier · Conv2d 1×1", "upsample ×4 bilinear"):
        assert line in text
    assert_clean(page)
    shot(page, "diagram_unet_composition.png")


def test_fpn_yolo_composition(app_url, page):
    open_(page, f"{app_url}/compose?spec={FPN_YOLO.to_url()}")
    diagram(page)
    assert count(page, "g.edge.skip") == 2  # the two laterals that meet a top-down path
    assert count(page, "g.node.resample") == 2
    assert_clean(page)
    shot(page, "diagram_resnet50_fpn_yolo.png")


def test_layers_resnet18_every_layer_shows_eight_shortcuts(app_url, page):
    open_(page, f"{app_url}/layers?model=resnet18")
    diagram(page)
    assert count(page, "g.node.stage") == 4
    assert count(page, "g.edge.skip") == 0
    page.get_by_text("Show every layer", exact=True).click()  # as a person: the toggle
    idle(page)
    page.wait_for_function(f"() => document.querySelectorAll('{CHART} g.edge.skip').length === 8")
    assert count(page, "g.node.merge.add") == 8
    assert count(page, "g.node.stage") == 0
    assert_clean(page)
    shot(page, "diagram_resnet18_layers.png")


def test_layers_resnet50_one_stage_opened(app_url, page):
    open_(page, f"{app_url}/layers?model=resnet50")
    diagram(page)
    shot(page, "diagram_resnet50_stages.png")
    pick(page, page.get_by_role("combobox", name=re.compile(r"^Open stages into their layers")), "layer3")
    page.keyboard.press("Escape")  # close the list, as a person would
    page.wait_for_function(f"() => document.querySelectorAll('{CHART} g.edge.skip').length === 6")
    assert count(page, "g.node.stage") == 3
    assert_clean(page)
    shot(page, "diagram_resnet50_layer3_opened.png")
