"""Training learns, resumes exactly after SIGKILL/SIGTERM, stops on NaN, feeds `atrous eval`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from atrous.cli import main
from atrous.data import FolderDataset
from atrous.data.synthetic import generate
from atrous.engine import NonFiniteLossError, load_config, train
from atrous.engine.checkpoint import latest_checkpoint
from tests.data.helpers import write_folder_dataset

REPO = Path(__file__).resolve().parents[2]


def test_learns_synthetic_context_task(tmp_path: Path) -> None:
    root = generate(tmp_path / "data", seed=0, train=48, val=12, size=64)
    config = load_config(
        REPO / "configs" / "synthetic_quick.yaml",
        [f"data.root={root}", "schedule.epochs=4", "optim.lr=0.01", "train.device=cpu"],
    )
    result = train(config, tmp_path / "run", progress=False)
    assert result.status == "completed" and len(result.history) == 4
    # Chance level from the validation labels: predicting the majority class everywhere.
    val = FolderDataset(root, split="val")
    counts = torch.stack(
        [torch.bincount(val[i][1].flatten(), minlength=3) for i in range(len(val))]
    ).sum(0)
    majority_miou = float(counts.max() / counts.sum()) / 3
    assert result.best_miou > max(0.45, 2 * majority_miou), (majority_miou, result.history)
    assert result.history[-1]["train_loss"] < 0.6 * result.history[0]["train_loss"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    assert load_config(tmp_path / "run" / "config.yaml") == config
    # The best model is a save_pretrained folder `atrous eval` reads; in fp32 it scores
    # exactly what training measured (auto may pick bf16).
    out = tmp_path / "eval.json"
    code = main(["eval", "--model", str(result.best_dir), "--data.root", str(root),
                 "--split", "val", "--device", "cpu", "--precision", "fp32",
                 "--json", str(out)])  # fmt: skip
    assert code == 0
    evaluated = json.loads(out.read_text())["metrics"]["miou"]
    assert evaluated == pytest.approx(result.best_miou, abs=1e-6)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", splits={"train": 4, "val": 1}, size=(16, 16))
    overrides = [f"data.root={root}", "data.crop_size=[16, 16]", "data.batch_size=2",
                 "model.options={width: 4, rates: [1, 2]}", "schedule.epochs=1", "train.device=cpu"]  # fmt: skip
    train(load_config(None, overrides), tmp_path / "run", progress=False)
    good = latest_checkpoint(tmp_path / "run" / "checkpoints")
    bad = load_config(
        None, [*overrides[:-2], "schedule.epochs=3", "optim.lr=1e30", "train.device=cpu"]
    )
    with pytest.raises(
        NonFiniteLossError, match=r"loss is (nan|inf).*Last good checkpoint: .*epoch0001"
    ):
        train(bad, tmp_path / "run", resume=True, progress=False)
    assert latest_checkpoint(tmp_path / "run" / "checkpoints") == good


# --- exact resume, checked in subprocesses (a real kill, the CLI as users run it) ---------

RESUME_SETTINGS = [
    "model.options={width: 4, rates: [1, 2]}",
    "data.crop_size=[16, 16]",
    "data.scale_range=[0.5, 1.5]",
    "data.color_jitter=0.2",
    "data.batch_size=2",
    "schedule.epochs=4",
    "schedule.warmup_iters=3",
    "train.device=cpu",
    "loss.aux_weight=0",
]


def _command(root: Path, out: Path, *extra: str, settings: tuple[str, ...] = ()) -> list[str]:
    sets = [x for s in [f"data.root={root}", *RESUME_SETTINGS, *settings] for x in ("--set", s)]
    return [
        sys.executable,
        "-m",
        "atrous",
        "train",
        *sets,
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _final_tensors(run: Path) -> dict[str, torch.Tensor]:
    document = latest_checkpoint(run / "checkpoints")
    assert document is not None
    info = json.loads(document.read_text())
    assert info["epoch"] == 4 and info["step_in_epoch"] == 0
    tensors = load_file(str(document.parent / info["tensors"]))
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "optim."))}


@pytest.fixture(scope="module")
def resume_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    base = tmp_path_factory.mktemp("resume")
    root = write_folder_dataset(base / "data", splits={"train": 120, "val": 2}, size=(24, 20))
    subprocess.run(_command(root, base / "reference"), env=_env(), check=True, capture_output=True)
    return root, _final_tensors(base / "reference")


def _interrupt(
    root: Path, run: Path, sig: signal.Signals, settings: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Start training, send ``sig`` shortly after the first checkpoint, then resume."""
    command = _command(root, run, settings=settings)
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while latest_checkpoint(run / "checkpoints") is None:
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    time.sleep(0.15)  # into epoch 2
    process.send_signal(sig)
    output = process.communicate(timeout=60)[0]
    if sig == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 0 and "interrupted" in output, output
    info = json.loads(latest_checkpoint(run / "checkpoints").read_text())  # type: ignore[union-attr]
    assert info["epoch"] < 4, "the run finished before the signal: nothing was interrupted"
    return subprocess.run(
        _command(root, run, "--resume", settings=settings),
        env=_env(),
        capture_output=True,
        text=True,
    )


def _assert_same(run: Path, reference: dict[str, torch.Tensor]) -> None:
    resumed = _final_tensors(run)
    assert resumed.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), key


@pytest.mark.parametrize(
    "settings",
    [(), ("data.num_workers=2",)],  # the reference run loads in the main process
    ids=["main_process", "persistent_workers"],
)
def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(
    resume_data: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path, settings: tuple[str, ...]
) -> None:
    root, reference = resume_data
    resumed = _interrupt(root, tmp_path / "run", signal.SIGKILL, settings)
    assert resumed.returncode == 0 and "resumed from" in resumed.stderr, resumed.stderr
    _assert_same(tmp_path / "run", reference)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def test_sigterm_saves_mid_epoch_and_resume_is_bitwise_identical(
    resume_data: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    root, reference = resume_data
    resumed = _interrupt(root, tmp_path / "run", signal.SIGTERM)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same(tmp_path / "run", reference)
