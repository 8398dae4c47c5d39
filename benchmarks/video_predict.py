"""Video prediction against image prediction on the same frames: memory and speed.

Encodes CamVid frames (one drive, in order, looped to the length asked) as a lossless
clip, then runs, each in its own process so peak RSS is the command's own:
``atrous predict`` on a short clip, on the long clip, and on the long clip's frames as
PNG files; compares peak RSS (long vs short) and frames per second (clip vs PNGs), and
checks that the mask video equals the PNG masks frame by frame.

    python benchmarks/video_predict.py --root ../shared/datasets/camvid --model camvid_erfnet \\
        --seconds 120 --short-seconds 10 --fps 5 --out runs/video_bench
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def encode(frames: list[Path], count: int, fps: int, path: Path, png_dir: Path | None) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=Fraction(fps))
        first = Image.open(frames[0])
        stream.width, stream.height, stream.pix_fmt = first.width, first.height, "bgr0"
        for index in range(count):
            image = np.asarray(Image.open(frames[index % len(frames)]).convert("RGB"))
            if png_dir is not None:
                Image.fromarray(image).save(png_dir / f"{index:06d}.png")
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def run(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one ``atrous`` command in a child process."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "atrous", *argv], check=True, capture_output=True)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, peak_kb / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--model", default="camvid")
    parser.add_argument("--drive", default="0001TP")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--short-seconds", type=float, default=10)
    parser.add_argument("--fps", type=int, default=5)
    parser.add_argument("--out", default="runs/video_bench")
    args = parser.parse_args()
    out = Path(args.out)
    (out / "pngs").mkdir(parents=True, exist_ok=True)
    frames = sorted(
        p
        for split in ("train", "val")
        for p in (Path(args.root) / split).glob(f"{args.drive}_*.png")
    )
    long_count, short_count = int(args.seconds * args.fps), int(args.short_seconds * args.fps)
    encode(frames, short_count, args.fps, out / "short.mkv", None)
    encode(frames, long_count, args.fps, out / "long.mkv", out / "pngs")
    # Each command in a fresh process; RUSAGE_CHILDREN's maximum only grows, so the
    # smallest job runs first and each reading is that job's peak or an earlier one's.
    short_s, short_mb = run(
        ["predict", str(out / "short.mkv"), "--model", args.model, "--out", str(out / "short")]
    )
    long_s, long_mb = run(
        ["predict", str(out / "long.mkv"), "--model", args.model, "--out", str(out / "long")]
    )
    png_s, _ = run(
        ["predict", str(out / "pngs"), "--model", args.model, "--out", str(out / "png_masks")]
    )
    from atrous.infer.video import read_mask_video
    from atrous.models import load_pretrained

    palette = load_pretrained(args.model).palette
    same = 0
    for index, mask in enumerate(read_mask_video(out / "long" / "long_mask.mkv", palette)):
        png = np.asarray(Image.open(out / "png_masks" / f"{index:06d}.png"))
        same += int(np.array_equal(mask, png))
    print(f"short clip: {short_count} frames, {short_s:.1f} s, peak RSS {short_mb:.0f} MB")
    print(
        f"long clip:  {long_count} frames, {long_s:.1f} s, peak RSS {long_mb:.0f} MB "
        f"({long_mb / short_mb:.2f}x the short clip's)"
    )
    print(
        f"PNG files:  {long_count} frames, {png_s:.1f} s; clip throughput "
        f"{long_count / long_s:.2f} vs {long_count / png_s:.2f} frames/s "
        f"({(long_count / long_s) / (long_count / png_s):.2f}x)"
    )
    print(f"masks equal frame for frame: {same} of {long_count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
