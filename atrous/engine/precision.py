"""Which dtype a training step autocasts to, and on CPUs whether bfloat16 pays at all.

On CUDA ``train.amp`` picks float16 or bfloat16. On a CPU bfloat16 autocast is opt-in
(``train.cpu_amp``, since it changes the numbers of a run) and is used only where it is
faster than float32. Having bfloat16 instructions is not enough:

- with AMX (``amx_bf16``, Sapphire Rapids and later) bfloat16 matrix tiles made a
  DeepLabV3+ ResNet-18 training step 2.2x faster than float32, both channels_last;
- with AVX512-BF16 but no AMX (Cooper Lake, Zen 4) the same step was *slower*: 2.02 vs
  1.55 s/step on a 2-core Xeon (``python benchmarks/cpu_amp_step.py``).

So AMX decides yes, no bfloat16 instructions decide no, and AVX512-BF16 alone is settled
by a short timed probe (a channels_last convolution's forward and backward in each
dtype). ``decide_cpu_bf16`` returns the decision with its reason for the log; its
inputs (CPU flags, probe) can be injected, so the rule is tested without such a CPU.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

#: bfloat16 must be at least this much faster than float32 in the probe to be used: a
#: marginal win is not worth the changed numbers, and it is within the probe's noise.
PROBE_SPEEDUP = 1.1


@dataclass(frozen=True)
class Bf16Decision:
    """Whether CPU bfloat16 autocast is used, and why (one line for the training log)."""

    use: bool
    reason: str


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU feature flags of the first processor in ``/proc/cpuinfo`` (None elsewhere)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return None


def _flags_or_torch(flags: Iterable[str] | None) -> frozenset[str]:
    """Given flags, or /proc/cpuinfo's, or (macOS, Windows) what torch reports."""
    if flags is not None:
        return frozenset(flags)
    found = cpu_flags()
    if found is not None:
        return found
    from_torch = set()
    if bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()):
        from_torch |= {"amx_bf16", "amx_tile"}
    if bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()):
        from_torch.add("avx512_bf16")
    return frozenset(from_torch)


def cpu_has_native_bf16(flags: Iterable[str] | None = None) -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX).

    A hardware fact, not the decision to autocast: AVX512-BF16 without AMX can be
    slower than float32, see ``decide_cpu_bf16``. Without either, bfloat16 is
    emulated and always slower.
    """
    found = _flags_or_torch(flags)
    return "amx_bf16" in found or "avx512_bf16" in found


def probe_bf16_speed(steps: int = 3) -> tuple[float, float]:
    """Seconds per float32 and per bfloat16-autocast step of a small channels_last conv net.

    Forward and backward of two 3x3 convolutions (64 channels, batch 4, 64x64), the
    shape of work that dominates a segmentation step; one untimed warm-up step per dtype,
    then the best of ``steps``. About a second on a 2-core CPU.
    """
    with torch.random.fork_rng(devices=[]):  # the run's RNG stream stays untouched
        return _probe(steps)


def _probe(steps: int) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(64, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(64, 64, 3, padding=1),
    ).to(memory_format=torch.channels_last)
    x = torch.randn(4, 64, 64, 64, generator=generator).to(memory_format=torch.channels_last)
    seconds = []
    for use_bf16 in (False, True):
        times = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                loss = net(x).float().square().mean()
            loss.backward()
            times.append(time.perf_counter() - start)
        seconds.append(min(times[1:]))
    return seconds[0], seconds[1]


def decide_cpu_bf16(
    flags: Iterable[str] | None = None,
    probe: Callable[[], tuple[float, float]] = probe_bf16_speed,
) -> Bf16Decision:
    """Whether bfloat16 autocast makes training faster on this CPU (see the module docstring).

    Args:
        flags: CPU feature flags; default: ``/proc/cpuinfo`` (or what torch reports).
        probe: returns (float32, bfloat16) seconds per step; run only for a CPU with
            AVX512-BF16 and no AMX.
    """
    found = _flags_or_torch(flags)
    if "amx_bf16" in found:
        return Bf16Decision(True, "AMX (amx_bf16): bfloat16 matrix tiles, ~2.2x a float32 step")
    if "avx512_bf16" not in found:
        return Bf16Decision(
            False, "no bfloat16 instructions (neither AMX nor AVX512-BF16): emulated, slower"
        )
    fp32, bf16 = probe()
    measured = f"probe: float32 {1000 * fp32:.1f} ms, bfloat16 {1000 * bf16:.1f} ms per step"
    if fp32 >= PROBE_SPEEDUP * bf16:
        return Bf16Decision(True, f"AVX512-BF16 without AMX, bfloat16 faster ({measured})")
    return Bf16Decision(
        False,
        f"AVX512-BF16 without AMX, bfloat16 not {PROBE_SPEEDUP}x faster ({measured})",
    )


@functools.cache
def _this_cpu_bf16() -> Bf16Decision:
    """This machine's decision, probed at most once per process."""
    return decide_cpu_bf16()


def autocast_dtype(
    device: torch.device,
    amp: str,
    cpu_amp: bool = False,
    *,
    decide: Callable[[], Bf16Decision] | None = None,
) -> torch.dtype | None:
    """The autocast dtype ``train.amp`` asks for on ``device``, or ``None`` for float32.

    CUDA: float16 or bfloat16. CPU: bfloat16 only when ``cpu_amp`` opts in,
    ``amp == "bf16"`` and ``decide_cpu_bf16`` (``decide``, for tests) finds it
    faster here. Opt-in because it changes the results of CPU runs.
    """
    if amp == "none":
        return None
    if device.type == "cuda":
        return torch.float16 if amp == "fp16" else torch.bfloat16
    if device.type == "cpu" and cpu_amp and amp == "bf16":
        return torch.bfloat16 if (decide or _this_cpu_bf16)().use else None
    return None


def describe_cpu_precision(
    amp: str, cpu_amp: bool, decide: Callable[[], Bf16Decision] | None = None
) -> str | None:
    """The log line for a CPU run that asked for ``cpu_amp`` (None when it did not)."""
    if not cpu_amp:
        return None
    if amp == "none":
        return "train.cpu_amp with train.amp=none: training in float32"
    if amp == "fp16":
        return "train.cpu_amp with train.amp=fp16 ignored (fp16 autocast is CUDA-only): float32"
    decision = (decide or _this_cpu_bf16)()
    dtype = "bfloat16 autocast" if decision.use else "float32"
    return f"train.cpu_amp: {dtype} on this CPU; {decision.reason}"
