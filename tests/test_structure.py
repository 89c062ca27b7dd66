"""The package's shape, read from its source with ``ast`` (nothing of it is imported).

- no import cycle between its modules (imports inside functions count: they run too);
- Click and Rich only under ``cli/`` (the library returns rows; the terminal is the CLI's);
- the library never imports the CLI;
- no file over 450 lines;
- no block of 6 or more lines written twice.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xception_cli"
NAME = PACKAGE.name
# The shell: the Click commands, and `python -m xception_cli`, which only starts them.
SHELL = (f"{NAME}.cli", f"{NAME}.__main__")
TERMINAL_LIBRARIES = ("click", "rich")
MAX_LINES = 450
# Files allowed over MAX_LINES because each is one cohesive thing, with the reason. None today.
LONG_FILES: dict[str, str] = {}
SAME_LINES = 6


@cache
def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


@cache
def tree(name: str) -> ast.Module:
    path = modules()[name]
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def where(name: str, line: int) -> str:
    return f"{modules()[name].relative_to(PACKAGE.parent)}:{line}"


def in_shell(name: str) -> bool:
    return any(name == s or name.startswith(s + ".") for s in SHELL)


def _type_checking_only(module: ast.Module) -> set[int]:
    """Ids of import nodes under ``if TYPE_CHECKING:`` (never run, so no part of the import graph)."""
    ids = set()
    for node in ast.walk(module):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return ids


def targets(node: ast.Import | ast.ImportFrom, name: str) -> list[str]:
    """The modules one import statement in module ``name`` names: relative imports resolved, and
    ``from PACKAGE import name`` taken as the submodule where ``name`` is one."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    source = node.module
    if node.level:
        base = name.split(".")
        base = base[: len(base) - node.level + (1 if modules()[name].name == "__init__.py" else 0)]
        source = ".".join(base + ([node.module] if node.module else []))
    subs = (f"{source}.{alias.name}" for alias in node.names)
    return [sub if sub in modules() else source for sub in subs]


def imports(name: str) -> list[tuple[str, int]]:
    """(imported module, line) for every import in module ``name``, at any depth (an import inside
    a function runs too), except those under ``if TYPE_CHECKING:``, which never run."""
    module = tree(name)
    skip = _type_checking_only(module)
    return [
        (target, node.lineno)
        for node in ast.walk(module)
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skip
        for target in targets(node, name)
    ]


def internal(target: str) -> str | None:
    """The package module that importing ``target`` runs (its longest known prefix), or None."""
    parts = target.split(".")
    while parts:
        if ".".join(parts) in modules():
            return ".".join(parts)
        parts.pop()
    return None


@cache
def graph() -> dict[str, dict[str, int]]:
    """Module -> {module it imports: first line}. The package's own ``__init__`` is left out: it
    imports nothing when loaded (``test_the_package_init_loads_nothing``), only on attribute access."""
    edges: dict[str, dict[str, int]] = {}
    for name in modules():
        edges[name] = {}
        for target, line in imports(name):
            dep = internal(target)
            if dep is not None and dep != NAME and dep != name:
                edges[name].setdefault(dep, line)
    return edges


def strongly_connected(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return groups


def shortest_cycle(edges: dict[str, dict[str, int]], group: list[str]) -> list[str]:
    """A shortest cycle through the first module of ``group``, as ``a -> b (file:line)`` steps."""
    start, members = group[0], set(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier and start not in came_from:
        nxt = []
        for v in frontier:
            for w in sorted(edges[v]):
                if w in members and w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    path = [start]
    while True:
        path.append(came_from[path[-1]])
        if path[-1] == start:
            break
    path.reverse()
    return [f"{a} -> {b} ({where(a, edges[a][b])})" for a, b in zip(path, path[1:])]


def test_the_package_init_loads_nothing():
    """Why the graph may leave ``xception_cli/__init__.py`` out: when loaded it imports no module of
    the package (its names resolve on first use), so importing it can close no cycle."""
    loaded = [
        f"{where(NAME, node.lineno)} imports {target}"
        for node in tree(NAME).body if isinstance(node, (ast.Import, ast.ImportFrom))
        for target in targets(node, NAME) if internal(target) not in (None, NAME)
    ]
    assert not loaded, loaded


def test_no_import_cycle():
    edges = graph()
    cycles = [shortest_cycle(edges, group) for group in strongly_connected(edges)]
    report = "\n".join(
        f"cycle among {len(g)} modules ({', '.join(g)}):\n    " + "\n    ".join(c)
        for g, c in zip(strongly_connected(edges), cycles)
    )
    assert not cycles, "\n" + report


def test_click_and_rich_only_under_cli():
    found = [
        f"{where(name, line)} imports {target}"
        for name in modules() if not in_shell(name)
        for target, line in imports(name) if target.split(".")[0] in TERMINAL_LIBRARIES
    ]
    assert not found, "\n" + "\n".join(found)


def test_the_library_never_imports_the_cli():
    found = [
        f"{where(name, line)} imports {target}"
        for name in modules() if not in_shell(name)
        for target, line in imports(name) if in_shell(internal(target) or "")
    ]
    assert not found, "\n" + "\n".join(found)


def test_no_file_over_the_line_limit():
    lengths = {name: len(modules()[name].read_text(encoding="utf-8").splitlines()) for name in modules()}
    over = [
        f"{modules()[name].relative_to(PACKAGE.parent)}: {n} lines"
        for name, n in lengths.items()
        if n > MAX_LINES and str(modules()[name].relative_to(PACKAGE)) not in LONG_FILES
    ]
    assert not over, f"over {MAX_LINES} lines:\n" + "\n".join(over)


def _declarations(module: ast.Module) -> set[int]:
    """Lines that declare rather than do: import statements (two modules may well import the same
    names) and a function's signature, ``def`` to the line before its body (parallel realisations
    of one interface share it on purpose, as ``runtimes.openvino.build_model`` and
    ``export.onnx_graph.build_onnx`` share ``keras.applications``' arguments)."""
    lines = set()
    for node in ast.walk(module):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines.update(range(node.lineno, node.body[0].lineno))
    return lines


def _code_lines(name: str) -> list[tuple[int, str]]:
    """(line number, text with whitespace normalised) of each line that does something: not blank,
    not a comment, not a declaration."""
    skip = _declarations(tree(name))
    lines = []
    for number, text in enumerate(modules()[name].read_text(encoding="utf-8").splitlines(), 1):
        text = " ".join(text.split())
        if text and not text.startswith("#") and number not in skip:
            lines.append((number, text))
    return lines


def duplicate_blocks() -> list[str]:
    code = {name: _code_lines(name) for name in modules()}
    places: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
    for name, lines in code.items():
        for i in range(len(lines) - SAME_LINES + 1):
            places[tuple(text for _, text in lines[i:i + SAME_LINES])].append((name, i))

    def key_at(name: str, i: int):
        lines = code[name]
        return tuple(text for _, text in lines[i:i + SAME_LINES]) if 0 <= i <= len(lines) - SAME_LINES else None

    def shifted(where_: list[tuple[str, int]], by: int) -> list[tuple[str, int]] | None:
        keys = {key_at(n, i + by) for n, i in where_}
        if len(keys) != 1 or None in keys:
            return None
        moved = sorted((n, i + by) for n, i in where_)
        return moved if sorted(places[keys.pop()]) == moved else None

    found = []
    for key, at in places.items():
        if len(at) < 2 or shifted(at, -1) is not None:
            continue  # written once, or the middle of a longer block reported from its start
        length = SAME_LINES
        while shifted(at, length - SAME_LINES + 1) is not None:
            length += 1
        spans = [
            f"{where(n, code[n][i][0])}-{code[n][i + length - 1][0]}" for n, i in sorted(at)
        ]
        found.append(f"{length} lines written {len(at)} times, at " + ", ".join(spans)
                     + f"; they start: {key[0]!r}")
    return found


def test_no_block_written_twice():
    found = duplicate_blocks()
    assert not found, "\n" + "\n".join(found)
