"""Seconds per training iteration of a CamVid recipe on this CPU, and the epochs 2 hours buy.

Runs the engine's own loop for a few iterations (one "epoch" capped by
``schedule.iters_per_epoch``), reads the epoch time from its metrics and prints the
estimate. On a shared machine the figure is inflated; say so when quoting it.

    python benchmarks/camvid_cpu_timing.py --config configs/camvid_cpu.yaml \
        --set data.root=../shared/datasets/camvid --iters 4
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--hours", type=float, default=2.0)
    args = parser.parse_args(argv)

    from atrous.engine import load_config, train

    overrides = [
        *args.overrides,
        f"schedule.iters_per_epoch={args.iters}",
        "schedule.epochs=1",
        "data.max_val_samples=1",
        "loss.class_weights=null",
    ]
    config = load_config(args.config, overrides)
    with tempfile.TemporaryDirectory() as out:
        result = train(config, out, progress=False)
    seconds = result.history[0]["epoch_time_s"] / args.iters
    per_epoch = math.floor(367 / config.data.batch_size)
    epochs = args.hours * 3600 / (seconds * per_epoch)
    print(
        f"{seconds:.2f} s/iteration (batch {config.data.batch_size}, crop "
        f"{list(config.data.crop_size)}); {per_epoch} iterations/epoch -> "
        f"{epochs:.1f} epochs in {args.hours:g} h (plus evaluation time)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
