"""Scale-out through Redis Streams: a real redis-server, ``textunes worker`` processes, the real engine.

Workers run ``tests.sleepy_backend`` (a real MusicBackend that sleeps like a decoder and returns
silence, logging every call with its pid), so kills, stops and reclaims are timed precisely.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.delivery.ledger import DeliveryLedger
from engine.job_types import Finishing, duration_bucket
from engine.jobs import EngineConfig, JobCancelled, JobEngine, JobFailed, JobRequest
from engine.spec import MusicSpec
from engine.store import Store
from tests.redis_server import redis_server  # noqa: F401  (fixture)
from tests.sleepy_backend import read_log

ROOT = Path(__file__).resolve().parents[1]
VISIBILITY = 1.5  # seconds before a silent worker's batch is reclaimed (30 in production)
# a slow file to finish: most of a second of mp3 encoding here, while the device is long free
TEN_MINUTE_MP3 = Finishing(format="mp3", duration=600.0)


def spec(prompt: str, duration: float = 5.0) -> MusicSpec:
    return MusicSpec(prompt=prompt, genres=("Lofi",), moods=("Calm",), duration=duration)


class Cluster:
    """Worker processes of one test, each with its own Redis key prefix and call log."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.prefix = f"t{uuid.uuid4().hex[:8]}"
        self.log = tmp / "calls.jsonl"
        self.procs: dict[str, subprocess.Popen] = {}
        self.redis = aioredis.Redis.from_url(url)

    def start(self, name: str, *, isolation: str = "thread", max_attempts: int = 3, **sleepy) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), SLEEPY_LOG=str(self.log), TEXTUNES_LOG_LEVEL="INFO")
        env.update({f"SLEEPY_{k.upper()}": str(v) for k, v in sleepy.items()})
        cmd = [sys.executable, "-m", "textunes", "worker", "--broker", self.url, "--prefix", self.prefix,
               "--factory", "tests.sleepy_backend:make", "--name", name, "--device", "cpu",
               "--isolation", isolation, "--visibility-timeout", str(VISIBILITY),
               "--max-attempts", str(max_attempts)]  # fmt: skip
        out = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115  (the child owns it)
        self.procs[name] = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def worker_log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    async def ready(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while await self.redis.zcard(f"{self.prefix}:workers") < count:
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"worker {name} exited:\n{self.worker_log(name)}"
            assert time.monotonic() < deadline, "workers did not come up"
            await asyncio.sleep(0.1)

    def engine(self, **config) -> JobEngine:
        config.setdefault("batch_window", 0.05)
        return JobEngine(
            EngineConfig(
                broker_url=self.url, broker_prefix=self.prefix, visibility_timeout=VISIBILITY, **config
            )
        )

    async def owner_of_running_batch(self) -> str:
        pending = await self.redis.xpending_range(f"{self.prefix}:batches", "workers", "-", "+", 10)
        assert len(pending) == 1, pending
        return pending[0]["consumer"].decode()

    async def results_for(self, job_id: str) -> list[dict]:
        entries = await self.redis.xrange(f"{self.prefix}:results")
        metas = [json.loads(fields[b"result"]) for _id, fields in entries]
        return [m for m in metas if m["job_id"] == job_id]

    def calls(self, prompt: str | None = None) -> list[dict]:
        calls = [c for c in read_log(self.log) if c["kind"] == "generate"]
        return [c for c in calls if prompt is None or prompt in c["prompts"]]

    async def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait(10)
        await self.redis.aclose()


@pytest.fixture
async def cluster(redis_server, tmp_path):  # noqa: F811
    c = Cluster(redis_server.url, tmp_path)
    yield c
    await c.close()


async def first(handle, kinds=("progress",)) -> None:
    async for event in handle.events():
        if event.kind in kinds or event.kind in ("done", "failed", "cancelled"):
            return


def deliver(store: Store, job_id: str, tracks) -> bool:
    """The bot's path in miniature: store the tracks, then post only behind its ledger's claim."""
    for n, track in enumerate(tracks):
        store.add_track(job_id, track, fmt="wav", index=n)
    store.mark_done(job_id)
    ledger = DeliveryLedger.open(store)
    if ledger.job(job_id).channel_id is None:  # the bot writes its row before submit; tests may not
        ledger.record(job_id, user_id=store.get_job(job_id).user_id, channel_id=6)
    return ledger.claim_delivery(job_id)


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "store.db")
    yield s
    s.close()


# ---------------------------------------------------------------------------------------------


async def test_four_compatible_jobs_make_one_generate_call_on_a_remote_worker(cluster):
    cluster.start("w1", base=0.4, per_row=0.0)
    await cluster.ready(1)
    async with cluster.engine() as engine:
        blocker = await engine.submit(JobRequest(user_id="z", spec=spec("blocker", 20)))
        await first(blocker)
        handles = [await engine.submit(JobRequest(user_id=f"u{i}", spec=spec(f"p{i}"))) for i in range(4)]
        events = []
        for h in handles:
            events.append([e.kind async for e in h.events()])
        results = [await h.result() for h in [blocker, *handles]]
        assert "sleepy" in engine.describe() and "1 worker" in engine.describe()
    assert [sorted(c["prompts"]) for c in cluster.calls()] == [["blocker"], ["p0", "p1", "p2", "p3"]]
    for n, (tracks, kinds) in enumerate(zip(results[1:], events, strict=True)):
        assert tracks[0].spec.prompt == f"p{n}" and tracks[0].duration == pytest.approx(5.0)
        assert tracks[0].audio[0, 0] == pytest.approx(0.01 * (n + 1), abs=1e-4)  # its own row came back
        assert kinds[0] == "queued" and "started" in kinds and "progress" in kinds and kinds[-1] == "done"
    assert engine.stats["calls"] == 2 and engine.stats["batched_jobs"] == 5


async def test_the_worker_finishes_and_encodes_so_only_the_file_crosses_redis(cluster, store):
    cluster.start("w1", base=0.1, per_row=0.0)
    await cluster.ready(1)
    how = Finishing(format="mp3", duration=4.0)
    async with cluster.engine() as engine:
        handle = await engine.submit(JobRequest(user_id="a", spec=spec("fin"), job_id="fin-1", finishing=how))
        (track,) = await asyncio.wait_for(handle.result(), 60)
    assert track.encoded.format == "mp3" and track.encoded.data[:3] == b"ID3"
    assert track.frames == 4 * 8000 and track.audio.shape[1] == 0  # trimmed to 4 s on the worker
    assert track.meta["finish"]["duration"] == 4.0
    entries = await cluster.redis.xrange(f"{cluster.prefix}:results")
    (fields,) = [f for _id, f in entries if json.loads(f[b"result"])["job_id"] == "fin-1"]
    assert fields[b"audio:0"] == track.encoded.data and len(fields[b"audio:0"]) < 5 * 8000 * 4 / 2

    store.create_job(user_id="a", request={"spec": spec("fin")}, job_id="fin-1")
    assert deliver(store, "fin-1", [track])  # stored as the worker encoded it, never re-encoded
    (record,) = store.tracks_of_job("fin-1")
    assert record.format == "mp3" and record.path.read_bytes() == track.encoded.data
    assert record.frames == 32000 and store.load_track(record.id).audio.shape == (1, 32000)


async def test_a_remote_job_reaches_the_front_end_before_the_rest_of_its_batch_is_encoded(cluster):
    # one call makes both tracks; the worker writes the quick job's result at once instead of
    # after the slow job's two-minute mp3 (about 0.15 s of encoding here)
    cluster.start("w1", base=0.2, per_row=0.0)
    await cluster.ready(1)
    slow_finish = Finishing(format="mp3", duration=120.0, loop=True)
    async with cluster.engine() as engine:
        quick = await engine.submit(JobRequest(user_id="a", spec=spec("quick", 1.0), job_id="quick-1"))
        slow = await engine.submit(
            JobRequest(user_id="b", spec=spec("slow", 1.0), job_id="slow-1", finishing=slow_finish)
        )
        (track,) = await asyncio.wait_for(quick.result(), 60)
        assert track.spec.prompt == "quick" and not slow.done()
        (encoded,) = await asyncio.wait_for(slow.result(), 60)
        timings = {t["job_id"]: t for t in engine._broker.timings}
    assert [sorted(c["prompts"]) for c in cluster.calls()] == [["quick", "slow"]]
    assert encoded.encoded.format == "mp3"
    assert timings["quick-1"]["read_at"] < timings["slow-1"]["finished"]  # read before the other was done
    assert (await cluster.redis.get(f"{cluster.prefix}:result:slow-1")).startswith(
        b"1"
    )  # points at its entry
    assert await cluster.redis.xlen(f"{cluster.prefix}:batches") == 0  # the batch was acknowledged


async def test_a_worker_takes_its_next_batch_while_the_last_ones_tracks_are_encoded(cluster):
    # batches of one: the slow job's ten-minute mp3 (most of a second of encoding here) is made
    # while the device runs the quick job's 0.3-s call, which used to wait for the encoder
    cluster.start("w1", base=0.3, per_row=0.0)
    await cluster.ready(1)
    async with cluster.engine(max_batch=1) as engine:
        slow = await engine.submit(
            JobRequest(user_id="a", spec=spec("slow", 1.0), job_id="slow-2", finishing=TEN_MINUTE_MP3)
        )
        quick = await engine.submit(JobRequest(user_id="b", spec=spec("quick", 1.0), job_id="quick-2"))
        (track,) = await asyncio.wait_for(quick.result(), 60)
        assert track.spec.prompt == "quick" and not slow.done()  # the mp3 is still being encoded
        (encoded,) = await asyncio.wait_for(slow.result(), 60)
        timings = {t["job_id"]: t for t in engine._broker.timings}
    calls = cluster.calls()
    assert [c["prompts"] for c in calls] == [["slow"], ["quick"]]
    assert calls[1]["t"] < timings["slow-2"]["finished"]  # the second call began before the mp3 was done
    assert encoded.encoded.format == "mp3" and encoded.duration == pytest.approx(600.0)
    assert await cluster.redis.xlen(f"{cluster.prefix}:batches") == 0  # both batches were acknowledged


async def test_a_remote_batch_costs_its_devices_time_not_its_encoders(cluster):
    # the worker is ready again once its model calls are over: from then on the scheduler's
    # batch-cost model (tail sharing) stops the clock, though the files (ten minutes of mp3 each,
    # most of a second of encoding here) are still being made; it used to count until the last
    cluster.start("w1", base=0.2, per_row=0.2)
    await cluster.ready(1)
    slow = TEN_MINUTE_MP3
    async with cluster.engine(max_batch=2) as engine:
        one = await engine.submit(JobRequest(user_id="a", spec=spec("one", 1.0), finishing=slow))
        await asyncio.wait_for(one.result(), 60)
        two = [await engine.submit(JobRequest(user_id=u, spec=spec(u, 1.0), finishing=slow)) for u in "bc"]
        deadline = time.monotonic() + 30
        bucket = duration_bucket(1.0)
        while (estimate := engine._sharing.cost.estimate(bucket)) is None:  # a batch of 2 was timed
            assert time.monotonic() < deadline, "the two-track batch was never timed"
            await asyncio.sleep(0.02)
        for handle in two:
            await asyncio.wait_for(handle.result(), 60)
    fixed, per_track = estimate
    # the sleeping device: 0.2 s + 0.2 s per track; encoding would add ~0.8 s per track
    assert per_track < 0.45 and fixed + per_track < 0.7, estimate
    assert [sorted(c["prompts"]) for c in cluster.calls()] == [["one"], ["b", "c"]]


async def test_a_result_stays_in_redis_until_the_service_has_stored_it_then_its_entry_goes(cluster, store):
    # until the track is stored, a restarted front end may still adopt the result from its entry;
    # once stored, nobody reads the entry, and deleting it lets Redis reuse its memory
    from engine.limits import Limits
    from engine.service import MusicRequest, MusicService, Requester

    cluster.start("w1", base=0.1, per_row=0.0)
    await cluster.ready(1)
    async with cluster.engine() as engine:  # read but never stored: the entry stays
        await asyncio.wait_for(
            (await engine.submit(JobRequest(user_id="a", spec=spec("kept"), job_id="kept-1"))).result(), 60
        )
    assert len(await cluster.results_for("kept-1")) == 1

    service = MusicService(store, cluster.engine(), limits=Limits())
    await service.start()
    try:
        handle = await service.submit(Requester("7", "8", "9"), MusicRequest(spec=spec("stored"), seed=3))
        records = await asyncio.wait_for(handle.result(), 60)
        deadline = time.monotonic() + 10
        while await cluster.results_for(handle.job_id):
            assert time.monotonic() < deadline, "the stored result's entry was not deleted"
            await asyncio.sleep(0.05)
    finally:
        await service.close()
    assert store.get_job(handle.job_id).state == "done"
    (record,) = store.tracks_of_job(handle.job_id)
    assert records == [record] and record.path.is_file() and record.format == "mp3"
    assert len(await cluster.results_for("kept-1")) == 1  # only the stored one went
    # the job's claim stays: a late duplicate from a reclaimed batch still loses to it
    assert await cluster.redis.get(f"{cluster.prefix}:result:{handle.job_id}") is not None


async def test_a_worker_never_acks_a_batch_whose_result_write_failed_and_an_unsendable_track_fails_alone(
    redis_server,  # noqa: F811
):
    import numpy as np
    from redis.exceptions import ResponseError

    from engine.broker.base import Outcome
    from engine.broker.redis_broker import ensure_groups
    from engine.broker.redis_worker import RemoteWorker, WorkerOptions, _BatchResults
    from engine.spec import Track

    async def worker_holding_a_batch() -> tuple[RemoteWorker, str]:
        worker = RemoteWorker(WorkerOptions(url=redis_server.url, prefix=f"t{uuid.uuid4().hex[:8]}"), None)
        await ensure_groups(worker.redis, worker.keys)
        entry = (await worker.redis.xadd(worker.keys.batches, {"batch": b"{}"})).decode()
        await worker.redis.xreadgroup("workers", worker.name, {worker.keys.batches: ">"}, count=1)
        return worker, entry

    async def pending(worker: RemoteWorker) -> int:
        return (await worker.redis.xpending(worker.keys.batches, "workers"))["pending"]

    good = Track(np.zeros((1, 800), np.float32), 8000, spec("good"), 0, "sleepy", "silence")
    not_audio = Track(np.array([["x"]], dtype=object), 8000, spec("bad"), 0, "sleepy", "silence")

    # a track that cannot be put on the wire fails its own job with a message; the batch goes on
    worker, entry = await worker_holding_a_batch()
    results = _BatchResults(worker, entry, {"batch_id": "b1", "sent_at": time.time()})
    results.add("bad-1", Outcome("done", tracks=[not_audio]))
    results.add("good-1", Outcome("done", tracks=[good]))
    await results.finish()
    metas = [json.loads(f[b"result"]) for _id, f in await worker.redis.xrange(worker.keys.results)]
    kinds = {m["job_id"]: (m["kind"], m["message"]) for m in metas}
    assert kinds["good-1"][0] == "done" and kinds["bad-1"][0] == "failed"
    assert "could not be sent back" in kinds["bad-1"][1] and await pending(worker) == 0  # acknowledged
    await worker.redis.aclose()

    # a write that fails is raised at the batch's end, even when a later one could succeed: no ack
    worker, entry = await worker_holding_a_batch()
    await worker.redis.set(worker.keys.results, b"not a stream")  # XADD fails (WRONGTYPE)
    results = _BatchResults(worker, entry, {"batch_id": "b2", "sent_at": time.time()})
    results.add("first-1", Outcome("done", tracks=[good]))
    await asyncio.sleep(0.2)  # that write has failed by now
    await worker.redis.delete(worker.keys.results)  # writes would work again
    results.add("second-1", Outcome("done", tracks=[good]))
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await results.finish()
    assert await pending(worker) == 1  # left for a reclaim: it runs again
    await worker.redis.aclose()


async def test_a_damaged_result_fails_its_job_at_once_with_a_message(cluster):
    import numpy as np

    from engine.broker.base import Outcome
    from engine.broker.wire import encode_result
    from engine.spec import Track

    track = Track(np.zeros((1, 800), np.float32), 8000, spec("fine"), 0, "sleepy", "silence")
    async with cluster.engine() as engine:
        broker = engine._broker
        damaged, fine = broker.expect("job-damaged", None), broker.expect("job-fine", None)
        for job_id in ("job-damaged", "job-fine"):
            fields = encode_result(job_id, Outcome("done", tracks=[track]), {})
            if job_id == "job-damaged":
                fields["audio:0"] = fields["audio:0"][:-4]  # cut short on its way
            await cluster.redis.xadd(f"{cluster.prefix}:results", fields)
        await cluster.redis.xadd(f"{cluster.prefix}:results", {"result": b"{not json"})  # names no job
        outcome = await asyncio.wait_for(damaged, 10)  # not the job timeout (600 s)
        assert outcome.kind == "failed" and outcome.reason == "wire"
        assert "sent this track back damaged" in outcome.message and "truncated" in outcome.detail
        assert (await asyncio.wait_for(fine, 10)).kind == "done"  # the reader goes on


async def _round_robin_order(engine: JobEngine) -> None:
    blocker = await engine.submit(JobRequest(user_id="z", spec=spec("blocker")))
    await first(blocker)
    burst = [("alice", 0), ("alice", 1), ("alice", 2), ("bob", 0), ("carol", 0), ("carol", 1), ("bob", 1)]
    handles = [await engine.submit(JobRequest(user_id=u, spec=spec(f"{u} {n}"))) for u, n in burst]
    for h in [blocker, *handles]:
        await h.result()


async def test_round_robin_order_through_redis_matches_the_in_process_engine(cluster, monkeypatch, tmp_path):
    from tests.sleepy_backend import make

    monkeypatch.setenv("SLEEPY_BASE", "0.15")
    monkeypatch.setenv("SLEEPY_PER_ROW", "0")
    monkeypatch.setenv("SLEEPY_LOG", str(tmp_path / "local.jsonl"))
    config = EngineConfig(
        backend_factory=make, max_batch=1, per_user_limit=5, batch_window=0.05, broker_url=""
    )
    async with JobEngine(config) as local:
        await _round_robin_order(local)
    in_process = [c["prompts"][0] for c in read_log(tmp_path / "local.jsonl")]

    cluster.start("w1", base=0.15, per_row=0.0)
    await cluster.ready(1)
    async with cluster.engine(max_batch=1, per_user_limit=5) as engine:
        await _round_robin_order(engine)
    through_redis = [c["prompts"][0] for c in cluster.calls()]
    assert through_redis == in_process
    assert in_process.index("bob 0") < in_process.index("alice 1")  # fair, not first-come


async def test_killed_worker_batch_finishes_on_the_other_stored_and_posted_once(cluster, store):
    cluster.start("w1", base=2.0, per_row=0.0, steps=10)
    cluster.start("w2", base=2.0, per_row=0.0, steps=10)
    await cluster.ready(2)
    async with cluster.engine() as engine:
        handle = await engine.submit(JobRequest(user_id="a", spec=spec("victim"), job_id="victim-1"))
        store.create_job(user_id="a", request={"spec": spec("victim")}, job_id="victim-1")
        DeliveryLedger.open(store).record("victim-1", user_id="a", channel_id=6)  # as the bot does first
        await first(handle)
        owner = await cluster.owner_of_running_batch()
        cluster.procs[owner].kill()  # kill -9 mid-batch
        tracks = await asyncio.wait_for(handle.result(), 30)
        posted = deliver(store, handle.job_id, tracks)
        await asyncio.sleep(0.3)
    calls = cluster.calls("victim")
    assert len(calls) == 2 and calls[0]["pid"] != calls[1]["pid"]  # started on one, finished on the other
    assert posted and not DeliveryLedger.open(store).claim_delivery("victim-1")
    assert len(store.tracks_of_job("victim-1")) == 1
    assert [r["kind"] for r in await cluster.results_for("victim-1")] == ["done"]
    assert await cluster.redis.xlen(f"{cluster.prefix}:dead") == 0


async def test_forty_jobs_from_eight_users_with_cancels_deliver_each_survivor_once(cluster, store):
    cluster.start("w1", base=0.2, per_row=0.01, steps=4)
    cluster.start("w2", base=0.2, per_row=0.01, steps=4)
    await cluster.ready(2)
    cancelled = queued_cancelled = 0
    async with cluster.engine(per_user_limit=5, max_queue=40, max_batch=4) as engine:
        handles = []
        for n in range(40):
            user = f"user{n % 8}"
            h = await engine.submit(JobRequest(user_id=user, spec=spec(f"job {n}"), job_id=f"job-{n}"))
            store.create_job(user_id=user, request={"spec": spec(f"job {n}")}, job_id=h.job_id)
            DeliveryLedger.open(store).record(h.job_id, user_id=user, channel_id=6)  # where it is posted
            handles.append(h)
            if n in (13, 21, 29, 37):  # still queued
                queued_cancelled += await h.cancel()
        for n in (0, 9):  # running by now, unless a loaded machine let its short batch finish first
            await first(handles[n], ("started",))
            cancelled += await handles[n].cancel()
        cancelled += queued_cancelled
        posted = 0
        for h in handles:
            try:
                tracks = await asyncio.wait_for(h.result(), 60)
            except JobCancelled:
                continue
            posted += deliver(store, h.job_id, tracks)
    assert queued_cancelled == 4
    assert cancelled == sum(h.state == "cancelled" for h in handles) >= 4
    assert posted == 40 - cancelled
    rows = [len(store.tracks_of_job(h.job_id)) for h in handles]
    assert sum(rows) == 40 - cancelled and max(rows) == 1
    finals = [m for n in range(40) for m in await cluster.results_for(f"job-{n}") if m["kind"] == "done"]
    assert len(finals) == len({m["job_id"] for m in finals})  # no job got two results


async def test_job_that_always_crashes_its_worker_fails_and_is_dead_lettered(cluster):
    # one batch: the pair runs out of memory and is split; the first half's job is made and its
    # result goes out; the second half kills the model process, every time. The finished job is
    # not made again on the retries, and only the doomed one fails and is dead-lettered.
    cluster.start("w1", isolation="process", max_attempts=2, base=0.1, per_row=0.0)
    await cluster.ready(1)
    async with cluster.engine() as engine:
        kept = await engine.submit(JobRequest(user_id="b", spec=spec("keep me"), job_id="kept-1"))
        doomed = await engine.submit(
            JobRequest(user_id="a", spec=spec("OOM! CRASH! always"), job_id="doomed-1")
        )
        with pytest.raises(JobFailed) as failed:
            await asyncio.wait_for(doomed.result(), 60)
        assert len(await asyncio.wait_for(kept.result(), 5)) == 1
        fine = await engine.submit(JobRequest(user_id="a", spec=spec("after the crashes")))
        assert len(await asyncio.wait_for(fine.result(), 60)) == 1  # the worker keeps serving
    assert failed.value.reason == "worker_lost" and "crashed 2 times" in str(failed.value)
    assert [sorted(c["prompts"]) for c in cluster.calls("keep me")] == [
        ["OOM! CRASH! always", "keep me"],
        ["keep me"],
    ]
    assert len(cluster.calls("OOM! CRASH! always")) == 3  # the pair, then alone twice
    assert [r["kind"] for r in await cluster.results_for("kept-1")] == ["done"]
    dead = await cluster.redis.xrange(f"{cluster.prefix}:dead")
    assert len(dead) == 1 and json.loads(dead[0][1][b"jobs"]) == ["doomed-1"]


async def test_slow_worker_whose_batch_is_reclaimed_keeps_one_result(cluster):
    cluster.start("w1", base=2.0, per_row=0.0, steps=8)
    cluster.start("w2", base=2.0, per_row=0.0, steps=8)
    await cluster.ready(2)
    async with cluster.engine() as engine:
        handle = await engine.submit(JobRequest(user_id="a", spec=spec("slowpoke"), job_id="slow-1"))
        await first(handle)
        owner = await cluster.owner_of_running_batch()
        cluster.procs[owner].send_signal(signal.SIGSTOP)  # stalls past the visibility timeout
        tracks = await asyncio.wait_for(handle.result(), 30)
        cluster.procs[owner].send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 20
        while not any(s in cluster.worker_log(owner) for s in ("finished by another", "ours is dropped")):
            assert time.monotonic() < deadline, cluster.worker_log(owner)
            await asyncio.sleep(0.2)
    assert len(tracks) == 1 and len(cluster.calls("slowpoke")) == 2
    assert [r["kind"] for r in await cluster.results_for("slow-1")] == ["done"]


_FRONT_END = """
import asyncio, sys
sys.path.insert(0, {root!r})
from engine.jobs import EngineConfig, JobEngine, JobRequest
from tests.test_broker import spec

async def main():
    engine = JobEngine(EngineConfig(broker_url={url!r}, broker_prefix={prefix!r}, visibility_timeout=1.5))
    await engine.start()
    handle = await engine.submit(JobRequest(user_id="a", spec=spec("adopt me"), job_id="adopt-1"))
    async for event in handle.events():
        if event.kind == "progress":
            print("running", flush=True)
            await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.parametrize("result_waits", [False, True], ids=["still-running", "result-waiting"])
async def test_front_end_killed_mid_batch_adopts_the_job_with_one_generate(cluster, store, result_waits):
    cluster.start("w1", base=3.0, per_row=0.0, steps=10)
    await cluster.ready(1)
    script = _FRONT_END.format(root=str(ROOT), url=cluster.url, prefix=cluster.prefix)
    front = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE)
    try:
        assert (await asyncio.wait_for(front.stdout.readline(), 60)).strip() == b"running"
        front.kill()  # the bot dies mid-batch
        await front.wait()
    finally:
        if front.returncode is None:
            front.kill()
    store.create_job(user_id="a", request={"spec": spec("adopt me")}, job_id="adopt-1")
    deadline = time.monotonic() + 30
    while result_waits and not await cluster.results_for("adopt-1"):  # finished while no bot ran
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    async with cluster.engine() as engine:  # the restarted bot resubmits its unfinished job
        handle = await engine.submit(JobRequest(user_id="a", spec=spec("adopt me"), job_id="adopt-1"))
        assert handle.state in ("running", "done") and engine.queue_length() == 0
        tracks = await asyncio.wait_for(handle.result(), 30)
        posted = deliver(store, "adopt-1", tracks)
    assert len(cluster.calls("adopt me")) == 1
    assert posted and len(store.tracks_of_job("adopt-1")) == 1


async def test_a_worker_sends_a_batchs_progress_at_most_every_half_second(cluster):
    cluster.start("w1", base=1.6, per_row=0.0, steps=40)  # a decoder's 40 steps, one each 40 ms
    await cluster.ready(1)
    pubsub = cluster.redis.pubsub()
    await pubsub.subscribe(f"{cluster.prefix}:progress")
    async with cluster.engine() as engine:
        handle = await engine.submit(JobRequest(user_id="a", spec=spec("many steps")))
        seen = [e.percent async for e in handle.events() if e.kind == "progress"]
        await handle.result()
    sent = []
    while (msg := await pubsub.get_message(timeout=0.5)) is not None:
        if msg["type"] == "message":
            sent.append(json.loads(msg["data"])["percent"])
    await pubsub.aclose()
    assert 2 <= len(sent) <= 5 and sent == sorted(sent), sent  # 1.6 s / 0.5 s, not 40
    assert seen == sent[: len(seen)] and seen  # what was sent is what the job's followers saw


async def test_sigterm_drains_the_current_batch_and_takes_no_new_one(cluster):
    cluster.start("w1", base=1.5, per_row=0.0, steps=5)
    await cluster.ready(1)
    async with cluster.engine() as engine:
        handle = await engine.submit(JobRequest(user_id="a", spec=spec("last one")))
        await first(handle)
        cluster.procs["w1"].send_signal(signal.SIGTERM)
        assert len(await asyncio.wait_for(handle.result(), 30)) == 1
        assert await asyncio.to_thread(cluster.procs["w1"].wait, 20) == 0
        later = await engine.submit(JobRequest(user_id="b", spec=spec("nobody takes me")))
        await asyncio.sleep(1.0)
        assert later.state == "queued" and await cluster.redis.zcard(f"{cluster.prefix}:workers") == 0
    assert cluster.calls("nobody takes me") == []


async def test_cancel_reaches_a_running_remote_batch(cluster):
    cluster.start("w1", base=5.0, per_row=0.0, steps=50)
    await cluster.ready(1)
    async with cluster.engine() as engine:
        handle = await engine.submit(JobRequest(user_id="a", spec=spec("stop me")))
        await first(handle)
        t0 = time.monotonic()
        assert await handle.cancel()
        after = await engine.submit(JobRequest(user_id="a", spec=spec("next")))
        await first(after, ("started",))
        waited = time.monotonic() - t0
        await after.cancel()
    assert waited < 3.0  # the 5-s call was aborted, not run to the end
    assert [c["kind"] for c in read_log(cluster.log) if "stop me" in c["prompts"]] == [
        "generate",
        "cancelled",
    ]


@pytest.mark.parametrize("path", ["message", "key"])
async def test_either_half_of_a_cancel_alone_stops_a_running_remote_call(cluster, path):
    """The front end sends both a message (instant) and a key (read when a batch starts and every
    second while it runs): a worker that misses one half still stops a call nobody wants."""
    cluster.start("w1", base=30.0, per_row=0.0, steps=300)
    await cluster.ready(1)
    async with cluster.engine() as engine:
        handle = await engine.submit(JobRequest(user_id="a", spec=spec(f"stop me by {path}")))
        await first(handle)
        if path == "message":
            await cluster.redis.publish(f"{cluster.prefix}:cancels", json.dumps([handle.job_id]))
        else:
            await cluster.redis.set(f"{cluster.prefix}:cancel:{handle.job_id}", b"1", ex=60)
        deadline = time.monotonic() + 10.0  # the call would sleep 30 s
        while "cancelled" not in [c["kind"] for c in read_log(cluster.log)]:
            assert time.monotonic() < deadline, "the running call was not stopped"
            await asyncio.sleep(0.05)
        assert handle.state == "running"  # only the worker was told: the front end still waits
        await handle.cancel()
    assert [c["kind"] for c in read_log(cluster.log) if f"stop me by {path}" in c["prompts"]] == [
        "generate",
        "cancelled",
    ]


# ---------------------------------------------------------------------------------------------
# the wire format and the metrics endpoint (no Redis needed)


def test_wire_round_trip_is_exact_and_refuses_entries_that_lie_about_their_size():
    import numpy as np

    from engine.broker.base import BatchItem, Outcome
    from engine.broker.wire import WireError, decode_batch, decode_result, encode_batch, encode_result
    from engine.spec import Track

    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((2, 4000)) * 1.5).astype(np.float32)  # louder than full scale
    track = Track(
        audio, 8000, spec("over the top"), 3, "arranger", "gm", midi=b"MThd...", meta={"gain": np.float32(2)}
    )
    fields = {
        k.encode(): v
        for k, v in encode_result("j1", Outcome("done", tracks=[track]), {"worker": "w"}).items()
    }
    meta, outcome = decode_result(fields)
    (back,) = outcome.tracks
    assert meta["worker"] == "w" and outcome.kind == "done"
    assert np.array_equal(back.audio, audio) and back.midi == b"MThd..." and back.spec == track.spec
    assert back.meta == {"gain": 2.0}

    request = JobRequest(user_id="u", spec=spec("longer"), continue_from=track, extend_seconds=5)
    batch = {k.encode(): v for k, v in encode_batch("b1", [BatchItem("j2", request)]).items()}
    _head, (item,) = decode_batch(batch)
    assert item.job_id == "j2" and np.array_equal(item.request.continue_from.audio, audio)

    head = json.loads(fields[b"result"])
    head["tracks"][0]["frames"] = 8000 * 7200  # claims two hours
    with pytest.raises(WireError):
        decode_result({**fields, b"result": json.dumps(head).encode()})
    with pytest.raises(WireError):
        decode_result({**fields, b"audio:0": fields[b"audio:0"][:-4]})  # truncated
    with pytest.raises(WireError):
        decode_result({b"result": b"{not json"})


def test_wire_carries_a_finished_track_as_its_file_and_a_batch_its_finishing():
    import numpy as np

    from engine.broker.base import BatchItem, Outcome
    from engine.broker.wire import WireError, decode_batch, decode_result, encode_batch, encode_result
    from engine.spec import EncodedAudio, Track

    file = EncodedAudio(b"ID3" + bytes(range(256)) * 40, "mp3", 2, 32000)
    track = Track(np.zeros((2, 32000), np.float32), 8000, spec("done"), 1, "sleepy", "m", encoded=file)
    fields = {k.encode(): v for k, v in encode_result("j1", Outcome("done", tracks=[track]), {}).items()}
    assert fields[b"audio:0"] == file.data  # the file travels, not 256 KB of samples
    (back,) = decode_result(fields)[1].tracks
    assert back.encoded == file and back.audio.shape == (2, 0)
    assert (back.frames, back.channels, back.duration) == (32000, 2, 4.0)

    head = json.loads(fields[b"result"])
    for lie in ({"format": "exe"}, {"frames": 8000 * 7200}):
        bad = dict(head, tracks=[dict(head["tracks"][0], **lie)])
        with pytest.raises(WireError):
            decode_result({**fields, b"result": json.dumps(bad).encode()})

    how = Finishing(format="ogg", duration=12.5, loop=True)
    request = JobRequest(user_id="u", spec=spec("loop me"), finishing=how)
    batch = {k.encode(): v for k, v in encode_batch("b1", [BatchItem("j2", request)]).items()}
    assert decode_batch(batch)[1][0].request.finishing == how
    raw = json.loads(batch[b"batch"])
    raw["jobs"][0]["finishing"]["format"] = "exe"
    with pytest.raises(WireError):
        decode_batch({b"batch": json.dumps(raw).encode()})


async def test_metrics_endpoint_reports_queue_batches_latency_and_workers(monkeypatch, tmp_path):
    import urllib.request

    from tests.redis_server import _free_port
    from tests.sleepy_backend import make

    port = _free_port()
    monkeypatch.setenv("TEXTUNES_METRICS_PORT", str(port))
    monkeypatch.setenv("TEXTUNES_METRICS_ADDR", "127.0.0.1")
    monkeypatch.setenv("SLEEPY_BASE", "0.05")
    config = EngineConfig(backend_factory=make, broker_url="", batch_window=0.05, per_user_limit=5)
    async with JobEngine(config) as engine:
        handles = [await engine.submit(JobRequest(user_id=f"u{i}", spec=spec(f"m{i}"))) for i in range(3)]
        for h in handles:
            await h.result()
        with pytest.raises(JobCancelled):
            doomed = await engine.submit(JobRequest(user_id="x", spec=spec("doomed")))
            await doomed.cancel()
            await doomed.result()
        url = f"http://127.0.0.1:{port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    values = {}
    for line in text.splitlines():
        if line.startswith("textunes_"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    assert values["textunes_workers"] == 1.0 and values["textunes_queue_length"] == 0.0
    assert values["textunes_batch_size_count"] >= 1 and values["textunes_batch_size_sum"] >= 3
    assert values['textunes_job_latency_seconds_count{state="done"}'] >= 3
    assert values['textunes_job_latency_seconds_count{state="cancelled"}'] >= 1


def test_a_worker_refuses_a_visibility_timeout_redis_cannot_reclaim_after(capsys, monkeypatch):
    from textunes.cli import main

    monkeypatch.delenv("TEXTUNES_VISIBILITY_TIMEOUT", raising=False)
    for bad in ("-1", "0", "nan"):  # it used to start and retry XAUTOCLAIM every second, forever
        assert main(["worker", "--broker", "redis://127.0.0.1:9/0", "--visibility-timeout", bad]) == 2
        assert "visibility timeout" in capsys.readouterr().err


def test_a_worker_that_cannot_reach_its_broker_says_so_without_its_password(capsys):
    import socket

    from textunes.cli import main

    with socket.socket() as s:  # a local port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://bot:hunter2secret@127.0.0.1:{port}/0"
    args = ["worker", "--broker", url, "--factory", "tests.sleepy_backend:make", "--isolation", "thread"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"Cannot reach the Redis broker at redis://***@127.0.0.1:{port}/0" in err
    assert "is TEXTUNES_BROKER (or --broker) right?" in err
    assert "hunter2secret" not in err and "unexpected" not in err
