"""Training options that change what is written when: checkpoint_every, the time budget."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from atrous.cli import main
from atrous.engine import ConfigError, NonFiniteLossError, load_config, train, trainer
from atrous.engine.build import class_weights
from atrous.engine.precision import Bf16Decision, decide_cpu_bf16
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


def _status_and_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_time_budget_saves_evaluates_and_resumes_exactly(root: Path, tmp_path: Path) -> None:
    overrides = [f"data.root={root}", *TINY, "schedule.epochs=2"]
    reference = train(load_config(None, overrides), tmp_path / "reference", progress=False)
    # A budget of 60 microseconds runs out during the first step (epoch 1 has 2 steps).
    budget = load_config(None, [*overrides, "schedule.max_minutes=0.000001"])
    stopped = train(budget, tmp_path / "run", progress=False)
    assert stopped.status == "time_budget"
    assert _checkpoints(tmp_path / "run") == [(0, 1, 1)]  # resume inside epoch 1
    (row,) = stopped.history
    assert row["partial"] is True and row["iteration"] == 1 and "val_miou" in row
    assert _status_and_rows(tmp_path / "run") == [row]
    assert stopped.best_dir is not None and stopped.best_miou == row["val_miou"]
    # Resuming without the budget ends exactly where the uninterrupted run ends.
    resumed = train(load_config(None, overrides), tmp_path / "run", resume=True, progress=False)
    assert resumed.status == "completed"
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert "partial" not in resumed.history[0]
    assert [r["epoch"] for r in _status_and_rows(tmp_path / "run")] == [1, 2]
    want, got = reference.model.state_dict(), resumed.model.state_dict()  # type: ignore[union-attr]
    assert all(torch.equal(got[k], v) for k, v in want.items())


def test_deferred_loss_reads_still_stop_on_nan(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CUDA's schedule (read the loss every log_every steps), exercised on the CPU."""
    monkeypatch.setattr(trainer, "_loss_read_interval", lambda device, log_every: log_every)
    overrides = [f"data.root={root}", *TINY, "schedule.epochs=3", "train.log_every=3"]
    config = load_config(None, overrides)
    result = train(config, tmp_path / "good", progress=False)
    assert result.status == "completed" and len(result.history) == 3
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    bad = load_config(None, [*overrides, "optim.lr=1e30"])
    with pytest.raises(NonFiniteLossError, match=r"loss is (nan|inf) at epoch 1, iterations 0-1"):
        train(bad, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_autocast_dtype_is_opt_in_on_cpu() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert trainer.autocast_dtype(cuda, "fp16") is torch.float16
    assert trainer.autocast_dtype(cuda, "bf16") is torch.bfloat16
    assert trainer.autocast_dtype(cuda, "none") is None
    faster = lambda: Bf16Decision(True, "test")  # noqa: E731
    slower = lambda: Bf16Decision(False, "test")  # noqa: E731
    assert trainer.autocast_dtype(cpu, "bf16", decide=faster) is None  # float32 by default
    assert trainer.autocast_dtype(cpu, "bf16", cpu_amp=True, decide=faster) is torch.bfloat16
    assert trainer.autocast_dtype(cpu, "fp16", cpu_amp=True, decide=faster) is None
    assert trainer.autocast_dtype(cpu, "bf16", cpu_amp=True, decide=slower) is None


@pytest.mark.skipif(not decide_cpu_bf16().use, reason="bfloat16 does not pay on this CPU")
def test_cpu_amp_trains_in_bfloat16(root: Path, tmp_path: Path) -> None:
    """With train.cpu_amp the convolutions really run in bfloat16, and training works."""
    seen: set[torch.dtype] = set()
    original = torch.nn.Conv2d._conv_forward

    def spy(self: torch.nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, bias):  # type: ignore[no-untyped-def]
        out = original(self, x, weight, bias)
        if torch.is_grad_enabled():  # training steps, not the evaluation
            seen.add(out.dtype)
        return out

    overrides = [f"data.root={root}", *TINY, "schedule.epochs=2"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.Conv2d, "_conv_forward", spy)
        fp32 = train(load_config(None, overrides), tmp_path / "fp32", progress=False)
        assert seen == {torch.float32}
        seen.clear()
        bf16 = train(load_config(None, [*overrides, "train.cpu_amp=true"]), tmp_path / "bf16",
                     progress=False)  # fmt: skip
        assert seen == {torch.bfloat16}
    for result in (fp32, bf16):
        assert all(math.isfinite(row["train_loss"]) for row in result.history)
    # Same data and init: bfloat16 rounding changes the losses a little, not a lot.
    first = fp32.history[0]["train_loss"], bf16.history[0]["train_loss"]
    assert first[0] != first[1] and abs(first[0] - first[1]) < 0.05 * first[0]


def test_sqrt_median_frequency_weights(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from atrous.data import build_dataset, check_dataset, median_frequency_weights

    config = load_config(None, [f"data.root={root}", *TINY])
    full = median_frequency_weights(check_dataset(build_dataset("folder", root, split="train")))
    soft = load_config(
        None, [f"data.root={root}", *TINY, "loss.class_weights=sqrt_median_frequency"]
    )
    got = class_weights(soft, len(full))
    assert got == pytest.approx([math.sqrt(w) for w in full])
    assert config.loss.class_weights is None and class_weights(config, len(full)) is None
    with pytest.raises(ConfigError, match="sqrt_median_frequency"):  # when loaded, not later
        load_config(None, [f"data.root={root}", *TINY, "loss.class_weights=inverse"])
