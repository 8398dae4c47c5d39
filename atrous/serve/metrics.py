"""Counters and histograms of the service, exposed at ``/metrics`` in Prometheus's text format.

Written out here (about a hundred lines) instead of depending on ``prometheus_client``:
the service needs four metric families and the text exposition format (version 0.0.4)
is a few lines per family. Label values are bounded by construction (route templates,
status codes, fixed reasons), so no client can grow the series without bound.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable

# Seconds; from a cached small image on a fast machine to a timed-out request.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    pairs = list(labels) + ([extra] if extra else [])
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self._values: dict[Labels, float] = defaultdict(float)
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._values[tuple(sorted(labels.items()))] += amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(sorted(labels.items())), 0.0)

    def expose(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for labels, value in sorted(self._values.items()):
                lines.append(f"{self.name}{_labels(labels)} {_number(value)}")
        return lines


class Histogram:
    """Observations counted into cumulative buckets, per label set."""

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help = name, help_text
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = defaultdict(float)
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
            counts[bisect.bisect_left(self.buckets, value)] += 1
            self._sums[key] += value

    def count(self, **labels: str) -> int:
        return sum(self._counts.get(tuple(sorted(labels.items())), []))

    def expose(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for labels, counts in sorted(self._counts.items()):
                running = 0
                for bound, count in zip((*self.buckets, float("inf")), counts):
                    running += count
                    le = ("le", _number(bound))
                    lines.append(f"{self.name}_bucket{_labels(labels, le)} {running}")
                lines.append(f"{self.name}_sum{_labels(labels)} {_number(self._sums[labels])}")
                lines.append(f"{self.name}_count{_labels(labels)} {running}")
        return lines


class Metrics:
    """Everything ``/metrics`` reports; gauges are read from ``gauges`` at scrape time."""

    def __init__(self, gauges: Callable[[], dict[str, tuple[str, float]]] | None = None) -> None:
        self.requests = Counter(
            "atrous_http_requests_total", "HTTP requests answered, by method, route and status."
        )
        self.latency = Histogram(
            "atrous_http_request_duration_seconds",
            "Time from the request's arrival to the end of its answer, by route.",
            LATENCY_BUCKETS,
        )
        self.rejections = Counter(
            "atrous_rejections_total",
            "Requests refused before any inference, by reason (busy, too_costly, "
            "too_many_pixels, upload_too_large, host_not_allowed, cross_origin, ...).",
        )
        self.skipped = Counter(
            "atrous_jobs_skipped_total",
            "Queued inferences dropped without running, by reason (client_gone, timeout, "
            "shutdown).",
        )
        self.cancelled = Counter(
            "atrous_jobs_cancelled_total",
            "Started inferences stopped (after decoding, between layers or windows), by reason.",
        )
        self.batch_size = Histogram(
            "atrous_inference_batch_size", "Requests segmented per forward batch.", BATCH_BUCKETS
        )
        self.gauges = gauges

    def expose(self) -> str:
        """The exposition text (``text/plain; version=0.0.4``)."""
        lines: list[str] = []
        for family in (
            self.requests,
            self.latency,
            self.rejections,
            self.skipped,
            self.cancelled,
            self.batch_size,
        ):
            lines += family.expose()
        for name, (help_text, value) in (self.gauges() if self.gauges else {}).items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"
