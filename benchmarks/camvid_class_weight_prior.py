"""How much do median-frequency class weights cost the shipped model in val mIoU?

A classifier trained with class weights ``w`` learns (approximately) posteriors
proportional to ``w_c * p(c | x)``. Subtracting ``alpha * log(w_c)`` from its logits
undoes a fraction ``alpha`` of the weighting at test time: ``alpha = 0`` is the model
as trained (full median-frequency weights), ``alpha = 0.5`` approximates square-root
weights and ``alpha = 1`` approximates no weights. One forward pass over CamVid val,
every ``alpha`` scored from the same logits. Evidence for the CPU recipe's choice of
``loss.class_weights``; not a substitute for training with each weighting.

    python benchmarks/camvid_class_weight_prior.py --root ../shared/datasets/camvid \
        --model <camvid model of git 254488a> --threads 1

The recorded table (benchmarks/results/camvid.md) is of the shipped model of git 254488a
(median-frequency weights; ``git worktree add /tmp/s1 254488a`` then ``--model
/tmp/s1/atrous/models/weights/camvid``). ``atrous adjust-prior`` is the tool for users;
it chooses alpha on the training split.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--model", default="camvid")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    import torch

    from atrous.data import build_dataset, check_dataset, median_frequency_weights
    from atrous.engine.evaluate import make_predictor
    from atrous.engine.metrics import ConfusionMatrix
    from atrous.models import load_pretrained

    if args.threads:
        torch.set_num_threads(args.threads)
    weights = median_frequency_weights(
        check_dataset(build_dataset("camvid", args.root, split="train"))
    )
    log_w = torch.log(torch.as_tensor(weights, dtype=torch.float32))[None, :, None, None]
    model = load_pretrained(args.model).eval()
    predictor = make_predictor(model, "cpu")
    val = build_dataset("camvid", args.root, split="val")
    matrices = {a: ConfusionMatrix(model.num_classes) for a in args.alphas}
    with torch.inference_mode():
        for index in range(len(val)):
            image, mask = val[index]
            logits = predictor.scores(image[None])
            for alpha, matrix in matrices.items():
                matrix.update((logits - alpha * log_w).argmax(1), mask[None])
    names = val.class_names
    print("median-frequency weights:", ", ".join(f"{n} {w:.2f}" for n, w in zip(names, weights)))
    print("| alpha | ~weights | val mIoU | pixel acc | " + " | ".join(names) + " |")
    print("|---" * (4 + len(names)) + "|")
    for alpha, matrix in matrices.items():
        label = {0.0: "median freq", 0.5: "~sqrt", 1.0: "~none"}.get(alpha, f"w^{1 - alpha:g}")
        ious = " | ".join(f"{100 * v:.1f}" for v in matrix.per_class_iou().tolist())
        print(
            f"| {alpha:g} | {label} | {100 * matrix.miou():.2f} | {100 * matrix.pixel_acc():.2f} | {ious} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
