"""``textunes`` console script: one subcommand per module in ``textunes.commands``.

Each command module exposes ``register(subparsers)`` which adds its parser and sets
``func(args) -> int``. Heavy imports happen inside ``func`` so ``textunes --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from engine.errors import TexTuneSError, UserInputError

COMMANDS = ("generate", "categories", "analyze", "bot", "worker")


class _OneLineErrors(argparse.ArgumentParser):
    """argparse prints the usage block before its error; ours is one line (exit status 2 as before)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(prog="textunes", description="Custom background music from categories or text.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"textunes.commands.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet must not break the others
            if exc.name != f"textunes.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every failure is one line on stderr and exit status 2 (argparse's own usage
    errors are 2 as well); ``TEXTUNES_DEBUG=1`` re-raises unexpected errors with their traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserInputError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (TexTuneSError, OSError) as exc:  # missing models, a backend that cannot load, disk errors
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if os.environ.get("TEXTUNES_DEBUG"):
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {_one_line(exc)} (TEXTUNES_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 2
