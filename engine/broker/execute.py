"""Runs one formed batch on a device worker: one backend call, split in halves on out-of-memory.

Shared by the in-process broker and by ``textunes worker`` (the Redis broker's executor), so a
batch behaves the same wherever it runs. Errors arrive classified from ``engine.worker``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Awaitable, Callable

from engine.broker.base import TERMINAL_OUTCOMES, BatchCallbacks, BatchItem, Outcome, failure
from engine.generation.base import GenerationCancelled
from engine.worker import Call, ModelError, OutOfMemory, WorkerCrashed

log = logging.getLogger("textunes.engine")

# restart(worker, why) -> None; raises WorkerLost when the worker cannot be brought back
Restart = Callable[[object, str], Awaitable[None]]


class WorkerLost(Exception):
    """A worker could not be restarted; it stops serving."""


def finishing_concurrency() -> int:
    """How many tracks of a batch are finished and encoded at once: half the cores (each encode is
    one ffmpeg process), at most 8, and one at a time on a small machine that also runs the bot."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return max(1, min(8, cores // 2))


# Finishing is bulk work: its threads (and the ffmpeg each encode starts, which inherits the
# thread's niceness on Linux) run this much below the event loop, so on a busy machine the loop's
# reads, result writes and heartbeats, and the model process feeding the device, come first.
FINISHING_NICENESS = 10
_finishing_pool: concurrent.futures.ThreadPoolExecutor | None = None
_finishing_lock = threading.Lock()


def _lower_own_priority() -> None:
    try:  # per thread on Linux: PRIO_PROCESS with a thread id changes only that thread
        me = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + FINISHING_NICENESS))
    except (AttributeError, OSError):  # no per-thread niceness here: finish at normal priority
        pass


def finishing_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that finish and encode tracks, below the event loop's priority."""
    global _finishing_pool
    with _finishing_lock:
        if _finishing_pool is None:
            _finishing_pool = concurrent.futures.ThreadPoolExecutor(
                8, thread_name_prefix="textunes-finish", initializer=_lower_own_priority
            )
        return _finishing_pool


def build_call(items: list[BatchItem]) -> Call:
    first = items[0].request
    if first.continue_from is not None:
        return Call(continue_from=first.continue_from, extend_seconds=first.extend_seconds)
    return Call(specs=[i.request.spec for i in items], samples=first.samples, seed=first.seed)


class BatchRun:
    """One batch on one worker. ``live`` is the job ids of the call now running (for aborts).

    Each job's final outcome goes to ``settled`` as soon as its tracks are finished and encoded,
    so the first job of a batch is not held back by the others' encoding. ``device_free`` is
    called once the batch's last model call is over (unless the model process died on it): the
    device can take the next batch while this one's tracks are still being finished."""

    def __init__(
        self,
        worker,
        items: list[BatchItem],
        calls: BatchCallbacks,
        *,
        restart: Restart | None = None,
        stats: dict | None = None,
    ) -> None:
        self.worker = worker
        self.items = items
        self.calls = calls
        self.restart = restart
        self.stats = stats if stats is not None else {}
        self.outcomes: dict[str, Outcome] = {}
        self.live: list[str] = []
        self.crashed: str | None = None  # why the worker crashed during this batch, if it did
        self._finishing: list[asyncio.Task] = []  # each call's tracks being finished and encoded

    def _count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    async def run(self) -> dict[str, Outcome]:
        """Outcomes for every item; raises ``WorkerLost`` (outcomes so far kept) if the worker
        crashed and could not be restarted."""
        try:
            await self._run_split(self.items)
        except asyncio.CancelledError:
            for task in self._finishing:  # nobody waits for this batch any more
                task.cancel()
            raise
        except BaseException:  # the worker was lost: tracks an earlier call made are still kept
            await asyncio.gather(*self._finishing, return_exceptions=True)
            raise
        finally:
            self.live = []
        if self.crashed is None and self.calls.device_free is not None:
            # clean: no call failed, split or was interrupted (its time says what a batch costs)
            self.calls.device_free(all(o.kind == "done" for o in self.outcomes.values()))
        await asyncio.gather(*self._finishing)  # cancelling this cancels the finishing too
        for item in self.items:
            self.outcomes.setdefault(item.job_id, Outcome("dropped"))
        return self.outcomes

    def _set(self, job_id: str, outcome: Outcome) -> None:
        self.outcomes[job_id] = outcome
        if self.calls.settled is not None and outcome.kind in TERMINAL_OUTCOMES:
            self.calls.settled(job_id, outcome)

    def abort_if_unwanted(self) -> None:
        """Stop the running call when no job in it is wanted any more."""
        if self.live and not any(self.calls.wanted(j) for j in self.live):
            self.worker.abort()

    async def _run_split(self, items: list[BatchItem]) -> None:
        live = [i for i in items if self.calls.wanted(i.job_id)]
        if not live:
            return
        call = build_call(live)
        ids = [i.job_id for i in live]
        self.live = ids
        self._count("calls")
        self._count("batched_jobs", len(live))

        def on_progress(done: int, total: int) -> None:  # event-loop thread
            percent = round(100.0 * done / total, 1) if total else 0.0
            self.calls.progress([j for j in ids if self.calls.wanted(j)], percent)

        try:
            tracks = await self.worker.run(call, on_progress)
        except OutOfMemory as exc:
            if len(live) > 1:
                self._count("oom_splits")
                half = len(live) // 2
                log.warning(
                    "out of memory with %d jobs on %s; retrying in halves", len(live), self.worker.device
                )
                await self._run_split(live[:half])
                await self._run_split(live[half:])
                return
            req = live[0].request
            self._set(
                live[0].job_id,
                failure(
                    f"This request is too big for the music device's memory "
                    f"({req.samples} × {req.spec.duration:g} s). Try a shorter duration or fewer samples.",
                    "oom",
                    str(exc),
                ),
            )
            return
        except GenerationCancelled:
            # calls are aborted only when nobody wants them; a job still wanted was interrupted
            for item in live:
                if self.calls.wanted(item.job_id):
                    self.outcomes[item.job_id] = Outcome("retry", detail="the generation was interrupted")
            return
        except WorkerCrashed as exc:
            log.error("worker on %s crashed: %s; restarting it", self.worker.device, exc)
            self.crashed = str(exc)
            for item in live:
                if self.calls.wanted(item.job_id):
                    self.outcomes[item.job_id] = Outcome("retry", detail=str(exc))
            if self.restart is not None:
                await self.restart(self.worker, str(exc))
            return
        except ModelError as exc:
            log.error("model error on %s: %s", self.worker.device, exc)
            for item in live:
                self._set(
                    item.job_id,
                    failure(
                        "The music model failed while making this track. It was not your input; "
                        "please try again, and tell the bot admin if it keeps happening.",
                        "crash",
                        str(exc),
                    ),
                )
            return
        finally:
            self.live = []  # the call is over: an abort from now on has nothing to stop
        self._count("tracks", len(tracks))
        if len(tracks) != call.tracks_out:
            for item in live:
                self._set(
                    item.job_id,
                    failure(
                        "The music model returned an unexpected result. Please try again.",
                        "crash",
                        f"expected {call.tracks_out} tracks, got {len(tracks)}",
                    ),
                )
            return
        # finished off the device's path: the next call (an OOM split's other half, or the next
        # batch once ``device_free`` is called) runs meanwhile
        self._finishing.append(asyncio.create_task(self._finish_each(live, tracks)))

    async def _finish_each(self, live: list[BatchItem], tracks: list) -> None:
        """Finish and encode each job's tracks, a few at once, settling each job when it is ready."""
        gate = asyncio.Semaphore(finishing_concurrency())

        async def one(item: BatchItem, mine: list) -> None:
            async with gate:
                if self.calls.wanted(item.job_id):  # a job cancelled mid-batch just drops its tracks
                    self._set(item.job_id, await finished(item, mine))

        at, work = 0, []
        for item in live:
            mine, at = tracks[at : at + item.tracks_out], at + item.tracks_out
            work.append(one(item, list(mine)))
        await asyncio.gather(*work)


async def finished(item: BatchItem, tracks: list) -> Outcome:
    """The job's tracks finished and encoded as its request asks (off the event loop), or a failure."""
    how = item.request.finishing
    if how is None:
        return Outcome("done", tracks=tracks)
    from engine.audio import finish_and_encode
    from engine.errors import TexTuneSError

    def run() -> list:
        return [finish_and_encode(t, how.format, duration=how.duration, loop=how.loop) for t in tracks]

    try:
        tracks = await asyncio.get_running_loop().run_in_executor(finishing_pool(), run)
        return Outcome("done", tracks=tracks)
    except TexTuneSError as exc:  # the cause, if any, is the encoder's own words: for the detail only
        detail = f"{exc} {exc.__cause__ or ''}".strip()[-500:]
        return failure(f"The track was made but could not be finished: {exc}", "finish", detail)
    except Exception as exc:  # an encoder crash: the track is lost, the worker lives on
        log.exception("finishing job %s failed", item.job_id)
        return failure("The track was made but could not be encoded. Please try again.", "finish", repr(exc))
