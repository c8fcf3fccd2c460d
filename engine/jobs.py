"""The job engine: a fair, bounded queue in front of one model per device, with micro-batching.

    engine = JobEngine(EngineConfig(backend="auto"))
    await engine.start()
    handle = await engine.submit(JobRequest(user_id="42", spec=spec))
    async for ev in handle.events():          # queued -> started -> progress ... -> done
        ...
    tracks = await handle.result()

Design (vLLM-like, at the granularity MusicGen allows):

* One engine per process; one worker per device owns the model (``engine.worker``). The event loop
  only schedules: model work runs on a worker thread or in a worker process, so Discord's heartbeat
  and 3-second interaction deadline never wait on a decoder step.
* Requests wait in a bounded queue ordered round-robin across users (the user served longest ago
  goes first), so one user's burst cannot starve everyone else. Per-user limits are enforced here.
* When a worker frees up, the next job in fair order is taken together with every *compatible* job
  waiting (same duration bucket and samples, no fixed seed, no continuation) up to ``max_batch``
  tracks, and the whole group runs as ONE ``backend.generate`` call: a decoder step costs about the
  same for 1 or 8 rows on a memory-bound device, so batching multiplies throughput.
* Faults stay local: out-of-memory splits the batch in halves until it fits (only a job that cannot
  fit alone fails); a crashed worker is restarted and its jobs requeued (bounded attempts); a model
  error fails that batch only; a job running longer than ``job_timeout`` fails and is aborted.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from engine.errors import BackendUnavailable, TexTuneSError, UserInputError
from engine.generation.base import GenerationCancelled, MusicBackend
from engine.spec import MusicSpec, Track
from engine.worker import (
    BackendFactory,
    Call,
    ModelError,
    OutOfMemory,
    ProcessWorker,
    ThreadWorker,
    WorkerCrashed,
)

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
]

# Requests are batched only with others of the same bucket: a batch decodes as long as its longest
# member, so mixing a 5 s and a 60 s request would make the short one pay for the long one.
DURATION_BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0)
_TERMINAL = ("done", "failed", "cancelled")


# ---------------------------------------------------------------------------------------------
# public types


class QueueFull(UserInputError):
    """The queue holds ``max_queue`` jobs already."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The queue is full ({limit} jobs). Try again in a few minutes.")
        self.limit = limit


class UserLimitReached(UserInputError):
    """The user already has ``per_user_limit`` jobs queued or running."""

    def __init__(self, limit: int) -> None:
        noun = "request" if limit == 1 else "requests"
        super().__init__(
            f"You already have {limit} music {noun} in progress. "
            "Wait for one to finish (or cancel it) and try again."
        )
        self.limit = limit


class JobFailed(TexTuneSError):
    """A job could not be finished. ``str(err)`` is a friendly reason; ``reason`` a short code.

    Codes: ``oom`` (too big for the device), ``crash`` (model error), ``worker_lost`` (the worker died
    too often), ``timeout``, ``shutdown``, ``unavailable`` (no worker left).
    """

    def __init__(self, message: str, *, reason: str, detail: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = detail  # technical detail for logs, never shown to users


class JobCancelled(TexTuneSError):
    """The job was cancelled (by its owner or an admin) before it finished."""


@dataclass(frozen=True)
class JobRequest:
    user_id: str
    spec: MusicSpec
    samples: int = 1
    seed: int | None = None  # None: batchable; a fixed seed runs alone so it stays reproducible
    guild_id: str | None = None
    job_id: str | None = None
    continue_from: Track | None = None
    extend_seconds: float = 0.0


@dataclass(frozen=True)
class JobEvent:
    kind: str  # "queued" | "started" | "progress" | "done" | "failed" | "cancelled"
    position: int | None = None  # 1-based queue place for "queued", 0 once running
    percent: float | None = None  # 0..100 for "progress" (and 100 for "done")
    message: str | None = None  # friendly text for "failed" / "cancelled"


@dataclass
class EngineConfig:
    backend: str = "auto"  # "auto" | "musicgen" | "arranger"
    model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_queue: int = 50  # queued (not running) jobs
    per_user_limit: int = 2  # queued + running jobs per user
    max_batch: int = 8  # tracks per generate call (a request's samples count)
    job_timeout: float = 600.0  # seconds a job may run (queue time excluded)
    # "auto": one worker per CUDA device when several are visible and device is "auto"/"cuda",
    # else one worker on ``device``. Or an explicit list such as ["cuda:0", "cuda:1"].
    devices: str | Sequence[str] = "auto"
    worker: str = "thread"  # "thread" (backend in this process) or "process" (spawned child)
    max_attempts: int = 3  # starts per job before a crashing worker makes it fail
    batch_window: float = 0.05  # seconds an idle worker waits for more requests to batch
    max_samples: int = 8
    generation_params: dict = field(default_factory=dict)  # set_generation_params(**) after loading
    backend_options: dict = field(default_factory=dict)  # load_backend(**): kv_cache, threads, max_batch
    # (device) -> backend, instead of load_backend(backend, model, device, dtype). Process mode
    # pickles it: use a module-level function or functools.partial of one.
    backend_factory: BackendFactory | None = None
    load_timeout: float = 900.0  # process mode: seconds a child may take to load its model
    abort_grace: float = 10.0  # process mode: seconds an aborted child gets before it is killed


def _load_configured_backend(
    name: str, model: str | None, dtype: str, options: dict, device: str
) -> MusicBackend:
    from engine.generation import load_backend

    return load_backend(name, model=model, device=device, dtype=dtype, **options)


def _cuda_device_count(import_torch: bool) -> int:
    """How many CUDA devices are visible; in process mode without importing torch here."""
    torch = sys.modules.get("torch")
    if torch is None and import_torch:
        import torch
    if torch is not None:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def resolve_devices(config: EngineConfig) -> list[str]:
    if not isinstance(config.devices, str):
        devices = [str(d) for d in config.devices]
        if not devices:
            raise ValueError("EngineConfig.devices is an empty list")
        return devices
    if config.devices != "auto":
        return [config.devices]
    if config.backend == "arranger" and config.worker == "process":
        # the arranger is CPU-bound in a renderer that holds the GIL: one child process per core
        # (up to 4) renders in parallel; threads would just take turns
        return ["cpu"] * max(1, min(os.cpu_count() or 1, 4))
    if config.device in ("auto", "cuda") and config.backend != "arranger":
        count = _cuda_device_count(import_torch=config.worker == "thread")
        if count > 1:
            return [f"cuda:{i}" for i in range(count)]
    return [config.device]


def duration_bucket(seconds: float) -> float:
    for bucket in DURATION_BUCKETS:
        if seconds <= bucket:
            return bucket
    return float(seconds)


# ---------------------------------------------------------------------------------------------
# jobs and handles


class _Job:
    __slots__ = (
        "request", "job_id", "seq", "state", "attempts", "future", "history", "subscribers",
        "last_position", "deadline", "enqueued_at", "started_at", "finished_at",
    )  # fmt: skip

    def __init__(self, request: JobRequest, job_id: str, seq: int, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.job_id = job_id
        self.seq = seq
        self.state = "queued"
        self.attempts = 0
        self.future: asyncio.Future[list[Track]] = loop.create_future()
        self.history: list[JobEvent] = []
        self.subscribers: list[asyncio.Queue[JobEvent]] = []
        self.last_position: int | None = None
        self.deadline = float("inf")
        self.enqueued_at = time.monotonic()
        self.started_at: float | None = None
        self.finished_at: float | None = None

    @property
    def user_id(self) -> str:
        return self.request.user_id

    @property
    def finished(self) -> bool:
        return self.state in _TERMINAL

    def batch_key(self) -> tuple | None:
        """Jobs with equal keys may share one generate call; None means "always alone"."""
        req = self.request
        if req.continue_from is not None or req.seed is not None:
            return None
        return ("generate", duration_bucket(req.spec.duration), req.samples)

    def emit(self, event: JobEvent) -> None:
        # keep the replay history short: only the latest progress event is worth replaying
        if event.kind == "progress" and self.history and self.history[-1].kind == "progress":
            self.history[-1] = event
        else:
            self.history.append(event)
        for queue in self.subscribers:
            queue.put_nowait(event)


class JobHandle:
    """What ``submit`` returns: follow one job (position, events, result) or cancel it."""

    def __init__(self, engine: JobEngine, job: _Job) -> None:
        self._engine = engine
        self._job = job
        self.job_id = job.job_id

    @property
    def position(self) -> int:
        """1-based place in the queue; 0 once the job runs (or has finished)."""
        return self._engine.position(self.job_id) or 0

    @property
    def state(self) -> str:
        return self._job.state

    @property
    def attempts(self) -> int:
        return self._job.attempts

    def done(self) -> bool:
        return self._job.finished

    async def events(self) -> AsyncIterator[JobEvent]:
        """Every event of the job, from the start (replayed), until it finishes."""
        job = self._job
        queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        for event in job.history:
            queue.put_nowait(event)
        job.subscribers.append(queue)
        try:
            while True:
                event = await queue.get()
                yield event
                if event.kind in _TERMINAL:
                    return
        finally:
            job.subscribers.remove(queue)

    async def result(self) -> list[Track]:
        """The job's tracks; raises ``JobFailed`` or ``JobCancelled``."""
        # shield: a caller giving up on waiting must not cancel the job for everyone else
        return await asyncio.shield(self._job.future)

    async def cancel(self) -> bool:
        return await self._engine.cancel(self.job_id)


# ---------------------------------------------------------------------------------------------
# the engine


class JobEngine:
    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        if self.config.worker not in ("thread", "process"):
            raise ValueError(f"EngineConfig.worker must be 'thread' or 'process', not {self.config.worker!r}")
        self._queues: OrderedDict[str, deque[_Job]] = OrderedDict()  # user -> queued jobs
        self._jobs: dict[str, _Job] = {}  # every queued or running job
        self._last_served: OrderedDict[str, int] = OrderedDict()  # user -> service counter
        self._serve_counter = itertools.count(1)
        self._seq = itertools.count(1)
        self._workers: list[ThreadWorker | ProcessWorker] = []
        self._running: dict[int, list[_Job]] = {}  # id(worker) -> jobs of its current call
        self._loops: list[asyncio.Task] = []
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
        cfg = self.config
        factory = cfg.backend_factory or functools.partial(
            _load_configured_backend, cfg.backend, cfg.model, cfg.dtype, dict(cfg.backend_options)
        )
        for device in resolve_devices(cfg):
            if cfg.worker == "process":
                worker = ProcessWorker(
                    device,
                    factory,
                    cfg.generation_params,
                    load_timeout=cfg.load_timeout,
                    abort_grace=cfg.abort_grace,
                )
            else:
                worker = ThreadWorker(device, factory, cfg.generation_params)
            self._workers.append(worker)
        try:
            await asyncio.gather(*(w.start() for w in self._workers))
        except BaseException:
            await asyncio.gather(*(w.stop() for w in self._workers), return_exceptions=True)
            self._workers.clear()
            raise
        self._started = True
        self._stopping = False
        self._loops = [
            asyncio.create_task(self._device_loop(w), name=f"engine-{w.device}") for w in self._workers
        ]
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
        for job in list(self._jobs.values()):
            self._finish_failed(
                job,
                JobFailed(
                    "The music engine is shutting down; your request was not finished.", reason="shutdown"
                ),
            )
        for worker in self._workers:
            worker.abort()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in self._workers), return_exceptions=True)
        self._loops.clear()
        self._workers.clear()
        self._started = False

    async def __aenter__(self) -> JobEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # -- info -----------------------------------------------------------------------------------

    @property
    def backend_name(self) -> str:
        return self._workers[0].info.name if self._workers and self._workers[0].info else self.config.backend

    @property
    def model_id(self) -> str:
        return (
            self._workers[0].info.model_id
            if self._workers and self._workers[0].info
            else (self.config.model or "")
        )

    @property
    def sample_rate(self) -> int | None:
        return self._workers[0].info.sample_rate if self._workers and self._workers[0].info else None

    @property
    def devices(self) -> list[str]:
        return [w.device for w in self._workers]

    def worker_pids(self) -> list[int | None]:
        """Process ids of the worker children (process mode); for monitoring and fault injection."""
        return [w.pid for w in self._workers]

    def describe(self) -> str:
        devices = ", ".join(self.devices) or "no device"
        return (
            f"{self.backend_name} ({self.model_id}) on {devices}, {self.config.worker} worker"
            f"{'s' if len(self._workers) > 1 else ''}, batch ≤ {self._batch_limit()}, "
            f"queue {self.queue_length()}/{self.config.max_queue}"
        )

    def queue_length(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def position(self, job_id: str) -> int | None:
        """1-based queue place, 0 while running, None if unknown or finished."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if job.state == "running":
            return 0
        for place, queued in enumerate(self._fair_order(), start=1):
            if queued is job:
                return place
        return None

    def jobs_of(self, user_id: str) -> list[str]:
        return [j.job_id for j in self._jobs.values() if j.user_id == user_id]

    def job_state(self, job_id: str) -> str | None:
        job = self._jobs.get(job_id)
        return job.state if job else None

    # -- submit / cancel ------------------------------------------------------------------------

    async def submit(self, request: JobRequest) -> JobHandle:
        if not self._started or self._stopping:
            raise BackendUnavailable("The music engine is not running right now. Try again in a minute.")
        if not self._workers:
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
        if self.queue_length() >= cfg.max_queue:
            raise QueueFull(cfg.max_queue)
        job_id = request.job_id or uuid.uuid4().hex[:12]
        if job_id in self._jobs:
            raise ValueError(f"job {job_id} is already queued or running")
        job = _Job(request, job_id, next(self._seq), self._loop)
        self._jobs[job_id] = job
        self._queues.setdefault(request.user_id, deque()).append(job)
        self._publish_positions()
        self._wakeup.set()
        return JobHandle(self, job)

    async def cancel(self, job_id: str, user_id: str | None = None) -> bool:
        """Cancel a queued or running job. With ``user_id``, only its owner may. True if cancelled."""
        job = self._jobs.get(job_id)
        if job is None or job.finished:
            return False
        if user_id is not None and job.user_id != user_id:
            return False
        if job.state == "queued":
            self._unqueue(job)
            self._finish(job, "cancelled", error=JobCancelled("Cancelled."))
            self._publish_positions()
            return True
        # running: resolve now; the owner never waits for the model. If no other job still wants
        # the current call, abort it; otherwise its track is simply dropped when the call returns.
        self._finish(job, "cancelled", error=JobCancelled("Cancelled."))
        self._abort_if_unwanted()
        return True

    # -- scheduling -----------------------------------------------------------------------------

    def _fair_order(self) -> list[_Job]:
        """Queued jobs in the order they will be served: round-robin over users, the user served
        longest ago (or never) first; within a user, first come first served."""
        users = sorted(self._queues, key=lambda u: (self._last_served.get(u, 0), self._queues[u][0].seq))
        order: list[_Job] = []
        depth = 0
        while True:
            layer = [self._queues[u][depth] for u in users if len(self._queues[u]) > depth]
            if not layer:
                return order
            order.extend(layer)
            depth += 1

    def _batch_limit(self, worker=None) -> int:
        limit = self.config.max_batch
        workers = [worker] if worker is not None else self._workers
        for w in workers:
            if w.info is not None:
                limit = min(limit, w.info.max_batch)
        return max(1, limit)

    def _select(self, limit: int) -> list[_Job]:
        """The next job in fair order plus compatible queued jobs, up to ``limit`` tracks."""
        order = self._fair_order()
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

    def _unqueue(self, job: _Job) -> None:
        queue = self._queues.get(job.user_id)
        if queue is None:
            return
        try:
            queue.remove(job)
        except ValueError:
            return
        if not queue:
            del self._queues[job.user_id]

    def _mark_served(self, user_id: str) -> None:
        self._last_served[user_id] = next(self._serve_counter)
        self._last_served.move_to_end(user_id)
        while len(self._last_served) > 10_000:  # bounded memory on a large server
            self._last_served.popitem(last=False)

    def _publish_positions(self) -> None:
        for place, job in enumerate(self._fair_order(), start=1):
            if job.last_position != place:
                job.last_position = place
                job.emit(JobEvent("queued", position=place))

    async def _next_batch(self, worker) -> list[_Job] | None:
        while not self._stopping:
            if self._queues:
                limit = self._batch_limit(worker)
                chosen = self._select(limit)
                tracks = sum(j.request.samples for j in chosen)
                # requests of a burst arrive a few ms apart: a short wait (counted from the head
                # job's arrival, so jobs that already waited are not delayed) fills the batch
                wait = self.config.batch_window - (time.monotonic() - chosen[0].enqueued_at)
                if wait > 0 and chosen[0].batch_key() is not None and tracks < limit:
                    await asyncio.sleep(wait)
                    if self._stopping:
                        return None
                    chosen = self._select(limit)
                    if not chosen:
                        continue
                for job in chosen:
                    self._unqueue(job)
                    self._mark_served(job.user_id)
                self._publish_positions()
                return chosen
            self._wakeup.clear()
            await self._wakeup.wait()
        return None

    async def _device_loop(self, worker) -> None:
        while not self._stopping:
            jobs = await self._next_batch(worker)
            if not jobs:
                return
            try:
                await self._execute(worker, jobs)
            except asyncio.CancelledError:
                raise
            except _WorkerLost:
                log.error("worker on %s could not be restarted; it stops serving", worker.device)
                self._workers.remove(worker)
                if not self._workers:
                    for job in list(self._jobs.values()):
                        self._finish_failed(
                            job,
                            JobFailed(
                                "The music engine lost its last device and cannot make music right now. "
                                "Please tell the bot admin.",
                                reason="unavailable",
                            ),
                        )
                return
            except Exception:  # a scheduler bug must not silently kill a device loop
                log.exception("unexpected error while running a batch on %s", worker.device)
                for job in jobs:
                    self._finish_failed(
                        job,
                        JobFailed(
                            "Something went wrong inside the music engine. Please try again.", reason="crash"
                        ),
                    )

    async def _execute(self, worker, jobs: list[_Job]) -> None:
        now = time.monotonic()
        for job in jobs:
            job.state = "running"
            job.attempts += 1
            job.started_at = now
            job.deadline = now + self.config.job_timeout
            job.last_position = 0
            job.emit(JobEvent("started", position=0, percent=0.0))
        watchdog = asyncio.create_task(self._watch_deadlines(jobs))
        try:
            await self._run_split(worker, jobs)
        finally:
            watchdog.cancel()
            self._running.pop(id(worker), None)

    async def _run_split(self, worker, jobs: list[_Job]) -> None:
        """Run ``jobs`` as one call; on out-of-memory retry each half separately."""
        live = [j for j in jobs if not j.finished]
        if not live:
            return
        call = _build_call(live)
        self._running[id(worker)] = live
        self.stats["calls"] += 1
        self.stats["batched_jobs"] += len(live)

        def on_progress(done: int, total: int) -> None:  # event-loop thread
            percent = round(100.0 * done / total, 1) if total else 0.0
            for job in live:
                if not job.finished:
                    job.emit(JobEvent("progress", position=0, percent=percent))

        try:
            tracks = await worker.run(call, on_progress)
        except OutOfMemory as exc:
            if len(live) > 1:
                self.stats["oom_splits"] += 1
                half = len(live) // 2
                log.warning("out of memory with %d jobs on %s; retrying in halves", len(live), worker.device)
                await self._run_split(worker, live[:half])
                await self._run_split(worker, live[half:])
                return
            job = live[0]
            self._finish_failed(
                job,
                JobFailed(
                    f"This request is too big for the music device's memory "
                    f"({job.request.samples} × {job.request.spec.duration:g} s). "
                    "Try a shorter duration or fewer samples.",
                    reason="oom",
                    detail=str(exc),
                ),
            )
            return
        except GenerationCancelled:
            # we abort only calls nobody wants any more; anything still open was requeued/failed
            for job in live:
                if not job.finished:
                    self._requeue_or_fail(job, "the generation was interrupted")
            return
        except WorkerCrashed as exc:
            log.error("worker on %s crashed: %s; restarting it", worker.device, exc)
            for job in live:
                if not job.finished:
                    self._requeue_or_fail(job, str(exc))
            await self._restart(worker)
            return
        except ModelError as exc:
            log.error("model error on %s: %s", worker.device, exc)
            for job in live:
                self._finish_failed(
                    job,
                    JobFailed(
                        "The music model failed while making this track. It was not your input; "
                        "please try again, and tell the bot admin if it keeps happening.",
                        reason="crash",
                        detail=str(exc),
                    ),
                )
            return
        self.stats["tracks"] += len(tracks)
        if len(tracks) != call.tracks_out:
            for job in live:
                self._finish_failed(
                    job,
                    JobFailed(
                        "The music model returned an unexpected result. Please try again.",
                        reason="crash",
                        detail=f"expected {call.tracks_out} tracks, got {len(tracks)}",
                    ),
                )
            return
        at = 0
        for job in live:
            count = 1 if job.request.continue_from is not None else job.request.samples
            mine, at = tracks[at : at + count], at + count
            if not job.finished:  # a job cancelled mid-batch just drops its tracks
                self._finish(job, "done", tracks=mine)

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
        # back to the front of its owner's line: it already waited its turn once
        self._queues.setdefault(job.user_id, deque()).appendleft(job)
        self._last_served.pop(job.user_id, None)
        job.last_position = None
        self._publish_positions()
        self._wakeup.set()

    async def _restart(self, worker) -> None:
        self.stats["restarts"] += 1
        delay = 0.5
        for attempt in range(1, 4):
            if self._stopping:
                return
            try:
                await worker.restart()
                log.info("worker on %s restarted (attempt %d)", worker.device, attempt)
                return
            except Exception as exc:
                log.error("restarting worker on %s failed: %s", worker.device, exc)
                await asyncio.sleep(delay)
                delay *= 4
        raise _WorkerLost(worker.device)

    def _abort_if_unwanted(self) -> None:
        for worker in self._workers:
            running = self._running.get(id(worker))
            if running and all(j.finished for j in running):
                worker.abort()

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
            self._unqueue(job)
        self._finish(job, "failed", error=error)

    def _finish(
        self, job: _Job, state: str, *, tracks: list[Track] | None = None, error: Exception | None = None
    ) -> None:
        if job.finished:
            return
        job.state = state
        job.finished_at = time.monotonic()
        self._jobs.pop(job.job_id, None)
        if state == "done":
            job.future.set_result(list(tracks or []))
            job.emit(JobEvent("done", position=0, percent=100.0))
        else:
            job.future.set_exception(error)
            job.future.exception()  # mark retrieved: nobody awaiting the result is not an error
            job.emit(JobEvent(state, message=str(error)))


class _WorkerLost(Exception):
    """A worker could not be restarted; its device loop ends."""


def _build_call(jobs: list[_Job]) -> Call:
    first = jobs[0].request
    if first.continue_from is not None:
        return Call(continue_from=first.continue_from, extend_seconds=first.extend_seconds)
    return Call(specs=[j.request.spec for j in jobs], samples=first.samples, seed=first.seed)
