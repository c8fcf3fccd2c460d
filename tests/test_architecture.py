"""The import graph of bot/, engine/ and textunes/, read with ``ast``: no cycles, and the layers hold.

Every ``import`` counts for cycles, wherever it is written (module level or inside a function: a
function-level import only hides a cycle until that function runs). Only ``if TYPE_CHECKING:``
blocks are left out (they never run). For what bot/ pulls in at start-up, only module-level imports
are followed, transitively through our own modules: the bot process must never load torch or
transformers, and engine/ must never import discord.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("bot", "engine", "textunes")
HEAVY = {"torch", "transformers", "torchaudio"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, *, top_level_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements, skipping TYPE_CHECKING blocks (and, if asked, function and class bodies)."""
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> set[str]:
    """The modules an import statement loads (ours by name; others by their top-level package)."""
    names: set[str] = set()
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    else:
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        names = {base}
        names |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known}
    out = set()
    for name in names:
        if name.split(".")[0] in PACKAGES:
            while name and name not in known:  # "bot.delivery.plan.JobPlan" -> the module part
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
        else:
            out.add(name.split(".")[0])
    return out


def import_graph(*, top_level_only: bool) -> dict[str, set[str]]:
    known = our_modules()
    graph = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        for node in _imports(tree, top_level_only=top_level_only):
            edges |= _targets(module, path, node, known)
        graph[module] = edges - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among our modules, as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, [*path, nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def loaded_at_start(graph: dict[str, set[str]], roots: list[str]) -> set[str]:
    """Everything importing ``roots`` loads, following module-level imports through our modules
    (and each module's parent packages, which Python runs first)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:n]) for n in range(1, len(parts)) if ".".join(parts[:n]) in graph)
        todo.extend(graph.get(module, ()))
    return seen


def test_the_checker_sees_cycles_and_layers() -> None:
    """The checks below could fail: a made-up graph with a cycle and a heavy import is caught."""
    graph = {"bot.a": {"bot.b"}, "bot.b": {"engine.c"}, "engine.c": {"bot.a", "torch"}}
    assert find_cycle(graph) == ["bot.a", "bot.b", "engine.c", "bot.a"]
    assert "torch" in loaded_at_start(graph, ["bot.a"])
    assert find_cycle({"bot.a": {"bot.b"}, "bot.b": set()}) is None


def test_no_import_cycle_anywhere() -> None:
    graph = import_graph(top_level_only=False)
    assert len(graph) > 40  # bot/, engine/ and textunes/ were all read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_bot_loads_no_model_library() -> None:
    graph = import_graph(top_level_only=True)
    bot_modules = [m for m in graph if m == "bot" or m.startswith("bot.")]
    loaded = loaded_at_start(graph, bot_modules)
    heavy = sorted(loaded & HEAVY)
    culprits = sorted(m for m in loaded if graph.get(m, set()) & HEAVY)
    assert not heavy, f"bot/ loads {heavy} at import time through {culprits}"


def test_bot_never_imports_a_model_or_document_parser_even_in_a_function() -> None:
    """bot/ talks to the engine's API: no torch/transformers and no text model or parser module."""
    graph = import_graph(top_level_only=False)
    text_models = {"engine.text.analyzer", "engine.text.models", "engine.text.summary", "engine.text.emotion"}
    for module, edges in graph.items():
        if module.split(".")[0] != "bot":
            continue
        assert not edges & HEAVY, (module, edges & HEAVY)
        # documents are read and analysed in the engine's sandbox process, never in the bot's
        assert not edges & text_models, (module, edges & text_models)


def test_the_engine_never_imports_discord() -> None:
    graph = import_graph(top_level_only=False)
    offenders = sorted(m for m, edges in graph.items() if m.split(".")[0] == "engine" and "discord" in edges)
    assert not offenders, offenders


# Discord's own words: the delivery ledger (tokens, message ids, claims) is the bot's
DISCORD_WORDS = re.compile(r"interaction|discord|message_id", re.IGNORECASE)


def discord_words_in_code(source: str) -> list[tuple[int, str]]:
    """(line, token) for each identifier or string in ``source`` that names a Discord concept;
    comments and docstrings (prose) are left out."""
    docstrings = {
        node.body[0].value.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
        and isinstance(node.body[0].value.value, str)
    }
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.STRING and token.start[0] in docstrings:
            continue
        if token.type in (
            tokenize.NAME,
            tokenize.STRING,
            getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING),
        ) and DISCORD_WORDS.search(token.string):
            found.append((token.start[0], token.string))
    return found


def test_the_word_checker_sees_names_and_strings_but_not_prose() -> None:
    source = (
        '"""Talks about Discord in prose."""\n'
        "# an interaction token, in a comment\n"
        "def f(interaction_token):\n"
        '    """Docstring: message_id."""\n'
        '    return {"message_id": 1}\n'
    )
    assert [line for line, _ in discord_words_in_code(source)] == [3, 5]


def test_the_engine_has_no_discord_words_in_code() -> None:
    offenders = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        if "migrations" in path.relative_to(ROOT).parts:  # history: old migrations name old columns
            continue
        offenders += [
            f"{path.relative_to(ROOT)}:{line}: {word[:40]}"
            for line, word in discord_words_in_code(path.read_text())
        ]
    assert not offenders, offenders
