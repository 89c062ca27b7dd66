"""The output layer: every artifact a command writes goes through here.

- ``target``: the rules for any file — never an input or the weights, staged privately, published
  atomically (a set of files together), one writer at a time (``Publication``, ``Protected``).
- ``formats``: the one table of record formats, and ``choose_format``.
- ``records`` (JSON Lines, JSON, CSV writers), ``arrays`` (npz, parquet), ``files`` (the ``-o
  FILE`` of a run, with ``--resume``), ``resume`` (one reader per format, one rule), ``shards``
  (Ray's shard folders), ``embeddings`` (reading embed output back), ``paths`` (names as data).
"""

from __future__ import annotations

__all__ = ["load_embeddings"]


def __getattr__(name: str):
    """``load_embeddings`` imported when asked for: a command that writes records (``predict``)
    never pays for the readers (NumPy's npz/Parquet, every format's parser)."""
    if name == "load_embeddings":
        from .embeddings import load_embeddings

        return load_embeddings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
