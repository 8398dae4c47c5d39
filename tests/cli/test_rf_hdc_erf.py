"""`atrous rf`, `atrous hdc` and `atrous erf` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atrous.cli import main


def test_rf_prints_the_yu_koltun_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rf", "--kernel", "3", "--rates", "1,1,2,4,8,16,1", "--append-1x1"]) == 0
    out = capsys.readouterr().out
    sizes = [int(line.split()[3]) for line in out.splitlines()[1:9]]
    assert sizes == [3, 5, 9, 17, 33, 65, 67, 67]
    assert "receptive field 67x67, hole fraction 0.0%" in out


def test_rf_json_and_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plot = tmp_path / "coverage.png"
    assert main(["rf", "--rates", "2,2,2", "--json", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    document = json.loads(out[: out.rindex("}") + 1])
    assert [layer["size"] for layer in document["layers"]] == [5, 9, 13]
    assert document["coverage"]["grid_period"] == [2, 2]
    assert document["layers"][-1]["hole_fraction"] == pytest.approx(1 - (7 / 13) ** 2)
    assert plot.stat().st_size > 1000


def test_rf_rejects_bad_rates(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["rf", "--rates", "1,x"])
    assert "integers >= 1 separated by commas" in capsys.readouterr().err


def test_hdc_check_and_strict_exit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hdc", "--kernel", "3", "--rates", "2,2,2"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" in out and "common factor   2" in out and "71.0%" in out
    assert main(["hdc", "--rates", "2,2,2", "--strict"]) == 1
    capsys.readouterr()
    assert main(["hdc", "--rates", "1,2,5", "--strict", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["m2"] == 2


def test_hdc_designs_schedules(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plot = tmp_path / "schedules.png"
    args = ["hdc", "--kernel", "3", "--target-rf", "67", "--limit", "3", "--plot", str(plot)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[0] == "1,3,9,20"
    assert plot.exists()
    assert main(["hdc", "--target-rf", "1001", "--max-layers", "2", "--max-rate", "4"]) == 1
    assert "no hole-free schedule" in capsys.readouterr().out


models = pytest.importorskip("atrous.models")


def _has(name: str) -> bool:
    return name in models.list_models()


@pytest.mark.skipif(not _has("dilated_net"), reason="dilated_net not in the model zoo")
def test_rf_and_erf_on_a_built_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["rf", "--model", "dilated_net", "--input-size", "33", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == ["stem", "body", "head"]
    plot = tmp_path / "erf.png"
    args = ["erf", "--model", "dilated_net", "--input-size", "33", "--samples", "2"]
    assert main([*args, "--plot", str(plot)]) == 0
    assert "95% within" in capsys.readouterr().out
    assert plot.stat().st_size > 1000


@pytest.mark.skipif(not _has("dilated_net"), reason="dilated_net not in the model zoo")
def test_erf_of_saved_weights(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = models.build_model("dilated_net", num_classes=2, rates=(1, 2), width=4)
    models.save_pretrained(model, tmp_path / "saved")
    args = ["erf", "--weights", str(tmp_path / "saved"), "--input-size", "17", "--json"]
    assert main([*args, "--samples", "1"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["samples"] == 1 and 0 < document["radius_50"] <= document["radius_95"]
