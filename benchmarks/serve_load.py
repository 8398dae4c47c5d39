"""Load and fault test of ``atrous serve`` on 127.0.0.1: cost admission under load, and clients that hang up.

Starts ``atrous serve`` in a subprocess on a free loopback port (client and server are
separate processes, as in use) and runs, each bounded in requests and time:

1. **load**: ``--requests`` uploads from ``--concurrency`` clients; latency percentiles,
   throughput, errors, and what ``/metrics`` counted (requests by status, mean batch).
2. **large upload**: a 4000x3999 PNG (mostly flat, about 50 kB, inside the default
   16-megapixel limit) against the default 30 s timeout: status, time to the answer,
   server memory (idle, peak while it was handled, after), and the latency of the next
   normal request against its usual latency. Target: memory < 2x idle, next request
   < 2x usual.
3. **hung-up clients**: eight clients upload a normal image and hang up after 0.5 s;
   what still runs or waits 1 s later, and how many queued jobs were skipped.
4. **windows cancelled** (second server, ``--request-timeout 600`` so that the large
   image is admitted and runs through sliding windows): the client hangs up after 6 s;
   how long the server stays busy after that, and its peak memory.

    .venv/bin/python benchmarks/serve_load.py --requests 100 --concurrency 8 --torch-threads 1

Without ``--model`` it serves a randomly initialised ``dilated_net`` (11 classes, the
default width) saved to a temporary folder: latency does not depend on the weights.
Never talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_model(folder: Path) -> str:
    from atrous.models import build_model, save_pretrained

    model = build_model("dilated_net", num_classes=11)
    return str(save_pretrained(model, folder / "dilated_net"))


def noise_png(size: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def large_png(width: int = 4000, height: int = 3999) -> bytes:
    """A mostly flat picture: tens of kB of PNG, 16 megapixels once decoded."""
    image = Image.new("RGB", (width, height), (90, 150, 220))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, height // 2, width, height], fill=(60, 60, 60))
    draw.ellipse([400, 300, 1400, 1300], fill=(30, 140, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        match = re.search(r"VmRSS:\s+(\d+) kB", status.read())
    return int(match[1]) / 1024 if match else float("nan")


class PeakMemory:
    """Samples a process's resident memory every 20 ms while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> PeakMemory:
        def sample() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, rss_mb(self.pid))
                time.sleep(0.02)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def serve(model: str, folder: Path, extra: list[str], deadline: float):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    atrous = Path(sys.executable).with_name("atrous")
    command = [str(atrous), "serve", "--model", model, "--port", str(port), *extra]
    log_path = folder / f"server-{port}.log"
    with open(log_path, "w+") as log:
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
                    raise RuntimeError(f"server did not become ready:\n{log.read()}")
                time.sleep(0.1)
            yield url, server, log_path
        finally:
            server.terminate()
            server.wait(timeout=60)


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def timed_post(url: str, body: bytes, timeout: float = 120) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = httpx.post(f"{url}/v1/segment?format=png", content=body, timeout=timeout)
    return time.perf_counter() - started, response


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


def hang_up_after(port: int, body: bytes, seconds: float) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(seconds)


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f} ms"


def load_phase(url: str, args: argparse.Namespace, deadline: float) -> bool:
    body = noise_png(args.image_size)
    timed_post(url, body)  # warm-up, not counted
    started = time.perf_counter()
    latencies, errors = asyncio.run(
        run_load(url, body, requests=args.requests, concurrency=args.concurrency, deadline=deadline)
    )
    wall = time.perf_counter() - started
    text = httpx.get(f"{url}/metrics").text
    print(f"\n[load] {args.requests} requests, concurrency {args.concurrency}, "
          f"{args.image_size}x{args.image_size} noise PNG ({len(body):,} bytes)")  # fmt: skip
    print(f"  answered {len(latencies)}, errors {len(errors)}"
          + (f" (first: {errors[0]})" if errors else ""))  # fmt: skip
    if latencies:
        q = np.percentile(np.asarray(latencies), [50, 90, 99])
        print(f"  latency p50 {ms(q[0])}, p90 {ms(q[1])}, p99 {ms(q[2])}, "
              f"max {ms(max(latencies))}; {len(latencies) / wall:.1f} requests/s")  # fmt: skip
    batches = metric_sum(text, "atrous_inference_batch_size_count")
    jobs = metric_sum(text, "atrous_inference_batch_size_sum")
    ok = metric_sum(text, "atrous_http_requests_total", route="/v1/segment", status="200")
    print(f"  /metrics: {ok:.0f} segment requests answered 200, {jobs:.0f} images in "
          f"{batches:.0f} batches (mean batch {jobs / max(batches, 1):.2f})")  # fmt: skip
    return not errors and len(latencies) == args.requests


def large_phase(url: str, server: subprocess.Popen) -> bool:
    small = noise_png(256)
    usual = statistics.median(timed_post(url, small)[0] for _ in range(5))
    time.sleep(1)
    idle = rss_mb(server.pid)
    body = large_png()
    with PeakMemory(server.pid) as peak:
        elapsed, response = timed_post(url, body)
        time.sleep(0.5)
    after = rss_mb(server.pid)
    next_latency, next_response = timed_post(url, small)
    print(f"\n[large upload] 4000x3999 PNG ({len(body):,} bytes), default 30 s timeout")
    detail = response.json().get("detail", "") if response.status_code != 200 else "segmented"
    print(f"  answer {response.status_code} after {ms(elapsed)}: {detail}")
    print(f"  server memory: idle {idle:.0f} MB, peak {peak.peak:.0f} MB "
          f"({peak.peak / idle:.2f}x idle), after {after:.0f} MB")  # fmt: skip
    print(f"  next 256x256 request: {ms(next_latency)} (status {next_response.status_code}); "
          f"usual {ms(usual)} -> {next_latency / usual:.2f}x")  # fmt: skip
    return peak.peak < 2 * idle and next_latency < 2 * usual and next_response.status_code == 200


def hang_up_phase(url: str, port: int, args: argparse.Namespace) -> bool:
    body = noise_png(args.hangup_size)
    before = httpx.get(f"{url}/metrics").text
    clients = [threading.Thread(target=hang_up_after, args=(port, body, 0.5)) for _ in range(8)]
    started = time.perf_counter()
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    time.sleep(1.0)
    load = httpx.get(f"{url}/readyz").json()["load"]
    while (
        httpx.get(f"{url}/readyz").json()["load"]["running"] and time.perf_counter() - started < 120
    ):
        time.sleep(0.05)
    idle_after = time.perf_counter() - started
    after = httpx.get(f"{url}/metrics").text
    skipped = metric_sum(after, "atrous_jobs_skipped_total") - metric_sum(
        before, "atrous_jobs_skipped_total"
    )
    ran = metric_sum(after, "atrous_inference_batch_size_sum") - metric_sum(
        before, "atrous_inference_batch_size_sum"
    )
    print(f"\n[hung-up clients] 8 clients upload {args.hangup_size}x{args.hangup_size} "
          "and hang up after 0.5 s")  # fmt: skip
    print(f"  1 s later: {load['running']} running, {load['waiting']} waiting; "
          f"server idle {idle_after:.1f} s after the uploads began")  # fmt: skip
    stopped = metric_sum(after, "atrous_jobs_cancelled_total") - metric_sum(
        before, "atrous_jobs_cancelled_total"
    )
    print(f"  queued jobs skipped without running: {skipped:.0f}; started jobs stopped (after "
          f"decoding or between layers): {stopped:.0f}; images segmented to the end: {ran:.0f}")  # fmt: skip
    return load["waiting"] == 0


def windows_phase(url: str, port: int, server: subprocess.Popen) -> None:
    time.sleep(1)
    idle = rss_mb(server.pid)
    body = large_png()
    before = httpx.get(f"{url}/metrics").text
    with PeakMemory(server.pid) as peak:
        started = time.perf_counter()
        hang_up_after(port, body, 6.0)
        hung_up = time.perf_counter()
        while (
            httpx.get(f"{url}/readyz").json()["load"]["running"]
            and time.perf_counter() - hung_up < 300
        ):
            time.sleep(0.05)
        busy_after = time.perf_counter() - hung_up
    after = httpx.get(f"{url}/metrics").text
    cancelled = metric_sum(after, "atrous_jobs_cancelled_total") - metric_sum(
        before, "atrous_jobs_cancelled_total"
    )
    windows = metric_sum(after, "atrous_inference_batch_size_sum") - metric_sum(
        before, "atrous_inference_batch_size_sum"
    )
    print("\n[windows cancelled] 4000x3999 PNG admitted (--request-timeout 600), "
          "client hangs up after 6 s")  # fmt: skip
    print(f"  server busy {busy_after:.2f} s after the hang-up; stopped: "
          f"{cancelled:.0f}, finished: {windows:.0f}; memory idle {idle:.0f} MB, peak {peak.peak:.0f} MB "
          f"({peak.peak / idle:.2f}x)")  # fmt: skip
    del started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model name or folder (default: random dilated_net)")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=256, help="load test image side")
    parser.add_argument("--hangup-size", type=int, default=768, help="hung-up clients' image side")
    parser.add_argument("--time-limit", type=float, default=900, help="seconds, all included")
    parser.add_argument("--torch-threads", type=int, help="passed to atrous serve")
    parser.add_argument(
        "--max-batch-size", type=int, default=4, help="passed to atrous serve (1: no batching)"
    )
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be >= 1")
    deadline = time.monotonic() + args.time_limit
    extra = ["--max-batch-size", str(args.max_batch_size)]
    if args.torch_threads:
        extra += ["--torch-threads", str(args.torch_threads)]
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        model = args.model or default_model(folder)
        print(f"model: {args.model or 'dilated_net (random init, width 32, 11 classes)'}; "
              f"torch threads {args.torch_threads or 'default'}, "
              f"max batch {args.max_batch_size}")  # fmt: skip
        with serve(model, folder, extra, deadline) as (url, server, log_path):
            info = httpx.get(f"{url}/v1/models").json()["models"][0]
            print(f"measured cost: {info['seconds_per_megapixel']} s per megapixel")
            results = [load_phase(url, args, deadline), large_phase(url, server)]
            results.append(hang_up_phase(url, int(url.rsplit(":", 1)[1]), args))
            healthy = httpx.get(f"{url}/healthz").status_code == 200
            lines = log_path.read_text().splitlines()
            sample = [line for line in lines if line.startswith('{"') and '"error"' in line]
            if sample:
                print(f"\naccess log line: {sample[-1]}")
        print(f"healthy after: {healthy}")
        with serve(model, folder, [*extra, "--request-timeout-s", "600"], deadline) as (
            url,
            server,
            _log,
        ):
            windows_phase(url, int(url.rsplit(":", 1)[1]), server)
    print(f"\ntargets met (load without errors, large upload, hung-up clients): {results}")
    return 0 if all(results) and healthy else 1


if __name__ == "__main__":
    sys.exit(main())
