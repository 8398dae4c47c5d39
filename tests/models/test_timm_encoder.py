"""Any timm encoder as a dilated backbone: same features as timm's own feature
extractor with the same weights, at output strides 8/16/32, for four families."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from atrous.analysis.model_report import stage_report
from atrous.models import build_model
from atrous.models.backbone_weights import BackboneWeightsError, load_backbone_weights
from atrous.models.backbones.timm_encoder import TimmEncoder

timm = pytest.importorskip("timm")

FAMILIES = ["resnet18", "efficientnet_b0", "regnetx_002", "convnext_atto"]


@pytest.fixture(scope="module")
def classifier_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A full timm classifier's weights per family (random, seeded), as safetensors."""
    folder = tmp_path_factory.mktemp("timm")
    files = {}
    for name in FAMILIES:
        torch.manual_seed(1)
        model = timm.create_model(name, pretrained=False)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        files[name] = folder / f"{name}.safetensors"
        save_file(state, str(files[name]))
    return files


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("name", FAMILIES)
def test_features_equal_timms_with_the_same_weights(
    name: str, output_stride: int, classifier_files: dict[str, Path]
) -> None:
    """atrous reads the classifier file and hands it to timm's loader; timm reads the same
    file itself. Both feature extractors must agree exactly, stage by stage."""
    ours = TimmEncoder(name, output_stride=output_stride)
    load_backbone_weights(ours, str(classifier_files[name]))
    reference = timm.create_model(
        name,
        features_only=True,
        output_stride=output_stride,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(classifier_files[name])},
    )
    ours.eval(), reference.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        mine = ours(x)
        theirs = reference(x)
    assert len(mine) == len(theirs)
    for (stage, a), b in zip(mine.items(), theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=stage)
        stride = ours.info(stage).stride
        assert stride <= output_stride
        assert a.shape[-2:] == (math.ceil(64 / stride), math.ceil(96 / stride))


def test_heads_read_its_feature_info_and_strides_are_checked() -> None:
    for name in ("deeplabv3", "deeplabv3plus", "lraspp"):
        model = build_model(
            name, num_classes=3, backbone="timm:efficientnet_b0", output_stride=16, head_channels=16
        ).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 65, 97)).shape == (1, 3, 65, 97)
    assert model.backbone.low_level_feature == "stage2"
    with pytest.raises(ValueError, match="dilation_schedule 'plain' only"):
        TimmEncoder("resnet18", dilation_schedule="hdc")
    with pytest.raises(ValueError, match="timm has no model 'no_such_net'"):
        TimmEncoder("no_such_net")


def test_the_hole_analysis_works_on_a_timm_network() -> None:
    model = build_model("deeplabv3", num_classes=3, backbone="timm:resnet18", output_stride=8)
    rows = {row.name: row for row in stage_report(model, (129, 129))}
    assert rows["stage5"].dilations == (4, 4)
    assert rows["stage5"].grid_hole_fraction > 0.5  # equal rates 4, 4 on a rate-2 map
    box = rows["stage3"].measured_box  # (start, stop) per axis
    assert rows["stage3"].theoretical_rf == box[1] - box[0]  # the stem is counted


def test_config_key_and_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from atrous.engine import ConfigError, load_config

    config = load_config(
        None,
        [
            "model.name=deeplabv3plus",
            "model.options={backbone: 'timm:resnet18', output_stride: 16}",
        ],
    )
    assert config.model.options["backbone"] == "timm:resnet18"
    with pytest.raises(ConfigError, match="timm has no model"):
        load_config(None, ["model.name=deeplabv3", "model.options={backbone: 'timm:nope_net'}"])
    with pytest.raises(BackboneWeightsError, match="needs a timm backbone"):
        load_backbone_weights(build_model("fcn", num_classes=2, backbone="resnet18"), "timm")
    import builtins

    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(ImportError, match=r"atrous\[timm\]"):
        TimmEncoder("resnet18")
