"""``--resume``: what an earlier output already holds, read by one reader per format and settled
by one rule, for an ``-o FILE`` and for a folder of shards alike.

A reader turns a file into ``Entry`` objects (one per recorded input, in file order). ``settle``
applies the rule: failures are dropped (retried); a record that was cut short by a kill is
dropped (redone); each input is kept once; and an earlier output made otherwise — another number
of labels per image, embeddings with other options — is refused before any work. Inputs are
recognised by ``file_id`` (what identifies the file); records written before records carried it
are matched by their path, resolved from the current folder and from the output's folder.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from ..errors import OutputError
from .paths import from_record, path_key
from .records import COMMAND, CSV_FIELDS, CSV_HEADER, CSV_HEADER_V0, RUN_OPTIONS, csv_line

RECORD_START = '{"path": '  # how every JSON record of this tool begins


@dataclass
class Entry:
    """One recorded input: its name, identity, outcome, and what it says about how it was made."""

    path: str
    file_id: str | None
    ok: bool
    labels: int | None = None  # predictions: labels recorded
    options: dict | None = None  # embeddings: how they were made
    text: str = ""  # the record as written (JSON Lines, CSV), kept when the file is resumed
    may_be_cut: bool = False  # CSV's last record: a kill can stop it between two rows
    vector: object = None  # npz/parquet embeddings: the vector
    error: str | None = None


@dataclass
class Expect:
    """What this run writes: the record key, labels per image, the embedding options."""

    key: str
    labels: int | None = None
    options: dict | None = None


def sniff_format(data: bytes) -> str | None:
    """The format of an earlier output (``None`` if empty); ``ValueError`` for anything else."""
    if data.startswith(b"PK\x03\x04"):
        return "npz"
    if data.startswith(b"PAR1"):
        return "parquet"
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    head = text.lstrip()
    if not head:
        return None
    first = text.split("\n", 1)[0]
    if first in (CSV_HEADER, CSV_HEADER_V0):
        return "csv"
    if head.startswith("["):
        return "json"
    if head.startswith("{"):
        return "jsonl"
    raise ValueError("not an earlier xception output (neither JSON Lines nor CSV)")


def read_jsonl(data: bytes, key: str, strict: bool = False) -> list[Entry]:
    """Entries of JSON Lines. A last line without its newline was cut short by a kill: dropped,
    when it begins as this tool's records do. ``ValueError`` when the file holds the other
    command's records, and with ``strict`` (a file to resume into, a shard: never rewritten unless
    it is this tool's) for any line that is not a record of this command."""
    other = "embedding" if key == "predictions" else "predictions"
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    cut = lines.pop()  # "" after the final newline, or a last line cut short by a kill
    if strict and cut and not cut.startswith(RECORD_START):
        raise ValueError(f"line {len(lines) + 1} is not a record of xception {COMMAND[key]}")
    entries = []
    for n, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            rec = None
        if isinstance(rec, dict) and other in rec:
            raise ValueError(f"holds {COMMAND[other]} output, not {COMMAND[key]} output")
        if not (isinstance(rec, dict) and isinstance(rec.get("path"), str) and (key in rec or "error" in rec)):
            if strict:
                raise ValueError(f"line {n} is not a record of xception {COMMAND[key]}")
            continue
        ok = key in rec and "error" not in rec
        value = rec.get(key)
        labels = len(value) if ok and key == "predictions" and isinstance(value, list) and value else None
        options = rec.get("options") if isinstance(rec.get("options"), dict) else None
        entries.append(Entry(from_record(rec["path"], rec.get("path_base64")), _text_or_none(rec.get("file_id")), ok,
                             labels=labels, options=options, text=line + "\n",
                             vector=value if ok and key == "embedding" else None,
                             error=None if ok else str(rec.get("error"))))
    return entries


def read_csv(data: bytes, key: str, strict: bool = False) -> list[Entry]:
    """Entries of this tool's CSV (one row per label, a record's rows together). Rows after a
    damaged one and a last row cut short are dropped; the last record may be cut between rows."""
    if key != "predictions":
        raise ValueError("holds predict output (CSV), not embed output")
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    if not text.endswith("\n"):  # a last row cut short by a kill
        text = text[: text.rfind("\n") + 1]
    rows = _csv_rows(text)
    if not rows or ",".join(rows[0]) not in (CSV_HEADER, CSV_HEADER_V0):
        raise ValueError("not this tool's CSV (its header differs)")
    width = len(rows[0])
    groups: list[list[list[str]]] = []
    for row in rows[1:]:
        if len(row) != width:
            break
        row = row + [""] * (len(CSV_FIELDS) - width)  # an older file: no file_id column
        if groups and (groups[-1][0][0], groups[-1][0][7]) == (row[0], row[7]) and row[1] != "1" and not row[6]:
            groups[-1].append(row)
        else:
            groups.append([row])
    entries = []
    for g in groups:
        ok = not g[0][6]
        ranks = [r[1] for r in g]
        if ok and ranks != [str(i) for i in range(1, len(g) + 1)]:
            continue  # damaged: redone
        entries.append(Entry(g[0][0], g[0][7] or None, ok, labels=len(g) if ok else None,
                             text="".join(csv_line(r) for r in g), error=None if ok else g[0][6]))
    if entries:
        entries[-1].may_be_cut = True
    return entries


def _csv_rows(text: str) -> list[list[str]]:
    rows = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        try:
            rows.append(next(reader))
        except (csv.Error, StopIteration):
            return rows


def _text_or_none(v) -> str | None:
    return v if isinstance(v, str) and v else None


def check_same_options(where: str, earlier: dict | None, now: dict | None) -> None:
    """``OutputError`` when an earlier output was made with other options (``RUN_OPTIONS``)."""
    if not earlier or not now:
        return
    keys = [k for k in RUN_OPTIONS if k in earlier and k in now]
    if "weights_md5" in keys and earlier["weights_md5"] and now["weights_md5"]:
        keys.remove("weights")  # one file under two names is one network; judged by its contents
    elif "weights" in keys and isinstance(earlier["weights"], str):  # written before outputs named the file
        earlier = {**earlier, "weights": earlier["weights"].rsplit("/", 1)[-1]}  # only: it held its path
    mismatch = {k: (earlier[k], now[k]) for k in keys if earlier[k] != now[k]}
    if "weights_md5" in mismatch:  # said as what it is
        a, b = mismatch.pop("weights_md5")
        mismatch["weights"] = (f"{earlier.get('weights')} (md5 {a})", f"{now.get('weights')}, md5 {b}")
    if mismatch:
        raise OutputError(f"{where}: holds results made with other options "
                          + ", ".join(f"{k}={a} (now {b})" for k, (a, b) in mismatch.items())
                          + ": resume with the same options, or choose another -o")


def settle(entries: list[Entry], expect: Expect, where: str) -> list[Entry]:
    """The successful entries to keep, each input once; ``OutputError`` for an output made otherwise."""
    kept, seen = [], set()
    for e in entries:
        if not e.ok:
            continue
        if expect.labels is not None and e.labels is not None and e.labels != expect.labels:
            if e.may_be_cut and e.labels < expect.labels:
                continue  # the last record, cut between its rows by a kill: redone
            raise OutputError(f"{where}: holds {e.labels} label(s) per image; this run gives {expect.labels}: "
                              f"resume with -k {e.labels}, or choose another -o")
        check_same_options(where, e.options, expect.options)
        ident = e.file_id or e.path
        if ident not in seen:
            seen.add(ident)
            kept.append(e)
    return kept


@dataclass
class Done:
    """The inputs an earlier output holds: ``name in done`` for a new run's input names."""

    ids: set = field(default_factory=set)
    legacy: set = field(default_factory=set)  # path keys of records without file_id
    bases: tuple = ()

    def add(self, entries: list[Entry]) -> None:
        import os

        for e in entries:
            if e.file_id:
                self.ids.add(e.file_id)
            elif "://" in e.path:
                self.legacy.add(e.path)
            else:
                self.legacy.add(path_key(e.path))
                self.legacy.update(path_key(os.path.join(b, e.path)) for b in self.bases if not os.path.isabs(e.path))

    def __contains__(self, name: str) -> bool:
        from .paths import file_id, is_uri

        if file_id(name) in self.ids:
            return True
        return bool(self.legacy) and (name if is_uri(name) else path_key(name)) in self.legacy

    def __len__(self) -> int:
        return len(self.ids) + len(self.legacy)
