"""The one table of output formats, and ``choose_format``: which format a command writes.

Each format says its file extensions, which records it holds (``predictions`` from predict,
``embedding`` from embed), its writer, how it is written (record by record as the run goes —
``streaming`` — or whole when it ends), its reader (what ``--resume`` and shard reruns read back;
none: it cannot be resumed), and for which records Ray writes it as shards.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import OutputError
from .arrays import ArrayWriter, read_npz, read_parquet
from .html import HtmlWriter
from .paths import shown
from .records import COMMAND, CsvWriter, JsonlWriter, JsonWriter
from .resume import read_csv, read_jsonl


@dataclass(frozen=True)
class Format:
    name: str
    extensions: tuple[str, ...]
    heads: tuple[str, ...]  # record keys an -o FILE of this format holds
    writer: type | None  # records.Writer (streaming) or arrays.ArrayWriter (whole); None: drawn by the CLI
    streaming: bool  # written record by record (else whole, when the run ends)
    reader: Callable | None  # (data, key, strict) -> [resume.Entry]; None: cannot be resumed
    shard_heads: tuple[str, ...] = ()  # record keys Ray writes as shard files of this format
    terminal: bool = False  # drawn for people, never written to a file

    @property
    def resumable(self) -> bool:
        return self.reader is not None


BOTH = ("predictions", "embedding")
FORMATS = {f.name: f for f in (
    Format("table", (".txt",), ("predictions",), None, streaming=False, reader=None, terminal=True),
    Format("jsonl", (".jsonl", ".ndjson"), BOTH, JsonlWriter, True, read_jsonl, BOTH),
    Format("csv", (".csv",), ("predictions",), CsvWriter, True, read_csv, ("predictions",)),
    Format("json", (".json",), ("predictions",), JsonWriter, True, None),
    Format("npz", (".npz",), ("embedding",), ArrayWriter, False, read_npz),
    Format("parquet", (".parquet", ".pq"), ("embedding",), ArrayWriter, False, read_parquet, BOTH),
    Format("html", (".html", ".htm"), ("predictions",), HtmlWriter, False, None),  # a page for people (output.html)
)}


def format_of_path(path: str) -> str | None:
    """The format a file name's extension stands for, if any."""
    ext = os.path.splitext(path)[1].lower()
    return next((f.name for f in FORMATS.values() if ext in f.extensions), None)


def command_formats(key: str) -> tuple[str, ...]:
    """Every format the command producing ``key`` records writes (one file, the table, or shards)."""
    return tuple(f.name for f in FORMATS.values() if key in f.heads or key in f.shard_heads)


def formats_for(key: str, shards: bool = False) -> tuple[str, ...]:
    """The formats a command producing ``key`` records can write (to shards, or to one file)."""
    if shards:
        return tuple(f.name for f in FORMATS.values() if key in f.shard_heads)
    return tuple(f.name for f in FORMATS.values() if key in f.heads)


def _by_extension(output: str, allowed) -> str | None:
    """The format an ``-o`` name asks for; ``None`` without an extension (or for a device);
    ``OutputError`` for an extension no format owns."""
    chosen = format_of_path(output)
    ext = os.path.splitext(output)[1]
    if chosen is None and ext and not output.startswith("/dev/"):
        raise OutputError(f"{shown(output)}: no output format is written as {ext} files: name it "
                          + ", ".join(FORMATS[f].extensions[0] for f in allowed if not FORMATS[f].terminal)
                          + " or give -f")
    return chosen


def choose_report_format(explicit: str | None, output: str | None, allowed: tuple[str, ...], *, default: str,
                         terminal: bool, command: str) -> str:
    """The format of a report (``summary``, ``benchmark``, ``similar``), by the same rules: ``-f``,
    else ``-o``'s extension (the table may go to a ``.txt`` file), else the table on a terminal."""
    chosen = explicit or (_by_extension(output, allowed) if output else None)
    if chosen is None:
        chosen = "table" if terminal and not output and "table" in allowed else default
    if chosen not in allowed:
        names = [f"{f} ({FORMATS[f].extensions[0]})" for f in allowed]
        raise OutputError(f"{shown(output or '-')}: {command} writes {', '.join(names)}, not {chosen}")
    return chosen


def choose_format(explicit: str | None, output: str | None, key: str, *, terminal: bool = False,
                  shards: bool = False, resume: bool = False) -> str | None:
    """The format to write, decided once. ``explicit``: ``-f``; ``terminal``: stdout is one;
    ``shards``: ``-o`` is a folder or bucket prefix (Ray). ``None`` only when resuming a file of
    unknown extension: its own contents decide. ``OutputError`` for a combination that cannot be.
    """
    allowed = formats_for(key, shards)
    command = COMMAND[key]
    if explicit is not None:
        chosen = explicit
    elif shards:
        chosen = "jsonl"
    elif output:
        chosen = format_of_path(output) if resume else _by_extension(output, allowed)
        if chosen is None:
            if resume:
                return None
            chosen = "jsonl"
    else:
        chosen = "table" if terminal and "table" in allowed else "jsonl"
    fmt = FORMATS[chosen]
    if resume and explicit is None and output and fmt.terminal:
        return None  # --resume continues the file in its own format
    if resume and chosen == "html" and key in fmt.heads:
        raise OutputError(f"{shown(output or '-')}: an html page is written whole, --resume cannot continue it "
                          "(a run to resume writes -o FILE.jsonl)")
    if chosen not in allowed:
        files = [f for f in allowed if not FORMATS[f].terminal]
        where = " shards" if shards else ""
        hint = " (only as Ray shards: --ray -o DIR/)" if not shards and key in fmt.shard_heads else ""
        raise OutputError(f"{shown(output or '-')}: {command} writes{where} {', '.join(files[:-1])} or {files[-1]}, "
                          f"not {chosen}{hint}")
    if fmt.terminal and output:
        raise OutputError(f"{shown(output)}: the table is drawn on the terminal; -o writes "
                          + ", ".join(f for f in allowed if not FORMATS[f].terminal)
                          + " (name the file for one of them, or give -f)")
    if not fmt.streaming and not fmt.terminal and not output:
        raise OutputError(f"{chosen} output needs -o FILE")
    return chosen
