"""The engine's front door: one ``MusicService`` owns each request from submit to stored track.

    service = MusicService(store, JobEngine(config), limits=Limits.from_env(), analysis=AnalysisSandbox())
    recovery = await service.start()
    await service.admit(requester, samples=2, duration=30)     # before a front end defers
    handle = await service.submit(requester, MusicRequest(spec=spec, samples=2))
    async for out in handle:                                    # Queued, Started, Progress…, Done
        ...
    records = await handle.result()

Like vLLM's ``AsyncLLM``: a request goes in, a handle streams typed outputs. The service records the
job in the store, reads and analyses a document in the analysis sandbox (``engine.text.sandbox``),
submits to the ``JobEngine`` with how each track is to be finished (duration, fades, loudness,
loop, the requester's ``/settings`` format: the executor does it, on a remote worker if there is
one), keeps the job's state in the store and stores the finished files. Front ends
(the Discord bot, the CLI) only show outputs; posting to Discord stays in ``bot/``.

One admission check (``admit``) enforces one ``Limits`` (``engine.limits``): the operator's caps,
lowered by the server's overrides; the queue size is per server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from engine.errors import TexTuneSError, UserInputError
from engine.job_types import Finishing
from engine.jobs import JobCancelled, JobEngine, JobFailed, JobRequest
from engine.limits import OVERRIDE_KEYS, Limits, check_override, resolve_limits
from engine.requests import (
    JOB_ID,
    Analysed,
    Analysing,
    Cancelled,
    DocumentRequest,
    Done,
    Failed,
    MusicRequest,
    Output,
    Progress,
    Queued,
    Recovery,
    Requester,
    RequestHandle,
    Started,
    generation_plan,
    new_job_id,
    opening_of,
)
from engine.spec import Track
from engine.store import (
    USER_DEFAULTS,
    JobRecord,
    RetentionPolicy,
    TrackRecord,
    run_retention_forever,
    spec_to_request,
)

MAX_SEED = 2**63 - 1
log = logging.getLogger("textunes.service")

__all__ = [
    "Analysed",
    "Analysing",
    "Cancelled",
    "Done",
    "DocumentRequest",
    "Failed",
    "JOB_ID",
    "MusicRequest",
    "MusicService",
    "Output",
    "Progress",
    "Queued",
    "Recovery",
    "RequestHandle",
    "Requester",
    "RetentionPolicy",
    "Started",
    "new_job_id",
]

ANALYSIS_KEYS = ("language", "summary", "topic", "emotion", "valence", "arousal", "reasons", "truncated")
DEFAULT_TEXT_DURATION = 15
MAX_TITLE_CHARS = 120
RETENTION_INTERVAL = 24 * 3600.0


# ---------------------------------------------------------------------------------------------
# the service


class MusicService:
    def __init__(
        self,
        store: Any,
        engine: JobEngine,
        *,
        limits: Limits,
        analysis: Any | None = None,
        audio_format: str = "mp3",
        retention: RetentionPolicy | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.limits = limits
        self.analysis = analysis  # an engine.text.sandbox.AnalysisSandbox (or None: no text mode)
        self.audio_format = audio_format
        self.retention = retention
        self._active: dict[str, RequestHandle] = {}
        self._retention_task: asyncio.Task | None = None
        self._chores: set[asyncio.Task] = set()  # follow-ups of request tasks (kept referenced)
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> Recovery:
        """Start the engine and the sandbox, run retention (now and daily) and recover what the last
        process left: queued/running jobs are submitted again, jobs past their attempts are failed
        and listed (what a front end had not posted yet, it finds in its own records)."""
        self._closing = False
        await self.engine.start()
        if self.analysis is not None:
            await self.analysis.start()
        if self.retention is not None:
            await self.store.aio.call(self.retention.apply, self.store)  # done before anyone asks for tracks
            self._retention_task = asyncio.create_task(self._retention_daily(), name="textunes-retention")
        return await self.recover()

    async def _retention_daily(self) -> None:
        await asyncio.sleep(RETENTION_INTERVAL)  # the pass at start just ran
        await run_retention_forever(self.store, self.retention, RETENTION_INTERVAL)

    async def recover(self) -> Recovery:
        requeue, gave_up = await self.store.aio.recover_unfinished()
        resumed: list[RequestHandle] = []
        for job in requeue:
            if "spec" not in job.request:  # stopped while its document was being read: no spec yet
                failed = await self.store.aio.mark_failed(
                    job.id,
                    "The bot restarted while reading your document. Please send it again.",
                )
                gave_up.append(failed)
                continue
            resumed.append(self._resume(job))
        return Recovery(resumed=resumed, gave_up=gave_up)

    def _resume(self, job: JobRecord) -> RequestHandle:
        request = MusicRequest(
            spec=job.spec,
            samples=job.samples,
            seed=job.seed,
            title=str(job.request.get("title") or "Your track"),
            kind=job.kind,
            parent_track_id=job.parent_track_id,
            continue_from_track_id=job.request.get("continue_from_track_id"),
            extend_seconds=float(job.request.get("extend_seconds") or 0.0),
            keep_seconds=None
            if job.request.get("keep_seconds") is None
            else float(job.request["keep_seconds"]),
            loop=bool(job.request.get("loop")),
        )
        requester = Requester(str(job.user_id), job.guild_id)
        handle = RequestHandle(self.cancel, job.id, requester, request)
        self._track(handle, self._run_music(handle, request, job.request.get("analysis")))
        return handle

    async def close(self) -> None:
        """Stop serving: running jobs stop with reason "shutdown" and stay resumable in the store."""
        self._closing = True
        if self._retention_task is not None:
            self._retention_task.cancel()
            with contextlib.suppress(BaseException):
                await self._retention_task
            self._retention_task = None
        for handle in list(self._active.values()):
            if not handle._engine_job and handle._task is not None:
                handle._task.cancel()  # analysing: leave it queued in the store (recovery fails it)
        try:
            await self.engine.stop()
        finally:
            tasks = [h._task for h in self._active.values() if h._task is not None]
            if tasks:
                await asyncio.wait(tasks, timeout=10)
            if self.analysis is not None:
                await self.analysis.close()

    # -- limits and admission -------------------------------------------------------------------
    def limits_for(self, guild_id: str | int | None) -> Limits:
        """The operator's caps resolved with the server's ``/admin limits`` overrides (sync: one read)."""
        if guild_id is None:
            return self.limits
        # defaults of None: only values an admin set count, never the store's built-in defaults
        own = self.store.guild_settings(guild_id, defaults={k: None for k in OVERRIDE_KEYS})
        return resolve_limits(self.limits, own)

    async def server_limits(self, guild_id: str | int | None) -> Limits:
        """``limits_for`` off the event loop (on the store's thread): what ``/admin limits`` shows."""
        return await self.store.aio.call(self.limits_for, guild_id)

    async def set_limits(self, guild_id: str | int, **changes: Any) -> Limits:
        """``/admin limits``: validate every change against the operator's caps (``check_override``:
        "the operator allows at most N") and only then save them; None resets a key to the operator's
        value. Returns the server's resolved limits. Raises ``UserInputError``; nothing is saved then."""
        cleaned = {key: check_override(self.limits, key, value) for key, value in changes.items()}
        await self.store.aio.set_guild_settings(guild_id, **cleaned)
        return await self.server_limits(guild_id)

    async def check_upload(self, requester: Requester, filename: str, size: int) -> str:
        """Type and size of an upload against this server's limit, before anything is downloaded."""
        from engine.text.ingest import check_upload  # parsers load only on the engine's side when used

        limits = await self.store.aio.call(self.limits_for, requester.guild_id)
        return check_upload(filename, size, max_bytes=limits.max_file_bytes)

    async def admit(self, requester: Requester, *, samples: int = 1, duration: float | None = None) -> None:
        """The one admission check; raises ``UserInputError`` with the message to show.

        Per-member requests in progress, this server's waiting requests (not the global queue),
        the engine's total queue, samples and duration against the server's resolved limits.
        """
        limits = await self.store.aio.call(self.limits_for, requester.guild_id)
        self._check(requester, limits, samples=samples, duration=duration)

    def _check(self, requester: Requester, limits: Limits, *, samples: int, duration: float | None) -> None:
        if not 1 <= int(samples) <= limits.max_samples:
            raise UserInputError(f"Samples must be between 1 and {limits.max_samples} here, not {samples}.")
        if duration is not None and float(duration) > limits.max_duration:
            cap = _mmss(limits.max_duration)
            raise UserInputError(f"This server allows at most {cap} per track; choose {cap} or less.")
        mine = sum(
            1 for h in self._active.values() if not h.done and h.requester.user_id == str(requester.user_id)
        )
        mine = max(mine, len(self.engine.jobs_of(str(requester.user_id))))
        if mine >= limits.jobs_per_user:
            raise UserInputError(
                f"You already have {mine} job(s) in progress (the limit is {limits.jobs_per_user}). "
                "Wait for one to finish, or `/cancel` it."
            )
        here = sum(
            1
            for h in self._active.values()
            if h.waiting
            and h.requester.guild_id == (None if requester.guild_id is None else str(requester.guild_id))
        )
        if here >= limits.queue_size:
            raise UserInputError(f"The queue is full ({limits.queue_size} jobs). Try again in a few minutes.")
        if self.engine.queue_length() >= limits.total_queue:
            raise UserInputError(
                f"The queue is full ({limits.total_queue} jobs). Try again in a few minutes."
            )

    # -- submit / cancel ------------------------------------------------------------------------
    async def submit(
        self,
        requester: Requester,
        request: MusicRequest | DocumentRequest,
        *,
        job_id: str | None = None,
    ) -> RequestHandle:
        """Admit, record and start ``request``; returns its handle at once (outputs stream on it).

        ``job_id``: an id the front end made (``new_job_id()``) and already keyed its own records by,
        so a crash between its write and this call cannot leave a job it knows nothing about.
        Raises ``UserInputError`` when admission refuses (nothing is recorded then).
        """
        if self._closing:
            raise UserInputError("The music engine is shutting down. Try again in a minute.")
        requester = Requester(
            str(requester.user_id),
            None if requester.guild_id is None else str(requester.guild_id),
            None if requester.channel_id is None else str(requester.channel_id),
        )
        limits = await self.store.aio.call(self.limits_for, requester.guild_id)
        if isinstance(request, MusicRequest):
            self._check(requester, limits, samples=request.samples, duration=request.spec.duration)
            stored = _music_request_dict(request)
        elif isinstance(request, DocumentRequest):
            if request.data is None and not (request.text and request.text.strip()):
                raise UserInputError("Attach a document or paste some text to score.")
            size = len(request.data) if request.data is not None else len(request.text.encode("utf-8"))
            if size > limits.max_file_bytes:  # before it is copied to the analysis process
                name = request.filename or "That text"
                raise UserInputError(
                    f"{name[:80]} is {size / 1_000_000:.1f} MB; the limit is {limits.max_file_bytes / 1_000_000:.1f} MB. "
                    "Send a shorter part (one chapter is plenty) or paste the text."
                )
            duration = _parse_duration(request.duration)
            self._check(requester, limits, samples=request.samples, duration=duration)
            if self.analysis is None:
                raise UserInputError("Text mode is not available on this server right now.")
            stored = {"title": "Music for your text", "document": request.filename or "pasted text"}
        else:
            raise TypeError(f"not a request: {type(request).__name__}")
        if request.seed is not None and not 0 <= request.seed <= MAX_SEED:  # sqlite's INTEGER, numpy's rng
            raise UserInputError(f"A seed is a whole number from 0 to {MAX_SEED}, not {request.seed}.")
        # reserve the slot before the first await below, so two racing submits cannot both pass
        if job_id is not None and (not JOB_ID.fullmatch(job_id) or job_id in self._active):
            raise ValueError(f"job id {job_id!r}: 12 lowercase hex digits, not in use")
        handle = RequestHandle(self.cancel, job_id or new_job_id(), requester, request)
        self._active[handle.job_id] = handle
        try:
            await self.store.aio.create_job(
                job_id=handle.job_id,
                user_id=requester.user_id,
                request=stored,
                guild_id=requester.guild_id,
                kind=request.kind,
                parent_track_id=getattr(request, "parent_track_id", None),
            )
        except BaseException:
            self._active.pop(handle.job_id, None)
            raise
        if isinstance(request, DocumentRequest):
            coro = self._run_document(handle, request, limits)
        else:
            coro = self._run_music(handle, request, None)
        self._track(handle, coro)
        return handle

    def _track(self, handle: RequestHandle, coro: Any) -> None:
        self._active[handle.job_id] = handle
        handle._task = asyncio.create_task(coro, name=f"textunes-request-{handle.job_id}")
        handle._task.add_done_callback(lambda task, handle=handle: self._settled(handle, task))

    def _settled(self, handle: RequestHandle, task: asyncio.Task) -> None:
        """A request's task ended. One cancelled before its first step never ran its own handler,
        and a bug must not leave a subscriber waiting forever: both still end the handle."""
        if handle.done:
            self._active.pop(handle.job_id, None)
            return
        if task.cancelled():
            follow_up = self._cancelled_before_engine(handle)
        else:
            log.error(
                "job %s: request task ended without an outcome", handle.job_id, exc_info=task.exception()
            )
            follow_up = self._fail(handle, "Something went wrong; please try again.", "error")
        chore = asyncio.create_task(follow_up)  # stays active until the outcome is recorded
        self._chores.add(chore)
        chore.add_done_callback(self._chores.discard)
        chore.add_done_callback(lambda _t: self._active.pop(handle.job_id, None))

    async def cancel(self, job_id: str, user_id: str | int | None = None) -> bool:
        """Cancel a request in progress (only its owner's, with ``user_id``); True if it was."""
        handle = self._active.get(job_id)
        if handle is None or handle.done:
            return False
        if user_id is not None and handle.requester.user_id != str(user_id):
            return False
        if handle._engine_job:
            return await self.engine.cancel(job_id)
        if handle._task is not None:
            handle._task.cancel()  # analysing: the lifecycle records the cancellation
            return True
        return False

    # -- one request's life ---------------------------------------------------------------------
    async def _run_document(self, handle: RequestHandle, request: DocumentRequest, limits: Limits) -> None:
        job_id = handle.job_id
        try:
            handle._emit(Analysing(job_id))
            analysis = await self.analysis.analyze(
                request.data,
                request.filename,
                text=None if request.data is not None else request.text,
                max_bytes=limits.max_file_bytes,
                tempo=request.tempo,
                duration=request.duration if request.duration is not None else DEFAULT_TEXT_DURATION,
                keywords=tuple(request.keywords),
                instruments=tuple(request.instruments),
            )
            if analysis.spec.duration > limits.max_duration:
                cap = _mmss(limits.max_duration)
                raise UserInputError(f"This server allows at most {cap} per track; choose {cap} or less.")
            summary = analysis_summary(analysis)
            title = (f"Music for “{analysis.title}”" if analysis.title else "Music for your text")[
                :MAX_TITLE_CHARS
            ]
            handle.title = title
            music = MusicRequest(
                spec=analysis.spec,
                samples=request.samples,
                title=title,
                kind=request.kind,
                loop=request.loop,
                seed=request.seed,
            )
            stored = {**_music_request_dict(music), "analysis": summary}
            await self.store.aio.update_job(job_id, request=stored)
            handle.state = "queued"
            handle._emit(Analysed(job_id, summary=summary, title=title))
        except asyncio.CancelledError:
            await self._cancelled_before_engine(handle)
            return
        except UserInputError as exc:
            await self._fail(handle, str(exc), "input")
            return
        except Exception as exc:  # the sandbox could not run at all
            log.warning("job %s: analysis unavailable: %s", job_id, exc)
            await self._fail(
                handle, "I can't read documents right now; please try again in a minute.", "unavailable"
            )
            return
        await self._run_music(handle, music, summary)

    async def _cancelled_before_engine(self, handle: RequestHandle) -> None:
        if self._closing:  # shutting down: leave it to recovery, which tells the user
            handle._finish(
                Failed(handle.job_id, "The bot is restarting.", "shutdown"),
                JobFailed("The bot is restarting.", reason="shutdown"),
            )
            return
        with contextlib.suppress(Exception):
            await self.store.aio.mark_cancelled(handle.job_id)
        handle._finish(Cancelled(handle.job_id), JobCancelled("Cancelled."))

    async def _fail(self, handle: RequestHandle, message: str, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.store.aio.mark_failed(handle.job_id, message)
        handle._finish(Failed(handle.job_id, message, reason), JobFailed(message, reason=reason))

    async def _run_music(self, handle: RequestHandle, request: MusicRequest, analysis: dict | None) -> None:
        job_id = handle.job_id
        try:
            continue_from: Track | None = None
            if request.continue_from_track_id:
                continue_from = await self.store.aio.load_track(request.continue_from_track_id)
                if request.keep_seconds is not None:  # a variation: the opening only, the rest anew
                    continue_from = opening_of(continue_from, request.keep_seconds)
            fmt = await self.store.aio.call(self._format_for, handle.requester.user_id)
            spec, extend_seconds, duration = generation_plan(request, continue_from)
            # finished and encoded by the executor: a remote worker sends the file, and this
            # process never spends its CPU on encoding
            finishing = Finishing(format=fmt, duration=duration, loop=request.loop)
            engine_handle = await self.engine.submit(
                JobRequest(
                    user_id=handle.requester.user_id,
                    spec=spec,
                    samples=request.samples,
                    seed=request.seed,
                    guild_id=handle.requester.guild_id,
                    job_id=job_id,
                    continue_from=continue_from,
                    extend_seconds=extend_seconds,
                    finishing=finishing,
                )
            )
        except asyncio.CancelledError:
            await self._cancelled_before_engine(handle)
            return
        except TexTuneSError as exc:  # queue full, backend unavailable, missing parent track
            await self._fail(handle, str(exc), "refused")
            return
        handle._engine_job = True
        async for event in engine_handle.events():
            if event.kind == "queued" and event.position:
                handle._emit(Queued(job_id, event.position))
            elif event.kind == "started":
                handle.state = "running"
                await self.store.aio.mark_running(job_id)
                handle._emit(Started(job_id))
            elif event.kind == "progress" and event.percent is not None:
                handle._emit(Progress(job_id, float(event.percent)))
        try:
            tracks = await engine_handle.result()
        except JobCancelled as exc:
            await self.store.aio.mark_cancelled(job_id)
            handle._finish(Cancelled(job_id), exc)
            return
        except JobFailed as exc:
            if exc.reason == "shutdown":
                # stopping: the job stays queued/running in the store; the next start resumes it
                log.info("job %s interrupted by shutdown; it resumes on the next start", job_id)
                handle._finish(Failed(job_id, str(exc), exc.reason), exc)
                return
            log.warning("job %s failed (%s): %s", job_id, exc.reason, exc.detail)
            await self._fail(handle, str(exc), exc.reason)
            return
        try:
            records = await asyncio.to_thread(self._finish_and_store, job_id, analysis, tracks, finishing)
            await self.store.aio.mark_done(job_id)  # posting, if any, is the front end's
            self.engine.release_result(job_id)
        except Exception:
            log.exception("job %s: finishing or storing the tracks failed", job_id)
            await self._fail(handle, "The track was made but could not be saved; please try again.", "store")
            return
        handle._finish(Done(job_id, records), records)

    def _format_for(self, user_id: str) -> str:
        """The user's ``/settings format`` when they chose one, else the service's default."""
        chosen = self.store.user_settings(user_id).get("format")
        # USER_DEFAULTS fills in a format for everyone; only a different value was chosen by the user
        if chosen and chosen != USER_DEFAULTS.get("format"):
            return str(chosen)
        return self.audio_format

    def _finish_and_store(
        self,
        job_id: str,
        analysis: dict | None,
        tracks: list[Track],
        finishing: Finishing,
    ) -> list[TrackRecord]:
        from engine.audio import finish_and_encode

        fmt = finishing.format
        records = []
        for index, track in enumerate(tracks):
            if track.encoded is None:  # an executor from before finishing moved there: as it was asked
                track = finish_and_encode(track, fmt, duration=finishing.duration, loop=finishing.loop)
            records.append(self.store.add_track(job_id, track, fmt=fmt, index=index, analysis=analysis))
        return records

    # -- what front ends read -------------------------------------------------------------------
    def handle(self, job_id: str) -> RequestHandle | None:
        """The live handle of a request in progress (None once finished)."""
        return self._active.get(job_id)

    def queue_position(self, job_id: str) -> int | None:
        """1-based place in the engine's queue, 0 while generating, None when not in the engine."""
        return self.engine.position(job_id)

    async def job(self, job_id: str) -> JobRecord | None:
        return await self.store.aio.get_job(job_id)

    async def jobs_of(self, user_id: str | int) -> list[JobRecord]:
        return await self.store.aio.jobs_of(user_id)

    async def history(
        self, user_id: str | int, limit: int = 10, *, guild_id: str | int | None = None
    ) -> list[TrackRecord]:
        return await self.store.aio.history(user_id, limit, guild_id=guild_id)

    async def favorites(self, user_id: str | int, limit: int = 100) -> list[TrackRecord]:
        return await self.store.aio.favorites(user_id, limit)

    async def set_favorite(self, user_id: str | int, track_id: str, on: bool = True) -> bool:
        return await self.store.aio.set_favorite(user_id, track_id, on)

    async def track(self, track_id: str) -> TrackRecord | None:
        return await self.store.aio.get_track(track_id)

    async def tracks_of_job(self, job_id: str) -> list[TrackRecord]:
        return await self.store.aio.tracks_of_job(job_id)

    async def track_bytes(self, track_id: str) -> bytes:
        return await self.store.aio.read_track_bytes(track_id)

    async def load_track(self, track_id: str) -> Track:
        return await self.store.aio.load_track(track_id)


# ---------------------------------------------------------------------------------------------
# helpers


def analysis_summary(analysis: Any) -> dict:
    """The parts of an ``Analysis`` shown to users and stored with the job and its tracks."""
    data = analysis.to_dict()
    return {k: data.get(k) for k in ANALYSIS_KEYS}


def _music_request_dict(request: MusicRequest) -> dict:
    extra: dict[str, Any] = {"title": request.title}
    if request.loop:
        extra["loop"] = True
    if request.extend_seconds:
        extra["extend_seconds"] = request.extend_seconds
    if request.continue_from_track_id:
        extra["continue_from_track_id"] = request.continue_from_track_id
    if request.keep_seconds is not None:
        extra["keep_seconds"] = request.keep_seconds
    return spec_to_request(request.spec, samples=request.samples, seed=request.seed, **extra)


def _parse_duration(value: float | str | None) -> float | None:
    if value is None:
        return None
    from engine.prompt import parse_duration

    return parse_duration(value)  # raises a friendly UserInputError when malformed or out of range


def _mmss(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"
