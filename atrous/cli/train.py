"""``atrous train --config configs/X.yaml --set a.b=c --out runs/X [--resume]``."""

from __future__ import annotations

import argparse
import math
import sys

NAME = "train"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="train a model from a YAML config",
        description="Train a segmentation model. The resolved config, metrics.jsonl, "
        "checkpoints/ and best/ (a save_pretrained folder) go into --out. Works the same "
        "under torchrun (DDP: gloo on CPU, NCCL on GPU).",
    )
    p.add_argument("--config", help="YAML config (default: built-in defaults)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. --set optim.lr=0.02 (repeatable; values parsed as YAML)",
    )
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from atrous.data import DataError
    from atrous.engine import ConfigError, NonFiniteLossError, load_config, train

    try:
        config = load_config(args.config, args.overrides)
        result = train(config, args.out, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result.status == "interrupted":
        print(f"interrupted; checkpoint {result.last_checkpoint}; rerun with --resume")
        return 0
    if result.status == "time_budget":
        final = result.history[-1].get("val_miou", math.nan) if result.history else math.nan
        print(
            f"time budget spent: final val mIoU {100 * final:.2f}, "
            f"best {100 * result.best_miou:.2f} -> {result.best_dir}; "
            f"checkpoint {result.last_checkpoint} (--resume continues with a fresh budget)"
        )
        return 0
    print(f"done: best val mIoU {100 * result.best_miou:.2f} -> {result.best_dir}")
    return 0
