"""The dilation claims on real streets, with an ImageNet-initialised backbone.

Arms (DeepLabV3+ on EfficientNet-Lite0 from the packaged ImageNet weights, everything
else fixed by ``configs/camvid_lite0_cpu.yaml`` and the shared overrides below):

    os32          output stride 32: no dilation anywhere
    os16          output stride 16, equal rates in the dilated stage (1, 2, 2, 2, 2)
    os16_hdc      output stride 16, HDC rates (1, 2, 5, 1, 2)
    os16_no_aspp  output stride 16, ASPP without its dilated branches (1x1 + image pooling)
    os8           output stride 8, equal rates (stage4 1,2,..; stage5 2,4,4,4,4)

Each arm trains for the same number of epochs on drives 0001TP + 0016E5 and is scored
on held-out drive 0006R0 (full 360x480 frames), with ``--seeds`` seeds. Runs that
already finished (their ``metrics.jsonl`` has the last epoch's val_miou) are read, not
rerun, so the script can be stopped and started again. Results: one JSON line per run
in ``<out>/results.jsonl`` and a Markdown table (mean, spread, latency) on stdout.

    python benchmarks/camvid_dilation_ablation.py --root ../shared/datasets/camvid \\
        --out runs/ablation --epochs 3 --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ARMS: dict[str, list[str]] = {
    "os32": ["model.options.output_stride=32"],
    "os16": ["model.options.output_stride=16"],
    "os16_hdc": ["model.options.output_stride=16", "model.options.dilation_schedule=hdc:1,2,5"],
    "os16_no_aspp": ["model.options.output_stride=16", "model.options.aspp_rates=[]"],
    "os8": ["model.options.output_stride=8"],
}
COMMON = [
    "model.options.head_channels=128",
    "schedule.max_minutes=null",
    "schedule.fit_to_budget=false",
    "data.num_workers=0",
    "train.checkpoint_every=100",
]


def _final_miou(run: Path, epochs: int) -> float | None:
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        return None
    for line in metrics.read_text().splitlines():
        row = json.loads(line)
        if row.get("epoch") == epochs and "val_miou" in row:
            return float(row["val_miou"])
    return None


def _latency_ms(run: Path, size: tuple[int, int], repeats: int = 10) -> float:
    """Batch-1 eager bf16 (or fp32) forward time of the run's model at ``size``."""
    import torch

    from atrous.engine.precision import cpu_has_native_bf16
    from atrous.models import load_pretrained

    model = load_pretrained(run / "best").eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, *size).to(memory_format=torch.channels_last)
    bf16 = cpu_has_native_bf16()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for _ in range(3):
            model(x)
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="CamVid folder")
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--config", default="configs/camvid_lite0_cpu.yaml")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--arms", default=",".join(ARMS))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = args.arms.split(",")
    rows = []
    for seed in seeds:
        for arm in arms:
            run = out / f"{arm}_seed{seed}"
            miou = _final_miou(run, args.epochs)
            seconds = None
            if miou is None:
                overrides = [
                    *COMMON,
                    *ARMS[arm],
                    f"schedule.epochs={args.epochs}",
                    f"eval.every={args.epochs}",
                    f"train.seed={seed}",
                    f"data.root={args.root}",
                ]
                command = [sys.executable, "-m", "atrous", "train", "--config", args.config]
                command += [arg for item in overrides for arg in ("--set", item)]
                command += ["--out", str(run), "--no-progress"]
                start = time.perf_counter()
                subprocess.run(command, check=True, env=os.environ.copy())
                seconds = time.perf_counter() - start
                miou = _final_miou(run, args.epochs)
            row = {
                "arm": arm,
                "seed": seed,
                "epochs": args.epochs,
                "val_miou": miou,
                "train_seconds": seconds,
            }
            rows.append(row)
            with (out / "results.jsonl").open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print("\n| arm | mIoU 0006R0 (mean) | runs | spread (max-min) | latency ms (b1 360x480) |")
    print("|---|---|---|---|---|")
    for arm in arms:
        values = [
            100 * r["val_miou"] for r in rows if r["arm"] == arm and r["val_miou"] is not None
        ]
        if not values:
            continue
        latency = _latency_ms(out / f"{arm}_seed{seeds[0]}", (360, 480))
        print(
            f"| {arm} | {statistics.mean(values):.2f} | "
            f"{', '.join(f'{v:.2f}' for v in values)} | {max(values) - min(values):.2f} | "
            f"{latency:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
