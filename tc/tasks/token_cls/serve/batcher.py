"""An asyncio micro-batcher: requests that arrive within a short window share one model call.

A BERT forward pass on a batch of 32 sentences costs far less than 32 passes on one sentence, so under
concurrent load the server collects requests for ``window_ms`` (or until ``max_batch`` texts are
queued), runs them as one ``predict`` call and hands every request its own slice of the result. The
model runs in ONE worker thread: the event loop never blocks on it (health checks and new requests
keep being accepted while a batch runs), and the model never sees two calls at once, which neither a
torch module with intra-op threads nor an onnxruntime session needs or wants.

Failure isolation: if a merged batch raises, each request of it is retried alone, so one bad input
fails only its own request. Every submitted future is resolved (result or exception), including at
shutdown, so no request can hang on the batcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

CONCURRENCY_MEMORY_S = 1.0
"""How long one moment of concurrent requests keeps the batching window open."""
PredictFn = Callable[..., list[list[dict[str, Any]]]]
"""``Predictor.predict``: ``(texts)``, or ``(texts, documents)`` when a request's texts are sentences of
documents (one key per text), so a model trained with document context gets it here too."""


class BatcherBusy(Exception):
    """The queue already holds ``max_queue`` texts: the caller should answer 503 and let the client retry."""


class BatcherClosed(Exception):
    """The batcher was stopped before this request could run."""


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future[list[list[dict[str, Any]]]]
    documents: list[int] | None = None


def _merged_documents(group: Sequence[_Pending]) -> list[int] | None:
    """One document key per text of a merged batch, never shared by two requests (None: no request has
    documents, every text stands alone)."""
    if all(p.documents is None for p in group):
        return None
    keys: list[int] = []
    base = 0
    for p in group:
        own: dict[int, int] = {}
        for key in p.documents if p.documents is not None else range(len(p.texts)):
            keys.append(base + own.setdefault(key, len(own)))
        base += len(own)
    return keys


@dataclass
class BatchStats:
    """Counters for ``/info``: how much batching actually happened."""

    requests: int = 0
    texts: int = 0
    batches: int = 0
    largest_batch: int = 0
    model_seconds: float = 0.0
    failed_batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "texts": self.texts, "batches": self.batches,
                "largest_batch": self.largest_batch, "model_seconds": round(self.model_seconds, 3),
                "failed_batches": self.failed_batches,
                "mean_texts_per_batch": round(self.texts / self.batches, 2) if self.batches else 0.0}


@dataclass
class MicroBatcher:
    """Queue requests, merge those that arrive within ``window_ms`` up to ``max_batch`` texts.

    ``max_batch <= 1`` turns batching off: each request runs alone, in arrival order, on the same
    worker thread (the baseline the bench compares against).

    The window is only waited for while the server has recently seen concurrent requests (more than one
    in flight within the last ``CONCURRENCY_MEMORY_S``): a lone client gains nothing from waiting for
    companions that are not coming, so it gets batching-off latency, while under load the window fills.
    """

    predict: PredictFn
    window_ms: float = 5.0
    max_batch: int = 64
    max_queue: int = 4096
    stats: BatchStats = field(default_factory=BatchStats)
    _queue: asyncio.Queue[_Pending | None] | None = None
    _task: asyncio.Task[None] | None = None
    _pool: ThreadPoolExecutor | None = None
    _queued_texts: int = 0
    _closing: bool = False
    _in_flight: int = 0
    _concurrent_until: float = 0.0

    @property
    def batching(self) -> bool:
        return self.max_batch > 1

    async def start(self) -> None:
        """Start the collector task and the single model thread (call from the running event loop)."""
        self._queue = asyncio.Queue()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tc-model")
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="tc-batcher")

    async def stop(self) -> None:
        """Finish everything already queued, then stop; later ``submit`` calls raise BatcherClosed."""
        self._closing = True
        if self._queue is not None and self._task is not None:
            await self._queue.put(None)  # sentinel: the collector drains what is before it, then exits
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    async def submit(self, texts: list[str], documents: list[int] | None = None) -> list[list[dict[str, Any]]]:
        """Entities for each of ``texts`` once its batch has run; raises what the model raised.
        ``documents``: one key per text, texts of one document share context (``Predictor.tag``)."""
        if self._closing or self._queue is None:
            raise BatcherClosed("server is shutting down")
        if self._queued_texts + len(texts) > self.max_queue and self._queued_texts > 0:
            raise BatcherBusy(f"server busy: {self._queued_texts} texts already queued (limit {self.max_queue})")
        future: asyncio.Future[list[list[dict[str, Any]]]] = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()
        self._queued_texts += len(texts)
        self._in_flight += 1
        if self._in_flight > 1:
            self._concurrent_until = loop.time() + CONCURRENCY_MEMORY_S
        self.stats.requests += 1
        try:
            await self._queue.put(_Pending(texts, future, documents))
            return await future
        finally:
            self._in_flight -= 1

    # -- internals ---------------------------------------------------------------------------
    async def _collect(self) -> None:
        """Take a request, wait up to the window for more (never past ``max_batch`` texts), run them."""
        assert self._queue is not None
        carry: _Pending | None = None
        loop = asyncio.get_running_loop()
        while True:
            first = carry if carry is not None else await self._queue.get()
            carry = None
            if first is None:
                return
            group, size, stop = [first], len(first.texts), False
            wait = self.window_ms / 1000.0 if loop.time() < self._concurrent_until else 0.0
            deadline = loop.time() + wait
            while self.batching and size < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if item is None:
                    stop = True
                    break
                if size + len(item.texts) > self.max_batch:
                    carry = item  # it opens the next batch
                    break
                group.append(item)
                size += len(item.texts)
            await self._run(group)
            if stop:
                await self._drain()
                return

    async def _drain(self) -> None:
        """After the stop sentinel: run whatever raced in behind it, so no future is left pending."""
        assert self._queue is not None
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                await self._run([item])

    async def _run(self, group: list[_Pending]) -> None:
        live = [p for p in group if not p.future.done()]  # a client that gave up is skipped
        for p in group:
            self._queued_texts -= len(p.texts)
        if not live:
            return
        texts = [t for p in live for t in p.texts]
        try:
            results = await self._call(texts, _merged_documents(live))
        except Exception as exc:  # isolate: retry each request alone
            if len(live) == 1:
                _resolve(live[0].future, exc=exc)
                return
            self.stats.failed_batches += 1
            for p in live:
                try:
                    _resolve(p.future, await self._call(p.texts, _merged_documents([p])))
                except Exception as single:  # answered to its own request
                    _resolve(p.future, exc=single)
            return
        start = 0
        for p in live:
            _resolve(p.future, results[start : start + len(p.texts)])
            start += len(p.texts)

    async def _call(self, texts: list[str], documents: list[int] | None) -> list[list[dict[str, Any]]]:
        assert self._pool is not None
        begin = time.perf_counter()
        args = (texts,) if documents is None else (texts, documents)
        results = await asyncio.get_running_loop().run_in_executor(self._pool, self.predict, *args)
        self.stats.model_seconds += time.perf_counter() - begin
        self.stats.batches += 1
        self.stats.texts += len(texts)
        self.stats.largest_batch = max(self.stats.largest_batch, len(texts))
        if len(results) != len(texts):
            raise RuntimeError(f"model returned {len(results)} results for {len(texts)} texts")
        return results


def _resolve(future: asyncio.Future[Any], value: Any = None, exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)
