"""``atrous bench``: atrous's fast CPU path and the deployment runtimes, side by side.

Without ``--model`` it compares against torchvision's deeplabv3_resnet50 in eager mode
(the same weights in every variant); with ``--model NAME|DIR`` a shipped or saved model
is measured the same way against its own PyTorch eager forward.
"""

from __future__ import annotations

import argparse
import sys

from atrous.cli.common import parse_ints

NAME = "bench"

# The runtimes people deploy with, added by --deploy (each precision each offers).
DEPLOY_VARIANTS = (
    "fp32",
    "bf16",
    "int8",
    "ort-fp32",
    "ort-int8",
    "openvino-fp32",
    "openvino-int8",
)
# --runtime/--precision -> the variant that runs that path.
PATH_VARIANTS = {
    ("torch", "fp32"): "fp32",
    ("torch", "bf16"): "bf16",
    ("torch", "int8"): "int8",
    ("onnxruntime", "fp32"): "ort-fp32",
    ("onnxruntime", "int8"): "ort-int8",
    ("openvino", "fp32"): "openvino-fp32",
    ("openvino", "int8"): "openvino-int8",
}


def _size(text: str) -> tuple[int, int]:
    from atrous.infer.bench import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="benchmark the fast CPU path and ONNX Runtime / OpenVINO against PyTorch eager",
        description="Side by side in one run, same weights in every variant: a reference in "
        "PyTorch eager mode (torchvision's deeplabv3_resnet50, or the --model as loaded) "
        "and the variants named by --variants/--deploy. Reports median latency and its "
        "ratio to the reference (timed interleaved), images/s, peak RSS, achieved GFLOP/s "
        "against a fp32 matmul timed in the same run, and argmax agreement with the "
        "reference on held-out inputs (--images, else noise). Variants whose package is "
        "not installed are skipped with a message.",
    )
    p.add_argument(
        "--model",
        default=None,
        help="a shipped model name (camvid), a saved model folder or a zoo architecture "
        "(random weights); default: torchvision's deeplabv3_resnet50 against atrous's "
        "DeepLabv3-ResNet50 OS8 with the same weights",
    )
    p.add_argument("--size", type=_size, default=(512, 512), help="input size: 512 or HxW")
    p.add_argument("--batch", type=parse_ints, default=[1, 4], help="batch sizes, e.g. 1,4")
    p.add_argument("--runs", type=int, default=5, help="timed repetitions per variant")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument(
        "--variants",
        default="fp32-eager,fp32,bf16",
        help="variants after the reference: fp32-eager, fp32 (compile), jit, bf16-eager, "
        "bf16 (compile), int8 (atrous int8: PT2E, Inductor), ort-fp32, ort-int8 (ONNX "
        "Runtime static QDQ), openvino-fp32, openvino-int8 (NNCF post-training)",
    )
    p.add_argument(
        "--deploy",
        action="store_true",
        help=f"add the deployment comparison: {', '.join(DEPLOY_VARIANTS)}",
    )
    p.add_argument("--int8", action="store_true", help="add atrous int8 (alias of --variants int8)")
    p.add_argument(
        "--runtime",
        choices=("torch", "onnxruntime", "openvino"),
        default=None,
        help="with --precision: add the variant of that path",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "int8", "auto"),
        default=None,
        help="add the variant of that path (auto: the one predict/eval would choose, with "
        "its reason printed)",
    )
    p.add_argument(
        "--images",
        default=None,
        help="folder of held-out images for argmax agreement (resized to --size); "
        "default: N(0,1) noise",
    )
    p.add_argument("--held-out", type=int, default=4, help="held-out inputs for agreement")
    p.add_argument(
        "--calibration-images",
        default=None,
        help="folder of images calibrating both int8 variants (keep them apart from "
        "--images); default: N(0,1) noise of another seed",
    )
    p.add_argument("--calibration", type=int, default=4, help="int8 calibration inputs")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for torch, ONNX Runtime and OpenVINO (default: torch's count)",
    )
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip peak RSS")
    p.add_argument(
        "--output-strides", action="store_true", help="also compare output stride 8 vs 16"
    )
    p.set_defaults(func=run)


def _variant_keys(args: argparse.Namespace) -> list[str]:
    """Reference first, then the requested variants in order, each once.

    Raises:
        ValueError: an unknown variant name.
    """
    from atrous.infer.bench import VARIANT_NAMES, reference_key

    keys = [reference_key(args.model)]
    requested = [k.strip() for k in args.variants.split(",") if k.strip()]
    if args.deploy:
        requested += DEPLOY_VARIANTS
    if args.int8:
        requested.append("int8")
    if args.precision is not None or args.runtime is not None:
        requested.append(_path_variant(args))
    for key in requested:
        if key not in VARIANT_NAMES or key in ("torchvision", "eager"):
            known = [k for k in VARIANT_NAMES if k not in ("torchvision", "eager")]
            raise ValueError(f"unknown variant {key!r}; known: {', '.join(known)}")
        if key not in keys:
            keys.append(key)
    return keys


def _path_variant(args: argparse.Namespace) -> str:
    """The variant of ``--runtime/--precision`` (``auto`` resolved as predict does)."""
    runtime, precision = args.runtime or "torch", args.precision or "auto"
    if precision == "auto":
        from atrous.infer.loading import load_model
        from atrous.infer.runtime import choose

        choice = choose(load_model(args.model or "camvid"), runtime, "auto")
        print(f"runtime: {choice.describe()}", file=sys.stderr)
        runtime, precision = choice.runtime, choice.precision
    if (runtime, precision) not in PATH_VARIANTS:
        raise ValueError(f"--runtime {runtime} has no {precision} path")
    return PATH_VARIANTS[runtime, precision]


def _inputs(args: argparse.Namespace) -> tuple[list, list, str]:
    """Held-out inputs, int8 calibration inputs (never the same ones) and a line saying
    where both come from."""
    from atrous.infer.bench import image_inputs, noise_inputs

    if args.held_out < 1 or args.calibration < 1:
        raise ValueError(
            f"--held-out and --calibration must be >= 1, got {args.held_out}, {args.calibration}"
        )
    if args.images is not None:
        held_out = image_inputs(args.images, args.held_out, args.size)
        held_from = f"{len(held_out)} images from {args.images}"
    else:
        held_out = noise_inputs(args.held_out, args.size, seed=5)
        held_from = f"{len(held_out)} N(0,1) noise images (seed 5)"
    if args.calibration_images is not None:
        calibration = image_inputs(args.calibration_images, args.calibration, args.size)
        calibrated_from = f"{len(calibration)} images from {args.calibration_images}"
    else:
        calibration = noise_inputs(args.calibration, args.size, seed=3)
        calibrated_from = f"{len(calibration)} N(0,1) noise images (seed 3)"
    size = f"{args.size[0]}x{args.size[1]}"
    return (
        held_out,
        calibration,
        f"agreement on {held_from} at {size}; int8 calibrated on {calibrated_from}",
    )


def run(args: argparse.Namespace) -> int:
    import platform

    import torch

    from atrous.infer.bench import (
        build_variants,
        format_table,
        fresh_process_peak_mb,
        matmul_gflops,
        matmul_variant,
        measure_agreement,
        time_variants,
    )

    try:
        if args.output_strides and args.model is not None:
            raise ValueError("--output-strides compares DeepLabv3-ResNet50 strides; drop --model")
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        keys = _variant_keys(args)
        held_out, calibration, inputs_line = _inputs(args)
        threads = torch.get_num_threads()
        variants, atrous_model, skipped = build_variants(
            keys, size=args.size, model=args.model, calibration=calibration, threads=threads
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for message in skipped:
        print(f"skipped: {message}", file=sys.stderr)
    height, width = args.size
    print(
        f"torch {torch.__version__}, {threads} threads, "
        f"{platform.processor() or platform.machine()}, cpu capability "
        f"{torch.backends.cpu.get_cpu_capability()}"
    )
    peak = matmul_gflops()
    print(f"fp32 matmul (2048^3 torch.mm, best of 5, at start): {peak:.0f} GFLOP/s")
    described = args.model or "deeplabv3_resnet50 OS8"
    gflop = variants[0].flops_per_image / 1e9
    effective = variants[0].effective_flops_per_image / 1e9
    print(
        f"{described} at {height}x{width}: {gflop:.0f} GFLOP per image nominal"
        + (
            f", {effective:.0f} GFLOP without multiply-adds against zero padding"
            if effective
            else ""
        )
    )
    print(inputs_line)
    _print_quantisation(atrous_model)
    reference = variants[0].name
    measure_agreement(variants, held_out, reference=reference)
    for batch in args.batch:
        for variant in variants:
            variant.times.clear()
        x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(1))
        probe = matmul_variant()
        time_variants([*variants, probe], x, runs=args.runs, warmup=args.warmup)
        if args.memory:
            for variant in variants:
                before, variant.peak_mb = fresh_process_peak_mb(
                    variant.key, args.size, batch, model=args.model, threads=threads
                )
                variant.forward_mb = variant.peak_mb - before
        print(
            format_table(
                [*variants, probe],
                batch=batch,
                reference=reference,
                peak_gflops=peak,
                skipped=skipped,
            )
        )
    if args.output_strides:
        _output_strides(args, variants[0].run, atrous_model)
    return 0


def _print_quantisation(model: object) -> None:
    """The model's saved int8 and what it was accepted on (``atrous quantize``)."""
    from atrous.infer.quantized import find_quantized

    saved = find_quantized(model)  # type: ignore[arg-type]
    if saved is None:
        print("saved int8: none (atrous quantize measures and saves one)")
        return
    latency = saved.record.get("latency_ms")
    timed = f"; timed then: {latency} ms" if latency else ""
    print(f"saved int8: {saved.summary()}; guard {saved.record.get('guard')}{timed}")


def _output_strides(args: argparse.Namespace, reference_run: object, atrous_model: object) -> None:
    """Output stride 8 against 16 with the same ResNet-50 weights (fast fp32, compiled)."""
    import statistics

    import torch

    from atrous.infer.bench import (
        count_effective_conv_flops,
        count_flops,
        fresh_process_peak_mb,
        make_variant,
        run_variants,
    )

    print("\noutput stride 8 vs 16 (same ResNet-50 weights, fast fp32 compile, batch 1):")
    print("| output stride | median s | min s | peak RSS MB (fwd +) | GMACs | effective GMACs |")
    print("|---|---|---|---|---|---|")
    x = torch.randn(1, 3, *args.size)
    strides = [make_variant(k, reference_run, atrous_model, args.size) for k in ("os8", "os16")]
    for variant in strides:
        variant.flops_per_image = count_flops(variant.run, x)
        variant.effective_flops_per_image = count_effective_conv_flops(variant.flops_model, x)
    run_variants(strides, x, runs=args.runs, warmup=args.warmup, reference=strides[0].name)
    for variant in strides:
        before, peak_mb = (
            fresh_process_peak_mb(variant.key, args.size, 1) if args.memory else (0, 0)
        )
        print(
            f"| {variant.key[2:]} | {statistics.median(variant.times):.3f} | "
            f"{min(variant.times):.3f} | {peak_mb:.0f} (+{peak_mb - before:.0f}) | "
            f"{variant.flops_per_image / 2e9:.1f} | {variant.effective_flops_per_image / 2e9:.1f} |"
        )
