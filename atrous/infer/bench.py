"""Side-by-side CPU benchmark: torchvision's deeplabv3_resnet50 (eager) against atrous's
DeepLabv3-ResNet50 (same weights, via ``from_torchvision``) run through the fast path.

Noise control on a shared machine: every timed repetition runs all variants back to back
(interleaved), so load from other processes hits them alike; medians and minima are both
reported. Peak memory is measured per variant in a fresh process (``VmHWM`` from
/proc/self/status, reset through ``/proc/self/clear_refs`` just before the forward): in
one long-lived process the allocator keeps freed pages, so later variants would inherit
the earlier ones' peak.
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

from atrous.infer.logits import model_logits

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


def matmul_variant(size: int = 2048) -> Variant:
    """A fp32 ``torch.mm`` timed among the model variants, so the machine's peak is
    measured under the same (shared) load as the models it is compared with."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)

    def run(_x: torch.Tensor) -> torch.Tensor:
        return torch.mm(a, b)

    return Variant("fp32 matmul 2048^3", run, flops_per_image=2 * size**3)


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
    effective_flops_per_image: int = 0
    times: list[float] = field(default_factory=list)
    peak_mb: float = 0.0
    forward_mb: float = 0.0
    max_diff: float = 0.0
    agreement: float = 1.0
    # The model whose FLOPs this variant does, when not the reference's (output stride 16
    # does 3.4x fewer than 8 with the same weights).
    flops_model: nn.Module | None = None


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
            if variant.name.startswith("fp32 matmul"):
                continue
            outputs[variant.name] = model_logits(variant.run(x)).float()
        for _ in range(runs):
            for variant in variants:
                start = time.perf_counter()
                variant.run(x)
                variant.times.append(time.perf_counter() - start)
    expected = outputs[reference]
    for variant in variants:
        if variant.name not in outputs:
            continue
        got = outputs[variant.name]
        variant.max_diff = float((got - expected).abs().max())
        variant.agreement = float((got.argmax(1) == expected.argmax(1)).float().mean())


def format_table(
    variants: Sequence[Variant], *, batch: int, reference: str, peak_gflops: float
) -> str:
    """Markdown table; a matmul probe among the variants replaces ``peak_gflops`` by its
    median GFLOP/s under the same load."""
    probe = [v for v in variants if v.name.startswith("fp32 matmul")]
    if probe:
        peak_gflops = probe[0].flops_per_image / statistics.median(probe[0].times) / 1e9
        variants = [v for v in variants if v not in probe]
    base = statistics.median(next(v for v in variants if v.name == reference).times)
    lines = [
        f"batch {batch} (fp32 matmul peak under the same load: {peak_gflops:.0f} GFLOP/s):",
        "| variant | median s | min s | ratio vs ref (median) | img/s | peak RSS MB (fwd +) "
        "| GFLOP/s nominal | GFLOP/s effective | % of matmul (effective) "
        "| max logit diff | argmax agree |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        median = statistics.median(v.times)
        gflops = v.flops_per_image * batch / median / 1e9
        effective = (v.effective_flops_per_image or v.flops_per_image) * batch / median / 1e9
        lines.append(
            f"| {v.name} | {median:.3f} | {min(v.times):.3f} | {median / base:.2f} | "
            f"{batch / median:.2f} | {v.peak_mb:.0f} (+{v.forward_mb:.0f}) | {gflops:.0f} | "
            f"{effective:.0f} | {100 * effective / peak_gflops:.0f}% | {v.max_diff:.2e} | "
            f"{100 * v.agreement:.3f}% |"
        )
    return "\n".join(lines)


VARIANT_NAMES = {
    "torchvision": "torchvision eager",
    "fp32-eager": "atrous fast fp32 (fold+CL, eager)",
    "fp32": "atrous fast fp32 (fold+CL, compile)",
    "jit": "atrous fast fp32 (fold+CL, jit freeze)",
    "bf16-eager": "atrous fast bf16 (eager)",
    "bf16": "atrous fast bf16 (compile)",
    "int8": "atrous int8 (ORT static)",
}


def make_models() -> tuple[nn.Module, nn.Module]:
    """torchvision's model (reference) and atrous's, holding the same weights."""
    from atrous.models.torchvision_weights import from_torchvision

    reference_model = calibrated_torchvision()
    state = copy.deepcopy(reference_model.state_dict())
    return reference_model, from_torchvision("deeplabv3_resnet50", state)


def make_variant(
    key: str, reference_model: nn.Module, atrous_model: nn.Module, size: int
) -> Variant:
    """One benchmark variant by key (see ``VARIANT_NAMES``)."""
    from atrous.infer.fast import prepare_for_cpu

    example = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    options = {
        "fp32-eager": {},
        "fp32": {"backend": "compile"},
        "jit": {"backend": "jit"},
        "bf16-eager": {"dtype": torch.bfloat16},
        "bf16": {"dtype": torch.bfloat16, "backend": "compile"},
    }
    if key == "torchvision":
        run: Runner = lambda t: reference_model(t)["out"]  # noqa: E731
    elif key in options:
        run = prepare_for_cpu(atrous_model, example=example, **options[key])
    elif key in ("os8", "os16"):
        from atrous.models import build_model

        model = build_model(
            "deeplabv3", num_classes=21, backbone="resnet50", output_stride=int(key[2:])
        )
        model.load_state_dict(atrous_model.state_dict())  # strides change no weight
        run = prepare_for_cpu(model.eval(), example=example, backend="compile")
        name = f"atrous fast fp32 compile, output stride {key[2:]}"
        return Variant(name, run, flops_model=model)
    elif key == "int8":
        from atrous.infer.quantize import quantize_int8

        # Noise like the timed input but other draws (seed 3 vs 1): agreement is held-out.
        # Four images: ORT's calibrator keeps every activation of every image in memory
        # (~1.5 GB per 512x512 image for ResNet-50 OS8) before it computes the ranges.
        generator = torch.Generator().manual_seed(3)
        calibration = [torch.randn(1, 3, size, size, generator=generator) for _ in range(4)]
        run = quantize_int8(atrous_model, calibration)  # percentile, classifier fp32
    else:
        raise ValueError(f"unknown variant {key!r}; known: {', '.join(VARIANT_NAMES)}")
    return Variant(VARIANT_NAMES[key], run)


_MEMORY_CHILD = r"""
import json, sys, torch
from atrous.infer.bench import make_models, make_variant, peak_rss_mb, peak_rss_reset, rss_mb
key, size, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
reference_model, atrous_model = make_models()
variant = make_variant(key, reference_model, atrous_model, size)
x = torch.randn(batch, 3, size, size)
with torch.inference_mode():
    variant.run(x)  # compiles where the variant compiles
    before = rss_mb()
    peak_rss_reset()
    variant.run(x)
print(json.dumps({"before": before, "peak": peak_rss_mb()}))
"""


def fresh_process_peak_mb(key: str, size: int, batch: int) -> tuple[float, float]:
    """(RSS before the forward, peak RSS during it) of one variant in a new process,
    where the allocator has not yet kept pages from anything else."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, key, str(size), str(batch)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["before"], result["peak"]


def build_variants(keys: Sequence[str], *, size: int) -> tuple[list[Variant], nn.Module]:
    """torchvision eager (first, the reference) and atrous's variants, same weights."""
    reference_model, atrous_model = make_models()
    variants = [make_variant(key, reference_model, atrous_model, size) for key in keys]
    x = torch.randn(1, 3, size, size)
    flops = count_flops(variants[0].run, x)
    effective = count_effective_conv_flops(atrous_model, x)
    assign_flops(variants, x, flops=flops, effective=effective)
    return variants, atrous_model


def assign_flops(
    variants: Sequence[Variant], x: torch.Tensor, *, flops: int, effective: int
) -> None:
    """Give each variant the reference's FLOPs, or its own ``flops_model``'s when it has one."""
    for variant in variants:
        own = variant.flops_model
        variant.flops_per_image = flops if own is None else count_flops(own, x)
        variant.effective_flops_per_image = (
            effective if own is None else count_effective_conv_flops(own, x)
        )


def _valid_taps(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """(output position, kernel tap) pairs along one axis whose input lies inside the
    image, i.e. that do not multiply zero padding."""
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    return sum(
        1
        for o in range(out)
        for t in range(kernel)
        if 0 <= o * stride - padding + t * dilation < size
    )


def count_effective_conv_flops(model: nn.Module, x: torch.Tensor) -> int:
    """Convolution FLOPs without the multiply-adds against zero padding.

    Large dilation rates on small maps (ASPP's 12/24/36 on a 64x64 map at output stride
    8) put many taps into the padding; oneDNN's kernels skip those, so dividing the
    nominal FLOP count by the time overstates the work done. This count is the honest
    numerator for "% of matmul peak".
    """
    total = 0

    def hook(module: nn.Conv2d, inputs: tuple, _output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module.padding, str):
            raise ValueError(f"{module}: string padding is not supported here")
        batch, _, height, width = inputs[0].shape
        taps_h = _valid_taps(
            height, module.kernel_size[0], module.stride[0], module.padding[0], module.dilation[0]
        )
        taps_w = _valid_taps(
            width, module.kernel_size[1], module.stride[1], module.padding[1], module.dilation[1]
        )
        per_position = module.in_channels // module.groups * module.out_channels
        total += 2 * batch * per_position * taps_h * taps_w

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return total
