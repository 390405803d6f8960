"""The component registry: one declaration per block, neck and head kind, and a kind's name spelled in one module.

The spec's kinds, defaults and settings are derived from the declarations; these tests pin them to what the spec
said before the registry (so the redesign changes no behaviour) and check every declaration is complete.
"""
import ast
import re
import textwrap
from pathlib import Path

import pytest

from explorer import components
from explorer.__main__ import main
from explorer.components import Setting
from explorer.spec import (BLOCKS, DEFAULT_HEAD, HEAD_SETTINGS, HEADS, HEADS_FOR_TASK, MULTI_LEVEL_NECKS,
                           NECK_SETTINGS, NECKS, TASKS, TWO_STAGE, SpecError)

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("explorer", "app_pages")

# A kind's name where it means something else. Keep this tiny; each entry says why.
SAME_WORD_ELSEWHERE = {
    ("vgg", "explorer/catalog.py"): "the VGG family's model-name prefix (vgg11 … vgg19_bn), not the block",
    ("convnext", "explorer/catalog.py"): "the ConvNeXt family's model-name prefix (convnext_tiny …), not the block",
}
# Heads named after the task they do: wherever a task is meant (spec.TASKS, a prediction's task) the word is the
# task, so for these only the declaration is checked.
TASK_NAMED = set(TASKS)


def _string_constants(tree: ast.AST):
    """Whole string constants: not the pieces of an f-string, not the names in ``__all__`` (Python names)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            skip.update(id(v) for v in ast.walk(node.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.value


def _without_all(text: str, tree: ast.AST) -> str:
    """The source without its ``__all__`` list (Python names, not kinds)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return text.replace(ast.get_source_segment(text, node) or "", "")
    return text


@pytest.fixture(scope="module")
def spellings() -> dict:
    """word -> the modules (paths relative to the repository) whose code has it as a string constant."""
    out: dict = {}
    for root in SCANNED:
        for path in sorted((ROOT / root).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            text = path.read_text()
            tree = ast.parse(text, rel)
            for word in set(_string_constants(tree)):
                out.setdefault(word, set()).add(rel)
            # A kind quoted anywhere else in the file (a docstring's example, a comment) counts as spelled too.
            for word in set(re.findall(r"[\"']([a-z_0-9]+)[\"']", _without_all(text, tree))):
                out.setdefault(word, set()).add(rel)
    return out


def _path(module: str) -> str:
    rel = module.replace(".", "/")
    return rel + "/__init__.py" if (ROOT / rel).is_dir() else rel + ".py"


@pytest.mark.parametrize("kind", components.all_components(), ids=lambda c: f"{c.category}-{c.name}")
def test_a_kind_is_spelled_in_its_own_module_only(kind, spellings):
    home = _path(kind.module)
    found = spellings.get(kind.name, set())
    assert home in found, f"{kind.category} {kind.name!r} is declared in {home}, which should spell its name"
    if kind.name in TASK_NAMED:
        return
    others = {m for m in found - {home} if (kind.name, m) not in SAME_WORD_ELSEWHERE}
    assert not others, f"{kind.category} {kind.name!r} is spelled outside {home}: {sorted(others)}"


def test_the_exception_lists_stay_small_and_true(spellings):
    assert len(SAME_WORD_ELSEWHERE) <= 2 and TASK_NAMED & set(HEADS) == {"classification", "regression"}
    for name, module in SAME_WORD_ELSEWHERE:
        assert module in spellings.get(name, set()), f"{name!r} is no longer in {module}: drop the exception"


# -- what the spec derives from the registry: as before the registry, plus the 1×1 bottleneck neck ----------------
def test_the_spec_vocabulary_is_derived_and_unchanged():
    assert BLOCKS == ("conv", "vgg", "vgg_plain", "residual", "bottleneck", "preact", "separable",
                      "inverted_residual",
                      "shuffle", "inception", "dense", "convnext", "se", "cbam")
    assert NECKS == ("none", "se", "cbam", "spatial", "fpn", "panet", "bifpn", "bottleneck_1x1")
    assert HEADS == ("classification", "regression", "yolo", "ssd", "faster_rcnn", "mask_rcnn", "fcn", "unet",
                     "siamese")
    assert HEADS_FOR_TASK == {"classification": ("classification",), "regression": ("regression",),
                              "detection": ("yolo", "ssd", "faster_rcnn", "mask_rcnn"),
                              "segmentation": ("fcn", "unet"), "similarity": ("siamese",)}
    assert DEFAULT_HEAD == {t: hs[0] for t, hs in HEADS_FOR_TASK.items()}
    assert HEAD_SETTINGS == {
        "classification": {"num_classes": 1000, "hidden": [], "dropout": 0.0, "pooling": "gap"},
        "regression": {"outputs": 1, "hidden": [], "dropout": 0.0, "pooling": "gap"},
        "yolo": {"num_classes": 20, "anchors_per_cell": 3}, "ssd": {"num_classes": 20},
        # issue 14: the proposal and detection counts the two-stage heads' MACs assume are settings
        "faster_rcnn": {"num_classes": 20, "proposals": 1000, "detections": 100},
        "mask_rcnn": {"num_classes": 20, "proposals": 1000, "detections": 100}, "fcn": {"num_classes": 21},
        "unet": {"num_classes": 21}, "siamese": {"embedding_dim": 128}}
    assert NECK_SETTINGS == {"none": {}, "se": {}, "cbam": {}, "spatial": {}, "fpn": {"width": 256},
                             "panet": {"width": 256}, "bifpn": {"width": 64, "repeats": 2},
                             "bottleneck_1x1": {"width": 256}}
    assert MULTI_LEVEL_NECKS == ("fpn", "panet", "bifpn") and TWO_STAGE == ("faster_rcnn", "mask_rcnn")
    assert components.default("neck") == "none" and components.default("block") == "residual"


def test_titles_long_for_the_page_short_for_sentences():
    head = components.get("head", "classification")
    assert head.title == "classification (GAP/flatten + MLP)" and head.short_title == "classification"
    assert components.get("head", "yolo").short_title == "YOLO-style"
    assert components.titles("neck")["spatial"] == "spatial attention"
    assert components.titles("head", short=True)["siamese"] == "Siamese"


@pytest.mark.parametrize("kind", components.all_components(), ids=lambda c: f"{c.category}-{c.name}")
def test_every_declaration_is_complete(kind):
    assert kind.title and kind.description and "\n" not in kind.description, kind.name
    assert kind.estimate is not None and callable(kind.build)
    for s in kind.settings:
        assert isinstance(s, Setting) and s.title and s.help
        assert s.parse(f"{kind.category}.{s.name}", kind.defaults()[s.name]) == kind.defaults()[s.name]
    if kind.category == "head":
        assert kind.tasks and set(kind.tasks) <= set(TASKS)
    if kind.category == "block":
        assert kind.paper and 2010 <= kind.year <= 2025


def test_settings_carry_the_page_bounds_and_choices():
    mlp = components.get("head", "classification")
    assert (mlp.setting("num_classes").low, mlp.setting("num_classes").high) == (1, 100_000)
    hidden = mlp.setting("hidden")
    assert (hidden.type, hidden.max_items, hidden.low, hidden.high) == ("int_list", 8, 1, 16_384)
    assert mlp.setting("pooling").choice_title("flatten") == "flatten (7×7×512 → 25,088)"
    assert mlp.setting("pooling").choice_title("gap") == "global average (7×7×512 → 512)"
    width = components.get("neck", "fpn").setting("width")
    assert (width.low, width.high, width.title) == (1, 4096, "Neck width")
    assert components.get("neck", "bifpn").setting("repeats").high == 8
    with pytest.raises(SpecError, match=r"^'head.dropout' must be a number from 0 up to \(not including\) 1"):
        mlp.setting("dropout").parse("head.dropout", 1.0)


def test_facts_callers_ask_for():
    assert components.with_fact("neck", "identity") == ("none",)
    assert components.get("head", "faster_rcnn").fact("label_offset") == 1
    assert components.get("block", "inception").fact("min_width") == 4
    from explorer.blocks import example_stages

    assert example_stages() == [{"block": "conv", "repeats": 1, "width": 32, "stride": 2},
                                {"block": "residual", "repeats": 2, "width": 64, "stride": 2},
                                {"block": "separable", "repeats": 2, "width": 128, "stride": 2}]


def test_unknown_kinds_are_a_sentence():
    with pytest.raises(KeyError, match="the neck kinds are none, se"):
        components.get("neck", "nope")


# -- the README's list of kinds is what `python -m explorer kinds` prints ----------------------------------------
def test_the_readme_lists_the_kinds_the_registry_has(capsys):
    assert main(["kinds"]) == 0
    printed = capsys.readouterr().out.rstrip("\n")
    assert printed == components.kinds_markdown()
    assert all(f"`{c.name}`" in printed for c in components.all_components())
    readme = (ROOT / "README.md").read_text()
    assert textwrap.indent(printed, "  ") + "\n" in readme, "README: paste `python -m explorer kinds` (indented)"
