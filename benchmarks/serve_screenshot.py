"""Screenshots of the ``atrous serve`` page after a click: the page and its explorer.

Without ``--model``, trains a small ``dilated_net`` (rates 1,2,5,9) for a bounded time on
the synthetic disc data (so the overlay shows real predictions, not a random network's)
and clicks inside a predicted disc. With ``--model camvid --image FRAME.png --click X,Y``
it serves that model on that photo and clicks the pixel (X, Y). Either way it serves on
127.0.0.1, drives the page in Debian's headless chromium and saves the whole page
(``--out``) and the receptive-field explorer alone (``--explorer-out``), quantised to
stay small.

    .venv/bin/python benchmarks/serve_screenshot.py [--out docs/images/serve_page.png]
    .venv/bin/python benchmarks/serve_screenshot.py --model camvid \
        --image CamVid/val/0016E5_07959.png --click 300,250 \
        --out docs/images/serve_page.png --explorer-out docs/images/explorer.png
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


def save_quantised(shot: bytes, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.open(io.BytesIO(shot)).convert("RGB")
    picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} kB, {picture.width}x{picture.height})")


def disc_scene(folder: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """A trained disc model and a disc image (the default scene)."""
    model_dir = save_pretrained(
        train(args.train_seconds, args.train_steps),
        folder / "discs",
        class_names=list(CLASS_NAMES),
        palette=[list(c) for c in PALETTE],
    )
    image, _ = render_sample(np.random.default_rng(7), 160)
    image_path = folder / "discs.png"
    Image.fromarray(image).save(image_path)
    return model_dir, image_path


def click_target(url: str, image_path: Path, args: argparse.Namespace) -> tuple[int, int]:
    """``(y, x)`` to click: ``--click``, else inside a predicted "marked disc"."""
    if args.click:
        x, y = (int(v) for v in args.click.split(","))
        return y, x
    answer = httpx.post(f"{url}/v1/segment?format=png", content=image_path.read_bytes())
    return deepest_pixel(np.asarray(Image.open(io.BytesIO(answer.content))) == 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/images/serve_page.png")
    parser.add_argument("--explorer-out", help="also save the explorer section alone here")
    parser.add_argument("--model", help="a shipped model or saved folder (default: train discs)")
    parser.add_argument("--image", help="the photo to upload (with --model)")
    parser.add_argument("--click", help="X,Y: the pixel to click (default: a disc's centre)")
    parser.add_argument("--view", help="the coverage view to show: image or stage:<name>")
    parser.add_argument("--width", type=int, default=1000, help="browser viewport width")
    parser.add_argument("--train-seconds", type=float, default=90)
    parser.add_argument("--train-steps", type=int, default=400)
    args = parser.parse_args()
    if (args.model is None) != (args.image is None):
        parser.error("--model and --image go together")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        print(f"{chromium} not found: apt-get install chromium", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    torch.set_num_threads(1)  # a shared 2-core machine: avoid oversubscription
    with tempfile.TemporaryDirectory() as folder:
        if args.model is None:
            model, image_path = disc_scene(Path(folder), args)
        else:
            model, image_path = args.model, Path(args.image)
        width, height = Image.open(image_path).size
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        config = ServeConfig(model=str(model), port=port, max_analysis_side=160)
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
                page = browser.new_page(viewport={"width": args.width, "height": 1000})
                page.set_default_timeout(60_000)
                page.goto(url + "/")
                page.wait_for_selector("#status[data-state=ready]")
                page.set_input_files("#file", str(image_path))
                page.wait_for_selector("#view[data-state=segmented]")
                target = click_target(url, image_path, args)
                box = page.locator("#view").bounding_box()
                page.click(
                    "#view",
                    position={
                        "x": (target[1] + 0.5) * box["width"] / width,
                        "y": (target[0] + 0.5) * box["height"] / height,
                    },
                )
                page.wait_for_selector("#rf[data-state=ready]")
                if args.view:
                    page.click(f"#coverage-views button[data-key='{args.view}']")
                shot = page.screenshot(full_page=True)
                explorer = page.locator("#rf").screenshot() if args.explorer_out else None
                browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    save_quantised(shot, Path(args.out))
    if explorer is not None:
        save_quantised(explorer, Path(args.explorer_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
