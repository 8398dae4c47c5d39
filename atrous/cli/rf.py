"""``atrous rf``: receptive-field table and exact holes of a dilation chain or a built model.

atrous rf --kernel 3 --rates 1,1,2,4,8,16,1 [--append-1x1] [--json] [--plot coverage.png]
atrous rf --kernel 2 --rates 1,2,4,8,16,32,64,128,256,512 --repeat 3 --causal --ndim 1
atrous rf --schedule hdc:1,2,5                      # a schedule value's own rates
atrous rf --backbone resnet50 --output-stride 8 --dilation-schedule hdc   # no network
atrous rf --model deeplabv3 --backbone resnet50 --output-stride 8 [--dilation-schedule hdc]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from atrous.cli.common import (
    add_chain_arguments,
    add_model_arguments,
    build_from_args,
    chain_schedule,
)

NAME = "rf"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="receptive field and exact holes of a dilation chain or a model",
        description=(
            "Print the receptive-field table (size, jump, start) of a chain of dilated "
            "convolutions (1-D temporal, causal or not, 2-D or 3-D) with the exact hole "
            "fraction after each layer; the per-stage rates and holes of a dilation "
            "schedule on a backbone (--backbone, no network built); or the per-stage "
            "receptive fields and holes of a built model (--model)."
        ),
    )
    add_chain_arguments(parser)
    parser.add_argument(
        "--append-1x1", action="store_true", help="end with a 1x1 conv (Yu & Koltun's module)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--plot", help="write the coverage heatmap to this PNG")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _extent(size: int, ndim: int) -> str:
    return f"{size} samples" if ndim == 1 else "x".join([str(size)] * ndim)


def _run_chain(args: argparse.Namespace) -> int:
    from atrous.analysis import chain_coverage, receptive_field_table
    from atrous.ops.schedule import ConvGeometry

    schedule = chain_schedule(args)
    ndim = schedule.ndim
    layers = list(schedule.layers())
    if args.append_1x1:
        layers.append(ConvGeometry("conv", 1))
    rows = receptive_field_table(layers)
    rates = [layer.dilation for layer in layers]
    kernels = [layer.kernel_size for layer in layers]
    # Holes per layer from the 1-D chain: the n-D kernels are outer products, so a
    # position is reached exactly when each coordinate is (1 - (1 - h_1)^ndim).
    holes = [
        1.0 - (1.0 - chain_coverage(rates[: i + 1], kernels[: i + 1], dims=1).hole_fraction) ** ndim
        for i in range(len(layers))
    ]
    size = rows[-1].size
    dims = ndim if size**ndim <= 1 << 24 else 1  # a 3-D map of a huge field is summarised
    final = chain_coverage(rates, kernels, dims=dims)
    if args.json:
        document = {
            "kernel_size": schedule.kernel_size,
            "rates": list(schedule.flat_rates),
            "ndim": ndim,
            "causal": schedule.causal,
            "schedule": schedule.to_config(),
            "layers": [{**row.to_dict(), "hole_fraction": hole} for row, hole in zip(rows, holes)],
            "coverage": {**final.to_dict(), "hole_fraction": holes[-1], "dims": dims},
        }
        print(json.dumps(document, indent=2))
    else:
        header = f"{'layer':>5} {'kernel':>6} {'rate':>5} {'RF size':>8} {'jump':>5} {'start':>6} {'holes':>7}"
        print(header)
        for index, (row, hole) in enumerate(zip(rows, holes), start=1):
            layer = row.layer
            print(
                f"{index:>5} {layer.kernel_size:>6} {layer.dilation:>5} {row.size:>8} "
                f"{row.jump:>5} {row.start:>6g} {_percent(hole):>7}"
            )
        grid = f", holes on a grid of period {final.grid_period}" if final.is_grid else ""
        print(
            f"receptive field {_extent(size, ndim)}, hole fraction "
            f"{holes[-1]:.1%}{grid}, uniformity {final.uniformity:.2f}"
            + ("" if dims == ndim else " (of the 1-D chain)")
        )
        if schedule.causal:
            print(
                f"causal: the output at step t reads steps t-{size - 1} .. t, never a later "
                "one (start is the field's centre, (size - 1) / 2 before the output)"
            )
    if args.plot:
        from atrous.analysis import plot_coverage

        shown = final if final.counts.ndim <= 2 else chain_coverage(rates, kernels, dims=2)
        title = f"{schedule.kernel_size}-tap, rates " + ",".join(map(str, schedule.flat_rates))
        if shown is not final:
            title += " (2-D slice)"
        print(f"wrote {plot_coverage(shown, args.plot, title=title)}")
    return 0


def _run_layout(args: argparse.Namespace) -> int:
    from atrous.analysis import check_stages
    from atrous.models.backbones.factory import backbone_layout
    from atrous.ops.schedule import DilationSchedule

    if not args.output_stride:
        raise SystemExit("atrous rf: give --output-stride (8, 16 or 32) with --backbone")
    schedule = args.dilation_schedule or DilationSchedule.plain()
    try:
        layout = backbone_layout(args.backbone)
        checks = check_stages(schedule, layout, args.output_stride, model=args.backbone)
    except ValueError as error:
        raise SystemExit(f"atrous rf: {error}") from None
    if args.json:
        document = {
            "backbone": args.backbone,
            "output_stride": args.output_stride,
            "schedule": schedule.to_config(),
            "stages": [check.to_dict() for check in checks],
        }
        print(json.dumps(document, indent=2))
        return 0
    print(
        f"{args.backbone} at output stride {args.output_stride}, dilation schedule "
        f"{schedule} (from the stage layout; no network built)"
    )
    print(
        f"{'stage':<7} {'stride':>6} {'out':>4} {'dilations':<22} {'RF on input':>11} "
        f"{'M_2':>4} {'factor':>6} {'holes':>7}"
    )
    for check in checks:
        report = check.report
        rf = "-" if report is None else _extent(report.receptive_field, schedule.ndim)
        print(
            f"{check.name:<7} {check.stride:>6} {check.output_stride:>4} "
            f"{','.join(map(str, check.dilations)):<22} {rf:>11} "
            f"{'-' if report is None or report.m2 is None else report.m2:>4} "
            f"{'-' if report is None else report.common_factor:>6} "
            f"{_percent(None if report is None else report.hole_fraction):>7}"
        )
    print(
        "RF on input / holes: of the stage's dilated convs on the map it reads (the "
        f"previous stage's), {layout.convs_per_block} per block; exact with shortcuts "
        "(every kernel includes its centre tap). --model builds the network and measures "
        "at the image too."
    )
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
    if args.backbone:
        return _run_layout(args)
    if not args.rates and args.dilation_schedule is None:
        raise SystemExit(
            "atrous rf: give --rates (e.g. --rates 1,2,5), --schedule, --backbone NAME "
            "--output-stride N, or --model NAME"
        )
    return _run_chain(args)
