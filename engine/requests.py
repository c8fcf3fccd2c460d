"""What goes into the music service and what comes out: requests, typed outputs, the request handle.

``engine.service.MusicService.submit`` takes a ``MusicRequest`` (categories) or a ``DocumentRequest``
(text mode) from a ``Requester`` and returns a ``RequestHandle`` whose outputs (``Queued``,
``Analysing``, ``Analysed``, ``Started``, ``Progress``, then ``Done`` / ``Failed`` / ``Cancelled``)
replay to late subscribers, as ``engine.jobs.JobHandle`` does for engine events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engine.replay import ReplayStream
from engine.spec import MusicSpec, Track
from engine.store import JobRecord, TrackRecord

# ---------------------------------------------------------------------------------------------
# requests

JOB_ID = re.compile(r"[0-9a-f]{12}")  # the shape of every job id (one a front end makes, too)


def new_job_id() -> str:
    """A fresh job id, for a front end that keys its own records before ``submit`` (``job_id=``)."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Requester:
    """Who asked, and where (ids as strings; a DM has no guild)."""

    user_id: str
    guild_id: str | None = None
    channel_id: str | None = None


@dataclass(frozen=True)
class MusicRequest:
    """Category mode (also regenerate, variation, extend, edit and presets: ``kind`` says which)."""

    spec: MusicSpec
    samples: int = 1
    seed: int | None = None
    title: str = "Your track"
    kind: str = "bgm"
    parent_track_id: str | None = None
    continue_from_track_id: str | None = None  # extend: the track to continue
    extend_seconds: float = 0.0
    keep_seconds: float | None = None  # continue from only the first N s of that track (variation)
    loop: bool = False  # finish as a seamless loop (no fades)


@dataclass(frozen=True)
class DocumentRequest:
    """Text mode: an upload (``data`` + ``filename``) or pasted ``text``, with the user's overrides."""

    data: bytes | None = field(default=None, repr=False)
    filename: str | None = None
    text: str | None = field(default=None, repr=False)
    duration: float | str | None = None
    tempo: str | None = None
    keywords: tuple[str, ...] = ()
    kind: str = "text"
    instruments: tuple[str, ...] = ()
    loop: bool = False
    seed: int | None = None
    samples: int = 1


def opening_of(track: Track, seconds: float) -> Track:
    """The first ``seconds`` of a stored track, for a variation: its fade-out is gone with the rest."""
    keep = max(int(round(track.sample_rate * seconds)), 1)
    meta = dict(track.meta, finish=dict(track.meta.get("finish") or {}, fade_out=0.0))
    return dataclasses.replace(track, audio=track.audio[:, :keep], meta=meta)


def generation_plan(
    request: MusicRequest, continue_from: Track | None
) -> tuple[MusicSpec, float, float | None]:
    """(spec, extend_seconds) the model is asked for and the duration its tracks are finished to: a
    fresh track gets exactly what was asked, a continuation its new, longer length (None). A loop
    has the model make its crossfade's overhang too, which finishing folds into the head."""
    spec, extend, duration = request.spec, request.extend_seconds, None
    if continue_from is None:
        duration = request.spec.duration
    if request.loop:
        from engine.audio import loop_overhang

        if continue_from is None:
            spec = spec.with_(duration=duration + loop_overhang(duration))
        else:
            duration = continue_from.duration + extend
            extend += loop_overhang(duration)
    return spec, extend, duration


# ---------------------------------------------------------------------------------------------
# outputs


@dataclass(frozen=True)
class Output:
    job_id: str

    @property
    def terminal(self) -> bool:
        return isinstance(self, (Done, Failed, Cancelled))


@dataclass(frozen=True)
class Queued(Output):
    position: int  # 1-based place in the engine's queue


@dataclass(frozen=True)
class Analysing(Output):
    pass


@dataclass(frozen=True)
class Analysed(Output):
    summary: dict  # language, summary, topic, emotion, valence, arousal, reasons, truncated
    title: str


@dataclass(frozen=True)
class Started(Output):
    pass


@dataclass(frozen=True)
class Progress(Output):
    percent: float


@dataclass(frozen=True)
class Done(Output):
    tracks: list[TrackRecord]


@dataclass(frozen=True)
class Failed(Output):
    message: str  # friendly, for the user
    reason: str  # short code: input, oom, crash, timeout, shutdown, unavailable, error, ...


@dataclass(frozen=True)
class Cancelled(Output):
    pass


@dataclass(frozen=True)
class Recovery:
    """What ``start`` found from the last process."""

    resumed: list[RequestHandle]  # queued/running jobs, submitted again
    gave_up: list[JobRecord]  # stopped (too many attempts, or interrupted mid-analysis): tell the user


# ---------------------------------------------------------------------------------------------
# handles


class RequestHandle:
    """Follow one request: ``async for out in handle`` (replayed from the start to late subscribers,
    ends after Done / Failed / Cancelled), ``await handle.result()``, ``await handle.cancel()``."""

    def __init__(
        self, cancel: Callable[[str], Awaitable[bool]], job_id: str, requester: Requester, request: Any
    ) -> None:
        self.job_id = job_id
        self.requester = requester
        self.request = request
        self.title = getattr(request, "title", "Music for your text")
        self.state = "analysing" if isinstance(request, DocumentRequest) else "queued"
        self._cancel = cancel
        self._outputs: ReplayStream[Output] = ReplayStream(
            lambda out: isinstance(out, Progress), lambda out: out.terminal
        )
        self._future: asyncio.Future[list[TrackRecord]] = asyncio.get_running_loop().create_future()
        self._future.add_done_callback(_consume_exception)
        self._task: asyncio.Task | None = None
        self._engine_job = False  # submitted to the JobEngine (cancel goes there)

    @property
    def done(self) -> bool:
        return self._future.done()

    @property
    def waiting(self) -> bool:
        """Counts toward the server's queue: analysing or queued, not yet generating."""
        return self.state in ("analysing", "queued")

    def _emit(self, output: Output) -> None:
        if self._future.done():
            return
        self._outputs.emit(output)

    def _finish(self, output: Output, result: list[TrackRecord] | BaseException) -> None:
        self._emit(output)
        self.state = {Done: "done", Failed: "failed", Cancelled: "cancelled"}[type(output)]
        if isinstance(result, BaseException):
            self._future.set_exception(result)
        else:
            self._future.set_result(result)

    async def __aiter__(self) -> AsyncIterator[Output]:
        async for output in self._outputs.follow():
            yield output

    async def result(self) -> list[TrackRecord]:
        """The stored tracks; raises ``JobFailed`` (``reason``, friendly ``str``) or ``JobCancelled``."""
        return await asyncio.shield(self._future)

    async def cancel(self) -> bool:
        return await self._cancel(self.job_id)


def _consume_exception(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # a failed request nobody awaited is not an "exception never retrieved"
