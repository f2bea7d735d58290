"""Group commit: the usage reports of concurrent requests share one transaction.

On SQLite every commit is an fsync under the one writer lock, and on either store a transaction
costs a read, an insert and a commit whatever it carries. So the requests an API process holds at
once are ingested together: while one group is written (in a worker thread), the requests that
arrive queue up, and the next group takes them all. A lone request is ingested at once, so
grouping adds no wait of its own; it only shares the one there is.

Each request gets the answers it would get alone (``Ingestor.ingest_many``: as if the group's
requests came one after another), and its 2xx still follows the commit of its usages.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from bridge.errors import ChainUnavailableError
from bridge.ingest import ItemResult, Submission

IngestMany = Callable[[Sequence[Submission]], list[list[ItemResult]]]
"""Ingests submissions in one transaction (blocking: it runs in a worker thread)."""


@dataclass
class _Waiting:
    submission: Submission
    answer: asyncio.Future[list[ItemResult]]


@dataclass
class _Queue:
    """The requests of one event loop waiting for a group, and the task writing the groups."""

    waiting: list[_Waiting] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None


class GroupCommit:
    """Ingests concurrent submissions in groups of at most ``max_events`` events (a larger
    submission goes alone); ``max_events`` 0 ingests every submission on its own."""

    def __init__(
        self,
        ingest_many: IngestMany,
        *,
        max_events: int,
        on_group: Callable[[int], object] = lambda _size: None,
    ) -> None:
        """``on_group`` hears the number of submissions of each group written."""
        self._ingest_many = ingest_many
        self._max_events = max_events
        self._on_group = on_group
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = (
            weakref.WeakKeyDictionary()
        )

    async def submit(self, submission: Submission) -> list[ItemResult]:
        """The answers for ``submission``, once its accepted usages are committed.

        Raises:
            ChainUnavailableError: when the license check cannot reach the chain.
        """
        if self._max_events == 0:
            self._on_group(1)
            [answers] = await run_in_threadpool(self._ingest_many, [submission])
            return answers
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        waiting = _Waiting(submission, loop.create_future())
        queue.waiting.append(waiting)
        if queue.writer is None or queue.writer.done():
            queue.writer = loop.create_task(self._write(queue))
        # A request cancelled while it waits leaves its submission to the group all the same: it
        # may already be written, and it is idempotent if the brand sends it again.
        return await asyncio.shield(waiting.answer)

    async def _write(self, queue: _Queue) -> None:
        group: list[_Waiting] = []
        try:
            while queue.waiting:
                group = self._take(queue.waiting)
                await self._write_group(group)
        except BaseException as exc:  # cancelled with the loop: no request is left waiting
            for w in [*group, *queue.waiting]:
                _settle(w, exc=exc)
            queue.waiting.clear()
            raise

    async def _write_group(self, group: list[_Waiting]) -> None:
        self._on_group(len(group))
        try:
            answers = await run_in_threadpool(self._ingest_many, [w.submission for w in group])
        except ChainUnavailableError as exc:  # the same for every submission
            for w in group:
                _settle(w, exc=exc)
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0], exc=exc)
                return
            # One submission must not fail the others: each again on its own.
            for w in group:
                try:
                    [alone] = await run_in_threadpool(self._ingest_many, [w.submission])
                except Exception as single:
                    _settle(w, exc=single)
                else:
                    _settle(w, answers=alone)
        else:
            for w, answer in zip(group, answers, strict=True):
                _settle(w, answers=answer)

    def _take(self, waiting: list[_Waiting]) -> list[_Waiting]:
        group = [waiting.pop(0)]
        events = len(group[0].submission.reports)
        while waiting and events + len(waiting[0].submission.reports) <= self._max_events:
            events += len(waiting[0].submission.reports)
            group.append(waiting.pop(0))
        return group


def _settle(
    waiting: _Waiting,
    *,
    answers: list[ItemResult] | None = None,
    exc: BaseException | None = None,
) -> None:
    if waiting.answer.done():
        return
    if exc is not None:
        waiting.answer.set_exception(exc)
    else:
        assert answers is not None  # noqa: S101 - one of the two is given
        waiting.answer.set_result(answers)
