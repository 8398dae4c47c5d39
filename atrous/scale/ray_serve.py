"""The app of ``atrous serve`` as a Ray Serve deployment: replicas, bounded queues, autoscaling.

Each replica runs the very FastAPI app that ``atrous serve`` runs on uvicorn
(``atrous.serve.create_app``), built inside the replica so the model loads there,
with its own limiter. Ray Serve adds what one process cannot: several replicas (on
several machines) behind one HTTP proxy, and replicas added or removed with the load.

Queues stay bounded at both levels. A replica accepts at most
``max_concurrent_inferences + max_queued_requests`` requests at a time (Serve's
``max_ongoing_requests``; the app's own limiter answers 503 beyond its queue), and the
proxy holds at most ``proxy_queue`` requests waiting for a replica before answering 503
itself, so a burst is refused early instead of piling up in memory.

One command::

    python -m atrous.scale.ray_serve --model camvid --replicas 2
    python -m atrous.scale.ray_serve --model camvid --min-replicas 1 --max-replicas 4
    python -m atrous.scale.ray_serve --model camvid --replicas 2 --address ray://head:10001

It takes every flag of ``atrous serve`` (limits, host, port) plus the replica settings.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from atrous.scale import RAY_MISSING
from atrous.serve.config import ServeConfig

try:
    from ray import serve
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(f"atrous.scale.ray_serve: {RAY_MISSING}") from error

logger = logging.getLogger(__name__)

APP_NAME = "atrous"


@dataclass(frozen=True)
class ReplicaSettings:
    """How many replicas, how big, and when to add or remove them.

    Attributes:
        replicas: a fixed replica count (used when ``max_replicas`` is None).
        min_replicas: with autoscaling, the fewest replicas kept (0 scales to zero).
        max_replicas: turns autoscaling on: Serve adds replicas up to this many while
            requests wait, and removes them when idle.
        target_ongoing_requests: requests per replica autoscaling aims at; default: the
            app's concurrent inferences, so a replica is added as soon as requests queue.
        cpus_per_replica: CPUs reserved per replica; also its torch thread count, so
            replicas on one machine do not oversubscribe its cores.
        proxy_queue: requests the proxy holds waiting for a free replica before it
            answers 503 (``max_queued_requests`` in Serve); default: the app's queue.
    """

    replicas: int = 1
    min_replicas: int = 1
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None
    cpus_per_replica: float = 1.0
    proxy_queue: int | None = None

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")
        if self.min_replicas < 0:
            raise ValueError(f"min_replicas must be >= 0, got {self.min_replicas}")
        if self.max_replicas is not None and self.max_replicas < max(1, self.min_replicas):
            raise ValueError(
                f"max_replicas must be >= max(1, min_replicas={self.min_replicas}), "
                f"got {self.max_replicas}"
            )
        if self.cpus_per_replica <= 0:
            raise ValueError(f"cpus_per_replica must be > 0, got {self.cpus_per_replica}")
        if self.target_ongoing_requests is not None and self.target_ongoing_requests <= 0:
            raise ValueError(
                f"target_ongoing_requests must be > 0, got {self.target_ongoing_requests}"
            )
        if self.proxy_queue is not None and self.proxy_queue < 0:
            raise ValueError(f"proxy_queue must be >= 0, got {self.proxy_queue}")

    def deployment_options(self, config: ServeConfig) -> dict[str, Any]:
        """Keyword arguments of ``serve.deployment`` for serving ``config``."""
        per_replica = config.max_concurrent_inferences + config.max_queued_requests
        options: dict[str, Any] = {
            "name": "AtrousService",
            "ray_actor_options": {"num_cpus": self.cpus_per_replica},
            "max_ongoing_requests": per_replica,
            "max_queued_requests": (
                config.max_queued_requests if self.proxy_queue is None else self.proxy_queue
            ),
            "graceful_shutdown_timeout_s": config.shutdown_grace_s,
        }
        if self.max_replicas is None:
            options["num_replicas"] = self.replicas
        else:
            target = self.target_ongoing_requests or config.max_concurrent_inferences
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "initial_replicas": max(1, self.min_replicas),
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": target,
            }
        return options


@serve.ingress()
class AtrousService:
    """One replica: the ``atrous serve`` app, built when the replica starts."""

    def __init__(self, config: ServeConfig, threads: int | None = None) -> None:
        if threads is not None:
            import torch

            # The replica is its own process; its CPU share is applied here.
            torch.set_num_threads(max(1, threads))
        self.config = config

    def __serve_build_asgi_app__(self) -> Any:
        from atrous.serve import create_app

        return create_app(self.config)


def build_application(config: ServeConfig, settings: ReplicaSettings | None = None) -> Any:
    """The Serve application for ``config``: pass it to ``serve.run``.

    ``config.host`` and ``config.port`` should be those of Serve's HTTP proxy
    (``serve.start(http_options=...)``): the app checks the Host header against them.
    """
    settings = settings or ReplicaSettings()
    deployment = serve.deployment(AtrousService, **settings.deployment_options(config))
    return deployment.bind(config, max(1, round(settings.cpus_per_replica)))


def start(
    config: ServeConfig,
    settings: ReplicaSettings | None = None,
    *,
    blocking: bool = False,
) -> Any:
    """Start Serve's proxy on ``config.host:config.port`` and deploy the app there.

    Connects to the Ray cluster already initialised, or starts a local one.

    Returns:
        The deployment handle (when not blocking).
    """
    serve.start(http_options={"host": config.host, "port": config.port})
    return serve.run(
        build_application(config, settings),
        name=APP_NAME,
        route_prefix="/",
        blocking=blocking,
    )


def build_parser() -> argparse.ArgumentParser:
    """``atrous serve``'s own flags plus the replica settings and the cluster address."""
    from atrous.serve.flags import add_config_arguments

    parser = argparse.ArgumentParser(
        prog="python -m atrous.scale.ray_serve",
        description="Serve the atrous app on Ray Serve: the flags of `atrous serve`, plus "
        "replicas.",
    )
    add_config_arguments(parser)
    group = parser.add_argument_group("Ray Serve")
    group.add_argument("--address", default=None, help="Ray cluster (default: local)")
    group.add_argument("--replicas", type=int, default=1, help="fixed replica count")
    group.add_argument("--min-replicas", type=int, default=1, help="autoscaling: fewest replicas")
    group.add_argument(
        "--max-replicas", type=int, default=None, help="turns autoscaling on: most replicas"
    )
    group.add_argument(
        "--target-ongoing", type=float, default=None, help="autoscaling: requests per replica"
    )
    group.add_argument("--cpus-per-replica", type=float, default=1.0, help="CPUs per replica")
    group.add_argument(
        "--proxy-queue", type=int, default=None, help="requests queued at the proxy before 503"
    )
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m atrous.scale.ray_serve``: start Serve and block until interrupted."""
    import ray

    from atrous.serve.flags import config_from_args

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
        settings = ReplicaSettings(
            replicas=args.replicas,
            min_replicas=args.min_replicas,
            max_replicas=args.max_replicas,
            target_ongoing_requests=args.target_ongoing,
            cpus_per_replica=args.cpus_per_replica,
            proxy_queue=args.proxy_queue,
        )
    except ValueError as error:
        print(f"atrous.scale.ray_serve: {error}", file=sys.stderr)
        return 2
    try:  # a bad --model fails here, not in every replica
        from atrous.infer.loading import load_model

        load_model(config.model)
    except (FileNotFoundError, ValueError) as error:
        print(f"atrous.scale.ray_serve: {error}", file=sys.stderr)
        return 2
    import signal

    # An orchestrator stops the command with SIGTERM: leave through the same path as
    # Ctrl-C, so Serve drains its replicas and a local Ray instance is shut down too.
    signal.signal(signal.SIGTERM, _interrupt)
    ray.init(address=args.address)
    try:
        start(config, settings, blocking=True)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
