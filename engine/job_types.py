"""Public values of the job engine: its config, a request, an event, and the errors users see."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.errors import TexTuneSError, UserInputError
from engine.spec import MusicSpec, Track
from engine.worker import BackendFactory

# Requests are batched only with others of the same bucket: a batch decodes as long as its longest
# member, so mixing a 5 s and a 60 s request would make the short one pay for the long one.
DURATION_BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0)


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
    broker_prefix: str = "textunes"  # Redis key prefix (several bots can share one Redis)
    visibility_timeout: float = 30.0  # Redis: seconds before a silent worker's batch is reclaimed
    result_ttl: float = 900.0  # Redis: seconds a result stays readable for a restarted front end


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


def duration_bucket(seconds: float) -> float:
    for bucket in DURATION_BUCKETS:
        if seconds <= bucket:
            return bucket
    return float(seconds)
