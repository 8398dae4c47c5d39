"""torchrun with 2 CPU processes (gloo) matches one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.data.helpers import write_folder_dataset

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_process_torchrun_matches_single_process(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", splits={"train": 16, "val": 2}, size=(24, 20))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
    ]
    ddp = subprocess.run(
        [*torchrun, str(WORKER), str(root), str(tmp_path / "ddp"), "2"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, str(WORKER), str(root), str(tmp_path / "single"), "4"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]

    rank0 = load_file(str(tmp_path / "ddp" / "weights_rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "ddp" / "weights_rank1.safetensors"))
    one = load_file(str(tmp_path / "single" / "weights_rank0.safetensors"))
    for key in one:
        assert torch.equal(rank0[key], rank1[key]), f"ranks disagree on {key}"
        torch.testing.assert_close(rank0[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    # Training moved the weights (so agreement is not just two untouched inits).
    from atrous.models import build_model

    torch.manual_seed(0)
    initial = build_model("dilated_net", num_classes=3, width=4, rates=[1, 2], norm="group")
    moved = [
        not torch.allclose(v, one[k])
        for k, v in initial.state_dict().items()
        if v.is_floating_point()
    ]
    assert sum(moved) >= len(moved) // 2
    # Only rank 0 wrote the run folder's files.
    assert (tmp_path / "ddp" / "metrics.jsonl").read_text().count("\n") == 2
