"""The engine's fair queue: waiting jobs served round-robin over users, and their places published together."""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict, deque

from engine import metrics
from engine.job_types import JobEvent, _Job

# Seconds between publications of every queued job's place: a dispatch moves every queued job (an
# event each), executors often finish together, and people see places in edits ≥ 2 s apart.
POSITIONS_EVERY = 0.1


class FairQueue:
    """Queued jobs in the order they will be served: round-robin over users, the user served
    longest ago (or never) first; within a user, first come first served. Places that change
    together reach each waiting job as one event, at most every ``POSITIONS_EVERY`` seconds."""

    def __init__(self) -> None:
        self._queues: OrderedDict[str, deque[_Job]] = OrderedDict()  # user -> queued jobs
        self._last_served: OrderedDict[str, int] = OrderedDict()  # user -> service counter
        self._serve_counter = itertools.count(1)
        self._due: asyncio.TimerHandle | None = None  # the next places' publication
        self._closed = False

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def __bool__(self) -> bool:
        return bool(self._queues)

    def add(self, job: _Job) -> None:
        self._queues.setdefault(job.user_id, deque()).append(job)

    def put_back(self, job: _Job) -> None:
        """Back to the front of its owner's line, the owner first in turn: it already waited once."""
        self._queues.setdefault(job.user_id, deque()).appendleft(job)
        self._last_served.pop(job.user_id, None)

    def remove(self, job: _Job) -> None:
        queue = self._queues.get(job.user_id)
        if queue is None:
            return
        try:
            queue.remove(job)
        except ValueError:
            return
        if not queue:
            del self._queues[job.user_id]

    def served(self, user_id: str) -> None:
        self._last_served[user_id] = next(self._serve_counter)
        self._last_served.move_to_end(user_id)
        while len(self._last_served) > 10_000:  # bounded memory on a large server
            self._last_served.popitem(last=False)

    def order(self) -> list[_Job]:
        users = sorted(self._queues, key=lambda u: (self._last_served.get(u, 0), self._queues[u][0].seq))
        order: list[_Job] = []
        depth = 0
        while True:
            layer = [self._queues[u][depth] for u in users if len(self._queues[u]) > depth]
            if not layer:
                return order
            order.extend(layer)
            depth += 1

    def select(self, limit: int, order: list[_Job] | None = None) -> list[_Job]:
        """The next job in fair order plus compatible queued jobs, up to ``limit`` tracks."""
        order = self.order() if order is None else order
        if not order:
            return []
        head = order[0]
        chosen = [head]
        key = head.batch_key()
        if key is not None:
            tracks = head.request.samples
            for job in order[1:]:
                if job.batch_key() == key and tracks + job.request.samples <= limit:
                    chosen.append(job)
                    tracks += job.request.samples
        return chosen

    def place(self, job: _Job) -> int | None:
        """1-based place in fair order; None if not queued."""
        for place, queued in enumerate(self.order(), start=1):
            if queued is job:
                return place
        return None

    def changed(self) -> None:
        """Publish every queued job's place soon: changes of the next moment go out together."""
        if self._due is None and not self._closed:
            self._due = asyncio.get_running_loop().call_later(POSITIONS_EVERY, self.publish)

    def publish(self) -> None:
        self._due = None
        for place, job in enumerate(self.order(), start=1):
            if job.last_position != place:
                job.last_position = place
                job.emit(JobEvent("queued", position=place))
        metrics.QUEUE_LENGTH.set(len(self))

    def close(self) -> None:
        """No more publications (the engine is stopping)."""
        self._closed = True
        if self._due is not None:
            self._due.cancel()
            self._due = None

    def reopen(self) -> None:
        self._closed = False
