"""The seam between the scheduler and whatever runs batches: requests, outcomes, Slot and Broker.

The scheduler (``engine.jobs.JobEngine``) keeps the fair queue and forms batches; a ``Broker``
hands it *slots* — executors that said they are ready — and a slot runs one formed batch and
returns one ``Outcome`` per job, reporting each job's final outcome as soon as it is known. The
in-process broker's slots are device workers in this process; the Redis broker's slots are remote
``textunes worker`` processes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from engine.job_types import JobRequest
from engine.spec import Track


@dataclass(frozen=True)
class BatchItem:
    """One job of a formed batch, as an executor sees it."""

    job_id: str
    request: JobRequest

    @property
    def tracks_out(self) -> int:
        return 1 if self.request.continue_from is not None else self.request.samples


@dataclass
class Outcome:
    """How one job of a batch ended on its executor.

    ``done`` carries the tracks; ``failed`` a user-facing ``message`` with a short ``reason`` code
    (and a technical ``detail`` for logs); ``retry`` means the executor lost the job (crash,
    interruption) and the scheduler decides whether to requeue it; ``dropped`` means the job was
    no longer wanted (cancelled, timed out) so nothing was kept.
    """

    kind: str  # "done" | "failed" | "retry" | "dropped"
    tracks: list[Track] = field(default_factory=list)
    message: str = ""
    reason: str = ""
    detail: str = ""


# progress(job_ids, percent): the jobs of the call now running and how far it is (0..100)
BatchProgress = Callable[[list[str], float], None]
# wanted(job_id): False once the scheduler no longer wants the job's result (cancelled, timed out)
Wanted = Callable[[str], bool]
# settled(job_id, outcome): a job's final outcome ("done" or "failed") the moment it is known, before
# the rest of its batch is finished: its user need not wait for the other jobs' encoding
Settled = Callable[[str, Outcome], None]

# device_free(clean): the batch's model calls are over (clean: each made its tracks) and its
# executor can take the next batch; its tracks may still be being finished and encoded
DeviceFree = Callable[[bool], None]


@dataclass(frozen=True)
class BatchCallbacks:
    """What a running batch tells the scheduler: progress, whether a job is still wanted, each
    job's final outcome at once, and when its device is free."""

    progress: BatchProgress
    wanted: Wanted
    settled: Settled | None = None
    device_free: DeviceFree | None = None


TERMINAL_OUTCOMES = ("done", "failed")  # the outcomes that end a job; the others put it back or drop it


class Slot(Protocol):
    """An executor that is ready for exactly one batch of at most ``max_batch`` tracks."""

    name: str
    max_batch: int

    async def execute(self, items: list[BatchItem], calls: BatchCallbacks) -> dict[str, Outcome]: ...

    def unwanted(self, job_ids: list[str]) -> None:
        """Some jobs of the running batch are no longer wanted: stop the call if none is."""


class Broker(Protocol):
    """Hands out ready slots; the in-process broker or the Redis broker."""

    kind: str  # "inprocess" | "redis"
    stats: dict

    async def start(self) -> None: ...

    def closing(self) -> None:
        """Stop handing out slots (``acquire`` returns None soon); ``stop`` follows."""

    async def stop(self) -> None: ...

    async def acquire(self) -> Slot | None:
        """Wait for an executor that is ready for a batch; None when stopping or none is left."""

    def release(self, slot: Slot) -> None:
        """Give back a slot after its batch (or unused): it may be handed out again."""

    def available(self) -> bool:
        """False once no executor is left that could ever serve a job (in-process only)."""

    async def adopt(self, job_id: str) -> Awaitable[Outcome] | None:
        """A job already running (or finished) on an executor from before a restart: an awaitable
        of its outcome, or None if it must be queued like a new job."""

    def release_result(self, job_id: str) -> None:
        """The job's outcome is stored by the caller: a copy kept for adoption after a restart
        may go now."""

    def describe(self) -> dict: ...

    def pids(self) -> list[int | None]: ...


def failure(message: str, reason: str, detail: str = "") -> Outcome:
    return Outcome("failed", message=message, reason=reason, detail=detail)


def gave_up(attempts: int, why: str) -> Outcome:
    """The failure a job gets once its executor crashed ``attempts`` times."""
    return failure(
        f"The music worker crashed {attempts} times while making this track, so we gave up. "
        "Please try again later, or ask for a shorter track.",
        "worker_lost",
        why,
    )
