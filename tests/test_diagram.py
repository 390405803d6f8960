"""The diagram is drawn from the traced dataflow graph: shortcuts, skips, laterals and top-down paths as they ran."""
import re
import shutil

import pytest

from explorer.analysis import analyze
from explorer.compose import analyze_spec
from explorer.spec import ArchitectureSpec
from explorer.vis.diagram import architecture_dot, diagram_graph, svg

UNET = {"task": "segmentation", "backbone": {"name": "resnet18"}, "head": {"kind": "unet"}}
FPN_YOLO = {"task": "detection", "input": {"height": 256, "width": 256}, "backbone": {"name": "resnet50"},
            "neck": {"kind": "fpn"}, "head": {"kind": "yolo", "num_classes": 20}}


def composed(d):
    return analyze_spec(ArchitectureSpec.from_dict(d))


def shortcut_facts(g):
    """Per add merge: (its block, the shortcut's source path, whether it runs through a downsample conv)."""
    facts = []
    for m in g.merges("add"):
        skips = [e.src for e in g.edges if e.dst == m.id and e.role == "skip"]
        assert len(skips) == 1, m
        main = [e.src for e in g.edges if e.dst == m.id and e.role != "skip"]
        assert len(main) == 1
        src = g.nodes[skips[0]]
        block = m.path
        # The block's first conv reads the block input; the shortcut starts there too.
        first = g.nodes[g.by_path(f"{block}.conv1")[0].id]
        (block_input,) = g.inputs(first.id)
        through = "downsample" in src.path
        if through:
            assert src.kind == "Conv2d" and src.detail.startswith("1×1") and src.folded == ["BatchNorm2d"]
            assert g.inputs(src.id) == [block_input]
        else:
            assert src.id == block_input
        facts.append((block, through))
    return facts


@pytest.mark.parametrize("model, adds, downsampled", [
    ("resnet18", 8, ["layer2.0", "layer3.0", "layer4.0"]),
    ("resnet50", 16, ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]),
])
def test_resnet_layer_view_has_every_shortcut(model, adds, downsampled):
    g = diagram_graph(analyze(model), expand=True)
    facts = shortcut_facts(g)
    assert len(facts) == adds
    assert [b for b, through in facts if through] == downsampled


def test_resnet_stage_view_names_stages_by_block_type():
    a = analyze("resnet50")
    g = diagram_graph(a)
    assert g.collapsible == ["layer1", "layer2", "layer3", "layer4"]
    stages = [(n.path, n.blocks, n.shape, n.params, n.macs) for n in g.nodes.values() if n.role == "stage"]
    assert stages == [(f"layer{i + 1}", f"{k}× Bottleneck", shape, a.stages()[4 + i].params, a.stages()[4 + i].macs)
                      for i, (k, shape) in enumerate([(3, (256, 56, 56)), (4, (512, 28, 28)), (6, (1024, 14, 14)),
                                                      (3, (2048, 7, 7))])]
    assert not g.merges()  # the adds are inside the stages
    assert sum(n.params for n in g.nodes.values()) == a.params == 25_557_032
    assert sum(n.macs for n in g.nodes.values()) == a.macs
    dot = architecture_dot(a)
    assert 'label="layer1 · 3× Bottleneck\\n256×56×56\\n216k params · 668M MACs"' in dot
    assert 'label="conv1 · Conv2d 7×7/2 · BN · ReLU\\n64×112×112\\n9.54k params · 118M MACs"' in dot
    assert 'label="fc · Linear 2048→1000\\n1000\\n2.05M params · 2.05M MACs"' in dot


def test_one_opened_stage_is_a_cluster_of_its_blocks():
    g = diagram_graph(analyze("resnet50"), open_stages=["layer3"])
    assert g.opened == ["layer3"]
    assert [n.path for n in g.nodes.values() if n.role == "stage"] == ["layer1", "layer2", "layer4"]
    assert len(g.merges("add")) == 6
    assert {k: v for k, v in g.clusters.items() if k.startswith("layer3")} == {
        "layer3": ("Sequential", ""), **{f"layer3.{i}": ("Bottleneck", "layer3") for i in range(6)}}
    (down,) = [n for n in g.nodes.values() if n.path == "layer3.0.downsample"]  # one node: a short row
    assert (down.role, down.blocks, down.detail, down.shape) == ("block", "Conv2d · BatchNorm2d", "1×1/2",
                                                                 (1024, 14, 14))
    dot = architecture_dot(analyze("resnet50"), open_stages=["layer3"])
    assert 'subgraph "cluster_layer3.0" { label="0 · Bottleneck"' in dot
    assert dot.count('class="skip"') == 6


def test_unet_composition_skips_and_classifier_after_the_decoder():
    g = diagram_graph(composed(UNET))
    cats = g.merges("cat")
    assert [m.path for m in cats] == ["head.decoder.0", "head.decoder.1", "head.decoder.2"]
    skips = [[g.nodes[e.src].path for e in g.edges if e.dst == m.id and e.role == "skip"] for m in cats]
    assert skips == [["backbone.body.layer3"], ["backbone.body.layer2"], ["backbone.body.layer1"]]
    ups = [[g.nodes[e.src].path for e in g.edges if e.dst == m.id and e.role != "skip"] for m in cats]
    assert ups == [[f"head.decoder.{i}.up"] for i in range(3)]
    assert [n.shape for n in cats] == [(512, 14, 14), (256, 28, 28), (128, 56, 56)]
    # The classifier comes after the last decoder block, then the upsampling to the input size, then the output.
    order = list(g.nodes)
    (classifier,) = g.by_path("head.classifier")
    assert g.inputs(classifier.id) == [g.by_path("head.decoder.2.conv2")[0].id]
    assert order.index(classifier.id) > max(order.index(m.id) for m in cats)
    (up,) = [n for n in g.nodes.values() if n.role == "resample"]
    assert (g.inputs(up.id), g.outputs(up.id), up.detail, up.shape) == ([classifier.id], ["output"], "×4 bilinear",
                                                                          (21, 224, 224))
    assert "neck" not in {n.path for n in g.nodes.values()}  # the identity neck hands the stages on: no node
    dot = architecture_dot(composed(UNET))
    assert dot.count('class="skip"') == 3
    assert 'label="concat\\n512×14×14"' in dot
    assert 'label="layer3 · 2× BasicBlock\\n256×14×14\\n2.1M params · 411M MACs"' in dot


def test_fpn_laterals_top_down_and_yolo_heads_per_level():
    a = composed(FPN_YOLO)
    g = diagram_graph(a)
    path = {gid: n.path for gid, n in g.nodes.items()}
    # Lateral 1×1 convs, each fed by its own backbone stage.
    laterals = {path[g.inputs(n.id)[0]]: n for n in g.nodes.values() if ".inner_blocks." in n.path}
    assert {k: (v.path, v.detail) for k, v in laterals.items()} == {
        "backbone.body.layer2": ("neck.fpn.inner_blocks.0", "1×1"),
        "backbone.body.layer3": ("neck.fpn.inner_blocks.1", "1×1"),
        "backbone.body.layer4": ("neck.fpn.inner_blocks.2", "1×1")}
    # Top-down: at levels 1 and 0 an add of the lateral (skip edge) and the upsampled level above.
    adds = g.merges("add")
    assert len(adds) == 2
    for add, level, above in zip(adds, (1, 0), ("neck.fpn.inner_blocks.2", None)):
        ins = {e.src: e.role for e in g.edges if e.dst == add.id}
        lateral = laterals[f"backbone.body.layer{level + 2}"]
        assert ins.pop(lateral.id) == "skip"
        (up_id, role), = ins.items()
        assert role == "flow" and g.nodes[up_id].role == "resample" and g.nodes[up_id].detail == "×2 nearest"
        src = g.nodes[g.inputs(up_id)[0]]
        assert src.path == above if above else src.id == adds[0].id
        out = [g.nodes[o] for o in g.outputs(add.id)]
        assert [n.path for n in out if n.role == "layer"] == [f"neck.fpn.layer_blocks.{level}"]
        assert [n.role for n in out if n.role != "layer"] == (["resample"] if level else [])  # on down
    # YOLO: one conv per level, each fed by its own FPN output, none feeding another.
    heads = {n.path: path[g.inputs(n.id)[0]] for n in g.nodes.values() if n.path.startswith("head.convs.")}
    assert heads == {f"head.convs.{i}": f"neck.fpn.layer_blocks.{i}" for i in range(3)}
    assert all(g.outputs(n.id) == ["output"] for n in g.nodes.values() if n.path.startswith("head.convs."))
    dot = architecture_dot(a)
    ranks = re.findall(r"\{rank=same; [^}]*\}", dot)
    ids = {p: n.id for n in g.nodes.values() for p in [n.path]}
    assert "{rank=same; " + " ".join(f'"{ids[f"head.convs.{i}"]}";' for i in range(3)) + "}" in ranks
    assert "{rank=same; " + " ".join(f'"{ids[f"neck.fpn.inner_blocks.{i}"]}";' for i in (2, 1, 0)) + "}" in ranks
    assert 'label="convs.0 · Conv2d 1×1\\n75×32×32\\n19.3k params · 19.7M MACs"' in dot
    assert 'label="layer4 · 3× Bottleneck\\n2048×8×8\\n15M params · 1.06G MACs"' in dot


def test_nothing_is_cut():
    a = analyze("resnet50")
    g = diagram_graph(a, expand=True)
    dot = architecture_dot(a, expand=True)
    assert "more" not in dot
    assert sum(1 for n in g.nodes.values() if n.kind == "Conv2d") == 53
    assert len(re.findall(r'^"n\d+" \[', dot, flags=re.M)) == len(g.nodes) - 2  # + input, output
    assert sum(n.params for n in g.nodes.values()) == 25_557_032


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_svg_has_the_skip_edges():
    image = svg(architecture_dot(composed(UNET))).decode()
    assert image.startswith("<?xml")
    assert len(re.findall(r'<g id="edge\d+" class="edge skip"', image)) == 3


@pytest.mark.slow
def test_mask_rcnn_levels_side_by_side():
    torchvision = pytest.importorskip("torchvision")
    m = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    a = analyze(m, (3, 320, 320), training_memory=False)
    assert a.device == "cpu"  # nonzero has no meta kernel: the real-forward fallback
    g = diagram_graph(a)
    path = {gid: n.path for gid, n in g.nodes.items()}

    def fed(prefix):
        return [[path[i] for i in g.inputs(n.id)] for n in g.nodes.values() if n.path.startswith(prefix)]

    assert fed("backbone.fpn.inner_blocks.") == [[f"backbone.body.layer{i}"] for i in (4, 3, 2, 1)]
    adds = g.merges("add")
    assert [[(path[e.src], e.role) for e in g.edges if e.dst == m.id and e.role == "skip"] for m in adds] == [
        [(f"backbone.fpn.inner_blocks.{i}", "skip")] for i in (2, 1, 0)]
    assert all(g.nodes[e.src].role == "resample" for m in adds for e in g.edges if e.dst == m.id and
               e.role != "skip")
    assert fed("backbone.fpn.extra_blocks") == [["backbone.fpn.layer_blocks.3"]]
    # The RPN head runs once per level, each on its own level.
    assert fed("rpn.head.conv") == [[f"backbone.fpn.layer_blocks.{i}"] for i in range(4)] + [
        ["backbone.fpn.extra_blocks"]]
    assert [n.shape for n in g.nodes.values() if n.path == "rpn.head.conv.0"] == [
        (256, 200, 200), (256, 100, 100), (256, 50, 50), (256, 25, 25), (256, 13, 13)]
    (pool,) = g.by_path("roi_heads.box_roi_pool")
    assert {path[i] for i in g.inputs(pool.id)} >= {f"backbone.fpn.layer_blocks.{i}" for i in range(4)}
    (mask_head,) = g.by_path("roi_heads.mask_head")
    assert (mask_head.role, mask_head.blocks) == ("stage", "4× Conv2dNormActivation")
    assert sum(n.params for n in g.nodes.values()) == a.params == sum(p.numel() for p in m.parameters())
    dot = architecture_dot(a)
    ids = [n.id for n in g.nodes.values() if n.path == "rpn.head.conv.0"]
    assert "{rank=same; " + " ".join(f'"{i}";' for i in ids) + "}" in dot


def test_layers_page_diagram_opens_every_layer_and_downloads():
    from test_app import open_app

    at = open_app(model="resnet18")
    assert not at.exception

    def chart():
        (c,) = at.get("graphviz_chart")
        return c.proto.spec

    assert chart().count('class="stage"') == 4 and 'class="skip"' not in chart()
    at.toggle(key="layers.diagram.expand").set_value(True).run()
    assert not at.exception
    assert chart().count('class="skip"') == 8
    assert chart().count('class="merge add"') == 8
    at.toggle(key="layers.diagram.expand").set_value(False).run()
    at.multiselect(key="layers.diagram.open").set_value(["layer2"]).run()
    assert chart().count('class="skip"') == 2 and chart().count('class="stage"') == 3
    labels = [b.proto.label for b in at.get("download_button")]
    assert ("Download diagram (SVG)" if shutil.which("dot") else "Download diagram (DOT source)") in labels


def test_a_model_without_stages_draws_its_blocks_and_opens_one():
    a = analyze("inception_v3")
    g = diagram_graph(a)
    names = ["5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"]
    assert g.collapsible == [f"Mixed_{n}" for n in names]
    assert [(n.path, n.kind) for n in g.nodes.values() if n.path.startswith("Mixed_")] == [
        (f"Mixed_{n}", k) for n, k in zip(names, ["InceptionA"] * 3 + ["InceptionB"] + ["InceptionC"] * 4
                                          + ["InceptionD"] + ["InceptionE"] * 2)]
    assert not g.merges()
    g = diagram_graph(a, open_stages=["Mixed_5b"])
    (cat,) = g.merges()
    assert cat.kind == "cat" and cat.shape == (256, 35, 35)
    assert sorted(g.nodes[i].path for i in g.inputs(cat.id)) == [
        "Mixed_5b.branch1x1", "Mixed_5b.branch3x3dbl_3", "Mixed_5b.branch5x5_2", "Mixed_5b.branch_pool"]
    assert "class=\"skip\"" not in architecture_dot(a, open_stages=["Mixed_5b"])  # four parallel branches


def test_a_traced_backbone_keeps_its_stages_and_block_types():
    # torch.fx rebuilds the blocks above the layers as plain modules: the stages and their classes come back
    g = diagram_graph(composed({"task": "segmentation", "backbone": {"name": "efficientnet_b0"},
                                "head": {"kind": "unet"}}))
    stages = [(n.path.split(".")[-1], n.blocks) for n in g.nodes.values() if n.role == "stage"]
    assert stages == [("2", "2× MBConv"), ("3", "2× MBConv"), ("4", "3× MBConv"), ("5", "3× MBConv"),
                      ("6", "4× MBConv")]  # EfficientNet-B0's repeats (features.1 and .7 hold one block each)
    assert len(g.merges("cat")) == 3  # the U-Net: four levels, three decoder steps, each with its skip
