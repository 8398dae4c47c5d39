"""The FastAPI application: segmentation and receptive-field endpoints, probes, the page.

The model is loaded in a background thread once the app starts, so ``/healthz`` answers
at once and ``/readyz`` turns ready only when the model can serve; orchestrators and
the page both wait on it. The model to serve is fixed by the server's configuration:
no endpoint takes a model name or a path.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

import atrous
from atrous.serve.config import ServeConfig
from atrous.serve.limiter import InferenceLimiter, InferenceTimeoutError, QueueFullError
from atrous.serve.render import data_url, heatmap, label_png, png_bytes, side_by_side
from atrous.serve.service import ServedModel
from atrous.serve.uploads import UploadError, decode_image

logger = logging.getLogger(__name__)

STATIC_DIR = resources.files("atrous.serve") / "static"

Loader = Callable[[], ServedModel]


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
    """A pixel of an image of the given size (the image itself is not needed)."""

    x: int = Field(ge=0, description="column of the clicked pixel")
    y: int = Field(ge=0, description="row of the clicked pixel")
    width: int = Field(ge=1, le=100_000, description="image width in pixels")
    height: int = Field(ge=1, le=100_000, description="image height in pixels")


class _Runtime:
    """What the app holds between requests: the model (once loaded) and the limiter."""

    def __init__(self, config: ServeConfig, loader: Loader) -> None:
        self.config = config
        self.loader = loader
        self.model: ServedModel | None = None
        self.load_error: str | None = None
        self.limiter: InferenceLimiter | None = None
        self.loaded = threading.Event()

    def load(self) -> None:
        started = time.perf_counter()
        try:
            self.model = self.loader()
        except Exception as error:  # reported by /readyz, the process stays up
            logger.exception("loading model %r failed", self.config.model)
            self.load_error = f"{type(error).__name__}: {error}"
        else:
            logger.info(
                "model %r ready in %.1f s", self.config.model, time.perf_counter() - started
            )
        finally:
            self.loaded.set()

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

    async def run(self, function: Callable[[], Any]) -> Any:
        assert self.limiter is not None
        try:
            return await self.limiter.run(function, timeout_s=self.config.request_timeout_s)
        except QueueFullError as error:
            raise ApiError(
                503,
                "busy",
                f"the server is at its inference limit ({error}); retry later",
                headers={"Retry-After": str(self.config.retry_after_s)},
            ) from error
        except InferenceTimeoutError as error:
            raise ApiError(
                504, "timeout", f"request timed out ({error}); try a smaller image"
            ) from error


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


def create_app(config: ServeConfig, *, loader: Loader | None = None) -> FastAPI:
    """Build the application.

    Args:
        config: what to serve and the limits.
        loader: builds the :class:`ServedModel`; defaults to loading ``config.model``
            with :meth:`ServedModel.load`. Tests pass their own (for example a model
            wrapped to be slow) to exercise the limits.
    """
    if loader is None:

        def loader() -> ServedModel:
            return ServedModel.load(
                config.model,
                device=config.device,
                erf_samples=config.erf_samples,
                max_analysis_side=config.max_analysis_side,
            )

    runtime = _Runtime(config, loader)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.limiter = InferenceLimiter(
            max_concurrent=config.max_concurrent_inferences,
            max_queued=config.max_queued_requests,
        )
        threading.Thread(target=runtime.load, name="atrous-load-model", daemon=True).start()
        yield
        runtime.limiter.close()

    app = FastAPI(
        title="atrous",
        version=atrous.__version__,
        description="Semantic segmentation with dilated convolutions, and where the "
        "network looks: coverage maps and effective receptive fields.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime

    @app.exception_handler(UploadError)
    async def _upload_error(_: Request, error: UploadError) -> JSONResponse:
        return JSONResponse({"error": error.code, "detail": error.message}, error.status)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(
            {"error": error.code, "detail": error.message}, error.status, headers=error.headers
        )

    @app.get("/healthz", tags=["probes"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], summary="The model is loaded and requests are served")
    async def readyz() -> JSONResponse:
        load = runtime.limiter.stats() if runtime.limiter else {}
        if runtime.model is not None:
            return JSONResponse({"status": "ready", "model": runtime.model.name, "load": load})
        if runtime.load_error is not None:
            return JSONResponse({"status": "failed", "detail": runtime.load_error}, 503)
        return JSONResponse(
            {"status": "loading"}, 503, headers={"Retry-After": str(config.retry_after_s)}
        )

    @app.get("/v1/models", tags=["models"], summary="The served model: classes, colours, limits")
    async def models() -> dict[str, Any]:
        model = runtime.require_model()
        return {"models": [{**model.info(), "limits": config.limits()}]}

    @app.post(
        "/v1/segment",
        tags=["segmentation"],
        summary="Segment an uploaded image",
        description="Send the image as the raw body or as multipart field `file`. "
        "`format=png` answers the label mask as a palette PNG (pixel value = class index), "
        "`overlay` the colours blended over the image, `json` the per-class areas "
        "(and with `mask=true` the labels as a greyscale PNG data URL).",
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}, "application/json": {}}},
            400: {"description": "empty body or no file field"},
            408: {"description": "the upload arrived too slowly"},
            413: {"description": "upload or image too large"},
            415: {"description": "not an image"},
            422: {"description": "truncated or corrupt image"},
            503: {"description": "busy (see Retry-After) or model not loaded"},
            504: {"description": "timed out"},
        },
        openapi_extra={
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
        },
    )
    async def segment(
        request: Request,
        format: Literal["png", "json", "overlay"] = Query("png", description="answer format"),
        mask: bool = Query(False, description="with format=json, include the labels"),
        alpha: float = Query(0.5, ge=0.0, le=1.0, description="overlay colour weight"),
    ) -> Response:
        model = runtime.require_model()
        try:
            # A client that trickles its body must not hold a connection forever.
            data = await asyncio.wait_for(
                _upload_bytes(request, config.max_upload_bytes), config.request_timeout_s
            )
        except TimeoutError as error:
            raise ApiError(
                408,
                "upload_timeout",
                f"the upload did not arrive within {config.request_timeout_s:g} s",
            ) from error
        timing: dict[str, float] = {}

        def decode_and_segment() -> tuple[np.ndarray, np.ndarray]:
            # Decoding runs under the limiter too: a burst of large uploads then cannot
            # hold more decoded images in memory than there are inference slots.
            image = decode_image(data, max_pixels=config.max_image_pixels)
            started = time.perf_counter()
            labels = model.segment(image)
            timing["ms"] = (time.perf_counter() - started) * 1000.0
            return image, labels

        image, labels = await runtime.run(decode_and_segment)
        elapsed_ms = timing["ms"]
        headers = {"X-Inference-Ms": f"{elapsed_ms:.1f}"}
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
        return JSONResponse(answer, headers=headers)

    async def receptive_field(query: ReceptiveFieldRequest, format: str) -> Response:
        model = runtime.require_model()
        if query.x >= query.width or query.y >= query.height:
            raise ApiError(
                422,
                "bad_location",
                f"pixel (x={query.x}, y={query.y}) lies outside the "
                f"{query.width}x{query.height} image",
            )
        view = await runtime.run(
            lambda: model.receptive_field((query.height, query.width), (query.y, query.x))
        )
        coverage_image = heatmap(view.coverage, colormap="viridis")
        erf_image = heatmap(view.erf, colormap="inferno", gamma=0.5)
        if format == "png":
            return Response(
                png_bytes(side_by_side(coverage_image, erf_image)), 200, None, "image/png"
            )
        height, width = view.analysed_size
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
                    "box": dict(zip(("y0", "y1", "x0", "x1"), view.box)),
                    "hole_fraction": view.hole_fraction,
                    "max_paths": int(view.coverage.max()),
                    "png": data_url(png_bytes(coverage_image)),
                },
                "erf": {
                    "radius_50": round(view.erf_radius, 2),
                    "samples": model.erf_samples,
                    "png": data_url(png_bytes(erf_image)),
                },
            }
        )

    rf_description = (
        "Coverage map (paths through the dilated convolutions, holes = gridding) and "
        "effective receptive field (mean absolute input gradient) of the output pixel "
        "(x, y) of an image of the given size. `format=json` answers both as PNG data "
        "URLs with their statistics; `format=png` as one image, coverage left, ERF right."
    )

    @app.get(
        "/v1/receptive-field",
        tags=["analysis"],
        summary="Where the network looks from one pixel",
        description=rf_description,
        response_class=Response,
        responses={200: {"content": {"image/png": {}, "application/json": {}}}},
    )
    async def receptive_field_get(
        x: int = Query(ge=0),
        y: int = Query(ge=0),
        width: int = Query(ge=1, le=100_000),
        height: int = Query(ge=1, le=100_000),
        format: Literal["json", "png"] = Query("json"),
    ) -> Response:
        query = ReceptiveFieldRequest(x=x, y=y, width=width, height=height)
        return await receptive_field(query, format)

    @app.post(
        "/v1/receptive-field",
        tags=["analysis"],
        summary="Where the network looks from one pixel (JSON body)",
        description=rf_description,
        response_class=Response,
        responses={200: {"content": {"image/png": {}, "application/json": {}}}},
    )
    async def receptive_field_post(
        query: ReceptiveFieldRequest, format: Literal["json", "png"] = Query("json")
    ) -> Response:
        return await receptive_field(query, format)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC_DIR / "index.html"))

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    return app
