"""Side-by-side CPU benchmark: torchvision's deeplabv3_resnet50 (eager) against atrous's
DeepLabv3-ResNet50 (same weights, via ``from_torchvision``) run through the fast path and
through the runtimes people deploy with (ONNX Runtime fp32, OpenVINO fp32, int8 from
ONNX Runtime static quantisation and from OpenVINO's NNCF), or a shipped/saved model
against its own PyTorch eager forward.

Latency is reported as a fraction of the reference's (torchvision eager, or PyTorch
eager for a saved model) from one interleaved run; argmax agreement of every variant is
measured against the fp32 PyTorch reference on held-out inputs (real images when given,
never the int8 calibration ones). A variant whose package is not installed is skipped
with a message naming the package and the extra that installs it.

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
import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atrous.infer.logits import model_logits
from atrous.infer.packages import MissingPackageError

LOGGER = logging.getLogger(__name__)

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
    # Worst single held-out input's agreement (a mean can hide one image gone wrong).
    min_agreement: float = 1.0
    # The model whose FLOPs this variant does, when not the reference's (output stride 16
    # does 3.4x fewer than 8 with the same weights).
    flops_model: nn.Module | None = None
    key: str = ""


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


def time_variants(variants: Sequence[Variant], x: torch.Tensor, *, runs: int, warmup: int) -> None:
    """Warm up each variant, then time all of them interleaved: every repetition runs
    each variant once, so load from other processes hits them alike."""
    with torch.inference_mode():
        for variant in variants:
            for _ in range(warmup):
                variant.run(x)
            gc.collect()
        for _ in range(runs):
            for variant in variants:
                start = time.perf_counter()
                variant.run(x)
                variant.times.append(time.perf_counter() - start)


def measure_agreement(
    variants: Sequence[Variant], inputs: Sequence[torch.Tensor], *, reference: str
) -> None:
    """Per variant, argmax agreement with the reference (mean and worst over ``inputs``)
    and the largest absolute logit difference. Probes (the matmul) are left alone."""
    if not inputs:
        raise ValueError("measure_agreement needs at least one input")
    by_name = {v.name: v for v in variants}
    if reference not in by_name:
        raise ValueError(f"reference {reference!r} is not among the variants {list(by_name)}")
    with torch.inference_mode():
        expected = [model_logits(by_name[reference].run(x)).float() for x in inputs]
        for variant in variants:
            if variant.name.startswith("fp32 matmul"):
                continue
            agreements, differences = [], []
            for x, want in zip(inputs, expected):
                got = model_logits(variant.run(x)).float()
                if got.shape != want.shape:
                    raise ValueError(
                        f"{variant.name}: logits of shape {tuple(got.shape)} for input "
                        f"{tuple(x.shape)}, the reference gives {tuple(want.shape)}"
                    )
                differences.append(float((got - want).abs().max()))
                agreements.append(float((got.argmax(1) == want.argmax(1)).float().mean()))
            variant.max_diff = max(differences)
            variant.agreement = sum(agreements) / len(agreements)
            variant.min_agreement = min(agreements)


def run_variants(
    variants: Sequence[Variant],
    x: torch.Tensor,
    *,
    runs: int,
    warmup: int,
    reference: str,
    held_out: Sequence[torch.Tensor] | None = None,
) -> None:
    """Agreement with the reference on ``held_out`` (on ``x`` when None), then timing."""
    measure_agreement(variants, held_out if held_out is not None else [x], reference=reference)
    time_variants(variants, x, runs=runs, warmup=warmup)


def format_table(
    variants: Sequence[Variant],
    *,
    batch: int,
    reference: str,
    peak_gflops: float,
    skipped: Sequence[str] = (),
) -> str:
    """Markdown table; a matmul probe among the variants replaces ``peak_gflops`` by its
    median GFLOP/s under the same load. ``skipped`` (the messages of variants that could
    not be built) is listed under the table, so a missing row is never silent."""
    probe = [v for v in variants if v.name.startswith("fp32 matmul")]
    if probe:
        peak_gflops = probe[0].flops_per_image / statistics.median(probe[0].times) / 1e9
        variants = [v for v in variants if v not in probe]
    base = statistics.median(next(v for v in variants if v.name == reference).times)
    lines = [
        f"batch {batch} (fp32 matmul peak under the same load: {peak_gflops:.0f} GFLOP/s):",
        "| variant | median s | min s | ratio vs ref (median) | img/s | peak RSS MB (fwd +) "
        "| GFLOP/s nominal | GFLOP/s effective | % of matmul (effective) "
        "| max logit diff | argmax agree (mean / worst input) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        median = statistics.median(v.times)
        gflops = v.flops_per_image * batch / median / 1e9
        effective = (v.effective_flops_per_image or v.flops_per_image) * batch / median / 1e9
        memory = f"{v.peak_mb:.0f} (+{v.forward_mb:.0f})" if v.peak_mb else "n/m"
        lines.append(
            f"| {v.name} | {median:.3f} | {min(v.times):.3f} | {median / base:.2f} | "
            f"{batch / median:.2f} | {memory} | {gflops:.0f} | "
            f"{effective:.0f} | {100 * effective / peak_gflops:.0f}% | {v.max_diff:.2e} | "
            f"{100 * v.agreement:.3f}% / {100 * v.min_agreement:.3f}% |"
        )
    lines += [f"skipped: {message}" for message in skipped]
    return "\n".join(lines)


VARIANT_NAMES = {
    "torchvision": "torchvision eager",
    "eager": "PyTorch eager fp32 (model as loaded)",
    "fp32-eager": "atrous fast fp32 (fold+CL, eager)",
    "fp32": "atrous fast fp32 (fold+CL, compile)",
    "jit": "atrous fast fp32 (fold+CL, jit freeze)",
    "bf16-eager": "atrous fast bf16 (eager)",
    "bf16": "atrous fast bf16 (compile)",
    "int8": "atrous int8 (PT2E, Inductor)",
    "ort-int8": "ONNX Runtime int8 (static QDQ)",
    "ort-fp32": "ONNX Runtime fp32",
    "openvino-fp32": "OpenVINO fp32",
    "openvino-int8": "OpenVINO NNCF int8",
}

# The packages a variant needs beyond torch, and the extra of pyproject.toml holding them.
REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "int8": (("torchao",), "int8"),
    "ort-int8": (("onnx", "onnxruntime"), "onnx"),
    "ort-fp32": (("onnx", "onnxruntime"), "onnx"),
    "openvino-fp32": (("openvino",), "openvino"),
    "openvino-int8": (("openvino", "nncf"), "openvino"),
}

Size = tuple[int, int]


def check_packages(key: str) -> None:
    """Raise ``MissingPackageError`` naming what to install when ``key``'s runtime
    cannot be imported."""
    from atrous.infer.packages import require_packages

    packages, extra = REQUIREMENTS.get(key, ((), ""))
    require_packages(packages, extra=extra, purpose=f"{key} ({VARIANT_NAMES[key]})")


def parse_size(text: str | int | Sequence[int]) -> Size:
    """``512`` or ``"512"`` (square) or ``"360x480"`` (height x width) -> ``(height, width)``."""
    if isinstance(text, int):
        values = [text]
    elif isinstance(text, str):
        try:
            values = [int(v) for v in text.lower().split("x")]
        except ValueError:
            values = []
    else:
        values = [int(v) for v in text]
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise ValueError(
            f"size must be N or HxW with positive integers (512, 360x480), got {text!r}"
        )
    return values[0], values[1]


def reference_key(model: str | None) -> str:
    """The reference variant: torchvision's model for the built-in comparison, the loaded
    model's own PyTorch eager forward for a shipped or saved one."""
    return "torchvision" if model is None else "eager"


def make_models(model: str | None = None, *, num_classes: int = 21) -> tuple[nn.Module, nn.Module]:
    """The reference model and the model the variants are built from, holding the same
    weights: torchvision's deeplabv3_resnet50 and atrous's copy of it (``model=None``),
    or twice the shipped/saved model named by ``model`` (see ``atrous.infer.loading``)."""
    if model is not None:
        from atrous.infer.loading import load_model

        loaded = load_model(model, num_classes=num_classes).eval()
        return loaded, loaded
    from atrous.models.torchvision_weights import from_torchvision

    reference_model = calibrated_torchvision()
    state = copy.deepcopy(reference_model.state_dict())
    return reference_model, from_torchvision("deeplabv3_resnet50", state)


def noise_inputs(count: int, size: Size, *, seed: int) -> list[torch.Tensor]:
    """``count`` N(0,1) images ``1x3xHxW``; distinct seeds keep calibration and held-out
    inputs apart."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 3, *size, generator=generator) for _ in range(count)]


def image_inputs(folder: str | Path, count: int, size: Size) -> list[torch.Tensor]:
    """``count`` images spread over the sorted image files of ``folder`` (different
    sequences of a video dataset), normalised as for prediction and resized to ``size``.

    Raises:
        FileNotFoundError: ``folder`` is not a folder or holds no image.
        ValueError: ``count`` < 1.
    """
    import torch.nn.functional as F

    from atrous.infer.io import IMAGE_SUFFIXES, load_image
    from atrous.infer.predictor import normalize

    if count < 1:
        raise ValueError(f"image count must be >= 1, got {count}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no image files in {folder}")
    step = max(1, len(files) // count)
    inputs = []
    for path in files[::step][:count]:
        x = normalize(load_image(path))
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        inputs.append(x)
    return inputs


# prepare_for_cpu options of the variants that run atrous's own fast CPU path.
_FAST_OPTIONS: dict[str, dict[str, Any]] = {
    "fp32-eager": {},
    "fp32": {"backend": "compile"},
    "jit": {"backend": "jit"},
    "bf16-eager": {"dtype": torch.bfloat16},
    "bf16": {"dtype": torch.bfloat16, "backend": "compile"},
}

# Variants that run an exported or converted copy in another runtime.
_EXPORTED_KEYS = ("int8", "ort-int8", "ort-fp32", "openvino-fp32", "openvino-int8")


def _output_stride_variant(key: str, atrous_model: nn.Module, example: torch.Tensor) -> Variant:
    """The ``os8``/``os16`` variant: DeepLabV3-ResNet50 rebuilt at that output stride.

    The output stride only changes strides and dilations, never a weight, so the
    model's state dict loads unchanged into the rebuilt one.
    """
    from atrous.infer.fast import prepare_for_cpu
    from atrous.models import build_model

    model = build_model(
        "deeplabv3", num_classes=21, backbone="resnet50", output_stride=int(key[2:])
    )
    model.load_state_dict(atrous_model.state_dict())  # strides change no weight
    run = prepare_for_cpu(model.eval(), example=example, backend="compile")
    name = f"atrous fast fp32 compile, output stride {key[2:]}"
    return Variant(name, run, flops_model=model, key=key)


def _exported_runner(
    key: str,
    atrous_model: nn.Module,
    calibration: Sequence[torch.Tensor],
    threads: int | None,
) -> Runner:
    """The runner of an ONNX Runtime or OpenVINO variant (one of ``_EXPORTED_KEYS``).

    The first calibration input is the export/conversion example; the int8 variants
    set their ranges from all of them.
    """
    if key == "int8":
        from atrous.infer.int8 import Int8Model

        return Int8Model(atrous_model, calibration=calibration)
    if key == "ort-int8":
        from atrous.infer.export import OnnxRuntimeModel
        from atrous.infer.quantize import quantize_int8

        quantized = quantize_int8(atrous_model, calibration)  # percentile, classifier fp32
        return OnnxRuntimeModel(quantized.path, threads=threads) if threads else quantized
    if key == "ort-fp32":
        from atrous.infer.export import OnnxRuntimeModel, export_onnx

        folder = Path(tempfile.mkdtemp(prefix="atrous-bench-"))
        path = export_onnx(atrous_model, folder / "fp32.onnx", example=calibration[0])
        return OnnxRuntimeModel(path, threads=threads)
    from atrous.infer.openvino import OpenVinoModel, convert_to_openvino, quantize_nncf_int8

    if key == "openvino-fp32":
        return OpenVinoModel(convert_to_openvino(atrous_model, calibration[0]), threads=threads)
    return OpenVinoModel(quantize_nncf_int8(atrous_model, calibration), threads=threads)


def make_variant(
    key: str,
    reference_model: nn.Module,
    atrous_model: nn.Module,
    size: int | Size,
    *,
    calibration: Sequence[torch.Tensor] | None = None,
    threads: int | None = None,
) -> Variant:
    """One benchmark variant by key (see ``VARIANT_NAMES``).

    Args:
        key: the variant.
        reference_model: torchvision's model, or the loaded model (keys ``torchvision``
            and ``eager``).
        atrous_model: the model every other variant is built from (same weights).
        size: the input size, for the default calibration.
        calibration: normalised inputs that set the int8 ranges (both int8 variants get
            the same ones); the first is also the export/conversion example. Default: 4
            N(0,1) images (seed 3; the held-out noise uses other seeds).
        threads: threads for ONNX Runtime and OpenVINO (their defaults ignore CPU
            affinity and torch's setting); None leaves their defaults.

    Raises:
        MissingPackageError: the variant's runtime is not installed.
    """
    from atrous.infer.fast import prepare_for_cpu

    check_packages(key)
    size = parse_size(size)
    if calibration is None:
        # Four images: ORT's calibrator keeps every activation of every image in memory
        # (~1.5 GB per 512x512 image for ResNet-50 OS8) before it computes the ranges.
        calibration = noise_inputs(4, size, seed=3)
    example = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    if key == "torchvision":
        run: Runner = lambda t: reference_model(t)["out"]  # noqa: E731
    elif key == "eager":
        run = lambda t: model_logits(reference_model(t))  # noqa: E731
    elif key in _FAST_OPTIONS:
        run = prepare_for_cpu(atrous_model, example=example, **_FAST_OPTIONS[key])
    elif key in ("os8", "os16"):
        return _output_stride_variant(key, atrous_model, example)
    elif key in _EXPORTED_KEYS:
        run = _exported_runner(key, atrous_model, calibration, threads)
    else:
        raise ValueError(f"unknown variant {key!r}; known: {', '.join(VARIANT_NAMES)}")
    return Variant(VARIANT_NAMES[key], run, key=key)


_MEMORY_CHILD = r"""
import json, sys, torch
from atrous.infer.bench import make_models, make_variant, peak_rss_mb, peak_rss_reset, rss_mb
key, height, width, batch, model, threads = sys.argv[1:7]
size, threads = (int(height), int(width)), int(threads) or None
if threads:
    torch.set_num_threads(threads)
reference_model, atrous_model = make_models(model or None)
variant = make_variant(key, reference_model, atrous_model, size, threads=threads)
x = torch.randn(int(batch), 3, *size)
with torch.inference_mode():
    variant.run(x)  # compiles where the variant compiles
    before = rss_mb()
    peak_rss_reset()
    variant.run(x)
print(json.dumps({"before": before, "peak": peak_rss_mb()}))
"""


def fresh_process_peak_mb(
    key: str, size: int | Size, batch: int, *, model: str | None = None, threads: int | None = None
) -> tuple[float, float]:
    """(RSS before the forward, peak RSS during it) of one variant in a new process,
    where the allocator has not yet kept pages from anything else. Int8 variants are
    calibrated on noise there (memory does not depend on the ranges)."""
    import json
    import subprocess
    import sys

    height, width = parse_size(size)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEMORY_CHILD,
            key,
            str(height),
            str(width),
            str(batch),
            model or "",
            str(threads or 0),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["before"], result["peak"]


def make_variants(
    keys: Sequence[str],
    reference_model: nn.Module,
    atrous_model: nn.Module,
    size: int | Size,
    *,
    calibration: Sequence[torch.Tensor] | None = None,
    threads: int | None = None,
) -> tuple[list[Variant], list[str]]:
    """The variants of ``keys`` (see ``make_variant``) that can be built, and one
    message per variant skipped because its runtime is not installed."""
    variants, skipped = [], []
    for key in keys:
        try:
            variants.append(
                make_variant(
                    key,
                    reference_model,
                    atrous_model,
                    size,
                    calibration=calibration,
                    threads=threads,
                )
            )
        except MissingPackageError as error:
            LOGGER.warning("skipped: %s", error)
            skipped.append(str(error))
    return variants, skipped


def build_variants(
    keys: Sequence[str],
    *,
    size: int | Size,
    model: str | None = None,
    calibration: Sequence[torch.Tensor] | None = None,
    threads: int | None = None,
) -> tuple[list[Variant], nn.Module, list[str]]:
    """The reference (``keys[0]``) and the other variants, all holding the same weights,
    with their FLOPs per image.

    Returns:
        The variants that could be built, the model they were built from, and one
        message per variant skipped because its runtime is not installed (the
        reference is never skipped: it needs torch only).
    """
    size = parse_size(size)
    reference_model, atrous_model = make_models(model)
    variants, skipped = make_variants(
        keys, reference_model, atrous_model, size, calibration=calibration, threads=threads
    )
    x = torch.randn(1, 3, *size)
    flops = count_flops(variants[0].run, x)
    try:
        effective = count_effective_conv_flops(atrous_model, x)
    except ValueError as error:  # a conv with string padding: no effective count
        LOGGER.warning("effective FLOPs not counted: %s", error)
        effective = 0
    assign_flops(variants, x, flops=flops, effective=effective)
    return variants, atrous_model, skipped


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
