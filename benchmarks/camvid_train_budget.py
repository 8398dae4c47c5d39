"""Train a CamVid recipe for a fixed wall-clock budget, then evaluate and save the final model.

Why a time budget: on a shared GPU (the main recipe and four ablations ran side by side
on one H200) nobody knows the throughput beforehand, so an epoch count cannot be chosen.
This script keeps the engine's training loop and replaces only two things, for this run:

- the poly learning-rate decay runs over *time*: the schedule position is
  ``max(iteration / total_iters, elapsed / budget)``, so the rate reaches zero exactly
  when the budget is spent; then the script sends itself SIGTERM, which the trainer
  answers by finishing the step and returning (``status == "interrupted"``);
- checkpoints are not written (a 150 MB model + optimiser state every epoch is pure
  overhead for a run that is never resumed).

The final model (not the best-on-val one, which would overfit the val figure) is then
evaluated on the val split and written with ``save_pretrained`` (fp16 weights with
``--half``), with a ``summary.json`` (metrics, per-class IoU, iterations, images/s).

    python benchmarks/camvid_train_budget.py --config configs/camvid_gpu.yaml \
        --set data.root=.devcarry/camvid --budget 420 --out /tmp/runs/main --half
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget", type=float, required=True, help="training seconds")
    parser.add_argument("--name", default=None, help="label in the printed progress")
    parser.add_argument("--half", action="store_true", help="save fp16 weights")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of this process")
    parser.add_argument("--eval-workers", type=int, default=3)
    parser.add_argument("--max-val-samples", type=int, default=None, help="smoke tests only")
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds")
    args = parser.parse_args(argv)

    import torch
    from torch.utils.data import DataLoader

    import atrous.engine.trainer as trainer_module
    from atrous.data import build_dataset
    from atrous.engine import evaluate, load_config
    from atrous.engine.config import config_to_dict
    from atrous.engine.losses import poly_lr_factor
    from atrous.models import save_pretrained

    torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    name = args.name or Path(args.out).name
    config = load_config(args.config, args.overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    clock: dict[str, float] = {"start": 0.0, "last_report": 0.0, "iteration": 0, "sent": 0}

    def schedule(
        iteration: int,
        total: int,
        *,
        warmup_iters: int = 0,
        warmup_ratio: float = 0.1,
        power: float = 0.9,
    ) -> float:
        """The engine's warm-up, then ``(1 - max(iteration share, time share)) ** power``."""
        now = time.perf_counter()
        if not clock["start"]:
            clock["start"] = clock["last_report"] = now
        elapsed = now - clock["start"]
        clock["iteration"] = iteration
        if elapsed >= args.budget and not clock["sent"]:
            clock["sent"] = 1
            os.kill(os.getpid(), signal.SIGTERM)  # the trainer finishes this step and returns
        if now - clock["last_report"] >= args.report_every:
            clock["last_report"] = now
            rate = iteration * config.data.batch_size / max(elapsed, 1e-9)
            print(f"[{name}] {elapsed:5.0f}s iter {iteration} ({rate:.0f} img/s)", flush=True)
        if iteration < warmup_iters:
            return poly_lr_factor(
                iteration, total, warmup_iters=warmup_iters, warmup_ratio=warmup_ratio
            )
        position = max(iteration / max(total, 1), elapsed / args.budget)
        return max(0.0, 1.0 - min(position, 1.0)) ** power

    trainer_module.poly_lr_factor = schedule
    trainer_module.save_checkpoint = lambda *a, **k: None
    trainer_module.prune_checkpoints = lambda *a, **k: None

    started = time.perf_counter()
    result = trainer_module.train(config, out, progress=False)
    train_seconds = time.perf_counter() - (clock["start"] or started)
    iterations = int(clock["iteration"]) + 1
    model = result.model
    assert model is not None
    device = next(model.parameters()).device

    val_set = build_dataset(config.data.format, config.data.root, split=config.data.val_split)
    loader = DataLoader(val_set, batch_size=1, num_workers=args.eval_workers)
    evaluated = evaluate(
        model,
        loader,
        num_classes=val_set.num_classes,
        ignore_index=config.loss.ignore_index,
        mode=config.eval.mode,
        boundary_tolerance=config.eval.boundary_tolerance,
        class_names=val_set.class_names,
        device=device,
        max_samples=args.max_val_samples,
    )
    model_to_save = model.cpu().half() if args.half else model.cpu()
    summary = {
        "name": name,
        "config": config_to_dict(config),
        "status": result.status,
        "budget_s": args.budget,
        "train_seconds": train_seconds,
        "iterations": iterations,
        "images_seen": iterations * config.data.batch_size,
        "epochs_equivalent": iterations * config.data.batch_size / 367,
        "images_per_s": iterations * config.data.batch_size / max(train_seconds, 1e-9),
        "history": result.history,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "val_split": f"{config.data.root} [{config.data.val_split}]",
        "eval": evaluated.to_dict(),
    }
    save_pretrained(
        model_to_save,  # type: ignore[arg-type]
        out / "final",
        class_names=val_set.class_names,
        palette=val_set.palette,
        metadata={
            "dataset": "CamVid (SegNet split, 11 classes)",
            "recipe": config_to_dict(config),
            "train_seconds": round(train_seconds, 1),
            "iterations": iterations,
            "device": summary["device"],
        },
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    metrics = evaluated.metrics
    print(
        f"[{name}] done: {result.status}, {iterations} iters in {train_seconds:.0f}s "
        f"({summary['images_per_s']:.0f} img/s, {summary['epochs_equivalent']:.1f} epochs), "
        f"val mIoU {100 * metrics['miou']:.2f}, boundary F {100 * metrics['boundary_f1']:.2f}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
