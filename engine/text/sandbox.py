"""Document reading and analysis in a child process with an address-space cap and a wall-clock limit.

A hostile or merely huge upload must not freeze or exhaust the process that serves everyone else, so
``AnalysisSandbox`` keeps one spawned child (never forked: the caller has threads) that loads the
analyser once and then, one request at a time, reads the document (``engine.text.ingest``) and
analyses it. After the models load (and one warm-up analysis) the child caps its own address space
(``RLIMIT_AS``) at what it then maps plus ``SandboxLimits.memory_bytes``. The parent waits for each
answer on a dedicated thread, never on the event loop, and kills the child when a request runs past
``wall_seconds``; a child that dies, runs out of memory or is killed fails only that request
(``AnalysisTimeout`` / ``AnalysisTooLarge``, both ``UserInputError``) and a fresh child starts at once
for the next one. The child exits when its parent dies (it watches the parent's sentinel).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import threading
import time
from dataclasses import dataclass
from typing import Any

from engine.errors import TexTuneSError, UserInputError

log = logging.getLogger("textunes.sandbox")

__all__ = [
    "AnalysisLimitExceeded",
    "AnalysisSandbox",
    "AnalysisTimeout",
    "AnalysisTooLarge",
    "AnalysisUnavailable",
    "DocumentRejected",
    "SandboxLimits",
]


class AnalysisLimitExceeded(UserInputError):
    """Reading or analysing a document went over the sandbox's time or memory limit."""


class AnalysisTimeout(AnalysisLimitExceeded):
    """The document took longer than ``wall_seconds`` to read and analyse."""


class AnalysisTooLarge(AnalysisLimitExceeded):
    """The document needed more memory than the sandbox allows (or killed the reader)."""


class DocumentRejected(UserInputError):
    """The reader refused the document (empty, not text, unsupported, damaged): ``str`` says why,
    ``kind`` names the reader's error class (``EmptyDocument``, ``NotText``, ...)."""

    def __init__(self, message: str, kind: str = "UserInputError") -> None:
        super().__init__(message)
        self.kind = kind


class AnalysisUnavailable(TexTuneSError):
    """The analysis process could not be started (models missing, sandbox closed)."""


@dataclass(frozen=True)
class SandboxLimits:
    # address space the child may map beyond what the loaded analyser maps (measured with
    # bench/sandbox.py: ~2.0 GB mapped, ~0.74 GB resident once loaded)
    memory_bytes: int = 1_500_000_000
    wall_seconds: float = 30.0  # per request: reading + analysis
    load_seconds: float = 300.0  # loading the models in a fresh child


CHILD_MODULE = "engine.text.sandbox_child"


def _start_child(module: str, conn: Any, memory_bytes: int) -> None:
    """The spawned process's entry: import the child side by name (the parent never imports the
    document readers or the models) and serve."""
    importlib.import_module(module).child_main(conn, memory_bytes)


class _Child:
    """One spawned sandbox process and its end of the pipe."""

    def __init__(self, ctx: Any, memory_bytes: int) -> None:
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_start_child,
            args=(CHILD_MODULE, child_conn, memory_bytes),
            name="textunes-analysis",
            daemon=True,
        )
        self.proc.start()
        child_conn.close()
        self.ready = False
        self.mapped = 0

    def wait_ready(self, timeout: float) -> None:
        if self.ready:
            return
        if not self.conn.poll(timeout):
            raise AnalysisUnavailable(f"the analysis process did not load within {timeout:.0f} s")
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            raise AnalysisUnavailable("the analysis process died while loading its models") from None
        if msg[0] != "ready":
            raise AnalysisUnavailable(f"the analysis process could not load its models: {msg[1]}")
        self.ready, self.mapped = True, int(msg[1])

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class AnalysisSandbox:
    """Reads and analyses documents in a child process, one request at a time, within ``limits``."""

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self._ctx = multiprocessing.get_context("spawn")
        # one thread owns the child: requests queue here (serialised), and waiting never blocks a loop
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._child: _Child | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.restarts = 0

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Spawn the child and wait (off the loop) until its models are loaded."""
        if self._closed:
            raise AnalysisUnavailable("the analysis sandbox is closed")
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="textunes-sandbox")
        await asyncio.wrap_future(self._executor.submit(self._ensure_child))

    async def close(self) -> None:
        self._closed = True
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            await asyncio.to_thread(child.kill)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.proc.pid if child is not None else None

    @property
    def mapped_bytes(self) -> int:
        """What the loaded child mapped before its cap (the cap is this + ``memory_bytes``)."""
        child = self._child
        return child.mapped if child is not None else 0

    # -- requests -------------------------------------------------------------------------------
    async def analyze(
        self,
        data: bytes | None = None,
        filename: str | None = None,
        *,
        text: str | None = None,
        max_bytes: int = 2_000_000,
        **overrides: Any,
    ) -> Any:
        """Read ``data`` (an upload named ``filename``) or ``text`` (pasted) and analyse it; returns an
        ``engine.text.analyzer.Analysis``. ``overrides``: tempo, duration, keywords, instruments.

        Raises the reader's ``UserInputError`` (empty, unsupported, ...), ``AnalysisTimeout`` /
        ``AnalysisTooLarge`` past the limits, ``AnalysisUnavailable`` when no child can start.
        """
        if self._closed:
            raise AnalysisUnavailable("the analysis sandbox is closed")
        if data is None and text is None:
            raise UserInputError("Attach a document or paste some text to score.")
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="textunes-sandbox")
        payload = {
            "data": data,
            "filename": filename,
            "text": text,
            "max_bytes": int(max_bytes),
            "overrides": dict(overrides),
        }
        # a caller that gives up (cancelled) before the child gets to its request takes it out of
        # the queue: wrap_future passes the cancellation on to the pending executor future
        return await asyncio.wrap_future(self._executor.submit(self._run, payload))

    # -- the sandbox thread -----------------------------------------------------------------------
    def _ensure_child(self) -> _Child:
        with self._lock:
            if self._closed:
                raise AnalysisUnavailable("the analysis sandbox is closed")
            if self._child is None or not self._child.proc.is_alive():
                if self._child is not None:
                    self._child.kill()
                    self.restarts += 1
                self._child = _Child(self._ctx, self.limits.memory_bytes)
            child = self._child
        try:
            child.wait_ready(self.limits.load_seconds)
        except AnalysisUnavailable:
            self._discard(child)
            raise
        return child

    def _discard(self, child: _Child) -> None:
        """Kill ``child`` and start its replacement loading now, so the next request waits less."""
        child.kill()
        with self._lock:
            if self._child is child and not self._closed:
                self.restarts += 1
                self._child = _Child(self._ctx, self.limits.memory_bytes)

    def _run(self, payload: dict) -> Any:
        child = self._ensure_child()
        wall = self.limits.wall_seconds
        mb = self.limits.memory_bytes / 1_000_000
        started = time.monotonic()
        try:
            data = payload.pop("data", None)
            child.conn.send({**payload, "has_data": data is not None})
            if data is not None:
                # raw bytes: no pickled copy of the upload, and the write releases the GIL
                child.conn.send_bytes(data)
        except (OSError, ValueError):
            self._discard(child)
            raise AnalysisTooLarge(self._too_large_text(mb)) from None
        if not child.conn.poll(wall):
            log.warning("analysis ran past %.0f s; killing the analysis process %s", wall, child.proc.pid)
            self._discard(child)
            raise AnalysisTimeout(
                f"This document is too large or complex to read within {wall:g} s. "
                "Send a shorter part (one chapter is plenty) or paste the text."
            )
        try:
            reply = child.conn.recv()
        except (EOFError, OSError):
            code = child.proc.exitcode if not child.proc.is_alive() else None
            log.warning(
                "the analysis process died on a document (exit code %s) after %.1f s",
                code,
                time.monotonic() - started,
            )
            self._discard(child)
            raise AnalysisTooLarge(self._too_large_text(mb)) from None
        kind = reply[0]
        if kind == "ok":
            return reply[1]
        if kind == "memory":
            self._discard(child)  # it exits by itself; the replacement starts loading now
            raise AnalysisTooLarge(self._too_large_text(mb))
        if kind == "user_error":
            raise DocumentRejected(reply[2], kind=reply[1])
        log.warning("document analysis failed: %s", reply[1])
        raise UserInputError(
            "I couldn't read that document. Try another format (.txt works best) or paste the text."
        )

    @staticmethod
    def _too_large_text(mb: float) -> str:
        return (
            f"This document is too large or complex to read within {mb:.0f} MB of memory. "
            "Send a shorter part (one chapter is plenty) or paste the text."
        )
