"""Rendering rows for people (Rich tables) — the only module besides ``cli`` that uses Rich."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table


def console(stderr: bool = False, file=None) -> Console:
    """A Rich console; colour only on a terminal and never with ``NO_COLOR`` (Rich honours it)."""
    stream = file or (sys.stderr if stderr else sys.stdout)
    return Console(file=stream, stderr=stderr, highlight=False, soft_wrap=False,
                   width=None if stream.isatty() else 160)


def table(
    columns: Sequence[str | tuple[str, str]],
    rows: Sequence[Sequence],
    title: str | None = None,
    sections: Sequence[int] = (),
    footer: Sequence | None = None,
    caption: str | None = None,
) -> Table:
    """A Rich table; ``columns`` as ``name`` or ``(name, justify)``; a rule after each row index in ``sections``."""
    t = Table(title=title, caption=caption, show_footer=footer is not None, title_justify="left",
              caption_justify="left")
    for i, col in enumerate(columns):
        name, justify = (col, "left") if isinstance(col, str) else col
        t.add_column(name, justify=justify, footer=str(footer[i]) if footer is not None else "")
    cuts = set(sections)
    for i, row in enumerate(rows):
        t.add_row(*("" if v is None else str(v) for v in row), end_section=i in cuts)
    return t
