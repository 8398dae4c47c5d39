"""``atrous export --model NAME|DIR --format onnx|torchscript --out FILE``."""

from __future__ import annotations

import argparse
import sys

NAME = "export"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="export a model to ONNX or TorchScript and check it against PyTorch",
        description="Export a model (dynamic batch, height and width for ONNX), then run the "
        "exported file on a sample input and another size and report the largest logit "
        "difference to PyTorch; exit 1 (and remove the file) if it exceeds --tolerance.",
    )
    p.add_argument("--model", required=True, help="saved model folder, shipped name or zoo name")
    p.add_argument("--format", choices=("onnx", "torchscript"), required=True)
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument("--dynamo", action="store_true", help="use torch.onnx's dynamo exporter")
    p.add_argument("--method", choices=("trace", "script"), default="trace", help="TorchScript")
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--num-classes", type=int, default=21, help="for an untrained zoo name")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from atrous.infer.export import (
        ExportMismatchError,
        check_export,
        export_onnx,
        export_torchscript,
    )
    from atrous.infer.loading import load_model

    try:
        model = load_model(args.model, num_classes=args.num_classes)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    height, width = args.size
    example = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    out = Path(args.out)
    try:
        if args.format == "onnx":
            export_onnx(model, out, opset=args.opset, example=example, dynamo=args.dynamo)
        else:
            export_torchscript(model, out, example=example, method=args.method)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        difference = check_export(model, out, example=example, tolerance=args.tolerance)
    except ExportMismatchError as error:
        out.unlink(missing_ok=True)
        print(f"error: {error}; removed {out}", file=sys.stderr)
        return 1
    size_mb = out.stat().st_size / 1e6
    print(
        f"wrote {out} ({args.format}, {size_mb:.1f} MB); max abs logit diff vs PyTorch "
        f"{difference:.2e} (tolerance {args.tolerance:g}, checked at {height}x{width} and a "
        "second size)"
    )
    return 0
