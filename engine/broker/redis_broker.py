"""The Redis broker's front-end side: hand formed batches to ready remote workers, collect results.

Streams and keys (``Keys``): workers push a readiness token on ``ready`` (a list) and keep a
heartbeat in ``workers`` (a sorted set); for each token the scheduler forms one batch and XADDs it
to ``batches`` (consumer group ``workers``); workers XADD one entry per job to ``results``
(consumer group ``frontend``), the first final result per job winning (``result:<job>`` SET NX).
Progress arrives on the ``progress`` channel, cancels go out as ``cancel:<job>`` keys plus a
message. ``inflight`` maps job -> batch so a restarted front end adopts what is still running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from engine import metrics
from engine.broker.base import (
    TERMINAL_OUTCOMES,
    BatchCallbacks,
    BatchItem,
    BatchProgress,
    Outcome,
    Settled,
    Wanted,
    failure,
)
from engine.broker.wire import (
    FRONTEND_GROUP,
    WORKERS_GROUP,
    Keys,
    WireError,
    decode_result,
    encode_batch,
    loads,
)
from engine.errors import BackendUnavailable

log = logging.getLogger("textunes.engine")


async def ensure_groups(r: aioredis.Redis, keys: Keys) -> None:
    for stream, group, start in ((keys.batches, WORKERS_GROUP, "0"), (keys.results, FRONTEND_GROUP, "0")):
        try:
            await r.xgroup_create(stream, group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


async def reach(r: aioredis.Redis, url: str) -> None:
    """Ping the broker; a clear error (its password left out) when it cannot be reached."""
    try:
        await r.ping()
    except Exception as exc:
        raise BackendUnavailable(
            f"Cannot reach the Redis broker at {redacted(url)} ({' '.join(str(exc).split())}). "
            "Is redis-server running there, and is TEXTUNES_BROKER (or --broker) right?"
        ) from exc


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def damaged_result(fields: dict, exc: WireError) -> tuple[dict | None, Outcome]:
    """A result whose job is named but whose tracks cannot be read: that job fails now, with a
    message, rather than waiting out its timeout. (None, …) when not even the job is named."""
    try:
        meta = loads(fields.get(b"result"))
        meta = {"job_id": str(meta["job_id"]), "timing": {}} if isinstance(meta, dict) else None
    except (WireError, KeyError, TypeError):
        meta = None
    message = "The music worker sent this track back damaged, so it was lost. Please try again."
    return meta, failure(message, "wire", str(exc))


class RedisSlot:
    """A remote worker that announced it is ready for one batch."""

    def __init__(self, broker: RedisBroker, token: dict) -> None:
        self.broker = broker
        self.token = token
        self.name = str(token.get("worker", "?"))
        self.max_batch = max(1, min(broker.config.max_batch, int(token.get("max_batch", 1))))
        self.used = False
        self.raw = b""  # the token as popped, to give back if unused

    async def execute(self, items: list[BatchItem], calls: BatchCallbacks) -> dict[str, Outcome]:
        """``calls.device_free`` is called when this worker is ready again while results still
        come (it reads its next batch once its model calls are over)."""
        b = self.broker
        self.used = True
        batch_id = uuid.uuid4().hex[:16]
        futures = {item.job_id: b.expect(item.job_id, calls.progress) for item in items}

        def ready_again() -> None:  # clean: no result so far is anything but a track
            if calls.device_free is not None:
                calls.device_free(all(not f.done() or f.result().kind == "done" for f in futures.values()))

        b._busy[self.name] = ready_again
        fields = encode_batch(batch_id, items)
        try:
            entry_id = (await b.redis.xadd(b.keys.batches, fields)).decode()
            b.stats["calls"] += 1
            b.stats["batched_jobs"] += len(items)
            where = json.dumps({"batch": batch_id, "entry": entry_id})
            await b.redis.hset(b.keys.inflight, mapping={item.job_id: where for item in items})
            return await b.collect(futures, calls.wanted, calls.settled)
        finally:
            if b._busy.get(self.name) is ready_again:
                del b._busy[self.name]
            for job_id, fut in futures.items():
                b.forget(job_id, fut)

    def unwanted(self, job_ids: list[str]) -> None:
        self.broker.send_cancel(job_ids)


class Adoption:
    """A job from before a front-end restart, still on a worker (or with its result waiting)."""

    name = "adopted"

    def __init__(self, broker: RedisBroker, job_id: str, future: asyncio.Future) -> None:
        self.broker = broker
        self.job_id = job_id
        self.future = future

    async def wait(self, wanted: Wanted, progress: BatchProgress) -> Outcome | None:
        self.broker._progress[self.job_id] = progress
        try:
            outcomes = await self.broker.collect({self.job_id: self.future}, wanted)
            return outcomes.get(self.job_id)
        finally:
            self.broker.forget(self.job_id, self.future)

    def unwanted(self, job_ids: list[str]) -> None:
        self.broker.send_cancel(job_ids)


class RedisBroker:
    kind = "redis"

    def __init__(self, config, stats: dict, url: str) -> None:
        self.config = config
        self.stats = stats
        self.url = url
        self.keys = Keys(config.broker_prefix or os.environ.get("TEXTUNES_BROKER_PREFIX") or "textunes")
        self.redis = aioredis.Redis.from_url(url, decode_responses=False, health_check_interval=30)
        self.instance = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._waiting: dict[str, asyncio.Future[Outcome]] = {}
        self._progress: dict[str, BatchProgress] = {}
        self.timings: deque[dict] = deque(maxlen=10_000)  # per result: sent/received/finished/read times
        self._orphans: OrderedDict[str, tuple[float, Outcome]] = OrderedDict()
        # job -> its result's entry, until the caller has stored the outcome (``release_result``)
        self._result_entries: OrderedDict[str, bytes] = OrderedDict()
        self._released: list[bytes] = []  # entries to delete in the next XDEL
        self._workers: dict[str, dict] = {}
        self._tasks: list[asyncio.Task] = []
        self._held: bytes | None = None  # a readiness token popped, not yet turned into a slot
        self._lent: RedisSlot | None = None  # the last slot handed out (given back if unused at stop)
        self._busy: dict[str, Callable[[], None]] = {}  # worker -> its running batch's "ready again"
        self._pending_sends: set[asyncio.Task] = set()
        self.stopping = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await reach(self.redis, self.url)
        await ensure_groups(self.redis, self.keys)
        await self._heartbeat_once()
        await self._drain_unacked_results()
        self._tasks = [
            asyncio.create_task(self._read_results(), name="broker-results"),
            asyncio.create_task(self._read_progress(), name="broker-progress"),
            asyncio.create_task(self._watch_workers(), name="broker-workers"),
        ]

    def closing(self) -> None:
        self.stopping = True

    async def stop(self) -> None:
        self.stopping = True
        # the loops notice ``stopping`` within a second; cancelling a blocking read can hang redis-py
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=3.0)
            for task in stuck:
                task.cancel()
        if self._pending_sends:  # tokens given back, cancels, deletes of read results
            await asyncio.wait(set(self._pending_sends), timeout=2.0)
        try:
            for slot in (self._lent,):
                if slot is not None and not slot.used:  # hand the token back: that worker is still ready
                    await self.redis.rpush(self.keys.ready, slot.raw)
            await self.redis.delete(self.keys.frontend)
        except Exception as exc:
            log.warning("broker stop: %s", exc)
        await self.redis.aclose()

    # -- slots ---------------------------------------------------------------------------------

    async def acquire(self) -> RedisSlot | None:
        while not self.stopping:
            if self._held is None:
                popped = await self.redis.brpop([self.keys.ready], timeout=1)
                if popped is None:
                    continue
                self._held = popped[1]
            try:
                token = json.loads(self._held)
                name = str(token["worker"])
                # alive at the last heartbeat sweep (no round trip), else ask: a worker that just came up
                alive = (
                    time.time() if name in self._workers else await self.redis.zscore(self.keys.workers, name)
                )
            except (ValueError, KeyError, TypeError):
                self._held = None
                continue
            if alive is None or alive < time.time() - 3 * self._heartbeat_seconds():
                log.info("dropping a readiness token of worker %s: it is gone", token.get("worker"))
                self._held = None
                continue
            slot = RedisSlot(self, token)
            slot.raw, self._held, self._lent = self._held, None, slot
            ready_again = self._busy.pop(slot.name, None)
            if ready_again is not None:  # its last batch's calls are over (its files may still come)
                ready_again()
            return slot
        return None

    def release(self, slot: RedisSlot) -> None:
        # a token is used once (the worker announces itself again when it is ready again); an
        # unused one goes back so that worker is not forgotten
        if not slot.used and not self.stopping:
            slot.used = True
            self._spawn(self.redis.rpush(self.keys.ready, slot.raw))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._pending_sends.add(task)
        task.add_done_callback(self._pending_sends.discard)

    def available(self) -> bool:
        return not self.stopping

    def _heartbeat_seconds(self) -> float:
        return max(0.2, self.config.visibility_timeout / 3)

    # -- results -------------------------------------------------------------------------------

    def expect(self, job_id: str, progress: BatchProgress | None) -> asyncio.Future[Outcome]:
        fut = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = fut
        if progress is not None:
            self._progress[job_id] = progress
        orphan = self._orphans.pop(job_id, None)
        if orphan is not None:
            fut.set_result(orphan[1])
        return fut

    def forget(self, job_id: str, fut: asyncio.Future) -> None:
        if self._waiting.get(job_id) is fut:
            del self._waiting[job_id]
            self._progress.pop(job_id, None)

    async def collect(
        self, futures: dict[str, asyncio.Future], wanted: Wanted, settled: Settled | None = None
    ) -> dict[str, Outcome]:
        """Outcomes of ``futures`` as they arrive (each final one handed to ``settled`` at once);
        stop waiting for jobs nobody wants any more."""
        outcomes: dict[str, Outcome] = {}
        pending = dict(futures)
        while pending:
            await asyncio.wait(pending.values(), timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
            for job_id, fut in list(pending.items()):
                if fut.done():
                    outcomes[job_id] = fut.result()
                    del pending[job_id]
                    if settled is not None and outcomes[job_id].kind in TERMINAL_OUTCOMES:
                        settled(job_id, outcomes[job_id])
                elif not wanted(job_id):
                    outcomes[job_id] = Outcome("dropped")
                    del pending[job_id]
        return outcomes

    def _on_result(self, entry_id: bytes, fields: dict, got: float = 0.0) -> str | None:
        """Hand a result to whoever waits for it; its job id (None: unreadable, dropped)."""
        try:
            meta, outcome = decode_result(fields)
        except WireError as exc:
            meta, outcome = damaged_result(fields, exc)
            if meta is None:
                log.error("dropping an unreadable result %s: %s", entry_id, exc)
                return None
            log.error("result %s of job %s is damaged: %s", entry_id, meta["job_id"], exc)
        job_id = str(meta.get("job_id"))
        self.stats["tracks"] += len(outcome.tracks)
        # the entry id's first half is Redis's clock (ms) when it took the result: splits the return leg
        in_redis = int(bytes(entry_id).split(b"-")[0]) / 1000
        self.timings.append(
            dict(meta.get("timing") or {}, job_id=job_id, got=got, in_redis=in_redis, read_at=time.time())
        )
        self._remember_entry(job_id, entry_id)
        fut = self._waiting.get(job_id)
        if fut is not None and not fut.done():
            fut.set_result(outcome)
        elif outcome.kind in TERMINAL_OUTCOMES:
            self._orphans[job_id] = (time.monotonic(), outcome)  # for a resubmit after our restart
            while len(self._orphans) > 1000:
                self._orphans.popitem(last=False)

    def _remember_entry(self, job_id: str, entry_id: bytes) -> None:
        self._result_entries[job_id] = entry_id
        while len(self._result_entries) > 10_000:  # never released (a caller that stores nothing)
            self._result_entries.popitem(last=False)

    def release_result(self, job_id: str) -> None:
        """Delete the job's result entry once its outcome is stored. Until then it stays for
        adoption by a restarted front end (the result key points at it); after that nobody reads
        it, and while it lives Redis must take fresh memory for each new result (README, "Deleting
        stored results": XADD of a 156 KB result 76–610 µs while kept, 21–62 µs once deleted).
        Releases of one moment go in one XDEL."""
        entry = self._result_entries.pop(job_id, None)
        if entry is None:
            return
        self._released.append(entry)
        if len(self._released) == 1:
            self._spawn(self._delete_released())

    async def _delete_released(self) -> None:
        await asyncio.sleep(0)  # the releases of this moment join in
        entries, self._released = self._released, []
        try:
            await self.redis.xdel(self.keys.results, *entries)
        except Exception as exc:  # Redis restarting: the TTL trim removes them later
            log.warning("could not delete %d read results: %s", len(entries), exc)

    def _handle_entries(self, entries) -> tuple[list, list[str]]:
        """Hand each result to whoever waits for it; the entry ids to ack and the jobs now done."""
        done_jobs = []
        got = time.time()  # the reply arrived (timings: how long decoding took after it)
        for entry_id, fields in entries:
            if not fields:
                continue  # deleted meanwhile
            job_id = self._on_result(entry_id, fields, got)
            if job_id is not None:
                done_jobs.append(job_id)
        return [e[0] for e in entries], done_jobs

    def _queue_acks(self, pipe, acks: list, done_jobs: list[str]) -> None:
        if acks:
            pipe.xack(self.keys.results, FRONTEND_GROUP, *acks)
        if done_jobs:
            pipe.hdel(self.keys.inflight, *done_jobs)

    async def _ack(self, acks: list, done_jobs: list[str]) -> None:
        if acks or done_jobs:
            async with self.redis.pipeline(transaction=False) as pipe:
                self._queue_acks(pipe, acks, done_jobs)
                await pipe.execute()

    async def _drain_unacked_results(self) -> None:
        """Results a previous front end read but never acknowledged: take them over first."""
        cursor = "0-0"
        while True:
            cursor, entries, *_ = await self.redis.xautoclaim(
                self.keys.results, FRONTEND_GROUP, self.instance, min_idle_time=0, start_id=cursor, count=100
            )
            await self._ack(*self._handle_entries(entries))
            if cursor in (b"0-0", "0-0"):
                return

    async def _read_results(self) -> None:
        """Read results as workers write them. The acks of what was just handled travel in the
        same round trip as the next blocking read: one hop per reply, not two."""
        acks: list = []
        done_jobs: list[str] = []
        while not self.stopping:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    self._queue_acks(pipe, acks, done_jobs)
                    pipe.xreadgroup(
                        FRONTEND_GROUP, self.instance, {self.keys.results: ">"}, count=32, block=1000
                    )
                    replies = await pipe.execute()
                acks, done_jobs = [], []
                for _stream, entries in replies[-1] or []:
                    more_acks, more_done = self._handle_entries(entries)
                    acks += more_acks
                    done_jobs += more_done
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarting: keep trying, the entries wait for us
                log.error("reading results from Redis failed: %s", exc)
                await asyncio.sleep(1.0)
        try:
            await self._ack(acks, done_jobs)
        except Exception as exc:  # unacked results are drained by the next front end
            log.warning("could not acknowledge the last results: %s", exc)

    async def _read_progress(self) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(self.keys.progress)
        try:
            while not self.stopping:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is None or msg.get("type") != "message":
                    continue
                try:
                    data = json.loads(msg["data"])
                    percent = float(data["percent"])
                    jobs = [str(j) for j in data["jobs"]]
                except (ValueError, KeyError, TypeError):
                    continue
                for job_id in jobs:
                    callback = self._progress.get(job_id)
                    if callback is not None:
                        callback([job_id], percent)
        finally:
            await pubsub.aclose()

    # -- workers -------------------------------------------------------------------------------

    async def _heartbeat_once(self) -> None:
        now = time.time()
        ttl = 3 * self._heartbeat_seconds()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.frontend, self.instance, px=int(ttl * 1000))
            pipe.zremrangebyscore(self.keys.workers, "-inf", now - ttl)
            pipe.hgetall(self.keys.worker_info)
            pipe.zrange(self.keys.workers, 0, -1)
            _, _, info, alive = await pipe.execute()
        names = {n.decode() for n in alive}
        gone = [name for name in info if name.decode() not in names]
        if gone:  # killed workers never said goodbye
            await self.redis.hdel(self.keys.worker_info, *gone)
        self._workers = {}
        for name, raw in info.items():
            if name.decode() in names:
                try:
                    self._workers[name.decode()] = json.loads(raw)
                except ValueError:
                    continue
        metrics.WORKERS.set(len(self._workers))
        cutoff = time.monotonic() - self.config.result_ttl
        while self._orphans and next(iter(self._orphans.values()))[0] < cutoff:
            self._orphans.popitem(last=False)

    async def _watch_workers(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self._heartbeat_seconds())
            try:
                await self._heartbeat_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("broker heartbeat failed: %s", exc)

    # -- cancel and adoption -------------------------------------------------------------------

    def send_cancel(self, job_ids: list[str]) -> None:
        async def send() -> None:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for job_id in job_ids:
                        pipe.set(self.keys.cancel(job_id), b"1", ex=3600)
                    pipe.publish(self.keys.cancels, json.dumps(job_ids))
                    await pipe.execute()
            except Exception as exc:
                log.error("could not send a cancel to the workers: %s", exc)

        self._spawn(send())

    async def adopt(self, job_id: str) -> Adoption | None:
        fut = self.expect(job_id, None)
        if fut.done():
            return Adoption(self, job_id, fut)
        try:
            entry = await self.redis.get(self.keys.result(job_id))
            if entry and entry != b"pending":
                found = await self.redis.xrange(self.keys.results, entry, entry)
                if found:
                    _meta, outcome = decode_result(found[0][1])
                    self._remember_entry(job_id, found[0][0])
                    if not fut.done():
                        fut.set_result(outcome)
                    return Adoption(self, job_id, fut)
            raw = await self.redis.hget(self.keys.inflight, job_id)
            if raw is not None:
                entry_id = json.loads(raw)["entry"]
                if await self.redis.xrange(self.keys.batches, entry_id, entry_id):
                    return Adoption(self, job_id, fut)
        except (WireError, ValueError, KeyError) as exc:
            log.warning("cannot adopt job %s (%s); it runs again", job_id, exc)
        self.forget(job_id, fut)
        return None

    # -- info ----------------------------------------------------------------------------------

    def describe(self) -> dict:
        infos = list(self._workers.values())
        first = infos[0] if infos else {}
        return {
            "backend": first.get("backend"),
            "model": first.get("model"),
            "sample_rate": first.get("sample_rate"),
            "devices": [f"{name}@{i.get('device')}" for name, i in sorted(self._workers.items())],
            "max_batch": max((int(i.get("max_batch", 1)) for i in infos), default=self.config.max_batch),
            "workers": len(infos),
            "where": f"Redis broker {redacted(self.url)} with {len(infos)} worker{'s' if len(infos) != 1 else ''}",
        }

    def pids(self) -> list[int | None]:
        return []
