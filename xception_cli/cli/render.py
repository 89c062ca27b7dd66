"""Rows for people: a Rich console, and tables that fit the terminal they are printed on.

A table decides its columns from the console's width before Rich draws it: numbers keep every
digit (their column is as wide as the widest), paths fold at their separators and text at its
spaces; when that is not enough, number headers wrap at spaces, long headers are abbreviated,
and whole columns are left out in the order the caller gives, each named in the caption. A
name is folded mid-word only when nothing else makes room.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len, chop_cells
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..output.paths import shown

LONGEST_KEPT_WHOLE = 30  # a word or file name longer than this may fold mid-name before columns go
KINDS = ("text", "path", "number", "code")


def console(stderr: bool = False, file=None) -> Console:
    """A Rich console; colour only on a terminal and never with ``NO_COLOR`` (Rich honours it)."""
    stream = file or (sys.stderr if stderr else sys.stdout)
    return Console(file=stream, stderr=stderr, highlight=False, soft_wrap=False,
                   width=None if stream.isatty() else 160)


@dataclass(frozen=True)
class Column:
    """A column: ``text`` wraps at spaces, ``path`` folds at separators, ``number`` (right-aligned)
    and ``code`` (an identifier) are never broken. ``short``: the header when space is short."""

    name: str
    kind: str = "text"
    short: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")

    @classmethod
    def of(cls, spec: str | tuple[str, str] | Column) -> Column:
        """``Column``, ``"name"`` (text), ``("name", kind)``, or ``("name", "right")`` (a number)."""
        if isinstance(spec, Column):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        name, kind = spec
        return cls(name, {"right": "number", "left": "text"}.get(kind, kind))


def words(text: str) -> list[str]:
    return text.split() or [""]


def path_pieces(path: str) -> list[str]:
    """A path cut after each separator: ``a/b/c.jpg`` -> ``a/``, ``b/``, ``c.jpg``."""
    return [p for p in re.split(r"(?<=[/\\])", path) if p] or [""]


def fold_path(path: str, width: int) -> list[str]:
    """``path`` in lines of at most ``width`` cells, broken after separators; a name longer than a
    line (only then) is cut inside."""
    lines = [""]
    for piece in path_pieces(path):
        if lines[-1] and cell_len(lines[-1] + piece) > width:
            lines.append("")
        if cell_len(lines[-1] + piece) <= width:
            lines[-1] += piece
        else:
            lines[-1:] = chop_cells(lines[-1] + piece, width)
    return lines


def widest_word(text: str) -> int:
    return max(cell_len(w) for w in words(text))


@dataclass
class _Layout:
    keep: list[int]
    widths: list[int]
    dropped: list[str]


class _Sizes:
    """What one column needs at each level of squeezing (widths without padding)."""

    def __init__(self, col: Column, cells: list[str]):
        data = max([0, *(cell_len(c) for c in cells)])
        short = col.short or col.name
        self.full = max(data, cell_len(col.name))  # everything on one line
        self.wrapped = max(widest_word(col.name), data if col.kind in ("number", "code") else 0)
        if col.kind in ("text", "path"):
            split = path_pieces if col.kind == "path" else words
            self.whole = max([1, *(cell_len(w) for c in cells for w in split(c))])  # the longest name
            whole = min(self.whole, LONGEST_KEPT_WHOLE)
            self.wrapped = max(self.wrapped, whole)  # no name folded inside
            self.short = max(widest_word(short), whole)
            self.hard = max(widest_word(short), 4)  # names fold inside: the last resort
        else:
            self.short = self.hard = max(widest_word(short), data)

    def least(self, level: int, kind: str) -> int:
        """Level 0: all on one line; 1: headers of numbers wrap at spaces; 2: text and paths fold;
        3: short headers; 4: names fold inside."""
        if level == 1 and kind in ("text", "path"):
            return self.full
        return (self.full, self.wrapped, self.wrapped, self.short, self.hard)[level]


class FittedTable:
    """A table laid out for the width it is drawn in (a Rich renderable: ``console.print(t)``).

    Cells are data, never Rich markup (a file named ``[conceal]a.jpg`` shows as named; labels are
    user text too), with control characters escaped as ``output.paths.shown`` does, so nothing in
    a name can drive the terminal."""

    def __init__(self, columns, rows, title=None, sections=(), footer=None, caption=None, drop=(), more=""):
        self.columns = [Column.of(c) for c in columns]
        self.cells = [["" if v is None else shown(str(v)) for v in row] for row in rows]
        self.footer = None if footer is None else ["" if v is None else shown(str(v)) for v in footer]
        self.title, self.sections, self.caption = title, set(sections), caption
        self.drop, self.more = list(drop), more
        foot = self.footer or [""] * len(self.columns)
        self.sizes = [_Sizes(c, [r[i] for r in self.cells] + [foot[i]]) for i, c in enumerate(self.columns)]

    def _least(self, keep: list[int], level: int) -> int:
        """The narrowest the table can be at ``level`` with the columns ``keep`` (borders, padding)."""
        return sum(self.sizes[i].least(level, self.columns[i].kind) for i in keep) + 3 * len(keep) + 1

    def layout(self, width: int) -> _Layout:
        """The first arrangement that fits ``width``, from the roomiest to the tightest: numbers'
        headers wrap, text and paths fold, headers shorten, then columns go in the ``drop`` order
        (any that fit again once a later one is gone come back, most important first)."""
        everything = list(range(len(self.columns)))
        tries = [(level, 0) for level in range(4)] + [(3, n) for n in range(1, len(self.drop) + 1)]
        level, gone = 4, len(self.drop)
        for lv, n in tries:
            if self._least([i for i in everything if i not in self.drop[:n]], lv) <= width:
                level, gone = lv, n
                break
        out = self.drop[:gone]
        for i in reversed(out[:-1] if level < 4 else []):  # one left out before a wider one may fit again
            if self._least([j for j in everything if j not in out or j == i], level) > width:
                break
            out = [j for j in out if j != i]
        keep = [i for i in everything if i not in out]
        widths = [self.sizes[i].least(level, self.columns[i].kind) for i in keep]
        room = width - self._least(keep, level)
        # Room left, in this order: text and path columns until no name in them is cut (one longer
        # than LONGEST_KEPT_WHOLE may be), a cell at a time in turn; numbers' headers their full
        # words (not the short form); text until nothing folds; numbers' headers on one line.
        folded = [k for k, i in enumerate(keep) if self.columns[i].kind in ("text", "path")]
        for goal in ("whole", "wrapped", "full", "one line"):
            if goal in ("wrapped", "one line"):  # a header is whole or not: all the cells it needs, or none
                for k, i in enumerate(keep):
                    gap = getattr(self.sizes[i], "full" if goal == "one line" else goal) - widths[k]
                    if k not in folded and 0 < gap <= room:
                        widths[k] += gap
                        room -= gap
                continue
            targets = {k: min(getattr(self.sizes[keep[k]], goal), self.sizes[keep[k]].full) for k in folded}
            while room > 0 and (short_of := [k for k in folded if widths[k] < targets[k]]):
                for k in short_of[:room]:
                    widths[k] += 1
                room -= len(short_of[:room])
        return _Layout(keep, widths, [self.columns[i].name for i in out])

    def header(self, i: int, width: int) -> str:
        """The column's name, or its short form when a word of the name does not fit ``width``."""
        col = self.columns[i]
        return col.name if widest_word(col.name) <= width or not col.short else col.short

    def _caption(self, lay: _Layout) -> str | None:
        shown_names = {self.columns[i].name for i in lay.keep}
        text = self.caption(shown_names) if callable(self.caption) else (self.caption or "")
        short = [(self.header(i, w), self.columns[i].name) for i, w in zip(lay.keep, lay.widths)]
        short = [(a, b) for a, b in short if a != b]
        if short:
            text += " " + "; ".join(f"{a} = {b}" for a, b in short) + "."
        if lay.dropped:
            text += (f" Left out at this width: {', '.join(lay.dropped)} (widen the terminal"
                     + (f", or use {self.more}" if self.more else "") + ").")
        return text.strip() or None

    def build(self, width: int) -> Table:
        """The Rich table for ``width`` cells."""
        lay = self.layout(width)
        t = Table(title=self.title, caption=self._caption(lay), show_footer=self.footer is not None,
                  title_justify="left", caption_justify="left")
        for i, w in zip(lay.keep, lay.widths):
            foot = self.footer[i] if self.footer is not None else ""
            t.add_column(Text(self.header(i, w)), justify="right" if self.columns[i].kind == "number" else "left",
                         footer=Text(foot), width=w, overflow="fold")
        for n, row in enumerate(self.cells):
            cells = [Text("\n".join(fold_path(row[i], w))) if self.columns[i].kind == "path" else Text(row[i])
                     for i, w in zip(lay.keep, lay.widths)]
            t.add_row(*cells, end_section=n in self.sections)
        return t

    def __rich_console__(self, console: Console, options):
        yield self.build(options.max_width)


def table(
    columns: Sequence[str | tuple[str, str] | Column],
    rows: Sequence[Sequence],
    title: str | None = None,
    sections: Sequence[int] = (),
    footer: Sequence | None = None,
    caption: str | Callable[[set[str]], str] | None = None,
    drop: Sequence[int] = (),
    more: str = "",
) -> FittedTable:
    """A table that fits the console it is printed in; ``columns`` as ``Column``, ``name`` (text)
    or ``(name, kind)`` (``"right"``: a number); a rule after each row index in ``sections``.

    ``drop``: the columns that may be left out, in the order they go, when the rest cannot fit
    (the caption then names them, with ``more``: where to see everything, e.g. ``-f json``).
    ``caption`` may be a function of the names of the columns shown (notes on a column that was
    left out need not be said)."""
    return FittedTable(columns, rows, title, sections, footer, caption, drop, more)
