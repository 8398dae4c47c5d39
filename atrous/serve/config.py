"""The service's settings: what it serves, where it listens, and the limits that keep it up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    """Settings of ``atrous serve``; every limit has a default that is safe on a laptop.

    The limits exist because the service takes arbitrary uploads: an upload cap stops a
    client filling memory with the body, a pixel cap stops a few-kB PNG that decodes into
    billions of pixels, the concurrency cap plus a bounded queue keep CPU inference from
    thrashing, and a timeout bounds how long a client can hold a queue slot.

    Attributes:
        model: registry name or folder of a saved model (see ``atrous.load_pretrained``).
            Fixed when the service starts: no endpoint loads a model named by a client.
        host: interface to bind; loopback by default so nothing is exposed by accident.
        port: TCP port.
        device: torch device for inference.
        max_upload_bytes: largest request body accepted by ``/v1/segment``, multipart
            framing included (413 above).
        max_image_pixels: largest decoded image, width x height (413 above).
        request_timeout_s: longest an upload may take to arrive (408 above), and longest
            a segmentation may wait in the queue plus run (504 above).
        max_concurrent_inferences: inferences run at the same time; torch already uses
            several threads per inference on CPU, so 1 is usually fastest.
        max_queued_requests: requests allowed to wait for a slot; beyond that a request
            gets 503 with ``Retry-After`` at once instead of piling up.
        retry_after_s: the ``Retry-After`` value sent with 503.
        max_analysis_side: longest side at which the receptive-field view is computed;
            clicks on larger images are mapped onto a resized grid of that size.
        erf_samples: random inputs averaged for the effective receptive field.
        shutdown_grace_s: on shutdown, how long in-flight requests may take to finish.
    """

    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "cpu"
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 16_000_000
    request_timeout_s: float = 30.0
    max_concurrent_inferences: int = 1
    max_queued_requests: int = 16
    retry_after_s: int = 1
    max_analysis_side: int = 128
    erf_samples: int = 4
    shutdown_grace_s: float = 30.0

    def __post_init__(self) -> None:
        positive = (
            "max_upload_bytes",
            "max_image_pixels",
            "request_timeout_s",
            "max_concurrent_inferences",
            "retry_after_s",
            "max_analysis_side",
            "erf_samples",
        )
        for name in positive:
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"ServeConfig.{name} must be > 0, got {value!r}")
        if self.max_queued_requests < 0:
            raise ValueError(
                f"ServeConfig.max_queued_requests must be >= 0, got {self.max_queued_requests}"
            )
        if not 0 < self.port < 65536:
            raise ValueError(f"ServeConfig.port must lie in 1..65535, got {self.port}")
        if self.shutdown_grace_s < 0:
            raise ValueError(
                f"ServeConfig.shutdown_grace_s must be >= 0, got {self.shutdown_grace_s}"
            )
        if not self.model:
            raise ValueError("ServeConfig.model must name a shipped model or a saved folder")

    def limits(self) -> dict[str, float | int]:
        """The limits a client may want to know, as reported by ``GET /v1/models``."""
        names = (
            "max_upload_bytes",
            "max_image_pixels",
            "request_timeout_s",
            "max_concurrent_inferences",
            "max_queued_requests",
            "max_analysis_side",
        )
        return {name: getattr(self, name) for name in names}
