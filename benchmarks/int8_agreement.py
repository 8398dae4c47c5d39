"""Argmax agreement of int8 (ONNX Runtime static) against fp32, per calibration setting.

Agreement is measured on held-out inputs, never the calibration ones, for two models:

* ``random``: atrous's DeepLabv3-ResNet50 OS8 with torchvision's random-init weights
  and BatchNorm statistics re-estimated on noise (the ``atrous bench`` model), on N(0,1)
  noise images, calibrated on other noise images (the distribution the bench evaluates);
* ``camvid``: the shipped ``camvid`` model (DeepLabV3+ ResNet-18, trained), calibrated on
  CamVid train images and evaluated on CamVid val images.

Usage:
    python benchmarks/int8_agreement.py --model random --size 256 --calibration 16 \
        --configs minmax,percentile,entropy
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

# Every setting spelled out relative to MinMax with the classifier quantised, so that a
# change of quantize_int8's defaults cannot silently turn two rows into the same config
# (it did once: after the defaults became percentile + fp32 classifier, "minmax" = {}
# measured the new default).
_BASE = {"method": "minmax", "keep_classifier_fp32": False}
CONFIGS = {
    # name: quantize_int8 keyword arguments
    "minmax": {**_BASE},
    "minmax-sym": {**_BASE, "activation_symmetric": True},
    "minmax-tensor": {**_BASE, "per_channel": False},
    "percentile": {**_BASE, "method": "percentile", "percentile": 99.999},
    "percentile-9999": {**_BASE, "method": "percentile", "percentile": 99.99},
    "entropy": {**_BASE, "method": "entropy"},
    "minmax-cls": {**_BASE, "keep_classifier_fp32": True},
    "percentile-cls": {
        **_BASE,
        "method": "percentile",
        "percentile": 99.999,
        "keep_classifier_fp32": True,
    },
    "minmax-ends": {**_BASE, "exclude_ends": True},
    "conv-only": {**_BASE, "op_types": ["Conv"]},
    "no-resize": {**_BASE, "exclude_resize": True},
    "percentile-ends": {
        **_BASE,
        "method": "percentile",
        "percentile": 99.999,
        "exclude_ends": True,
    },
}


def noise_batches(count: int, size: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 3, size, size, generator=generator) for _ in range(count)]


def camvid_batches(root: Path, split: str, count: int) -> list[torch.Tensor]:
    from atrous.infer.io import load_image
    from atrous.infer.predictor import normalize

    files = sorted((root / split).glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no PNG images in {root / split}")
    step = max(1, len(files) // count)  # spread over the split (different sequences)
    return [normalize(load_image(path)) for path in files[::step][:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("random", "camvid"), default="random")
    parser.add_argument("--size", type=int, default=256, help="noise image side (random)")
    parser.add_argument("--calibration", type=int, default=16, help="calibration images")
    parser.add_argument("--eval", type=int, default=4, help="held-out evaluation images")
    parser.add_argument("--configs", default="minmax,percentile,entropy")
    parser.add_argument("--camvid-root", type=Path, default=Path("../shared/datasets/camvid"))
    args = parser.parse_args()

    from atrous.infer.quantize import onnx_node_names, quantize_int8

    if args.model == "random":
        from atrous.infer.bench import make_models

        _, model = make_models()
        calibration = noise_batches(args.calibration, args.size, seed=3)
        held_out = noise_batches(args.eval, args.size, seed=1)
    else:
        import atrous

        model = atrous.load_pretrained("camvid")
        calibration = camvid_batches(args.camvid_root, "train", args.calibration)
        held_out = camvid_batches(args.camvid_root, "val", args.eval)
    with torch.inference_mode():
        expected = [model(x) for x in held_out]
    print(
        f"model {args.model}, {len(calibration)} calibration images, {len(held_out)} held-out "
        f"images of {tuple(held_out[0].shape[-2:])}"
    )
    print("| config | argmax agree | min per image | max logit diff | int8 s/img | quantise s |")
    print("|---|---|---|---|---|---|")
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        options = dict(CONFIGS[name])
        if options.pop("exclude_resize", False):
            probe = quantize_int8(model, calibration[:1])
            names = onnx_node_names(probe.path.parent / "fp32.pre.onnx", op_type="Resize")
            options["exclude"] = names
        if options.pop("exclude_ends", False):
            # Probe the exported graph for its conv names: first (stem) and last two.
            probe = quantize_int8(model, calibration[:1])
            names = onnx_node_names(probe.path.parent / "fp32.pre.onnx", op_type="Conv")
            options["exclude"] = [names[0], *names[-2:]]
        start = time.perf_counter()
        int8 = quantize_int8(model, calibration, **options)
        quantise_s = time.perf_counter() - start
        agree, diffs, seconds = [], [], []
        for x, want in zip(held_out, expected):
            start = time.perf_counter()
            got = int8(x)
            seconds.append(time.perf_counter() - start)
            agree.append(float((got.argmax(1) == want.argmax(1)).float().mean()))
            diffs.append(float((got - want).abs().max()))
        print(
            f"| {name} | {100 * sum(agree) / len(agree):.3f}% | {100 * min(agree):.3f}% | "
            f"{max(diffs):.2e} | {sorted(seconds)[len(seconds) // 2]:.3f} | {quantise_s:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
