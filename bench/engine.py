"""Benchmark: naive one-prompt-at-a-time generation vs the job engine with micro-batching.

    .venv/bin/python bench/engine.py                 # 16 concurrent 5-s requests, musicgen-small random
    .venv/bin/python bench/engine.py --quick         # tiny random MusicGen, seconds (smoke run)

Phases run in separate subprocesses so each one's peak memory is its own:
  naive   one prompt per ``generate`` call, fp32, sequential, transformers' own KV cache and glibc's
          default heap (what a simple bot does). It is slow (~0.1 audio-s/s here), so it runs
          ``--naive-requests`` of the requests; sequential throughput does not depend on how many
          are queued, so that measures it exactly.
  engine  all ``--requests`` submitted at once to ``JobEngine`` (micro-batched, auto precision,
          preallocated KV cache, worker process), while a ticker coroutine measures the event loop's lateness.
  arranger the offline arranger through the engine: its realtime factor.

Model: the real facebook/musicgen-small architecture with random weights (speed does not depend on
weight values), built once by ``bench/_musicgen_random.py`` into ``--model-dir``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = (
    "calm lofi piano with soft drums at 80 bpm",
    "upbeat electronic synth pop with bass",
    "dreamy ambient strings in a minor key",
    "warm jazz guitar with brushed drums",
    "energetic rock guitar with loud drums",
    "relaxing acoustic guitar melody",
    "cinematic orchestral strings with piano",
    "chill synth background track at night",
)


class PeakRSS:
    """Samples the resident memory of this process plus its children (the worker process)."""

    def __init__(self, every: float = 0.1) -> None:
        import psutil

        self._proc = psutil.Process()
        self._every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except Exception:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self._every)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def _spec(i: int, seconds: float):
    from engine.spec import MusicSpec

    return MusicSpec(prompt=PROMPTS[i % len(PROMPTS)], genres=("Lofi",), duration=seconds)


# -- phases (each runs in its own subprocess and prints one JSON line) ----------------------------


def phase_naive(args) -> dict:
    from engine.generation import load_backend

    with PeakRSS() as rss:
        backend = load_backend(
            "musicgen",
            model=args.model_dir,
            device="cpu",
            dtype="float32",
            threads=args.threads,
            kv_cache="dynamic",
            log=None,
        )
        t0 = time.perf_counter()
        done = []
        for i in range(args.naive_requests):
            backend.generate([_spec(i, args.seconds)], samples=1)
            done.append(time.perf_counter() - t0)
        wall = time.perf_counter() - t0
    audio = args.naive_requests * args.seconds
    return {
        "name": f"naive fp32, batch 1, sequential ({args.naive_requests} req)",
        "audio_s": audio,
        "wall_s": wall,
        "throughput": audio / wall,
        "first_s": done[0],
        "lag_p50_ms": None,
        "lag_p99_ms": None,
        "peak_rss_gb": rss.peak / 2**30,
    }


async def _through_engine(config, requests: int, seconds: float) -> dict:
    from engine.jobs import JobEngine, JobRequest

    engine = JobEngine(config)
    await engine.start()
    lateness: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:  # how late does a 5 ms sleep wake up while the model works?
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lateness.append(time.perf_counter() - t - 0.005)

    tick_task = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    handles = await asyncio.gather(
        *(engine.submit(JobRequest(user_id=f"user{i}", spec=_spec(i, seconds))) for i in range(requests))
    )
    finished: list[float] = []

    async def wait(h):
        tracks = await h.result()
        finished.append(time.perf_counter() - t0)
        return tracks

    results = await asyncio.gather(*(wait(h) for h in handles))
    wall = time.perf_counter() - t0
    stop.set()
    await tick_task
    calls = engine.stats["calls"]
    describe = engine.describe()
    await engine.stop()
    audio = sum(t.duration for tracks in results for t in tracks)
    lat = sorted(lateness) or [0.0]
    return {
        "audio_s": audio,
        "wall_s": wall,
        "throughput": audio / wall,
        "first_s": min(finished),
        "lag_p50_ms": 1000 * statistics.median(lat),
        "lag_p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "calls": calls,
        "describe": describe,
    }


def phase_engine(args) -> dict:
    from engine.jobs import EngineConfig

    options = {"threads": args.threads, "kv_cache": args.kv_cache, "max_batch": args.max_batch}
    config = EngineConfig(
        backend="musicgen",
        model=args.model_dir,
        device="cpu",
        dtype=args.dtype,
        worker=args.worker,
        max_batch=args.max_batch,
        max_queue=max(50, args.requests),
        per_user_limit=1,
        job_timeout=3600.0,  # a loaded 2-core box is slow; the bench measures, it does not give up
        backend_options=options,
    )
    with PeakRSS() as rss:
        out = asyncio.run(_through_engine(config, args.requests, args.seconds))
    extras = f"{args.dtype}, batch ≤ {args.max_batch}, {args.kv_cache} KV cache, {args.worker} worker"
    out.update(name=f"engine ({extras}; {out['calls']} calls)", peak_rss_gb=rss.peak / 2**30)
    return out


def phase_arranger(args) -> dict:
    from engine.jobs import EngineConfig

    config = EngineConfig(
        backend="arranger",
        worker=args.worker,
        max_queue=max(50, args.requests),
        per_user_limit=1,
        job_timeout=3600.0,
    )
    with PeakRSS() as rss:
        out = asyncio.run(_through_engine(config, args.requests, args.arranger_seconds))
    out.update(
        name=f"arranger via engine ({args.arranger_seconds:g}-s tracks, {args.worker})",
        peak_rss_gb=rss.peak / 2**30,
    )
    return out


PHASES = {"naive": phase_naive, "engine": phase_engine, "arranger": phase_arranger}


def _run_phase(name: str, argv: list[str]) -> dict | None:
    cmd = [sys.executable, __file__, "--phase", name, *argv]
    print(f"… {name}", file=sys.stderr, flush=True)
    env = dict(os.environ)
    if name == "naive":  # glibc's default heap, as a plain script has (see engine.device)
        env["TEXTUNES_KEEP_HEAP"] = "0"
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    print(f"phase {name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
    return None


def _fmt(value, pattern: str) -> str:
    return "—" if value is None else format(value, pattern)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=16, help="concurrent requests for the engine (default 16)")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each request (default 5)")
    p.add_argument("--naive-requests", type=int, default=2, help="requests the naive loop runs (default 2)")
    p.add_argument("--arranger-seconds", type=float, default=30.0, help="arranger track length (default 30)")
    p.add_argument("--max-batch", type=int, default=8)
    # auto = int8 on CPUs without native bf16 (measured fastest on this AVX2-only box, see
    # bench/generate.py); on CPUs with AVX512-BF16/AMX auto picks bfloat16.
    p.add_argument(
        "--dtype", default="auto", help="engine dtype (default auto: int8 on CPU without native bf16)"
    )
    p.add_argument(
        "--kv-cache",
        choices=("preallocated", "dynamic"),
        default="preallocated",
        help="the engine backend's KV cache (default preallocated; dynamic = transformers' own)",
    )
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--worker", choices=("process", "thread"), default="process")
    p.add_argument("--model-dir", default="/tmp/textunes-bench/musicgen-small-random")
    p.add_argument("--skip", action="append", default=[], choices=sorted(PHASES), help="skip a phase")
    p.add_argument("--quick", action="store_true", help="tiny random MusicGen, 4 × 2-s requests (smoke run)")
    p.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return 0

    argv = [a for a in sys.argv[1:] if a != "--quick"]
    if args.quick:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_musicgen import build_tiny_musicgen

        tiny = Path("/tmp/textunes-bench/tiny-musicgen")
        if not (tiny / "config.json").is_file():
            build_tiny_musicgen(tiny)
        args.model_dir, args.requests, args.seconds, args.naive_requests, args.arranger_seconds = (
            str(tiny),
            4,
            2.0,
            2,
            5.0,
        )
        argv = [
            "--model-dir", args.model_dir, "--requests", "4", "--seconds", "2", "--naive-requests", "2",
            "--arranger-seconds", "5", "--max-batch", str(args.max_batch), "--dtype", args.dtype,
            "--threads", str(args.threads), "--worker", args.worker,
            "--kv-cache", args.kv_cache,
        ]  # fmt: skip
    else:
        from _musicgen_random import build_random_musicgen_small

        build_random_musicgen_small(args.model_dir)

    rows = {}
    for name in ("naive", "engine", "arranger"):
        if name not in args.skip:
            rows[name] = _run_phase(name, argv)

    print(
        f"\n{args.requests} concurrent {args.seconds:g}-s requests, model {Path(args.model_dir).name}, "
        f"{os.cpu_count()} CPU cores, {args.threads} threads\n"
    )
    header = f"| {'run':<70} | audio-s/s | first result s | loop lag p50 / p99 ms | peak RSS GB |"
    print(header)
    print("|" + "|".join("-" * (len(col)) for col in header.split("|")[1:-1]) + "|")
    for row in rows.values():
        if row is None:
            continue
        lag = f"{_fmt(row['lag_p50_ms'], '.1f')} / {_fmt(row['lag_p99_ms'], '.1f')}"
        print(
            f"| {row['name']:<70} | {row['throughput']:>9.3f} | {row['first_s']:>14.1f} | {lag:>21} "
            f"| {row['peak_rss_gb']:>11.2f} |"
        )
    naive, engine, arranger = rows.get("naive"), rows.get("engine"), rows.get("arranger")
    if naive and engine:
        print(f"\nengine / naive throughput: {engine['throughput'] / naive['throughput']:.1f}×")
    if arranger:
        print(f"arranger realtime factor through the engine: {arranger['throughput']:.0f}× realtime")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
