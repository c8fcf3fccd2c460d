"""Tail sharing: the end of a burst is split over the executors about to be free, not left to one.

With several executors busy on a burst, the one whose batch ends first used to take every job
left (up to its ``max_batch``) while its peers, ready a few milliseconds later, found the queue
empty: the last round ran one full batch on one executor. Now an executor may take less than its
limit when that finishes the queued work sooner:

* ``BatchCost`` learns how long a batch takes, ``seconds = fixed + per_track * tracks`` for each
  duration bucket, from the batches it has seen (it needs two different sizes to tell the parts apart);
* the peers are the executors idle since a recent batch (ready now, or a remote worker whose
  readiness is on its way) and the ones still running a batch, ready when its expected time is up;
* ``share`` tries splitting the queued tracks evenly over this executor and its 0..k soonest
  peers and keeps the split whose last track is expected to finish first (ties: fewer batches).

Until the cost of a smaller batch is known, batches stay full. Only a batch's *size* changes, never the fair order it is taken in; with one executor, or a queue
deeper than every peer's batch, nothing changes at all.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchRecord:
    """One batch on one executor, as the scheduler saw it."""

    executor: str
    started: float  # time.monotonic() when it was handed over
    tracks: int
    bucket: float | None  # the jobs' duration bucket; None where cost is not comparable (continuations)


class BatchCost:
    """Seconds per batch, ``fixed + per_track * tracks``, fitted per duration bucket by
    exponentially weighted least squares (recent batches count most)."""

    def __init__(self, decay: float = 0.95) -> None:
        self.decay = decay
        self._sums: dict[float, list[float]] = {}  # bucket -> [w, Σn, Σd, Σn², Σnd]

    def observe(self, bucket: float, tracks: int, seconds: float) -> None:
        s = self._sums.setdefault(bucket, [0.0] * 5)
        for i in range(5):
            s[i] *= self.decay
        for i, value in enumerate((1.0, tracks, seconds, tracks * tracks, tracks * seconds)):
            s[i] += value

    def estimate(self, bucket: float | None) -> tuple[float, float] | None:
        """(fixed, per_track) seconds, or None until batches of different sizes were seen."""
        s = self._sums.get(bucket) if bucket is not None else None
        if s is None:
            return None
        w, sn, sd, snn, snd = s
        variance = snn / w - (sn / w) ** 2
        if variance < 0.05:
            return None
        per_track = max(0.0, (snd / w - (sn / w) * (sd / w)) / variance)
        return max(0.0, sd / w - per_track * sn / w), per_track


class TailSharing:
    def __init__(self, horizon: float = 1.0) -> None:
        self.horizon = horizon
        self.cost = BatchCost()
        self._idle: dict[str, float] = {}  # executor -> when its batch ended, until it gets a new one
        self._handed: dict[str, float] = {}  # executor -> when it was last handed a batch

    def handed(self, executor: str, now: float | None = None) -> None:
        """The executor was handed a batch: it is not idle."""
        self._idle.pop(executor, None)
        self._handed[executor] = time.monotonic() if now is None else now

    def ended(self, record: BatchRecord, *, completed: bool, now: float | None = None) -> None:
        """A batch's outcome came back; ``completed``: every job of it ran to the end (its time counts)."""
        now = time.monotonic() if now is None else now
        if completed and record.bucket is not None:
            self.cost.observe(record.bucket, record.tracks, now - record.started)
        # a remote worker's next readiness can overtake its results: then it is busy again already
        if self._handed.get(record.executor, float("-inf")) <= record.started:
            self._idle[record.executor] = now

    def _peer_delays(self, executor: str, running: list[BatchRecord], now: float) -> list[float]:
        """Seconds until each other executor is free: 0 for idle ones, the expected rest of the
        running batch for busy ones (those without a cost estimate are left out)."""
        for name, ended in list(self._idle.items()):
            if now - ended > self.horizon:  # gone, drained, or idle so long the queue was empty
                del self._idle[name]
        delays = [0.0 for name in self._idle if name != executor]
        latest: dict[str, BatchRecord] = {}  # each executor's newest batch
        for batch in running:
            if batch.executor not in latest or batch.started > latest[batch.executor].started:
                latest[batch.executor] = batch
        for name, batch in latest.items():
            if name == executor or name in self._idle:
                continue
            model = self.cost.estimate(batch.bucket)
            if model is not None:
                delays.append(max(0.0, batch.started + model[0] + model[1] * batch.tracks - now))
        return sorted(delays)

    def share(
        self,
        executor: str,
        bucket: float | None,
        queued_tracks: int,
        limit: int,
        running: list[BatchRecord],
        now: float | None = None,
    ) -> int:
        """The most tracks ``executor`` should take now: its limit, or less when splitting the
        queued tracks with peers that are (about to be) free finishes them sooner."""
        if queued_tracks <= 1:
            return limit
        model = self.cost.estimate(bucket)
        if model is None:
            return limit  # no estimate of what a smaller batch saves: keep batches full
        fixed, per_track = model
        now = time.monotonic() if now is None else now
        delays = self._peer_delays(executor, running, now)
        best: tuple[float, int] | None = None  # (expected finish of the last track, our share)
        for helpers in range(len(delays) + 1):
            mine = math.ceil(queued_tracks / (helpers + 1))
            if mine > limit:
                continue  # more than we may take: the queue is deeper than this split covers
            finish, left = 0.0, queued_tracks
            for delay in [0.0, *delays[:helpers]]:
                take = min(mine, left)
                finish = max(finish, delay + fixed + per_track * take)
                left -= take
            if best is None or finish < 0.95 * best[0]:  # a split must save 5 %: estimates are noisy
                best = (finish, mine)
        return limit if best is None else best[1]
