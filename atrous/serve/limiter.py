"""Bounded concurrency for inference: a few run, a bounded queue waits, the rest get 503.

Without a bound, a burst of uploads would start as many CPU inferences as there are
requests; each would then take many times longer and all would time out together. With
an unbounded queue the burst would instead hold memory and sockets for minutes. Failing
fast with 503 + ``Retry-After`` once the queue is full tells clients to back off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class QueueFullError(Exception):
    """Every inference slot is busy and the waiting queue is full."""


class InferenceTimeoutError(Exception):
    """The request waited and ran for longer than the request timeout."""


class InferenceLimiter:
    """Runs blocking inference calls in worker threads, at most ``max_concurrent`` at once.

    A call that times out is answered at once, but its slot stays taken until its
    thread really finishes (a running torch call cannot be interrupted), so the limit
    always counts the work the CPU is actually doing.
    """

    def __init__(self, *, max_concurrent: int, max_queued: int) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if max_queued < 0:
            raise ValueError(f"max_queued must be >= 0, got {max_queued}")
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self._slots = asyncio.Semaphore(max_concurrent)
        self._executor = ThreadPoolExecutor(
            max_workers=max_concurrent, thread_name_prefix="atrous-infer"
        )
        self.running = 0
        self.waiting = 0

    async def run(self, function: Callable[[], T], *, timeout_s: float) -> T:
        """Run ``function()`` in a worker thread once a slot is free.

        Raises:
            QueueFullError: no free slot and ``max_queued`` requests already waiting.
            InferenceTimeoutError: waiting plus running took longer than ``timeout_s``.
        """
        if self._slots.locked() and self.waiting >= self.max_queued:
            raise QueueFullError(
                f"{self.running} inference(s) running and {self.waiting} waiting "
                f"(limits: {self.max_concurrent} running, {self.max_queued} waiting)"
            )
        deadline = time.monotonic() + timeout_s
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout_s)
        except TimeoutError as error:
            raise InferenceTimeoutError(f"waited {timeout_s:g} s for a free slot") from error
        finally:
            self.waiting -= 1
        self.running += 1
        future = asyncio.get_running_loop().run_in_executor(self._executor, function)
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(
                asyncio.shield(future), max(deadline - time.monotonic(), 0.0)
            )
        except TimeoutError as error:
            raise InferenceTimeoutError(f"inference took longer than {timeout_s:g} s") from error

    def _release(self, _future: asyncio.Future) -> None:
        self.running -= 1
        self._slots.release()

    def stats(self) -> dict[str, int]:
        """Current load, reported by ``/readyz``."""
        return {
            "running": self.running,
            "waiting": self.waiting,
            "max_concurrent": self.max_concurrent,
            "max_queued": self.max_queued,
        }

    def close(self) -> None:
        """Wait for running inferences, then stop the worker threads."""
        self._executor.shutdown(wait=True)
