"""Values of the job engine: its config, a request, an event, a job and its handle, the errors users see."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from engine.errors import TexTuneSError, UserInputError
from engine.replay import ReplayStream
from engine.spec import MusicSpec, Track
from engine.worker import BackendFactory

# Requests are batched only with others of the same bucket: a batch decodes as long as its longest
# member, so mixing a 5 s and a 60 s request would make the short one pay for the long one.
DURATION_BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0)
_TERMINAL = ("done", "failed", "cancelled")


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
    # None: TEXTUNES_BROKER from the environment; "" or unset there: batches run in this process.
    # "redis://host:6379/0": batches go to ``textunes worker`` processes through Redis Streams.
    broker_url: str | None = None
    broker_prefix: str | None = None  # Redis key prefix; None: TEXTUNES_BROKER_PREFIX or "textunes"
    visibility_timeout: float = 30.0  # Redis: seconds before a silent worker's batch is reclaimed
    result_ttl: float = 900.0  # Redis: seconds a result stays readable for a restarted front end


@dataclass(frozen=True)
class Finishing:
    """What the executor does to each track before it returns it: ``engine.audio.finish`` to
    ``duration`` (None: keep the generated length) or into a ``loop``, then encode as ``format``.
    Done where the track was made, so a remote worker sends a small file, not raw samples."""

    format: str = "mp3"
    duration: float | None = None
    loop: bool = False


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
    finishing: Finishing | None = None  # None: the raw tracks come back


def duration_bucket(seconds: float) -> float:
    for bucket in DURATION_BUCKETS:
        if seconds <= bucket:
            return bucket
    return float(seconds)


# ---------------------------------------------------------------------------------------------
# jobs and handles


class _Job:
    __slots__ = (
        "request", "job_id", "seq", "state", "attempts", "future", "events",
        "last_position", "deadline", "enqueued_at", "started_at", "finished_at",
    )  # fmt: skip

    def __init__(self, request: JobRequest, job_id: str, seq: int, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.job_id = job_id
        self.seq = seq
        self.state = "queued"
        self.attempts = 0
        self.future: asyncio.Future[list[Track]] = loop.create_future()
        self.events: ReplayStream[JobEvent] = ReplayStream(
            lambda event: event.kind == "progress", lambda event: event.kind in _TERMINAL
        )
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

    def bucket(self) -> float:
        return duration_bucket(self.request.spec.duration)

    def batch_key(self) -> tuple | None:
        """Jobs with equal keys may share one generate call; None means "always alone"."""
        req = self.request
        if req.continue_from is not None or req.seed is not None:
            return None
        return ("generate", self.bucket(), req.samples)

    def emit(self, event: JobEvent) -> None:
        self.events.emit(event)


class JobHandle:
    """What ``submit`` returns: follow one job (position, events, result) or cancel it."""

    def __init__(self, engine, job: _Job) -> None:
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
        async for event in self._job.events.follow():
            yield event

    async def result(self) -> list[Track]:
        """The job's tracks; raises ``JobFailed`` or ``JobCancelled``."""
        # shield: a caller giving up on waiting must not cancel the job for everyone else
        return await asyncio.shield(self._job.future)

    async def cancel(self) -> bool:
        return await self._engine.cancel(self.job_id)
