"""Drive the web page in Debian's headless chromium: upload, overlay, toggles, click."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from atrous.serve import ServeConfig
from atrous.serve.service import ServedModel
from tests.serve.live import free_port, live_server

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) "
        "to run the browser test",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright (dev extra) is not installed"
)


def scene(height: int = 72, width: int = 96) -> Image.Image:
    """A small picture with a few distinct regions, so the model predicts several classes."""
    image = Image.new("RGB", (width, height), (90, 150, 220))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, height // 2, width, height], fill=(60, 60, 60))
    draw.ellipse([10, 10, 40, 40], fill=(30, 140, 40))
    draw.rectangle([60, 20, 90, 60], fill=(240, 220, 30))
    return image


@pytest.fixture(scope="module")
def server_url(model_dir: Path) -> Iterator[str]:
    config = ServeConfig(
        model=str(model_dir), port=free_port(), max_analysis_side=48, erf_samples=2
    )
    with live_server(config) as (url, _server):
        yield url


@pytest.fixture(scope="module")
def page(server_url: str) -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            tab = browser.new_page(viewport={"width": 1100, "height": 900})
            tab.set_default_timeout(30_000)
            yield tab
        finally:
            browser.close()


CANVAS_PIXELS = """(id) => {
  const c = document.getElementById(id);
  return {width: c.width, height: c.height,
          data: Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)};
}"""


def canvas_rgb(page: object, canvas_id: str) -> np.ndarray:
    pixels = page.evaluate(CANVAS_PIXELS, canvas_id)
    rgba = np.asarray(pixels["data"], dtype=np.int16).reshape(pixels["height"], pixels["width"], 4)
    return rgba[..., :3]


def test_upload_overlay_toggle_and_click(page: object, server_url: str, tmp_path: Path) -> None:
    import httpx

    picture = scene()
    path = tmp_path / "scene.png"
    picture.save(path)
    original = np.asarray(picture, dtype=np.int16)

    page.goto(server_url + "/")
    page.wait_for_selector("#status[data-state=ready]")
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#view[data-state=segmented]")

    # The overlay on the canvas is the server's own overlay at the page's opacity.
    drawn = canvas_rgb(page, "view")
    assert drawn.shape == original.shape
    assert drawn.std() > 5, "canvas is blank"
    alpha = float(page.input_value("#alpha"))
    expected = httpx.post(
        f"{server_url}/v1/segment?format=overlay&alpha={alpha}", content=path.read_bytes()
    )
    reference = np.asarray(Image.open(io.BytesIO(expected.content)), dtype=np.int16)
    assert np.abs(drawn - reference).max() <= 1
    assert np.abs(drawn - original).max() > 10, "no overlay colours drawn"

    # Legend: one row per class with its area; turning every class off shows the image.
    rows = page.locator("#legend tbody tr")
    assert rows.count() == 3
    areas = [float(t.rstrip(" %")) for t in page.locator("#legend .area").all_inner_texts()]
    assert sum(areas) == pytest.approx(100.0, abs=0.2)
    for index in range(3):
        rows.nth(index).locator("input[type=checkbox]").uncheck()
    assert np.abs(canvas_rgb(page, "view") - original).max() <= 1
    rows.nth(0).locator("input[type=checkbox]").check()

    # Click a pixel: the receptive-field view appears for that pixel.
    box = page.locator("#view").bounding_box()
    page.click("#view", position={"x": box["width"] * 0.25, "y": box["height"] * 0.5})
    page.wait_for_selector("#rf[data-state=ready]")
    clicked = re.search(r"pixel \((\d+), (\d+)\)", page.inner_text("#rf-title"))
    assert clicked, page.inner_text("#rf-title")
    # Mouse positions are whole CSS pixels on a scaled canvas: allow one image pixel.
    assert abs(int(clicked[1]) - 0.25 * 96) <= 1 and abs(int(clicked[2]) - 0.5 * 72) <= 1
    stats = page.inner_text("#rf-stats")
    assert "holes" in stats and "ERF" in stats
    for canvas_id in ("coverage", "erf"):
        field = canvas_rgb(page, canvas_id)
        assert field.shape == original.shape
        # The heat map is drawn over a dimmed image: some pixels are far brighter.
        dimmed = original * 0.45
        assert (np.abs(field - dimmed).max(axis=2) > 30).sum() > 10, canvas_id


def click_and_wait(page: object, fx: float, fy: float) -> tuple[int, int]:
    """Click the overlay at fractions of its size; wait for that pixel's explorer."""
    box = page.locator("#view").bounding_box()
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
    x = min(95, int(fx * 96))
    page.wait_for_function(
        "([x]) => document.getElementById('rf').dataset.state === 'ready' &&"
        " /pixel \\((\\d+), \\d+\\)$/.test(document.getElementById('rf-title').textContent) &&"
        " Math.abs(Number(document.getElementById('rf-title').textContent"
        ".match(/pixel \\((\\d+)/)[1]) - x) <= 1",
        arg=[x],
    )
    clicked = re.search(r"pixel \((\d+), (\d+)\)$", page.inner_text("#rf-title"))
    return int(clicked[1]), int(clicked[2])


def test_explorer_follows_the_click_with_its_box_and_colour_bar(
    page: object, server_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "scene.png"
    scene().save(path)
    page.goto(server_url + "/")
    page.wait_for_selector("#status[data-state=ready]")
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#view[data-state=segmented]")

    near = click_and_wait(page, 0.1, 0.15)
    first = canvas_rgb(page, "coverage")
    first_box = json.loads(page.get_attribute("#coverage", "data-box"))
    first_stats = page.inner_text("#rf-stats")
    far = click_and_wait(page, 0.9, 0.85)
    second = canvas_rgb(page, "coverage")
    second_box = json.loads(page.get_attribute("#coverage", "data-box"))
    assert near != far and first_box != second_box
    # The coverage panel follows the click: most of it changes between the two clicks.
    assert (np.abs(first - second).max(axis=2) > 30).mean() > 0.2

    # The dilated stage is shown on the map it reads, its field's box framed in white.
    assert page.get_attribute("#coverage", "data-view") == "stage:body"
    x0, y0, x1, y1 = second_box
    assert x0 < far[0] < x1 and y0 < far[1] < y1
    white = np.all(second == 255, axis=2)
    assert white[y0, x0:x1].all() and white[y1 - 1, x0:x1].all()
    assert white[y0:y1, x0].all() and white[y0:y1, x1 - 1].all()

    # Colour bars: the colormap from its first colour to its last, ticks and a label.
    for bar_id, label in (("coverage", "paths per position (log scale)"), ("erf", "square-root")):
        bar = canvas_rgb(page, f"{bar_id}-bar")
        assert np.abs(bar[6, 0] - bar[6, -1]).max() > 100, bar_id
        ticks = page.locator(f"#{bar_id}-scale .ticks span").all_inner_texts()
        assert ticks and all(ticks), bar_id
        assert label in page.inner_text(f"#{bar_id}-scale .bar-label")
    viridis_first, viridis_last = (68, 1, 84), (253, 231, 37)
    bar = canvas_rgb(page, "coverage-bar")
    assert np.abs(bar[6, 0] - viridis_first).max() <= 6
    assert np.abs(bar[6, -1] - viridis_last).max() <= 6

    # One number format for path counts, the note on stride lattices and holes shown.
    for stats in (first_stats, page.inner_text("#rf-stats")):
        assert "e+" not in stats and "about" not in stats and "paths per position" in stats
    assert "stride pattern" in page.inner_text("#lattice-note")

    # The other views: the whole network at the image.
    page.click("#coverage-views button[data-key=image]")
    assert page.get_attribute("#coverage", "data-view") == "image"
    assert "whole network" in page.inner_text("#rf-stats")

    # A new file clears the explorer and its title.
    other = tmp_path / "other.png"
    scene().transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    page.set_input_files("#file", str(other))
    page.wait_for_function(
        "document.getElementById('rf-title').textContent === 'Receptive field'"
        " && document.getElementById('rf').hidden"
    )
    page.wait_for_selector("#view[data-state=segmented]")
    assert page.inner_text("#rf-title") == "Receptive field"
    assert not page.is_visible("#rf") and page.inner_text("#rf-stats") == ""


def test_bad_upload_shows_the_servers_reason(page: object, server_url: str, tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not really a picture")
    page.goto(server_url + "/")
    page.wait_for_selector("#status[data-state=ready]")
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#view[data-state=error]", state="attached")
    error = page.inner_text("#error")
    assert error.startswith("415") and "not an image" in error
    assert page.is_visible("#error")


def test_nothing_but_the_upload_shows_before_an_upload(page: object, server_url: str) -> None:
    page.goto(server_url + "/")
    page.wait_for_selector("#status[data-state=ready]")
    assert page.is_visible("#drop")
    for selector in ("#result", "#view", "#legend", "#rf", "#coverage", "#error"):
        assert not page.is_visible(selector), f"{selector} shows before any upload"
    assert page.locator("#result").bounding_box() is None  # takes no room either


def test_upload_to_a_server_that_is_gone_shows_an_error(
    page: object, model_dir: Path, tmp_path: Path
) -> None:
    import httpx

    path = tmp_path / "scene.png"
    scene().save(path)
    config = ServeConfig(model=str(model_dir), port=free_port(), shutdown_grace_s=1)
    with live_server(config) as (url, server):
        page.goto(url + "/")
        page.wait_for_selector("#status[data-state=ready]")
        server.should_exit = True
        for _ in range(200):  # until the port refuses connections
            try:
                httpx.get(f"{url}/healthz", timeout=1)
            except httpx.TransportError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the server did not stop")
        page.set_input_files("#file", str(path))
        page.wait_for_selector("#view[data-state=error]", state="attached", timeout=10_000)
    assert page.is_visible("#error")
    assert "could not reach the server" in page.inner_text("#error")
    assert page.inner_text("#status") != "segmenting…"
    assert page.get_attribute("#status", "data-state") == "offline"


class SlowField(ServedModel):
    """The tiny model whose receptive-field view takes 1 s, counting the views computed."""

    calls: list[tuple[int, int]]

    def receptive_field(self, image_size, location, image=None):  # type: ignore[override]
        self.calls.append(location)
        time.sleep(1.0)
        return super().receptive_field(image_size, location, image)


def test_rapid_clicks_keep_one_receptive_field_request(
    page: object, model_dir: Path, tmp_path: Path
) -> None:
    import httpx

    from atrous.models import load_pretrained

    path = tmp_path / "scene.png"
    scene().save(path)
    model = SlowField(load_pretrained(model_dir), name="slow", max_analysis_side=48, erf_samples=2)
    model.calls = []
    config = ServeConfig(model="slow", port=free_port())
    aborted: list[str] = []
    page.on(
        "requestfailed",
        lambda request: aborted.append(request.url) if "receptive-field" in request.url else None,
    )
    with live_server(config, loader=lambda: model) as (url, _server):
        page.goto(url + "/")
        page.wait_for_selector("#status[data-state=ready]")
        page.set_input_files("#file", str(path))
        page.wait_for_selector("#view[data-state=segmented]")
        box = page.locator("#view").bounding_box()
        for fraction in (0.2, 0.5, 0.8):  # three clicks well inside one second
            page.mouse.click(box["x"] + box["width"] * fraction, box["y"] + box["height"] * 0.5)
        page.wait_for_selector("#rf[data-state=ready]", timeout=20_000)
        clicked = re.search(r"pixel \((\d+), (\d+)\)", page.inner_text("#rf-title"))
        assert abs(int(clicked[1]) - 0.8 * 96) <= 1  # the last click is the one shown
        assert len(aborted) == 2  # the browser cancelled the two earlier requests
        # The server ran the first (it had started) and the last; the second, still
        # queued when its request was cancelled, never ran.
        deadline = time.monotonic() + 10
        while len(model.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert len(model.calls) == 2, model.calls
        metrics = httpx.get(f"{url}/metrics").text
        assert 'atrous_jobs_skipped_total{reason="client_gone"} 1' in metrics
        stats = page.inner_text("#rf-stats")
        assert "architecture only" in stats and "computed on this photo" in stats


def test_a_dropped_clip_plays_its_overlay(page: object, server_url: str, tmp_path: Path) -> None:
    pytest.importorskip("av")
    from tests.infer.test_video import write_clip

    clip = tmp_path / "drive.mkv"
    write_clip(clip, frames=10, size=(48, 64), fps=10)
    page.goto(server_url + "/")
    page.wait_for_selector("#status[data-state=ready]")
    page.set_input_files("#file", {"name": "drive.mkv", "mimeType": "video/x-matroska",
                                   "buffer": clip.read_bytes()})  # fmt: skip
    page.wait_for_selector("#clip:not([hidden])")
    page.wait_for_function("document.getElementById('clip-video').readyState >= 1")
    size = page.evaluate(
        "() => { const v = document.getElementById('clip-video');"
        " return [v.videoWidth, v.videoHeight, v.duration]; }"
    )
    assert size[:2] == [64, 48] and size[2] == pytest.approx(1.0, abs=0.15)
    assert page.locator("#result").is_hidden()


def test_the_header_says_when_the_server_is_gone(page: object, model_dir: Path) -> None:
    config = ServeConfig(model=str(model_dir), port=free_port(), max_analysis_side=48)
    tab = page.context.browser.new_page()
    try:
        with live_server(config) as (url, _server):
            tab.goto(url + "/")
            tab.wait_for_selector("#status[data-state=ready]")
            assert tab.evaluate("fetch('/favicon.ico').then(r => r.status)") == 200
        # The server has stopped: within a few seconds the header says so.
        tab.wait_for_selector("#status[data-state=offline]", timeout=8_000)
        assert tab.inner_text("#status") == "server unreachable"
    finally:
        tab.close()
