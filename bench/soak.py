"""Soak run: simulated users talk to the real bot over the fake Discord for a set time.

    .venv/bin/python bench/soak.py                        # 8 users, 3 minutes, process worker
    .venv/bin/python bench/soak.py --quick                # 30-second smoke run
    .venv/bin/python bench/soak.py --minutes 60 --users 16 --worker thread

The bot is the real one (``bot.bot.create_bot``, arranger backend, store in a temporary data dir),
in this process, connected to ``tests.fake_discord.FakeDiscord`` on 127.0.0.1. Each user waits a
random think time, then sends one of: ``/bgm`` with random valid categories (5-15 s), ``/bgm-from-text``
with pasted text, 🔁 on one of their own finished tracks, or a bad input (unknown genre, too long a
duration); all users together send at most ``--rate`` commands per second. After ``--minutes``
nobody sends any more and the run waits (``--drain`` s at most) for every command to be answered.

Every command must end in exactly one visible answer: its track, a failure message (job accepted,
then failed) or a refusal (bad input, queue/user limit: no job). Against the store and the uploads
the fake received: lost = jobs submitted − delivered − failed with a message; duplicates = extra
uploads of one job. Exit status 1 if anything was lost, duplicated or left unanswered.

RSS is this process (bot + fake + simulated users) plus the worker child. The fake keeps every upload
it gets; the run drops those bytes once counted so the memory shown is the bot's, not the fake's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fake_discord import FakeDiscord, FakeInteraction, StoredMessage  # noqa: E402

RECYCLE = "\N{CLOCKWISE RIGHTWARDS AND LEFTWARDS OPEN CIRCLE ARROWS}"
KINDS = ("bgm", "text", "regen", "bad")
WEIGHTS = (0.45, 0.2, 0.2, 0.15)
BAD_GENRES = ("lofy", "rokc", "polka-dubstep-xyz", "재즈힙합락")
TOO_LONG = ("5:00", "3:30", "10:00")
# short passages written for this bench (English and Korean, several moods) to paste as text
PASSAGES = (
    "The lanterns went up one by one along the river, and the children ran ahead laughing. "
    "Someone was playing an accordion near the bridge. It was the best night of the summer.",
    "The letter arrived three weeks after the funeral. I read it at the kitchen table while the "
    "tea went cold, and for a long time I could not move.",
    "Rain hammered the windows of the lab. The readings were wrong again, and the deadline was "
    "tomorrow morning. She poured another coffee and started over from the first measurement.",
    "Footsteps in the corridor stopped right outside the door. Nobody was supposed to be in the "
    "building after midnight. The lights flickered once, twice, and went out.",
    "오랜만에 친구들과 바닷가로 여행을 떠났다. 파도 소리를 들으며 밤새 이야기를 나누었고 "
    "아침에는 함께 해돋이를 보았다. 정말 행복한 하루였다.",
    "비가 오는 밤이면 오래된 골목길을 혼자 걷는다. 예전에 함께 걷던 사람은 이제 없고 "
    "가로등 불빛만 젖은 길 위에 흔들린다. 마음이 조용히 가라앉는다.",
    "The market opened at dawn: fishmongers shouting prices, bicycles weaving between the stalls, "
    "the smell of fresh bread from the corner bakery. A busy, cheerful Saturday morning.",
)


@dataclass
class Op:
    """One command a simulated user sent, and what they saw in answer."""

    kind: str  # bgm | text | regen | bad
    user: str
    sent: float
    inter: FakeInteraction | None = None
    parent: StoredMessage | None = None  # 🔁: the track message reacted to
    outcome: str | None = None  # delivered | failed | refused
    answered: float | None = None
    answer: StoredMessage | None = None


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.fake = FakeDiscord()
        self.ops: list[Op] = []
        self.pending: list[Op] = []
        self.tracks: dict[str, list[StoredMessage]] = {}  # user -> delivered, not yet reacted to
        self.replies: dict[int, list[StoredMessage]] = {}  # message id -> bot replies referencing it
        self.uploads: Counter = Counter()  # job id -> uploads Discord accepted
        self._messages_seen = 0
        self._last_send = 0.0
        self._send_lock = asyncio.Lock()
        self.queue_max = 0
        self.rss: dict[str, int] = {}
        self.rss_peak = 0
        self.rss_series: list[tuple[float, int, int]] = []  # (seconds into the run, bot, workers)
        self.t0 = time.monotonic()
        self.lag: list[float] = []
        self.pending_at_stop = 0
        self.warm_at = 0.0  # seconds into the run when the warm-up RSS was taken
        self.stop_sending = asyncio.Event()

    # -- measurement ----------------------------------------------------------------------------
    @staticmethod
    def rss_split() -> tuple[int, int]:
        """RSS of this process and of its Python children (the worker); ffmpeg encoders excluded."""
        import psutil

        me = psutil.Process()
        workers = 0
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.name().startswith("python"):
                    workers += child.memory_info().rss
        return me.memory_info().rss, workers

    @classmethod
    def rss_now(cls) -> int:
        return sum(cls.rss_split())

    def _index_new_messages(self) -> None:
        fresh = list(itertools.islice(self.fake.messages.values(), self._messages_seen, None))
        self._messages_seen += len(fresh)
        for msg in fresh:
            ref = msg.message_reference or {}
            if ref.get("message_id"):
                self.replies.setdefault(int(ref["message_id"]), []).append(msg)

    def _count_uploads(self, older_than: float) -> None:
        """Count accepted uploads per job, then drop the request records (and their bytes)."""
        requests = self.fake.requests
        done = 0
        for rec in requests:
            if rec.at > older_than:
                break  # its handler may still be reading the body
            done += 1
            if rec.files and 200 <= rec.status < 300 and isinstance(rec.json, dict):
                for row in rec.json.get("components") or []:
                    for comp in row.get("components", []):
                        cid = str(comp.get("custom_id", ""))
                        if cid.startswith("textunes:regen:"):
                            self.uploads[cid.rsplit(":", 1)[1]] += 1
        del requests[:done]

    def _classify(self, op: Op) -> tuple[str, StoredMessage] | None:
        if op.inter is not None:
            inter = op.inter
            original = inter.original
            if original is not None and not original.deleted and original.attachments:
                return "delivered", original
            for msg in ([original] if original else []) + inter.followups:
                if msg.ephemeral and not msg.loading and msg.text() and not msg.deleted:
                    return "refused", msg  # bad input or over a limit: answered privately, no job
            if original is not None and not original.deleted and not original.ephemeral:
                if "⚠️" in original.content or "🛑" in original.content:
                    return "failed", original  # the job was accepted, then failed
            return None
        assert op.parent is not None
        replies = [m for m in self.replies.get(op.parent.id, []) if not m.deleted]
        for msg in replies:
            if msg.attachments:
                return "delivered", msg
        for msg in replies:
            if msg.content.startswith("⚠️ <@"):
                return "refused", msg  # capacity refusal names the user; no job was made
            if "⚠️" in msg.content or "🛑" in msg.content:
                return "failed", msg
        return None

    def _resolve(self, now: float) -> None:
        still = []
        for op in self.pending:
            found = self._classify(op)
            if found is None:
                still.append(op)
                continue
            op.outcome, op.answer = found
            op.answered = now
            if op.outcome == "delivered":
                self.tracks.setdefault(op.user, []).append(op.answer)
        self.pending = still

    def _forget_bytes(self) -> None:
        """The fake keeps every upload and edit; drop them for answered ops (memory is the bot's)."""
        for op in self.ops:
            if op.answer is not None and op.answer.attachments and op.answer.attachments[0].data:
                for att in op.answer.attachments:
                    att.data = b""
                op.answer.edits.clear()

    async def monitor(self, bot) -> None:
        last_rss = 0.0
        while True:
            now = time.monotonic()
            self._index_new_messages()
            self._resolve(now)
            self.queue_max = max(self.queue_max, bot.engine.queue_length())
            if now - last_rss >= 1.0:
                self._count_uploads(now - 2.0)
                self._forget_bytes()
                bot_rss, worker_rss = await asyncio.to_thread(self.rss_split)
                self.rss_peak = max(self.rss_peak, bot_rss + worker_rss)
                every = max(15.0, self.args.seconds / 12)
                if not self.rss_series or now - self.t0 - self.rss_series[-1][0] >= every:
                    self.rss_series.append((now - self.t0, bot_rss, worker_rss))
                last_rss = now
            await asyncio.sleep(0.1)

    async def ticker(self) -> None:
        """How late a 50 ms sleep wakes up: the event loop's responsiveness under load."""
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.05)
            self.lag.append(time.perf_counter() - start - 0.05)

    # -- simulated users --------------------------------------------------------------------------
    async def _rate_limit(self) -> None:
        async with self._send_lock:
            gap = 1.0 / self.args.rate - (time.monotonic() - self._last_send)
            if gap > 0:
                await asyncio.sleep(gap)
            self._last_send = time.monotonic()

    def _duration(self, rng: random.Random) -> str:
        return f"0:{rng.randint(5, 15):02d}"

    async def _send(self, user: str, kind: str, rng: random.Random) -> Op:
        from engine.catalogue import default_catalogue

        cat, fake = default_catalogue(), self.fake
        if kind == "regen":
            mine = [m for m in self.tracks.get(user, []) if RECYCLE in m.reactions]  # the bot invited 🔁
            if not mine:
                kind = "bgm"
            else:
                parent = rng.choice(mine)
                self.tracks[user].remove(parent)  # one 🔁 per track, as on Discord
                op = Op("regen", user, time.monotonic(), parent=parent)
                await fake.react(parent, RECYCLE, user=user)
                return op
        if kind == "bgm":
            options = {
                "genre": rng.choice(cat.list("genres")).en,
                "mood": rng.choice(cat.list("moods")).en,
                "duration": self._duration(rng),
            }
            if rng.random() < 0.4:
                options["tempo"] = rng.choice(("Slow", "Medium", "Fast", str(rng.randint(70, 140))))
            if rng.random() < 0.1:
                options["samples"] = 2
            return Op("bgm", user, time.monotonic(), inter=await fake.slash("bgm", options, user=user))
        if kind == "text":
            text = " ".join(rng.sample(PASSAGES, rng.randint(1, 3)))
            options = {"text": text, "duration": self._duration(rng)}
            inter = await fake.slash("bgm-from-text", options, user=user)
            return Op("text", user, time.monotonic(), inter=inter)
        # a bad input: a genre that does not exist, or longer than the server allows
        if rng.random() < 0.5:
            options = {"genre": rng.choice(BAD_GENRES), "mood": "Calm"}
            inter = await fake.slash("bgm", options, user=user)
        elif rng.random() < 0.7:
            options = {"genre": "Lofi", "mood": "Calm", "duration": rng.choice(TOO_LONG)}
            inter = await fake.slash("bgm", options, user=user)
        else:
            options = {"text": rng.choice(PASSAGES), "duration": rng.choice(TOO_LONG)}
            inter = await fake.slash("bgm-from-text", options, user=user)
        return Op("bad", user, time.monotonic(), inter=inter)

    async def user(self, index: int, name: str) -> None:
        rng = random.Random(self.args.seed * 1000 + index)
        first = True
        while not self.stop_sending.is_set():
            if first:  # warm both paths early: the text analyser loads on first use
                kind, first = ("text" if index == 0 else "bgm"), False
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stop_sending.wait(), rng.uniform(*self.args.think))
                if self.stop_sending.is_set():
                    break
                kind = rng.choices(KINDS, WEIGHTS)[0]
            await self._rate_limit()
            if self.stop_sending.is_set():
                break
            op = await self._send(name, kind, rng)
            self.ops.append(op)
            self.pending.append(op)

    # -- the run ----------------------------------------------------------------------------------
    async def run(self) -> dict:
        from bot.bot import create_bot
        from bot.settings import Settings
        from engine.jobs import EngineConfig

        args, fake = self.args, self.fake
        names = [f"user{i}" for i in range(args.users)]
        for name in names:
            fake.add_user(name)
        await fake.start()
        fake.point_discord_py_here()
        data_dir = Path(tempfile.mkdtemp(prefix="textunes-soak-"))
        settings = Settings(token="fake-token", data_dir=data_dir, backend="arranger", worker=args.worker)
        bot = create_bot(
            settings,
            engine_config=EngineConfig(
                backend="arranger",
                worker=args.worker,
                max_queue=settings.max_queue,
                per_user_limit=settings.per_user_jobs,
            ),
        )
        bot_task = asyncio.create_task(bot.start(settings.token))
        helpers: list[asyncio.Task] = []
        try:
            await fake.wait_connected(1, timeout=120)
            await fake.wait_until(lambda: bot.get_guild(fake.guild_id) is not None, 30, "the guild")
            self.rss["start"] = await asyncio.to_thread(self.rss_now)
            helpers = [asyncio.create_task(self.monitor(bot)), asyncio.create_task(self.ticker())]
            t0 = self.t0 = time.monotonic()
            users = [asyncio.create_task(self.user(i, n)) for i, n in enumerate(names)]
            warm_at = t0 + min(60.0, args.seconds / 4)

            def warmed() -> bool:  # a /bgm and a /bgm-from-text answered, and some time passed
                kinds = {op.kind for op in self.ops if op.outcome}
                return {"bgm", "text"} <= kinds and time.monotonic() >= warm_at

            while time.monotonic() - t0 < args.seconds:
                if "warm" not in self.rss and warmed():
                    self.rss["warm"] = await asyncio.to_thread(self.rss_now)
                    self.warm_at = time.monotonic() - t0
                await asyncio.sleep(0.5)
            self.stop_sending.set()
            await asyncio.gather(*users)
            sending = time.monotonic() - t0
            self.pending_at_stop = len(self.pending)
            if "warm" not in self.rss:
                self.rss["warm"], self.warm_at = await asyncio.to_thread(self.rss_now), sending
            drain_start = time.monotonic()
            while self.pending and time.monotonic() - drain_start < args.drain:
                await asyncio.sleep(0.2)
            drain = time.monotonic() - drain_start
            self.rss["end"] = await asyncio.to_thread(self.rss_now)
            self.rss_peak = max(self.rss_peak, self.rss["end"])
        finally:
            for task in helpers:
                task.cancel()
            await bot.close()
            with contextlib.suppress(Exception):
                await bot_task
            await fake.close()
        self._index_new_messages()
        self._resolve(time.monotonic())
        self._count_uploads(float("inf"))
        jobs = self._jobs(settings.store_file)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        return {"sending": sending, "drain": drain, "jobs": jobs, "data_dir": data_dir}

    @staticmethod
    def _jobs(db: Path) -> dict[str, dict]:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return {r["id"]: dict(r) for r in conn.execute("SELECT id, state, kind, error FROM jobs")}
        finally:
            conn.close()


REFUSAL_REASONS = (  # what a refusal says → a short name for the summary line
    ("Did you mean", "unknown name"),
    ("Unknown", "unknown name"),
    ("allows tracks up to", "too long"),
    ("out of range", "too long"),
    ("already have", "jobs per member"),
    ("queue is full", "queue full"),
    ("making tracks quickly", "member rate"),
    ("making a lot of tracks", "server rate"),
)


def refusal_reason(text: str) -> str:
    for needle, name in REFUSAL_REASONS:
        if needle in text:
            return name
    return "other: " + " ".join(text.split())[:60]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(soak: Soak, result: dict) -> int:
    args, ops, jobs, uploads = soak.args, soak.ops, result["jobs"], soak.uploads
    sent = Counter(op.kind for op in ops)
    outcomes = Counter(op.outcome for op in ops)
    submitted = len(jobs)
    delivered = sum(1 for j in jobs if uploads[j] >= 1)
    failed = outcomes["failed"]
    refused = outcomes["refused"]
    bad_refused = sum(1 for op in ops if op.kind == "bad" and op.outcome == "refused")
    lost = submitted - delivered - failed
    duplicates = sum(n - 1 for n in uploads.values() if n > 1)
    unanswered = outcomes[None]
    ttr = [op.answered - op.sent for op in ops if op.outcome == "delivered" and op.answered is not None]
    states = Counter(j["state"] for j in jobs.values())
    mb = 1024 * 1024
    rss = soak.rss
    growth = rss["end"] - rss["warm"]

    def sec(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f} s"

    rows = [
        (
            "elapsed (sending + drain)",
            f"{result['sending']:.0f} s + {result['drain']:.1f} s ({soak.pending_at_stop} commands awaited)",
        ),
        (
            "commands sent (/bgm · /bgm-from-text · 🔁 · bad input)",
            f"{len(ops)} ({sent['bgm']} · {sent['text']} · {sent['regen']} · {sent['bad']})",
        ),
        ("jobs submitted (rows in the store)", str(submitted)),
        ("delivered (track posted)", str(delivered)),
        ("failed with a message", str(failed)),
        (
            "refused with a message (no job: bad input · over a limit)",
            f"{refused} ({bad_refused} · {refused - bad_refused})",
        ),
        ("**lost** (submitted − delivered − failed)", str(lost)),
        ("**duplicates** (extra uploads of one job)", str(duplicates)),
        ("commands with no answer", str(unanswered)),
        ("time to result p50 / p95 (command → track)", f"{sec(_pct(ttr, 0.5))} / {sec(_pct(ttr, 0.95))}"),
        (
            "RSS start / after warm-up / end (peak)",
            f"{rss['start'] / mb:.0f} / {rss['warm'] / mb:.0f} / {rss['end'] / mb:.0f} MB "
            f"({soak.rss_peak / mb:.0f} MB)",
        ),
        (
            "RSS growth after warm-up",
            f"{growth / mb:+.0f} MB ({100 * growth / rss['warm']:+.1f} %), warm-up done at {soak.warm_at:.0f} s",
        ),
        ("queue length max", str(soak.queue_max)),
        (
            "event-loop lag p99 / max",
            f"{1000 * (_pct(soak.lag, 0.99) or 0):.0f} / {1000 * max(soak.lag, default=0):.0f} ms",
        ),
    ]
    print(
        f"\nsoak: {args.users} users, {args.seconds / 60:g} min, {args.worker} worker, ≤ {args.rate:g} commands/s, "
        f"think {args.think[0]:g}-{args.think[1]:g} s, seed {args.seed}, {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    width = max(len(name) for name, _ in rows)
    print(f"| {'metric':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    reasons = Counter(refusal_reason(op.answer.text()) for op in ops if op.outcome == "refused" and op.answer)
    print("\nrefusals by reason: " + ", ".join(f"{name} {n}" for name, n in reasons.most_common()))
    series = ", ".join(f"{t:.0f}s {(b + w) / mb:.0f}" for t, b, w in soak.rss_series)
    print(f"RSS over time, MB (bot + worker): {series}")
    if soak.rss_series:
        t, b, w = soak.rss_series[-1]
        print(f"last sample split: bot process {b / mb:.0f} MB, worker {w / mb:.0f} MB")
    print(f"store job states: {dict(states)}")
    errors = Counter((j["error"] or "")[:120] for j in jobs.values() if j["state"] in ("failed", "cancelled"))
    for error, count in errors.most_common():
        print(f"  failed ×{count}: {error}")
    if states.get("done", 0) != delivered or states.get("failed", 0) + states.get("cancelled", 0) != failed:
        print("note: store states and what users saw disagree (see the counts above)")
    if args.keep:
        print(f"data dir kept: {result['data_dir']}")
    bad = lost != 0 or duplicates != 0 or unanswered != 0
    print("RESULT:", "FAIL" if bad else "ok (nothing lost, nothing duplicated, every command answered)")
    if bad:
        for op in ops:
            if op.outcome is None:
                print(f"  unanswered: {op.kind} by {op.user} at +{op.sent:.1f}")
        for job_id, count in uploads.items():
            if count > 1:
                print(f"  job {job_id} uploaded {count} times")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--minutes", type=float, default=3.0, help="how long users send commands (default 3, ≤ 60)"
    )
    p.add_argument("--users", type=int, default=8, help="simulated users (default 8)")
    p.add_argument("--worker", choices=("process", "thread"), default="process")
    p.add_argument(
        "--rate", type=float, default=1.5, help="most commands per second, all users (default 1.5)"
    )
    p.add_argument(
        "--think", type=float, nargs=2, default=(3.0, 12.0), metavar=("MIN", "MAX"),
        help="seconds each user waits between commands (default 3 12)",
    )  # fmt: skip
    p.add_argument("--drain", type=float, default=180.0, help="seconds to wait for answers at the end")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir (store + audio)")
    p.add_argument("--quick", action="store_true", help="a 30-second smoke run")
    args = p.parse_args(argv)
    if not 0 < args.minutes <= 60:
        p.error("--minutes must be between 0 and 60")
    if args.users < 1 or args.rate <= 0 or args.think[0] < 0 or args.think[1] < args.think[0]:
        p.error("--users ≥ 1, --rate > 0 and 0 ≤ think MIN ≤ MAX")
    args.seconds = 30.0 if args.quick else args.minutes * 60
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # discord.py's heartbeat latency is ack time − the time its keep-alive *thread* noted the send;
    # with the fake on this same event loop the ack can land before that thread wakes, and it then
    # logs "Can't keep up ... 41 s behind" (one heartbeat interval). Real loop lag is measured above.
    logging.getLogger("discord.gateway").addFilter(lambda r: not r.getMessage().startswith("Can't keep up"))
    soak = Soak(args)
    result = asyncio.run(soak.run())
    return report(soak, result)


if __name__ == "__main__":
    raise SystemExit(main())
