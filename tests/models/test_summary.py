"""Parameter and MAC counts against torchvision's published tables; the CLI table."""

from __future__ import annotations

import json

from atrous.cli import main
from atrous.models.summary import summarize


def test_counts_match_torchvision_published_figures() -> None:
    # torchvision's weight tables (DeepLabV3_ResNet50_Weights / FCN_ResNet50_Weights meta):
    # num_params 42,004,074 / 35,322,218 and "GFLOPS" 178.722 / 152.717 at 520x520, which
    # are multiply-accumulates of the model with its auxiliary head, 21 classes.
    deeplab = summarize("deeplabv3", input_size=520, output_stride=8, aux=True, count_aux=True)
    fcn = summarize("fcn", input_size=520, aux=True, count_aux=True)
    assert deeplab.params == 42_004_074
    assert fcn.params == 35_322_218
    assert abs(deeplab.macs / 1e9 - 178.722) < 0.05
    assert abs(fcn.macs / 1e9 - 152.717) < 0.05


def test_models_cli_json(capsys) -> None:
    assert main(["models", "--json", "--size", "64"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {row["name"]: row for row in rows}
    assert by_name["deeplabv3"]["output_stride"] == 16
    assert by_name["drn_d_22"]["output_stride"] == 8
    assert all(row["params"] > 0 and row["macs"] > 0 for row in rows)
