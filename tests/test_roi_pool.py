"""The lecture's RoI pooling worked example (LECTURES.md §5, the deepsense.ai illustration), both ways.

The map is `arithmetic.ROI_EXAMPLE_MAP`; the region is columns x 0–6 and rows y 3–7 (the illustration's corners
(0, 3) and (7, 8), end exclusive): 5 rows × 7 columns, pooled to 2×2. By hand:

    the lecture: rows ⌊5/2⌋ = 2 then 3 → 3–4 | 5–7;  columns ⌊7/2⌋ = 3 then 4 → 0–2 | 3–6
      rows 3–4, cols 0–2: 0.85 0.34 0.76 / 0.32 0.74 0.21                     → 0.85
      rows 3–4, cols 3–6: 0.84 0.29 0.75 0.62 / 0.39 0.34 0.03 0.33           → 0.84
      rows 5–7, cols 0–2: 0.20 0.14 0.16 / 0.19 0.69 0.09 / 0.83 0.24 0.97    → 0.97
      rows 5–7, cols 3–6: 0.13 0.73 0.65 0.96 / 0.86 0.88 0.07 0.01 / …       → 0.96
    torchvision: bin size 5/2 = 2.5 rows, 7/2 = 3.5 columns; bin i spans ⌊2.5 i⌋ … ⌈2.5 (i+1)⌉ − 1 of the box:
      rows 0–2 | 2–4 → 3–5 | 5–7 (row 5 in both);  columns 0–3 | 3–6 (column 3 in both)
      rows 3–5, cols 3–6 now holds row 5's 0.96                                → 0.96 (not 0.84)
      the other three bins keep 0.85, 0.97, 0.96.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import assert_clean

from explorer import arithmetic as ar

CALCULATOR = Path(__file__).resolve().parents[1] / "app_pages" / "calculator.py"
LECTURE = [[0.85, 0.84], [0.97, 0.96]]
TORCHVISION = [[0.85, 0.96], [0.97, 0.96]]


def test_the_lecture_splits_the_region_into_near_equal_parts():
    bins = ar.roi_pool(ar.ROI_EXAMPLE_MAP, (0, 3, 6, 7), (2, 2), "lecture")
    assert [[(b.rows, b.cols) for b in row] for row in bins] == [
        [(range(3, 5), range(0, 3)), (range(3, 5), range(3, 7))],
        [(range(5, 8), range(0, 3)), (range(5, 8), range(3, 7))]]
    assert [[b.value for b in row] for row in bins] == LECTURE
    # The parts tile the region: 35 cells, each in exactly one bin.
    cells = [cell for row in bins for b in row for cell in b.cells]
    assert sorted(cells) == [(r, c) for r in range(3, 8) for c in range(0, 7)]


def test_torchvision_bins_overlap_and_its_roi_pool_agrees():
    bins = ar.roi_pool(ar.ROI_EXAMPLE_MAP, (0, 3, 6, 7), (2, 2), "torchvision")
    assert [[(b.rows, b.cols) for b in row] for row in bins] == [
        [(range(3, 6), range(0, 4)), (range(3, 6), range(3, 7))],
        [(range(5, 8), range(0, 4)), (range(5, 8), range(3, 7))]]
    assert [[b.value for b in row] for row in bins] == TORCHVISION
    assert ar.torchvision_roi_pool(ar.ROI_EXAMPLE_MAP, (0, 3, 6, 7), (2, 2)) == TORCHVISION  # the op itself


def test_evenly_divisible_regions_pool_the_same_both_ways():
    box = (0, 0, 3, 5)  # 6 rows × 4 columns into 2×2: 3 + 3 rows, 2 + 2 columns either way
    # rows 0–2 × cols 0–1: max(0.88 0.44 0.19 0.45 0.66 0.26) = 0.88; × cols 2–3: max(0.14 0.16 0.57 0.16 0.82 0.64)
    # = 0.82; rows 3–5 × cols 0–1: max(0.85 0.34 0.32 0.74 0.20 0.14) = 0.85; × cols 2–3: max(0.76 0.84 0.21 0.39
    # 0.16 0.13) = 0.84.
    expected = [[0.88, 0.82], [0.85, 0.84]]
    assert [[b.value for b in r] for r in ar.roi_pool(ar.ROI_EXAMPLE_MAP, box, (2, 2))] == expected
    assert ar.torchvision_roi_pool(ar.ROI_EXAMPLE_MAP, box, (2, 2)) == expected
    assert ar.roi_axis_bins(0, 5, 3) == ar.roi_axis_bins(0, 5, 3, "torchvision") == [range(0, 2), range(2, 4),
                                                                                       range(4, 6)]


@pytest.mark.parametrize("box, output, says", [
    ((0, 3, 8, 7), (2, 2), "must lie on the 8×8 map"),
    ((5, 3, 2, 7), (2, 2), "x1 ≤ x2"),
    ((0, 3, 0, 7), (2, 2), "A region 1 cell(s) long cannot be split into 2 parts"),
])
def test_bad_regions_are_sentences(box, output, says):
    with pytest.raises(ValueError) as e:
        ar.roi_pool(ar.ROI_EXAMPLE_MAP, box, output)
    assert says in str(e.value) and str(e.value).endswith(".")


def _frames(at: AppTest) -> dict:
    """The RoI tables by key: the last three tables of the page (feature map, lecture, torchvision)."""
    frames = list(at.dataframe)
    return dict(zip(("calc.roi_map", "calc.roi_lecture", "calc.roi_torchvision"), (f.value for f in frames[-3:])))


def test_calculator_shows_the_lecture_example_both_ways():
    at = AppTest.from_file(str(CALCULATOR), default_timeout=60).run()
    assert_clean(at)
    frames = _frames(at)
    assert frames["calc.roi_map"].to_numpy().tolist() == ar.ROI_EXAMPLE_MAP
    assert frames["calc.roi_lecture"].to_numpy().tolist() == LECTURE
    assert frames["calc.roi_torchvision"].to_numpy().tolist() == TORCHVISION
    shown = "\n".join(e.value for e in at.markdown)
    assert "rows 3–4 × columns 3–6: **0.84**" in shown  # the lecture's top-right bin
    assert "rows 3–5 × columns 3–6: **0.96**" in shown  # torchvision's, one row longer
    assert "rows 2 + 3, columns 3 + 4" in shown
    why = " ".join(e.value for e in at.info)
    assert "here row 5 and column 3" in why and "bin (1, 2) 0.96 instead of 0.84" in why
    assert len(at.get("plotly_chart")) >= 2


def test_a_person_moves_the_box_and_the_bins_follow():
    at = AppTest.from_file(str(CALCULATOR), default_timeout=60).run()
    at.number_input(key="calc.roi_y2").set_value(6).run()  # rows 3–6: 4 rows, 2 + 2 either way
    assert_clean(at)
    frames = _frames(at)
    # rows 3–4 as before; rows 5–6: cols 0–2 → 0.69, cols 3–6 → 0.96 (row 5) — torchvision's columns 0–3 reach
    # row 6's 0.86 in column 3.
    assert frames["calc.roi_lecture"].to_numpy().tolist() == [[0.85, 0.84], [0.69, 0.96]]
    assert frames["calc.roi_torchvision"].to_numpy().tolist() == [[0.85, 0.84], [0.86, 0.96]]
    assert "here column 3" in " ".join(e.value for e in at.info)
    at.number_input(key="calc.roi_x2").set_value(0).run()  # one column cannot make two parts
    assert_clean(at)
    assert [e.value for e in at.error] == [
        "A region 1 cell(s) long cannot be split into 2 parts: make the box at least 2 cells long or the output "
        "smaller."]


def test_an_evenly_divided_region_says_both_agree():
    at = AppTest.from_file(str(CALCULATOR), default_timeout=60).run()
    at.number_input(key="calc.roi_y2").set_value(6)
    at.number_input(key="calc.roi_x2").set_value(5).run()  # rows 3–6 and columns 0–5: 2 + 2 and 3 + 3
    assert_clean(at)
    frames = _frames(at)
    # rows 3–4 × cols 0–2: 0.85; × cols 3–5: max(0.84 0.29 0.75 0.39 0.34 0.03) = 0.84; rows 5–6 × cols 0–2:
    # max(0.20 0.14 0.16 0.19 0.69 0.09) = 0.69; × cols 3–5: max(0.13 0.73 0.65 0.86 0.88 0.07) = 0.88.
    assert frames["calc.roi_lecture"].to_numpy().tolist() == [[0.85, 0.84], [0.69, 0.88]]
    assert frames["calc.roi_torchvision"].to_numpy().tolist() == [[0.85, 0.84], [0.69, 0.88]]
    assert [e.value for e in at.success] == [
        "torchvision's bins are the lecture's here: the output size divides the region evenly."]
    assert not at.info
