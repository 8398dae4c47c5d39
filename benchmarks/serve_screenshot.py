"""Screenshot of the ``atrous serve`` page after a click: docs/images/serve_page.png.

Trains a small ``dilated_net`` (rates 1,2,5,9) for a bounded time on the synthetic disc
data (so the overlay shows real predictions, not a random network's), serves it on
127.0.0.1, drives the page in Debian's headless chromium (upload, click a disc pixel)
and saves the screenshot, quantised to stay under 300 kB.

    .venv/bin/python benchmarks/serve_screenshot.py [--out docs/images/serve_page.png]
"""

from __future__ import annotations

import argparse
import io
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
import uvicorn
from PIL import Image

from atrous.data.synthetic import CLASS_NAMES, PALETTE, render_sample
from atrous.infer import normalize
from atrous.models import build_model, save_pretrained
from atrous.serve import ServeConfig, create_app

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def train(seconds: float, steps: int) -> torch.nn.Module:
    """A few hundred Adam steps on 64x64 disc images, bounded by ``seconds``."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model("dilated_net", num_classes=3, rates=(1, 2, 5, 9), width=16)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    deadline = time.monotonic() + seconds
    for step in range(steps):
        batch = [render_sample(rng, 64) for _ in range(8)]
        x = torch.cat([normalize(image) for image, _ in batch])
        y = torch.from_numpy(np.stack([mask for _, mask in batch])).long()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 50 == 0:
            print(f"step {step}: loss {loss.item():.3f}")
        if time.monotonic() > deadline:
            break
    return model.eval()


def deepest_pixel(region: np.ndarray, window: int = 15) -> tuple[int, int]:
    """The pixel of ``region`` whose ``window``-square neighbourhood lies most inside it."""
    if not region.any():
        return region.shape[0] // 2, region.shape[1] // 2
    padded = np.pad(region.astype(np.int64), window // 2)
    integral = np.pad(padded.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    height, width = region.shape
    inside = (
        integral[window : window + height, window : window + width]
        - integral[:height, window : window + width]
        - integral[window : window + height, :width]
        + integral[:height, :width]
    )
    inside = np.where(region, inside, -1)
    y, x = np.unravel_index(int(inside.argmax()), inside.shape)
    return int(y), int(x)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/images/serve_page.png")
    parser.add_argument("--train-seconds", type=float, default=90)
    parser.add_argument("--train-steps", type=int, default=400)
    args = parser.parse_args()
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        print(f"{chromium} not found: apt-get install chromium", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    torch.set_num_threads(1)  # a shared 2-core machine: avoid oversubscription
    with tempfile.TemporaryDirectory() as folder:
        model_dir = save_pretrained(
            train(args.train_seconds, args.train_steps),
            Path(folder) / "discs",
            class_names=list(CLASS_NAMES),
            palette=[list(c) for c in PALETTE],
        )
        image, _ = render_sample(np.random.default_rng(7), 160)
        image_path = Path(folder) / "discs.png"
        Image.fromarray(image).save(image_path)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        config = ServeConfig(model=str(model_dir), port=port, max_analysis_side=160)
        server = uvicorn.Server(
            uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(chromium), args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1000, "height": 1000})
                page.set_default_timeout(60_000)
                page.goto(url + "/")
                page.wait_for_selector("#status[data-state=ready]")
                page.set_input_files("#file", str(image_path))
                page.wait_for_selector("#view[data-state=segmented]")
                # Click inside a predicted "marked disc", as far from its edge as possible.
                mask = np.asarray(
                    Image.open(
                        io.BytesIO(
                            httpx.post(
                                f"{url}/v1/segment?format=png", content=image_path.read_bytes()
                            ).content
                        )
                    )
                )
                target = deepest_pixel(mask == 2)
                box = page.locator("#view").bounding_box()
                page.click(
                    "#view",
                    position={
                        "x": (target[1] + 0.5) * box["width"] / 160,
                        "y": (target[0] + 0.5) * box["height"] / 160,
                    },
                )
                page.wait_for_selector("#rf[data-state=ready]")
                shot = page.screenshot(full_page=True)
                browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.open(io.BytesIO(shot)).convert("RGB")
    picture.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} kB, {picture.width}x{picture.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
