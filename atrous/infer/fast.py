"""Preparing a trained model for fast CPU inference.

What is applied and why (measurements in ``benchmarks/results/infer.md``):

* **BatchNorm folded into the preceding convolution.** At inference BN is a per-channel
  affine map, so ``BN(conv(x)) = conv'(x)`` with rescaled weights and a bias: one pass
  over each activation map fewer, exact up to float rounding.
* **channels_last.** oneDNN's convolutions work in a blocked NHWC-like layout; with NCHW
  tensors every convolution reorders its input, output and weights on each call.
* **A graph backend** (``backend=``): ``"jit"`` traces, freezes and runs
  ``torch.jit.optimize_for_inference`` (prepacked oneDNN weights, conv+ReLU fusion);
  ``"compile"`` uses ``torch.compile`` with inductor's ``freezing`` (same ideas, plus
  generated kernels for the elementwise rest) at the cost of a long first call;
  ``"eager"`` applies only the two exact rewrites above.
* **bfloat16** (``dtype=torch.bfloat16``): on CPUs with AMX or AVX512-BF16 the
  convolutions run on the bf16 units; reduced precision, so argmax agreement with fp32
  must be checked (``atrous bench`` reports it).

BatchNorm/conv pairs are found by running the model once and watching which BN's input
is exactly a convolution's output (forward hooks), so any ``nn.Module`` works, not only
ones that ``torch.fx`` can trace; the folded model is then checked against the original.
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Literal

import torch
from torch import nn

from atrous.infer.logits import LogitsOnly, model_logits

LOGGER = logging.getLogger(__name__)

Backend = Literal["eager", "jit", "compile"]


def find_conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """Names of ``(conv, bn)`` pairs where the BN consumes exactly the conv's output.

    Pairs are kept only when each of the two modules runs once per forward (a module
    called twice with different partners cannot be folded).
    """
    names = {module: name for name, module in model.named_modules()}
    conv_outputs: dict[int, tuple[torch.Tensor, nn.Module]] = {}
    calls: dict[nn.Module, int] = {}
    candidates: list[tuple[nn.Module, nn.Module]] = []

    def on_conv(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        calls[module] = calls.get(module, 0) + 1
        conv_outputs[id(output)] = (output, module)  # keep the tensor alive: ids stay unique

    def on_bn(module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
        calls[module] = calls.get(module, 0) + 1
        source = conv_outputs.get(id(inputs[0]))
        if source is not None and source[0] is inputs[0]:
            candidates.append((source[1], module))

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(on_conv))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_hook(on_bn))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return [
        (names[conv], names[bn])
        for conv, bn in candidates
        if calls[conv] == 1 and calls[bn] == 1 and bn.track_running_stats
    ]


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    assert bn.running_mean is not None and bn.running_var is not None
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias.double() * scale + shift
    conv.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy of ``model`` (eval mode) with every foldable BatchNorm merged into its conv.

    Returns:
        The folded copy and the number of BatchNorm layers removed.
    """
    folded = copy.deepcopy(model).eval()
    pairs = find_conv_bn_pairs(folded, example)
    for conv_name, bn_name in pairs:
        _fold(folded.get_submodule(conv_name), folded.get_submodule(bn_name))
        _set_submodule(folded, bn_name, nn.Identity())
    return folded, len(pairs)


class FastModel(nn.Module):
    """The prepared model: channels_last input, logits output, metadata kept."""

    def __init__(
        self,
        model: nn.Module,
        *,
        channels_last: bool,
        dtype: torch.dtype,
        runner: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.channels_last = channels_last
        self.dtype = dtype
        self._runner = runner
        for key in ("class_names", "palette", "num_classes", "config"):
            if hasattr(model, key):
                setattr(self, key, getattr(model, key))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = x.to(self.dtype)
        runner = self._runner if self._runner is not None else self.model
        return model_logits(runner(x)).float().contiguous()


def _default_example() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def prepare_for_cpu(
    model: nn.Module,
    *,
    example: torch.Tensor | None = None,
    fold_bn: bool = True,
    channels_last: bool = True,
    backend: Backend = "eager",
    dtype: torch.dtype = torch.float32,
    check_tolerance: float | None = 1e-4,
) -> FastModel:
    """Return a CPU-optimised copy of ``model`` computing the same logits.

    Args:
        model: any segmentation model (logits tensor or ``{"out": ...}`` output).
        example: input used to find conv/BN pairs, trace, and check the result; a small
            random image by default. With ``backend="jit"`` the traced graph is
            specialised to nothing but the rank, so other sizes work.
        fold_bn: fold BatchNorm into convolutions.
        channels_last: run in NHWC memory format.
        backend: ``"eager"``, ``"jit"`` (trace + freeze + optimize_for_inference) or
            ``"compile"`` (``torch.compile`` with inductor freezing).
        dtype: ``torch.float32`` or ``torch.bfloat16``.
        check_tolerance: for fp32, fail if the prepared model's logits differ from the
            original's by more than this on ``example``, relative to the logits' largest
            magnitude when that exceeds 1 (float32 rounding grows with it); ``None`` skips
            the check.

    Raises:
        RuntimeError: when the prepared model disagrees with the original.
    """
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype}")
    if backend not in ("eager", "jit", "compile"):
        raise ValueError(f"backend must be 'eager', 'jit' or 'compile', got {backend!r}")
    original = model.eval()
    example = _default_example() if example is None else example
    prepared = copy.deepcopy(original).eval()
    if fold_bn:
        prepared, count = fold_batchnorm(prepared, example)
        LOGGER.debug("folded %d BatchNorm layers", count)
    for parameter in prepared.parameters():
        parameter.requires_grad_(False)
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    prepared = prepared.to(dtype)
    runner: nn.Module | None = None
    sample = example.to(dtype)
    if channels_last:
        sample = sample.contiguous(memory_format=torch.channels_last)
    if backend == "jit":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer warnings
            traced = torch.jit.trace(LogitsOnly(prepared).eval(), sample, check_trace=False)
            runner = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    elif backend == "compile":
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # documented global: weights become constants
        runner = torch.compile(prepared, dynamic=False)
    fast = FastModel(prepared, channels_last=channels_last, dtype=dtype, runner=runner)
    fast.eval()
    if check_tolerance is not None and dtype == torch.float32:
        with torch.no_grad():
            expected = model_logits(original(example)).float()
            got = fast(example)
        difference = float((got - expected).abs().max())
        allowed = check_tolerance * max(1.0, float(expected.abs().max()))
        if difference > allowed:
            raise RuntimeError(
                f"prepared model differs from the original by {difference:.3g} > "
                f"{allowed:.3g}; disable the step that breaks it (fold_bn, backend)"
            )
        LOGGER.debug("prepared model max abs logit diff %.3g", difference)
    return fast
