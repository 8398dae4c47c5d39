"""Training throughput: atrous's engine vs a plain PyTorch loop, same model, batch and data.

Both loops read the same CamVid batches (same dataset class, seeded transforms and
sample order, same DataLoader settings), run the same model with SGD + cross-entropy, and are timed over
the same number of iterations including data loading. They alternate (plain, atrous,
plain, atrous, ...) so machine load hits both alike; the medians are reported.

    .venv/bin/python benchmarks/engine_throughput.py --root ../shared/datasets/camvid

``--profile`` runs each loop once under cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from atrous.data import CamVidDataset, train_transforms
from atrous.engine import load_config, train
from atrous.models import build_model


def plain_loop(args: argparse.Namespace) -> float:
    """The loop one writes by hand: DataLoader, forward, CE, backward, step."""
    torch.manual_seed(0)
    dataset = CamVidDataset(
        args.root,
        split="train",
        transform=train_transforms(crop_size=args.crop, scale_range=(0.5, 2.0)),
    )
    # The engine's order for epoch 0 (a one-process DistributedSampler seeded with the
    # run's seed) and the dataset's seeded augmentation: both loops see the same batches.
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
    loader = DataLoader(
        dataset, batch_size=args.batch, sampler=sampler, drop_last=True, num_workers=args.workers
    )
    model = build_model(args.model, num_classes=11, **args.options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()
    images_done = 0
    started = time.perf_counter()
    for step, (images, masks) in enumerate(loader):
        if step >= args.iters:
            break
        loss = F.cross_entropy(model(images), masks, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        images_done += images.shape[0]
    return images_done / (time.perf_counter() - started)


def atrous_engine(args: argparse.Namespace) -> float:
    """``atrous.engine.train`` for the same iterations; its own images/s (training loop only)."""
    options = "{" + ", ".join(f"{k}: {v}" for k, v in args.options.items()) + "}"
    config = load_config(
        None,
        [
            "data.format=camvid",
            f"data.root={args.root}",
            f"data.crop_size=[{args.crop[0]}, {args.crop[1]}]",
            f"data.batch_size={args.batch}",
            f"data.num_workers={args.workers}",
            "data.max_val_samples=1",
            f"model.name={args.model}",
            f"model.options={options}",
            "loss.aux_weight=0",
            "schedule.epochs=1",
            f"schedule.iters_per_epoch={args.iters}",
            "train.device=cpu",
        ],
    )
    with tempfile.TemporaryDirectory() as out:
        result = train(config, out, progress=False)
    return result.history[0]["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/datasets/camvid")
    parser.add_argument("--model", default="deeplabv3plus")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--crop", type=int, nargs=2, default=(192, 256))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one run of each")
    args = parser.parse_args()
    args.options = {"backbone": args.backbone} if args.model != "dilated_net" else {"width": 32}
    if args.profile:
        import cProfile
        import pstats

        for loop in (plain_loop, atrous_engine):
            profile = cProfile.Profile()
            profile.enable()
            rate = loop(args)
            profile.disable()
            print(f"== {loop.__name__}: {rate:.2f} img/s")
            pstats.Stats(profile).sort_stats("tottime").print_stats(12)
        return
    plain, engine = [], []
    for _ in range(args.repeats):
        plain.append(plain_loop(args))
        engine.append(atrous_engine(args))
        print(f"plain {plain[-1]:.2f} img/s   atrous {engine[-1]:.2f} img/s", flush=True)
    p, e = statistics.median(plain), statistics.median(engine)
    print(
        f"model {args.model} {args.options} crop {args.crop} batch {args.batch} iters {args.iters}"
    )
    print(f"median: plain {p:.2f} img/s, atrous {e:.2f} img/s, ratio atrous/plain {e / p:.3f}")


if __name__ == "__main__":
    main()
