"""``atrous train --config configs/X.yaml --set a.b=c --out runs/X [--resume]``."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

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
    p.add_argument(
        "--data.root",
        dest="data_root",
        metavar="PATH",
        help="dataset folder (same as --set data.root=PATH; the spelling of every command)",
    )
    p.add_argument(
        "--backbone-weights",
        metavar="SPEC",
        help="initialise the backbone from ImageNet weights (same as --set "
        "model.backbone_weights=SPEC): efficientnet-lite0|1|2 (installed package), a "
        "torchvision weights name such as ResNet18_Weights.IMAGENET1K_V1, or a state-dict file",
    )
    p.add_argument("--out", help="run folder (required unless --list-keys)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint; without --config, with the run's own "
        "<out>/config.yaml (--set still applies on top)",
    )
    p.add_argument(
        "--list-keys",
        action="store_true",
        help="print every key --set accepts, with its type and default, and exit",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from atrous.data import DataError
    from atrous.engine import ConfigError, NonFiniteLossError, load_config, train

    if args.list_keys:
        from atrous.engine.config import config_keys
        from atrous.engine.schema import KEY_HELP

        for key, type_name, default in config_keys():
            print(f"{key:32} {type_name:34} {default!s:18} {KEY_HELP.get(key, '')}")
        return 0
    if not args.out:
        print("error: --out is required (the run folder)", file=sys.stderr)
        return 2
    overrides = list(args.overrides)
    if args.data_root is not None:
        overrides.append(f"data.root={args.data_root}")
    if args.backbone_weights is not None:
        overrides.append(f"model.backbone_weights={args.backbone_weights}")
    config_path = args.config
    saved = Path(args.out) / "config.yaml"
    if args.resume and config_path is None and saved.is_file():
        config_path = str(saved)  # the run's own resolved config, not the defaults
    try:
        config = load_config(config_path, overrides)
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
