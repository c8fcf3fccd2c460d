"""Events of one job for any number of followers: live ones get each event, late ones the replay first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

Event = TypeVar("Event")


class ReplayStream(Generic[Event]):
    """Keeps what a late subscriber needs to catch up (every event, but only the latest progress)
    and pushes each new event to every live subscriber; a follower stops after a terminal event."""

    def __init__(self, is_progress: Callable[[Event], bool], is_terminal: Callable[[Event], bool]) -> None:
        self._is_progress = is_progress
        self._is_terminal = is_terminal
        self._history: list[Event] = []
        self._subscribers: list[asyncio.Queue[Event]] = []

    def emit(self, event: Event) -> None:
        if self._history and self._is_progress(event) and self._is_progress(self._history[-1]):
            self._history[-1] = event  # only the latest progress is worth replaying
        else:
            self._history.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    async def follow(self) -> AsyncIterator[Event]:
        """Every event from the start (replayed), then live ones, until a terminal event."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        for event in self._history:
            queue.put_nowait(event)
        self._subscribers.append(queue)
        try:
            while True:
                event = await queue.get()
                yield event
                if self._is_terminal(event):
                    return
        finally:
            self._subscribers.remove(queue)
