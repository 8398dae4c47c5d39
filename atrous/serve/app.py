"""The FastAPI application: segmentation and receptive-field endpoints, probes, the page.

The model is loaded in a background thread once the app starts, so ``/healthz`` answers
at once and ``/readyz`` turns ready only when the model can serve; orchestrators and
the page both wait on it. The model to serve is fixed by the server's configuration:
no endpoint takes a model name or a path.

Work nobody waits for does not run: an upload whose estimated cost (pixels x this
model's measured seconds per pixel) exceeds the request timeout is refused before it is
decoded, queued work of clients that hung up or timed out is skipped, and large images
run through sliding windows that stop between windows once nobody waits.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import html
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

import atrous
from atrous.serve.config import ServeConfig
from atrous.serve.limiter import (
    Cancelled,
    InferenceLimiter,
    InferenceTimeoutError,
    Job,
    QueueFullError,
)
from atrous.serve.metrics import Metrics
from atrous.serve.middleware import ServiceMiddleware, error_response
from atrous.serve.render import (
    colour_stops,
    count_range,
    data_url,
    heatmap,
    label_png,
    log_heatmap,
    png_bytes,
    side_by_side,
)
from atrous.serve.service import AllSet, ServedModel
from atrous.serve.uploads import UploadError, decode_image, header_size, too_many_pixels

logger = logging.getLogger(__name__)

STATIC_DIR = resources.files("atrous.serve") / "static"

Loader = Callable[[], ServedModel]

# Counts above 2**53 are not exact in float64 (the coverage map's type) nor in JavaScript.
EXACT_INTEGER_LIMIT = 2**53


class ApiError(Exception):
    """An error answered as ``{"error": code, "detail": message}`` with ``status``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class ReceptiveFieldRequest(BaseModel):
    """A pixel of an image of the given size, and optionally the uploaded image itself."""

    x: int = Field(ge=0, description="column of the clicked pixel")
    y: int = Field(ge=0, description="row of the clicked pixel")
    width: int = Field(ge=1, le=100_000, description="image width in pixels")
    height: int = Field(ge=1, le=100_000, description="image height in pixels")
    image_id: str | None = Field(
        None,
        max_length=64,
        description="`image_id` of an earlier /v1/segment answer: the ERF is then "
        "computed on that image; without it, averaged over random inputs",
    )


class _Runtime:
    """What the app holds between requests: the model (once loaded), limiter, metrics."""

    def __init__(self, config: ServeConfig, loader: Loader, *, calibrate: bool) -> None:
        self.config = config
        self.loader = loader
        self.calibrate = calibrate
        self.model: ServedModel | None = None
        self.load_error: str | None = None
        self.metrics = Metrics(self.gauges)
        self.limiter = InferenceLimiter(
            max_concurrent=config.max_concurrent_inferences,
            max_queued=config.max_queued_requests,
            max_batch=config.max_batch_size,
            batch_wait_s=config.batch_wait_ms / 1000.0,
            on_skip=lambda reason: self.metrics.skipped.inc(reason=reason),
        )
        self.loaded = threading.Event()

    def load(self) -> None:
        started = time.perf_counter()
        try:
            model = self.loader()
            if self.calibrate:
                # The admission estimate needs this machine's speed before any upload.
                model.calibrate()
            self.model = model
        except Exception as error:  # reported by /readyz; `atrous serve` exits on it
            logger.exception("loading model %r failed", self.config.model)
            self.load_error = f"{type(error).__name__}: {error}"
        else:
            logger.info(
                "model %r ready in %.1f s (%.3g s per megapixel)",
                self.config.model,
                time.perf_counter() - started,
                (model.cost.seconds_per_pixel or 0.0) * 1e6,
            )
        finally:
            self.loaded.set()

    def gauges(self) -> dict[str, tuple[str, float]]:
        stats = self.limiter.stats()
        return {
            "atrous_queue_depth": ("Inference requests waiting for a slot.", stats["waiting"]),
            "atrous_inferences_running": ("Inference requests running now.", stats["running"]),
            "atrous_model_ready": ("1 once the model is loaded.", float(self.model is not None)),
            "atrous_seconds_per_megapixel": (
                "Measured inference cost used for admission (0 before calibration).",
                (self.model.cost.seconds_per_pixel or 0.0) * 1e6 if self.model else 0.0,
            ),
        }

    def require_model(self) -> ServedModel:
        if self.model is not None:
            return self.model
        if self.load_error is not None:
            raise ApiError(503, "model_failed", f"the model failed to load: {self.load_error}")
        raise ApiError(
            503,
            "model_loading",
            "the model is still loading; retry shortly",
            headers={"Retry-After": str(self.config.retry_after_s)},
        )

    async def run(self, job: Job, request: Request) -> Any:
        """Queue ``job``, dropping it when the client disconnects; errors become ApiError."""
        try:
            return await self.limiter.run(job, disconnected=request.is_disconnected)
        except QueueFullError as error:
            self.metrics.rejections.inc(reason="busy")
            retry = max(self.config.retry_after_s, error.retry_after_s)
            raise ApiError(
                503,
                "busy",
                f"the server is at its inference limit ({error}); retry later",
                headers={"Retry-After": str(retry)},
            ) from error
        except InferenceTimeoutError as error:
            raise ApiError(
                504, "timeout", f"request timed out ({error}); try a smaller image"
            ) from error
        except Cancelled as error:
            if job.cancel_reason == "client_gone":
                # Nobody reads this answer; the status tells the access log what happened.
                raise ApiError(499, "client_gone", str(error)) from error
            raise ApiError(503, "shutting_down", str(error)) from error


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadError(
            413,
            "upload_too_large",
            f"the upload is {int(declared):,} bytes, more than this server's limit of "
            f"{limit:,} bytes",
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise UploadError(
                413,
                "upload_too_large",
                f"the upload exceeds this server's limit of {limit:,} bytes",
            )
    return bytes(body)


async def _upload_bytes(request: Request, limit: int) -> bytes:
    """Image bytes from a multipart form (field ``file``) or from the raw body."""
    body = await _read_body(request, limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise UploadError(
            400,
            "no_file",
            "the multipart form has no file field named 'file'; send the image there",
        )
    return await upload.read()


def _segment_jobs(
    model: ServedModel, config: ServeConfig, metrics: Metrics, jobs: list[Job]
) -> list[Any]:
    """The worker-thread function for a batch of segmentation jobs.

    Decoding runs here, under the limiter: a burst of large uploads then cannot hold
    more decoded images in memory than the running batches. Each job is checked for
    cancellation before its decode and before the forward; a failure of one upload
    (corrupt data) is answered to that job alone.
    """

    results: list[Any] = [None] * len(jobs)
    decoded: list[tuple[int, np.ndarray]] = []

    def drop(index: int) -> None:
        metrics.cancelled.inc(reason=jobs[index].cancel_reason or "unknown")
        results[index] = Cancelled("nobody waits for this request any more")

    for index, job in enumerate(jobs):
        if job.cancel.is_set():
            drop(index)
            continue
        try:
            decoded.append(
                (index, decode_image(job.payload["data"], max_pixels=config.max_image_pixels))
            )
        except UploadError as error:
            results[index] = error
    live = [(i, image) for i, image in decoded if not jobs[i].cancel.is_set()]
    for i, _ in decoded:
        if jobs[i].cancel.is_set():
            drop(i)
    if not live:
        return results
    started = time.perf_counter()
    # The batch stops (between layers, or between windows) once none of its clients waits.
    batch_jobs = [jobs[i] for i, _ in live]
    try:
        labels = model.segment_batch(
            [image for _, image in live], AllSet([job.cancel for job in batch_jobs])
        )
    except Cancelled as error:
        metrics.cancelled.inc(reason=batch_jobs[0].cancel_reason or "unknown")
        for i, _ in live:
            results[i] = error
        return results
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    metrics.batch_size.observe(len(live))
    for (i, image), mask in zip(live, labels):
        if jobs[i].payload["remember"]:
            model.remember_image(jobs[i].payload["image_id"], image)
        results[i] = (image, mask, elapsed_ms)
    return results


def _docs_page(schema: dict[str, Any]) -> str:
    """A self-contained API reference from the OpenAPI schema (no CDN, works offline)."""
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{html.escape(schema['info']['title'])} API</title>",
        '<link rel="stylesheet" href="/static/style.css"></head><body><main>',
        f"<h1>{html.escape(schema['info']['title'])} {html.escape(schema['info']['version'])}</h1>",
        f"<p>{html.escape(schema['info'].get('description', ''))}</p>",
        '<p>Machine-readable schema: <a href="/openapi.json">/openapi.json</a>. Every '
        'error is <code>{"error": code, "detail": message, "request_id": id}</code>.</p>',
    ]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            parts.append(f"<h2><code>{method.upper()} {html.escape(path)}</code></h2>")
            parts.append(f"<p><b>{html.escape(operation.get('summary', ''))}</b></p>")
            if operation.get("description"):
                parts.append(f"<p>{html.escape(operation['description'])}</p>")
            parameters = operation.get("parameters", [])
            if parameters:
                parts.append("<ul>")
                for parameter in parameters:
                    kind = parameter.get("schema", {}).get("type", "")
                    text = parameter.get("description", "")
                    parts.append(
                        f"<li><code>{html.escape(parameter['name'])}</code> "
                        f"({html.escape(parameter['in'])}, {html.escape(str(kind))}) "
                        f"{html.escape(text)}</li>"
                    )
                parts.append("</ul>")
    parts.append("</main></body></html>")
    return "\n".join(parts)


def create_app(
    config: ServeConfig, *, loader: Loader | None = None, calibrate: bool = True
) -> FastAPI:
    """Build the application: the routes of ``ROUTES``, the error handlers of
    ``ERROR_HANDLERS``, the middleware and the static page.

    Args:
        config: what to serve and the limits.
        loader: builds the ``ServedModel``; defaults to loading ``config.model``
            with ``ServedModel.load``. Tests pass their own (for example a model
            wrapped to be slow) to exercise the limits; ``atrous serve`` passes the model
            it loaded before binding the port, so a bad model name fails the command.
        calibrate: measure the model's per-pixel cost once loaded (admission control
            refuses nothing before a cost is known).
    """
    if loader is None:

        def loader() -> ServedModel:
            return ServedModel.load(config.model, **model_options(config))

    runtime = _Runtime(config, loader, calibrate=calibrate)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.limiter.start()
        threading.Thread(target=runtime.load, name="atrous-load-model", daemon=True).start()
        yield
        runtime.limiter.close()

    app = FastAPI(
        title="atrous",
        version=atrous.__version__,
        description="Semantic segmentation with dilated convolutions, and where the "
        "network looks: coverage maps and effective receptive fields.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load their scripts from a CDN and stay blank offline;
        # /docs is a plain page rendered here from the same schema.
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.add_middleware(ServiceMiddleware, config=config, metrics=runtime.metrics)
    for error_type, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(error_type, handler)
    for route in ROUTES:
        app.add_api_route(route.path, route.handler, methods=[route.method], **route.options)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    return app


# -- errors: one JSON shape, {"error", "detail", "request_id"} ---------------------------


def _runtime(request: Request) -> _Runtime:
    return request.app.state.runtime


def answer_error(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The error answer; rejections of size and cost are counted in /metrics."""
    request.state.error = code
    request.state.error_detail = message
    if status in (413, 415) or code in ("too_costly", "upload_too_large"):
        _runtime(request).metrics.rejections.inc(reason=code)
    request_id = getattr(request.state, "request_id", None)
    return error_response(status, code, message, request_id, headers)


async def _upload_error(request: Request, error: UploadError) -> JSONResponse:
    return answer_error(request, error.status, error.code, error.message)


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return answer_error(request, error.status, error.code, error.message, error.headers)


async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    return answer_error(request, 422, "invalid_request", "; ".join(problems))


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed"}
    return answer_error(
        request,
        error.status_code,
        codes.get(error.status_code, f"http_{error.status_code}"),
        str(error.detail),
        dict(error.headers or {}),
    )


async def _internal(request: Request, error: Exception) -> JSONResponse:
    logger.error("unhandled error", exc_info=error)
    return answer_error(
        request, 500, "internal", "internal server error; the server log has the details"
    )


ERROR_HANDLERS: dict[type[Exception], Callable[..., Any]] = {
    UploadError: _upload_error,
    ApiError: _api_error,
    RequestValidationError: _invalid,
    StarletteHTTPException: _http_error,
    Exception: _internal,
}


# -- routes ------------------------------------------------------------------------------


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def readyz(request: Request) -> JSONResponse:
    runtime = _runtime(request)
    load = runtime.limiter.stats()
    if runtime.model is not None:
        return JSONResponse({"status": "ready", "model": runtime.model.name, "load": load})
    if runtime.load_error is not None:
        return JSONResponse({"status": "failed", "detail": runtime.load_error}, 503)
    return JSONResponse(
        {"status": "loading"}, 503, headers={"Retry-After": str(runtime.config.retry_after_s)}
    )


async def metrics(request: Request) -> Response:
    return Response(
        _runtime(request).metrics.expose(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


async def models(request: Request) -> dict[str, Any]:
    runtime = _runtime(request)
    model = runtime.require_model()
    return {"models": [{**model.info(), "limits": runtime.config.limits()}]}


async def _receive_upload(request: Request, config: ServeConfig) -> bytes:
    """The upload's bytes, within the request timeout (a trickling client is cut)."""
    try:
        data = await asyncio.wait_for(
            _upload_bytes(request, config.max_upload_bytes), config.request_timeout_s
        )
    except TimeoutError as error:
        raise ApiError(
            408,
            "upload_timeout",
            f"the upload did not arrive within {config.request_timeout_s:g} s",
        ) from error
    if not data:
        raise UploadError(400, "empty_body", "the upload is empty; send an image file")
    return data


def _admit(model: ServedModel, config: ServeConfig, data: bytes) -> tuple[tuple | None, float]:
    """Refuse, from the header alone, what cannot finish in time; the batching key and
    the estimated cost of what is admitted."""
    size = header_size(data)
    if size is None:
        return None, 0.0
    width, height = size
    if width * height > config.max_image_pixels:
        raise too_many_pixels(width, height, config.max_image_pixels)
    cost_s = model.estimate_s(height, width)
    if cost_s > config.request_timeout_s:
        per_pixel = model.cost.seconds_per_pixel or 0.0
        fits = model.largest_within(config.request_timeout_s)
        raise ApiError(
            413,
            "too_costly",
            f"a {width}x{height} image would take about {cost_s:.0f} s on this "
            f"server ({per_pixel * 1e6:.2f} s per megapixel measured), more than its "
            f"{config.request_timeout_s:g} s request timeout; send an image of at most "
            f"about {fits / 1e6:.1f} megapixels ({math.isqrt(fits)}x{math.isqrt(fits)})",
        )
    key = None if model.slides(height, width) else ("segment", height, width)
    return key, cost_s


async def segment(
    request: Request,
    format: Literal["png", "json", "overlay"] = Query("png", description="answer format"),
    mask: bool = Query(False, description="with format=json, include the labels"),
    alpha: float = Query(0.5, ge=0.0, le=1.0, description="overlay colour weight"),
) -> Response:
    runtime = _runtime(request)
    config = runtime.config
    model = runtime.require_model()
    deadline = time.monotonic() + config.request_timeout_s
    data = await _receive_upload(request, config)
    key, cost_s = _admit(model, config, data)
    image_id = hashlib.sha256(data).hexdigest()[:16]
    job = Job(
        execute=functools.partial(_segment_jobs, model, config, runtime.metrics),
        payload={"data": data, "image_id": image_id, "remember": format == "json" and mask},
        key=key,
        cost_s=cost_s,
        deadline=deadline,
    )
    del data  # the job holds the only reference: freed as soon as it is answered
    image, labels, elapsed_ms = await runtime.run(job, request)
    headers = {"X-Inference-Ms": f"{elapsed_ms:.1f}"}
    # Encoding a large answer takes a while: off the event loop, so probes stay quick.
    return await asyncio.to_thread(
        _answer, model, image, labels, format, mask, alpha, elapsed_ms, image_id, headers
    )


async def segment_video(
    request: Request,
    format: Literal["overlay", "mask"] = Query(
        "overlay",
        description="overlay: H.264 MP4 of the colours over the frames; "
        "mask: lossless FFV1 Matroska of the palette colours (class per pixel, exactly)",
    ),
) -> Response:
    from atrous.serve import video

    runtime = _runtime(request)
    config = runtime.config
    model = runtime.require_model()
    deadline = time.monotonic() + config.request_timeout_s
    data = await _receive_upload(request, config)
    with video.scratch_folder() as scratch:
        clip = Path(scratch) / "upload"
        clip.write_bytes(data)
        del data
        cost_s = await asyncio.to_thread(video.admit_clip, model, config, clip)
        job = Job(
            execute=functools.partial(
                video.segment_clip_job, model, clip, Path(scratch) / "out", format
            ),
            cost_s=cost_s,
            deadline=deadline,
        )
        written = await runtime.run(job, request)  # the limiter raises a job's error
        body = await asyncio.to_thread(written.read_bytes)
    return Response(body, media_type=video.MEDIA_TYPES[format])


def _remembered_image(model: ServedModel, query: ReceptiveFieldRequest) -> Any:
    """The uploaded image ``query.image_id`` names (None without one), size-checked."""
    if query.image_id is None:
        return None
    remembered = model.remembered(query.image_id)
    if remembered is None:
        raise ApiError(
            404,
            "unknown_image",
            f"no recent upload has image_id {query.image_id!r} (the server keeps "
            "the last 32); segment the image again with format=json&mask=true",
        )
    image, (height, width) = remembered
    if (height, width) != (query.height, query.width):
        raise ApiError(
            422,
            "size_mismatch",
            f"image {query.image_id} is {width}x{height}, not {query.width}x{query.height}",
        )
    return image


async def receptive_field(query: ReceptiveFieldRequest, format: str, request: Request) -> Response:
    runtime = _runtime(request)
    model = runtime.require_model()
    if query.x >= query.width or query.y >= query.height:
        raise ApiError(
            422,
            "bad_location",
            f"pixel (x={query.x}, y={query.y}) lies outside the {query.width}x{query.height} image",
        )
    image = _remembered_image(model, query)
    job = Job(
        execute=lambda jobs: [
            model.receptive_field((query.height, query.width), (query.y, query.x), image)
        ],
        deadline=time.monotonic() + runtime.config.request_timeout_s,
    )
    view = await runtime.run(job, request)
    return await asyncio.to_thread(_field_answer, model, view, query, format, runtime.config)


async def receptive_field_get(
    request: Request,
    x: int = Query(ge=0),
    y: int = Query(ge=0),
    width: int = Query(ge=1, le=100_000),
    height: int = Query(ge=1, le=100_000),
    image_id: str | None = Query(None, max_length=64),
    format: Literal["json", "png"] = Query("json"),
) -> Response:
    query = ReceptiveFieldRequest(x=x, y=y, width=width, height=height, image_id=image_id)
    return await receptive_field(query, format, request)


async def receptive_field_post(
    request: Request,
    query: ReceptiveFieldRequest,
    format: Literal["json", "png"] = Query("json"),
) -> Response:
    return await receptive_field(query, format, request)


async def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(_docs_page(request.app.openapi()))


async def page() -> FileResponse:
    return FileResponse(str(STATIC_DIR / "index.html"))


async def favicon() -> FileResponse:
    return FileResponse(str(STATIC_DIR / "favicon.svg"), media_type="image/svg+xml")


@dataclass(frozen=True)
class Route:
    """One endpoint: method, path, handler and FastAPI's route options (docs, schema)."""

    method: str
    path: str
    handler: Callable[..., Any]
    options: dict[str, Any] = field(default_factory=dict)


_SEGMENT_DOC = (
    "Send the image as the raw body or as multipart field `file`. "
    "`format=png` answers the label mask as a palette PNG (pixel value = class index), "
    "`overlay` the colours blended over the image, `json` the per-class areas "
    "(and with `mask=true` the labels as a greyscale PNG data URL, and an `image_id` "
    "for the receptive-field endpoint). Images whose estimated inference time exceeds "
    "the request timeout are refused at once with 413 `too_costly`."
)
_SEGMENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}, "application/json": {}}},
    400: {"description": "empty body or no file field"},
    408: {"description": "the upload arrived too slowly"},
    413: {"description": "upload or image too large, or too costly to finish in time"},
    415: {"description": "not an image"},
    422: {"description": "truncated or corrupt image, or invalid parameters"},
    503: {"description": "busy (see Retry-After) or model not loaded"},
    504: {"description": "timed out"},
}
_SEGMENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_RF_DOC = (
    "Coverage map (paths through the dilated convolutions, holes = gridding) and "
    "effective receptive field (absolute input gradient) of the output pixel (x, y) of "
    "an image of the given size. The coverage map depends on the architecture only "
    "(not on the image or the weights). The ERF uses the model's weights: at the "
    "uploaded image when `image_id` names one, else averaged over random inputs. "
    "`stages` lists every dilated stage (and a head's ASPP or context module) with its "
    "coverage at the same pixel on the feature map it reads, where gridding shows: box, "
    "hole fraction, lattice period, path-count range and a log-scale map, computed at "
    "the image's own size (`stage_size`). Coverage maps use a log10 colour scale from "
    "`paths.low` to `paths.high` (`colour_bars`). `format=json` answers the maps as PNG "
    "data URLs with their statistics; `format=png` as one image, coverage left, ERF right."
)
_RF_OPTIONS = {
    "tags": ["analysis"],
    "description": _RF_DOC,
    "response_class": Response,
    "responses": {200: {"content": {"image/png": {}, "application/json": {}}}},
}
_PROBE = {"tags": ["probes"]}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", healthz, {**_PROBE, "summary": "The process is up"}),
    Route(
        "GET",
        "/readyz",
        readyz,
        {**_PROBE, "summary": "The model is loaded and requests are served"},
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        {
            **_PROBE,
            "summary": "Prometheus metrics: requests, latency, queue, rejections, dropped work",
            "response_class": Response,
        },
    ),
    Route(
        "GET",
        "/v1/models",
        models,
        {"tags": ["models"], "summary": "The served model: classes, colours, limits"},
    ),
    Route(
        "POST",
        "/v1/segment",
        segment,
        {
            "tags": ["segmentation"],
            "summary": "Segment an uploaded image",
            "description": _SEGMENT_DOC,
            "response_class": Response,
            "responses": _SEGMENT_RESPONSES,
            "openapi_extra": _SEGMENT_BODY,
        },
    ),
    Route(
        "POST",
        "/v1/segment-video",
        segment_video,
        {
            "tags": ["segmentation"],
            "summary": "Segment an uploaded clip (the video extra)",
            "description": "Send the clip as the raw body or as multipart field `file`. "
            "Refused at once with 413 when longer than max_video_seconds or too costly "
            "to finish within the request timeout.",
            "response_class": Response,
            "responses": {
                200: {"content": {"video/mp4": {}, "video/x-matroska": {}}},
                413: {"description": "clip too long, frames too large or too costly"},
                415: {"description": "not a video"},
                422: {"description": "a clip that ends early or cannot be decoded"},
            },
            "openapi_extra": _SEGMENT_BODY,
        },
    ),
    Route(
        "GET",
        "/v1/receptive-field",
        receptive_field_get,
        {**_RF_OPTIONS, "summary": "Where the network looks from one pixel"},
    ),
    Route(
        "POST",
        "/v1/receptive-field",
        receptive_field_post,
        {**_RF_OPTIONS, "summary": "Where the network looks from one pixel (JSON body)"},
    ),
    Route("GET", "/docs", docs, {"include_in_schema": False}),
    Route("GET", "/", page, {"include_in_schema": False}),
    Route("GET", "/favicon.ico", favicon, {"include_in_schema": False}),
)
"""Every endpoint of the service, in the order ``/docs`` lists them."""


def model_options(config: ServeConfig) -> dict[str, Any]:
    """The ``ServedModel`` keyword arguments that a configuration sets."""
    return {
        "device": config.device,
        "runtime": config.runtime,
        "precision": config.precision,
        "erf_samples": config.erf_samples,
        "max_analysis_side": config.max_analysis_side,
        "max_batch_size": config.max_batch_size,
        "slide_above_pixels": config.slide_above_pixels,
        "window": config.window,
    }


def _answer(
    model: ServedModel,
    image: np.ndarray,
    labels: np.ndarray,
    format: str,
    mask: bool,
    alpha: float,
    elapsed_ms: float,
    image_id: str,
    headers: dict[str, str],
) -> Response:
    """The /v1/segment answer in the asked format (runs in a thread: PNG encoding)."""
    if format == "png":
        from atrous.infer import colorize

        return Response(png_bytes(colorize(labels, model.palette)), 200, headers, "image/png")
    if format == "overlay":
        from atrous.infer import overlay

        blended = overlay(image, labels, model.palette, alpha)
        return Response(png_bytes(blended), 200, headers, "image/png")
    from atrous.infer import class_areas

    areas = class_areas(labels, model.class_names)
    for row in areas:
        row["color"] = list(model.palette[row["index"]])
        row["fraction"] = float(row["fraction"])
    answer: dict[str, Any] = {
        "model": model.name,
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "elapsed_ms": round(elapsed_ms, 1),
        "classes": areas,
    }
    if mask:
        answer["mask_png"] = data_url(label_png(labels))
        answer["image_id"] = image_id
    return JSONResponse(answer, headers=headers)


COVERAGE_COLOURS = "viridis"
ERF_COLOURS = "inferno"


def _box(box: tuple[int, ...]) -> dict[str, int]:
    return dict(zip(("y0", "y1", "x0", "x1"), (int(v) for v in box)))


def _count_range(counts: np.ndarray) -> dict[str, float]:
    low, high = count_range(counts)
    return {"low": low, "high": high}


def _stage_answer(stage: Any) -> dict[str, Any]:
    """One dilated stage's coverage at the clicked pixel, on the map it reads."""
    coverage = stage.coverage
    height, width = coverage.counts.shape
    period = coverage.grid_period if coverage.is_grid else None
    return {
        "name": stage.name,
        "title": stage.title,
        "rates": list(stage.rates),
        "source": stage.source,
        "stride": stage.stride,
        "grid": {"width": width, "height": height},
        "location": {"x": coverage.location[1], "y": coverage.location[0]},
        "box": _box(coverage.box),
        "hole_fraction": coverage.hole_fraction,
        "lattice": None if period is None else {"y": period[0], "x": period[1]},
        "paths": _count_range(coverage.counts),
        "png": data_url(png_bytes(log_heatmap(coverage.counts, colormap=COVERAGE_COLOURS))),
    }


def _field_answer(
    model: ServedModel,
    view: Any,
    query: ReceptiveFieldRequest,
    format: str,
    config: ServeConfig,
) -> Response:
    """The /v1/receptive-field answer (runs in a thread: heat maps and PNG encoding)."""
    coverage_image = log_heatmap(view.coverage, colormap=COVERAGE_COLOURS)
    erf_image = heatmap(view.erf, colormap=ERF_COLOURS, gamma=0.5)
    if format == "png":
        return Response(png_bytes(side_by_side(coverage_image, erf_image)), 200, None, "image/png")
    height, width = view.analysed_size
    max_paths = float(view.coverage.max())
    stage_height, stage_width = view.stage_size or view.analysed_size
    return JSONResponse(
        {
            "model": model.name,
            "image_size": {"width": query.width, "height": query.height},
            "analysed_size": {"width": width, "height": height},
            "scale": view.scale,
            "location": {"x": view.location[1], "y": view.location[0]},
            "note": (
                f"computed on the image grid resized to {width}x{height} "
                f"(longest side capped at {config.max_analysis_side} for speed)"
                if view.scale < 1.0
                else f"computed at the image size {width}x{height}"
            ),
            "coverage": {
                "box": _box(view.box),
                "hole_fraction": view.hole_fraction,
                # A string: JavaScript numbers lose integers above 2**53.
                "max_paths": str(round(max_paths)),
                "max_paths_exact": max_paths <= EXACT_INTEGER_LIMIT,
                "paths": _count_range(view.coverage),
                "depends_on": "architecture only: the same for every image and weights",
                "png": data_url(png_bytes(coverage_image)),
            },
            "stages": [_stage_answer(stage) for stage in view.stages],
            "stage_size": {"width": stage_width, "height": stage_height},
            "colour_bars": {
                "coverage": {
                    "colours": colour_stops(COVERAGE_COLOURS),
                    "scale": "log10",
                    "label": "paths per position (log scale)",
                },
                "erf": {
                    "colours": colour_stops(ERF_COLOURS),
                    "scale": "sqrt",
                    "label": "|gradient|, share of the peak (square-root scale)",
                },
            },
            "erf": {
                "radius_50": round(view.erf_radius, 2),
                "on_image": view.erf_on_image,
                "samples": 1 if view.erf_on_image else model.erf_samples,
                "depends_on": (
                    "the model's weights at the uploaded image"
                    if view.erf_on_image
                    else "the model's weights, averaged over random inputs (no image_id given)"
                ),
                "png": data_url(png_bytes(erf_image)),
            },
        }
    )
