"""A real MusicBackend for broker tests and the broker bench: it sleeps like a decoder, returns silence.

Configured from the environment so worker processes (``textunes worker --factory
tests.sleepy_backend:make``) and their spawned model children agree:
``SLEEPY_RATE`` Hz (8000), ``SLEEPY_BASE`` seconds per call plus ``SLEEPY_PER_ROW`` per track, in ``SLEEPY_STEPS`` progress
steps; every call appends one JSON line (pid, prompts, time) to ``SLEEPY_LOG`` if set. A prompt
containing ``CRASH!`` kills the process that runs the model (a segfault stand-in); a call of
several tracks with an ``OOM!`` prompt among them runs out of memory (the batch is split).
"""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np

from engine.generation.base import GenerationCancelled
from engine.spec import Track

SAMPLE_RATE = int(os.environ.get("SLEEPY_RATE", "8000"))


class SleepyBackend:
    name = "sleepy"
    model_id = "sleepy-silence"
    sample_rate = SAMPLE_RATE

    def __init__(self, base: float, per_row: float, steps: int, log_path: str | None, max_batch: int) -> None:
        self.base = base
        self.per_row = per_row
        self.steps = max(1, steps)
        self.log_path = log_path
        self.max_batch = max_batch

    def set_generation_params(self, **params) -> None:
        pass

    def _log(self, kind: str, prompts: list[str]) -> None:
        if self.log_path:
            line = json.dumps({"pid": os.getpid(), "kind": kind, "prompts": prompts, "t": time.time()})
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")

    def _sleep(self, rows: int, progress) -> None:
        step = (self.base + self.per_row * rows) / self.steps
        for n in range(self.steps):
            time.sleep(step)
            if progress is not None:
                progress(n + 1, self.steps)

    def generate(self, specs, *, samples=1, seed=None, progress=None):
        prompts = [s.prompt for s in specs]
        self._log("generate", prompts)
        if len(prompts) > 1 and any("OOM!" in p for p in prompts):
            raise RuntimeError("CUDA out of memory (sleepy: a batch holding an OOM! prompt)")
        if any("CRASH!" in p for p in prompts):
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            self._sleep(len(specs) * samples, progress)
        except GenerationCancelled:
            self._log("cancelled", prompts)
            raise
        out = []
        for n, spec in enumerate(specs):
            for k in range(samples):
                audio = np.zeros((1, int(spec.duration * SAMPLE_RATE)), dtype=np.float32)
                audio[0, :100] = 0.01 * (n + 1)  # tell tracks apart after the wire round trip
                out.append(Track(audio, SAMPLE_RATE, spec, (seed or 0) + k, self.name, self.model_id))
        return out

    def generate_continuation(self, track, seconds, *, progress=None):
        self._log("continue", [track.spec.prompt])
        self._sleep(1, progress)
        extra = np.zeros((track.audio.shape[0], int(seconds * SAMPLE_RATE)), dtype=np.float32)
        return Track(np.concatenate([track.audio, extra], axis=1), SAMPLE_RATE, track.spec, track.seed,
                     self.name, self.model_id)  # fmt: skip


def make(device: str = "cpu") -> SleepyBackend:
    env = os.environ
    return SleepyBackend(
        base=float(env.get("SLEEPY_BASE", "0.5")),
        per_row=float(env.get("SLEEPY_PER_ROW", "0.05")),
        steps=int(env.get("SLEEPY_STEPS", "5")),
        log_path=env.get("SLEEPY_LOG") or None,
        max_batch=int(env.get("SLEEPY_MAX_BATCH", "8")),
    )


def read_log(path) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []
