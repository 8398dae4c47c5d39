"""``atrous bench``: atrous's fast CPU path against torchvision's deeplabv3_resnet50."""

from __future__ import annotations

import argparse

NAME = "bench"


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected integers like 1,4, got {text!r}") from error


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="benchmark the fast CPU path against torchvision's deeplabv3_resnet50",
        description="Side by side in one run, same weights in both: torchvision's "
        "deeplabv3_resnet50 in eager mode and atrous's DeepLabv3-ResNet50 (output stride 8) "
        "through atrous.infer.fast. Reports median latency, images/s, peak RSS, achieved "
        "GFLOP/s against the measured fp32 matmul GFLOP/s, and agreement with torchvision.",
    )
    p.add_argument("--size", type=int, default=512, help="square input side")
    p.add_argument("--batch", type=_ints, default=[1, 4], help="batch sizes, e.g. 1,4")
    p.add_argument("--runs", type=int, default=5, help="timed repetitions per variant")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument(
        "--variants",
        default="fp32-eager,fp32,bf16",
        help="atrous variants after torchvision: fp32-eager, fp32 (compile), jit, "
        "bf16-eager, bf16 (compile), int8 (ORT static)",
    )
    p.add_argument("--int8", action="store_true", help="add the int8 ONNX Runtime variant")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip peak RSS")
    p.add_argument(
        "--output-strides", action="store_true", help="also compare output stride 8 vs 16"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import platform
    import statistics

    import torch

    from atrous.infer.bench import (
        build_variants,
        count_flops,
        format_table,
        fresh_process_peak_mb,
        make_variant,
        matmul_gflops,
        matmul_variant,
        run_variants,
    )

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, cpu capability "
        f"{torch.backends.cpu.get_cpu_capability()}"
    )
    peak = matmul_gflops()
    print(f"fp32 matmul (2048^3 torch.mm, best of 5, at start): {peak:.0f} GFLOP/s")
    keys = ["torchvision", *[k.strip() for k in args.variants.split(",") if k.strip()]]
    if args.int8 and "int8" not in keys:
        keys.append("int8")
    variants, atrous_model = build_variants(keys, size=args.size)
    gflop = variants[0].flops_per_image / 1e9
    effective = variants[0].effective_flops_per_image / 1e9
    print(
        f"deeplabv3_resnet50 OS8 at {args.size}x{args.size}: {gflop:.0f} GFLOP per image "
        f"nominal, {effective:.0f} GFLOP without multiply-adds against zero padding"
    )
    for batch in args.batch:
        for variant in variants:
            variant.times.clear()
        x = torch.randn(batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
        probe = matmul_variant()
        run_variants(
            [*variants, probe], x, runs=args.runs, warmup=args.warmup, reference=variants[0].name
        )
        if args.memory:
            for key, variant in zip(keys, variants):
                before, variant.peak_mb = fresh_process_peak_mb(key, args.size, batch)
                variant.forward_mb = variant.peak_mb - before
        table = format_table(
            [*variants, probe], batch=batch, reference=variants[0].name, peak_gflops=peak
        )
        print(table)
    if args.output_strides:
        print("\noutput stride 8 vs 16 (same ResNet-50 weights, fast fp32 compile, batch 1):")
        print(
            "| output stride | median s | min s | peak RSS MB (fwd +) | GMACs | effective GMACs |"
        )
        print("|---|---|---|---|---|---|")
        x = torch.randn(1, 3, args.size, args.size)
        strides = [
            make_variant(k, variants[0].run, atrous_model, args.size) for k in ("os8", "os16")
        ]
        from atrous.infer.bench import count_effective_conv_flops

        for variant in strides:
            variant.flops_per_image = count_flops(variant.run, x)
            variant.effective_flops_per_image = count_effective_conv_flops(variant.run, x)
        run_variants(strides, x, runs=args.runs, warmup=args.warmup, reference=strides[0].name)
        for key, variant in zip(("os8", "os16"), strides):
            before, peak_mb = fresh_process_peak_mb(key, args.size, 1) if args.memory else (0, 0)
            print(
                f"| {key[2:]} | {statistics.median(variant.times):.3f} | {min(variant.times):.3f} | "
                f"{peak_mb:.0f} (+{peak_mb - before:.0f}) | {variant.flops_per_image / 2e9:.1f} | "
                f"{variant.effective_flops_per_image / 2e9:.1f} |"
            )
    return 0
