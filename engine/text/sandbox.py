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
import logging
import multiprocessing
import multiprocessing.connection
import os
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
    "SandboxLimits",
]

_WARM_UP_TEXTS = (
    "The whole town woke early on the morning of the summer festival. Everyone was happy.",
    "비가 오는 밤, 그는 오래된 편지를 다시 읽었다. 마음이 조용히 가라앉았다.",
)


class AnalysisLimitExceeded(UserInputError):
    """Reading or analysing a document went over the sandbox's time or memory limit."""


class AnalysisTimeout(AnalysisLimitExceeded):
    """The document took longer than ``wall_seconds`` to read and analyse."""


class AnalysisTooLarge(AnalysisLimitExceeded):
    """The document needed more memory than the sandbox allows (or killed the reader)."""


class AnalysisUnavailable(TexTuneSError):
    """The analysis process could not be started (models missing, sandbox closed)."""


@dataclass(frozen=True)
class SandboxLimits:
    # address space the child may map beyond what the loaded analyser maps (see NOTES: the loaded
    # analyser maps ~1.9 GB of virtual memory, ~0.75 GB resident)
    memory_bytes: int = 1_500_000_000
    wall_seconds: float = 30.0  # per request: reading + analysis
    load_seconds: float = 300.0  # loading the models in a fresh child


def _vm_size() -> int:
    """This process's mapped address space in bytes (VmSize)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def _release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back (glibc), so VmSize is what stays mapped."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: the measurement is just a little high
            pass


def _exit_with_parent() -> None:
    """Exit the moment the parent dies: nobody would read our answer (same as the model worker)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="textunes-sandbox-parent-watch", daemon=True).start()


def _read(payload: dict) -> Any:
    """The request's ``Document``: an upload (bytes + name) or pasted text."""
    from engine.text.ingest import document_from_text, read_document

    data, name = payload.pop("data", None), payload.get("filename") or "document.txt"
    if data is not None:
        return read_document(data, name, max_bytes=payload["max_bytes"])
    return document_from_text(payload.get("text") or "")


def _child_main(conn: multiprocessing.connection.Connection, memory_bytes: int) -> None:
    """The sandbox process: load, warm up, cap the address space, then serve requests until EOF."""
    _exit_with_parent()
    try:
        from engine.text.analyzer import default_analyzer

        analyzer = default_analyzer()
        for text in _WARM_UP_TEXTS:  # lazy parts (splitter, thread pools) map their memory now
            analyzer.analyze(text)
        _release_free_memory()  # measure what the models hold, not the warm-up's garbage
        mapped = _vm_size()
        if memory_bytes > 0:
            import resource

            limit = mapped + memory_bytes
            _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        conn.send(("ready", mapped))
    except BaseException as exc:  # report why, then exit
        conn.send(("load_error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            payload = conn.recv()
        except (EOFError, OSError, MemoryError):
            return
        overrides = payload.pop("overrides", {})
        try:
            doc = _read(payload)
            payload.clear()  # drop the upload before the analysis allocates
            analysis = analyzer.analyze_document(doc, **overrides)
            reply: tuple = ("ok", analysis)
        except MemoryError:
            reply = ("memory",)
        except UserInputError as exc:
            reply = ("user_error", type(exc).__name__, str(exc))
        except Exception as exc:  # a reader bug: the parent logs it and tells the user plainly
            reply = ("error", f"{type(exc).__name__}: {exc}"[:500])
        try:
            conn.send(reply)
        except MemoryError:
            return  # the parent sees the child die and reports "too large"
        if reply[0] == "memory":
            return  # a fresh child is cleaner than one that just failed an allocation


class _Child:
    """One spawned sandbox process and its end of the pipe."""

    def __init__(self, ctx: Any, memory_bytes: int) -> None:
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_child_main, args=(child_conn, memory_bytes), name="textunes-analysis", daemon=True
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
        future = self._executor.submit(self._run, payload)
        reply = await asyncio.wrap_future(future)
        return reply

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
            child.conn.send(payload)
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
            raise _user_error(reply[1], reply[2])
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


def _user_error(type_name: str, message: str) -> UserInputError:
    """The reader's own error class when it is one of ingest's, else a plain ``UserInputError``."""
    from engine.text import ingest

    cls = getattr(ingest, type_name, None)
    if isinstance(cls, type) and issubclass(cls, UserInputError):
        try:
            return cls(message)
        except TypeError:
            pass
    return UserInputError(message)
