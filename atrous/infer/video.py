"""Video in, video out: segment a clip frame by frame in bounded memory.

Decoding and encoding go through PyAV (FFmpeg's libraries with a Pythonic API; the
``video`` extra): it streams frames one at a time, reads every container FFmpeg reads,
and writes lossless video, which torchcodec (decoding only) and OpenCV (no lossless
palette-exact codec in its wheels, lossy MJPEG/H.264 by default) do not both offer.

``predict_video`` reads ``batch_size`` frames, predicts them together and writes
them out before reading more, so memory does not grow with the clip's length. Outputs
in ``out``, for a clip ``clip.mp4``:

* ``clip_mask.mkv``: the masks in the palette's colours, FFV1 (lossless, so every
  pixel's colour, and with it its class, is exact), at the source's frame rate;
* ``clip_overlay.mp4`` (``overlay=True``): colours blended over the frames, H.264;
* ``clip_frames/000123.png`` (``frames_out=True``): one palette PNG mask per frame;
* per-frame class areas for a CSV (returned as rows).

A clip that cannot be opened, has no video stream, or ends early (a truncated file)
raises ``VideoError`` naming the file; for a clip cut short the frames already
written stay valid (the encoders are closed properly) and the error says how many.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from atrous.data.io import DataError
from atrous.infer.io import VIDEO_SUFFIXES

logger = logging.getLogger(__name__)

VIDEO_MISSING = "video prediction needs PyAV: pip install 'atrous[video]'"


class VideoError(DataError):
    """A clip that cannot be (fully) read; the message names the file and the reason."""


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise VideoError(VIDEO_MISSING) from None
    return av


@dataclass
class VideoResult:
    """What ``predict_video`` wrote and read."""

    frames: int = 0
    outputs: list[Path] = field(default_factory=list)
    area_rows: list[dict[str, Any]] = field(default_factory=list)
    fps: float = 0.0


@dataclass(frozen=True)
class FrameSelection:
    """Which frames to segment: every ``every``-th, between ``start`` and ``end`` seconds."""

    every: int = 1
    start: float = 0.0
    end: float | None = None

    def wants(self, index: int, seconds: float) -> bool:
        if seconds < self.start or (self.end is not None and seconds >= self.end):
            return False
        return index % self.every == 0


def _frames(path: Path, selection: FrameSelection) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(index, seconds, rgb)`` of the selected frames, decoded one at a time."""
    av = _av()
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise VideoError(f"{path}: cannot open as a video ({error})") from error
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index, seconds = 0, 0.0
        try:
            for frame in container.decode(stream):
                seconds = float(frame.time) if frame.time is not None else index / _rate(stream)
                if selection.end is not None and seconds >= selection.end:
                    return
                if selection.wants(index, seconds):
                    yield index, seconds, frame.to_ndarray(format="rgb24")
                index += 1
        except av.error.FFmpegError as error:
            raise VideoError(
                f"{path}: the video ends early, after frame {index} ({error})"
            ) from error
        _check_complete(path, container, index, seconds, _rate(stream))


def _check_complete(path: Path, container: Any, frames: int, last: float, rate: float) -> None:
    """FFmpeg stops quietly at a truncated file: compare what was decoded with the
    duration the container announces (more than two frames short is a cut)."""
    if not container.duration:
        return
    announced = container.duration / 1_000_000
    reached = last + 1.0 / rate if frames else 0.0
    if announced - reached > 2.0 / rate:
        raise VideoError(
            f"{path}: the video ends early: {frames} frames decoded, up to {reached:.2f} s of "
            f"the {announced:.2f} s the file announces (a truncated or damaged file)"
        )


def _rate(stream: Any) -> float:
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    return float(rate)


class _Writer:
    """One output video, opened at the first frame (its size is not known before)."""

    def __init__(self, path: Path, codec: str, pix_fmt: str, rate: Fraction, options: dict) -> None:
        self.path, self.codec, self.pix_fmt, self.rate, self.options = (
            path,
            codec,
            pix_fmt,
            rate,
            options,
        )
        self.container: Any = None
        self.stream: Any = None

    def write(self, rgb: np.ndarray) -> None:
        av = _av()
        if self.container is None:
            self.container = av.open(str(self.path), mode="w")
            self.stream = self.container.add_stream(self.codec, rate=self.rate)
            self.stream.height, self.stream.width = rgb.shape[:2]
            self.stream.pix_fmt = self.pix_fmt
            self.stream.options = self.options
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is None:
            return
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def _even(rgb: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides: the last row/column is repeated when odd."""
    height, width = rgb.shape[:2]
    if height % 2 or width % 2:
        rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return rgb


def predict_video(
    path: Path,
    segment: Callable[[list[np.ndarray]], list[np.ndarray]],
    out: Path,
    *,
    palette: Sequence[Sequence[int]],
    class_names: Sequence[str] | None = None,
    overlay: bool = False,
    alpha: float = 0.5,
    frames_out: bool = False,
    selection: FrameSelection | None = None,
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
) -> VideoResult:
    """Segment ``path`` frame by frame; see the module docstring for the outputs.

    Args:
        segment: label maps for a list of RGB frames (e.g. ``Predictor.predict_batch``).
        palette: one RGB colour per class, for the mask and overlay videos.
        class_names: names for the per-frame area rows (none are made without them).
        progress: called with the number of frames just finished.

    Raises:
        VideoError: the clip cannot be opened, has no video stream, or ends early (the
            outputs hold every frame segmented before that).
    """
    from atrous.infer.io import save_png
    from atrous.infer.visualize import class_areas, colorize
    from atrous.infer.visualize import overlay as blend

    av = _av()
    selection = selection or FrameSelection()
    try:
        probe = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise VideoError(f"{path}: cannot open as a video ({error})") from error
    with probe:
        rate = probe.streams.video[0].average_rate if probe.streams.video else None
    rate = Fraction(rate or 25) / selection.every
    out.mkdir(parents=True, exist_ok=True)
    stem = path.stem
    writers = [_Writer(out / f"{stem}_mask.mkv", "ffv1", "bgr0", rate, {})]
    if overlay:
        writers.append(
            _Writer(out / f"{stem}_overlay.mp4", "libx264", "yuv420p", rate, {"crf": "18"})
        )
    frames_dir = out / f"{stem}_frames"
    if frames_out:
        frames_dir.mkdir(exist_ok=True)
    result = VideoResult(fps=float(rate), outputs=[w.path for w in writers])
    colours = np.asarray(palette, dtype=np.uint8)

    def flush(batch: list[tuple[int, float, np.ndarray]]) -> None:
        masks = segment([rgb for _, _, rgb in batch])
        for (index, seconds, rgb), mask in zip(batch, masks, strict=True):
            writers[0].write(colours[mask])
            if overlay:
                writers[1].write(_even(np.asarray(blend(rgb, mask, palette, alpha).convert("RGB"))))
            if frames_out:
                save_png(colorize(mask, palette), frames_dir / f"{index:06d}.png")
            if class_names is not None:
                for row in class_areas(mask, class_names):
                    result.area_rows.append({"frame": index, "time_s": round(seconds, 4), **row})
        result.frames += len(batch)
        if progress is not None:
            progress(len(batch))

    batch: list[tuple[int, float, np.ndarray]] = []
    try:
        for item in _frames(path, selection):
            batch.append(item)
            if len(batch) == batch_size:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
    except VideoError:
        if batch:  # the frames decoded before the break are still segmented
            flush(batch)
        raise
    finally:
        for writer in writers:
            writer.close()
    if frames_out:
        result.outputs.append(frames_dir)
    return result


def frame_count(path: Path) -> int | None:
    """Frames the container announces (None when it does not say)."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            return int(container.streams.video[0].frames) or None
    except (av.error.FFmpegError, OSError, ValueError):
        return None


def read_mask_video(path: Path, palette: Sequence[Sequence[int]]) -> Iterator[np.ndarray]:
    """The label maps of a mask video written by ``predict_video`` (exact: FFV1 is
    lossless, so each pixel's colour is its class's palette colour)."""
    av = _av()
    colours = np.asarray(palette, dtype=np.int64)
    keys = (colours[:, 0] << 16) | (colours[:, 1] << 8) | colours[:, 2]
    lookup = {int(k): i for i, k in enumerate(keys)}
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24").astype(np.int64)
            packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            unique, inverse = np.unique(packed, return_inverse=True)
            yield np.array([lookup[int(u)] for u in unique])[inverse].reshape(packed.shape)
