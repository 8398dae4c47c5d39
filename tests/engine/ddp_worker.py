"""Run by test_distributed.py, with or without torchrun: train, then save this rank's weights."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from atrous.engine import load_config, train

if __name__ == "__main__":
    root, out, batch_size = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    config = load_config(
        None,
        [
            f"data.root={root}",
            f"data.batch_size={batch_size}",
            "data.crop_size=[16, 16]",
            "data.scale_range=[1, 1]",
            "model.options={width: 4, rates: [1, 2], norm: group}",
            "loss.aux_weight=0",
            "optim.lr=0.05",
            "schedule.epochs=2",
            "train.device=cpu",
        ],
    )
    result = train(config, out, progress=False)
    rank = os.environ.get("RANK", "0")
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, str(out / f"weights_rank{rank}.safetensors"))
