"""Issue 14 item 3 in headless Chromium, as a student does it: remove the custom stack's stem row, freeze the whole
backbone in one click, download the standalone PyTorch file and run it. Screenshots in tests/artifacts/."""
from __future__ import annotations

import re
import runpy

import pytest

from test_browser_compose import (app_url, assert_clean, choose, context, download, expect, idle,  # noqa: F401
                                  metric_value, open_, page, shared_page, shot, url_spec)

pytestmark = pytest.mark.browser


def test_the_stem_row_can_be_removed(app_url, page):
    open_(page, f"{app_url}/compose")
    choose(page, "Backbone", "custom")
    expect(page.get_by_test_id("stMain").get_by_test_id("stMetricValue").first).to_have_text("293,048")
    grid = page.get_by_test_id("stDataFrame").first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 15, box["y"] + 35 + 17)  # the first row's marker (the stem row): select it
    page.wait_for_timeout(300)
    # The grid's toolbar shows a trash button for the selected row.
    page.get_by_test_id("stElementToolbar").get_by_role("button", name=re.compile("delete", re.I)).first.click()
    idle(page)
    expect(page.get_by_test_id("stMain").get_by_test_id("stMetricValue").first).to_have_text("288,840")
    spec = url_spec(page)
    assert spec.backbone.stem is None and [s.block for s in spec.backbone.stages] == ["conv", "residual", "separable"]
    # The pooling titles were worked on resnet18's map and now on this stack's: the choice stays what it was.
    assert page.get_by_test_id("stAlert").count() == 0 and spec.head.settings["pooling"] == "gap"
    assert_clean(page)
    shot(page, "compose_custom_stack_no_stem.png")


def test_freeze_the_whole_backbone_and_run_the_downloaded_file(app_url, page, tmp_path, capsys):
    open_(page, f"{app_url}/compose")
    page.get_by_text("Freeze the whole backbone").click()
    idle(page)
    expect(page.get_by_test_id("stMain").get_by_test_id("stMetric").filter(has_text="Trainable parameters")
           .get_by_test_id("stMetricValue")).to_have_text("513,000")
    assert metric_value(page, "Training, batch 1") == "2.05 kB"
    assert url_spec(page).backbone.frozen_stages == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]
    page.get_by_text("Export the model (PyTorch file, ONNX)").click()
    got = download(page, "Download PyTorch file (.py)")
    path = tmp_path / got.suggested_filename
    got.save_as(path)
    assert path.name == "composition.py"
    runpy.run_path(str(path), run_name="__main__")
    assert "parameters: 11,689,512\n" in capsys.readouterr().out
    assert_clean(page)
    shot(page, "compose_frozen_whole_backbone.png")
