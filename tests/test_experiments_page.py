"""Train page (AppTest): the homework preset at the tiny budget starts with one button, its three runs train as
jobs, and the page shows the table with three rows, the side-by-side predictions and the verdict; a reload with
?experiment= shows it again."""
import time

import pytest

from apptest_pages import assert_clean, open_page
from explorer.training import experiments

pytestmark = [pytest.mark.slow, pytest.mark.training]


def test_the_tiny_homework_runs_and_shows_three_rows_and_the_grid(runs_root):
    at = open_page("train")
    assert at.selectbox(key="w.exp.preset").value == "homework"
    at.radio(key="w.exp.budget").set_value("tiny").run()
    assert any("The lecture's claim." in m.value for m in at.markdown)
    at.button(key="w.exp.start").click().run()
    assert_clean(at)
    experiment_id = at.query_params["experiment"]
    assert experiment_id
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = next((m.value for m in at.markdown if m.value.startswith("Experiment `")), "")
        if "3 of 3 runs finished" in line:
            break
        time.sleep(3)
        at.run()
        assert_clean(at)
    assert "3 of 3 runs finished" in line, line
    at.run()  # drawn once more, without polling
    table = next(df.value for df in at.dataframe if "test mIoU" in df.value.columns)
    assert list(table["run"]) == list(experiments.SEGMENTATION_NETWORKS)
    assert all(v.endswith(" %") for v in table["test mIoU"])
    assert any(m.value.startswith("**Predictions on the same ") for m in at.markdown)
    assert [c.value for c in at.caption if c.value in ("image", "truth", *experiments.SEGMENTATION_NETWORKS)] == \
        ["image", "truth", *experiments.SEGMENTATION_NETWORKS]
    assert any("“U-Net (skips)”: test mIoU " in m.value for m in at.markdown)
    reloaded = open_page("train", experiment=experiment_id)
    assert any(m.value.startswith(f"Experiment `{experiment_id}`") for m in reloaded.markdown)
