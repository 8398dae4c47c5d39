"""CPU bfloat16 autocast is decided by AMX, or by a timed probe on AVX512-BF16 alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from atrous.engine.precision import (
    autocast_dtype,
    cpu_flags,
    cpu_has_native_bf16,
    decide_cpu_bf16,
    describe_cpu_precision,
    probe_bf16_speed,
)

SAPPHIRE_RAPIDS = {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
COOPER_LAKE = {"avx512f", "avx512_bf16"}  # bfloat16 instructions, no AMX
SKYLAKE = {"avx2", "avx512f"}


def _never_probe() -> tuple[float, float]:
    raise AssertionError("the probe must not run when the flags decide")


def test_amx_decides_yes_without_probing() -> None:
    decision = decide_cpu_bf16(SAPPHIRE_RAPIDS, probe=_never_probe)
    assert decision.use and "AMX" in decision.reason


def test_no_bf16_instructions_decide_no_without_probing() -> None:
    decision = decide_cpu_bf16(SKYLAKE, probe=_never_probe)
    assert not decision.use and "emulated" in decision.reason
    assert not cpu_has_native_bf16(SKYLAKE)


@pytest.mark.parametrize(
    ("fp32", "bf16", "use"),
    [
        (1.55, 2.02, False),  # a 2-core Xeon measured 2026-12-01: bf16 slower
        (1.00, 0.95, False),  # a marginal win is within the probe's noise
        (1.00, 0.50, True),
    ],
)
def test_avx512_bf16_alone_is_settled_by_the_probe(fp32: float, bf16: float, use: bool) -> None:
    calls = []

    def probe() -> tuple[float, float]:
        calls.append(1)
        return fp32, bf16

    decision = decide_cpu_bf16(COOPER_LAKE, probe=probe)
    assert calls == [1] and decision.use is use
    assert "without AMX" in decision.reason and f"{1000 * fp32:.1f} ms" in decision.reason
    # The hardware fact stays what it says: this CPU has bfloat16 instructions.
    assert cpu_has_native_bf16(COOPER_LAKE)


def test_autocast_follows_the_decision_and_the_opt_in() -> None:
    cpu = torch.device("cpu")
    on = lambda: decide_cpu_bf16(SAPPHIRE_RAPIDS)  # noqa: E731
    off = lambda: decide_cpu_bf16(COOPER_LAKE, probe=lambda: (1.55, 2.02))  # noqa: E731
    assert autocast_dtype(cpu, "bf16", cpu_amp=True, decide=on) is torch.bfloat16
    assert autocast_dtype(cpu, "bf16", cpu_amp=True, decide=off) is None
    assert autocast_dtype(cpu, "bf16", cpu_amp=False, decide=on) is None
    line = describe_cpu_precision("bf16", True, decide=off)
    assert line is not None and line.startswith("train.cpu_amp: float32") and "2020.0 ms" in line
    assert describe_cpu_precision("bf16", False) is None


def test_cpu_flags_reads_the_flags_line(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 amx_tile\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx512_bf16", "amx_tile"}
    assert cpu_flags(tmp_path / "missing") is None


def test_probe_times_both_dtypes() -> None:
    fp32, bf16 = probe_bf16_speed(steps=1)
    assert 0 < fp32 < 30 and 0 < bf16 < 30
