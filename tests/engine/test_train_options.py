"""Training options that change what is written when: checkpoint_every, the time budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atrous.cli import main
from atrous.engine import load_config, train
from tests.data.helpers import write_folder_dataset

TINY = [
    "data.crop_size=[16, 16]",
    "data.batch_size=2",
    "model.options={width: 4, rates: [1, 2]}",
    "loss.aux_weight=0",
    "train.device=cpu",
    "eval.every=100",  # only after the last epoch
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("options")
    return write_folder_dataset(base / "data", splits={"train": 4, "val": 1}, size=(16, 16))


def _checkpoints(run: Path) -> list[tuple[int, int, int]]:
    """(epoch, step_in_epoch, iteration) of every committed checkpoint, oldest first."""
    found = []
    for path in sorted((run / "checkpoints").glob("*.json")):
        info = json.loads(path.read_text())
        assert (path.parent / info["tensors"]).exists()
        found.append((info["epoch"], info["step_in_epoch"], info["iteration"]))
    return found


def test_checkpoint_every_writes_what_it_says(root: Path, tmp_path: Path) -> None:
    overrides = [f"data.root={root}", *TINY, "schedule.epochs=5", "train.checkpoint_every=2"]
    config = load_config(None, [*overrides, "train.keep_checkpoints=10"])
    result = train(config, tmp_path / "all", progress=False)
    # 2 iterations per epoch; epochs 2 and 4 by the interval, 5 because it is the last.
    assert _checkpoints(tmp_path / "all") == [(2, 0, 4), (4, 0, 8), (5, 0, 10)]
    assert result.last_checkpoint is not None and "epoch0005" in result.last_checkpoint.name
    # keep_checkpoints still prunes to the newest ones.
    train(load_config(None, overrides), tmp_path / "kept", progress=False)
    assert _checkpoints(tmp_path / "kept") == [(4, 0, 8), (5, 0, 10)]


def test_bad_checkpoint_every_is_a_config_error(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = [
        x for s in [f"data.root={root}", *TINY, "train.checkpoint_every=0"] for x in ("--set", s)
    ]
    assert main(["train", *sets, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "train.checkpoint_every=0; expected >= 1" in capsys.readouterr().err
