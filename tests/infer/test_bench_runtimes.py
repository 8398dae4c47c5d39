"""The deployment runtimes in ``atrous bench``: ONNX Runtime and OpenVINO (fp32, int8).

Each runtime's output is compared with PyTorch's forward of the same tiny model (the
reference someone else wrote: torch's own convolutions); a runtime that is not installed
must be skipped by the bench with a message, never fail it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from atrous.infer.bench import (
    MissingPackageError,
    Variant,
    check_packages,
    format_table,
    image_inputs,
    make_variants,
    measure_agreement,
    noise_inputs,
    parse_size,
    time_variants,
)

from .conftest import TinyASPPNet

# OpenVINO loaded in the same process as the rest of the suite crashed it hundreds of tests
# later (a segfault, not reproduced in smaller runs): make test runs these on their own.
pytestmark = pytest.mark.openvino

DEPLOY_KEYS = [
    "eager",
    "fp32-eager",
    "ort-fp32",
    "int8",
    "ort-int8",
    "openvino-fp32",
    "openvino-int8",
]


@pytest.fixture(scope="module")
def tiny() -> TinyASPPNet:
    torch.manual_seed(0)
    return TinyASPPNet().eval()


@pytest.fixture(scope="module")
def deploy_variants(tiny: TinyASPPNet) -> tuple[list[Variant], list[str]]:
    """Every deployment variant of the tiny model, built once (conversion and
    quantisation take seconds each)."""
    calibration = noise_inputs(4, (48, 64), seed=3)
    return make_variants(DEPLOY_KEYS, tiny, tiny, (48, 64), calibration=calibration, threads=1)


def test_openvino_fp32_matches_pytorch_at_two_shapes(tiny: TinyASPPNet) -> None:
    pytest.importorskip(
        "openvino", reason="openvino not installed (pip install 'atrous[openvino]')"
    )
    from atrous.infer.openvino import OpenVinoModel, convert_to_openvino

    runtime = OpenVinoModel(convert_to_openvino(tiny, torch.randn(1, 3, 48, 64)), threads=1)
    # A second batch and size: the converted graph must not have frozen the example's shape.
    for shape in [(1, 3, 48, 64), (2, 3, 45, 97)]:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            expected = tiny(x)
        got = runtime(x)
        assert got.shape == expected.shape
        assert float((got - expected).abs().max()) < 1e-4
        assert bool((got.argmax(1) == expected.argmax(1)).all())
    # fp32 asked for, fp32 run: OpenVINO would pick bf16 on AMX CPUs by default.
    precision = runtime.compiled((1, 3, 48, 64)).get_property("INFERENCE_PRECISION_HINT")
    assert "32" in str(precision)


def test_openvino_model_rejects_bad_options() -> None:
    pytest.importorskip(
        "openvino", reason="openvino not installed (pip install 'atrous[openvino]')"
    )
    from atrous.infer.openvino import OpenVinoModel

    with pytest.raises(ValueError, match="precision"):
        OpenVinoModel(object(), precision="f16")
    with pytest.raises(ValueError, match="threads"):
        OpenVinoModel(object(), threads=0)


def test_every_runtime_agrees_with_pytorch_on_held_out_inputs(
    deploy_variants: tuple[list[Variant], list[str]],
) -> None:
    variants, skipped = deploy_variants
    held_out = noise_inputs(3, (48, 64), seed=5)  # not the calibration draws (seed 3)
    measure_agreement(variants, held_out, reference=variants[0].name)
    by_key = {v.key: v for v in variants}
    for key in ("fp32-eager", "ort-fp32", "openvino-fp32"):
        if key in by_key:  # fp32 runtimes: the same numbers up to rounding
            assert by_key[key].max_diff < 1e-4, key
            assert by_key[key].min_agreement > 0.999, key
    for key in ("int8", "ort-int8", "openvino-int8"):
        if key in by_key:  # int8: close but not exact on a 5-class toy
            assert 0 < by_key[key].max_diff < 1.0, key
            assert by_key[key].agreement > 0.85, key
    assert len(variants) + len(skipped) == len(DEPLOY_KEYS)


def test_bench_table_has_every_variant_with_its_ratio(
    deploy_variants: tuple[list[Variant], list[str]],
) -> None:
    variants, skipped = deploy_variants
    x = torch.randn(1, 3, 48, 64)
    for variant in variants:
        variant.times.clear()
    time_variants(variants, x, runs=3, warmup=1)
    table = format_table(
        variants, batch=1, reference=variants[0].name, peak_gflops=1.0, skipped=skipped
    )
    rows = {
        line.split(" | ")[0][2:]: line.split(" | ")
        for line in table.splitlines()
        if line.startswith("| ") and "---" not in line
    }
    reference = sorted(variants[0].times)[1]
    for variant in variants:
        assert variant.name in rows, table
        ratio = float(rows[variant.name][3])
        assert ratio == pytest.approx(sorted(variant.times)[1] / reference, abs=0.006)
    assert float(rows[variants[0].name][3]) == 1.0
    for message in skipped:  # a missing runtime is named under the table
        assert f"skipped: {message}" in table


def test_format_table_ratios_and_skipped_lines() -> None:
    slow = Variant("slow", lambda t: t, flops_per_image=10, times=[4.0, 2.0, 3.0])
    fast = Variant("fast", lambda t: t, flops_per_image=10, times=[1.0, 0.5, 0.75])
    table = format_table(
        [slow, fast], batch=1, reference="slow", peak_gflops=1.0, skipped=["x needs y"]
    )
    lines = table.splitlines()
    assert lines[3].startswith("| slow | 3.000 | 2.000 | 1.00 |")
    assert lines[4].startswith("| fast | 0.750 | 0.500 | 0.25 |")
    assert lines[-1] == "skipped: x needs y"


def test_missing_runtime_is_skipped_with_the_extra_to_install(
    tiny: TinyASPPNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(MissingPackageError, match=r"pip install 'atrous\[openvino\]'"):
        check_packages("openvino-fp32")
    variants, skipped = make_variants(
        ["eager", "fp32-eager", "openvino-fp32", "openvino-int8"], tiny, tiny, (32, 32)
    )
    assert [v.key for v in variants] == ["eager", "fp32-eager"]
    assert len(skipped) == 2
    assert skipped[0].startswith("openvino-fp32 (OpenVINO fp32) needs openvino")
    assert skipped[1].startswith("openvino-int8 (OpenVINO NNCF int8) needs openvino, nncf")


def test_cli_skips_a_missing_runtime_and_benches_the_rest(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from atrous.cli import main

    monkeypatch.setitem(sys.modules, "openvino", None)
    code = main(
        [
            "bench",
            "--model",
            "erfnet",
            "--size",
            "32x48",
            "--batch",
            "1",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--variants",
            "fp32-eager,openvino-fp32",
            "--no-memory",
            "--held-out",
            "1",
            "--threads",
            "1",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert "skipped: openvino-fp32 (OpenVINO fp32) needs openvino" in err
    assert "| PyTorch eager fp32 (model as loaded) |" in out
    assert "| atrous fast fp32 (fold+CL, eager) |" in out
    assert "| OpenVINO fp32 |" not in out
    assert "erfnet at 32x48" in out


def test_cli_rejects_an_unknown_variant(capsys: pytest.CaptureFixture[str]) -> None:
    from atrous.cli import main

    assert main(["bench", "--model", "erfnet", "--variants", "tensorrt", "--no-memory"]) == 2
    assert "unknown variant 'tensorrt'" in capsys.readouterr().err


def test_parse_size() -> None:
    assert parse_size("512") == (512, 512)
    assert parse_size("360x480") == (360, 480)
    assert parse_size(64) == (64, 64)
    for bad in ("360x", "0x10", "axb", "1x2x3"):
        with pytest.raises(ValueError, match="360x480"):
            parse_size(bad)


def test_image_inputs_spread_normalise_and_resize(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for index in range(6):
        pixels = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"frame_{index:02d}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    inputs = image_inputs(tmp_path, 3, (16, 24))
    assert len(inputs) == 3 and all(x.shape == (1, 3, 16, 24) for x in inputs)
    same = image_inputs(tmp_path, 1, (30, 40))[0]  # no resize at the native size
    from atrous.infer.io import load_image
    from atrous.infer.predictor import normalize

    assert torch.equal(same, normalize(load_image(tmp_path / "frame_00.png")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        image_inputs(tmp_path / "empty", 1, (8, 8))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_inputs(tmp_path / "missing", 1, (8, 8))


def test_measure_agreement_mean_and_worst_input() -> None:
    def reference(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1], -x[:, :1]], dim=1)

    def flipped_on_second(x: torch.Tensor) -> torch.Tensor:
        out = reference(x)
        return -out if float(x.mean()) > 10 else out

    inputs = [torch.randn(1, 1, 4, 4), torch.randn(1, 1, 4, 4) + 100]
    variants = [Variant("ref", reference), Variant("other", flipped_on_second)]
    measure_agreement(variants, inputs, reference="ref")
    assert variants[1].min_agreement == 0.0 and variants[1].agreement == 0.5
    assert variants[0].agreement == 1.0 and variants[0].max_diff == 0.0
