"""A child process that exits the moment its parent dies (the model worker, the analysis sandbox)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading


def exit_with_parent(thread_name: str = "textunes-parent-watch") -> None:
    """Leave as soon as the parent dies (a SIGKILLed bot): our answer would have nowhere to go, and a
    long call (a MusicGen batch, a hostile document) would otherwise keep burning the machine."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name=thread_name, daemon=True).start()
