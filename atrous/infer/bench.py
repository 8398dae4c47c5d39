"""Side-by-side CPU benchmark: torchvision's deeplabv3_resnet50 (eager) against atrous's
DeepLabv3-ResNet50 (same weights, via ``from_torchvision``) run through the fast path.

Noise control on a shared machine: every timed repetition runs all variants back to back
(interleaved), so load from other processes hits them alike; medians and minima are both
reported. Peak memory is the process's peak resident set (``VmHWM``), reset before each
variant through ``/proc/self/clear_refs`` (Linux), so each figure covers one variant's
forward on top of what is already loaded.
"""

from __future__ import annotations

import copy
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from atrous.infer.predictor import model_logits

Runner = Callable[[torch.Tensor], torch.Tensor]


def peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS counter of this process; False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (VmHWM)."""
    return _status_kb("VmHWM") / 1024


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def matmul_gflops(size: int = 2048, runs: int = 5) -> float:
    """Best fp32 ``torch.mm`` throughput over ``runs``: the practical fp32 peak."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def count_flops(model: Runner, x: torch.Tensor) -> int:
    """FLOPs of one forward (convolutions and matmuls, 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    return int(counter.get_total_flops())


@dataclass
class Variant:
    name: str
    run: Runner
    flops_per_image: int = 0
    times: list[float] = field(default_factory=list)
    peak_mb: float = 0.0
    max_diff: float = 0.0
    agreement: float = 1.0


def calibrated_torchvision(seed: int = 0) -> nn.Module:
    """torchvision's deeplabv3_resnet50 with random weights and BatchNorm statistics
    re-estimated on random images, so activations have realistic scale (no download)."""
    from torchvision.models.segmentation import deeplabv3_resnet50

    torch.manual_seed(seed)
    model = deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 3, 128, 128))
    return model.eval()


def run_variants(
    variants: Sequence[Variant],
    x: torch.Tensor,
    *,
    runs: int,
    warmup: int,
    reference: str,
) -> None:
    """Warm up, measure peak memory, then time all variants interleaved."""
    outputs: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for variant in variants:
            for _ in range(warmup):
                variant.run(x)
            gc.collect()
            peak_rss_reset()
            outputs[variant.name] = model_logits(variant.run(x)).float()
            variant.peak_mb = peak_rss_mb()
        for _ in range(runs):
            for variant in variants:
                start = time.perf_counter()
                variant.run(x)
                variant.times.append(time.perf_counter() - start)
    expected = outputs[reference]
    for variant in variants:
        got = outputs[variant.name]
        variant.max_diff = float((got - expected).abs().max())
        variant.agreement = float((got.argmax(1) == expected.argmax(1)).float().mean())


def format_table(
    variants: Sequence[Variant], *, batch: int, reference: str, peak_gflops: float
) -> str:
    base = statistics.median(next(v for v in variants if v.name == reference).times)
    lines = [
        f"batch {batch}:",
        "| variant | median s | min s | ratio vs ref (median) | img/s | peak RSS MB "
        "| GFLOP/s | % of matmul | max logit diff | argmax agree |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        median = statistics.median(v.times)
        gflops = v.flops_per_image * batch / median / 1e9
        lines.append(
            f"| {v.name} | {median:.3f} | {min(v.times):.3f} | {median / base:.2f} | "
            f"{batch / median:.2f} | {v.peak_mb:.0f} | {gflops:.0f} | "
            f"{100 * gflops / peak_gflops:.0f}% | {v.max_diff:.2e} | {100 * v.agreement:.3f}% |"
        )
    return "\n".join(lines)


def build_variants(
    *, size: int, bf16: bool, jit: bool, int8: bool, int8_calibration: int = 4
) -> tuple[list[Variant], nn.Module]:
    """torchvision eager (reference) and atrous's fast-path variants with the same weights."""
    from atrous.infer.fast import prepare_for_cpu
    from atrous.models.torchvision_weights import from_torchvision

    reference_model = calibrated_torchvision()
    atrous_model = from_torchvision(
        "deeplabv3_resnet50", copy.deepcopy(reference_model.state_dict())
    )
    example = torch.randn(1, 3, 64, 64)
    variants = [
        Variant("torchvision eager", lambda t: reference_model(t)["out"]),
        Variant("atrous fast fp32", prepare_for_cpu(atrous_model, example=example)),
    ]
    if jit:
        fast_jit = prepare_for_cpu(atrous_model, example=example, backend="jit")
        variants.append(Variant("atrous fast fp32 jit", fast_jit))
    if bf16:
        fast_bf16 = prepare_for_cpu(atrous_model, example=example, dtype=torch.bfloat16)
        variants.append(Variant("atrous fast bf16 (AMX)", fast_bf16))
    if int8:
        from atrous.infer.quantize import quantize_int8

        calibration = [torch.randn(1, 3, size, size) for _ in range(int8_calibration)]
        variants.append(Variant("atrous int8 (ORT)", quantize_int8(atrous_model, calibration)))
    flops = count_flops(variants[1].run, torch.randn(1, 3, size, size))
    for variant in variants:
        variant.flops_per_image = flops
    return variants, atrous_model
