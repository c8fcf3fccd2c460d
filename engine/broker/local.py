"""The in-process broker (the default): one device worker per device in this process or its children."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import shutil
import subprocess
import sys

from engine import metrics
from engine.broker.base import BatchCallbacks, BatchItem, Outcome
from engine.broker.execute import BatchRun, WorkerLost
from engine.generation.base import MusicBackend
from engine.worker import ProcessWorker, ThreadWorker

log = logging.getLogger("textunes.engine")


def load_configured_backend(
    name: str, model: str | None, dtype: str, options: dict, device: str
) -> MusicBackend:
    from engine.generation import load_backend

    return load_backend(name, model=model, device=device, dtype=dtype, **options)


def backend_factory(config):
    """The (device) -> backend factory an EngineConfig asks for (picklable for process mode)."""
    return config.backend_factory or functools.partial(
        load_configured_backend, config.backend, config.model, config.dtype, dict(config.backend_options)
    )


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


def resolve_devices(config) -> list[str]:
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


def make_device_worker(config, device: str) -> ThreadWorker | ProcessWorker:
    factory = backend_factory(config)
    if config.worker == "process":
        return ProcessWorker(
            device,
            factory,
            config.generation_params,
            load_timeout=config.load_timeout,
            abort_grace=config.abort_grace,
        )
    return ThreadWorker(device, factory, config.generation_params)


async def restart_with_backoff(worker, why: str, *, stats: dict, stopping=lambda: False) -> None:
    """Bring a crashed worker back (three tries, growing pauses) or raise ``WorkerLost``."""
    stats["restarts"] = stats.get("restarts", 0) + 1
    delay = 0.5
    for attempt in range(1, 4):
        if stopping():
            return
        try:
            await worker.restart()
            log.info("worker on %s restarted (attempt %d)", worker.device, attempt)
            return
        except Exception as exc:
            log.error("restarting worker on %s failed: %s", worker.device, exc)
            await asyncio.sleep(delay)
            delay *= 4
    raise WorkerLost(worker.device)


class LocalSlot:
    """One batch's lease of a device worker of this process. The worker goes back to the idle
    ones as soon as the batch's model calls are over, so it makes the next batch while this
    one's tracks are finished and encoded; ``release`` gives it back if that has not happened."""

    def __init__(self, broker: InProcessBroker, worker, index: int) -> None:
        self.broker = broker
        self.worker = worker
        self.index = index
        self.name = f"{worker.device}#{index}"  # unique: several workers may share a device
        self.max_batch = max(1, min(broker.config.max_batch, worker.info.max_batch if worker.info else 8))
        self.lost = False
        self.returned = False
        self._run: BatchRun | None = None

    def give_back(self) -> None:
        """The device is free: hand it out again (once per lease)."""
        if not self.returned:
            self.returned = True
            self.broker.device_free(self)

    async def execute(self, items: list[BatchItem], calls: BatchCallbacks) -> dict[str, Outcome]:
        broker = self.broker

        def free(clean: bool) -> None:
            if calls.device_free is not None:  # the scheduler hears it first: the next batch is formed for it
                calls.device_free(clean)
            self.give_back()

        restart = functools.partial(
            restart_with_backoff, stats=broker.stats, stopping=lambda: broker.stopping
        )
        run = BatchRun(
            self.worker,
            items,
            dataclasses.replace(calls, device_free=free),
            restart=restart,
            stats=broker.stats,
        )
        self._run = run
        try:
            return await run.run()
        except WorkerLost:
            log.error("worker on %s could not be restarted; it stops serving", self.worker.device)
            self.lost = True
            for item in items:
                run.outcomes.setdefault(item.job_id, Outcome("retry", detail="the worker was lost"))
            return run.outcomes
        finally:
            self._run = None

    def unwanted(self, job_ids: list[str]) -> None:
        if self._run is not None:
            self._run.abort_if_unwanted()


class InProcessBroker:
    """Today's executor: device workers owned by this process, handed out while idle."""

    kind = "inprocess"

    def __init__(self, config, stats: dict) -> None:
        self.config = config
        self.stats = stats
        self.workers: list = []
        self._idle: asyncio.Queue[LocalSlot | None] = asyncio.Queue()
        self.stopping = False

    async def start(self) -> None:
        self.workers = [make_device_worker(self.config, d) for d in resolve_devices(self.config)]
        try:
            await asyncio.gather(*(w.start() for w in self.workers))
        except BaseException:
            await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
            self.workers.clear()
            raise
        for index, worker in enumerate(self.workers):
            self._idle.put_nowait(LocalSlot(self, worker, index))  # a fresh lease per batch after this
        metrics.WORKERS.set(len(self.workers))

    def closing(self) -> None:
        """Hand out no more slots and abort running calls (``stop`` follows)."""
        if not self.stopping:
            self.stopping = True
            for worker in self.workers:
                worker.abort()
            self._idle.put_nowait(None)

    async def stop(self) -> None:
        self.closing()
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
        self.workers.clear()

    async def acquire(self) -> LocalSlot | None:
        if self.stopping or not self.workers:
            return None
        return await self._idle.get()

    def release(self, slot: LocalSlot) -> None:
        if slot.lost:
            slot.returned = True
            if slot.worker in self.workers:
                self.workers.remove(slot.worker)
            metrics.WORKERS.set(len(self.workers))
            if not self.workers:
                self._idle.put_nowait(None)  # wake the dispatcher: nothing will ever serve again
            return
        slot.give_back()

    def device_free(self, slot: LocalSlot) -> None:
        if not self.stopping and slot.worker in self.workers:
            self._idle.put_nowait(LocalSlot(self, slot.worker, slot.index))

    def available(self) -> bool:
        return bool(self.workers) and not self.stopping

    async def adopt(self, job_id: str):
        return None  # nothing outlives this process

    def release_result(self, job_id: str) -> None:
        pass  # results live only in the caller's hands

    def describe(self) -> dict:
        info = next((w.info for w in self.workers if w.info is not None), None)
        limit = self.config.max_batch
        for w in self.workers:
            if w.info is not None:
                limit = min(limit, w.info.max_batch)
        return {
            "backend": info.name if info else None,
            "model": info.model_id if info else None,
            "sample_rate": info.sample_rate if info else None,
            "devices": [w.device for w in self.workers],
            "max_batch": max(1, limit),
            "workers": len(self.workers),
            "where": f"{self.config.worker} worker{'s' if len(self.workers) > 1 else ''}",
        }

    def pids(self) -> list[int | None]:
        return [w.pid for w in self.workers]
