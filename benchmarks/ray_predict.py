"""Images per second: Ray Data prediction with 1 and 2 actors against ``atrous predict``.

The same images, the same model and options, the same machine, one run each:

- ``atrous predict``: a fresh process (torch's default threads), model load included,
  run first and again last (the spread shows how much the machine's load drifted);
- Ray Data, 1 actor holding every CPU (torch threads = CPUs), then N actors of one CPU
  each (``--actors``): actor start and model load included, the Ray instance itself
  started once beforehand (its start-up time is printed separately, as a cluster is
  started once for many jobs).

Every Ray run writes into a fresh folder and its masks are checked byte for byte against
the local ones, so a speed-up can never come from different work.

    .venv/bin/python benchmarks/ray_predict.py --images ../shared/datasets/camvid/val \
        --count 40 --model camvid
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def local_run(files: list[Path], out: Path, model: str, extra: list[str]) -> float:
    """Seconds of ``atrous predict`` over ``files`` in a fresh process."""
    command = [sys.executable, "-m", "atrous", "predict", *map(str, files)]
    command += ["--model", model, "--out", str(out), *extra]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"atrous predict failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def same_outputs(first: Path, second: Path) -> bool:
    names = sorted(p.name for p in first.iterdir())
    if names != sorted(p.name for p in second.iterdir()):
        return False
    return all((first / n).read_bytes() == (second / n).read_bytes() for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="folder of images")
    parser.add_argument("--count", type=int, default=40, help="first N images, sorted")
    parser.add_argument("--model", default="camvid")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--fast", action="store_true", help="the fast CPU path, everywhere")
    parser.add_argument("--actors", type=int, default=2, help="the multi-actor run's actors")
    args = parser.parse_args()

    import ray

    from atrous.infer import expand_inputs
    from atrous.scale.ray_predict import PredictOptions, predict_with_ray

    files = expand_inputs([args.images])[: args.count]
    cpus = os.cpu_count() or 1
    extra = ["--batch-size", str(args.batch_size)] + (["--fast"] if args.fast else [])
    options = PredictOptions(model=args.model, batch_size=args.batch_size, fast=args.fast)
    rows = []
    with tempfile.TemporaryDirectory(prefix="atrous-ray-bench-") as scratch:
        root = Path(scratch)
        seconds = local_run(files, root / "local", args.model, extra)
        rows.append({"run": "atrous predict", "threads": "torch default", "seconds": seconds})
        started = time.perf_counter()
        for attempt in range(3):
            try:
                ray.init(num_cpus=cpus, include_dashboard=False, configure_logging=False)
                break
            except Exception as error:  # Ray waits a fixed 30 s for its raylet to register
                if "timed out during startup" not in str(error) or attempt == 2:
                    raise
                print(f"ray.init timed out on the loaded machine, retrying ({error})")
                ray.shutdown()
        ray_start = time.perf_counter() - started
        for actors, cpus_per_actor in [(1, float(cpus)), (args.actors, 1.0)]:
            out = root / f"ray{actors}"
            started = time.perf_counter()
            result = predict_with_ray(
                files,
                out,
                options,
                actors=actors,
                cpus_per_actor=cpus_per_actor,
                progress=False,
            )
            seconds = time.perf_counter() - started
            assert result.predicted == len(files) and not result.failures, result
            if not same_outputs(root / "local", out):
                raise SystemExit(f"Ray with {actors} actor(s) wrote other masks than predict")
            rows.append(
                {
                    "run": f"Ray Data, {actors} actor(s)",
                    "threads": f"{int(cpus_per_actor)} per actor",
                    "seconds": seconds,
                }
            )
        ray.shutdown()
        # Once more at the end: on a shared machine the load drifts, and the spread of
        # the two local runs says how far the figures can be trusted.
        seconds = local_run(files, root / "local_again", args.model, extra)
        rows.append(
            {"run": "atrous predict, again", "threads": "torch default", "seconds": seconds}
        )
    load = os.getloadavg()
    print(
        json.dumps(
            {
                "images": len(files),
                "model": args.model,
                "options": extra,
                "cpus": cpus,
                "ray_init_s": round(ray_start, 1),
                "loadavg_after": [round(v, 2) for v in load],
                "runs": rows,
            }
        )
    )
    print(f"\n{len(files)} images, model {args.model}, {cpus} CPUs; ray.init {ray_start:.1f} s\n")
    print("| run | torch threads | seconds | images/s |")
    print("|---|---|---:|---:|")
    for row in rows:
        rate = len(files) / row["seconds"]
        print(f"| {row['run']} | {row['threads']} | {row['seconds']:.1f} | {rate:.2f} |")


if __name__ == "__main__":
    main()
