"""A corpus of odd, corrupt and unusual image files through ``atrous predict`` and the
service: every file must be either predicted or named with a reason; no traceback, no
answer of 500.

The corpus (``--count`` files, default 1,066): valid unusual images (16-bit, CMYK,
palette, greyscale+alpha, 1-bit, animated GIF, EXIF-rotated, tiny, a DDS with a pixel
format Pillow lacks, an empty file, text named .png, a decompression-bomb header) and
mutations of real PNG/JPEG/TIFF/WebP/BMP/GIF/DDS files (``atrous.data.fuzz``).

    python benchmarks/odd_corpus.py --out runs/odd_corpus [--count 1066] [--model camvid]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

from atrous.data.fuzz import FORMATS, MUTATIONS, base_files, mutate, unusual_images

SUFFIX = {
    "PNG": "png",
    "JPEG": "jpg",
    "TIFF": "tif",
    "WEBP": "webp",
    "BMP": "bmp",
    "GIF": "gif",
    "DDS": "dds",
}


def build_corpus(folder: Path, count: int, seed: int) -> list[Path]:
    """Write ``count`` files into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    files = dict(unusual_images())
    bases = base_files(size=(24, 32), seed=seed)
    rng = random.Random(seed)
    index = 0
    while len(files) < count:
        name = FORMATS[index % len(FORMATS)]
        kinds = [rng.choice(MUTATIONS) for _ in range(rng.randint(1, 3))]
        data = bases[name]
        for kind in kinds:
            data = mutate(data, kind, rng)
        files[f"m{index:04d}_{'-'.join(kinds)}.{SUFFIX[name]}"] = data
        index += 1
    paths = []
    for file_name, data in files.items():
        path = folder / file_name
        path.write_bytes(data)
        paths.append(path)
    return paths


def run_predict(corpus: Path, out: Path, model: str) -> dict[str, int]:
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "atrous",
            "predict",
            str(corpus),
            "--model",
            model,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    inputs = sorted(p.name for p in corpus.iterdir())
    predicted = {p.stem for p in out.glob("*.png")} if out.exists() else set()
    named = {name for name in inputs if name in output}
    unaccounted = [n for n in inputs if Path(n).stem not in predicted and n not in named]
    return {
        "files": len(inputs),
        "predicted": len(predicted),
        "named with a reason": len(named - {n for n in inputs if Path(n).stem in predicted}),
        "neither": len(unaccounted),
        "tracebacks": output.count("Traceback"),
        "exit status": done.returncode,
        "seconds": round(seconds),
    }


def run_service(corpus: Path, model: str) -> dict[str, int]:
    import warnings

    warnings.filterwarnings("ignore")
    from fastapi.testclient import TestClient

    from atrous.serve import ServeConfig, create_app

    statuses: dict[str, int] = {}
    config = ServeConfig(model=model, max_upload_bytes=20_000_000)
    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.1)
        for path in sorted(corpus.iterdir()):
            code = client.post("/v1/segment", content=path.read_bytes()).status_code
            key = f"{code // 100}xx" if code != 500 else "500"
            statuses[key] = statuses.get(key, 0) + 1
        statuses["healthy after"] = int(client.get("/healthz").status_code == 200)
    return statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/odd_corpus")
    parser.add_argument("--count", type=int, default=1066)
    parser.add_argument("--model", default="camvid")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    corpus = out / "corpus"
    build_corpus(corpus, args.count, args.seed)
    predict = run_predict(corpus, out / "masks", args.model)
    print("predict:", predict)
    service = run_service(corpus, args.model)
    print("service:", service)
    bad = predict["neither"] or predict["tracebacks"] or service.get("500", 0)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
