"""Store throughput: job bookkeeping, delivery claims, track writes, history queries, retention.

    .venv/bin/python bench/store.py [--jobs 2000] [--tracks 200] [--seconds 15]

Prints one table. Every row is timed here on a file database in a temp folder (WAL), the way the
bot uses it; per-op numbers are wall time divided by the operation count.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.delivery.ledger import DeliveryLedger  # noqa: E402
from engine.spec import MusicSpec, Track  # noqa: E402
from engine.store import Store, spec_to_request  # noqa: E402

SPEC = MusicSpec(prompt="calm lofi with piano, 80 bpm", genres=("Lofi",), moods=("Calm",), bpm=80)


def _track(seconds: float, rate: int = 32000) -> Track:
    t = np.arange(int(seconds * rate)) / rate
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return Track(
        audio=audio[None, :].astype(np.float32),
        sample_rate=rate,
        spec=SPEC,
        seed=1,
        backend="bench",
        model="-",
    )


def _timed(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) / max(n, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--tracks", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each benchmark track")
    args = parser.parse_args()

    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "bench.db") as store:
        request = spec_to_request(SPEC, samples=1)
        ids: list[str] = []

        ledger = DeliveryLedger.open(store)  # the bot's delivery table, in the same file

        def create() -> None:
            for i in range(args.jobs):
                ids.append(store.create_job(user_id=i % 50, request=request, guild_id=1).id)
                ledger.record(ids[-1], user_id=i % 50, guild_id=1, channel_id=2)

        rows.append(("create_job + ledger.record", args.jobs, _timed(create, args.jobs)))
        rows.append(("mark_running + mark_done", args.jobs,
                     _timed(lambda: [store.mark_done(store.mark_running(j).id) for j in ids], args.jobs)))  # fmt: skip

        def claim_threads() -> None:  # 8 threads race for every job: exactly one wins each
            wins = []

            def worker(chunk: list[str]) -> None:
                wins.extend(j for j in chunk if ledger.claim_delivery(j))

            threads = [threading.Thread(target=worker, args=(ids,)) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(wins) == len(ids), (len(wins), len(ids))

        rows.append(
            ("ledger.claim_delivery (8 racing threads, per job)", args.jobs, _timed(claim_threads, args.jobs))
        )
        rows.append(("job_spec", args.jobs, _timed(lambda: [store.job_spec(j) for j in ids], args.jobs)))
        # the async face (one store thread) against the default pool, every call awaited at once
        for label, call in (
            ("store.aio", lambda j: store.aio.job_spec(j)),
            ("asyncio.to_thread", lambda j: asyncio.to_thread(store.job_spec, j)),
        ):

            async def all_at_once(call=call) -> None:
                await asyncio.gather(*(call(j) for j in ids))

            rows.append((f"job_spec awaited via {label}", args.jobs,
                         _timed(lambda run=all_at_once: asyncio.run(run()), args.jobs)))  # fmt: skip

        track = _track(args.seconds)
        n = args.tracks
        written: dict[str, list[str]] = {"mp3": [], "wav": []}
        for fmt in ("mp3", "wav"):

            def add(fmt: str = fmt) -> None:
                written[fmt].extend(store.add_track(ids[i], track, fmt=fmt).id for i in range(n))

            rows.append((f"add_track {args.seconds:g} s {fmt} (encode+write)", n, _timed(add, n)))
        for fmt in ("mp3", "wav"):
            some = written[fmt][:10]
            rows.append((f"load_track {args.seconds:g} s {fmt} (decode)", len(some),
                         _timed(lambda some=some: [store.load_track(t) for t in some], len(some))))  # fmt: skip
        rows.append(
            ("history(user, 10)", 1000, _timed(lambda: [store.history(i % 50) for i in range(1000)], 1000))
        )
        total = store.stored_bytes()
        rows.append(
            ("enforce_retention (to half)", 1, _timed(lambda: store.enforce_retention(total // 2), 1))
        )

    print(f"{'operation':<44} {'n':>6} {'ms/op':>10}")
    print("-" * 62)
    for name, n, seconds in rows:
        print(f"{name:<44} {n:>6} {seconds * 1000:>10.3f}")


if __name__ == "__main__":
    main()
