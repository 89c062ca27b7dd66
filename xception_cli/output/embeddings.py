"""Reading ``xception embed`` output back (``similar``, the Python API): one file, or a folder of
the shards ``embed --ray -o DIR/`` writes."""

from __future__ import annotations

import os

import numpy as np

from ..errors import OutputError
from .arrays import EmbeddingTable
from .files import MAX_EARLIER
from .paths import shown
from .resume import read_jsonl, sniff_format

SHARD_PREFIX, SHARD_SUFFIXES = "xception-embed-", (".jsonl", ".parquet")


def load_embeddings(path: str) -> EmbeddingTable:
    """Read an ``xception embed`` output back; ``OutputError`` if it is none.

    ``path``: an npz, parquet or jsonl file, or a folder of the ``.jsonl`` / ``.parquet`` shards
    that ``embed --ray -o DIR/`` writes (``xception-embed-*``, merged in path order since shards
    hold no input order; a path in several shards counts once, its last).
    """
    if os.path.isdir(path):
        table = _load_shards(path)
    else:
        table = _read_file(path)
    if not table.vectors:
        if table.failed:
            raise OutputError(f"{shown(path)}: holds no embeddings: every image in it failed ({len(table.failed)} "
                              "error record(s))")
        raise OutputError(f"{shown(path)}: holds no embeddings (expected the output of xception embed: npz, "
                          "parquet or jsonl)")
    dims = {v.shape[0] for v in table.vectors}
    if len(dims) != 1:
        raise OutputError(f"{shown(path)}: embeddings of different lengths {sorted(dims)}")
    return table


def _load_shards(path: str) -> EmbeddingTable:
    shards = sorted(e.path for e in os.scandir(path)
                    if e.name.startswith(SHARD_PREFIX) and e.name.endswith(SHARD_SUFFIXES) and e.is_file())
    if not shards:
        raise OutputError(f"{shown(path)}: a folder without xception-embed-*.jsonl or .parquet shards (expected "
                          "the output of xception embed --ray -o DIR/)")
    vectors: dict[str, np.ndarray] = {}  # a path in several shards (reruns, formats): the last
    failed: dict[str, str] = {}
    meta: dict = {}
    for shard in shards:
        part = _read_file(shard)
        meta = meta or part.meta
        vectors.update(zip(part.paths, part.vectors))
        failed.update(part.failed)
    table = EmbeddingTable(paths=sorted(vectors), meta=meta,
                           failed=sorted((p, e) for p, e in failed.items() if p not in vectors))
    table.vectors = [vectors[p] for p in table.paths]
    return table


def _read_file(path: str) -> EmbeddingTable:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_EARLIER + 1)
    except OSError as e:
        raise OutputError(f"{shown(path)}: cannot read ({e.strerror})") from None
    try:
        try:
            fmt = sniff_format(data)
        except ValueError:
            fmt = "jsonl"  # nothing of ours in it: "holds no embeddings" below
        if fmt in ("npz", "parquet"):
            return EmbeddingTable.from_bytes(data, fmt)
        if fmt in ("csv", "json"):
            raise OutputError(f"{shown(path)}: holds predict output (labels), not embeddings: make them with "
                              "xception embed")
        return EmbeddingTable.from_entries(read_jsonl(data if data.endswith(b"\n") else data + b"\n", "embedding"))
    except OutputError:
        raise
    except ValueError as e:
        if "predict output" in str(e):
            raise OutputError(f"{shown(path)}: holds predict output (labels), not embeddings: make them with "
                              "xception embed") from None
        raise OutputError(f"{shown(path)}: cannot read embeddings ({str(e).splitlines()[0]})") from None
    except (OSError, KeyError, TypeError) as e:
        raise OutputError(f"{shown(path)}: cannot read embeddings ({str(e).splitlines()[0]})") from None
