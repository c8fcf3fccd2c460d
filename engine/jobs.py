"""The job engine's scheduler: a fair, bounded queue that forms micro-batches for ready executors.

    engine = JobEngine(EngineConfig(backend="auto"))
    await engine.start()
    handle = await engine.submit(JobRequest(user_id="42", spec=spec))
    async for ev in handle.events():          # queued -> started -> progress ... -> done
        ...
    tracks = await handle.result()

Design (vLLM-like, at the granularity MusicGen allows):

* The scheduler is separate from the executor. A broker (``engine.broker``) hands out *slots*:
  executors that are ready for one batch. In process (the default) a slot is one device worker
  (``engine.worker``: a thread or a child process owning the model); with ``TEXTUNES_BROKER=redis://``
  a slot is a remote ``textunes worker`` that announced it is ready.
* Requests wait in a bounded queue ordered round-robin across users (the user served longest ago
  goes first), so one user's burst cannot starve everyone else. Per-user limits are enforced here.
* A batch is formed only when a slot is ready: the next job in fair order is taken together with
  every *compatible* job waiting (same duration bucket and samples, no fixed seed, no continuation)
  up to the slot's ``max_batch`` tracks, and the whole group runs as ONE ``backend.generate`` call.
* Faults stay local (``engine.broker.execute``): out-of-memory splits the batch in halves; a
  crashed worker is restarted and its jobs requeued (bounded attempts); a model error fails that
  batch only; a job running longer than ``job_timeout`` fails and its call is aborted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
import uuid

from engine import metrics
from engine.broker import make_broker
from engine.broker.base import BatchCallbacks, BatchItem, Outcome
from engine.broker.local import resolve_devices
from engine.errors import BackendUnavailable, UserInputError
from engine.fair_queue import FairQueue
from engine.job_types import (
    DURATION_BUCKETS,
    EngineConfig,
    JobCancelled,
    JobEvent,
    JobFailed,
    JobHandle,
    JobRequest,
    QueueFull,
    UserLimitReached,
    _Job,
    duration_bucket,
)
from engine.sharing import BatchRecord, TailSharing
from engine.spec import MusicSpec, Track

log = logging.getLogger("textunes.engine")

__all__ = [
    "EngineConfig",
    "JobCancelled",
    "JobEngine",
    "JobEvent",
    "JobFailed",
    "JobHandle",
    "JobRequest",
    "QueueFull",
    "UserLimitReached",
    "duration_bucket",
    "resolve_devices",
    "DURATION_BUCKETS",
]


# ---------------------------------------------------------------------------------------------
# the engine


class JobEngine:
    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        if self.config.worker not in ("thread", "process"):
            raise ValueError(f"EngineConfig.worker must be 'thread' or 'process', not {self.config.worker!r}")
        self._queue = FairQueue()
        self._jobs: dict[str, _Job] = {}  # every queued or running job
        self._seq = itertools.count(1)
        self._broker = None
        self._running: dict[int, tuple[object, list[_Job]]] = {}  # id(slot) -> (slot, its jobs)
        self._sharing = TailSharing()
        self._tasks: set[asyncio.Task] = set()
        self._dispatcher: asyncio.Task | None = None
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._stopping = False
        self.stats = {
            "calls": 0,
            "batched_jobs": 0,
            "tracks": 0,
            "oom_splits": 0,
            "restarts": 0,
            "requeued": 0,
        }

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        broker = make_broker(self.config, self.stats)
        await broker.start()
        self._broker = broker
        self._started = True
        self._stopping = False
        self._queue.reopen()
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="engine-dispatch")
        metrics.serve_from_env()
        log.info("job engine ready: %s", self.describe())

    async def stop(self, *, drain: bool = False) -> None:
        """Stop serving. ``drain=True`` first lets queued and running jobs finish; otherwise
        they fail with reason "shutdown" (a durable store can requeue them on the next start)."""
        if not self._started:
            return
        if drain:
            while self._jobs:
                await asyncio.sleep(0.05)
        self._stopping = True
        self._wakeup.set()
        self._queue.close()
        for job in list(self._jobs.values()):
            self._finish_failed(
                job,
                JobFailed(
                    "The music engine is shutting down; your request was not finished.", reason="shutdown"
                ),
            )
        self._broker.closing()  # no new slots; the dispatcher returns within a second
        for task in self._tasks:
            task.cancel()
        tasks = [t for t in (self._dispatcher, *self._tasks) if t is not None]
        if tasks:
            # never wait forever: a task cancelled inside a blocking Redis read can hang
            _, stuck = await asyncio.wait(tasks, timeout=3.0)
            for task in stuck:
                task.cancel()
        await self._broker.stop()
        self._tasks.clear()
        self._dispatcher = None
        self._started = False

    async def __aenter__(self) -> JobEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # -- info -----------------------------------------------------------------------------------

    def _info(self) -> dict:
        return self._broker.describe() if self._broker is not None else {}

    @property
    def broker_kind(self) -> str:
        return self._broker.kind if self._broker is not None else "inprocess"

    @property
    def backend_name(self) -> str:
        return self._info().get("backend") or self.config.backend

    @property
    def model_id(self) -> str:
        return self._info().get("model") or (self.config.model or "")

    @property
    def sample_rate(self) -> int | None:
        return self._info().get("sample_rate")

    @property
    def devices(self) -> list[str]:
        return list(self._info().get("devices", []))

    def worker_pids(self) -> list[int | None]:
        """Process ids of the worker children (process mode); for monitoring and fault injection."""
        return self._broker.pids() if self._broker is not None else []

    def _batch_limit(self) -> int:
        return max(1, min(self.config.max_batch, self._info().get("max_batch") or self.config.max_batch))

    def describe(self) -> str:
        info = self._info()
        devices = ", ".join(info.get("devices", [])) or "no device"
        return (
            f"{self.backend_name} ({self.model_id}) on {devices}, {info.get('where', '')}, "
            f"batch ≤ {self._batch_limit()}, queue {self.queue_length()}/{self.config.max_queue}"
        )

    def queue_length(self) -> int:
        return len(self._queue)

    def position(self, job_id: str) -> int | None:
        """1-based queue place, 0 while running, None if unknown or finished."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        return 0 if job.state == "running" else self._queue.place(job)

    def jobs_of(self, user_id: str) -> list[str]:
        return [j.job_id for j in self._jobs.values() if j.user_id == user_id]

    def job_state(self, job_id: str) -> str | None:
        job = self._jobs.get(job_id)
        return job.state if job else None

    # -- submit / cancel ------------------------------------------------------------------------

    async def submit(self, request: JobRequest) -> JobHandle:
        if not self._started or self._stopping:
            raise BackendUnavailable("The music engine is not running right now. Try again in a minute.")
        if not self._broker.available():
            raise BackendUnavailable("The music engine has no working device left. An admin must restart it.")
        cfg = self.config
        if not isinstance(request.spec, MusicSpec):
            raise TypeError("JobRequest.spec must be a MusicSpec")
        if not 1 <= request.samples <= cfg.max_samples:
            raise UserInputError(f"Samples must be between 1 and {cfg.max_samples}, not {request.samples}.")
        if request.continue_from is not None and request.extend_seconds <= 0:
            raise UserInputError("Say how many seconds to extend the track by (more than 0).")
        # the user's own limit first: it tells them what they can do about it
        if len(self.jobs_of(request.user_id)) >= cfg.per_user_limit:
            raise UserLimitReached(cfg.per_user_limit)
        job_id = request.job_id or uuid.uuid4().hex[:12]
        if job_id in self._jobs:
            raise ValueError(f"job {job_id} is already queued or running")
        # a job still running (or finished) on a worker from before a restart is followed, not redone
        adoption = await self._broker.adopt(job_id) if request.job_id else None
        if adoption is None and self.queue_length() >= cfg.max_queue:
            raise QueueFull(cfg.max_queue)
        if job_id in self._jobs:  # submitted again while we asked the broker
            raise ValueError(f"job {job_id} is already queued or running")
        job = _Job(request, job_id, next(self._seq), self._loop)
        self._jobs[job_id] = job
        if adoption is not None:
            log.info("job %s adopted: it is still running on a worker (or its result is waiting)", job_id)
            self._start_jobs([job])
            self._spawn(self._follow_adopted(job, adoption))
            return JobHandle(self, job)
        self._queue.add(job)
        job.last_position = self._queue.place(job)  # the newcomer hears its place at once
        job.emit(JobEvent("queued", position=job.last_position))
        self._queue.changed()  # a new user's job may go ahead of others
        self._wakeup.set()
        return JobHandle(self, job)

    def release_result(self, job_id: str) -> None:
        """Call once a finished job's outcome is stored: the broker's copy, kept so a restarted
        front end could adopt it, is no longer needed (Redis then reuses its memory)."""
        self._broker.release_result(job_id)

    async def cancel(self, job_id: str, user_id: str | None = None) -> bool:
        """Cancel a queued or running job. With ``user_id``, only its owner may. True if cancelled."""
        job = self._jobs.get(job_id)
        if job is None or job.finished:
            return False
        if user_id is not None and job.user_id != user_id:
            return False
        if job.state == "queued":
            self._queue.remove(job)
            self._finish(job, "cancelled", error=JobCancelled("Cancelled."))
            self._queue.changed()
            return True
        # running: resolve now; the owner never waits for the model. If no other job still wants
        # the current call, abort it; otherwise its track is simply dropped when the call returns.
        self._finish(job, "cancelled", error=JobCancelled("Cancelled."))
        self._abort_if_unwanted()
        return True

    # -- scheduling -----------------------------------------------------------------------------

    @staticmethod
    def _record(slot, jobs: list[_Job]) -> BatchRecord:
        # continuations cost by their extension, not their duration: no comparable bucket
        bucket = None if any(j.request.continue_from is not None for j in jobs) else jobs[0].bucket()
        return BatchRecord(slot.name, jobs[0].started_at, sum(j.request.samples for j in jobs), bucket)

    def _select_shared(self, slot, limit: int) -> list[_Job]:
        """``_select`` for ``slot``, taking at most its share of the queue when peers are about to
        be free (``engine.sharing``): the end of a burst is spread, not left to one executor."""
        order = self._queue.order()
        key = order[0].batch_key() if order else None
        if key is not None:
            queued = sum(j.request.samples for j in order if j.batch_key() == key)
            running = [self._record(s, jobs) for s, jobs in self._running.values() if hasattr(s, "max_batch")]
            limit = self._sharing.share(slot.name, order[0].bucket(), queued, limit, running)
        return self._queue.select(limit, order)

    async def _next_batch(self, slot) -> list[_Job] | None:
        limit = max(1, min(slot.max_batch, self.config.max_batch))
        while not self._stopping:
            if self._queue:
                chosen = self._select_shared(slot, limit)
                tracks = sum(j.request.samples for j in chosen)
                # requests of a burst arrive a few ms apart: a short wait (counted from the head
                # job's arrival, so jobs that already waited are not delayed) fills the batch
                wait = self.config.batch_window - (time.monotonic() - chosen[0].enqueued_at)
                if wait > 0 and chosen[0].batch_key() is not None and tracks < limit:
                    await asyncio.sleep(wait)
                    if self._stopping:
                        return None
                    chosen = self._select_shared(slot, limit)
                    if not chosen:
                        continue
                for job in chosen:
                    self._queue.remove(job)
                    self._queue.served(job.user_id)
                self._queue.changed()
                return chosen
            self._wakeup.clear()
            await self._wakeup.wait()
        return None

    async def _dispatch_loop(self) -> None:
        """Wait for a ready executor, form the next fair batch for it, hand it over; repeat."""
        while not self._stopping:
            try:
                slot = await self._broker.acquire()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker's server restarting: keep trying
                log.error("waiting for a ready executor failed: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if slot is None:
                if not self._stopping and not self._broker.available():
                    self._fail_everything_unavailable()
                return
            try:
                jobs = await self._next_batch(slot)
            except asyncio.CancelledError:
                raise
            except Exception:  # a scheduler bug must not silently stop all dispatching
                log.exception("forming a batch for %s failed; trying again in a second", slot.name)
                self._broker.release(slot)
                await asyncio.sleep(1.0)
                continue
            if not jobs:
                self._broker.release(slot)
                return
            self._sharing.handed(slot.name)
            self._start_jobs(jobs)
            # running from now, not from when its task first runs: the next executor's share is
            # decided meanwhile, and must see this batch (not this executor's previous one)
            self._running[id(slot)] = (slot, jobs)
            self._spawn(self._execute(slot, jobs))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_jobs(self, jobs: list[_Job]) -> None:
        now = time.monotonic()
        metrics.BATCH_SIZE.observe(len(jobs))
        for job in jobs:
            job.state = "running"
            job.attempts += 1
            job.started_at = now
            job.deadline = now + self.config.job_timeout
            job.last_position = 0
            job.emit(JobEvent("started", position=0, percent=0.0))
        metrics.RUNNING_JOBS.set(sum(1 for j in self._jobs.values() if j.state == "running"))

    def _batch_callbacks(self, jobs: list[_Job]) -> BatchCallbacks:
        """What an executor calls back while running ``jobs``: progress, wanted, settled."""
        by_id = {j.job_id: j for j in jobs}

        def progress(job_ids: list[str], percent: float) -> None:
            for job_id in job_ids:
                job = by_id.get(job_id)
                if job is not None and not job.finished:
                    job.emit(JobEvent("progress", position=0, percent=percent))

        def wanted(job_id: str) -> bool:
            job = by_id.get(job_id)
            return job is not None and not job.finished

        def settled(job_id: str, outcome: Outcome) -> None:  # a job's final outcome: end it now
            job = by_id.get(job_id)
            if job is not None:
                self._apply_one(job, outcome)

        return BatchCallbacks(progress, wanted, settled)

    async def _execute(self, slot, jobs: list[_Job]) -> None:
        watchdog = asyncio.create_task(self._watch_deadlines(jobs))
        outcomes: dict[str, Outcome] = {}
        record = self._record(slot, jobs)
        freed = False

        def device_free(clean: bool) -> None:  # its calls are over: the cost is the device's time
            nonlocal freed
            if not freed:
                freed = True
                self._sharing.ended(record, completed=clean)

        try:
            items = [BatchItem(j.job_id, j.request) for j in jobs]
            calls = dataclasses.replace(self._batch_callbacks(jobs), device_free=device_free)
            outcomes = await slot.execute(items, calls)
        except asyncio.CancelledError:
            raise
        except Exception:  # a scheduler or broker bug must not leave jobs hanging
            log.exception("unexpected error while running a batch on %s", slot.name)
            for job in jobs:
                self._finish_failed(
                    job,
                    JobFailed(
                        "Something went wrong inside the music engine. Please try again.", reason="crash"
                    ),
                )
        finally:
            watchdog.cancel()
            self._running.pop(id(slot), None)
        if not freed:  # an executor that never said so (its calls failed, or it was lost)
            completed = len(outcomes) == len(jobs) and all(o.kind == "done" for o in outcomes.values())
            self._sharing.ended(record, completed=completed)
        self._apply(jobs, outcomes)
        self._broker.release(slot)

    async def _follow_adopted(self, job: _Job, adoption) -> None:
        """Wait for the outcome of a job adopted from a worker (after a front-end restart)."""
        self._running[id(adoption)] = (adoption, [job])
        watchdog = asyncio.create_task(self._watch_deadlines([job]))
        try:
            calls = self._batch_callbacks([job])
            outcome = await adoption.wait(calls.wanted, calls.progress)
        finally:
            watchdog.cancel()
            self._running.pop(id(adoption), None)
        self._apply([job], {job.job_id: outcome} if outcome is not None else {})

    def _apply(self, jobs: list[_Job], outcomes: dict[str, Outcome]) -> None:
        for job in jobs:
            self._apply_one(
                job, outcomes.get(job.job_id) or Outcome("retry", detail="the executor returned nothing")
            )

    def _apply_one(self, job: _Job, outcome: Outcome) -> None:
        """End a job as its executor says (or put it back in line); once only."""
        if job.finished:
            return
        if outcome.kind == "done":
            self._finish(job, "done", tracks=outcome.tracks)
        elif outcome.kind == "failed":
            self._finish_failed(job, JobFailed(outcome.message, reason=outcome.reason, detail=outcome.detail))
        else:  # "retry", or "dropped" for a job we still want: it did not run to the end
            self._requeue_or_fail(job, outcome.detail or "the job was interrupted")

    def _fail_everything_unavailable(self) -> None:
        for job in list(self._jobs.values()):
            self._finish_failed(
                job,
                JobFailed(
                    "The music engine lost its last device and cannot make music right now. "
                    "Please tell the bot admin.",
                    reason="unavailable",
                ),
            )

    def _requeue_or_fail(self, job: _Job, why: str) -> None:
        if job.attempts >= self.config.max_attempts:
            self._finish_failed(
                job,
                JobFailed(
                    f"The music worker crashed {job.attempts} times while making this track, so we gave up. "
                    "Please try again later, or ask for a shorter track.",
                    reason="worker_lost",
                    detail=why,
                ),
            )
            return
        job.state = "queued"
        job.deadline = float("inf")
        self.stats["requeued"] += 1
        self._queue.put_back(job)
        job.last_position = None
        self._queue.changed()
        self._wakeup.set()

    def _abort_if_unwanted(self) -> None:
        for slot, jobs in list(self._running.values()):
            gone = [j.job_id for j in jobs if j.finished]
            if gone:
                slot.unwanted(gone)

    async def _watch_deadlines(self, jobs: list[_Job]) -> None:
        while True:
            pending = [j for j in jobs if not j.finished and j.state == "running"]
            if not pending:
                return
            now = time.monotonic()
            due = [j for j in pending if j.deadline <= now]
            for job in due:
                self._finish_failed(
                    job,
                    JobFailed(
                        f"Making this track took longer than {self.config.job_timeout:g} s, so it was stopped. "
                        "Try a shorter duration, or try again when the bot is less busy.",
                        reason="timeout",
                    ),
                )
            if due:
                self._abort_if_unwanted()
                continue
            await asyncio.sleep(max(0.0, min(j.deadline for j in pending) - now) + 0.001)

    # -- finishing ------------------------------------------------------------------------------

    def _finish_failed(self, job: _Job, error: JobFailed) -> None:
        if job.state == "queued":
            self._queue.remove(job)
        self._finish(job, "failed", error=error)

    def _finish(
        self, job: _Job, state: str, *, tracks: list[Track] | None = None, error: Exception | None = None
    ) -> None:
        if job.finished:
            return
        job.state = state
        job.finished_at = time.monotonic()
        self._jobs.pop(job.job_id, None)
        metrics.JOB_LATENCY.labels(state).observe(job.finished_at - job.enqueued_at)
        metrics.RUNNING_JOBS.set(sum(1 for j in self._jobs.values() if j.state == "running"))
        if state == "done":
            job.future.set_result(list(tracks or []))
            job.emit(JobEvent("done", position=0, percent=100.0))
        else:
            if isinstance(error, JobFailed):
                metrics.JOB_FAILURES.labels(error.reason).inc()
            job.future.set_exception(error)
            job.future.exception()  # mark retrieved: nobody awaiting the result is not an error
            job.emit(JobEvent(state, message=str(error)))
