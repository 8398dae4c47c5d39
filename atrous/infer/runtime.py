"""How a model runs: a runtime and a precision, or ``auto``.

``atrous predict``, ``eval``, ``serve`` and ``bench`` take ``--runtime
{torch,onnxruntime,openvino}`` and ``--precision {fp32,bf16,int8,auto}``; this module
turns the pair into a runner (``runner(x) -> logits``) and says which path was taken and
why (``RuntimeChoice.reason``), so no precision is ever lowered silently.

``auto`` picks, in this order (figures in BENCHMARKS.md, "Deployment"):

1. **int8** when the model has a saved quantisation whose accuracy passed the guard
   (``atrous quantize``; the reason quotes its agreement and mIoU change);
2. **bf16** when the CPU runs bf16 natively (AMX-BF16 or AVX512-BF16; elsewhere bf16 is
   emulated and slower than fp32);
3. **fp32** otherwise.

Compiled paths (``torch.compile``, atrous int8) pay several seconds per new input shape;
``auto`` avoids them when few images will be run or when sizes vary per request (the
service), where eager fp32/bf16 finish first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

LOGGER = logging.getLogger(__name__)

__all__ = [
    "PRECISIONS",
    "RUNTIMES",
    "RuntimeChoice",
    "RuntimeUnavailableError",
    "build_runner",
    "choose",
    "cpu_name",
    "native_bf16",
]

RUNTIMES = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8", "auto")
# Compiling for one shape takes ~6 s (camvid, 360x480, 2 cores) and saves ~50 ms per image
# against eager: below this many images eager finishes first.
COMPILE_PAYS_AFTER = 100
# Set to 0 or 1 to override the CPU probe (tests; CPUs the probe misreads).
BF16_ENV = "ATROUS_NATIVE_BF16"

Runner = Callable[[torch.Tensor], torch.Tensor]


class RuntimeUnavailableError(ValueError):
    """The runtime/precision pair cannot run this model here; the message says why and
    what to do."""


@dataclass(frozen=True)
class RuntimeChoice:
    """The path a model runs on: ``runtime``, ``precision``, whether it is compiled, and
    ``reason`` (why this path, with the accuracy figures it was accepted on)."""

    runtime: str
    precision: str
    compiled: bool
    reason: str

    def describe(self) -> str:
        mode = "compiled" if self.compiled else "eager"
        if self.runtime != "torch":
            mode = self.runtime
        return f"{self.runtime} {self.precision} ({mode}): {self.reason}"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def native_bf16() -> bool:
    """True where the CPU has bf16 arithmetic units (AMX-BF16 or AVX512-BF16).

    ``ATROUS_NATIVE_BF16=0`` or ``=1`` overrides the probe.
    """
    override = os.environ.get(BF16_ENV)
    if override in ("0", "1"):
        return override == "1"
    flags = _cpu_flags()
    if flags:
        return bool({"amx_bf16", "avx512_bf16"} & flags)
    try:  # no /proc/cpuinfo: ask torch's own probes
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:
        return False


def _check(runtime: str, precision: str) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")


def choose(
    model: nn.Module,
    runtime: str = "torch",
    precision: str = "auto",
    *,
    images: int | None = None,
    varied_shapes: bool = False,
) -> RuntimeChoice:
    """The path ``model`` will run on (see the module docstring for ``auto``).

    Example:
        ```python
        import torch

        from atrous.infer.runtime import build_runner, choose
        from atrous.models import build_model

        model = build_model("dilated_net", num_classes=3, width=8, rates=(1, 2, 4))
        choice = choose(model, "torch", "auto", images=5)  # few images: nothing compiled
        print(choice.runtime, choice.precision, choice.compiled)
        runner = build_runner(model, choice)
        print(runner(torch.randn(1, 3, 32, 32)).shape)
        ```

    Args:
        images: how many images will be run, when known (few: no compiling).
        varied_shapes: inputs of many sizes (a service): no per-shape compiling.
    """
    _check(runtime, precision)
    compile_ok = not varied_shapes and (images is None or images >= COMPILE_PAYS_AFTER)
    why_eager = (
        "input sizes vary, so nothing is compiled per size"
        if varied_shapes
        else f"{images} images: compiling (~6 s per size) would cost more than it saves"
    )
    if precision != "auto":
        compiled = compile_ok or precision == "int8"
        reason = "as asked" if compiled or runtime != "torch" else f"as asked; {why_eager}"
        if precision == "int8":
            reason += f"; {_int8_accuracy(model, runtime)}"
        return RuntimeChoice(runtime, precision, compiled, reason)
    if runtime == "onnxruntime":
        return RuntimeChoice(runtime, "fp32", False, "ONNX Runtime runs fp32 here")
    if runtime == "torch" and compile_ok:
        from atrous.infer.quantized import find_quantized

        saved = find_quantized(model)
        if saved is not None:
            return _fastest_measured(saved)
    if runtime == "openvino":
        return _choose_openvino(model)
    if native_bf16():
        reason = "this CPU runs bf16 natively; no int8 quantisation saved for this model"
        if not compile_ok:
            reason += f"; {why_eager}"
        return RuntimeChoice("torch", "bf16", compile_ok, reason)
    reason = "this CPU has no native bf16 and no int8 quantisation is saved for this model"
    if not compile_ok:
        reason += f"; {why_eager}"
    return RuntimeChoice("torch", "fp32", compile_ok, reason)


def _int8_accuracy(model: nn.Module, runtime: str) -> str:
    """What the saved quantisation of ``runtime``'s int8 measured, or that none did."""
    from atrous.infer.quantized import find_quantized, summarize

    saved = find_quantized(model)
    key = "openvino_int8" if runtime == "openvino" else "accuracy"
    accuracy = None if saved is None else saved.record.get(key)
    if not accuracy:
        return "its agreement with fp32 was not measured (atrous quantize measures it)"
    return summarize({"accuracy": accuracy})


def _fastest_measured(saved: Any) -> RuntimeChoice:
    """int8 (accepted by the guard), or a faster precision where ``atrous quantize``
    timed one faster on a CPU of this model."""
    accepted = f"{saved.summary()} ({saved.path})"
    latency = saved.record.get("latency_ms") or {}
    if not latency or not str(saved.record.get("machine", "")).startswith(cpu_name()):
        return RuntimeChoice("torch", "int8", True, accepted)
    usable = {k: v for k, v in latency.items() if k != "bf16" or native_bf16()}
    best = min(usable, key=usable.__getitem__)
    timed = ", ".join(f"{k} {v:.1f} ms" for k, v in usable.items())
    reason = f"fastest measured on this CPU ({timed})"
    if best == "int8":
        reason += f"; {accepted}"
    return RuntimeChoice("torch", best, True, reason)


def _choose_openvino(model: nn.Module) -> RuntimeChoice:
    from atrous.infer.quantized import find_quantized

    saved = find_quantized(model)
    if saved is not None and saved.record.get("openvino_int8"):
        return RuntimeChoice("openvino", "int8", False, saved.summary())
    if native_bf16():
        return RuntimeChoice("openvino", "bf16", False, "this CPU runs bf16 natively")
    return RuntimeChoice("openvino", "fp32", False, "this CPU has no native bf16")


def build_runner(model: nn.Module, choice: RuntimeChoice, *, threads: int | None = None) -> Runner:
    """The runner of ``choice``: ``runner(x) -> logits`` for a normalised ``NxCxHxW`` batch.

    Raises:
        RuntimeUnavailableError: int8 without a saved quantisation, or a runtime that
            cannot run the precision.
        MissingPackageError: the runtime's package is not installed (names the extra).
    """
    model = model.eval()
    if choice.runtime == "torch":
        return _torch_runner(model, choice)
    if choice.runtime == "onnxruntime":
        return _onnxruntime_runner(model, choice, threads)
    return _openvino_runner(model, choice, threads)


def _torch_runner(model: nn.Module, choice: RuntimeChoice) -> Runner:
    from atrous.infer.fast import prepare_for_cpu

    if choice.precision == "int8":
        from atrous.infer.int8 import Int8Model
        from atrous.infer.quantized import find_quantized

        saved = find_quantized(model)
        if saved is None:
            raise RuntimeUnavailableError(
                "no int8 quantisation is saved for this model's weights; make one with "
                "`atrous quantize --model MODEL --calib DIR` (it measures the accuracy int8 "
                "costs and refuses a lossy one)"
            )
        return Int8Model(model, ranges=saved.ranges)
    dtype = torch.bfloat16 if choice.precision == "bf16" else torch.float32
    backend = "compile" if choice.compiled else "eager"
    return prepare_for_cpu(model, dtype=dtype, backend=backend)


def _onnxruntime_runner(model: nn.Module, choice: RuntimeChoice, threads: int | None) -> Runner:
    import tempfile

    from atrous.infer.export import OnnxRuntimeModel, export_onnx
    from atrous.infer.packages import require_packages

    if choice.precision != "fp32":
        raise RuntimeUnavailableError(
            f"--runtime onnxruntime runs fp32 only; for {choice.precision} use --runtime torch "
            "(atrous's own bf16 and int8) or --runtime openvino"
        )
    require_packages(("onnx", "onnxruntime"), extra="onnx", purpose="ONNX Runtime")
    folder = Path(tempfile.mkdtemp(prefix="atrous-ort-"))
    path = export_onnx(model, folder / "model.onnx", example=_example())
    return OnnxRuntimeModel(path, threads=threads)


def _openvino_runner(model: nn.Module, choice: RuntimeChoice, threads: int | None) -> Runner:
    from atrous.infer.openvino import MissingCalibrationError, cached_openvino_model
    from atrous.models.pretrained import artifact_home

    precision = "int8" if choice.precision == "int8" else "fp32"
    hint = "bf16" if choice.precision == "bf16" else "f32"
    try:
        return cached_openvino_model(
            model,
            precision=precision,
            example=_example(),
            model_dir=artifact_home(model),
            threads=threads,
            inference_precision=hint,
        )
    except MissingCalibrationError as error:
        raise RuntimeUnavailableError(str(error)) from error


def _example() -> torch.Tensor:
    return torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
