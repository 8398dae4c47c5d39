"""Hole fraction of each CamVid recipe's dilated stages (atrous.analysis.coverage_map).

For every recipe: the coverage of one layer4 output position measured on the layer2
grid (the stride-8 map the dilated stages read; gridding is a property of that grid),
and of one output logit measured on the input image with the ASPP image-pooling branch
dropped (it reaches every pixel and would hide holes). Architecture only: no weights.

    python benchmarks/camvid_coverage.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from atrous.analysis.coverage import coverage_map
from atrous.engine import load_config
from atrous.models import build_model

RECIPES = ("gpu", "ablation_plain", "ablation_multigrid", "ablation_hdc", "ablation_none")


def main() -> int:
    root = Path(__file__).resolve().parents[1] / "configs"
    print(
        "| recipe | layer3/layer4 rates | layer4 box on layer2 grid | holes | grid | "
        "logit box on image (no image pooling) | holes |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in RECIPES:
        config = load_config(root / f"camvid_{name}.yaml")
        with torch.device("meta"):
            model = build_model(config.model.name, num_classes=11, **config.model.options)
        rates = [info.dilation for info in model.backbone.feature_info][-2:]
        stage = coverage_map(model.backbone, (1025, 1025), output_index="layer4", source="layer2")
        whole = coverage_map(model, (360, 480), global_pooling="drop")
        print(
            f"| camvid_{name} | {rates[0]} / {rates[1]} | {stage.box_shape} | "
            f"{stage.hole_fraction:.3f} | {stage.is_grid} | {whole.box_shape} | "
            f"{whole.hole_fraction:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
