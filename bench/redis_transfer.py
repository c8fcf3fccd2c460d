"""Benchmark: what moving a batch of results through Redis costs on this machine, with none of our code.

    .venv/bin/python bench/redis_transfer.py            # 8 results per batch of 3 KB, 156 KB, 625 KB
    .venv/bin/python bench/redis_transfer.py --split    # each result in its own transaction
    .venv/bin/python bench/redis_transfer.py --writers 1,2,4 --sizes 3000   # workers ending together

A writer process does what a worker does with a finished batch (one MULTI of eight XADDs) and a
reader process what the bot does (a blocking XREADGROUP with its acks in the same round trip, and
the entries it read deleted, as the bot deletes each once its track is stored),
through a redis-server on a free local port. With ``--writers N``, N writer processes write their
batches at the same moments, as N workers whose batches took the same time do. Columns: the writer's round trip, and when the reader
had the whole batch, both from the moment the writer started (``time.time()`` on one host). It
is the floor under ``bench/broker.py``'s "broker added" for the same bytes: that also pays for the
dispatch leg and the wire format.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PER_BATCH = 8


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def reader(url: str, expected: int, out) -> None:
    """The bot's side: read until ``expected`` batches are whole; when each one was (per writer, batch)."""
    import redis.asyncio as aioredis

    async def main() -> None:
        r = aioredis.Redis.from_url(url)
        acks: list = []
        seen: dict[bytes, int] = {}
        complete: dict[str, float] = {}
        while len(complete) < expected:
            async with r.pipeline(transaction=False) as pipe:
                if acks:  # the bot acknowledges, and deletes what it has stored
                    pipe.xack("results", "frontend", *acks)
                    pipe.xdel("results", *acks)
                pipe.xreadgroup("frontend", "bot", {"results": ">"}, count=64, block=2000)
                reply = (await pipe.execute())[-1]
            now = time.time()
            acks = []
            for _s, entries in reply or []:
                for entry_id, fields in entries:
                    acks.append(entry_id)
                    batch = fields[b"batch"]
                    seen[batch] = seen.get(batch, 0) + 1
                    if seen[batch] == PER_BATCH:
                        complete[batch.decode()] = now
        out.put(complete)
        await r.aclose()

    asyncio.run(main())


def writer(url: str, name: int, size: int, at: list[float], split: bool, out) -> None:
    """A worker's side: at each moment of ``at``, write one batch of results; when each write began."""
    import redis.asyncio as aioredis

    async def main() -> None:
        r = aioredis.Redis.from_url(url)
        await r.ping()
        payload = os.urandom(size)
        began = {}
        for n, when in enumerate(at):
            await asyncio.sleep(max(0.0, when - time.time()))
            key = f"{name}/{n}"
            t0 = time.time()
            await write_batch(r, {"batch": key.encode(), "result": b"{}", "audio:0": payload}, split)
            began[key] = (t0, time.time() - t0)
        out.put(began)
        await r.aclose()

    asyncio.run(main())


async def write_batch(r, fields: dict, split: bool) -> None:
    """One MULTI of eight XADDs, as a worker writes results that are ready together; ``split``: one
    MULTI per result, all sent at once on separate connections."""

    async def write(count: int) -> None:
        async with r.pipeline(transaction=True) as pipe:
            for _ in range(count):
                pipe.xadd("results", fields)
            await pipe.execute()

    if split:
        await asyncio.gather(*(write(1) for _ in range(PER_BATCH)))
    else:
        await write(PER_BATCH)


async def measure(
    url: str, size: int, batches: int, writers: int, split: bool = False
) -> tuple[list[float], list[float]]:
    """Write round trips and reader-has-it latencies in ms; all ``writers`` write at the same moments
    (as workers whose batches took the same time), one batch each per 0.1 s."""
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    await r.delete("results")
    await r.xgroup_create("results", "frontend", id="0", mkstream=True)
    await r.aclose()
    ctx = mp.get_context("spawn")
    read_out, write_out = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=reader, args=(url, batches * writers, read_out))]
    at = [time.time() + 3.0 + 0.1 * n for n in range(batches)]  # every process is up and waiting by then
    procs += [ctx.Process(target=writer, args=(url, w, size, at, split, write_out)) for w in range(writers)]
    for proc in procs:
        proc.start()
    began: dict[str, tuple[float, float]] = {}
    for _ in range(writers):
        began.update(write_out.get(timeout=120))
    complete = read_out.get(timeout=120)
    for proc in procs:
        proc.join(10)
    warm = {key for key in began if int(key.split("/")[1]) >= 3}  # the first batches pay first-call costs
    writes = [began[k][1] * 1000 for k in warm]
    read = [(complete[k] - began[k][0]) * 1000 for k in warm]
    return writes, read


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--sizes", default="3000,160000,640000", help="bytes per result")
    parser.add_argument("--split", action="store_true", help="each result in its own transaction")
    parser.add_argument(
        "--writers", default="1", help="writer processes writing at the same moments, e.g. 1,2,4"
    )
    args = parser.parse_args()
    from tests.redis_server import RedisServer

    server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-transfer-")))
    print(f"redis-server on {server.url}; {PER_BATCH} results per batch "
          f"({'one transaction each' if args.split else 'one transaction'}), {args.batches} batches; "
          f"{os.cpu_count()} CPUs\n")  # fmt: skip
    head = (
        f"{'writers':>7} {'per result':>10} {'per batch':>10} {'write p50/p95 ms':>17} "
        f"{'reader has all p50/p90/p95 ms':>30}"
    )
    print(head)
    print("-" * len(head))
    try:
        for writers, size in [
            (int(w), int(s)) for w in args.writers.split(",") for s in args.sizes.split(",")
        ]:
            writes, read = await measure(server.url, size, args.batches, writers, args.split)
            print(f"{writers:>7} {size / 1024:>7.0f} KB {size * PER_BATCH / 1024:>7.0f} KB "
                  f"{statistics.median(writes):>8.1f} / {pct(writes, 95):>6.1f} "
                  f"{statistics.median(read):>12.1f} / {pct(read, 90):>6.1f} / {pct(read, 95):>6.1f}")  # fmt: skip
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
