"""The catalog: every architecture with its metadata, built the ordinary way and the cheap way."""
from __future__ import annotations

import pytest
import torch

from explorer import analyze, catalog
from explorer.catalog import UnknownModelError

CLASSIC = ["densenet264", "gap_cnn", "lenet5", "mini_xception", "mobilenet_v1", "preact_resnet18", "preact_resnet50", "zfnet"]


def test_names():
    assert len(catalog.names("torchvision")) == 80
    assert catalog.names("classic") == CLASSIC
    assert catalog.names("segmentation") == ["seg_encoder_decoder", "seg_pool_unpool", "seg_unet"]
    assert len(catalog.names("quantized")) == 12 and catalog.names("optical_flow") == ["raft_large", "raft_small"]
    assert len(catalog.names()) == 105


def test_metadata_of_resnet50():
    i = catalog.info("resnet50")
    assert (i.family, i.year) == ("ResNet", 2015)
    assert i.paper == "Deep Residual Learning for Image Recognition"
    assert "y = F(x) + x" in i.description
    assert i.input_size == (3, 224, 224) and i.num_classes == 1000
    assert (i.acc1, i.acc5) == (80.858, 95.434)  # the default (V2) weights
    assert i.num_params == 25_557_032 and i.gmacs == 4.089 and i.gflops == 8.178
    assert i.weights == "ResNet50_Weights.IMAGENET1K_V2"


# The int8 models build for real (packed weights cannot be meta): `make check` keeps one, `make test` all.
@pytest.mark.parametrize("name", [n if not n.startswith("quantized_") or n == "quantized_resnet18"
                                  else pytest.param(n, marks=pytest.mark.slow) for n in catalog.names()])
def test_every_entry_has_metadata_and_builds_on_meta(name):
    i = catalog.info(name)
    assert i.family and i.paper and i.description and 1989 < i.year < 2030
    m = catalog.build_meta(name)
    if i.source == "quantized":  # packed int8 weights are C++ objects with no meta form: built for real
        from explorer.analysis import is_quantized

        assert is_quantized(m) and i.num_params and i.gmacs
        return
    assert all(p.is_meta for p in m.parameters()) and all(b.is_meta for b in m.buffers())
    if i.source == "torchvision":
        assert i.acc1 and i.acc5 and i.num_params and i.gmacs


def test_default_input_is_the_weights_crop_size():
    assert catalog.info("vit_h_14").input_size == (3, 518, 518)
    assert catalog.build_meta("vit_h_14").image_size == 518
    assert catalog.info("inception_v3").input_size == (3, 299, 299)
    assert catalog.info("efficientnet_b7").input_size == (3, 600, 600)
    assert catalog.info("lenet5").input_size == (1, 32, 32)


def test_auxiliary_heads_off_by_default_and_available():
    g = catalog.build_meta("googlenet")
    assert g.aux1 is None and g.aux2 is None
    assert analyze("googlenet", training_memory=False).params == catalog.info("googlenet").num_params == 6_624_904
    g_aux = catalog.build_meta("googlenet", aux_logits=True)
    assert g_aux.aux1 is not None
    assert analyze("googlenet", training_memory=False, aux_logits=True).params == 13_004_888
    assert catalog.build_meta("inception_v3").AuxLogits is None
    assert "auxiliary classifier" in catalog.info("inception_v3").note


def test_build_is_an_ordinary_cpu_model_and_kwargs_pass_through():
    m = catalog.build("resnet18", num_classes=10)
    assert all(p.device.type == "cpu" and not p.is_meta for p in m.parameters())
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert catalog.build("lenet5")(torch.randn(1, 1, 32, 32)).shape == (1, 10)


def test_regnet_builds_cheaply_although_meta_construction_fails():
    with pytest.raises(NotImplementedError), torch.device("meta"):
        import torchvision

        torchvision.models.regnet_y_400mf()
    m = catalog.build_meta("regnet_y_128gf")
    assert sum(p.numel() for p in m.parameters()) == 644_812_894
    assert all(p.is_meta for p in m.parameters())


def test_meta_init_does_not_leak_into_other_threads():
    import threading

    from explorer.meta_init import meta_init

    seen = {}

    def other():
        seen["device"] = torch.nn.Linear(2, 2).weight.device.type

    with meta_init():
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert torch.nn.Linear(2, 2).weight.is_meta
    assert seen["device"] == "cpu"
    assert torch.nn.Linear(2, 2).weight.device.type == "cpu"


def test_unknown_name_is_one_sentence_with_suggestions():
    with pytest.raises(UnknownModelError) as e:
        catalog.info("resnet5")
    assert str(e.value).startswith("There is no architecture called 'resnet5' in the catalog. Did you mean resnet50")
