"""``atrous erf``: effective receptive field of a built or saved model (Luo et al., 2016).

atrous erf --model deeplabv3 --backbone resnet50 --output-stride 8 --plot erf.png
atrous erf --weights runs/demo/model [--samples 16]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from atrous.cli.common import add_model_arguments, build_from_args

NAME = "erf"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="effective receptive field of a model (mean |input gradient| of its centre)",
        description=(
            "Average |d output(centre) / d input| over random inputs for a model with its "
            "real weights (random init, or --weights from a saved model folder) and report "
            "the radii holding 50% and 95% of the mass."
        ),
    )
    add_model_arguments(parser)
    parser.add_argument("--weights", help="saved model folder (config.json + model.safetensors)")
    parser.add_argument("--samples", type=int, default=8, help="random inputs (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inputs and the init")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--plot", help="write the ERF heatmap to this PNG")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from atrous.analysis import effective_receptive_field, plot_erf

    if not args.model and not args.weights:
        raise SystemExit("atrous erf: give --model NAME or --weights FOLDER")
    torch.manual_seed(args.seed)
    model = build_from_args(args)
    erf = effective_receptive_field(
        model, (args.input_size, args.input_size), samples=args.samples, seed=args.seed
    )
    name = args.model or args.weights
    if args.json:
        print(json.dumps({"model": name, **erf.to_dict()}, indent=2))
    else:
        print(
            f"{name}: effective receptive field of the centre output at "
            f"{args.input_size}x{args.input_size}, {args.samples} samples: 50% of the "
            f"gradient mass within r={erf.radius(0.5):.1f}px, 95% within "
            f"r={erf.radius(0.95):.1f}px"
        )
    if args.plot:
        print(f"wrote {plot_erf(erf, args.plot, title=str(name))}")
    return 0
