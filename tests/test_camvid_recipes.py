"""The CamVid recipes parse and build, and the shipped ``camvid`` model segments CamVid.

The model check runs on real val images (skipped without the data): a model that loads
but predicts noise, or whose class names/palette went missing, fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from atrous.engine import load_config
from atrous.models import build_model, shipped_models

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "configs").glob("camvid_*.yaml"))
OWN_RECIPES = [p for p in RECIPES if p.stem in ("camvid_cpu", "camvid_gpu") or "ablation" in p.stem]


@pytest.mark.parametrize("path", OWN_RECIPES, ids=[p.stem for p in OWN_RECIPES])
def test_recipe_parses_and_builds(path: Path) -> None:
    config = load_config(path, ["data.root=/nowhere"])
    assert config.data.format == "camvid"
    assert config.loss.class_weights in ("median_frequency", "sqrt_median_frequency")
    assert config.data.scale_range == (0.5, 2.0)
    with torch.device("meta"):
        model = build_model(config.model.name, num_classes=11, **config.model.options)
    assert model.num_classes == 11


def test_cpu_recipe_fits_its_budget() -> None:
    """The CPU recipe promises <= 2 hours: the wall-clock stop must be inside that."""
    config = load_config(REPO / "configs" / "camvid_cpu.yaml")
    assert config.schedule.max_minutes is not None and config.schedule.max_minutes < 120
    assert config.train.cpu_amp and config.train.amp == "bf16" and config.model.channels_last


def test_ablations_differ_only_in_dilation() -> None:
    """Same budget, optimiser and data for every ablation: only the backbone options differ."""
    configs = {p.stem: load_config(p) for p in RECIPES if "ablation" in p.stem}
    assert len(configs) == 4
    first = next(iter(configs.values()))
    rates = {}
    for name, config in configs.items():
        assert config.data == first.data and config.optim == first.optim
        assert config.schedule == first.schedule and config.loss == first.loss
        with torch.device("meta"):
            model = build_model(config.model.name, num_classes=11, **config.model.options)
        rates[name] = [info.dilation for info in model.backbone.feature_info]
        strides = [info.stride for info in model.backbone.feature_info]
        assert strides[-1] == (32 if name.endswith("none") else 8)
    assert rates["camvid_ablation_plain"][-2:] == [(2, 2), (4, 4)]
    assert rates["camvid_ablation_hdc"][-2:] == [(1, 2), (5, 9)]
    assert rates["camvid_ablation_multigrid"][-1] == (4, 8)
    assert rates["camvid_ablation_none"][-1] == (1, 1)


@pytest.mark.camvid
def test_shipped_camvid_model_segments_val_images(camvid_root: Path) -> None:
    from atrous.data import build_dataset
    from atrous.engine import evaluate
    from atrous.models import load_pretrained

    if "camvid" not in shipped_models():
        pytest.fail("the camvid model is not shipped in atrous/models/weights/camvid")
    model = load_pretrained("camvid")
    dataset = build_dataset("camvid", camvid_root, split="val")
    assert model.class_names == list(dataset.class_names)
    assert [tuple(c) for c in model.palette] == [tuple(c) for c in dataset.palette]
    weights = model.backbone.state_dict()
    assert all(torch.isfinite(t.float()).all() for t in weights.values())
    # Every 30th val image: three scenes from different sequences.
    subset = torch.utils.data.Subset(dataset, [0, 30, 60])
    result = evaluate(model, subset, num_classes=11, class_names=dataset.class_names)
    # The recorded val mIoU of the whole split is in the model card; three images are a
    # noisy sample, so only require a model that clearly segments street scenes.
    assert result["pixel_acc"] > 0.75
    assert result["miou"] > 0.35
    road = next(row for row in result.per_class if row["name"] == "Road")
    assert road["iou"] > 0.8


@pytest.mark.camvid
def test_shipped_camvid_erfnet_segments_a_held_out_drive(camvid_root: Path) -> None:
    from atrous.data import build_dataset
    from atrous.engine import evaluate
    from atrous.models import load_pretrained

    model = load_pretrained("camvid_erfnet")
    assert model.config["name"] == "erfnet"
    assert model.metadata["dataset"]  # the card's figures come with their provenance
    dataset = build_dataset("camvid", camvid_root, split="drive:0006R0")
    assert model.class_names == list(dataset.class_names)
    # Five frames of the drive it never trained on (the card: 79.5% pixel accuracy and
    # 87.7 road IoU on all 101); a broken export or a mislabelled palette fails here.
    subset = torch.utils.data.Subset(dataset, [0, 20, 40, 60, 80])
    result = evaluate(model, subset, num_classes=11, class_names=dataset.class_names)
    assert result["pixel_acc"] > 0.65
    road = next(row for row in result.per_class if row["name"] == "Road")
    assert road["iou"] > 0.7
