"""``torchrun --nnodes 2``: two single-process "nodes" on loopback train like one process.

Each node is its own torchrun agent (``--node-rank 0`` and ``1``) meeting at a static
rendezvous on 127.0.0.1, as two machines would at the first one's address; gloo is
pinned to the loopback interface. The worker is the single-node test's
(``tests/engine/ddp_worker.py``): per-rank batch 2 on two nodes is the global batch 4
of the single process it is compared with.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.data.helpers import write_folder_dataset
from tests.scale.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "tests" / "engine" / "ddp_worker.py"


@pytest.mark.slow  # a minute on the loaded 2-core machine (three trainings)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pins gloo to Linux's 'lo'")
def test_two_node_torchrun_on_loopback_matches_single_process(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", splits={"train": 16, "val": 2}, size=(24, 20))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
        "GLOO_SOCKET_IFNAME": "lo",
    }
    port = free_port()
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                f"--node-rank={rank}",
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                str(port),
                str(WORKER),
                str(root),
                str(tmp_path / "ddp"),
                "2",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=180)[0])
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    for rank, (node, output) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0, f"node {rank} failed:\n{output[-3000:]}"
    single = subprocess.run(
        [sys.executable, str(WORKER), str(root), str(tmp_path / "single"), "4"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]

    rank0 = load_file(str(tmp_path / "ddp" / "weights_rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "ddp" / "weights_rank1.safetensors"))
    one = load_file(str(tmp_path / "single" / "weights_rank0.safetensors"))
    assert rank0.keys() == rank1.keys() == one.keys()
    for key in one:
        assert torch.equal(rank0[key], rank1[key]), f"ranks disagree on {key}"
        torch.testing.assert_close(rank0[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    # Training moved the weights, so agreement is not two untouched initialisations.
    from atrous.models import build_model

    torch.manual_seed(0)
    initial = build_model("dilated_net", num_classes=3, width=4, rates=[1, 2], norm="group")
    moved = [
        not torch.allclose(v, one[k])
        for k, v in initial.state_dict().items()
        if v.is_floating_point()
    ]
    assert sum(moved) >= len(moved) // 2
    # The second node really was rank 1 of a world of 2 (only rank 0 writes run files).
    assert (tmp_path / "ddp" / "metrics.jsonl").read_text().count("\n") == 2
