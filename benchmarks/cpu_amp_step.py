"""Seconds per training step on the CPU: float32 vs bfloat16 autocast, NCHW vs channels_last.

DeepLabV3+ ResNet-18 OS16 (the CamVid recipe's model), batch 8, 240x320, AdamW; the
mean of 4 steps after one warm-up step, all four variants side by side in one process.
This is what `train.cpu_amp` (bf16 autocast on CPUs with native bfloat16) and
`model.channels_last` buy the CPU CamVid recipe.

    python benchmarks/cpu_amp_step.py
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from atrous.models import build_model


def step_time(dtype: str, channels_last: bool, bs: int = 8, hw=(240, 320), n: int = 4) -> float:
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", num_classes=11, backbone="resnet18", output_stride=16)
    model.train()
    x, y = torch.randn(bs, 3, *hw), torch.randint(0, 11, (bs, *hw))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    times = []
    for _ in range(n + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            out = model(x)
            out = out["out"] if isinstance(out, dict) else out
            loss = F.cross_entropy(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / n


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"native bf16: {torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()}")  # fmt: skip
    base = None
    for dtype in ("fp32", "bf16"):
        for cl in (False, True):
            seconds = step_time(dtype, cl)
            base = base or seconds
            layout = "channels_last" if cl else "NCHW"
            print(f"{dtype} {layout:13s} {seconds:.3f} s/step  ({base / seconds:.2f}x fp32 NCHW)")
