"""Start a CamVid recipe from ImageNet backbone weights: write a ``model.pretrained`` folder.

The recipes train from scratch because no weights can be downloaded where they were
tuned. A user who has torchvision's ImageNet weights on disk builds the recipe's model,
loads them into its backbone (strict; same keys as torchvision) and saves the result
with the CamVid class names; ``--set model.pretrained=<out>`` then starts training there.

    python benchmarks/camvid_pretrained_init.py --config configs/camvid_gpu.yaml \
        --weights resnet18-f37072fd.pth --out runs/camvid_init
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a CamVid recipe")
    parser.add_argument("--weights", required=True, help="torchvision ImageNet state dict file")
    parser.add_argument("--out", required=True, help="folder for save_pretrained")
    args = parser.parse_args(argv)

    import torch

    from atrous.data.datasets import CAMVID_CLASSES, CAMVID_PALETTE
    from atrous.engine import load_config
    from atrous.models import build_model, load_torchvision_backbone, save_pretrained

    config = load_config(args.config)
    model = build_model(config.model.name, num_classes=len(CAMVID_CLASSES), **config.model.options)
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    load_torchvision_backbone(model, state)
    save_pretrained(
        model,
        args.out,
        class_names=CAMVID_CLASSES,
        palette=CAMVID_PALETTE,
        metadata={"init": f"ImageNet backbone from {args.weights}"},
    )
    print(f"wrote {args.out}; train with --set model.pretrained={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
