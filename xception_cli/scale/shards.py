"""Shard output: records written under a folder or a bucket prefix as shard files of
``SHARD_ROWS`` records, and read back so that a rerun skips what is recorded."""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .uris import filesystem, is_uri

SHARD_FORMATS = ("jsonl", "csv", "parquet")
SHARD_SUFFIX = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}


def is_shard_target(output: str | None) -> bool:
    return bool(output) and (output.endswith("/") or "://" in output or os.path.isdir(output))


SHARD_ROWS = 1000  # records per shard file


def shard_task(key: str) -> str:
    """The task a shard holds, in its name: ``predict`` or ``embed``."""
    return "embed" if key == "embedding" else "predict"


def _shard_fs(uri: str):
    import pyarrow.fs as pafs

    return filesystem(uri) if "://" in uri else (pafs.LocalFileSystem(), os.path.abspath(uri))


def _is_our_shard(name: str, task: str) -> bool:
    return name.startswith(f"xception-{task}-") and name.endswith(tuple(SHARD_SUFFIX.values()))


def _put(fs, path: str, data: bytes) -> None:
    """``data`` as the whole file ``path``: on a local disk through a hidden temporary file and a
    rename (a reader never sees half a shard); an object store's upload is whole anyway."""
    import pyarrow.fs as pafs

    if isinstance(fs, pafs.LocalFileSystem):
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return
    with fs.open_output_stream(path) as f:
        f.write(data)


def _parquet_bytes(records) -> bytes:
    """Records as Parquet: columns path, error, and predictions (list of structs) or embedding."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..output import record_dict

    recs = [record_dict(r) for r in records]
    cols = {"path": pa.array([r["path"] for r in recs], pa.string()),
            "path_base64": pa.array([r.get("path_base64") for r in recs], pa.string()),  # non-UTF-8 names
            "error": pa.array([r.get("error") for r in recs], pa.string())}
    if any(r.embedding is not None for r in records):
        cols["embedding"] = pa.array([None if r.embedding is None else np.asarray(r.embedding, np.float32).tolist()
                                      for r in records], pa.list_(pa.float32()))
    else:
        pred = pa.struct([("rank", pa.int32()), ("index", pa.int32()), ("wnid", pa.string()),
                          ("label", pa.string()), ("probability", pa.float64())])
        cols["predictions"] = pa.array([r.get("predictions") for r in recs], pa.list_(pred))
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf)
    return buf.getvalue()


class ShardFolderWriter:
    """Records written under a folder or bucket prefix as shard files
    ``xception-{predict|embed}-{run}-{n:05d}.{jsonl|csv|parquet}``, ``rows`` records each, each
    written whole as the results stream in; ``close()`` writes the last (also on Ctrl-C)."""

    def __init__(self, uri: str, fmt: str, key: str, rows: int = SHARD_ROWS, options: dict | None = None):
        import uuid

        from ..output import WRITERS

        self.fs, self.base = _shard_fs(uri)
        self.fmt, self.rows, self.writers, self.options = fmt, rows, WRITERS, options
        self.prefix = f"xception-{shard_task(key)}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.pending: list = []
        self.count = 0
        self.fs.create_dir(self.base, recursive=True)

    def write(self, records) -> None:
        self.pending += records
        while len(self.pending) >= self.rows:
            self._flush(self.pending[:self.rows])
            self.pending = self.pending[self.rows:]

    def close(self) -> None:
        if self.pending:
            self._flush(self.pending)
            self.pending = []

    def _flush(self, records) -> None:
        import io

        if self.fmt == "parquet":
            data = _parquet_bytes(records)
        else:
            buf = io.StringIO()
            writer = self.writers[self.fmt](buf, options=self.options)
            writer.write(records)
            writer.close()
            data = buf.getvalue().encode("utf-8", "surrogateescape")
        name = f"{self.prefix}-{self.count:05d}{SHARD_SUFFIX[self.fmt]}"
        _put(self.fs, f"{self.base}/{name}", data)
        self.count += 1


def record_key(path: str) -> str:
    """How recorded inputs are matched: a URI as it is, a local path resolved (``path_key``)."""
    from ..output import path_key

    return path if is_uri(path) else path_key(path)


def recorded_in_shards(uri: str, key: str, warn=None) -> set[str]:
    """``record_key``s of the inputs recorded successfully in the task's shards under ``uri`` (any
    of the three formats). Error records are removed from their shard (a shard of nothing else is
    deleted), so those inputs are retried. Files not named as this task's shards are never read;
    a shard that holds anything but this task's records is reported and left exactly as it is."""
    import pyarrow.fs as pafs

    fs, base = _shard_fs(uri)
    # Relative paths are as the earlier run was given them: resolved from here, and from the
    # shard folder and its parent (where that run most likely started), as --resume does.
    bases = [] if "://" in uri else [base, os.path.dirname(base)]
    task = shard_task(key)
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True))
    done: set[str] = set()
    for info in sorted(infos, key=lambda i: i.path):
        if info.type != pafs.FileType.File or not _is_our_shard(info.base_name, task):
            continue
        fmt = os.path.splitext(info.base_name)[1].lstrip(".")
        try:
            with fs.open_input_stream(info.path) as f:
                data = f.read()
            entries = _shard_entries(data, fmt, key)
        except Exception as e:  # noqa: BLE001 - anything unexpected: reported, never touched
            if warn is not None:
                warn(f"{info.path}: not a readable {task} shard, left as it is ({str(e).splitlines()[0]})")
            continue
        for path, ok in entries:
            if ok:
                done |= _recorded_keys(path, exact=fmt != "csv", bases=bases)
        if any(not ok for _, ok in entries):
            kept = _shard_without_errors(data, fmt)
            if kept is None:
                fs.delete_file(info.path)  # nothing but failures: they are retried
            else:
                _put(fs, info.path, kept)
    return done


def _recorded_keys(path: str, exact: bool, bases: list[str]) -> set[str]:
    """The keys a recorded path matches. ``exact``: the path is the file's own name (JSON Lines and
    Parquet keep undecodable bytes in ``path_base64``); CSV has only the ``\\xNN`` text form."""
    from ..output import _keys_of_path, _keys_of_text

    if is_uri(path):
        return {path}
    keys: set[str] = set()
    for b in bases or [None]:
        keys |= _keys_of_path(path, b) if exact else _keys_of_text(path, b)
    return keys


def _shard_entries(data: bytes, fmt: str, key: str) -> list[tuple[str, bool]]:
    """``(path, succeeded)`` for every record of a shard; ``ValueError`` for anything else in it."""
    import base64
    import csv
    import io

    from ..output import CSV_FIELDS

    other = "predictions" if key == "embedding" else "embedding"
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data), use_threads=False)
        names = table.column_names
        if "path" not in names or "error" not in names or other in names:
            raise ValueError(f"columns {names} are not those of a shard of this task")
        paths = table.column("path").to_pylist()
        if "path_base64" in names:
            paths = [os.fsdecode(base64.b64decode(r)) if r else p
                     for p, r in zip(paths, table.column("path_base64").to_pylist())]
        return [(p, e is None) for p, e in zip(paths, table.column("error").to_pylist())]
    text = data.decode("utf-8", "surrogateescape")
    entries = []
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True))
        if not rows or rows[0] != list(CSV_FIELDS) or any(len(r) != len(CSV_FIELDS) for r in rows[1:]):
            raise ValueError("not this tool's CSV (header or columns differ)")
        for row in rows[1:]:
            if not entries or entries[-1][0] != row[0]:  # one row per label: a path's rows are together
                entries.append((row[0], not row[6]))
        return entries
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        rec = json.loads(line)
        if not (isinstance(rec, dict) and isinstance(rec.get("path"), str) and ("error" in rec or key in rec)):
            raise ValueError(f"line {n} is not a record of this task")
        raw = rec.get("path_base64")
        entries.append((os.fsdecode(base64.b64decode(raw)) if raw else rec["path"], "error" not in rec))
    return entries


def _shard_without_errors(data: bytes, fmt: str) -> bytes | None:
    """The shard with its error records removed; ``None`` when nothing else is left."""
    import csv
    import io

    from ..output import CSV_HEADER, _csv_line

    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data), use_threads=False)
        ok = table.filter(table.column("error").is_null())
        if not ok.num_rows:
            return None
        buf = io.BytesIO()
        pq.write_table(ok, buf)
        return buf.getvalue()
    text = data.decode("utf-8", "surrogateescape")
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True))[1:]
        kept = [_csv_line(r) for r in rows if not r[6]]
        body = CSV_HEADER + "\n" + "".join(kept) if kept else None
    else:
        kept = [line + "\n" for line in text.splitlines() if line.strip() and "error" not in json.loads(line)]
        body = "".join(kept) if kept else None
    return None if body is None else body.encode("utf-8", "surrogateescape")
