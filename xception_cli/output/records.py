"""Records as text: JSON Lines, JSON and CSV writers, one record per input.

Writers take finished batches and flush after each, writing whole lines only, so a run that is
killed keeps every completed record. Every record carries its input's ``file_id`` (see
``paths.file_id``): what ``--resume`` recognises it by.

File names that are not valid UTF-8 are written as valid UTF-8: each undecodable byte appears as
``\\xNN`` in ``path`` (readable), and JSON records carry the exact bytes in ``path_base64``.

CSV cells are the data as it is by default: the file is for programs, and ``path`` must read back
exactly (``--resume``). A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is a formula to a spreadsheet; ``CsvWriter(..., options={"csv_safe": True})`` (``predict
--csv-safe``) writes such a text cell with a leading ``'`` (OWASP's advice), so a spreadsheet
shows it as text. Records are still recognised by ``file_id`` when resuming.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import IO

from .paths import display_path, file_id

CSV_FIELDS = ("path", "rank", "index", "wnid", "label", "probability", "error", "file_id")
CSV_HEADER = ",".join(CSV_FIELDS)
CSV_HEADER_V0 = ",".join(CSV_FIELDS[:-1])  # files written before records carried file_id
# What makes two runs' records comparable (weights_md5: the weights file's contents, when it is a
# file; pooling and normalize: embeddings only). JSON Lines and Parquet carry them; CSV cannot.
RUN_OPTIONS = ("pooling", "normalize", "weights", "weights_md5", "resize", "precision")
COMMAND = {"predictions": "predict", "embedding": "embed"}  # the command whose records carry each key


def _prob(p: float) -> float:
    return float(f"{p:.6g}")


def record_dict(r, options: dict | None = None) -> dict:
    """A record as JSON: ``path`` (+ ``path_base64``), ``file_id``, then the result or ``error``;
    ``options``: how the result was made (``RUN_OPTIONS``), on every result's line."""
    text, raw = display_path(r.path)
    d: dict = {"path": text}
    if raw is not None:
        d["path_base64"] = raw
    d["file_id"] = file_id(r.path)
    body = r.to_dict()
    body.pop("path")
    for p in body.get("predictions", ()):
        p["probability"] = _prob(p["probability"])
    if options and "error" not in body:
        d["options"] = options
    d.update(body)
    return d


def csv_rows(r) -> list[list]:
    path, ident = display_path(r.path)[0], file_id(r.path)
    if r.error is not None:
        return [[path, "", "", "", "", "", r.error, ident]]
    return [[path, p.rank, p.index, p.wnid, p.label, _prob(p.probability), "", ident] for p in r.predictions]


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as the start of a formula


def csv_safe(row) -> list:
    """``row`` with each text cell that a spreadsheet would read as a formula written with a
    leading ``'`` (numbers are numbers: ``rank``, ``index`` and ``probability`` stay as they are)."""
    return ["'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v for v in row]


def csv_line(row) -> str:
    buf = io.StringIO()
    # The csv module quotes a field holding "\n" but not one holding a lone "\r" (with "\n" as line
    # terminator): such a row is quoted whole, or a reader would split it in two.
    quoting = csv.QUOTE_ALL if any("\r" in str(v) for v in row) else csv.QUOTE_MINIMAL
    csv.writer(buf, lineterminator="\n", quoting=quoting).writerow(row)
    return buf.getvalue()


class Writer:
    """Base: ``write(batch)`` per finished batch, ``close()`` at the end (always a valid document).

    ``append``: the stream continues an earlier file (no header); ``options``: for embeddings,
    how they were made (JSON Lines records them on every vector's line)."""

    def __init__(self, stream: IO[str], append: bool = False, options: dict | None = None):
        self.stream = stream
        self.append = append
        self.options = options

    def write(self, records: Iterable) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        self.stream.flush()


class JsonlWriter(Writer):
    def write(self, records):
        self.stream.write("".join(json.dumps(record_dict(r, self.options), ensure_ascii=False) + "\n"
                                  for r in records))
        self.stream.flush()


class CsvWriter(Writer):
    """CSV rows; ``options={"csv_safe": True}``: formula-looking text cells made text (``csv_safe``)."""

    def __init__(self, stream, append=False, options=None):
        super().__init__(stream, append, options)
        self._header = not append
        self._safe = csv_safe if (options or {}).get("csv_safe") else (lambda row: row)

    def _start(self) -> str:
        head, self._header = (CSV_HEADER + "\n" if self._header else ""), False
        return head

    def write(self, records):
        self.stream.write(self._start() + "".join(csv_line(self._safe(row)) for r in records for row in csv_rows(r)))
        self.stream.flush()

    def close(self):
        self.stream.write(self._start())
        super().close()


class JsonWriter(Writer):
    """One JSON array, streamed: a record per line, ``]`` on close (``[]`` when there were none)."""

    def __init__(self, stream, append=False, options=None):
        super().__init__(stream, append, options)
        self.count = 0

    def write(self, records):
        parts = []
        for r in records:
            parts.append(("," if self.count else "[") + "\n  "
                         + json.dumps(record_dict(r, self.options), ensure_ascii=False))
            self.count += 1
        self.stream.write("".join(parts))
        self.stream.flush()

    def close(self):
        self.stream.write("\n]\n" if self.count else "[]\n")
        self.stream.flush()


def text_of(records, writer_class, options: dict | None = None) -> str:
    """Records as one whole document of a text format (a shard)."""
    buf = io.StringIO()
    writer = writer_class(buf, options=options)
    writer.write(records)
    writer.close()
    return buf.getvalue()
