"""A resumed run writes what an uninterrupted one writes; kills leave nothing behind.

- metrics.jsonl after a mid-epoch stop and ``--resume`` equals the uninterrupted run's,
  apart from the timing fields (the epoch's loss sums are in the checkpoint);
- pruning deletes the orphan ``.safetensors`` a kill between a checkpoint's two
  deletions leaves;
- a kill between the two renames that replace ``best/`` is undone at the next start,
  and ``atrous eval`` says what happened before that.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from atrous.cli import main
from atrous.data import DataError
from atrous.engine import load_config, train
from atrous.engine.best import explain_missing_best, recover_best, save_best
from atrous.engine.checkpoint import prune_checkpoints
from tests.data.helpers import write_folder_dataset

TINY = [
    "data.crop_size=[16, 16]",
    "data.batch_size=2",
    "model.options={width: 4, rates: [1, 2]}",
    "loss.aux_weight=0",
    "train.device=cpu",
    "schedule.epochs=3",
    "schedule.warmup_iters=2",
    "data.color_jitter=0.2",
    "eval.every=1",
]
TIMING = ("images_per_s", "epoch_time_s")


class SigtermAtRead:
    """A clock for ``train(clock=...)`` that sends SIGTERM at its ``kill_at``-th read.

    The trainer reads its clock once per step and at each epoch's start and end, so
    the signal lands at a fixed step: a real SIGTERM, at a deterministic moment.
    """

    def __init__(self, kill_at: int) -> None:
        self.reads, self.kill_at = 0, kill_at

    def __call__(self) -> float:
        self.reads += 1
        if self.reads == self.kill_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return float(self.reads)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("resume_files")
    return write_folder_dataset(base / "data", splits={"train": 8, "val": 2}, size=(20, 18))


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


@pytest.fixture(scope="module")
def reference(root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    run = tmp_path_factory.mktemp("reference") / "run"
    train(load_config(None, [f"data.root={root}", *TINY]), run, progress=False)
    return _rows(run)


def test_metrics_after_mid_epoch_sigterm_and_resume_are_identical(
    root: Path, reference: list[dict], tmp_path: Path
) -> None:
    config = load_config(None, [f"data.root={root}", *TINY])
    # Reads: start, epoch 1 (its start, 4 steps, evaluation start and end), epoch 2's
    # start, its 1st step, its 2nd step: read 11.
    stopped = train(config, tmp_path / "run", progress=False, clock=SigtermAtRead(11))
    assert stopped.status == "interrupted"
    info = json.loads(stopped.last_checkpoint.read_text())  # type: ignore[union-attr]
    assert (info["epoch"], info["step_in_epoch"]) == (1, 2)
    assert info["epoch_loss"]["count"] == 2  # the two steps of epoch 2 already trained
    train(config, tmp_path / "run", resume=True, progress=False)
    assert len(reference) == 3
    assert _rows(tmp_path / "run") == reference  # train_loss of epoch 2 included


def test_metrics_after_time_budget_stop_and_resume_are_identical(
    root: Path, reference: list[dict], tmp_path: Path
) -> None:
    settings = [f"data.root={root}", *TINY]
    # 11 clock seconds from read 1: the budget runs out at epoch 2's 3rd step (read 12).
    budget = load_config(None, [*settings, "schedule.max_minutes=0.18333"])
    stopped = train(budget, tmp_path / "run", progress=False, clock=SigtermAtRead(0))
    assert stopped.status == "time_budget" and stopped.history[-1]["partial"] is True
    train(load_config(None, settings), tmp_path / "run", resume=True, progress=False)
    assert _rows(tmp_path / "run") == reference


def _touch_checkpoint(folder: Path, name: str, iteration: int) -> None:
    (folder / f"{name}.safetensors").write_bytes(b"tensors")
    document = {"iteration": iteration, "tensors": f"{name}.safetensors", "id": name}
    (folder / f"{name}.json").write_text(json.dumps(document))


def test_pruning_removes_orphan_tensors(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for i in range(1, 4):
        _touch_checkpoint(folder, f"epoch{i:04d}", i)
    # A kill between deleting epoch0000's JSON and its tensors left this behind.
    (folder / "epoch0000.safetensors").write_bytes(b"orphan")
    (folder / ".epoch0004.safetensors.tmp-123").write_bytes(b"torn")
    prune_checkpoints(folder, keep=2)
    assert sorted(p.name for p in folder.iterdir()) == [
        "epoch0002.json",
        "epoch0002.safetensors",
        "epoch0003.json",
        "epoch0003.safetensors",
    ]


def test_pruning_after_a_real_run_leaves_only_committed_checkpoints(
    root: Path, tmp_path: Path
) -> None:
    config = load_config(None, [f"data.root={root}", *TINY, "schedule.epochs=1"])
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "epoch0000_iter00000001.safetensors").write_bytes(b"orphan")
    train(config, run, progress=False)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["epoch0001_iter00000004.json", "epoch0001_iter00000004.safetensors"]


def _two_bests(root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A finished run whose best/ is then copied, as the two folders a kill leaves."""
    config = load_config(None, [f"data.root={root}", *TINY, "schedule.epochs=1"])
    result = train(config, tmp_path / "run", progress=False)
    assert result.best_dir is not None
    return result.best_dir, result.best_dir.parent


def test_kill_between_best_renames_is_recovered_on_any_start(root: Path, tmp_path: Path) -> None:
    best, run = _two_bests(root, tmp_path)
    # The state between `best -> best.old` and `best.tmp -> best`.
    shutil.copytree(best, run / "best.tmp")
    best.rename(run / "best.old")
    explained = explain_missing_best(best)
    assert explained is not None and "killed while replacing it" in explained
    assert "best.tmp" in explained and "val mIoU" in explained
    config = load_config(None, [f"data.root={tmp_path / 'none'}", *TINY, "schedule.epochs=1"])
    with pytest.raises(DataError):  # any start, even one that then fails
        train(config, run, progress=False)
    assert best.is_dir() and not (run / "best.tmp").exists() and not (run / "best.old").exists()
    assert explain_missing_best(best) is None


def test_recover_best_prefers_the_newer_complete_folder(tmp_path: Path) -> None:
    from atrous.models import build_model

    model = build_model("dilated_net", num_classes=3, width=4, rates=[1, 2])
    best = tmp_path / "best"
    save_best(model, best, {"epoch": 1, "val_miou": 0.5})
    assert recover_best(best) is None  # nothing to do
    (tmp_path / "best.tmp").mkdir()  # a half-written new best: config.json not yet there
    assert recover_best(best) is not None and not (tmp_path / "best.tmp").exists()
    best.rename(tmp_path / "best.old")  # only the old one survived
    assert recover_best(best) is not None and (best / "config.json").is_file()


def test_eval_explains_a_missing_best(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best, run = _two_bests(root, tmp_path)
    best.rename(run / "best.old")
    code = main(["eval", "--model", str(best), "--data.root", str(root), "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "killed while replacing it" in err and "best.old" in err
