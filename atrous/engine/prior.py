"""Class-prior adjustment: undo (part of) the class weighting a model was trained with.

A classifier trained with class weights ``w`` learns scores that behave like
``log p(c | x) + log w_c``: with SegNet's median-frequency weights, rare classes
(pole, pedestrian) are over-predicted, which raises their accuracy and lowers their
IoU. Adding ``-alpha * log w_c`` to the logits moves the decision rule between
"as trained" (``alpha = 0``) and "as if unweighted" (``alpha = 1``); negative ``alpha``
pushes further towards rare classes (for a model trained without weights). This is the
post-hoc logit adjustment of Menon et al., 2021 (arXiv:2007.07314), searched over
``alpha`` for the best mIoU on a split, then folded exactly into the bias of the
model's last convolution, so every consumer (predict, export, serve) gets it for free.

Choose ``alpha`` on the training split (or a held-out part of it), not on the split you
report: selecting on val inflates val.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from atrous.data import (
    SegmentationDataset,
    build_dataset,
    check_dataset,
    median_frequency_weights,
)
from atrous.engine.evaluate import make_predictor
from atrous.engine.metrics import IGNORE_INDEX, ConfusionMatrix

DEFAULT_ALPHAS = (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)
WEIGHTINGS = ("median_frequency", "sqrt_median_frequency")


def class_weights_from_data(
    spec: str | Sequence[float],
    data_format: str,
    root: str,
    split: str = "train",
    *,
    dataset: SegmentationDataset | None = None,
) -> np.ndarray:
    """The class weights ``spec`` names, computed from ``split``'s masks (or from
    ``dataset``'s, the training run's own checked split).

    ``spec``: ``"median_frequency"``, ``"sqrt_median_frequency"`` or explicit values.
    """
    if not isinstance(spec, str):
        return np.asarray(spec, dtype=np.float64)
    if spec not in WEIGHTINGS:
        raise ValueError(f"class weights {spec!r}; expected one of {WEIGHTINGS} or a list")
    source = dataset if dataset is not None else build_dataset(data_format, root, split=split)
    report = check_dataset(source)
    if report.problems:
        raise ValueError("cannot compute class weights:\n" + "\n".join(report.problems[:10]))
    weights = median_frequency_weights(report)
    return np.sqrt(weights) if spec == "sqrt_median_frequency" else weights


def _last_conv(model: nn.Module, example: Tensor) -> nn.Conv2d | nn.ConvTranspose2d:
    """The convolution that runs last in ``model.classifier`` (the logits' producer).

    A transposed convolution (ERFNet's output layer) adds its bias once per output pixel,
    so a per-class shift folds into it just as exactly.
    """
    order: list[nn.Conv2d | nn.ConvTranspose2d] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
        for m in model.classifier.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    if not order:
        raise ValueError(f"{type(model).__name__}.classifier has no Conv2d to fold a bias into")
    return order[-1]


@torch.no_grad()
def fold_class_bias(model: nn.Module, shift: Sequence[float] | Tensor) -> nn.Module:
    """Add ``shift[c]`` to every logit of class ``c``, in place, through the last conv's bias.

    Exact for the zoo's heads: bilinear upsampling (weights summing to 1) and pixel
    shuffle (DUC: each class owns ``upscale**2`` channels) carry a per-class constant
    through unchanged. Checked on a random input: raises ``ValueError`` (and restores the
    bias) if the logits did not move by exactly ``shift``.
    """
    num_classes = int(model.num_classes)
    shift_t = torch.as_tensor(shift, dtype=torch.float32).flatten()
    if shift_t.numel() != num_classes:
        raise ValueError(f"shift has {shift_t.numel()} values; the model has {num_classes} classes")
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    example = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    example = example.to(param.device, param.dtype)
    before = model(example)
    conv = _last_conv(model, example)
    if conv.out_channels % num_classes:
        raise ValueError(
            f"last conv has {conv.out_channels} channels, not a multiple of {num_classes} classes"
        )
    per_class = conv.out_channels // num_classes  # DUC: upscale**2 channels per class
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels, device=param.device))
    saved = conv.bias.detach().clone()
    conv.bias.add_(shift_t.repeat_interleave(per_class).to(conv.bias))
    moved = model(example) - before
    expected = shift_t.to(moved)[None, :, None, None].expand_as(moved)
    if not torch.allclose(moved, expected, atol=1e-4 * (1 + float(shift_t.abs().max()))):
        conv.bias.copy_(saved)
        raise ValueError(
            "the logits did not move by the shift (a layer after the last conv is not "
            "shift-equivariant); bias left unchanged"
        )
    model.train(was_training)
    return model


@dataclass
class PriorSearch:
    """mIoU and pixel accuracy of each ``alpha``; ``best`` maximises mIoU."""

    alphas: list[float]
    miou: list[float]
    pixel_acc: list[float]
    per_class_iou: list[list[float]]
    log_weights: list[float]

    @property
    def best(self) -> float:
        return self.alphas[int(np.nanargmax(self.miou))]

    def shift(self, alpha: float) -> list[float]:
        return [-alpha * v for v in self.log_weights]

    def table(self, class_names: Sequence[str] | None = None) -> str:
        names = list(class_names or [str(i) for i in range(len(self.log_weights))])
        head = "| alpha | mIoU | pixel acc | " + " | ".join(names) + " |"
        rows = [head, "|---" * (3 + len(names)) + "|"]
        for i, alpha in enumerate(self.alphas):
            mark = " *" if alpha == self.best else ""
            ious = " | ".join(f"{100 * v:.1f}" for v in self.per_class_iou[i])
            rows.append(
                f"| {alpha:+.2f}{mark} | {100 * self.miou[i]:.2f} | "
                f"{100 * self.pixel_acc[i]:.2f} | {ious} |"
            )
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alphas": self.alphas,
            "miou": self.miou,
            "pixel_acc": self.pixel_acc,
            "best_alpha": self.best,
        }


@torch.no_grad()
def search_prior(
    model: nn.Module,
    dataset: Dataset,
    class_weights: Sequence[float] | np.ndarray,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    device: str | torch.device = "cpu",
    mode: str = "whole",
    ignore_index: int = IGNORE_INDEX,
    max_samples: int | None = None,
    progress: bool = False,
) -> PriorSearch:
    """Score every ``alpha`` from one forward pass per image (logits ``- alpha * log w``).

    ``mode``: ``"whole"`` or ``"slide"`` (both average logits, so the shift is exact);
    test-time augmentation averages probabilities and is not supported here.
    """
    if mode not in ("whole", "slide"):
        raise ValueError(f"mode {mode!r}; the prior search needs logits: 'whole' or 'slide'")
    weights = np.asarray(class_weights, dtype=np.float64)
    num_classes = int(model.num_classes)
    if weights.shape != (num_classes,) or not (weights > 0).all():
        raise ValueError(
            f"class weights {weights.tolist()}: expected {num_classes} positive values "
            "(a class absent from the training masks has weight 0; pass explicit weights)"
        )
    log_w = torch.as_tensor(np.log(weights), dtype=torch.float32)
    predictor = make_predictor(model, device, mode=mode)  # type: ignore[arg-type]
    matrices = [ConfusionMatrix(num_classes, ignore_index=ignore_index) for _ in alphas]
    total = len(dataset) if max_samples is None else min(max_samples, len(dataset))  # type: ignore[arg-type]
    shifts = [(-a * log_w)[None, :, None, None] for a in alphas]
    for index in tqdm(range(total), desc="prior search", unit="img", disable=not progress):
        image, mask = dataset[index]
        logits = predictor.scores(image[None]).float().cpu()
        for matrix, shift in zip(matrices, shifts):
            matrix.update((logits + shift).argmax(1), mask[None])
    return PriorSearch(
        alphas=[float(a) for a in alphas],
        miou=[m.miou() for m in matrices],
        pixel_acc=[m.pixel_acc() for m in matrices],
        per_class_iou=[m.per_class_iou().tolist() for m in matrices],
        log_weights=log_w.tolist(),
    )
