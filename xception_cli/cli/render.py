"""Rows for people: a Rich console and tables (colour only on a terminal, never with NO_COLOR)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..output.paths import shown


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
    wrap_headers: bool = False,
    fold_text_at: int | None = None,
) -> Table:
    """A Rich table; ``columns`` as ``name`` or ``(name, justify)``; a rule after each row index in ``sections``.

    Cells and footers are data, never Rich markup (a file named ``[conceal]a.jpg`` shows as named;
    labels are user text too), with control characters escaped as ``output.paths.shown`` does, so
    nothing in a name can drive the terminal. Text columns keep their longest word whole unless
    ``fold_text_at``: then a longer word (a long path) may fold over lines, so a narrow terminal
    keeps every column."""
    t = Table(title=title, caption=caption, show_footer=footer is not None, title_justify="left",
              caption_justify="left")
    cells = [["" if v is None else shown(str(v)) for v in row] for row in rows]
    for i, col in enumerate(columns):
        name, justify = (col, "left") if isinstance(col, str) else col
        foot = shown(str(footer[i])) if footer is not None else ""
        words = [len(w) for text in (name, foot, *(r[i] for r in cells)) for w in text.split()]
        if justify == "right":
            # Numbers: the column is exactly as wide as its widest cell (and header, unless
            # ``wrap_headers``: then it may wrap at spaces), so Rich never cuts or wraps a number.
            width = max([max(words, default=1) if wrap_headers else len(name), len(foot),
                         *(len(r[i]) for r in cells)])
            t.add_column(name, justify=justify, footer=Text(foot), width=width)
        else:  # text (paths, labels) wraps when the terminal is narrow
            least = max(words, default=1)
            if fold_text_at is not None:
                least = min(least, max(fold_text_at, len(name)))
            t.add_column(name, justify=justify, footer=Text(foot), min_width=least, overflow="fold")
    cuts = set(sections)
    for i in range(len(cells)):
        t.add_row(*(Text(c) for c in cells[i]), end_section=i in cuts)
    return t


def fits(con: Console, t: Table) -> bool:
    """Whether a ``table()`` can be drawn in ``con``'s width without cutting anything."""
    from rich.measure import Measurement

    # The table's natural width (each column as wide as its widest cell): Rich's own shrinking
    # does not respect minimum widths, so a table that fits only when shrunk may get cut.
    natural = Measurement.get(con, con.options.update(max_width=100_000), t).maximum
    return natural <= con.width


def fitted_table(con: Console, columns, rows, drop: Sequence[int] = (), footer=None, caption: str | None = None,
                 **kw) -> Table:
    """``table()`` that fits ``con``: the columns listed in ``drop`` are left out, in that order,
    until it does (whole columns go, never digits); the caption then says so."""
    keep = list(range(len(columns)))
    left_out: list[str] = []
    for i, wrap in [(None, False), (None, True), *((i, True) for i in drop)]:
        if i is not None:
            keep.remove(i)
            name = columns[i] if isinstance(columns[i], str) else columns[i][0]
            left_out.append(name)
        t = table([columns[j] for j in keep], [[r[j] for j in keep] for r in rows],
                  footer=[footer[j] for j in keep] if footer is not None else None, wrap_headers=wrap,
                  caption=caption if not left_out else (caption or "") + " Left out at this width: "
                  + ", ".join(left_out) + " (widen the terminal, or use -f json).", **kw)
        if fits(con, t):
            break
    return t
