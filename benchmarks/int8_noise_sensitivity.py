"""How far argmax moves when every conv output gets a little fp32 Gaussian noise.

Separates "int8 is badly calibrated" from "the network amplifies any rounding": noise of
relative std ``r`` (times each conv output's std) is added in fp32 to every Conv2d output
and the argmax agreement with the clean run is reported, for the random-weight ResNet-50
bench model and the trained ``camvid`` model, on the same 2x3x256x256 noise input.

Usage:
    python benchmarks/int8_noise_sensitivity.py
"""

from __future__ import annotations

import torch
from torch import nn


def noisy_logits(model: nn.Module, x: torch.Tensor, relative: float) -> torch.Tensor:
    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + relative * output.std() * torch.randn_like(output)

    handles = []
    if relative:
        handles = [
            m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)
        ]
    try:
        with torch.inference_mode():
            return model(x)
    finally:
        for handle in handles:
            handle.remove()


def main() -> None:
    import atrous
    from atrous.infer.bench import make_models

    _, random_model = make_models()
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    print("| model | relative noise | argmax agree | mean abs logit diff / logit std |")
    print("|---|---|---|---|")
    for name, model in [
        ("random ResNet-50 OS8", random_model),
        ("camvid", atrous.load_pretrained("camvid")),
    ]:
        torch.manual_seed(0)
        clean = noisy_logits(model, x, 0.0)
        for relative in (1e-3, 3e-3, 1e-2):
            got = noisy_logits(model, x, relative)
            agree = float((got.argmax(1) == clean.argmax(1)).float().mean())
            spread = float((got - clean).abs().mean() / clean.std())
            print(f"| {name} | {relative:g} | {100 * agree:.3f}% | {spread:.4f} |")


if __name__ == "__main__":
    main()
