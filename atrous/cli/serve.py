"""``atrous serve``: the HTTP service and web page (needs the ``serve`` extra).

The flags are generated from the fields of ``ServeConfig``:
name (``max_queued_requests`` -> ``--max-queued-requests``), type, default, and the help
text of each attribute in its docstring. A new setting is added to the dataclass only.
"""

from __future__ import annotations

import argparse
import logging
import sys

from atrous.serve.flags import add_config_arguments, config_from_args

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="HTTP service and web page: segment images, see receptive fields",
        description="Serve one model over HTTP: POST /v1/segment, GET /v1/models, "
        "GET /v1/receptive-field, /healthz, /readyz, /metrics, the API reference at "
        "/docs, and a web page at /. Binds to loopback unless --host says otherwise.",
    )
    add_config_arguments(p)
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch intra-op threads for the whole server process (default: torch's "
        "choice); 1 avoids oversubscription on a small or shared CPU",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"atrous serve: {error}", file=sys.stderr)
        return 2
    try:
        import uvicorn

        from atrous.serve.app import create_app, model_options
        from atrous.serve.server import configure_access_log, uvicorn_config
        from atrous.serve.service import ServedModel
    except ImportError as error:
        print(
            f"atrous serve needs the serve extra: pip install 'atrous[serve]' ({error})",
            file=sys.stderr,
        )
        return 2
    if args.torch_threads is not None:
        if args.torch_threads < 1:
            print(
                f"atrous serve: --torch-threads must be >= 1, got {args.torch_threads}",
                file=sys.stderr,
            )
            return 2
        import torch

        # Documented exception to "no set_num_threads in library code": the server
        # process is the user's, and they asked for this count on the command line.
        torch.set_num_threads(args.torch_threads)
    # Load (and time) the model before binding the port: a wrong name or a broken folder
    # fails the command with its reason instead of a server that only answers 503.
    try:
        model = ServedModel.load(config.model, **model_options(config))
        seconds = model.calibrate()
    except Exception as error:  # any failure to load is the user's to see, then exit
        print(f"atrous serve: cannot load model {config.model!r}: {error}", file=sys.stderr)
        return 1
    logger.info(
        "model %r loaded on %s; %.3f s for a 256x256 image (%.3g s per megapixel)",
        config.model,
        model.choice.describe(),
        seconds,
        (model.cost.seconds_per_pixel or 0.0) * 1e6,
    )
    if config.host_names() is None:
        logger.warning(
            "binding to %s with no allowed_hosts: any Host header is accepted", config.host
        )
    elif config.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("binding to %s: the service is reachable from other machines", config.host)
    configure_access_log()
    app = create_app(config, loader=lambda: model, calibrate=False)
    # uvicorn handles SIGINT/SIGTERM: it stops accepting, lets in-flight requests finish
    # for up to shutdown_grace_s, then the app drops its queue and exits.
    server = uvicorn.Server(uvicorn_config(app, config))
    server.run()
    return 0 if server.started else 1
