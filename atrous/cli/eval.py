"""``atrous eval --model NAME|DIR --data.root ROOT --data.format camvid --split val``.

On CamVid, ``--split`` also takes split expressions over the frame names
(``atrous.data.splits``): ``--split drive:0006R0`` scores drive 0006R0, pooled from
every split on disk, a street that a model trained on ``train+val-drive:0006R0`` never
saw. When the model's saved config names its training split, frames it trained on are
counted and reported, so a training score is never mistaken for a validation score.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atrous.cli.common import add_runtime_arguments, runtime_runner

if TYPE_CHECKING:
    from atrous.data import SegmentationDataset

NAME = "eval"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="evaluate a saved model on a dataset split",
        description="Evaluate a saved model (a save_pretrained folder such as runs/x/best, "
        "or a shipped model name) and print per-class IoU, mIoU, pixel accuracy, mean "
        "class accuracy, frequency-weighted IoU and boundary F-score.",
    )
    p.add_argument("--model", required=True, help="model folder or shipped model name")
    p.add_argument("--config", help="YAML config whose data/eval sections to use")
    p.add_argument("--data.root", dest="data_root", help="dataset folder")
    p.add_argument(
        "--data.format",
        dest="data_format",
        choices=("folder", "camvid", "voc", "cityscapes"),
        help="dataset layout (default: from --config, else guessed from the folder)",
    )
    p.add_argument(
        "--split",
        default=None,
        help="split to evaluate (default: val). CamVid also takes expressions by drive "
        "and time: drive:0006R0 (a held-out drive, from train+val), frames:0016E5:7000.. "
        "(frames 7000 on), train+val-drive:0006R0; an unknown name lists those that exist",
    )
    p.add_argument("--mode", choices=("whole", "slide", "ms_flip"), help="inference mode")
    p.add_argument("--window", type=int, help="sliding-window size (mode slide)")
    p.add_argument("--scales", type=float, nargs="+", help="scales (mode ms_flip)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--max-samples", type=int, help="evaluate only the first N images")
    p.add_argument("--json", dest="json_out", help="also write the result to this JSON file")
    add_runtime_arguments(p)
    p.set_defaults(func=run)


def _frames_trained_on(
    model: object, data_format: str, root: str, dataset: SegmentationDataset
) -> tuple[int, str] | None:
    """How many of the dataset's frames the model's recorded training split holds.

    Read from the training config the trainer stores in the model's metadata; frames are
    matched by file name (unique in CamVid), so a copy of the data elsewhere still
    matches. ``None`` when nothing is recorded or it does not resolve on this folder.
    """
    from atrous.data import DataError, camvid_pool, resolve_split, shared_frames

    recorded = (getattr(model, "metadata", None) or {}).get("config") or {}
    data = recorded.get("data") or {}
    if data_format != "camvid" or data.get("format") != "camvid":
        return None
    train_split = data.get("train_split")
    if not isinstance(train_split, str):
        return None
    try:
        trained = resolve_split(train_split, camvid_pool(root))
    except DataError:
        return None
    shared = shared_frames(trained, dataset.samples)
    return (len(shared), train_split) if shared else None


def _bad_samples(dataset: object, root: str, split: str) -> str | None:
    """Every unreadable sample, listed before anything is scored (a metric over fewer
    files than asked would differ silently), or None."""
    from atrous.engine.precheck import check_samples, describe

    problems = check_samples(dataset)  # type: ignore[arg-type]
    if not problems:
        return None
    return describe(problems, split, root) + "\nno metric reported; fix or remove these files"


def _planned(args: argparse.Namespace, dataset: Any) -> int:
    """Images the evaluation will run."""
    return len(dataset) if args.max_samples is None else min(args.max_samples, len(dataset))


def run(args: argparse.Namespace) -> int:
    from atrous.data import DataError, build_dataset, detect_format
    from atrous.device import resolve_device
    from atrous.engine import ConfigError, evaluate, load_config
    from atrous.models import load_pretrained

    try:
        config = load_config(args.config, [])
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    root = args.data_root or config.data.root
    data_format = args.data_format or (config.data.format if args.config else detect_format(root))
    split = args.split or config.data.val_split
    try:
        device = resolve_device(args.device)
        dataset = build_dataset(data_format, root, split=split)
        model = load_pretrained(args.model, map_location=device)
    except (DataError, FileNotFoundError, ValueError) as exc:
        from atrous.engine.best import explain_missing_best

        print(f"error: {explain_missing_best(args.model) or exc}", file=sys.stderr)
        return 2
    if model.num_classes != dataset.num_classes:
        print(
            f"error: model {args.model} has {model.num_classes} classes, dataset {root} has "
            f"{dataset.num_classes}; expected the same",
            file=sys.stderr,
        )
        return 2
    seen = _frames_trained_on(model, data_format, root, dataset)
    if seen:
        print(
            f"note: {seen[0]} of the {len(dataset)} frames of {split!r} are in the model's "
            f"training split {seen[1]!r}: on those this is a training score, not a new street"
        )
    problems = _bad_samples(dataset, root, split)
    if problems:
        print(f"error: {problems}", file=sys.stderr)
        return 2
    mode = args.mode or config.eval.mode
    runner: Any = model
    choice = None
    if str(device) == "cpu":  # the runtimes and precisions are CPU paths
        try:
            runner, choice = runtime_runner(model, args, images=_planned(args, dataset))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        result = evaluate(
            runner,
            dataset,
            num_classes=dataset.num_classes,
            ignore_index=dataset.ignore_index,
            mode=mode,
            window=args.window or config.eval.window,
            overlap=config.eval.overlap,
            scales=tuple(args.scales) if args.scales else config.eval.scales,
            boundary_tolerance=config.eval.boundary_tolerance,
            class_names=dataset.class_names,
            device=device,
            max_samples=args.max_samples,
            progress=True,
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = "torch fp32" if choice is None else f"{choice.runtime} {choice.precision}"
    print(f"{args.model} on {root} [{split}], mode {mode}, {path}")
    print(result.table())
    if args.json_out:
        document = {"model": str(args.model), "data": str(root), "split": split, "mode": mode}
        if choice is not None:
            document |= {"runtime": choice.runtime, "precision": choice.precision}
        document.update(result.to_dict())
        Path(args.json_out).write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0
