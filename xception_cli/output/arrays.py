"""Embeddings as arrays: npz and parquet files, written whole when the run ends.

npz: arrays ``paths`` (str), ``paths_base64`` (the exact bytes of names that are not UTF-8),
``file_ids``, ``embeddings`` (float32 ``[N, D]``), ``failed_paths``, ``failed_errors`` and
``meta`` (a JSON string: pooling, normalisation, weights...). parquet: columns ``path``,
``path_base64``, ``file_id``, ``embedding`` (fixed-size list of float32, null for a failure) and
``error`` (null for a success); ``meta`` in the schema's metadata.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass, field

import numpy as np

from ..errors import OutputError
from .paths import display_path, file_id, from_record
from .records import COMMAND, record_dict
from .resume import Entry

NPZ_EXPANSION, NPZ_FLOOR = 16, 64 << 20  # see npz_limit
PARQUET_HINT = "the parquet format needs pyarrow: pip install 'xception-cli[parquet]'"


def pyarrow():
    """``(pyarrow, pyarrow.parquet)``, or the one-line install hint."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise OutputError(PARQUET_HINT) from None
    return pa, pq


@dataclass
class EmbeddingTable:
    """Embeddings in input order plus the failures: what ``npz`` and ``parquet`` files hold."""

    paths: list[str] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    ids: list[str | None] = field(default_factory=list)  # file_id of each path (None: an older file)

    @property
    def embeddings(self) -> np.ndarray:
        if not self.vectors:
            return np.zeros((0, 0), np.float32)
        return np.stack(self.vectors).astype(np.float32, copy=False)

    def to_bytes(self, fmt: str) -> bytes:
        buf = io.BytesIO()
        shown = [display_path(p) for p in self.paths]  # text, and the exact bytes of non-UTF-8 names
        texts, raws = [t for t, _ in shown], [r or "" for _, r in shown]
        ids = [i or file_id(p) for p, i in zip(self.paths, self.ids or [None] * len(self.paths))]
        if fmt == "npz":
            np.savez(buf, paths=np.array(texts, dtype=str), paths_base64=np.array(raws, dtype=str),
                     file_ids=np.array(ids, dtype=str), embeddings=self.embeddings,
                     failed_paths=np.array([p for p, _ in self.failed], dtype=str),
                     failed_errors=np.array([e for _, e in self.failed], dtype=str),
                     meta=np.array(json.dumps(self.meta)))
            return buf.getvalue()
        pa, pq = pyarrow()
        stacked = self.embeddings  # one copy, handed to Arrow as a fixed-size list without another
        dim = stacked.shape[1] if self.vectors else int(self.meta.get("dimensions", 2048))
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(stacked.reshape(-1), pa.float32()), dim)
        missing = pa.nulls(len(self.failed), pa.list_(pa.float32(), dim))
        table = pa.table(
            {"path": pa.array(texts + [p for p, _ in self.failed], pa.string()),
             "path_base64": pa.array([r or None for r in raws] + [None] * len(self.failed), pa.string()),
             "file_id": pa.array(ids + [None] * len(self.failed), pa.string()),
             "embedding": pa.concat_arrays([vectors, missing]),
             "error": pa.array([None] * len(self.vectors) + [e for _, e in self.failed], pa.string())},
        ).replace_schema_metadata({"xception": json.dumps(self.meta)})
        pq.write_table(table, buf)
        return buf.getvalue()

    @classmethod
    def from_entries(cls, entries: list[Entry]) -> EmbeddingTable:
        out = cls(meta=dict(next((e.options for e in entries if e.options), {})))
        for e in entries:
            if e.ok:
                out.paths.append(e.path)
                out.ids.append(e.file_id)
                out.vectors.append(np.asarray(e.vector, np.float32))
            else:
                out.failed.append((e.path, e.error or "no embedding"))
        return out

    @classmethod
    def from_bytes(cls, data: bytes, fmt: str) -> EmbeddingTable:
        """``ValueError``/``KeyError`` for a file that is not this tool's embeddings."""
        return cls.from_entries((read_npz if fmt == "npz" else read_parquet)(data, "embedding"))


def read_npz(data: bytes, key: str, strict: bool = False) -> list[Entry]:
    """Entries of an npz file (``embed`` output only)."""
    if key != "embedding":
        raise ValueError("holds embed output (npz), not predict output")
    check_npz_sizes(data)
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        meta = _meta(str(z["meta"])) if "meta" in z else {}
        emb = z["embeddings"]
        paths = z["paths"].tolist()
        if "paths_base64" in z:
            paths = [from_record(p, r) for p, r in zip(paths, z["paths_base64"].tolist())]
        ids = [i or None for i in z["file_ids"].tolist()] if "file_ids" in z else [None] * len(paths)
        if len(emb) != len(paths) or len(ids) != len(paths):
            raise ValueError("its arrays have different lengths")
        failed = list(zip(z["failed_paths"].tolist(), z["failed_errors"].tolist())) if "failed_paths" in z else []
    return [Entry(p, i, True, options=meta, vector=v) for p, i, v in zip(paths, ids, emb)] + \
        [Entry(p, None, False, options=meta, error=e) for p, e in failed]


def check_npz_sizes(data: bytes) -> None:
    """Refuse an npz whose members declare more than ``npz_limit`` bytes in all (zip ``file_size``
    and each array's npy header: shape x item size), before any array is read."""
    limit = npz_limit(len(data))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = zf.infolist()
        stored = sum(info.file_size for info in members)
        if stored > limit:
            raise ValueError(f"its arrays unpack to {stored:,} bytes, over the limit of {limit:,} bytes "
                             f"({NPZ_EXPANSION} times the file's size, at least {NPZ_FLOOR >> 20} MiB)")
        for info in (i for i in members if i.filename.endswith(".npy")):
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = header(f)
            declared = math.prod(shape) * dtype.itemsize
            if declared > info.file_size:
                raise ValueError(f"its array {info.filename} declares {declared:,} bytes in a member of "
                                 f"{info.file_size:,}")


def npz_limit(size: int) -> int:
    """The most bytes an npz of ``size`` bytes may unpack to: this tool writes npz uncompressed, and
    embeddings compress little; a small file that unpacks to gigabytes is refused."""
    return max(NPZ_FLOOR, NPZ_EXPANSION * size)


PARQUET_COLUMNS = ("path", "path_base64", "file_id", "embedding", "predictions", "error")  # all it reads
VALUE_BYTES = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8}


def parquet_declared(footer) -> int:
    """The bytes a Parquet file's fixed-width columns take once read, from its footer alone: their
    values times their size (dictionary-encoded repeats count in full). Text columns are measured
    by ``text_bytes`` once read as dictionaries (their footer says only what they take stored)."""
    total = 0
    for i in range(footer.num_row_groups):
        group = footer.row_group(i)
        for j in range(group.num_columns):
            column = group.column(j)
            size = VALUE_BYTES.get(column.physical_type)
            total += column.num_values * size if size else column.total_uncompressed_size
    return total


def text_bytes(array) -> int:
    """The bytes the text in an array read with its text as dictionaries (``read_dictionary``)
    takes once decoded, nested text included: each value's length, counted for every row that
    refers to it (a 10 KB name repeated on a million rows is 10 GB, stored in a few kilobytes)."""
    pa, _ = pyarrow()
    if isinstance(array, pa.ChunkedArray):
        return sum(text_bytes(chunk) for chunk in array.chunks)
    kind = array.type
    if pa.types.is_dictionary(kind):
        lengths = _lengths(pa, array.dictionary)
        indices = array.indices.to_numpy(zero_copy_only=False)
        if not len(lengths) or not len(indices):
            return 0
        indices = np.nan_to_num(indices.astype(np.float64)).astype(np.int64)  # a null index: 0
        return int(lengths[np.clip(indices, 0, len(lengths) - 1)].sum())
    if _is_text(pa, kind):
        return array.nbytes
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return text_bytes(array.values)  # every value the list holds (more than the rows show: an upper bound)
    if pa.types.is_struct(kind):
        return sum(text_bytes(array.field(i)) for i in range(kind.num_fields))
    return 0


def _lengths(pa, strings) -> np.ndarray:
    """Each value's length in bytes, read from a string array's offsets (no compute kernel: their
    thread pool could abort the interpreter at exit, as pyarrow's threaded reads did)."""
    width = np.int64 if pa.types.is_large_string(strings.type) or pa.types.is_large_binary(strings.type) else np.int32
    offsets = np.frombuffer(strings.buffers()[1], dtype=width)[strings.offset:strings.offset + len(strings) + 1]
    return np.diff(offsets.astype(np.int64))


def _is_text(pa, kind) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)


def _over_limit(what: str, size: int, limit: int) -> ValueError:
    return ValueError(f"its {what} unpack to {size:,} bytes, over the limit of {limit:,} bytes "
                      f"({NPZ_EXPANSION} times the file's size, at least {NPZ_FLOOR >> 20} MiB)")


def read_parquet(data: bytes, key: str, strict: bool = False) -> list[Entry]:
    """Entries of a Parquet file: embeddings (``embed -o x.parquet``) or a Ray shard of either
    command's records; ``strict`` (a shard): only this tool's columns."""
    pa, pq = pyarrow()
    # use_threads=False: pyarrow 26's threaded read can abort the interpreter at exit
    # ("terminate called without an active exception", exit 134) about one run in three.
    file = pq.ParquetFile(io.BytesIO(data))
    declared = parquet_declared(file.metadata)
    limit = npz_limit(len(data))  # measured from its footer before any column is read
    if declared > limit:
        raise _over_limit("columns", declared, limit)
    # Only this tool's columns are read, their text (nested text too) as dictionaries, no larger
    # than stored, measured before it is decoded.
    wanted = [f.name for f in file.schema_arrow if f.name in PARQUET_COLUMNS]
    text = [c.path for c in (file.schema.column(i) for i in range(len(file.schema)))
            if c.physical_type == "BYTE_ARRAY" and c.path.split(".")[0] in wanted]
    table = pq.read_table(io.BytesIO(data), columns=wanted, use_threads=False, read_dictionary=text)
    decoded = declared + sum(text_bytes(table.column(name)) for name in table.column_names)
    if decoded > limit:
        raise _over_limit("columns (text included)", decoded, limit)
    names = table.column_names  # text stays as dictionaries: to_pylist gives its values
    other = "predictions" if key == "embedding" else "embedding"
    if other in names:
        raise ValueError(f"holds {COMMAND[other]} output, not {COMMAND[key]} output")
    if "path" not in names or (strict and "error" not in names):
        raise ValueError(f"columns {names} are not those of this tool's {COMMAND[key]} output")
    meta = _meta((table.schema.metadata or {}).get(b"xception"))
    n = table.num_rows

    def column(name):
        return table.column(name).to_pylist() if name in names else [None] * n

    if key not in names:  # a Ray shard in which every image failed has no embedding column at all
        values = [None] * n
    elif key == "embedding":
        values = _vectors(pa, table.column(key))
    else:
        values = column(key)
    entries = []
    for path, raw, ident, value, err in zip(column("path"), column("path_base64"), column("file_id"), values,
                                            column("error")):
        ok = err is None and value is not None
        entries.append(Entry(from_record(path, raw), ident, ok, options=meta or None, error=err,
                             labels=len(value) if ok and key == "predictions" and len(value) else None,
                             vector=value if ok and key == "embedding" else None))
    return entries


def _vectors(pa, column) -> list:
    """An embedding column as one float32 row per record (``None`` where it is null): a fixed-size
    list column in one piece (no Python list per value); any other list column row by row."""
    if not pa.types.is_fixed_size_list(column.type):
        return list(column.to_numpy(zero_copy_only=False))
    whole = column.combine_chunks()
    valid = whole.is_valid().to_numpy(zero_copy_only=False)
    rows = whole.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    rows = rows.reshape(-1, column.type.list_size)
    out: list = [None] * len(whole)
    for i, row in zip(np.flatnonzero(valid).tolist(), rows):
        out[i] = row
    return out


def _meta(raw) -> dict:
    if not raw:
        return {}
    meta = json.loads(raw)
    return meta if isinstance(meta, dict) else {}


def records_parquet(records, options: dict | None = None) -> bytes:
    """Records as Parquet (Ray's shards of either command): path, path_base64, file_id, error, and
    predictions or embedding; the run's ``options`` in the schema's metadata."""
    pa, pq = pyarrow()
    recs = [record_dict(r) for r in records]
    cols = {"path": pa.array([r["path"] for r in recs], pa.string()),
            "path_base64": pa.array([r.get("path_base64") for r in recs], pa.string()),  # non-UTF-8 names
            "file_id": pa.array([r["file_id"] for r in recs], pa.string()),
            "error": pa.array([r.get("error") for r in recs], pa.string())}
    if any(r.embedding is not None for r in records):
        cols["embedding"] = _embedding_column(pa, [r.embedding for r in records])
    else:
        pred = pa.struct([("rank", pa.int32()), ("index", pa.int32()), ("wnid", pa.string()),
                          ("label", pa.string()), ("probability", pa.float64())])
        cols["predictions"] = pa.array([r.get("predictions") for r in recs], pa.list_(pred))
    table = pa.table(cols)
    if options:
        table = table.replace_schema_metadata({"xception": json.dumps(options)})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _embedding_column(pa, vectors: list):
    """Vectors (``None`` for a failure) as a fixed-size list column when they share one length (one
    block of memory, no Python list per value), else as lists."""
    lengths = {len(v) for v in vectors if v is not None}
    if len(lengths) != 1:
        return pa.array([None if v is None else np.asarray(v, np.float32).tolist() for v in vectors],
                        pa.list_(pa.float32()))
    dim = lengths.pop()
    missing = np.zeros(dim, np.float32)
    flat = np.stack([missing if v is None else np.asarray(v, np.float32) for v in vectors]).reshape(-1)
    mask = pa.array([v is None for v in vectors])
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim, mask=mask)


class ArrayWriter:
    """npz / parquet: records are gathered (about 8 KB an image) and the file is published whole
    by ``close()`` (``target.Publication``) — a killed run leaves the earlier file as it was (use
    jsonl for a file that grows as it goes). ``earlier``: what a resumed file already held (kept;
    failures dropped: they are retried)."""

    def __init__(self, publish, fmt: str, meta: dict, earlier: list[Entry] = ()):
        if fmt == "parquet":
            pyarrow()  # fail before any work, not at the end
        self.publish, self.fmt = publish, fmt
        self.table = EmbeddingTable(meta=dict(meta))
        for e in earlier:
            self.table.paths.append(e.path)
            self.table.ids.append(e.file_id)
            self.table.vectors.append(np.asarray(e.vector, np.float32))

    def write(self, records) -> None:
        for r in records:
            if r.error is not None:
                self.table.failed.append((display_path(r.path)[0], r.error))
            else:
                self.table.paths.append(r.path)  # the real name: to_bytes keeps its exact bytes
                self.table.ids.append(None)
                self.table.vectors.append(np.asarray(r.embedding, np.float32))

    def close(self) -> None:
        if self.table.vectors:
            self.table.meta["dimensions"] = int(self.table.vectors[0].shape[0])
        self.publish(self.table.to_bytes(self.fmt))
