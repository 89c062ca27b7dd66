"""Machine-readable output of predictions: JSON, JSON Lines and CSV writers, and ``--resume``.

Writers take finished batches and flush after each, writing whole lines only, so a run that is
killed keeps every completed record. No Click or Rich here.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from typing import IO

from .pipeline import Record

FORMATS = ("table", "json", "jsonl", "csv")
CSV_FIELDS = ("path", "rank", "index", "wnid", "label", "probability", "error")
EXTENSION_FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "table"}


def format_for_path(path: str) -> str | None:
    return EXTENSION_FORMATS.get(os.path.splitext(path)[1].lower())


def _prob(p: float) -> float:
    return float(f"{p:.6g}")


def record_dict(r: Record) -> dict:
    d = r.to_dict()
    for p in d.get("predictions", ()):
        p["probability"] = _prob(p["probability"])
    return d


def csv_rows(r: Record) -> list[list]:
    if r.error is not None:
        return [[r.path, "", "", "", "", "", r.error]]
    return [[r.path, p.rank, p.index, p.wnid, p.label, _prob(p.probability), ""] for p in r.predictions]


class Writer:
    """Base: ``write(batch)`` per finished batch, ``close()`` at the end."""

    def __init__(self, stream: IO[str], append: bool = False):
        self.stream = stream
        self.append = append

    def write(self, records: Iterable[Record]) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        self.stream.flush()


class JsonlWriter(Writer):
    def write(self, records):
        self.stream.write("".join(json.dumps(record_dict(r), ensure_ascii=False) + "\n" for r in records))
        self.stream.flush()


class CsvWriter(Writer):
    def __init__(self, stream, append=False):
        super().__init__(stream, append)
        if not append:
            self.stream.write(_csv_line(CSV_FIELDS))
            self.stream.flush()

    def write(self, records):
        self.stream.write("".join(_csv_line(row) for r in records for row in csv_rows(r)))
        self.stream.flush()


class JsonWriter(Writer):
    """One JSON array, streamed: ``[`` first, a record per line, ``]`` on close."""

    def __init__(self, stream, append=False):
        super().__init__(stream, append)
        self.count = 0
        self.stream.write("[")

    def write(self, records):
        parts = []
        for r in records:
            parts.append(("," if self.count else "") + "\n  " + json.dumps(record_dict(r), ensure_ascii=False))
            self.count += 1
        self.stream.write("".join(parts))
        self.stream.flush()

    def close(self):
        self.stream.write("\n]\n" if self.count else "]\n")
        self.stream.flush()


WRITERS = {"jsonl": JsonlWriter, "csv": CsvWriter, "json": JsonWriter}


def _csv_line(row) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(row)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# --resume


def read_completed(path: str, fmt: str) -> tuple[set[str], list[str]]:
    """From an earlier ``-o`` file: the paths classified successfully, and the text to keep.

    Error records (to be retried) and a last line cut short by a kill are dropped. Returns
    ``(done_paths, kept_lines)``; for CSV the header is the first kept line.
    """
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"--resume works with jsonl or csv output, not {fmt}")
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        lines.pop()  # no final newline: the last line was cut short
    done: set[str] = set()
    kept: list[str] = []
    if fmt == "jsonl":
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "predictions" in rec and rec.get("path") not in done:
                done.add(rec["path"])
                kept.append(line)
        return done, kept
    if not lines:
        return done, kept
    header, body = lines[0], lines[1:]
    kept.append(header)
    rows_by_path: dict[str, list[str]] = {}
    for line in body:
        try:
            row = next(csv.reader([line]))
        except (csv.Error, StopIteration):
            continue
        if len(row) != len(CSV_FIELDS) or row[6]:
            continue
        rows_by_path.setdefault(row[0], []).append(line)
    # A batch cut short by a kill can leave a path with only its first few rows: such a path is
    # complete only with ranks 1..n, n being the most rows any path has.
    expected = max((len(rows) for rows in rows_by_path.values()), default=0)
    for p, rows in rows_by_path.items():
        ranks = [next(csv.reader([line]))[1] for line in rows]
        if ranks == [str(i) for i in range(1, expected + 1)]:
            done.add(p)
            kept.extend(rows)
    return done, kept


def rewrite_kept(path: str, kept: list[str]) -> None:
    """Atomically replace ``path`` with ``kept`` lines (failed records dropped before a retry)."""
    tmp = f"{path}.resume-tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write("".join(line + "\n" for line in kept))
    os.replace(tmp, path)
