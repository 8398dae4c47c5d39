"""The inference queue: bounded, cost-aware, batching, and dropping work nobody waits for.

Without a bound, a burst of uploads would start as many CPU inferences as there are
requests; each would then take many times longer and all would time out together. So a
few batches run at once, a bounded queue waits, and the rest get 503 + ``Retry-After``
at once. Each job carries an estimate of its cost (seconds, from measured latency): a
job that could not start and finish before its deadline behind the work already queued
is refused up front instead of being run for a client that will have given up.

Queued jobs whose client disconnected or whose deadline passed are skipped, never run.
Jobs of the same ``key`` (segmentations of images of one size) that wait together run
as one batch. Work runs in daemon threads: a torch call cannot be interrupted, but it
must never keep a shutting-down process alive; long jobs check their ``cancel`` event
between steps (the sliding windows) and stop early.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


class QueueFullError(Exception):
    """No room to queue the job, or the queue ahead of it is longer than its deadline.

    Attributes:
        retry_after_s: when a retry may succeed (whole seconds, at least 1).
    """

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))


class InferenceTimeoutError(Exception):
    """The job waited and ran for longer than the request timeout."""


class Cancelled(Exception):
    """The job was dropped: its client left, its deadline passed, or the server stops."""


@dataclass(eq=False)
class Job:
    """One unit of work for the limiter.

    Attributes:
        execute: runs in a worker thread with the whole batch (this job first); returns
            one result per job, an exception instance for a job that failed alone.
        payload: what ``execute`` needs from this job (the upload, the pixel...).
        key: jobs with an equal, non-``None`` key may share one ``execute`` call.
        cost_s: estimated seconds of work, for admission and the backlog estimate.
        deadline: ``time.monotonic()`` after which nobody waits for the result.
        cancel: set when nobody waits any more; long work checks it between steps.
        cancel_reason: why ``cancel`` was set (``client_gone``, ``timeout``, ``shutdown``).
    """

    execute: Callable[[list[Job]], list[Any]]
    payload: Any = None
    key: Hashable | None = None
    cost_s: float = 0.0
    deadline: float = math.inf
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    future: asyncio.Future | None = None

    def abandon(self, reason: str) -> None:
        """Mark the job unwanted: skipped if still queued, told to stop if running."""
        if not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel.set()

    def dead(self, now: float) -> bool:
        return (
            self.cancel.is_set()
            or now >= self.deadline
            or (self.future is not None and self.future.done())
        )


class InferenceLimiter:
    """Runs jobs in worker threads: ``max_concurrent`` batches at once, a bounded queue.

    Args:
        max_concurrent: batches running at the same time.
        max_queued: jobs allowed to wait; more get ``QueueFullError`` at once.
        max_batch: most jobs of one key run together.
        batch_wait_s: how long a batch waits for more jobs of its key.
        on_skip: called with the reason of every queued job skipped without running.
    """

    def __init__(
        self,
        *,
        max_concurrent: int,
        max_queued: int,
        max_batch: int = 1,
        batch_wait_s: float = 0.0,
        on_skip: Callable[[str], None] | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if max_queued < 0:
            raise ValueError(f"max_queued must be >= 0, got {max_queued}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_s
        self.on_skip = on_skip
        self._queue: deque[Job] = deque()
        self._arrived: asyncio.Event | None = None
        self._workers: list[asyncio.Task] = []
        self._running: dict[int, tuple[float, float, list[Job]]] = {}
        self._closing = False
        self.batches_run = 0
        self.jobs_run = 0

    # -- state -----------------------------------------------------------------------
    @property
    def running(self) -> int:
        """Jobs whose batch runs now (a timed-out job counts until its thread ends)."""
        return sum(len(jobs) for _, _, jobs in self._running.values())

    @property
    def waiting(self) -> int:
        """Jobs queued that will still run (dead ones are skipped when reached)."""
        now = time.monotonic()
        return sum(1 for job in self._queue if not job.dead(now))

    def backlog_s(self) -> float:
        """Estimated seconds until a job queued now could start."""
        now = time.monotonic()
        running = sum(max(0.0, cost - (now - start)) for start, cost, _ in self._running.values())
        queued = sum(job.cost_s for job in self._queue if not job.dead(now))
        return (running + queued) / self.max_concurrent

    def stats(self) -> dict[str, int]:
        """Current load, reported by ``/readyz`` and ``/metrics``."""
        return {
            "running": self.running,
            "waiting": self.waiting,
            "max_concurrent": self.max_concurrent,
            "max_queued": self.max_queued,
        }

    # -- submitting --------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker tasks on the running event loop."""
        self._arrived = asyncio.Event()
        self._workers = [
            asyncio.get_running_loop().create_task(self._work(), name=f"atrous-worker-{i}")
            for i in range(self.max_concurrent)
        ]

    async def run(
        self,
        job: Job,
        *,
        disconnected: Callable[[], Awaitable[bool]] | None = None,
        poll_s: float = 0.1,
    ) -> Any:
        """Queue ``job`` and wait for its result.

        Args:
            job: the work; its ``deadline`` bounds waiting plus running.
            disconnected: polled while waiting; when it answers ``True`` the job is
                abandoned (skipped if queued, cancelled between steps if running).
            poll_s: how often ``disconnected`` is asked.

        Raises:
            QueueFullError: the queue is full, or the work ahead plus this job's cost
                would pass its deadline.
            InferenceTimeoutError: the deadline passed first.
            Cancelled: the client disconnected, or the server is shutting down.
        """
        if self._closing or self._arrived is None:
            raise Cancelled("the server is shutting down")
        now = time.monotonic()
        if len(self._running) >= self.max_concurrent and self.waiting >= self.max_queued:
            raise QueueFullError(
                f"{self.running} inference(s) running and {self.waiting} waiting "
                f"(limits: {self.max_concurrent} running, {self.max_queued} waiting)"
            )
        backlog = self.backlog_s()
        if now + backlog + job.cost_s > job.deadline and (self._queue or self._running):
            raise QueueFullError(
                f"the work queued ahead needs about {backlog:.1f} s and this request "
                f"about {job.cost_s:.1f} s, more than its {job.deadline - now:.0f} s timeout",
                retry_after_s=math.ceil(backlog),
            )
        job.future = asyncio.get_running_loop().create_future()
        self._queue.append(job)
        self._arrived.set()
        while True:
            remaining = job.deadline - time.monotonic()
            if remaining <= 0:
                job.abandon("timeout")
                job.future.cancel()
                raise InferenceTimeoutError("the request waited and ran past its timeout")
            done, _ = await asyncio.wait({job.future}, timeout=min(poll_s, remaining))
            if done:
                return job.future.result()
            if disconnected is not None and await disconnected():
                job.abandon("client_gone")
                job.future.cancel()
                raise Cancelled("the client disconnected")

    # -- working ---------------------------------------------------------------------
    def _take(self, key: Hashable | None = None, limit: int = 1) -> list[Job]:
        """Up to ``limit`` live jobs from the queue (of ``key`` if given); drops dead ones."""
        taken: list[Job] = []
        kept: deque[Job] = deque()
        now = time.monotonic()
        while self._queue:
            job = self._queue.popleft()
            if job.dead(now):
                self._skip(job, now)
            elif len(taken) < limit and (key is None or job.key == key):
                taken.append(job)
                if key is None:
                    break
            else:
                kept.append(job)
        self._queue.extendleft(reversed(kept))
        return taken

    def _skip(self, job: Job, now: float) -> None:
        reason = job.cancel_reason or ("timeout" if now >= job.deadline else "client_gone")
        if job.future is not None and not job.future.done():
            job.future.set_exception(InferenceTimeoutError("the request timed out in the queue"))
        if self.on_skip is not None:
            self.on_skip(reason)

    async def _next_batch(self) -> list[Job]:
        assert self._arrived is not None
        while True:
            batch = self._take()
            if batch:
                break
            self._arrived.clear()
            await self._arrived.wait()
        key = batch[0].key
        if key is None or self.max_batch == 1:
            return batch
        loop = asyncio.get_running_loop()
        until = loop.time() + self.batch_wait_s
        while True:
            batch += self._take(key, self.max_batch - len(batch))
            remaining = until - loop.time()
            if len(batch) >= self.max_batch or remaining <= 0:
                return batch
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def _work(self) -> None:
        while not self._closing:
            batch = await self._next_batch()
            token = id(batch)
            self._running[token] = (time.monotonic(), sum(j.cost_s for j in batch), batch)
            try:
                results = await _in_daemon_thread(batch[0].execute, batch)
            except Exception as error:  # answered to every job of the batch
                results = [error] * len(batch)
            finally:
                del self._running[token]
            self.batches_run += 1
            self.jobs_run += len(batch)
            for job, result in zip(batch, results):
                if job.future is None or job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    def close(self) -> None:
        """Drop queued jobs, tell running ones to stop, stop the workers; returns at once.

        Running torch calls finish in their daemon threads (or die with the process):
        shutting down never waits for them, so the drain time stays bounded.
        """
        self._closing = True
        for job in self._queue:
            job.abandon("shutdown")
            if job.future is not None and not job.future.done():
                job.future.set_exception(Cancelled("the server is shutting down"))
        self._queue.clear()
        for _, _, jobs in self._running.values():
            for job in jobs:
                job.abandon("shutdown")
        for worker in self._workers:
            worker.cancel()


async def _in_daemon_thread(function: Callable[[list[Job]], list[Any]], batch: list[Job]) -> Any:
    """``function(batch)`` in a new daemon thread, awaited without blocking the loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def deliver(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result, error = function(batch), None
        except BaseException as caught:  # handed to the awaiting task
            result, error = None, caught
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
            loop.call_soon_threadsafe(deliver, result, error)

    threading.Thread(target=target, name="atrous-infer", daemon=True).start()
    return await future
