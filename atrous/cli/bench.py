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
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip bf16")
    p.add_argument("--jit", action="store_true", help="also time the TorchScript-frozen path")
    p.add_argument("--int8", action="store_true", help="also time ONNX Runtime int8")
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
        matmul_gflops,
        peak_rss_mb,
        peak_rss_reset,
        run_variants,
    )

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, cpu capability "
        f"{torch.backends.cpu.get_cpu_capability()}"
    )
    peak = matmul_gflops()
    print(f"fp32 matmul (2048^3 torch.mm, best of 5): {peak:.0f} GFLOP/s")
    variants, atrous_model = build_variants(
        size=args.size, bf16=args.bf16, jit=args.jit, int8=args.int8
    )
    gflop = variants[0].flops_per_image / 1e9
    print(f"deeplabv3_resnet50 OS8 at {args.size}x{args.size}: {gflop:.0f} GFLOP per image")
    for batch in args.batch:
        for variant in variants:
            variant.times.clear()
        x = torch.randn(batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
        run_variants(variants, x, runs=args.runs, warmup=args.warmup, reference=variants[0].name)
        print(format_table(variants, batch=batch, reference=variants[0].name, peak_gflops=peak))
        after = peak_rss_mb()
        del after
    if args.output_strides:
        import time

        from atrous.infer.fast import prepare_for_cpu
        from atrous.models import build_model

        print("\noutput stride 8 vs 16 (same ResNet-50 weights, atrous fast fp32, batch 1):")
        print("| output stride | median s | min s | peak RSS MB | GMACs |")
        print("|---|---|---|---|---|")
        x = torch.randn(1, 3, args.size, args.size)
        state = atrous_model.state_dict()
        for stride in (8, 16):
            model = build_model(
                "deeplabv3", num_classes=21, backbone="resnet50", output_stride=stride
            )
            model.load_state_dict(state)
            fast = prepare_for_cpu(model.eval())
            macs = count_flops(fast, x) / 2e9
            times = []
            with torch.inference_mode():
                fast(x)
                peak_rss_reset()
                for _ in range(args.runs):
                    start = time.perf_counter()
                    fast(x)
                    times.append(time.perf_counter() - start)
            print(
                f"| {stride} | {statistics.median(times):.3f} | {min(times):.3f} | "
                f"{peak_rss_mb():.0f} | {macs:.1f} |"
            )
    return 0
