"""Where does the time go? torch.profiler over torchvision's deeplabv3_resnet50 (eager,
NCHW) and the atrous fast path (fp32 and bf16) at one input size.

    .venv/bin/python benchmarks/infer_profile.py --size 512 --rows 12
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile
from torchvision.models.segmentation import deeplabv3_resnet50

from atrous.infer.fast import prepare_for_cpu
from atrous.models.torchvision_weights import from_torchvision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--variants", default="torchvision,fp32,bf16")
    args = parser.parse_args()
    torch.manual_seed(0)
    reference = deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False).eval()
    atrous_model = from_torchvision("deeplabv3_resnet50", reference.state_dict())
    x = torch.randn(1, 3, args.size, args.size)
    variants = {
        "torchvision": lambda: lambda t: reference(t)["out"],
        "fp32": lambda: prepare_for_cpu(atrous_model),
        "bf16": lambda: prepare_for_cpu(atrous_model, dtype=torch.bfloat16),
    }
    for name in args.variants.split(","):
        run = variants[name]()
        with torch.inference_mode():
            run(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                run(x)
        print(f"\n=== {name} ({args.size}x{args.size}, batch 1) ===")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
