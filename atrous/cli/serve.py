"""``atrous serve``: the HTTP service and web page (needs the ``serve`` extra).

The flags are generated from the fields of :class:`~atrous.serve.config.ServeConfig`:
name (``max_queued_requests`` -> ``--max-queued-requests``), type, default, and the help
text of each attribute in its docstring. A new setting is added to the dataclass only.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import re
import sys
from typing import Any

from atrous.serve.config import ServeConfig

logger = logging.getLogger(__name__)

# Short spellings kept from earlier versions of the command.
ALIASES = {
    "request_timeout_s": ("--request-timeout",),
    "max_concurrent_inferences": ("--max-concurrent",),
    "max_queued_requests": ("--max-queue",),
}
_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float}


def attribute_help(cls: type) -> dict[str, str]:
    """The ``Attributes:`` section of a Google-style docstring, as ``{name: text}``."""
    doc = inspect.getdoc(cls) or ""
    _, _, section = doc.partition("Attributes:\n")
    helps: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        entry = re.match(r"^    (\w+): (.*)$", line)
        if entry:
            name = entry[1]
            helps[name] = entry[2]
        elif name and line.startswith("        "):
            helps[name] += " " + line.strip()
        elif line.strip() == "" or not line.startswith(" "):
            name = None
    return helps


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`ServeConfig` field, typed and documented from the dataclass."""
    helps = attribute_help(ServeConfig)
    for field in dataclasses.fields(ServeConfig):
        flags = (f"--{field.name.replace('_', '-')}", *ALIASES.get(field.name, ()))
        text = helps.get(field.name, "").replace("%", "%%")
        if field.default is dataclasses.MISSING:
            parser.add_argument(*flags, dest=field.name, required=True, help=text)
        elif field.type == "tuple[str, ...]":
            parser.add_argument(
                *flags,
                dest=field.name,
                nargs="*",
                default=list(field.default),
                metavar="VALUE",
                help=f"{text} (default: none)",
            )
        else:
            parser.add_argument(
                *flags,
                dest=field.name,
                type=_TYPES[str(field.type)],
                default=field.default,
                metavar=str(field.type).upper(),
                help=f"{text} (default: %(default)s)",
            )


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


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The :class:`ServeConfig` the command line asks for (validated)."""
    return ServeConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServeConfig)})


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
        "model %r loaded; %.3f s for a 256x256 image (%.3g s per megapixel)",
        config.model,
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
