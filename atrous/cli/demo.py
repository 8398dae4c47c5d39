"""``atrous demo``: train four models on generated context data and write a report."""

from __future__ import annotations

import argparse
import sys

NAME = "demo"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="show dilation, gridding and HDC on a real training run (four models, built-in data)",
        description=(
            "Generate a synthetic dataset whose labels need context, train a network "
            "without dilation, one with gridding rates (4,4,4,4), one with an HDC schedule "
            "(1,2,5,9) and a small DeepLabV3 with the same budget, then evaluate them, map "
            "their receptive fields and write report.html and report.md."
        ),
    )
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help="wall-clock target; the shared epoch count is derived from it (default: 10)",
    )
    p.add_argument("--epochs", type=int, default=None, help="fix the epoch count instead")
    p.add_argument("--train-images", type=int, default=None, help="training images to generate")
    p.add_argument("--val-images", type=int, default=None, help="validation images to generate")
    p.add_argument("--image-size", type=int, default=None, help="side of the generated images")
    p.add_argument("--seed", type=int, default=0, help="dataset and training seed")
    p.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="cpu (default), cuda or auto; on a GPU the demo runs at a larger size",
    )
    p.add_argument(
        "--models",
        default="undilated,gridded,hdc,aspp,undilated_seed2,aspp_seed2",
        help="comma-separated subset of undilated, gridded, hdc, aspp (the undilated stack "
        "with an ASPP head), undilated_seed2, aspp_seed2 (second seeds: the spread)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from atrous.demo import DemoInterrupted, DemoSettings, run_demo
    from atrous.demo.report import format_table, results_table
    from atrous.device import resolve_device

    try:
        device = resolve_device(args.device).type
    except ValueError as error:
        print(f"atrous demo: {error}", file=sys.stderr)
        return 2
    settings = DemoSettings(
        seed=args.seed,
        minutes=args.minutes,
        epochs=args.epochs,
        device=device,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
    )
    if device == "cuda":
        # A GPU has time for more and larger images and wider networks.
        settings = dataclasses.replace(
            settings, train_images=2000, val_images=200, image_size=128, width=64, batch_size=32
        )
    sizes = {
        "train_images": args.train_images,
        "val_images": args.val_images,
        "image_size": args.image_size,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in sizes.items() if v is not None})
    try:
        demo = run_demo(args.out, settings, progress=not args.no_progress)
    except DemoInterrupted as error:
        print(f"atrous demo: {error}", file=sys.stderr)
        return 143
    print()
    print(format_table(results_table(demo.rows, demo.class_names)))
    print()
    print(f"demo finished in {demo.seconds / 60:.1f} min ({demo.epochs} epochs per model)")
    print(f"report: {demo.report_html}")
    print(f"        {demo.report_md}")
    return 0
