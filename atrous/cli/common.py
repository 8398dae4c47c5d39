"""Helpers the CLI commands share: argument types and option groups.

Commands import these from here, never from a sibling command module.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def parse_rates(text: str) -> list[int]:
    """``--rates 1,2,5``: ``atrous.ops.schedule.parse_rates`` as an argparse type."""
    from atrous.ops.schedule import parse_rates as read_rates

    try:
        return list(read_rates(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_ints(text: str) -> list[int]:
    """``--batch 1,4``: positive integers, read like a rate list."""
    return parse_rates(text)


def parse_schedule(text: str) -> Any:
    """A ``DilationSchedule`` from the command line.

    ``plain``, ``multigrid[:1,2,4]``, ``hdc[:1,2,5]``, or JSON (``'{"layer4": [2, 3]}'``,
    or the dict form a model config stores).
    """
    from atrous.ops.schedule import DilationSchedule

    try:
        value = json.loads(text) if text.lstrip().startswith(("{", "[")) else text
        return DilationSchedule.parse(value)
    except (ValueError, TypeError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_chain_arguments(parser: argparse.ArgumentParser) -> None:
    """Options describing a chain of stride-1 dilated convs (shared by ``rf`` and ``hdc``)."""
    parser.add_argument("--kernel", type=int, help="kernel size k (default 3, or the --schedule's)")
    parser.add_argument("--rates", type=parse_rates, help="dilation rates, e.g. 1,1,2,4,8,16,1")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="stack the rates this many times (WaveNet: 1,2,...,512 --repeat 3)",
    )
    parser.add_argument(
        "--ndim",
        type=int,
        choices=(1, 2, 3),
        help="1 (temporal), 2 (images, the default) or 3 (volumes)",
    )
    parser.add_argument(
        "--causal",
        action="store_true",
        help="temporal convs that read only the past (all padding on the left)",
    )


def chain_schedule(args: argparse.Namespace) -> Any:
    """The schedule a chain command describes: ``--rates`` (x ``--repeat``) or ``--schedule``.

    ``--kernel``, ``--ndim`` and ``--causal`` override what the schedule says.
    """
    from atrous.analysis.hdc import schedule_rates
    from atrous.ops.schedule import DilationSchedule

    given = getattr(args, "dilation_schedule", None)
    if args.rates:
        stages = {"layers": tuple(args.rates)}
        base = DilationSchedule.explicit(stages)
    else:
        base = given
        try:
            rates = schedule_rates(base)
        except ValueError as error:
            raise SystemExit(f"atrous {args.command}: {error}") from None
        stages = dict(base.stages) if base.rule == "explicit" else {"layers": rates}
    if args.repeat < 1:
        raise SystemExit(f"atrous {args.command}: --repeat must be >= 1, got {args.repeat}")
    if args.repeat > 1:
        one = tuple(rate for rates in stages.values() for rate in rates)
        stages = {f"stack{index + 1}": one for index in range(args.repeat)}
    try:
        return DilationSchedule.explicit(
            stages,
            kernel_size=args.kernel if args.kernel is not None else base.kernel_size,
            ndim=args.ndim if args.ndim is not None else base.ndim,
            causal=args.causal or base.causal,
        )
    except ValueError as error:
        raise SystemExit(f"atrous {args.command}: {error}") from None


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that build a zoo model (shared by ``rf`` and ``erf``)."""
    group = parser.add_argument_group("built model")
    group.add_argument("--model", help="model name from `atrous models` (e.g. deeplabv3)")
    group.add_argument("--backbone", help="backbone name (e.g. resnet50)")
    group.add_argument("--output-stride", type=int, help="8, 16 or 32")
    group.add_argument(
        "--dilation-schedule",
        "--schedule",
        dest="dilation_schedule",
        type=parse_schedule,
        metavar="SCHEDULE",
        help=(
            "dilation schedule: plain (torchvision's layout), multigrid[:1,2,4], "
            "hdc[:1,2,5,9] or JSON {stage: [rates]}"
        ),
    )
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
    if args.dilation_schedule is not None:
        options["dilation_schedule"] = args.dilation_schedule.to_config()
    if getattr(args, "meta", False):
        # Coverage never reads conv or norm weights: skip initialising them.
        import torch

        try:
            with torch.device("meta"):
                return build_model(args.model, num_classes=args.num_classes, **options)
        except (RuntimeError, NotImplementedError):
            pass
    return build_model(args.model, num_classes=args.num_classes, **options)


def add_runtime_arguments(parser: argparse.ArgumentParser, *, precision: str = "auto") -> None:
    """``--runtime`` and ``--precision`` (see ``atrous.infer.runtime``)."""
    from atrous.infer.runtime import PRECISIONS, RUNTIMES

    group = parser.add_argument_group("runtime and precision")
    group.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="torch",
        help="what runs the model: torch (atrous's fast CPU path), onnxruntime or openvino "
        "(the onnx / openvino extras)",
    )
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=precision,
        help="auto: int8 where `atrous quantize` accepted it for this model, else bf16 where "
        "the CPU runs it natively, else fp32; the path taken and why is printed "
        f"(default {precision})",
    )


def runtime_runner(
    model: Any, args: argparse.Namespace, *, images: int | None = None, varied_shapes: bool = False
) -> tuple[Any, Any]:
    """The runner for ``--runtime/--precision`` and the ``RuntimeChoice``, printed on
    stderr (``atrous.infer.runtime.choose``, ``build_runner``).

    Raises:
        ValueError: the pair cannot run here (``RuntimeUnavailableError``) or a runtime
            package is missing (``MissingPackageError`` is an ImportError: converted).
    """
    import sys

    from atrous.infer.packages import MissingPackageError
    from atrous.infer.runtime import build_runner, choose

    choice = choose(model, args.runtime, args.precision, images=images, varied_shapes=varied_shapes)
    print(f"runtime: {choice.describe()}", file=sys.stderr)
    try:
        return build_runner(model, choice), choice
    except MissingPackageError as error:
        raise ValueError(str(error)) from error
