"""Model registry: feature map, pooled feature and logits; local pretrained init."""

from __future__ import annotations

import pytest
import torch

from bench.core.compat import import_torchvision
from bench.core.errors import BenchError
from bench.core.models import MODELS, build_model


@pytest.mark.parametrize("arch", MODELS.names())
@pytest.mark.parametrize(("size", "channels"), [(8, 1), (32, 3)])
def test_every_model_exposes_fmap_feat_logits(arch, size, channels):
    model = build_model(arch, num_classes=7, in_channels=channels, image_size=size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size))
    assert out.fmap.ndim == 4 and out.fmap.shape[:2] == (2, model.feature_channels)
    assert torch.allclose(out.feat, out.fmap.mean(dim=(2, 3)))
    assert out.logits.shape == (2, 7)


def test_small_cnn_map_sizes():
    assert build_model("small_cnn", 3, 1, 8)(torch.randn(1, 1, 8, 8)).fmap.shape[-1] == 4
    assert build_model("small_cnn", 3, 3, 32)(torch.randn(1, 3, 32, 32)).fmap.shape[-1] == 8


def test_resnet_widths():
    assert build_model("resnet18", 5, 3, 32).feature_channels == 512
    assert build_model("resnet50", 5, 3, 32).feature_channels == 2048


def test_pretrained_from_a_torchvision_state_dict(tmp_path):
    tv = import_torchvision()
    reference = tv.models.resnet18(weights=None, num_classes=1000)
    path = tmp_path / "r18.pt"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18", 10, 3, 224, pretrained=str(path))
    assert torch.equal(model.backbone[0].weight, reference.conv1.weight)
    assert torch.equal(model.backbone[7][1].conv2.weight, reference.layer4[1].conv2.weight)
    assert model.fc.weight.shape == (10, 512)  # head of another size is left fresh


def test_pretrained_own_format_roundtrip(tmp_path):
    a = build_model("small_cnn", 4, 1, 8, width=8)
    path = tmp_path / "a.pt"
    torch.save({"state_dict": a.state_dict()}, path)
    b = build_model("small_cnn", 4, 1, 8, pretrained=str(path), width=8)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_pretrained_errors(tmp_path):
    with pytest.raises(BenchError, match="no such file"):
        build_model("small_cnn", 4, 1, 8, pretrained=str(tmp_path / "missing.pt"))
    path = tmp_path / "other.pt"
    torch.save({"unrelated.weight": torch.zeros(3)}, path)
    with pytest.raises(BenchError, match="no tensor matches"):
        build_model("small_cnn", 4, 1, 8, pretrained=str(path))
