"""Benchmark: the in-process engine vs the Redis broker with 1, 2 and 4 ``textunes worker`` processes.

    .venv/bin/python bench/broker.py                   # 200 jobs / 20 users, sleeping backend; tiny MusicGen 1 vs 2
    .venv/bin/python bench/broker.py --quick           # 40 jobs, no MusicGen phase (smoke run)
    .venv/bin/python bench/broker.py --format none --sample-rate 8000   # raw float32 results, no encoding

By default every job is finished and encoded on its executor as the service asks (mp3, the
product's default format) from 5 s of mono at 32 kHz (MusicGen's rate): what the product moves.

Sleeping backend (``tests/sleepy_backend.py``, a real MusicBackend): each call sleeps 0.5 s + 0.05 s
per track and returns silence, so worker processes scale even on a 2-core machine and the numbers
isolate what the scheduler and the broker add. Every phase starts a fresh engine, runs two
untimed rounds of one warm-up job per executor (first-call costs: about 10 ms per hop on a worker's first batch
here; see ``warm_up``), then submits all jobs at once (round-robin over users); a redis-server is started on a free
local port for the run.

Columns: jobs/s over the whole burst; mean batch = jobs per generate call; submit→start = queue
wait until the job's batch was handed to an executor; start→done = from then until the job's own
tracks were back, finished and encoded (a job no longer waits for the rest of its batch); broker added = per job, (worker received −
front end sent) + (front end read the result − worker finished it): the time Redis, the wire
format and the reader loops add; loop lag = lateness of a 10 ms ticker on the front end's loop;
CPU ms/job = user + system CPU time used during the burst (Linux /proc) per job by the front end
(this process, with its ticker), by all workers together (with their model processes) and by
redis-server: what a setup costs beyond the model itself.

``BENCH_DEBUG=1`` also prints, per Redis phase: Redis's own µs per XADD/EXEC; the two legs, the
return leg split at Redis's stamp (the result's entry id); and, for the slowest tenth of the
waits from Redis to the front end, how much of each the front end's event loop spent running
rather than waiting in ``select`` (busy with other work, or waiting for a CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.job_types import Finishing  # noqa: E402
from engine.jobs import EngineConfig, JobEngine, JobRequest  # noqa: E402
from engine.sharing import BatchCost  # noqa: E402
from engine.spec import MusicSpec  # noqa: E402

SLEEPY_ENV = {"SLEEPY_RATE": "8000", "SLEEPY_BASE": "0.5", "SLEEPY_PER_ROW": "0.05", "SLEEPY_STEPS": "5"}


class TimedSelector(selectors.DefaultSelector):
    """The front end's selector, noting when its loop waited in ``select`` (BENCH_DEBUG): the rest
    of the time the loop was running callbacks (or the process waited for a CPU)."""

    waits: list[tuple[float, float]] = []

    def select(self, timeout=None):
        start = time.time()
        try:
            return super().select(timeout)
        finally:
            self.waits.append((start, time.time()))


def busy_ms(start: float, end: float) -> float:
    """How long the front end's loop was not waiting in select between two ``time.time()`` stamps."""
    waits = TimedSelector.waits
    i = max(0, bisect.bisect_left(waits, (start,)) - 1)
    idle = 0.0
    while i < len(waits) and waits[i][0] < end:
        idle += max(0.0, min(waits[i][1], end) - max(waits[i][0], start))
        i += 1
    return 1000 * max(0.0, end - start - idle)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


async def ticker(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - t - 0.01)


async def run_burst(engine: JobEngine, jobs: int, users: int, duration: float, finishing=None,
                    watch: dict[str, int] | None = None) -> dict:  # fmt: skip
    lags: list[float] = []
    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(stop, lags))
    watch = dict(watch or {}, front=os.getpid())
    # the front end without its children: the bench starts the workers and redis-server itself
    cpu0 = {name: cpu_seconds(pid, name != "front") for name, pid in watch.items()}
    t0 = time.perf_counter()
    handles = []
    for n in range(jobs):
        spec = MusicSpec(prompt=f"calm lofi piano take {n}", duration=duration)
        request = JobRequest(user_id=f"user{n % users}", spec=spec, finishing=finishing)
        handles.append(await engine.submit(request))

    async def store(handle) -> None:  # as the service does: the stored result's broker copy goes
        await handle.result()
        engine.release_result(handle.job_id)

    await asyncio.gather(*(store(h) for h in handles))
    wall = time.perf_counter() - t0
    cpu = {name: cpu_seconds(pid, name != "front") - cpu0[name] for name, pid in watch.items()}
    stop.set()
    await tick
    waits = [h._job.started_at - h._job.enqueued_at for h in handles]
    runs = [h._job.finished_at - h._job.started_at for h in handles]
    return {
        "wall": wall,
        "jobs_s": jobs / wall,
        "batch": engine.stats["batched_jobs"] / max(1, engine.stats["calls"]),
        "wait50": pct(waits, 50),
        "wait95": pct(waits, 95),
        "run50": pct(runs, 50),
        "run95": pct(runs, 95),
        "lag99": pct(lags, 99) * 1000,
        "lagmax": max(lags) * 1000 if lags else float("nan"),
        # CPU ms per job: the front end, all workers together, redis-server
        "cpu": {
            k: 1000 * sum(v for n, v in cpu.items() if n.startswith(k)) / jobs
            for k in ("front", "w", "redis")
        },
    }


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU time a process (and, with ``children``, its live children: a worker's
    model process) has used so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split() if children else []
    except (OSError, IndexError, ValueError):
        return float("nan")
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(c)) for c in kids)


def finishing_of(args, duration: float) -> Finishing | None:
    """What the service asks of every job (finish to the duration, encode), unless --format none."""
    return None if args.format == "none" else Finishing(format=args.format, duration=duration)


def start_workers(url: str, prefix: str, count: int, extra: list[str], env: dict, logdir: Path) -> list:
    procs = []
    for n in range(count):
        cmd = [sys.executable, "-m", "textunes", "worker", "--broker", url, "--prefix", prefix,
               "--name", f"w{n}", "--device", "cpu", *extra]  # fmt: skip
        out = open(logdir / f"{prefix}-w{n}.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), **env),
                                      stdout=out, stderr=subprocess.STDOUT))  # fmt: skip
    return procs


async def wait_workers(url: str, prefix: str, count: int, procs: list, timeout: float = 600) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while await r.zcard(f"{prefix}:workers") < count:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker exited while starting; see its log")
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not come up")
            await asyncio.sleep(0.2)
    finally:
        await r.aclose()


def stop_workers(procs: list) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


async def warm_up(engine: JobEngine, executors: int, duration: float, args) -> None:
    """Two rounds of one fixed-seed job per executor (each runs alone) before the timed burst:
    first-call costs (lazy imports, Redis compiling a Lua script, the model's first call, four
    encoders' first start on two cores) stay out of the numbers. The scheduler's batch-cost
    model forgets the first round, as those costs would mislead it: the second round shows it
    what a one-track batch costs on a warm executor, as a long-running bot would have seen."""
    for round_ in (0, 1):
        warm = [JobRequest(user_id=f"warm{n}", spec=MusicSpec(prompt="warm up", duration=duration),
                           seed=n + executors * round_, finishing=finishing_of(args, duration))
                for n in range(executors)]  # fmt: skip
        await asyncio.gather(*[(await engine.submit(w)).result() for w in warm])
        if round_ == 0:
            engine._sharing.cost = BatchCost()
    engine.stats.update(calls=0, batched_jobs=0)
    if hasattr(engine._broker, "timings"):
        engine._broker.timings.clear()


async def phase_in_process(args) -> dict:
    from tests.sleepy_backend import make

    os.environ.update(SLEEPY_ENV)
    config = EngineConfig(backend_factory=make, per_user_limit=args.jobs, max_queue=args.jobs, broker_url="")
    async with JobEngine(config) as engine:
        await warm_up(engine, 1, args.seconds, args)
        row = await run_burst(engine, args.jobs, args.users, args.seconds, finishing_of(args, args.seconds))
    row.update(setup="in-process", workers=1, added50=0.0, added95=0.0)
    return row


async def phase_redis(args, url: str, workers: int, *, extra: list[str], env: dict, label: str,
                      jobs: int, users: int, duration: float, logdir: Path, redis_pid: int) -> dict:  # fmt: skip
    prefix = f"bench{time.monotonic_ns() % 10**9}"
    procs = start_workers(url, prefix, workers, extra, env, logdir)
    try:
        await wait_workers(url, prefix, workers, procs)
        config = EngineConfig(broker_url=url, broker_prefix=prefix, per_user_limit=jobs, max_queue=jobs)
        async with JobEngine(config) as engine:
            await warm_up(engine, workers, duration, args)
            watch = {f"w{n}": p.pid for n, p in enumerate(procs)} | {"redis": redis_pid}
            debug = bool(os.environ.get("BENCH_DEBUG"))
            if debug:
                await engine._broker.redis.config_resetstat()
            row = await run_burst(engine, jobs, users, duration, finishing_of(args, duration), watch)
            if debug:  # what Redis itself spent per command during the burst
                stats = await engine._broker.redis.info("commandstats")
                print(f"{label} x{workers}: Redis µs per XADD {stats['cmdstat_xadd']['usec_per_call']:.0f}, "
                      f"per EXEC {stats['cmdstat_exec']['usec_per_call']:.0f}")  # fmt: skip
            timings = [t for t in engine._broker.timings if {"received", "sent", "finished"} <= t.keys()]
            added = [(t["received"] - t["sent"]) + (t["read_at"] - t["finished"]) for t in timings]
            if debug:
                there = [1000 * (t["received"] - t["sent"]) for t in timings]
                back = [1000 * (t["read_at"] - t["finished"]) for t in timings]
                reply = [1000 * (t["got"] - t["finished"]) for t in timings if "got" in t]
                # Redis stamps entry ids in whole ms: each half is ±1 ms
                into = [1000 * (t["in_redis"] - t["finished"]) for t in timings if "in_redis" in t]
                out = [1000 * (t["got"] - t["in_redis"]) for t in timings if "in_redis" in t]
                print(f"{label} x{workers}: dispatch p50/p95 {pct(there, 50):.1f}/{pct(there, 95):.1f} ms, "
                      f"return p50/p95 {pct(back, 50):.1f}/{pct(back, 95):.1f} ms, of which until the "
                      f"reply reached the front end {pct(reply, 50):.1f}/{pct(reply, 95):.1f} ms "
                      f"(worker→Redis {pct(into, 50):.0f}/{pct(into, 95):.0f}, "
                      f"Redis→front end {pct(out, 50):.0f}/{pct(out, 95):.0f})")  # fmt: skip
                # the slowest tenth of Redis→front end waits (from a ms after Redis's stamp, its
                # resolution): how much of each the front end's loop spent running, not in select
                slow = sorted(((t["got"] - t["in_redis"] - 0.001, t) for t in timings if "in_redis" in t),
                              key=lambda pair: pair[0])[-max(1, len(timings) // 10):]  # fmt: skip
                spent = [(1000 * w, busy_ms(t["in_redis"] + 0.001, t["got"])) for w, t in slow if w > 0]
                if spent:
                    print(f"{label} x{workers}: slowest tenth of Redis→front end waits: "
                          f"{sum(w for w, _ in spent) / len(spent):.1f} ms on average, of which the front end's "
                          f"loop was running {sum(b for _, b in spent) / len(spent):.1f} ms")  # fmt: skip
    finally:
        stop_workers(procs)
    row.update(setup=label, workers=workers, added50=pct(added, 50) * 1000, added95=pct(added, 95) * 1000)
    return row


def print_table(rows: list[dict]) -> None:
    head = (f"{'setup':<22} {'workers':>7} {'wall s':>7} {'jobs/s':>7} {'× 1 wkr':>7} {'batch':>6} "
            f"{'start p50/p95 s':>16} {'start→done p50/p95 s':>21} {'broker added p50/p95 ms':>24} "
            f"{'loop lag p99/max ms':>20} {'CPU ms/job front/workers/redis':>31}")  # fmt: skip
    print(head)
    print("-" * len(head))
    base: dict[str, float] = {}
    for r in rows:
        family = r["setup"] if r["setup"].startswith("redis") else "redis sleepy"
        if r["workers"] == 1 and family not in base:
            base[family] = r["jobs_s"]
        speed = r["jobs_s"] / base.get(family, r["jobs_s"])
        print(f"{r['setup']:<22} {r['workers']:>7} {r['wall']:>7.1f} {r['jobs_s']:>7.2f} {speed:>6.2f}× "
              f"{r['batch']:>6.2f} {r['wait50']:>7.2f} / {r['wait95']:>6.2f} {r['run50']:>11.3f} / {r['run95']:>7.3f} "
              f"{r['added50']:>11.1f} / {r['added95']:>9.1f} {r['lag99']:>9.1f} / {r['lagmax']:>7.1f} "
              f"{r['cpu']['front']:>13.2f} / {r['cpu']['w']:>6.2f} / {r['cpu']['redis']:>6.2f}")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--musicgen-jobs", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=5.0, help="track length of the sleeping phases")
    parser.add_argument("--phases", default="inprocess,redis,musicgen", help="which phases to run")
    parser.add_argument("--sample-rate", type=int, default=32000,
                        help="sample rate of the sleeping backend's audio (MusicGen: 32000): the bytes each result moves")  # fmt: skip
    parser.add_argument("--format", default="mp3", choices=("none", "wav", "mp3", "ogg"),
                        help="finish and encode each track on its executor, as the service asks (none: raw float32)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="40 jobs, no MusicGen phase")
    args = parser.parse_args()
    SLEEPY_ENV["SLEEPY_RATE"] = str(args.sample_rate)
    if args.quick:
        args.jobs, args.musicgen_jobs = 40, 0
    from tests.redis_server import RedisServer

    tmp = Path(tempfile.mkdtemp(prefix="bench-broker-"))
    server = RedisServer(tmp)
    kb = args.seconds * args.sample_rate * 4 / 1024
    print(f"redis-server on {server.url}; {args.jobs} jobs from {args.users} users; sleeping backend "
          f"0.5 s + 0.05 s/row, {args.seconds:g} s mono at {args.sample_rate} Hz per job, sent as "
          f"{'float32 (' + format(kb, '.0f') + ' KB)' if args.format == 'none' else 'a finished ' + args.format} "
          f"file; {os.cpu_count()} CPUs; logs in {tmp}\n")  # fmt: skip
    sleepy = ["--factory", "tests.sleepy_backend:make", "--isolation", "thread"]
    phases = set(args.phases.split(","))
    rows = [await phase_in_process(args)] if "inprocess" in phases else []
    try:
        for n in [int(x) for x in args.workers.split(",")] if "redis" in phases else []:
            rows.append(await phase_redis(args, server.url, n, extra=sleepy, env=SLEEPY_ENV, label="redis sleepy",
                                          jobs=args.jobs, users=args.users, duration=args.seconds, logdir=tmp,
                                          redis_pid=server.proc.pid))  # fmt: skip
        if args.musicgen_jobs and "musicgen" in phases:
            from tests.tiny_musicgen import build_tiny_musicgen

            model = build_tiny_musicgen(tmp / "tiny-musicgen")
            mg = ["--backend", "musicgen", "--model", str(model), "--threads", "1", "--dtype", "float32"]
            for n in (1, 2):
                rows.append(await phase_redis(args, server.url, n, extra=mg, env={}, label="redis tiny-musicgen",
                                              jobs=args.musicgen_jobs, users=6, duration=5.0, logdir=tmp,
                                              redis_pid=server.proc.pid))  # fmt: skip
    finally:
        server.stop()
    print_table(rows)


if __name__ == "__main__":
    if os.environ.get("BENCH_DEBUG"):
        loop = asyncio.SelectorEventLoop(TimedSelector())
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
    else:
        asyncio.run(main())
