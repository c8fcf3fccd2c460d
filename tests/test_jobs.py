"""The job engine: batching, fairness, cancellation, limits, faults (OOM, crashes, kills), timeouts,
and an event loop that keeps ticking while the model works.

Faults are injected by ``FaultyBackend``, a thin wrapper around a real backend (the offline
arranger) that records each call, paces it like a decoder (progress steps
with a short sleep each) and raises the fault a test asks for. The engine itself is never mocked.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.errors import UserInputError
from engine.generation.base import GenerationCancelled
from engine.job_types import Finishing
from engine.jobs import (
    EngineConfig,
    JobCancelled,
    JobEngine,
    JobFailed,
    JobRequest,
    QueueFull,
    UserLimitReached,
    duration_bucket,
)
from engine.spec import MusicSpec


def real_backend():
    """The fast real backend for engine tests: the offline arranger."""
    from engine.generation.arranger import ArrangerBackend

    return ArrangerBackend()


class FaultPlan:
    """What a FaultyBackend should do; shared with the test (thread mode) to count calls."""

    def __init__(
        self, *, steps=4, step_delay=0.0, oom_above=None, fatal_times=0, error_times=0, sleep_no_progress=0.0
    ):
        self.steps = steps
        self.step_delay = step_delay
        self.oom_above = oom_above  # raise an out-of-memory error for calls with more tracks than this
        self.fatal_times = fatal_times  # raise a CUDA-style fatal error this many times
        self.error_times = error_times  # raise a plain model error this many times
        self.sleep_no_progress = sleep_no_progress  # block this long without reporting progress
        self.calls: list[list[MusicSpec]] = []  # specs of every generate call, in order
        self.cancelled = 0
        self.loads = 0
        self.continuations = 0
        self.lock = threading.Lock()


class FaultyBackend:
    def __init__(self, inner, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan
        self.name = inner.name
        self.model_id = inner.model_id
        self.sample_rate = inner.sample_rate
        self.max_batch = 8

    def set_generation_params(self, **params) -> None:
        self.inner.set_generation_params(**params)

    def _pace(self, progress) -> None:
        plan = self.plan
        try:
            for step in range(plan.steps):
                time.sleep(plan.step_delay)
                if progress is not None:
                    progress(step + 1, plan.steps)
        except GenerationCancelled:
            with plan.lock:
                plan.cancelled += 1
            raise

    def generate(self, specs, *, samples=1, seed=None, progress=None):
        plan = self.plan
        with plan.lock:
            plan.calls.append(list(specs))
            fatal = plan.fatal_times > 0
            plan.fatal_times -= fatal
            error = plan.error_times > 0 and not fatal
            plan.error_times -= error
        if plan.oom_above is not None and len(specs) * samples > plan.oom_above:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if plan.sleep_no_progress:
            time.sleep(plan.sleep_no_progress)
        self._pace(progress)
        if fatal:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if error:
            raise ValueError("decoder produced NaN logits")
        return self.inner.generate(specs, samples=samples, seed=seed, progress=None)

    def generate_continuation(self, track, seconds, *, progress=None):
        with self.plan.lock:
            self.plan.continuations += 1
        self._pace(progress)
        return self.inner.generate_continuation(track, seconds, progress=None)


def make_faulty(plan: FaultPlan):
    def factory(device: str):
        with plan.lock:
            plan.loads += 1
        return FaultyBackend(real_backend(), plan)

    return factory


def make_faulty_for_process(device: str, *, steps: int, step_delay: float):
    """Picklable factory for process-mode workers (the child builds its own plan)."""
    return FaultyBackend(real_backend(), FaultPlan(steps=steps, step_delay=step_delay))


def spec(prompt: str = "calm lofi piano", duration: float = 5.0) -> MusicSpec:
    return MusicSpec(
        prompt=prompt, genres=("Lofi",), moods=("Calm",), instruments=("Piano",), duration=duration
    )


async def started(handle) -> None:
    """Wait until the job is running and its call has begun."""
    async for event in handle.events():
        if event.kind in ("progress", "done", "failed", "cancelled"):
            return


def engine_with(plan: FaultPlan, **config) -> JobEngine:
    config.setdefault("batch_window", 0.02)
    return JobEngine(EngineConfig(backend_factory=make_faulty(plan), **config))


# ---------------------------------------------------------------------------------------------


async def test_two_queued_requests_run_as_one_batched_call():
    plan = FaultPlan()
    async with engine_with(plan) as engine:
        a = await engine.submit(JobRequest(user_id="alice", spec=spec("calm lofi piano")))
        b = await engine.submit(JobRequest(user_id="bob", spec=spec("upbeat rock guitar")))
        tracks_a, tracks_b = await a.result(), await b.result()
    assert [len(call) for call in plan.calls] == [2]
    assert len(tracks_a) == 1 and len(tracks_b) == 1
    assert tracks_a[0].spec.prompt == "calm lofi piano"
    assert tracks_b[0].spec.prompt == "upbeat rock guitar"
    assert engine.stats["calls"] == 1 and engine.stats["batched_jobs"] == 2


async def test_batch_respects_max_batch_samples_and_duration_buckets():
    plan = FaultPlan(steps=2, step_delay=0.05)
    async with engine_with(plan, max_batch=4, per_user_limit=10) as engine:
        blocker = await engine.submit(JobRequest(user_id="z", spec=spec("blocker", 5)))
        await started(blocker)
        handles = [await engine.submit(JobRequest(user_id="u", spec=spec(f"five {i}"))) for i in range(5)]
        handles.append(await engine.submit(JobRequest(user_id="v", spec=spec("long one", 20))))
        handles.append(await engine.submit(JobRequest(user_id="w", spec=spec("two samples"), samples=2)))
        handles.append(await engine.submit(JobRequest(user_id="w", spec=spec("fixed seed"), seed=7)))
        results = [await h.result() for h in handles]
    sizes = sorted(len(c) for c in plan.calls[1:])
    # five 5-s requests fill one call of 4 and leave one; the 60-s, the samples=2 and the
    # fixed-seed requests each go alone (different bucket / samples / reproducibility)
    assert sizes == [1, 1, 1, 1, 4]
    assert all(max(s.duration for s in c) <= duration_bucket(min(s.duration for s in c)) for c in plan.calls)
    assert len(results[6]) == 2 and all(len(r) == 1 for i, r in enumerate(results) if i != 6)
    assert any(len(c) == 1 and c[0].prompt == "fixed seed" for c in plan.calls)


async def test_round_robin_fairness_between_users():
    plan = FaultPlan(steps=2, step_delay=0.03)
    async with engine_with(plan, max_batch=1, per_user_limit=5) as engine:
        a = [await engine.submit(JobRequest(user_id="alice", spec=spec(f"alice {i}"))) for i in range(3)]
        b = await engine.submit(JobRequest(user_id="bob", spec=spec("bob 0")))
        # alice 0 may already run; bob must be next in line, not behind alice's whole burst
        assert b.position <= 2
        assert a[2].position > b.position
        for h in [*a, b]:
            await h.result()
    order = [call[0].prompt for call in plan.calls]
    assert order.index("bob 0") < order.index("alice 2")
    assert order.index("bob 0") <= 1


async def test_events_report_queue_position_progress_and_done():
    plan = FaultPlan(steps=5, step_delay=0.02)
    async with engine_with(plan, max_batch=1) as engine:
        first = await engine.submit(JobRequest(user_id="a", spec=spec("first")))
        second = await engine.submit(JobRequest(user_id="b", spec=spec("second")))
        events = [ev async for ev in second.events()]
        await first.result()
    kinds = [ev.kind for ev in events]
    assert kinds[0] == "queued" and kinds[-1] == "done"
    assert events[0].position in (1, 2)
    assert kinds.index("started") < kinds.index("progress")
    percents = [ev.percent for ev in events if ev.kind == "progress"]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert second.position == 0 and engine.position(second.job_id) is None


async def test_places_that_change_together_reach_each_waiting_job_as_one_event():
    plan = FaultPlan(steps=4, step_delay=0.25)
    async with engine_with(plan, max_batch=1, max_queue=40, per_user_limit=1) as engine:
        running = await engine.submit(JobRequest(user_id="r", spec=spec("running")))
        await started(running)
        waiting = [await engine.submit(JobRequest(user_id=f"u{n}", spec=spec(f"w{n}"))) for n in range(20)]
        last, places = waiting[-1], []

        async def follow() -> None:
            async for event in last.events():
                places.append(event.position if event.kind == "queued" else event.kind)

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0)
        assert places == [20]  # its place at once
        for handle in waiting[:5]:  # five cancels in a row: each moves everyone behind
            assert await engine.cancel(handle.job_id)
        await asyncio.sleep(0.3)  # the publication interval and more
        assert places == [20, 15] and last.position == 15  # not 19, 18, 17, 16, 15
        for handle in [running, *waiting]:
            await handle.cancel()
        await follower
        assert places[-1] == "cancelled"


async def test_cancel_queued_job_never_reaches_the_model():
    plan = FaultPlan(steps=4, step_delay=0.05)
    async with engine_with(plan, max_batch=1) as engine:
        running = await engine.submit(JobRequest(user_id="a", spec=spec("running")))
        await started(running)
        queued = await engine.submit(JobRequest(user_id="b", spec=spec("doomed")))
        assert queued.position == 1
        assert not await engine.cancel(queued.job_id, user_id="someone else")  # only the owner
        assert await engine.cancel(queued.job_id, user_id="b")
        with pytest.raises(JobCancelled):
            await queued.result()
        assert engine.queue_length() == 0 and engine.jobs_of("b") == []
        await running.result()
    assert all(s.prompt != "doomed" for call in plan.calls for s in call)
    assert [ev.kind async for ev in queued.events()][-1] == "cancelled"


async def test_cancel_running_job_alone_aborts_the_call():
    plan = FaultPlan(steps=200, step_delay=0.02)  # 4 s if not aborted
    async with engine_with(plan) as engine:
        handle = await engine.submit(JobRequest(user_id="a", spec=spec()))
        await started(handle)
        t0 = time.monotonic()
        assert await handle.cancel()
        with pytest.raises(JobCancelled):
            await handle.result()
        # the device is free again quickly: a new job runs to completion
        plan.steps = 2
        after = await engine.submit(JobRequest(user_id="a", spec=spec("after")))
        assert len(await after.result()) == 1
        assert time.monotonic() - t0 < 2.0
    assert plan.cancelled == 1


async def test_cancel_running_job_in_a_batch_drops_only_its_track():
    plan = FaultPlan(steps=10, step_delay=0.02)
    async with engine_with(plan) as engine:
        a = await engine.submit(JobRequest(user_id="a", spec=spec("keep")))
        b = await engine.submit(JobRequest(user_id="b", spec=spec("drop")))
        await started(b)
        assert await b.cancel()
        tracks = await a.result()
        with pytest.raises(JobCancelled):
            await b.result()
    assert [len(c) for c in plan.calls] == [2] and plan.cancelled == 0
    assert tracks[0].spec.prompt == "keep"


async def test_queue_full_and_user_limit_are_friendly_user_errors():
    plan = FaultPlan(steps=50, step_delay=0.02)
    async with engine_with(plan, max_queue=2, per_user_limit=2, max_batch=1) as engine:
        busy = await engine.submit(JobRequest(user_id="u0", spec=spec()))
        await started(busy)
        await engine.submit(JobRequest(user_id="u1", spec=spec()))
        await engine.submit(JobRequest(user_id="u1", spec=spec()))
        with pytest.raises(UserLimitReached) as limit:
            await engine.submit(JobRequest(user_id="u1", spec=spec()))
        with pytest.raises(QueueFull) as full:
            await engine.submit(JobRequest(user_id="u2", spec=spec()))
        with pytest.raises(UserInputError, match="Samples must be between 1 and 8"):
            await engine.submit(JobRequest(user_id="u3", spec=spec(), samples=9))
        await engine.stop()
    assert isinstance(full.value, UserInputError) and isinstance(limit.value, UserInputError)
    assert str(full.value) == "The queue is full (2 jobs). Try again in a few minutes."
    assert "You already have 2 music requests in progress" in str(limit.value)


async def test_out_of_memory_splits_the_batch_in_halves():
    plan = FaultPlan(oom_above=2)
    async with engine_with(plan, per_user_limit=4) as engine:
        handles = [await engine.submit(JobRequest(user_id=f"u{i}", spec=spec(f"p{i}"))) for i in range(4)]
        results = [await h.result() for h in handles]
    assert [len(c) for c in plan.calls] == [4, 2, 2]
    assert [r[0].spec.prompt for r in results] == ["p0", "p1", "p2", "p3"]
    assert engine.stats["oom_splits"] == 1


async def test_out_of_memory_fails_only_the_job_that_cannot_fit():
    plan = FaultPlan(oom_above=2)
    async with engine_with(plan) as engine:
        big = await engine.submit(JobRequest(user_id="a", spec=spec("big"), samples=3))
        small = await engine.submit(JobRequest(user_id="b", spec=spec("small")))
        with pytest.raises(JobFailed) as failed:
            await big.result()
        assert len(await small.result()) == 1
    assert failed.value.reason == "oom"
    assert "too big for the music device's memory" in str(failed.value)
    assert "fewer samples" in str(failed.value)


async def test_model_error_fails_the_batch_and_engine_keeps_serving():
    plan = FaultPlan(error_times=1)
    async with engine_with(plan) as engine:
        doomed = await engine.submit(JobRequest(user_id="a", spec=spec()))
        with pytest.raises(JobFailed) as failed:
            await doomed.result()
        fine = await engine.submit(JobRequest(user_id="a", spec=spec()))
        assert len(await fine.result()) == 1
    assert failed.value.reason == "crash" and "NaN" in failed.value.detail
    assert "not your input" in str(failed.value)


async def test_fatal_worker_error_restarts_worker_and_requeues_job():
    plan = FaultPlan(steps=2, fatal_times=1)
    async with engine_with(plan) as engine:
        handle = await engine.submit(JobRequest(user_id="a", spec=spec()))
        tracks = await handle.result()
    assert len(tracks) == 1
    assert handle.attempts == 2 and plan.loads == 2  # a fresh backend served the retry
    assert engine.stats["restarts"] == 1 and engine.stats["requeued"] == 1


async def test_worker_that_keeps_crashing_gives_up_after_max_attempts():
    plan = FaultPlan(steps=1, fatal_times=99)
    async with engine_with(plan, max_attempts=2) as engine:
        handle = await engine.submit(JobRequest(user_id="a", spec=spec()))
        with pytest.raises(JobFailed) as failed:
            await handle.result()
    assert failed.value.reason == "worker_lost" and handle.attempts == 2
    assert "crashed 2 times" in str(failed.value)


async def test_job_timeout_fails_the_job_and_frees_the_device():
    plan = FaultPlan(steps=400, step_delay=0.02)  # 8 s if never stopped
    async with engine_with(plan, job_timeout=1.5) as engine:
        slow = await engine.submit(JobRequest(user_id="a", spec=spec()))
        with pytest.raises(JobFailed) as failed:
            await slow.result()
        plan.steps = 1
        engine.config.job_timeout = 60.0  # the next job must not depend on this machine's speed
        quick = await engine.submit(JobRequest(user_id="a", spec=spec()))
        assert len(await quick.result()) == 1
    assert failed.value.reason == "timeout" and "longer than 1.5 s" in str(failed.value)
    assert plan.cancelled == 1  # the timed-out call was aborted, not left running


async def test_continuation_uses_generate_continuation():
    plan = FaultPlan(steps=1)
    async with engine_with(plan) as engine:
        first = (await (await engine.submit(JobRequest(user_id="a", spec=spec()))).result())[0]
        longer = await engine.submit(
            JobRequest(user_id="a", spec=spec(), continue_from=first, extend_seconds=5)
        )
        (extended,) = await longer.result()
    assert plan.continuations == 1 and len(plan.calls) == 1
    assert extended.duration == pytest.approx(first.duration + 5, abs=0.5)


async def test_event_loop_keeps_ticking_while_generating():
    plan = FaultPlan(steps=1, sleep_no_progress=0.6)  # the model call blocks its thread for 0.6 s
    async with engine_with(plan) as engine:
        ticks = 0
        worst = 0.0

        async def ticker(stop: asyncio.Event) -> None:
            nonlocal ticks, worst
            while not stop.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                worst = max(worst, time.perf_counter() - t - 0.01)
                ticks += 1

        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        handle = await engine.submit(JobRequest(user_id="a", spec=spec()))
        await handle.result()
        stop.set()
        await task
    # a loop blocked by the model would tick about once; ~60 ticks when it runs freely
    assert ticks >= 20, f"event loop starved: {ticks} ticks in a 0.6 s generation (worst lag {worst:.3f} s)"


async def test_one_worker_per_device_serves_jobs_in_parallel():
    plan = FaultPlan(steps=30, step_delay=0.03)
    async with engine_with(plan, devices=["cpu:0", "cpu:1"], max_batch=1) as engine:
        assert engine.devices == ["cpu:0", "cpu:1"] and plan.loads == 2
        a = await engine.submit(JobRequest(user_id="a", spec=spec("a")))
        b = await engine.submit(JobRequest(user_id="b", spec=spec("b")))
        await started(a)
        await started(b)
        # both run at once, one per device, instead of b waiting in the queue behind a
        assert engine.job_state(a.job_id) == engine.job_state(b.job_id) == "running"
        await a.result(), await b.result()
    assert sorted(len(c) for c in plan.calls) == [1, 1]


def sleepy_engine(log: Path, **config) -> JobEngine:
    """Thread workers on the sleeping backend (0.1 s + 0.1 s per track, silence): cheap timing."""
    from tests.sleepy_backend import SleepyBackend

    def factory(device: str) -> SleepyBackend:
        return SleepyBackend(0.1, 0.1, 2, str(log), 8)

    return JobEngine(EngineConfig(backend_factory=factory, per_user_limit=5, batch_window=0.05, **config))


async def lone_job_then_burst(engine: JobEngine, log: Path) -> list[set[str]]:
    """One job alone (so the engine has seen two batch sizes), then twelve at once; each call's prompts."""
    from tests.sleepy_backend import read_log

    await (await engine.submit(JobRequest(user_id="solo", spec=spec("solo", 1.0)))).result()
    handles = [
        await engine.submit(JobRequest(user_id=f"u{i % 3}", spec=spec(f"p{i}", 1.0))) for i in range(12)
    ]
    results = [await h.result() for h in handles]
    assert [r[0].spec.prompt for r in results] == [f"p{i}" for i in range(12)]
    return [set(line["prompts"]) for line in read_log(log)][1:]


async def test_the_end_of_a_burst_is_shared_by_executors_in_lockstep(tmp_path):
    # two devices run a full batch each, started together; of the four jobs left, the first to
    # finish takes its share (two) and leaves two for its peer, instead of all four while it idles
    async with sleepy_engine(tmp_path / "calls", devices=["cpu", "cpu"], max_batch=4) as engine:
        calls = await lone_job_then_burst(engine, tmp_path / "calls")
    assert sorted(len(c) for c in calls) == [2, 2, 4, 4]
    # fair order is untouched: the first round holds the first eight jobs in round-robin order
    full = {frozenset(c) for c in calls if len(c) == 4}
    assert full == {frozenset({"p0", "p1", "p2", "p3"}), frozenset({"p4", "p5", "p6", "p7"})}
    assert set().union(*[c for c in calls if len(c) == 2]) == {"p8", "p9", "p10", "p11"}


async def test_one_executor_still_takes_full_batches_to_the_end(tmp_path):
    async with sleepy_engine(tmp_path / "calls", devices=["cpu"], max_batch=4) as engine:
        calls = await lone_job_then_burst(engine, tmp_path / "calls")
    assert [len(c) for c in calls] == [4, 4, 4]


async def test_stop_fails_pending_jobs_visibly():
    plan = FaultPlan(steps=100, step_delay=0.02)
    engine = engine_with(plan, max_batch=1)
    await engine.start()
    running = await engine.submit(JobRequest(user_id="a", spec=spec()))
    queued = await engine.submit(JobRequest(user_id="b", spec=spec()))
    await started(running)
    await engine.stop()
    for handle in (running, queued):
        with pytest.raises(JobFailed) as failed:
            await handle.result()
        assert failed.value.reason == "shutdown"


# ---------------------------------------------------------------------------------------------
# process mode: the model lives in a child process that can be killed


async def test_process_worker_killed_mid_job_is_restarted_and_job_requeued():
    factory = functools.partial(make_faulty_for_process, steps=20, step_delay=0.05)
    config = EngineConfig(backend_factory=factory, worker="process", batch_window=0.02, per_user_limit=4)
    async with JobEngine(config) as engine:
        (pid,) = engine.worker_pids()
        victim = await engine.submit(JobRequest(user_id="a", spec=spec("victim")))
        other = await engine.submit(JobRequest(user_id="b", spec=spec("bystander")))
        await started(victim)
        os.kill(pid, signal.SIGKILL)
        tracks_victim, tracks_other = await victim.result(), await other.result()
        (new_pid,) = engine.worker_pids()
        # the restarted child keeps serving
        again = await engine.submit(JobRequest(user_id="a", spec=spec("after")))
        assert len(await again.result()) == 1
    assert new_pid != pid
    assert tracks_victim[0].spec.prompt == "victim" and tracks_other[0].spec.prompt == "bystander"
    assert victim.attempts == 2 and other.attempts == 2
    assert engine.stats["restarts"] == 1


async def test_process_worker_cancel_aborts_child_call():
    factory = functools.partial(make_faulty_for_process, steps=200, step_delay=0.02)
    config = EngineConfig(backend_factory=factory, worker="process", batch_window=0.0)
    async with JobEngine(config) as engine:
        handle = await engine.submit(JobRequest(user_id="a", spec=spec()))
        await started(handle)
        t0 = time.monotonic()
        await handle.cancel()
        follow = await engine.submit(JobRequest(user_id="a", spec=spec()))
        # the child stops the aborted call at its next step and takes the next job
        async for ev in follow.events():
            if ev.kind == "started":
                break
        assert time.monotonic() - t0 < 2.0
        await engine.cancel(follow.job_id)
        (pid,) = engine.worker_pids()
    assert engine.stats["restarts"] == 0 and pid is not None


def test_arranger_in_process_mode_gets_one_worker_per_core_up_to_four(monkeypatch) -> None:
    from engine.jobs import resolve_devices

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert resolve_devices(EngineConfig(backend="arranger", worker="process")) == ["cpu"] * 4
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert resolve_devices(EngineConfig(backend="arranger", worker="process")) == ["cpu", "cpu"]
    # threads would only take turns on the renderer; explicit devices always win
    assert resolve_devices(EngineConfig(backend="arranger", worker="thread")) == ["auto"]
    assert resolve_devices(EngineConfig(backend="arranger", worker="process", devices="cpu")) == ["cpu"]


_ORPHAN_SCRIPT = """
import asyncio, functools, sys
sys.path.insert(0, {root!r})
from engine.jobs import EngineConfig, JobEngine, JobRequest
from tests.test_jobs import make_faulty_for_process, spec

async def main():
    # one silent 2-minute step: the child cannot notice the dead parent through progress polling
    factory = functools.partial(make_faulty_for_process, steps=1, step_delay=120)
    engine = JobEngine(EngineConfig(backend_factory=factory, worker="process", batch_window=0.0))
    await engine.start()
    handle = await engine.submit(JobRequest(user_id="a", spec=spec()))
    async for event in handle.events():
        if event.kind == "started":
            print(engine.worker_pids()[0], flush=True)
            await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_worker_process_exits_when_its_parent_is_killed(tmp_path):
    import psutil

    root = str(Path(__file__).resolve().parents[1])
    child = None
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _ORPHAN_SCRIPT.format(root=root), stdout=asyncio.subprocess.PIPE, cwd=root
    )
    try:
        line = await asyncio.wait_for(parent.stdout.readline(), 60)
        child = psutil.Process(int(line))  # busy generating when the parent dies
        assert child.is_running()
        t0 = time.monotonic()
        parent.kill()
        await asyncio.to_thread(child.wait, 10)  # raises TimeoutExpired if it lingers
        assert time.monotonic() - t0 < 10
        await parent.wait()
    finally:
        if parent.returncode is None:
            parent.kill()
        if child is not None and child.is_running():  # never leave an orphan behind
            child.kill()


async def test_a_job_ends_when_its_track_is_finished_not_when_its_whole_batch_is(tmp_path):
    # one call makes both tracks; the quick job needs no encoding, the slow one a two-minute mp3
    # (about 0.15 s of encoding here): the quick job's result must not wait for that encoder
    from tests.sleepy_backend import read_log

    slow_finish = Finishing(format="mp3", duration=120.0, loop=True)
    async with sleepy_engine(tmp_path / "calls", devices=["cpu"]) as engine:
        quick = await engine.submit(JobRequest(user_id="a", spec=spec("quick", 1.0)))
        slow = await engine.submit(JobRequest(user_id="b", spec=spec("slow", 1.0), finishing=slow_finish))
        (track,) = await quick.result()
        assert track.spec.prompt == "quick" and not slow.done()  # the batch is still encoding
        (encoded,) = await slow.result()
    assert [set(call["prompts"]) for call in read_log(tmp_path / "calls")] == [{"quick", "slow"}]
    assert encoded.encoded.format == "mp3" and encoded.duration == pytest.approx(120.0)


async def test_tracks_are_encoded_below_the_event_loops_priority(tmp_path):
    # the encoder a finishing thread starts inherits that thread's niceness: on a busy machine the
    # event loop (the bot's gateway, a worker's Redis reads and writes) goes first
    import psutil

    from engine.broker.execute import FINISHING_NICENESS

    me = psutil.Process()
    encoder_niceness: set[int] = set()
    async with sleepy_engine(tmp_path / "calls", devices=["cpu"]) as engine:
        job = await engine.submit(
            JobRequest(user_id="a", spec=spec("long", 1.0), finishing=Finishing(format="mp3", duration=300.0))
        )
        while not job.done():
            for child in me.children(recursive=True):
                try:
                    if "ffmpeg" in child.name():
                        encoder_niceness.add(child.nice())
                except psutil.NoSuchProcess:
                    pass
            await asyncio.sleep(0.005)
        (track,) = await job.result()
    assert track.encoded.format == "mp3"
    assert encoder_niceness == {min(19, me.nice() + FINISHING_NICENESS)}
    # the loop's own thread is untouched
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == me.nice()


async def test_the_device_makes_the_next_batch_while_the_last_ones_tracks_are_encoded(tmp_path):
    # one device, batches of one: the slow job's ten-minute mp3 (most of a second of encoding
    # here) is made beside the quick job's 0.2-s call, which used to wait for the encoder
    from tests.sleepy_backend import read_log

    slow_finish = Finishing(format="mp3", duration=600.0)
    async with sleepy_engine(tmp_path / "calls", devices=["cpu"], max_batch=1) as engine:
        slow = await engine.submit(JobRequest(user_id="a", spec=spec("slow", 1.0), finishing=slow_finish))
        quick = await engine.submit(JobRequest(user_id="b", spec=spec("quick", 1.0)))
        done = await next_to_finish(slow, quick)
        assert done == "quick" and not slow.done()  # the quick job came first, the mp3 is still encoding
        (encoded,) = await slow.result()
    assert [call["prompts"] for call in read_log(tmp_path / "calls")] == [["slow"], ["quick"]]
    assert encoded.encoded.format == "mp3" and encoded.duration == pytest.approx(600.0)


async def next_to_finish(*handles) -> str:
    """The prompt of whichever job finishes first."""
    waits = {asyncio.ensure_future(h.result()): h for h in handles}
    finished, _pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    (track,) = await next(iter(finished))
    return track.spec.prompt
