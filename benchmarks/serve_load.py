"""Load test of ``atrous serve``: N requests at concurrency C against 127.0.0.1, p50/p99.

Starts ``atrous serve`` in a subprocess on a free loopback port (the client and server
are separate processes, as in use), waits for ``/readyz``, sends ``--requests`` uploads
from ``--concurrency`` concurrent clients, and reports latency percentiles and errors.
Bounded: it gives up after ``--time-limit`` seconds and never talks to anything but
127.0.0.1.

    .venv/bin/python benchmarks/serve_load.py --requests 200 --concurrency 8

Without ``--model`` it serves a randomly initialised ``dilated_net`` (11 classes, the
default width) saved to a temporary folder: latency does not depend on the weights.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_model(folder: Path) -> str:
    from atrous.models import build_model, save_pretrained

    model = build_model("dilated_net", num_classes=11)
    return str(save_pretrained(model, folder / "dilated_net"))


def test_image(size: int) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


async def run_load(
    url: str, body: bytes, *, requests: int, concurrency: int, deadline: float
) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    next_index = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in next_index:
            if time.monotonic() > deadline:
                errors.append("time limit reached")
                return
            started = time.perf_counter()
            try:
                response = await client.post(f"{url}/v1/segment?format=png", content=body)
            except httpx.HTTPError as error:
                errors.append(f"{type(error).__name__}: {error}")
                continue
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:200]}")

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies, errors


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model name or folder (default: random dilated_net)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=256, help="square test image side")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds, all included")
    parser.add_argument("--max-concurrent", type=int, default=1, help="server inference slots")
    parser.add_argument("--torch-threads", type=int, help="passed to atrous serve")
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be >= 1")

    deadline = time.monotonic() + args.time_limit
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or default_model(Path(folder))
        atrous = Path(sys.executable).with_name("atrous")
        command = [
            str(atrous), "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
            "--max-concurrent", str(args.max_concurrent),
            "--max-queue", str(max(16, args.concurrency)),
        ]  # fmt: skip
        if args.torch_threads:
            command += ["--torch-threads", str(args.torch_threads)]
        log = open(Path(folder) / "server.log", "w+")  # noqa: SIM115
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
        try:
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    print(log.read(), file=sys.stderr)
                    print("server did not become ready", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            body = test_image(args.image_size)
            # One warm-up request (first-call allocations), not counted.
            httpx.post(f"{url}/v1/segment?format=png", content=body, timeout=120)
            started = time.perf_counter()
            latencies, errors = asyncio.run(
                run_load(
                    url,
                    body,
                    requests=args.requests,
                    concurrency=args.concurrency,
                    deadline=deadline,
                )
            )
            wall = time.perf_counter() - started
            healthy = httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        finally:
            server.terminate()
            server.wait(timeout=60)
            log.close()

    print(f"model: {args.model or 'dilated_net (random init, width 32, 11 classes)'}")
    print(
        f"requests: {len(latencies)} answered of {args.requests}, concurrency "
        f"{args.concurrency}, image {args.image_size}x{args.image_size} PNG "
        f"({len(body):,} bytes), server slots {args.max_concurrent}, "
        f"torch threads {args.torch_threads or 'default'}"
    )
    print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    if latencies:
        print(
            f"latency ms: p50 {1000 * percentile(latencies, 50):.0f}  "
            f"p90 {1000 * percentile(latencies, 90):.0f}  "
            f"p99 {1000 * percentile(latencies, 99):.0f}  "
            f"mean {1000 * statistics.fmean(latencies):.0f}  max {1000 * max(latencies):.0f}"
        )
        print(f"throughput: {len(latencies) / wall:.1f} requests/s over {wall:.1f} s")
    print(f"healthy after: {healthy}")
    return 0 if not errors and len(latencies) == args.requests and healthy else 1


if __name__ == "__main__":
    sys.exit(main())
