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
from dataclasses import dataclass, field

import numpy as np

from ..errors import OutputError
from .paths import display_path, file_id, from_record
from .resume import Entry

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

    def entries(self) -> list[Entry]:
        ids = self.ids or [None] * len(self.paths)
        return [Entry(p, i, True, options=self.meta, vector=v) for p, i, v in zip(self.paths, ids, self.vectors)]

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
        dim = self.embeddings.shape[1] if self.vectors else int(self.meta.get("dimensions", 2048))
        flat = pa.array(self.embeddings.reshape(-1) if self.vectors else np.zeros(0, np.float32), pa.float32())
        vectors = pa.FixedSizeListArray.from_arrays(flat, dim)
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
    def from_bytes(cls, data: bytes, fmt: str) -> EmbeddingTable:
        """``ValueError``/``KeyError`` for a file that is not this tool's embeddings."""
        if fmt == "npz":
            return cls._from_npz(data)
        pa, pq = pyarrow()
        # use_threads=False: pyarrow 26's threaded read can abort the interpreter at exit
        # ("terminate called without an active exception", exit 134) about one run in three.
        table = pq.read_table(io.BytesIO(data), use_threads=False)
        raw = (table.schema.metadata or {}).get(b"xception")
        out = cls(meta=_meta(raw))
        names = table.column_names
        if "embedding" not in names and "predictions" in names:
            raise ValueError("it holds predictions, not embeddings")
        n = table.num_rows
        errors = table.column("error").to_pylist() if "error" in names else [None] * n
        # a Ray shard in which every image failed has no embedding column at all
        vectors = table.column("embedding").to_numpy(zero_copy_only=False) if "embedding" in names else [None] * n
        raws = table.column("path_base64").to_pylist() if "path_base64" in names else [None] * n
        ids = table.column("file_id").to_pylist() if "file_id" in names else [None] * n
        for path, raw_path, ident, vec, err in zip(table.column("path").to_pylist(), raws, ids, vectors, errors):
            path = from_record(path, raw_path)
            if err is None and vec is not None:
                out.paths.append(path)
                out.ids.append(ident)
                out.vectors.append(np.asarray(vec, np.float32))
            else:
                out.failed.append((path, err or "no embedding"))
        return out

    @classmethod
    def _from_npz(cls, data: bytes) -> EmbeddingTable:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = _meta(str(z["meta"])) if "meta" in z else {}
            failed = list(zip(z["failed_paths"].tolist(), z["failed_errors"].tolist())) if "failed_paths" in z else []
            emb = z["embeddings"]
            paths = z["paths"].tolist()
            if "paths_base64" in z:
                paths = [from_record(p, r) for p, r in zip(paths, z["paths_base64"].tolist())]
            ids = [i or None for i in z["file_ids"].tolist()] if "file_ids" in z else [None] * len(paths)
            if len(emb) != len(paths) or len(ids) != len(paths):
                raise ValueError("its arrays have different lengths")
            return cls(paths, list(emb) if len(emb) else [], failed, meta, ids)


def _meta(raw) -> dict:
    if not raw:
        return {}
    meta = json.loads(raw)
    return meta if isinstance(meta, dict) else {}


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
