"""``atrous hdc``: check a dilation schedule against the HDC rules, or design one.

atrous hdc --kernel 3 --rates 2,2,2              # M-rule, common factor, exact holes
atrous hdc --schedule hdc:1,2,5                   # a schedule value
atrous hdc --kernel 2 --rates 1,2,4,8,16,32,64,128,256,512 --repeat 3 --ndim 1 --causal
atrous hdc --kernel 3 --target-rf 67 --max-layers 6 --max-rate 16
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from atrous.cli.common import add_chain_arguments, chain_schedule, parse_rates, parse_schedule

NAME = "hdc"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="check a dilation schedule (HDC rule + exact holes) or design hole-free ones",
        description=(
            "Hybrid dilated convolution (Wang et al., 2018). With --rates: report M_2, the "
            "common factor and the exact holes of the schedule. With --target-rf: list "
            "hole-free schedules reaching that receptive field, fewest layers first."
        ),
    )
    add_chain_arguments(parser)
    parser.add_argument(
        "--schedule",
        dest="dilation_schedule",
        type=parse_schedule,
        metavar="SCHEDULE",
        help="schedule value to check: hdc:1,2,5 or JSON {stage: [rates]} (one stage each)",
    )
    parser.add_argument("--target-rf", type=int, help="receptive field to design for")
    parser.add_argument("--max-layers", type=int, default=8, help="design: most layers (8)")
    parser.add_argument("--max-rate", type=int, help="design: largest rate allowed")
    parser.add_argument("--limit", type=int, default=10, help="design: schedules to list (10)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--plot", help="PNG comparing the coverage of the schedule(s)")
    parser.add_argument(
        "--compare",
        type=parse_rates,
        action="append",
        default=[],
        metavar="RATES",
        help="check: also plot this schedule next to --rates (repeatable)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when the schedule fails"
    )
    parser.set_defaults(func=run)


def _check(args: argparse.Namespace) -> int:
    from atrous.analysis import hdc_check

    schedule = chain_schedule(args)
    report = hdc_check(schedule)
    if args.json:
        print(json.dumps({**report.to_dict(), "causal": schedule.causal}, indent=2))
    else:
        m2 = "n/a" if report.m2 is None else str(report.m2)
        print(f"rates           {','.join(map(str, report.rates))}  (kernel {report.kernel_size})")
        if report.dims != 2 or schedule.causal:
            causal = ", causal" if schedule.causal else ""
            stacks = f", {len(schedule.stages)} stacks" if len(schedule.stages) > 1 else ""
            print(f"dimensions      {report.dims}{causal}{stacks}")
        print(f"M_1..M_n        {','.join(map(str, report.m_values))}")
        print(
            f"M_2 <= K        {m2} <= {report.kernel_size}: {'yes' if report.m_rule_passes else 'no'}"
        )
        print(f"common factor   {report.common_factor}")
        extent = "x".join([str(report.receptive_field)] * report.dims)
        print(f"receptive field {extent}")
        print(f"hole fraction   {report.hole_fraction:.1%}")
        print(f"verdict         {'PASS' if report.passes else 'FAIL'}")
        print(report.explanation)
    if args.plot:
        from atrous.analysis import plot_schedules

        schedules = [list(report.rates), *args.compare]
        print(f"wrote {plot_schedules(schedules, args.plot, kernel_size=report.kernel_size)}")
    return 1 if args.strict and not report.passes else 0


def _design(args: argparse.Namespace) -> int:
    from atrous.analysis import design_schedules

    kernel = 3 if args.kernel is None else args.kernel
    schedules = design_schedules(
        kernel_size=kernel,
        target_rf=args.target_rf,
        max_layers=args.max_layers,
        max_rate=args.max_rate,
        limit=args.limit,
    )
    if args.json:
        print(json.dumps([s.to_dict() for s in schedules], indent=2))
    elif not schedules:
        print(
            f"no hole-free schedule of at most {args.max_layers} layers with rates <= "
            f"{args.max_rate} reaches RF {args.target_rf}; allow more layers or a larger rate"
        )
    else:
        print(
            f"{'rates':<22} {'layers':>6} {'RF':>5} {'max rate':>8} {'uniformity':>10} {'M_2':>4}"
        )
        for s in schedules:
            m2 = "-" if s.m2 is None else str(s.m2)
            print(
                f"{','.join(map(str, s.rates)):<22} {s.layers:>6} {s.receptive_field:>5} "
                f"{s.largest_rate:>8} {s.uniformity:>10.2f} {m2:>4}"
            )
        print(schedules[0].explanation)
        if schedules[0].extra.get("truncated"):
            print("(search stopped early; raise the limits for a complete list)")
    if args.plot and schedules:
        from atrous.analysis import plot_schedules

        chosen = [s.rates for s in schedules[:3]]
        print(f"wrote {plot_schedules(chosen, args.plot, kernel_size=kernel)}")
    return 0 if schedules else 1


def run(args: argparse.Namespace) -> int:
    if args.rates or args.dilation_schedule is not None:
        return _check(args)
    if args.target_rf:
        return _design(args)
    raise SystemExit("atrous hdc: give --rates or --schedule (to check) or --target-rf (to design)")
