"""explorer.ui without a running app: how numbers are written, and how a link is read."""
from fractions import Fraction

import pytest

from explorer.ui import (Selection, fmt_bytes, fmt_count, fmt_int, fmt_pair, fmt_rf, fmt_shape, md_escape,
                         parse_query)


def test_numbers_read_like_the_slides():
    assert fmt_int(138_357_544) == "138,357,544"
    assert fmt_bytes(15_237_608 * 4) == "60.95 MB"  # decimal MB, as the lecture counts
    assert fmt_bytes(553_430_176) == "553.43 MB" and fmt_bytes(7_902_146_688) == "7.90 GB"
    assert fmt_bytes(999) == "999 B" and fmt_bytes(None) == "—"
    assert fmt_count(15_470_264_320) == "15.47 G" and fmt_count(416_520) == "416.52 K"
    assert fmt_count(39_000_000) == "39.00 M"  # below 0.01 G a smaller prefix reads better


def test_shapes_and_fields_without_tuples_or_fractions():
    assert fmt_shape((64, 224, 224)) == "64×224×224" and fmt_shape((1000,)) == "1000" and fmt_shape(None) == ""
    assert fmt_pair((Fraction(31, 2), Fraction(31, 2))) == "15.5" and fmt_pair((7, 3)) == "7×3"
    assert fmt_rf((212, 212), True) == "global (212)" and fmt_rf(None, True) == "global"
    assert fmt_rf((212, 212), False) == "212"


def test_library_text_is_shown_literally():
    assert md_escape("aten._foo_ costs $5 *each*") == r"aten.\_foo\_ costs \$5 \*each\*"


@pytest.mark.parametrize("query, selection, errors", [
    ({}, Selection("resnet50", 224), 0),
    ({"model": "vgg16", "input": "224"}, Selection("vgg16", 224), 0),
    ({"model": " VGG16 ", "input": " 320 "}, Selection("vgg16", 320), 0),
    ({"model": "inception_v3"}, Selection("inception_v3", 299), 0),
    ({"model": "lenet5", "input": "16"}, Selection("lenet5", 16), 0),  # valid number; the analysis judges it
    ({"model": "vgg17", "input": "320"}, Selection("resnet50", 224), 1),
    ({"model": "vgg16", "input": "2.5"}, Selection("vgg16", 224), 1),
    ({"model": "vgg16", "input": "0"}, Selection("vgg16", 224), 1),
])
def test_links_are_read_with_a_fallback(query, selection, errors):
    sel, msgs = parse_query(query)
    assert sel == selection and len(msgs) == errors
    assert all(m.endswith("instead.") for m in msgs)  # every complaint says what is shown instead


def test_server_threads_share_the_cores():
    from explorer.runtime import server_threads

    assert [server_threads(c, env="") for c in (1, 2, 4, 8, 64)] == [1, 1, 2, 4, 4]
    assert server_threads(8, env="3") == 3
    assert server_threads(8, env="lots") == 4 and server_threads(8, env="-2") == 4  # nonsense: the default


def test_seeded_builds_repeat_and_leave_the_callers_stream_alone():
    import torch

    from explorer.runtime import seeded

    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    with seeded("catalog|lenet5"):
        a = torch.randn(4)
    with seeded("catalog|lenet5"):
        b = torch.randn(4)
    with seeded("catalog|resnet18"):
        c = torch.randn(4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.rand(3), expected_next)  # as if the blocks never ran


def test_one_field_formatter_for_pages_files_and_the_cli():
    from explorer.__main__ import _fmt_rf
    from explorer.fields import fmt_pair as plain_pair, fmt_rf as plain_rf
    from explorer.ui import format as ui_format

    assert ui_format.fmt_rf is plain_rf and ui_format.fmt_pair is plain_pair  # one definition, re-exported
    assert fmt_pair((1027, 1027)) == "1,027" and plain_pair((1027, 1027), sep=False) == "1027"  # files stay plain
    assert plain_rf((7.5, 3), True, sep=False) == "global (7.5×3)"
    assert _fmt_rf("global") == "global" and _fmt_rf((427, 427)) == "427" and _fmt_rf(None) == "—"


def test_one_dtype_table():
    import torch

    from explorer import __main__ as cli, dtypes
    from explorer.ui import DTYPES

    assert DTYPES is dtypes.DTYPES and list(DTYPES) == ["float32", "float16", "bfloat16"]
    assert cli.DTYPES is dtypes.ALL_DTYPES and cli.DTYPES["float64"] is torch.float64


def test_the_growth_curve_plots_the_larger_side():
    from explorer import analyze
    from explorer.fields import rf_growth

    a = analyze("resnet18", (3, 64, 96))
    df = rf_growth(a)
    assert (df["size"] == df[["rf_h", "rf_w"]].max(axis=1)).all()
    assert list(df["index"]) == [i for i, r in enumerate(a.layers) if r.rf is not None]
