"""Everything a config says is checked when it is loaded, model options included.

Settings that need the data (batch size, class counts) fail before the model is built,
as one line from ``atrous train``, not a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from atrous.cli import main
from atrous.engine import ConfigError, load_config
from atrous.engine.validate import check_model_options
from atrous.models import build_model, list_models, load_pretrained, save_pretrained
from tests.data.helpers import write_folder_dataset


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.name=deeplabv3", "model.options.output_stride=7"],
         r"model\.options\.output_stride=7: deeplabv3 rejects it: .*choose one of \(8, 16, 32\)"),
        (["model.name=deeplabv3", "model.options.backbone=resnet51"],
         r"model\.options\.backbone='resnet51'.*known backbones"),
        (["model.name=deeplabv3", "model.options.outputstride=16"],
         r"unknown key.*model\.options\.outputstride.*deeplabv3 takes: .*'output_stride'"),
        (["model.options.num_classes=3"], r"model\.options\.num_classes: set from the dataset"),
        (["model.name=deeplab"], r"model\.name='deeplab'; known models: .*deeplabv3"),
        (["model.pretrained=no/such/folder"], r"model\.pretrained=.*neither a folder nor"),
        (["data.batch_size=0"], r"data\.batch_size=0; expected >= 1"),
        (["data.scale_range=[2, 1]"], r"data\.scale_range=\[2\.0, 1\.0\]; expected 0 < low"),
        (["schedule.max_minutes=0"], r"schedule\.max_minutes=0\.0; expected > 0 or null"),
        (["schedule.epochs=0"], r"schedule\.epochs=0; expected >= 1"),
        (["optim.lr=0"], r"optim\.lr=0\.0; expected > 0"),
        (["eval.overlap=1.0"], r"eval\.overlap=1\.0; expected 0 <= overlap < 1"),
        (["loss.class_weights=inverse"], r"loss\.class_weights='inverse'.*median_frequency"),
        (["train.device=gpu7"], r"train\.device='gpu7'; expected auto, cpu, cuda"),
        # Types stay strict where lax coercion (pydantic's default) would guess:
        (["schedule.epochs=true"], r"schedule\.epochs: expected an integer, got True"),
        (["schedule.epochs='3'"], r"schedule\.epochs: expected an integer, got '3'"),
        (["train.cpu_amp='yes'"], r"train\.cpu_amp: expected true/false, got 'yes'"),
    ],
)  # fmt: skip
def test_bad_values_fail_at_load_naming_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_passes_with_its_defaults(name: str) -> None:
    check_model_options(name, {})


def test_good_options_pass_and_build_nothing_real() -> None:
    config = load_config(None, ["model.name=deeplabv3", "model.options.output_stride=8"])
    assert config.model.options == {"output_stride": 8}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("validate")
    return write_folder_dataset(base / "data", splits={"train": 4, "val": 1}, size=(16, 16))


def _train(root: Path, out: Path, *settings: str) -> int:
    base = [f"data.root={root}", "data.crop_size=[16, 16]", "train.device=cpu", *settings]
    sets = [x for s in base for x in ("--set", s)]
    return main(["train", *sets, "--out", str(out), "--no-progress"])


def test_batch_larger_than_the_training_set_is_one_line(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train(root, tmp_path / "run", "data.batch_size=8") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "data.batch_size=8" in err and "has 4 training samples" in err
    assert "at most 4" in err


def test_pretrained_with_another_class_count_fine_tunes(
    root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 5-class model fine-tunes on 3 classes: the head is swapped (load_pretrained's
    num_classes), the run finishes and its best/ has the dataset's 3 classes."""
    folder = tmp_path / "five_classes"
    save_pretrained(build_model("dilated_net", num_classes=5, width=4, rates=[1, 2]), folder)
    settings = ("data.batch_size=2", "schedule.epochs=1", f"model.pretrained={folder}")
    with caplog.at_level("INFO", logger="atrous.engine.build"):
        assert _train(root, tmp_path / "run", *settings) == 0
    assert "has 5 classes" in caplog.text and "re-initialised for 3 classes" in caplog.text
    best = load_pretrained(tmp_path / "run" / "best")
    assert best.num_classes == 3 and best.class_names is not None and len(best.class_names) == 3


def test_class_weight_list_of_the_wrong_length_is_one_line(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = ("data.batch_size=2", "loss.class_weights=[1, 2]", "model.options={width: 4}")
    assert _train(root, tmp_path / "run", *settings) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "loss.class_weights has 2 values" in err
