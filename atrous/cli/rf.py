"""``atrous rf``: receptive-field table and exact holes of a dilation chain or a built model.

atrous rf --kernel 3 --rates 1,1,2,4,8,16,1 [--append-1x1] [--json] [--plot coverage.png]
atrous rf --model deeplabv3 --backbone resnet50 --output-stride 8 [--dilation-schedule hdc]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "rf"


def parse_rates(text: str) -> list[int]:
    """``"1,2,5"`` -> ``[1, 2, 5]``, with an error that shows the expected form."""
    try:
        rates = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"rates must be comma-separated integers such as 1,2,5, got {text!r}"
        ) from None
    if not rates or any(r < 1 for r in rates):
        raise argparse.ArgumentTypeError(f"rates must be integers >= 1 such as 1,2,5, got {text!r}")
    return rates


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that build a zoo model (shared by ``rf`` and ``erf``)."""
    group = parser.add_argument_group("built model")
    group.add_argument("--model", help="model name from `atrous models` (e.g. deeplabv3)")
    group.add_argument("--backbone", help="backbone name (e.g. resnet50)")
    group.add_argument("--output-stride", type=int, help="8, 16 or 32")
    group.add_argument(
        "--dilation-schedule",
        choices=("plain", "multigrid", "hdc"),
        help="per-block dilation generator (plain = torchvision layout)",
    )
    group.add_argument(
        "--multi-grid", type=parse_rates, help="unit rates for multigrid, e.g. 1,2,4"
    )
    group.add_argument("--hdc-rates", type=parse_rates, help="sawtooth cycle for hdc, e.g. 1,2,5,9")
    group.add_argument("--num-classes", type=int, default=21, help="classes (default 21)")
    group.add_argument(
        "--input-size", type=int, default=257, help="square input side in pixels (default 257)"
    )


def build_from_args(args: argparse.Namespace) -> Any:
    """Build (or load, with ``--weights``) the model the options describe."""
    from atrous.models import build_model, load_pretrained

    weights = getattr(args, "weights", None)
    if weights:
        return load_pretrained(weights)
    options: dict[str, Any] = {}
    if args.backbone:
        options["backbone"] = args.backbone
    if args.output_stride:
        options["output_stride"] = args.output_stride
    if args.dilation_schedule and args.dilation_schedule != "plain":
        options["dilation_schedule"] = args.dilation_schedule
    if args.multi_grid:
        options["multi_grid"] = tuple(args.multi_grid)
    if args.hdc_rates:
        options["hdc_rates"] = tuple(args.hdc_rates)
    if getattr(args, "meta", False):
        # Coverage never reads conv or norm weights: skip initialising them.
        import torch

        try:
            with torch.device("meta"):
                return build_model(args.model, num_classes=args.num_classes, **options)
        except (RuntimeError, NotImplementedError):
            pass
    return build_model(args.model, num_classes=args.num_classes, **options)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="receptive field and exact holes of a dilation chain or a model",
        description=(
            "Print the receptive-field table (size, jump, start) of a chain of k x k "
            "dilated convolutions with the exact hole fraction after each layer, or the "
            "per-stage receptive fields and holes of a built model."
        ),
    )
    parser.add_argument("--kernel", type=int, default=3, help="kernel size k (default 3)")
    parser.add_argument("--rates", type=parse_rates, help="dilation rates, e.g. 1,1,2,4,8,16,1")
    parser.add_argument(
        "--append-1x1", action="store_true", help="end with a 1x1 conv (Yu & Koltun's module)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--plot", help="write the coverage heatmap to this PNG")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _run_chain(args: argparse.Namespace) -> int:
    from atrous.analysis import chain_coverage, chain_layers, receptive_field_table
    from atrous.analysis.receptive_field import Layer

    layers = chain_layers(args.rates, args.kernel)
    if args.append_1x1:
        layers.append(Layer("conv", 1))
    rows = receptive_field_table(layers)
    holes = [
        chain_coverage(
            [layer.dilation for layer in layers[: i + 1]],
            [layer.kernel_size for layer in layers[: i + 1]],
        )
        for i in range(len(layers))
    ]
    final = holes[-1]
    if args.json:
        document = {
            "kernel_size": args.kernel,
            "rates": args.rates,
            "layers": [
                {**row.to_dict(), "hole_fraction": cov.hole_fraction}
                for row, cov in zip(rows, holes)
            ],
            "coverage": final.to_dict(),
        }
        print(json.dumps(document, indent=2))
    else:
        header = f"{'layer':>5} {'kernel':>6} {'rate':>5} {'RF size':>8} {'jump':>5} {'start':>6} {'holes':>7}"
        print(header)
        for index, (row, cov) in enumerate(zip(rows, holes), start=1):
            layer = row.layer
            print(
                f"{index:>5} {layer.kernel_size:>6} {layer.dilation:>5} {row.size:>8} "
                f"{row.jump:>5} {row.start:>6g} {_percent(cov.hole_fraction):>7}"
            )
        grid = f", holes on a grid of period {final.grid_period}" if final.is_grid else ""
        print(
            f"receptive field {rows[-1].size}x{rows[-1].size}, hole fraction "
            f"{final.hole_fraction:.1%}{grid}, uniformity {final.uniformity:.2f}"
        )
    if args.plot:
        from atrous.analysis import plot_coverage

        title = f"{args.kernel}x{args.kernel}, rates " + ",".join(map(str, args.rates))
        print(f"wrote {plot_coverage(final, args.plot, title=title)}")
    return 0


def _run_model(args: argparse.Namespace) -> int:
    from atrous.analysis.model_report import stage_report

    model = build_from_args(argparse.Namespace(**{**vars(args), "meta": True}))
    rows = stage_report(model, args.input_size)
    if args.json:
        print(json.dumps([row.to_dict() for row in rows], indent=2))
    else:
        print(
            f"{args.model} ({model.config.get('backbone', '')}), input {args.input_size}x{args.input_size}"
        )
        print(
            f"{'stage':<7} {'stride':>6} {'dilations':<20} {'RF theory':>9} {'RF measured':>11} "
            f"{'holes@image':>11} {'grid':<7} {'holes@grid':>10} {'period':<7} "
            f"{'base':<7} {'holes@base':>10}"
        )
        for row in rows:
            box = row.measured_box
            measured = f"{box[1] - box[0]}x{box[3] - box[2]}"
            period = "-" if row.grid_period is None else "x".join(map(str, row.grid_period))
            print(
                f"{row.name:<7} {row.stride:>6} {','.join(map(str, row.dilations)) or '-':<20} "
                f"{row.theoretical_rf if row.theoretical_rf is not None else '-':>9} "
                f"{measured:>11} {_percent(row.image_hole_fraction):>11} "
                f"{row.source or '-':<7} {_percent(row.grid_hole_fraction):>10} {period:<7} "
                f"{row.base or '-':<7} {_percent(row.base_hole_fraction):>10}"
            )
        print(
            "holes@grid: share of the stage's receptive field on the previous stage's map "
            "that no path reaches (gridding); holes@base: the same on the last undilated "
            "stage's map; the head row drops image pooling."
        )
    if args.plot:
        from atrous.analysis import plot_coverage

        stage = next(
            (r for r in reversed(rows) if r.name != "head" and r.grid_coverage is not None), None
        )
        if stage is not None and stage.grid_coverage is not None:
            title = f"{args.model}: {stage.name} centre on the {stage.source} map"
            print(f"wrote {plot_coverage(stage.grid_coverage, args.plot, title=title)}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.model:
        return _run_model(args)
    if not args.rates:
        raise SystemExit("atrous rf: give --rates (e.g. --rates 1,2,5) or --model NAME")
    return _run_chain(args)
