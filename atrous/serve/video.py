"""``POST /v1/segment-video``: a clip in, its overlay (or mask) video out.

Bounded like images: the upload by ``max_upload_bytes``, the clip's length by
``max_video_seconds`` and its cost (frames x pixels x this model's measured seconds
per pixel) by ``request_timeout_s``, all decided from the container's header before a
frame is decoded. The work runs under the same inference limiter as images, one clip
at a time per slot, and stops between batches of frames once the client has gone.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from atrous.serve.config import ServeConfig
from atrous.serve.limiter import Cancelled, Job
from atrous.serve.service import ServedModel
from atrous.serve.uploads import UploadError

MEDIA_TYPES = {"overlay": "video/mp4", "mask": "video/x-matroska"}


def probe_clip(path: Path) -> tuple[float, int, int, float]:
    """``(seconds, width, height, frames per second)`` from the container's header.

    Raises:
        UploadError: 415 when it is not a video the decoder opens (or has no video stream).
    """
    from atrous.infer.video import VideoError, _av

    try:
        av = _av()
        container = av.open(str(path))
    except VideoError as error:
        raise UploadError(501, "video_unsupported", str(error)) from error
    except Exception as error:  # FFmpeg's errors on data that is no video
        raise UploadError(
            415, "not_a_video", f"cannot open the upload as a video ({error})"
        ) from error
    with container:
        if not container.streams.video:
            raise UploadError(415, "not_a_video", "the upload has no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        seconds = (container.duration or 0) / 1_000_000
        if not seconds and stream.frames:
            seconds = stream.frames / rate
        return seconds, int(stream.width), int(stream.height), rate


def admit_clip(model: ServedModel, config: ServeConfig, path: Path) -> float:
    """Refuse, from the header, a clip that is too long or could not finish in time;
    the estimated cost of one that is admitted."""
    seconds, width, height, rate = probe_clip(path)
    if width * height > config.max_image_pixels:
        raise UploadError(
            413, "too_many_pixels",
            f"frames of {width}x{height} exceed this server's {config.max_image_pixels:,} pixels",
        )  # fmt: skip
    if seconds > config.max_video_seconds:
        raise UploadError(
            413, "video_too_long",
            f"the clip lasts {seconds:.1f} s; this server takes at most "
            f"{config.max_video_seconds:g} s (send a shorter cut)",
        )  # fmt: skip
    frames = max(1, math.ceil(seconds * rate))
    cost_s = frames * model.estimate_s(height, width)
    if cost_s > config.request_timeout_s:
        raise UploadError(
            413, "too_costly",
            f"{frames} frames of {width}x{height} would take about {cost_s:.0f} s on this "
            f"server, more than its {config.request_timeout_s:g} s request timeout; send "
            f"at most about {config.request_timeout_s / max(cost_s / frames, 1e-9):.0f} frames",
        )  # fmt: skip
    return cost_s


def segment_clip_job(
    model: ServedModel, path: Path, out: Path, fmt: str, jobs: list[Job]
) -> list[Any]:
    """The worker-thread function: segment the clip, stopping once nobody waits."""
    from atrous.infer.video import VideoError, predict_video

    job = jobs[0]

    def segment(frames: list[Any]) -> list[Any]:
        if job.cancel.is_set():
            raise Cancelled("nobody waits for this clip any more")
        return model.predictor.predict_batch(frames)

    try:
        result = predict_video(
            path, segment, out, palette=model.palette, overlay=fmt == "overlay", batch_size=4
        )
    except VideoError as error:
        return [UploadError(422, "corrupt_video", str(error).replace(str(path), "the upload"))]
    except Cancelled as error:
        return [error]
    return [result.outputs[1] if fmt == "overlay" else result.outputs[0]]


def scratch_folder() -> tempfile.TemporaryDirectory:
    """Where an uploaded clip and its outputs live while the request runs."""
    return tempfile.TemporaryDirectory(prefix="atrous-clip-")
