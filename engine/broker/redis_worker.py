"""``textunes worker``: a stateless process that pulls formed batches from Redis and runs them.

Loop: announce readiness (a token on ``ready``), read ONE batch (``XREADGROUP COUNT 1``) or reclaim
a silent worker's batch (``XAUTOCLAIM`` past the visibility timeout), run it on today's device
worker (a child process by default: crash isolation, OOM split), publish progress, write each
job's result the moment it is finished and encoded (the first final result per job wins), then
acknowledge the batch (``_BatchResults``). A busy worker keeps its claim alive; a batch delivered
more than ``max_attempts`` times goes to the ``dead`` stream and its jobs fail with a message.
A cancel published on ``cancels`` stops a running call at once; the ``cancel:<job>`` keys, read when
a batch starts and every ``CANCEL_POLL`` seconds while it runs, cover a message this worker missed.
SIGTERM drains: the current batch finishes, no new one is taken.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from engine import metrics
from engine.broker.base import TERMINAL_OUTCOMES, BatchCallbacks, BatchItem, Outcome, failure, gave_up
from engine.broker.execute import BatchRun, WorkerLost
from engine.broker.local import restart_with_backoff
from engine.broker.redis_broker import ensure_groups, reach, redacted
from engine.broker.wire import (
    REFRESH_CLAIM,
    WORKERS_GROUP,
    Keys,
    WireError,
    decode_batch,
    dumps,
    encode_result,
)
from engine.worker import ProcessWorker, ThreadWorker

log = logging.getLogger("textunes.worker")

CANCEL_POLL = 1.0  # seconds between reads of a running batch's cancel keys (the messages are instant)
# seconds between a batch's progress messages: a decoder reports every whole percent (up to 100 a
# batch, each one a message the front end handles), and the bot edits its message every 2 s at most
PROGRESS_EVERY = 0.5
RECENT_CANCELS = 4096  # cancelled job ids remembered from messages, for a batch that starts just after


@dataclass
class WorkerOptions:
    url: str
    device: str = "auto"
    name: str = ""
    prefix: str = "textunes"
    isolation: str = "process"  # "process": the model in a child (crash isolation); "thread": in here
    max_batch: int = 8
    visibility_timeout: float = 30.0
    max_attempts: int = 3
    result_ttl: float = 900.0
    load_timeout: float = 900.0
    generation_params: dict | None = None


class RemoteWorker:
    def __init__(self, options: WorkerOptions, factory) -> None:
        self.opt = options
        self.name = options.name or f"{socket.gethostname()}-{os.getpid()}"
        self.keys = Keys(options.prefix)
        self.redis = aioredis.Redis.from_url(options.url, decode_responses=False)
        self.factory = factory
        self.device_worker: ThreadWorker | ProcessWorker | None = None
        self.draining = False
        self.stats: dict = {}
        self._token: bytes | None = None
        self._token_frontend: bytes | None = None
        # the batches in hand by stream id: one on the device, and one whose tracks are still
        # being finished while the device makes the next (their claims are kept alive)
        self._in_hand: dict[str, _BatchResults] = {}
        self._handling: set[asyncio.Task] = set()
        self._recent_cancels: OrderedDict[str, None] = OrderedDict()
        self._stopping = False
        self._sends: set[asyncio.Task] = set()
        self._refresh = self.redis.register_script(REFRESH_CLAIM)
        self.batches_done = 0

    @property
    def _result_ttl_ms(self) -> int:
        """How long a result and its claim key stay in Redis."""
        return int(self.opt.result_ttl * 1000)

    @property
    def heartbeat(self) -> float:
        return max(0.1, self.opt.visibility_timeout / 3)

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.drain)
            except (NotImplementedError, RuntimeError):
                pass
        await reach(self.redis, self.opt.url)
        await ensure_groups(self.redis, self.keys)
        self.device_worker = self._make_device_worker()
        await self.device_worker.start()
        info = self.device_worker.info
        self.max_batch = max(1, min(self.opt.max_batch, info.max_batch))
        self.info = {
            "worker": self.name,
            "backend": info.name,
            "model": info.model_id,
            "sample_rate": info.sample_rate,
            "device": self.device_worker.device,
            "max_batch": self.max_batch,
            "pid": os.getpid(),
        }
        await self._beat()
        metrics.WORKERS.set(1)
        log.info("worker %s ready: %s on %s, batch <= %d, broker %s", self.name, info.name,
                 self.device_worker.device, self.max_batch, redacted(self.opt.url))  # fmt: skip
        beat = asyncio.create_task(self._heartbeat_loop())
        listen = asyncio.create_task(self._listen_cancels())
        try:
            await self._serve()
        finally:
            self._stopping = True
            beat.cancel()
            # the listener notices ``_stopping`` within a second; cancelling its read can hang redis-py
            await asyncio.wait([listen], timeout=2.0)
            listen.cancel()
            await asyncio.gather(beat, listen, return_exceptions=True)
            await self._leave()
        log.info("worker %s stopped after %d batches", self.name, self.batches_done)
        return 0

    def _make_device_worker(self):
        if self.opt.isolation == "thread":
            return ThreadWorker(self.opt.device, self.factory, self.opt.generation_params)
        return ProcessWorker(
            self.opt.device, self.factory, self.opt.generation_params, load_timeout=self.opt.load_timeout
        )

    def drain(self) -> None:
        """SIGTERM: finish the batch in hand, take no new one."""
        if not self.draining:
            log.info("worker %s draining: finishing the current batch, taking no new one", self.name)
        self.draining = True
        if self._token is not None:
            self._spawn(self.redis.lrem(self.keys.ready, 0, self._token))

    async def _leave(self) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                if self._token is not None:
                    pipe.lrem(self.keys.ready, 0, self._token)
                pipe.zrem(self.keys.workers, self.name)
                pipe.hdel(self.keys.worker_info, self.name)
                await pipe.execute()
        finally:
            if self.device_worker is not None:
                await self.device_worker.stop()
            await self.redis.aclose()

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    # -- heartbeat and claims ------------------------------------------------------------------

    async def _beat(self) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.worker_info, self.name, dumps(self.info))  # again: a front end may prune it
            pipe.zadd(self.keys.workers, {self.name: time.time()})
            await pipe.execute()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self._beat()
                for entry, results in list(self._in_hand.items()):
                    kept = await self._refresh(
                        keys=[self.keys.batches], args=[WORKERS_GROUP, entry, self.name]
                    )
                    if kept == -1 and self._in_hand.get(entry) is results and results.run is not None:
                        # someone else finished and acknowledged this batch: stop working on it
                        log.warning("batch %s was finished by another worker; aborting ours", entry)
                        results.cancelled.update(i.job_id for i in results.run.items)
                        results.run.abort_if_unwanted()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("heartbeat failed: %s", exc)

    async def _announce(self, pipe, frontend: bytes | None) -> None:
        """Queue on ``pipe`` our readiness token (once; again if a new front end lost it)."""
        if self._token is not None:
            if frontend == self._token_frontend:
                return
            if await self.redis.lrem(self.keys.ready, 0, self._token):
                self._token = None  # still queued: re-push it below so it is fresh
            elif frontend is None:
                return  # no front end now; wait for one
            self._token = None
        token = dict(self.info, nonce=uuid.uuid4().hex[:8], at=time.time())
        self._token = dumps(token)
        self._token_frontend = frontend
        pipe.lpush(self.keys.ready, self._token)

    # -- serving -------------------------------------------------------------------------------

    async def _serve(self) -> None:
        """Take a batch whenever the device is free: the next one runs while the last one's tracks
        are finished and encoded (at most one batch behind, so finishing never falls far back)."""
        try:
            while not self.draining:
                while len(self._handling) > 1:
                    await asyncio.wait(self._handling, return_when=asyncio.FIRST_COMPLETED)
                try:
                    entries, fresh = await self._next_entries()
                except (RedisError, OSError) as exc:
                    log.error("worker %s lost Redis (%s); retrying in 1 s", self.name, exc)
                    await asyncio.sleep(1.0)
                    continue
                for entry_id, fields in entries:
                    device_free = asyncio.Event()
                    task = asyncio.create_task(
                        self._handle_logged(entry_id.decode(), fields, fresh, device_free)
                    )
                    self._handling.add(task)
                    task.add_done_callback(self._handling.discard)
                    await device_free.wait()  # set at the latest when the task ends
        finally:
            if self._handling:  # draining (or stopping): what is in hand is finished first
                await asyncio.wait(self._handling)

    async def _handle_logged(
        self, entry_id: str, fields: dict, fresh: bool, device_free: asyncio.Event
    ) -> None:
        try:
            await self._handle(entry_id, fields, fresh=fresh, device_free=device_free)
        except (RedisError, OSError) as exc:
            # Redis restarting: an unfinished batch stays pending and is reclaimed after the
            # visibility timeout (by us or another worker)
            log.error("worker %s lost Redis during batch %s (%s)", self.name, entry_id, exc)
        except Exception:
            log.exception("worker %s failed on batch %s; it stays pending for a retry", self.name, entry_id)
        finally:
            device_free.set()
            self._in_hand.pop(entry_id, None)

    async def _next_entries(self) -> tuple[list, bool]:
        """A silent worker's batch past the visibility timeout, else one new batch (after saying we
        are ready); and whether it is a first delivery. Two round trips: the reclaim check with the
        front end's name, then our readiness token with the blocking read."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xautoclaim(
                self.keys.batches, WORKERS_GROUP, self.name,
                min_idle_time=int(self.opt.visibility_timeout * 1000), start_id="0-0", count=1,
            )  # fmt: skip
            pipe.get(self.keys.frontend)
            claimed, frontend = await pipe.execute()
        entries = [e for e in claimed[1] if e and e[1]]
        if entries:
            log.warning("worker %s reclaimed batch %s from a silent worker", self.name, entries[0][0])
            return entries, False
        block_ms = int(max(100, min(1000, self.opt.visibility_timeout * 500)))
        async with self.redis.pipeline(transaction=False) as pipe:
            await self._announce(pipe, frontend)
            pipe.xreadgroup(WORKERS_GROUP, self.name, {self.keys.batches: ">"}, count=1, block=block_ms)
            resp = (await pipe.execute())[-1]
        entries = [e for _s, es in resp or [] for e in es if e[1]]
        if entries:
            self._token = None  # our token was used for this batch
        return entries, True

    async def _deliveries(self, entry_id: str) -> int:
        pending = await self.redis.xpending_range(self.keys.batches, WORKERS_GROUP, entry_id, entry_id, 1)
        return int(pending[0]["times_delivered"]) if pending else 0

    async def _handle(
        self, entry_id: str, fields: dict, *, fresh: bool = False, device_free: asyncio.Event | None = None
    ) -> None:
        """Run one batch entry; ``fresh``: first delivery (read with ">"), so no XPENDING round trip;
        ``device_free`` is set once its model calls are over."""
        try:
            head, items = decode_batch(fields)
        except WireError as exc:
            log.error("dead-lettering unreadable batch %s: %s", entry_id, exc)
            await self.redis.xadd(self.keys.dead, {"entry": entry_id, "why": str(exc)[:500]}, maxlen=10000)
            await self.redis.xack(self.keys.batches, WORKERS_GROUP, entry_id)
            await self.redis.xdel(self.keys.batches, entry_id)
            return
        results = _BatchResults(self, entry_id, head)
        self._in_hand[entry_id] = results
        while True:
            deliveries = 1 if fresh else await self._deliveries(entry_id)
            fresh = False
            if deliveries == 0:
                return  # acknowledged elsewhere meanwhile
            if deliveries > self.opt.max_attempts:
                await self._dead_letter(results, items, deliveries - 1)
                return
            # a job whose result went out before our model process died is not made again
            items = [i for i in items if i.job_id not in results.sent]
            if not items:
                await results.finish()
                return
            crashed = await self._run_batch(results, items, device_free)
            if crashed is None:
                return
            # our model process died on this batch: restart it and count that as a delivery
            try:
                await restart_with_backoff(self.device_worker, crashed, stats=self.stats)
            except WorkerLost:
                log.error(
                    "worker %s cannot restart its model; leaving batch %s to others", self.name, entry_id
                )
                self.draining = True
                return
            again = await self.redis.xclaim(self.keys.batches, WORKERS_GROUP, self.name, 0, [entry_id])
            if not again or not again[0][1]:
                return

    async def _run_batch(
        self, results: _BatchResults, items: list[BatchItem], device_free: asyncio.Event | None = None
    ) -> str | None:
        """Run and report one batch (each job's result goes out as soon as it is final); the crash
        reason if our model process died (the batch then stays unacknowledged)."""
        ids = [i.job_id for i in items]
        results.timing["received"] = time.time()
        flags = await self.redis.mget([self.keys.cancel(j) for j in ids])
        results.cancelled = {
            j for j, flag in zip(ids, flags, strict=True) if flag or j in self._recent_cancels
        }

        last_sent = -PROGRESS_EVERY

        def progress(job_ids: list[str], percent: float) -> None:
            nonlocal last_sent
            if time.monotonic() - last_sent < PROGRESS_EVERY:
                return  # losing some is harmless: the next one, or the result, follows
            last_sent = time.monotonic()
            data = json.dumps({"jobs": job_ids, "percent": percent, "worker": self.name})
            self._spawn(self.redis.publish(self.keys.progress, data))

        run = BatchRun(
            self.device_worker,
            items,
            BatchCallbacks(
                progress,
                results.wanted,
                settled=results.add,
                device_free=(lambda _clean: device_free.set()) if device_free is not None else None,
            ),
            stats=self.stats,
        )
        results.run = run
        watcher = asyncio.create_task(self._watch_cancels(ids, results))
        results.started = time.monotonic()
        try:
            outcomes = await run.run()
        finally:
            watcher.cancel()
            results.run = None
        metrics.WORKER_BATCH_SECONDS.observe(time.monotonic() - results.started)
        if run.crashed is not None:
            await results.flush()
            metrics.WORKER_BATCHES.labels("crashed").inc()
            return run.crashed
        for item in items:  # what did not settle early: retries (a lost call) and drops
            results.add(item.job_id, outcomes.get(item.job_id) or Outcome("dropped"))
        await results.finish()
        self.batches_done += 1
        metrics.WORKER_BATCHES.labels("done").inc()
        return None

    async def _add_results(
        self, results: list[tuple[str, Outcome, dict]]
    ) -> list[tuple[str, bool, bool, bytes]]:
        """Write results in one transaction: each final result claims its job (``SET result:<job>
        NX``) and is added to the results stream, so a claim never exists without its entry. Plain
        XADDs: a script call copies its arguments (Redis ``commandstats``: EVAL 407 µs vs XADD 80 µs
        for 156 KB). Returns (job, whether final, whether our claim won, entry id) per result."""
        ttl_ms = self._result_ttl_ms
        oldest = f"{max(0, int(time.time() * 1000) - ttl_ms)}-0"
        written = [(job_id, outcome.kind in TERMINAL_OUTCOMES, self._encoded(job_id, outcome, extra))
                   for job_id, outcome, extra in results]  # fmt: skip
        if not written:
            return []
        async with self.redis.pipeline(transaction=True) as pipe:
            for job_id, final, fields in written:
                if final:
                    pipe.set(self.keys.result(job_id), b"pending", nx=True, px=ttl_ms)
                pipe.xadd(self.keys.results, fields, minid=oldest, approximate=True)
            answers = iter(await pipe.execute())
        return [(job_id, final, bool(next(answers)) if final else True, next(answers))
                for job_id, final, _fields in written]  # fmt: skip

    def _encoded(self, job_id: str, outcome: Outcome, extra: dict) -> dict[str, bytes]:
        """The result's entry; a track that cannot be put on the wire fails its own job, with a
        message, instead of stopping this worker with the batch unacknowledged."""
        try:
            return encode_result(job_id, outcome, extra)
        except Exception as exc:
            log.exception("job %s: its result cannot be encoded; it fails", job_id)
            lost = failure(
                "The track was made but could not be sent back. Please try again.", "wire", repr(exc)
            )
            return encode_result(job_id, lost, extra)

    async def _settle(self, entry_id: str, written: list[tuple[str, bool, bool, bytes]]) -> None:
        """After every result of the batch is written: each won job's key points at its entry
        (adoption finds it there); an entry whose claim was lost — another worker finished the job
        first — is deleted again (a front end that read it meanwhile keeps the first result it saw,
        the winner's, which precedes it); then the batch is acknowledged. A worker that dies before
        this leaves the batch pending: it is reclaimed and its jobs keep their first result."""
        ttl_ms = self._result_ttl_ms
        lost = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id, final, won, entry in written:
                if not final:
                    continue
                if won:
                    pipe.set(self.keys.result(job_id), entry, px=ttl_ms)
                else:
                    pipe.xdel(self.keys.results, entry)
                    lost.append(job_id)
            pipe.xack(self.keys.batches, WORKERS_GROUP, entry_id)
            pipe.xdel(self.keys.batches, entry_id)
            await pipe.execute()
        for job_id in lost:
            log.info("job %s already has a result from another worker; ours is dropped", job_id)

    async def _listen_cancels(self) -> None:
        """Cancels as the front end publishes them: a running call nobody wants stops at once."""
        while not self._stopping:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.keys.cancels)
                while not self._stopping:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        self._on_cancels(msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarting: the keys still reach a running batch
                log.error("cancel subscription failed (%s); subscribing again in 1 s", exc)
                await asyncio.sleep(1.0)
            finally:
                await pubsub.aclose()

    def _on_cancels(self, data: bytes) -> None:
        try:
            job_ids = [str(j) for j in json.loads(data)][:10_000]
        except (ValueError, TypeError):
            return
        for job_id in job_ids:
            self._recent_cancels[job_id] = None
        while len(self._recent_cancels) > RECENT_CANCELS:
            self._recent_cancels.popitem(last=False)
        for results in list(self._in_hand.values()):
            if results.run is not None:
                mine = {i.job_id for i in results.run.items}
                results.cancelled.update(j for j in job_ids if j in mine)
                results.run.abort_if_unwanted()

    async def _watch_cancels(self, ids: list[str], results: _BatchResults) -> None:
        """The cancel keys, checked while the batch runs (a message may have been missed): abort
        the call once nobody wants it."""
        while True:
            await asyncio.sleep(CANCEL_POLL)
            try:
                flags = await self.redis.mget([self.keys.cancel(j) for j in ids])
            except Exception as exc:
                log.error("cancel check failed: %s", exc)
                continue
            results.cancelled.update(j for j, flag in zip(ids, flags, strict=True) if flag)
            if results.run is not None:
                results.run.abort_if_unwanted()

    async def _dead_letter(self, results: _BatchResults, items: list[BatchItem], attempts: int) -> None:
        entry_id = results.entry_id
        log.error("batch %s was tried %d times; it goes to the dead-letter stream", entry_id, attempts)
        record = {
            "entry": entry_id,
            "batch_id": str(results.head.get("batch_id")),
            "jobs": json.dumps([i.job_id for i in items]),
            "attempts": str(attempts),
            "worker": self.name,
            "at": str(time.time()),
        }
        await self.redis.xadd(self.keys.dead, record, maxlen=10000, approximate=True)
        why = f"batch {entry_id} was delivered {attempts + 1} times"
        for item in items:
            results.add(item.job_id, gave_up(attempts, why))
        await results.finish()
        metrics.WORKER_BATCHES.labels("dead").inc()


class _BatchResults:
    """One batch's results on their way out: each is written the moment its job settles, while the
    rest of the batch is still being finished (what is ready meanwhile goes in one transaction);
    ``finish`` writes the rest and acknowledges the batch."""

    def __init__(self, worker: RemoteWorker, entry_id: str, head: dict) -> None:
        self.worker = worker
        self.entry_id = entry_id
        self.head = head
        self.timing: dict = {"sent": head.get("sent_at")}
        self.started = time.monotonic()
        self.sent: set[str] = set()  # jobs whose result is written or on its way
        self.written: list[tuple[str, bool, bool, bytes]] = []
        self._ready: list[tuple[str, Outcome, dict]] = []
        self._writing: asyncio.Task | None = None
        self._failed: Exception | None = None  # a write that failed: the batch must not be acked
        self.run: BatchRun | None = None  # while its batch runs here
        self.cancelled: set[str] = set()  # its jobs cancelled (or finished by another worker)

    def wanted(self, job_id: str) -> bool:
        """False once the job was cancelled (or finished by another worker)."""
        return job_id not in self.cancelled

    def add(self, job_id: str, outcome: Outcome) -> None:
        if job_id in self.sent or outcome.kind == "dropped":
            return
        if not self.wanted(job_id) and outcome.kind != "done":
            return  # nobody waits for it (cancelled, or finished by another worker)
        self.sent.add(job_id)
        timing = dict(self.timing, ran=time.monotonic() - self.started, finished=time.time())
        extra = {"batch_id": self.head.get("batch_id"), "worker": self.worker.name, "timing": timing}
        self._ready.append((job_id, outcome, extra))
        if self._failed is None and (self._writing is None or self._writing.done()):
            self._writing = asyncio.create_task(self._write_ready())

    async def _write_ready(self) -> None:
        try:
            while self._ready:
                batch, self._ready = self._ready, []
                self.written += await self.worker._add_results(batch)
        except Exception as exc:  # Redis went away: raised again by flush, so the batch stays pending
            self._failed = exc

    async def flush(self) -> None:
        """Wait until everything added so far is written; raises what a write raised (the batch
        is then left unacknowledged, to be reclaimed and run again: its first results still win)."""
        while self._writing is not None:
            task = self._writing
            await task
            if self._writing is task:  # else a result came after it ended: wait for that write too
                self._writing = None
        if self._failed is not None:
            raise self._failed

    async def finish(self) -> None:
        await self.flush()
        await self.worker._settle(self.entry_id, self.written)
