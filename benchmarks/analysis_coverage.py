"""Time exact coverage maps of ResNet-50-sized dilated networks at 257x257 and print the
per-stage gridding tables of DeepLabv3-ResNet-50 at output stride 8 (plain, multi-grid,
HDC).

    .venv/bin/python benchmarks/analysis_coverage.py [--repeats 3] [--skip-full]

The collapsed (1-channel) linearisation is timed against the full-channel reference on
the same model in the same process, and their counts are compared.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=257)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()

    import torchvision

    from atrous.analysis import coverage_map
    from atrous.analysis.model_report import stage_report
    from atrous.models import build_model

    size = (args.size, args.size)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, input {size}")
    networks = {
        "torchvision deeplabv3_resnet50": torchvision.models.segmentation.deeplabv3_resnet50(
            weights=None, weights_backbone=None, num_classes=21, aux_loss=False
        ),
        "atrous deeplabv3 resnet50 OS8": build_model(
            "deeplabv3", num_classes=21, backbone="resnet50", output_stride=8
        ),
    }
    for name, model in networks.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        seconds, fast = timed(
            lambda m=model: coverage_map(m, size, method="collapsed"), args.repeats
        )
        line = (
            f"{name} ({params:.1f}M params): collapsed {seconds:.2f} s (median of {args.repeats})"
        )
        if not args.skip_full:
            full_seconds, full = timed(lambda m=model: coverage_map(m, size, method="full"), 1)
            same = np.array_equal(fast.counts == 0, full.counts == 0)
            rel = float(np.max(np.abs(fast.counts - full.counts)) / np.max(full.counts))
            line += (
                f"; full-channel {full_seconds:.2f} s; same holes {same}; max rel diff {rel:.1e}"
            )
        print(line)

    variants = [
        (f"deeplabv3 resnet50 OS8, dilation_schedule={schedule or 'plain'}", "deeplabv3", schedule)
        for schedule in (None, "multigrid", "hdc")
    ]
    variants.append(("drn_c_26 (degridding layers 7-8)", "drn_c_26", None))
    for title, name, schedule in variants:
        options = {"backbone": "resnet50", "output_stride": 8} if name == "deeplabv3" else {}
        if schedule:
            options["dilation_schedule"] = schedule
        model = build_model(name, num_classes=21, **options)
        seconds, rows = timed(lambda m=model: stage_report(m, size), 1)
        print(f"\n### {title} (report {seconds:.2f} s)\n")
        print(
            "| stage | stride | dilations | RF theory | RF measured | holes@image | grid | "
            "holes@grid | period | base | holes@base |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for row in rows:
            box = row.measured_box
            period = "-" if row.grid_period is None else "x".join(map(str, row.grid_period))
            grid = "-" if row.grid_hole_fraction is None else f"{row.grid_hole_fraction:.1%}"
            base = "-" if row.base_hole_fraction is None else f"{row.base_hole_fraction:.1%}"
            print(
                f"| {row.name} | {row.stride} | {','.join(map(str, row.dilations)) or '-'} | "
                f"{row.theoretical_rf or '-'} | {box[1] - box[0]}x{box[3] - box[2]} | "
                f"{row.image_hole_fraction:.1%} | {row.source or '-'} | {grid} | {period} | "
                f"{row.base or '-'} | {base} |"
            )


if __name__ == "__main__":
    main()
