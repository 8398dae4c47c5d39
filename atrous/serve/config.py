"""The service's settings: what it serves, where it listens, and the limits that keep it up.

``atrous serve`` builds its command-line flags from the fields of ``ServeConfig``
(names, types, defaults, and the help text of each attribute in the docstring below), so
a new setting is added in one place.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ServeConfig:
    """Settings of ``atrous serve``; every limit has a default that is safe on a laptop.

    The limits exist because the service takes arbitrary uploads: an upload cap stops a
    client filling memory with the body, a pixel cap stops a few-kB PNG that decodes into
    billions of pixels, the concurrency cap plus a bounded queue keep CPU inference from
    thrashing, a cost estimate refuses up front what could not finish in time, and
    timeouts bound how long a client can hold a connection or a queue slot.

    Attributes:
        model: shipped model name or folder of a saved model (see ``atrous.load_pretrained``);
            default ``camvid``, the shipped CamVid street model.
            Fixed when the service starts: no endpoint loads a model named by a client.
        host: interface to bind; loopback by default so nothing is exposed by accident.
        port: TCP port.
        device: torch device for inference.
        runtime: what runs the model on the CPU: torch, onnxruntime or openvino.
        precision: fp32, bf16, int8 or auto (bf16 where the CPU runs it natively, else
            fp32; request sizes vary, so nothing is compiled per size; see
            ``atrous.infer.runtime``). The receptive-field views always use the fp32 model.
        max_upload_bytes: largest request body accepted by /v1/segment, multipart
            framing included (413 above).
        max_image_pixels: largest decoded image, width x height (413 above).
        request_timeout_s: longest an upload may take to arrive (408 above), and longest
            a segmentation may wait in the queue plus run (504 above); images whose
            measured cost says they cannot finish within it are refused at once (413).
        header_timeout_s: longest a client may take to send a request's headers; the
            connection is closed after it (slow-header attacks).
        max_concurrent_inferences: inference batches run at the same time; torch already
            uses several threads per inference on CPU, so 1 is usually fastest.
        max_queued_requests: requests allowed to wait for a slot; beyond that a request
            gets 503 with Retry-After at once instead of piling up.
        max_batch_size: concurrent requests for images of one size run as one batch of
            at most this many (1 turns batching off).
        batch_wait_ms: how long a batch waits for more requests of its size to join.
        slide_above_pixels: images with more pixels run through sliding windows, whose
            memory is bounded by the window, and stop between windows when cancelled.
        window: side of the sliding windows in pixels.
        retry_after_s: the Retry-After value sent with 503 when the queue is full.
        max_analysis_side: longest side at which the receptive-field view is computed;
            clicks on larger images are mapped onto a resized grid of that size.
        erf_samples: random inputs averaged for the effective receptive field when no
            uploaded image is named.
        max_video_seconds: longest clip ``/v1/segment-video`` takes (its upload is also
            bounded by ``max_upload_bytes`` and its cost by ``request_timeout_s``).
        shutdown_grace_s: on shutdown, how long in-flight requests may take to finish;
            queued work is dropped and the process exits soon after this bound.
        allowed_hosts: Host header values accepted (DNS-rebinding guard); empty means
            the bound address, plus the loopback names when bound to loopback (any host
            when bound to a wildcard address such as 0.0.0.0).
        allowed_origins: origins (scheme://host:port) besides the page's own whose
            browsers may POST; other cross-origin POSTs get 403.
    """

    model: str = "camvid"
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "cpu"
    runtime: str = "torch"
    precision: str = "auto"
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 16_000_000
    request_timeout_s: float = 30.0
    header_timeout_s: float = 10.0
    max_concurrent_inferences: int = 1
    max_queued_requests: int = 16
    max_batch_size: int = 4
    batch_wait_ms: float = 5.0
    slide_above_pixels: int = 1_048_576
    window: int = 512
    retry_after_s: int = 1
    max_analysis_side: int = 128
    erf_samples: int = 4
    max_video_seconds: float = 60.0
    shutdown_grace_s: float = 10.0
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive = (
            "max_upload_bytes",
            "max_image_pixels",
            "request_timeout_s",
            "header_timeout_s",
            "max_concurrent_inferences",
            "max_batch_size",
            "slide_above_pixels",
            "window",
            "retry_after_s",
            "max_analysis_side",
            "erf_samples",
            "max_video_seconds",
        )
        for name in positive:
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"ServeConfig.{name} must be > 0, got {value!r}")
        for name in ("max_queued_requests", "batch_wait_ms", "shutdown_grace_s"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"ServeConfig.{name} must be >= 0, got {value!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"ServeConfig.port must lie in 1..65535, got {self.port}")
        if not self.model:
            raise ValueError("ServeConfig.model must name a shipped model or a saved folder")
        from atrous.infer.runtime import PRECISIONS, RUNTIMES

        for name, allowed in (("runtime", RUNTIMES), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"ServeConfig.{name} must be one of {', '.join(allowed)}, "
                    f"got {getattr(self, name)!r}"
                )
        for origin in self.allowed_origins:
            if "://" not in origin:
                raise ValueError(
                    f"ServeConfig.allowed_origins: {origin!r} is not an origin; "
                    "write scheme://host[:port], e.g. http://localhost:3000"
                )
        # Tuples, also when built from lists (the CLI, YAML): the config stays hashable.
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        object.__setattr__(self, "allowed_origins", tuple(self.allowed_origins))

    def limits(self) -> dict[str, float | int]:
        """The limits a client may want to know, as reported by ``GET /v1/models``."""
        names = (
            "max_upload_bytes",
            "max_image_pixels",
            "request_timeout_s",
            "max_concurrent_inferences",
            "max_queued_requests",
            "max_batch_size",
            "max_analysis_side",
            "max_video_seconds",
        )
        return {name: getattr(self, name) for name in names}

    def host_names(self) -> frozenset[str] | None:
        """Host header names accepted, lower-case without port; ``None`` accepts any.

        A browser on the user's machine can be made to send requests to 127.0.0.1 under
        an attacker's domain name (DNS rebinding); those carry that name in Host, so
        accepting only the names the server is known by closes the hole.
        """
        if self.allowed_hosts:
            return frozenset(h.lower().strip("[]") for h in self.allowed_hosts)
        bound = self.host.lower().strip("[]")
        try:
            address = ipaddress.ip_address(bound)
        except ValueError:
            address = None
        if address is not None and address.is_unspecified:
            return None
        # The bound name or address, and loopback (the machine's own clients).
        return frozenset((bound, *LOOPBACK_NAMES))
