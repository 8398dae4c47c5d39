"""The long fuzzing run of the image readers, recorded in BENCHMARKS.md.

Mutates real PNG, JPEG, TIFF, WebP, BMP, GIF and DDS files (``atrous.data.fuzz``) and
feeds them to ``read_image`` (what predict, eval, training and the datasets use) and to
the service's upload decoder (``header_size`` + ``decode_image``). Counts what each
input did: decoded, the documented error, or anything else (an unexpected exception,
which is a bug: its type, message and the input's recipe are printed).

    python benchmarks/fuzz_decoders.py --inputs 100000 --seed 0
"""

from __future__ import annotations

import argparse
import collections
import logging
import random
import time

from tqdm import tqdm

from atrous.data.fuzz import FORMATS, MUTATIONS, base_files, mutate
from atrous.data.io import ImageError, read_image
from atrous.serve.uploads import UploadError, decode_image, header_size

MAX_PIXELS = 1_000_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # Pillow's warnings on broken files are logged per file by read_image; here they
    # would be a hundred thousand lines. Errors still count below.
    logging.disable(logging.WARNING)
    bases = base_files()
    rng = random.Random(args.seed)
    counts: collections.Counter[str] = collections.Counter()
    unexpected = []
    started = time.perf_counter()
    for index in tqdm(range(args.inputs), unit="input", mininterval=10):
        name = FORMATS[index % len(FORMATS)]
        kinds = [rng.choice(MUTATIONS) for _ in range(rng.randint(1, 3))]
        data = bases[name]
        for kind in kinds:
            data = mutate(data, kind, rng)
        for reader in ("read_image", "upload"):
            try:
                if reader == "read_image":
                    read_image(data, max_pixels=MAX_PIXELS, name="fuzzed")
                else:
                    header_size(data)
                    decode_image(data, max_pixels=MAX_PIXELS)
                counts[f"{reader}: decoded"] += 1
            except (ImageError, UploadError):
                counts[f"{reader}: documented error"] += 1
            except Exception as error:  # the bug this run looks for
                counts[f"{reader}: UNEXPECTED {type(error).__name__}"] += 1
                unexpected.append((index, name, kinds, reader, repr(error)[:200]))
    seconds = time.perf_counter() - started
    print(f"{args.inputs} inputs x 2 readers in {seconds:.0f} s (seed {args.seed})")
    for key, value in sorted(counts.items()):
        print(f"  {key}: {value}")
    print(f"unexpected: {len(unexpected)}")
    for row in unexpected[:20]:
        print("  ", row)
    return 1 if unexpected else 0


if __name__ == "__main__":
    raise SystemExit(main())
