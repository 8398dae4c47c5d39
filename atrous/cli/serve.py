"""``atrous serve``: the HTTP service and web page (needs the ``serve`` extra)."""

from __future__ import annotations

import argparse
import logging

from atrous.serve.config import ServeConfig

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = ServeConfig(model="-")
    p = subparsers.add_parser(
        "serve",
        help="HTTP service and web page: segment images, see receptive fields",
        description="Serve one model over HTTP: POST /v1/segment, GET /v1/models, "
        "GET /v1/receptive-field, /healthz, /readyz, OpenAPI at /docs, and a web page at /. "
        "Binds to loopback unless --host says otherwise.",
    )
    p.add_argument("--model", required=True, help="shipped model name or saved model folder")
    p.add_argument("--host", default=defaults.host, help="interface to bind (default: %(default)s)")
    p.add_argument(
        "--port", type=int, default=defaults.port, help="TCP port (default: %(default)s)"
    )
    p.add_argument("--device", default=defaults.device, help="torch device (default: %(default)s)")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch intra-op threads for the whole server process (default: torch's "
        "choice); 1 avoids oversubscription on a small or shared CPU",
    )
    limits = p.add_argument_group("limits")
    limits.add_argument(
        "--max-upload-mb",
        type=float,
        default=defaults.max_upload_bytes / 2**20,
        help="largest upload in MiB (default: %(default)g)",
    )
    limits.add_argument(
        "--max-image-pixels",
        type=int,
        default=defaults.max_image_pixels,
        help="largest decoded image, width x height (default: %(default)d)",
    )
    limits.add_argument(
        "--request-timeout",
        type=float,
        default=defaults.request_timeout_s,
        help="seconds a request may wait plus run (default: %(default)g)",
    )
    limits.add_argument(
        "--max-concurrent",
        type=int,
        default=defaults.max_concurrent_inferences,
        help="inferences run at once (default: %(default)d)",
    )
    limits.add_argument(
        "--max-queue",
        type=int,
        default=defaults.max_queued_requests,
        help="requests waiting for a slot before 503 (default: %(default)d)",
    )
    limits.add_argument(
        "--max-analysis-side",
        type=int,
        default=defaults.max_analysis_side,
        help="longest side of the receptive-field analysis grid (default: %(default)d)",
    )
    limits.add_argument(
        "--erf-samples",
        type=int,
        default=defaults.erf_samples,
        help="random inputs averaged for the effective receptive field (default: %(default)d)",
    )
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The :class:`ServeConfig` the command line asks for (validated)."""
    return ServeConfig(
        model=args.model,
        host=args.host,
        port=args.port,
        device=args.device,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_image_pixels=args.max_image_pixels,
        request_timeout_s=args.request_timeout,
        max_concurrent_inferences=args.max_concurrent,
        max_queued_requests=args.max_queue,
        max_analysis_side=args.max_analysis_side,
        erf_samples=args.erf_samples,
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"atrous serve: {error}")
        return 2
    try:
        import uvicorn

        from atrous.serve.app import create_app
    except ImportError as error:
        print(f"atrous serve needs the serve extra: pip install 'atrous[serve]' ({error})")
        return 2
    if args.torch_threads is not None:
        if args.torch_threads < 1:
            print(f"atrous serve: --torch-threads must be >= 1, got {args.torch_threads}")
            return 2
        import torch

        # Documented exception to "no set_num_threads in library code": the server
        # process is the user's, and they asked for this count on the command line.
        torch.set_num_threads(args.torch_threads)
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("binding to %s: the service is reachable from other machines", config.host)
    # uvicorn handles SIGINT/SIGTERM: it stops accepting, lets in-flight requests
    # finish for up to the grace period, then runs the app's shutdown.
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        timeout_graceful_shutdown=config.shutdown_grace_s,
        log_level="info",
    )
    return 0
