"""save_pretrained / load_pretrained: safetensors + JSON, atomic, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from atrous.models import build_model, load_pretrained, save_pretrained


def _tiny():
    return build_model("dilated_net", num_classes=3, rates=(1, 2), width=8)


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = _tiny()
    model.train()
    model(torch.randn(2, 3, 16, 16))  # move BN running stats away from their init
    model.eval()
    save_pretrained(
        model,
        tmp_path / "m",
        class_names=["sky", "road", "car"],
        palette=[(1, 2, 3), (4, 5, 6), (7, 8, 9)],
        metadata={"miou": 0.5},
    )
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    loaded = load_pretrained(tmp_path / "m")
    assert not loaded.training
    assert loaded.config == model.config
    assert loaded.class_names == ["sky", "road", "car"]
    assert loaded.palette == [(1, 2, 3), (4, 5, 6), (7, 8, 9)]
    x = torch.randn(1, 3, 21, 17)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    document = json.loads((tmp_path / "m" / "config.json").read_text())
    assert document["metadata"] == {"miou": 0.5}
    assert "atrous_version" in document


def test_config_rebuilds_the_architecture() -> None:
    model = build_model("dilated_net", num_classes=4, rates=(2, 3), width=6, stem_stride=4)
    rebuilt = build_model(**json.loads(json.dumps(model.config)))
    assert rebuilt.config == model.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }


def test_missing_and_corrupt_files_name_the_file(tmp_path: Path) -> None:
    save_pretrained(_tiny(), tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        load_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        load_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"config\.json"):
        load_pretrained(tmp_path / "m")


def test_unknown_name_lists_shipped_models_and_mentions_folders() -> None:
    with pytest.raises(FileNotFoundError, match="Shipped models") as info:
        load_pretrained("no-such-model")
    assert "folder" in str(info.value)


def test_mismatched_weights_are_rejected(tmp_path: Path) -> None:
    save_pretrained(_tiny(), tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    document = json.loads(config_path.read_text())
    document["model"]["width"] = 16
    config_path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="does not match"):
        load_pretrained(tmp_path / "m")


def test_no_temporary_files_left_behind(tmp_path: Path) -> None:
    save_pretrained(_tiny(), tmp_path)
    save_pretrained(_tiny(), tmp_path)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_round_trip_keeps_an_explicit_schedule(tmp_path: Path) -> None:
    model = build_model(
        "deeplabv3plus",
        num_classes=2,
        backbone="resnet18",
        output_stride=8,
        dilation_schedule={"layer4": [2, 3]},
        head_channels=8,
        low_level_projection=4,
    ).eval()
    save_pretrained(model, tmp_path)
    loaded = load_pretrained(tmp_path)
    assert [b.conv1.dilation[0] for b in loaded.backbone.layer4] == [2, 3]
    x = torch.randn(1, 3, 33, 29)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_unserialisable_config_is_a_clear_error(tmp_path: Path) -> None:
    model = build_model("dilated_net", num_classes=2, width=4, norm=torch.nn.BatchNorm2d)
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        save_pretrained(model, tmp_path)
    assert not any(tmp_path.iterdir())


def test_atrous_0_1_schedule_options_still_load(tmp_path: Path) -> None:
    # atrous 0.1 saved the schedule as three options (dilation_schedule, multi_grid,
    # hdc_rates); such folders, the shipped camvid model among them, must keep loading.
    model = build_model(
        "fcn",
        num_classes=2,
        backbone="resnet18",
        output_stride=8,
        dilation_schedule="multigrid:1,3",
    ).eval()
    save_pretrained(model, tmp_path)
    document = json.loads((tmp_path / "config.json").read_text())
    document["model"].update(dilation_schedule="multigrid", multi_grid=[1, 3], hdc_rates=[1, 2])
    (tmp_path / "config.json").write_text(json.dumps(document))
    loaded = load_pretrained(tmp_path)
    assert [b.conv1.dilation[0] for b in loaded.backbone.layer4] == [4, 12]
    assert loaded.config == model.config
    x = torch.randn(1, 3, 21, 19)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_shipped_models_are_saved_in_the_current_form() -> None:
    """Old folders load through fold_legacy_schedule (above); the shipped ones need not."""
    from atrous.models.config import LEGACY_SCHEDULE_OPTIONS
    from atrous.models.pretrained import SHIPPED_DIR, shipped_models

    assert shipped_models()
    for name in shipped_models():
        document = json.loads((SHIPPED_DIR / name / "config.json").read_text())
        assert not set(LEGACY_SCHEDULE_OPTIONS) & set(document["model"]), name
        assert "dilation_schedule" in document["model"], name


def test_a_loaded_model_knows_its_folder(tmp_path: Path) -> None:
    from atrous.models.pretrained import artifact_home

    save_pretrained(_tiny(), tmp_path / "m")
    loaded = load_pretrained(str(tmp_path / "m"))
    assert loaded.source_dir == (tmp_path / "m").resolve()
    assert artifact_home(loaded) == (tmp_path / "m").resolve()
    assert _tiny().source_dir is None and artifact_home(_tiny()) is None


def test_a_shipped_model_keeps_its_derived_files_out_of_the_package() -> None:
    from atrous.models import shipped_models
    from atrous.models.pretrained import SHIPPED_DIR, artifact_home

    if not shipped_models():
        pytest.skip("no shipped model in this installation")
    loaded = load_pretrained(shipped_models()[0])
    assert loaded.source_dir == (SHIPPED_DIR / shipped_models()[0]).resolve()
    assert artifact_home(loaded) is None
