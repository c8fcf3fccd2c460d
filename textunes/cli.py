"""``textunes`` console script: one subcommand per module in ``textunes.commands``.

Each command module exposes ``register(subparsers)`` which adds its parser and sets
``func(args) -> int``. Heavy imports happen inside ``func`` so ``textunes --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from engine.errors import UserInputError

COMMANDS = ("generate", "categories", "analyze", "bot", "worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textunes", description="Custom background music from categories or text."
    )
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
