"""Peak memory of whole-image vs sliding-window prediction on a 4096x2048 image.

Each measurement runs in a fresh subprocess and reads the kernel's peak resident set size
(``VmHWM`` in /proc/self/status) after ``Predictor.predict``: tracemalloc does not see
torch's allocations and an allocator keeps freed pages, so only a clean process gives a
clean peak.

    .venv/bin/python benchmarks/infer_memory.py --backbone resnet18 --output-stride 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np, torch
from atrous.infer import Predictor
from atrous.infer.bench import peak_rss_mb, rss_mb
from atrous.models import build_model
args = json.loads(sys.argv[1])
if args["limit_gb"]:
    import resource
    limit = int(args["limit_gb"] * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
torch.manual_seed(0)
model = build_model("deeplabv3", num_classes=21, backbone=args["backbone"],
                    output_stride=args["output_stride"]).eval()
image = np.random.default_rng(0).integers(0, 256, (args["height"], args["width"], 3), dtype=np.uint8)
predictor = Predictor(model, mode=args["mode"], window=args["window"], batch_size=args["batch"])
before = rss_mb()
start = time.perf_counter()
mask = predictor.predict(image)
print(json.dumps({"seconds": time.perf_counter() - start, "rss_before_mb": before,
                  "peak_mb": peak_rss_mb(), "shape": list(mask.shape)}))
"""


def measure(settings: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(settings)], capture_output=True, text=True
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1][:160]
        return {"error": f"exit {done.returncode}: {last}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--output-stride", type=int, default=8)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--height", type=int, default=2048)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2, help="windows per forward")
    parser.add_argument("--modes", default="slide,whole")
    parser.add_argument(
        "--limit-gb",
        type=float,
        default=12.0,
        help="address-space cap of each child (a shared machine must survive the whole-image run)",
    )
    args = parser.parse_args()
    print(
        f"deeplabv3 {args.backbone} OS{args.output_stride}, {args.width}x{args.height} image, "
        f"window {args.window}, {args.batch} windows per forward"
    )
    print("| mode | peak RSS MB | RSS before predict MB | seconds |")
    print("|---|---|---|---|")
    for mode in args.modes.split(","):
        result = measure(
            {
                "backbone": args.backbone,
                "output_stride": args.output_stride,
                "width": args.width,
                "height": args.height,
                "window": args.window,
                "batch": args.batch,
                "mode": mode,
                "limit_gb": args.limit_gb,
            }
        )
        if "error" in result:
            print(f"| {mode} | failed: {result['error']} | | |")
        else:
            print(
                f"| {mode} | {result['peak_mb']:.0f} | {result['rss_before_mb']:.0f} | "
                f"{result['seconds']:.1f} |"
            )


if __name__ == "__main__":
    main()
