"""Device workers for the job engine: the only code that touches a backend.

A worker owns one backend (one model on one device) and runs one call at a time. Two kinds share
one async interface so the scheduler in ``engine.jobs`` does not care which it drives:

* ``ThreadWorker`` keeps the backend in this process and runs each call on a dedicated
  single-thread executor, so the event loop never blocks (torch releases the GIL while it computes).
* ``ProcessWorker`` loads the backend in a child process (``spawn``), talks to it over a pipe and
  notices when the child dies (OOM killer, segfault, ``kill -9``): the call then raises
  ``WorkerCrashed`` and the worker can be restarted. It also keeps torch out of the bot process.

Errors leave a worker classified, never raw: ``OutOfMemory`` (the scheduler splits the batch),
``WorkerCrashed`` (restart + requeue), ``ModelError`` (the batch fails, the worker keeps serving) and
``GenerationCancelled`` (an abort we asked for).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.errors import BackendUnavailable
from engine.generation.base import GenerationCancelled, MusicBackend
from engine.lifeline import exit_with_parent
from engine.spec import MusicSpec, Track

log = logging.getLogger("textunes.engine")

# (device) -> backend. Must be a module-level callable (or functools.partial of one) in process
# mode, because it is pickled into the child.
BackendFactory = Callable[[str], MusicBackend]
# progress(done, total), always called on the event loop's thread
LoopProgress = Callable[[int, int], None]


class OutOfMemory(Exception):
    """The device ran out of memory for this call (the scheduler retries it in smaller pieces)."""


class WorkerCrashed(Exception):
    """The worker died or is unusable (process killed, CUDA context lost); it must be restarted."""


class ModelError(Exception):
    """The backend raised during a call; ``type_name`` and ``detail`` describe the original error."""

    def __init__(self, type_name: str, detail: str) -> None:
        super().__init__(f"{type_name}: {detail}")
        self.type_name = type_name
        self.detail = detail


# Messages of errors after which a CUDA context (and so the worker) cannot be trusted any more.
_FATAL_MARKERS = ("cuda error", "device-side assert", "illegal memory access", "cudnn_status_internal_error")


def classify_error(exc: BaseException) -> str:
    """Sort a backend exception into "oom", "fatal" (restart the worker) or "error"."""
    torch = sys.modules.get("torch")  # never import torch just to classify
    if isinstance(exc, MemoryError):
        return "oom"
    if torch is not None:
        oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
        if oom_type is not None and isinstance(exc, oom_type):
            return "oom"
    text = str(exc).lower()
    if isinstance(exc, RuntimeError) and "out of memory" in text:
        return "oom"
    accel_error = getattr(torch, "AcceleratorError", None) if torch is not None else None
    if accel_error is not None and isinstance(exc, accel_error):
        return "fatal"
    if any(marker in text for marker in _FATAL_MARKERS):
        return "fatal"
    return "error"


def _release_device_memory() -> None:
    """Give cached allocator blocks back after an OOM so the smaller retry has room."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class BackendInfo:
    name: str
    model_id: str
    sample_rate: int
    max_batch: int


def _info(backend: MusicBackend) -> BackendInfo:
    return BackendInfo(
        name=str(backend.name),
        model_id=str(backend.model_id),
        sample_rate=int(backend.sample_rate),
        max_batch=max(1, int(getattr(backend, "max_batch", 8) or 8)),
    )


@dataclass
class Call:
    """One backend invocation: a batched ``generate`` or a single ``generate_continuation``."""

    specs: list[MusicSpec] = field(default_factory=list)
    samples: int = 1
    seed: int | None = None
    continue_from: Track | None = None
    extend_seconds: float = 0.0

    @property
    def tracks_out(self) -> int:
        return 1 if self.continue_from is not None else len(self.specs) * self.samples

    def execute(self, backend: MusicBackend, progress: Callable[[int, int], None]) -> list[Track]:
        if self.continue_from is not None:
            return [backend.generate_continuation(self.continue_from, self.extend_seconds, progress=progress)]
        return list(backend.generate(self.specs, samples=self.samples, seed=self.seed, progress=progress))


class _Throttle:
    """Forward progress only when the whole percent changes (decoders call it every step)."""

    def __init__(self) -> None:
        self.last = -1

    def due(self, done: int, total: int) -> bool:
        pct = int(100 * done / total) if total > 0 else 0
        if pct == self.last and done < total:
            return False
        self.last = pct
        return True


def _run_classified(call: Call, backend: MusicBackend, progress: Callable[[int, int], None]) -> list[Track]:
    """Run a call and translate its failure into the worker's error vocabulary."""
    try:
        return call.execute(backend, progress)
    except GenerationCancelled:
        raise
    except Exception as exc:
        kind = classify_error(exc)
        if kind == "oom":
            _release_device_memory()
            raise OutOfMemory(str(exc) or type(exc).__name__) from exc
        if kind == "fatal":
            raise WorkerCrashed(f"{type(exc).__name__}: {exc}") from exc
        raise ModelError(type(exc).__name__, str(exc)) from exc


class ThreadWorker:
    """The backend lives in this process; calls run on a private single-thread executor."""

    kind = "thread"

    def __init__(self, device: str, factory: BackendFactory, generation_params: dict | None = None) -> None:
        self.device = device
        self._factory = factory
        self._params = dict(generation_params or {})
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._backend: MusicBackend | None = None
        self._abort = threading.Event()
        self._lock = asyncio.Lock()  # one call per device at a time
        self.info: BackendInfo | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return None

    def _load(self) -> BackendInfo:
        backend = self._factory(self.device)
        if self._params:
            backend.set_generation_params(**self._params)
        self._backend = backend
        return _info(backend)

    async def start(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"textunes-worker-{self.device}"
        )
        loop = asyncio.get_running_loop()
        self.info = await loop.run_in_executor(self._executor, self._load)

    async def stop(self) -> None:
        self._abort.set()
        if self._executor is not None:
            # wait=False: a stuck backend call must not hang shutdown
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None
        self._backend = None

    async def restart(self) -> None:
        """Drop the (possibly corrupted) backend and load a fresh one on a fresh thread."""
        self.restarts += 1
        await self.stop()
        _release_device_memory()
        await self.start()

    def abort(self) -> None:
        self._abort.set()

    def kill(self) -> None:
        # A thread cannot be killed; the abort flag is the best we can do.
        self._abort.set()

    async def run(self, call: Call, progress: LoopProgress) -> list[Track]:
        async with self._lock:
            assert self._executor is not None and self._backend is not None, "worker not started"
            loop = asyncio.get_running_loop()
            abort = self._abort
            abort.clear()
            throttle = _Throttle()
            backend = self._backend

            def on_progress(done: int, total: int) -> None:  # runs on the worker thread
                if abort.is_set():
                    raise GenerationCancelled()
                if throttle.due(done, total):
                    loop.call_soon_threadsafe(progress, done, total)

            return await loop.run_in_executor(self._executor, _run_classified, call, backend, on_progress)


# ---------------------------------------------------------------------------------------------
# process worker


def _child_main(conn, factory: BackendFactory, device: str, generation_params: dict) -> None:
    """Entry point of the worker process: load the backend, then serve calls until "stop"."""
    exit_with_parent()
    try:
        backend = factory(device)
        if generation_params:
            backend.set_generation_params(**generation_params)
        conn.send(("ready", _info(backend)))
    except BaseException as exc:  # report why, then exit: the parent raises BackendUnavailable
        conn.send(("load_error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # parent went away
        if msg[0] == "stop":
            return
        if msg[0] != "run":
            continue  # a stale abort for a call that already finished
        _, call_id, call = msg
        state = {"abort": False, "stop": False}
        throttle = _Throttle()

        def on_progress(
            done: int, total: int, call_id: int = call_id, state: dict = state, throttle=throttle
        ) -> None:
            while conn.poll():  # control messages arrive while we compute
                ctl = conn.recv()
                if ctl[0] == "abort" and ctl[1] == call_id:
                    state["abort"] = True
                elif ctl[0] == "stop":
                    state["abort"] = state["stop"] = True
            if state["abort"]:
                raise GenerationCancelled()
            if throttle.due(done, total):
                conn.send(("progress", call_id, done, total))

        try:
            tracks = _run_classified(call, backend, on_progress)
            reply = ("result", call_id, tracks)
        except GenerationCancelled:
            reply = ("cancelled", call_id)
        except OutOfMemory as exc:
            reply = ("oom", call_id, str(exc))
        except WorkerCrashed as exc:
            conn.send(("fatal", call_id, str(exc)))
            return  # exit: the parent restarts a clean process
        except ModelError as exc:
            reply = ("error", call_id, exc.type_name, exc.detail)
        conn.send(reply)
        if state["stop"]:
            return


class ProcessWorker:
    """The backend lives in a spawned child; a dead child is detected and can be restarted."""

    kind = "process"

    def __init__(
        self,
        device: str,
        factory: BackendFactory,
        generation_params: dict | None = None,
        *,
        load_timeout: float = 900.0,
        abort_grace: float = 10.0,
    ) -> None:
        self.device = device
        self._factory = factory
        self._params = dict(generation_params or {})
        self._load_timeout = load_timeout
        self._abort_grace = abort_grace
        self._ctx = multiprocessing.get_context("spawn")
        self._proc = None
        self._conn = None
        self._send_lock = threading.Lock()
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Future | None = None
        self._current: tuple[int, asyncio.Future, LoopProgress] | None = None
        self._ids = itertools.count(1)
        self._dead = True
        self.info: BackendInfo | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_child_main,
            args=(child_conn, self._factory, self.device, self._params),
            name=f"textunes-worker-{self.device}",
            daemon=True,
        )
        # starting a spawn child takes a moment (it pickles the factory): keep the loop free
        await self._loop.run_in_executor(None, proc.start)
        child_conn.close()
        self._proc, self._conn, self._dead = proc, parent_conn, False
        self._ready = self._loop.create_future()
        threading.Thread(
            target=self._reader, args=(proc, parent_conn), name=f"textunes-reader-{self.device}", daemon=True
        ).start()
        try:
            self.info = await asyncio.wait_for(asyncio.shield(self._ready), self._load_timeout)
        except BaseException:
            self.kill()
            raise

    def _reader(self, proc, conn) -> None:
        """Blocking receive loop on its own thread; hands every message to the event loop."""
        loop = self._loop
        while True:
            try:
                ready = multiprocessing.connection.wait([conn, proc.sentinel])
                if conn in ready:
                    msg = conn.recv()
                else:
                    msg = None
            except (EOFError, OSError):
                msg = None
            if msg is None:
                proc.join(timeout=5)
                msg = ("dead", proc.exitcode)
            try:
                loop.call_soon_threadsafe(self._on_message, proc, msg)
            except RuntimeError:  # loop closed: nobody is listening any more
                return
            if msg[0] == "dead":
                conn.close()
                return

    def _on_message(self, proc, msg: tuple) -> None:
        if proc is not self._proc:
            return  # a message from a previous (restarted) child
        kind = msg[0]
        if kind == "ready":
            if not self._ready.done():
                self._ready.set_result(msg[1])
            return
        if kind == "load_error":
            if not self._ready.done():
                self._ready.set_exception(
                    BackendUnavailable(f"The music worker could not load its model: {msg[1]}")
                )
            return
        if kind == "dead":
            self._dead = True
            err = WorkerCrashed(f"worker process for {self.device} exited (code {msg[1]})")
            if not self._ready.done():
                self._ready.set_exception(
                    BackendUnavailable(f"The music worker process exited while loading (code {msg[1]}).")
                )
            if self._current is not None and not self._current[1].done():
                self._current[1].set_exception(err)
            return
        current = self._current
        if current is None or msg[1] != current[0]:
            return  # stale reply for an abandoned call
        call_id, fut, progress = current
        if kind == "progress":
            progress(msg[2], msg[3])
            return
        if fut.done():
            return
        if kind == "result":
            fut.set_result(msg[2])
        elif kind == "cancelled":
            fut.set_exception(GenerationCancelled())
        elif kind == "oom":
            fut.set_exception(OutOfMemory(msg[2]))
        elif kind == "fatal":
            fut.set_exception(WorkerCrashed(msg[2]))
        elif kind == "error":
            fut.set_exception(ModelError(msg[2], msg[3]))

    def _send(self, msg: tuple) -> None:
        with self._send_lock:
            self._conn.send(msg)

    async def run(self, call: Call, progress: LoopProgress) -> list[Track]:
        async with self._lock:
            if self._dead:
                raise WorkerCrashed("worker process is not running")
            call_id = next(self._ids)
            fut = self._loop.create_future()
            # the reply may land after our caller gave up (engine stopping): never warn about it
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._current = (call_id, fut, progress)
            try:
                # a continuation carries audio: send off the loop so a full pipe cannot block it
                await self._loop.run_in_executor(None, self._send, ("run", call_id, call))
            except (BrokenPipeError, EOFError, OSError) as exc:
                if not fut.done():
                    fut.set_exception(WorkerCrashed(f"could not reach the worker process: {exc}"))
            try:
                return await fut
            finally:
                self._current = None

    def abort(self) -> None:
        current = self._current
        if current is None or self._dead:
            return
        call_id, fut, _ = current

        def send_abort() -> None:
            try:
                self._send(("abort", call_id))
            except OSError:
                pass

        self._loop.run_in_executor(None, send_abort)

        async def enforce() -> None:  # a backend that never reports progress cannot see the abort
            await asyncio.sleep(self._abort_grace)
            if self._current is current and not fut.done():
                log.warning(
                    "worker %s ignored an abort for %.0f s; killing it", self.device, self._abort_grace
                )
                self.kill()

        self._loop.create_task(enforce())

    def kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()

    async def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.is_alive():
            try:
                self._send(("stop",))
            except OSError:
                pass
            await self._loop.run_in_executor(None, proc.join, 10)
            if proc.is_alive():
                proc.kill()
                await self._loop.run_in_executor(None, proc.join, 5)
        self._dead = True
        self._proc = None  # the reader thread closes the pipe once it sees the child gone

    async def restart(self) -> None:
        self.restarts += 1
        await self.stop()
        await self.start()
