"""Ray's shard output: records under a folder or a bucket prefix as shard files
``xception-{predict|embed}-{run}-{n:05d}.{jsonl|csv|parquet}`` of ``SHARD_ROWS`` records, each
published whole as the results stream in; read back by the readers and the rule ``--resume``
uses for one file (``resume.settle``), so a rerun skips what is recorded, retries the failures,
and refuses a folder written with another ``-k`` or other embedding options. Files not named as
the task's shards are never read or touched."""

from __future__ import annotations

import io
import os
import time
import uuid

from ..errors import OutputError
from .arrays import records_parquet
from .formats import FORMATS
from .paths import shown
from .records import COMMAND, CSV_HEADER, text_of
from .resume import Done, Entry, Expect, settle
from .target import Protected, check_links, writable_folder, write_bytes

SHARD_ROWS = 1000  # records per shard file
SHARD_FORMATS = tuple(f.name for f in FORMATS.values() if f.shard_heads)


def is_shard_target(output: str | None) -> bool:
    return bool(output) and (output.endswith("/") or "://" in output or os.path.isdir(output))


def _fs(uri: str):
    import pyarrow.fs as pafs

    if "://" in uri:
        from ..scale.uris import filesystem

        return filesystem(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def _is_local(fs) -> bool:
    import pyarrow.fs as pafs

    return isinstance(fs, pafs.LocalFileSystem)


class ShardOutput:
    """``-o DIR/`` or ``-o s3://bucket/prefix/`` with ``--ray``: checked, and what earlier runs of
    this task recorded there read back, before any work."""

    def __init__(self, uri: str, fmt: str, expect: Expect, protected: Protected | None = None, warn=None):
        self.uri, self.fmt, self.expect = uri, fmt, expect
        self.protected = protected or Protected()
        self.task = COMMAND[expect.key]
        self.fs, self.base = _fs(uri)
        if _is_local(self.fs):
            check_links(self.base)  # a link another user planted in a shared folder: not followed
            why = writable_folder(self.base, make=True)
            if why:
                raise OutputError(f"{shown(self.base)}: cannot write shards there ({why})")
        self.done = Done(bases=() if "://" in uri else (self.base, os.path.dirname(self.base)))
        self._read_earlier(warn)

    def _ours(self, name: str) -> bool:
        return name.startswith(f"xception-{self.task}-") and name.endswith(
            tuple(FORMATS[f].extensions[0] for f in SHARD_FORMATS))

    def _read_earlier(self, warn) -> None:
        """Error records are removed from their shard (a shard of nothing else is deleted), so those
        inputs are retried; a shard holding anything but this task's records is left as it is."""
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.base, recursive=False, allow_not_found=True))
        for info in sorted(infos, key=lambda i: i.path):
            if info.type != pafs.FileType.File or not self._ours(info.base_name):
                continue
            if _is_local(self.fs) and os.path.islink(info.path):  # never followed out of the folder
                if warn is not None:
                    warn(f"{shown(info.path)}: a link, not a shard; left as it is")
                continue
            fmt = os.path.splitext(info.base_name)[1].lstrip(".")
            try:
                with self.fs.open_input_stream(info.path) as f:
                    data = f.read()
                entries = FORMATS[fmt].reader(data, self.expect.key, strict=True)
            except Exception as e:  # noqa: BLE001 - anything unexpected: reported, never touched
                if warn is not None:
                    warn(f"{shown(info.path)}: not a readable {self.task} shard, left as it is "
                         f"({str(e).splitlines()[0]})")
                continue
            kept = settle(entries, self.expect, shown(self.uri))
            self.done.add(kept)
            if len(kept) != len(entries):
                self._keep_only(info.path, data, fmt, kept)

    def _keep_only(self, path: str, data: bytes, fmt: str, kept: list[Entry]) -> None:
        if not kept:
            self.fs.delete_file(path)  # nothing but failures: they are retried
            return
        if fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(data), use_threads=False)
            table = table.filter(table.column("error").is_null())
            buf = io.BytesIO()
            pq.write_table(table, buf)
            body = buf.getvalue()
        else:
            head = CSV_HEADER + "\n" if fmt == "csv" else ""
            body = (head + "".join(e.text for e in kept)).encode("utf-8", "surrogateescape")
        self._put(path, body)

    def _put(self, path: str, data: bytes) -> None:
        """A whole shard: published on a local disk (``target.write_bytes``); an object store's
        upload is whole anyway."""
        if _is_local(self.fs):
            write_bytes(path, data, self.protected)
            return
        with self.fs.open_output_stream(path) as f:
            f.write(data)

    def writer(self, options: dict | None = None) -> ShardWriter:
        return ShardWriter(self, options)

    def close(self) -> None:
        pass

    abort = close


class ShardWriter:
    """Records into shard files of ``rows`` records, each written whole as the results stream in;
    ``close()`` writes the last (also on Ctrl-C)."""

    def __init__(self, out: ShardOutput, options: dict | None, rows: int = SHARD_ROWS):
        self.out, self.options, self.rows = out, options, rows
        self.prefix = f"xception-{out.task}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.pending: list = []
        self.count = 0
        out.fs.create_dir(out.base, recursive=True)

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
        fmt = self.out.fmt
        if fmt == "parquet":
            data = records_parquet(records, self.options)
        else:
            data = text_of(records, FORMATS[fmt].writer, self.options).encode("utf-8", "surrogateescape")
        name = f"{self.prefix}-{self.count:05d}{FORMATS[fmt].extensions[0]}"
        self.out._put(f"{self.out.base}/{name}", data)
        self.count += 1
