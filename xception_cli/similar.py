"""Nearest images and near-duplicates by cosine similarity, brute force in NumPy (no Click).

Exact and simple: every query is compared with every stored vector, in blocks so memory stays
bounded. Fine up to a few hundred thousand vectors (a query against 300,000 x 2048 float32 is
one 2.4 GB matrix-vector pass, well under a second); ``duplicates`` is quadratic (all pairs), so
it suits up to ~100,000. Beyond that, use a vector index (FAISS, hnswlib, a vector database).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .heads import normalize

BLOCK = 4096  # rows compared at once: a BLOCK x N block of similarities at a time


@dataclass(frozen=True)
class Match:
    rank: int
    path: str
    similarity: float

    def to_dict(self) -> dict:
        return {"rank": self.rank, "path": self.path, "similarity": round(float(self.similarity), 6)}


def unusable(vectors: np.ndarray) -> np.ndarray:
    """Which rows can match nothing: zero (no direction) or holding NaN/infinity."""
    x = np.asarray(vectors)
    if x.ndim != 2:
        raise ValueError(f"vectors must be (N, D), got {x.shape}")
    return ~np.isfinite(x).all(axis=1) | ~x.any(axis=1)


def nearest(queries: np.ndarray, database: np.ndarray, paths: list[str], k: int = 5) -> list[list[Match]]:
    """The ``k`` most similar stored vectors for each query (cosine similarity, best first; ties
    by the earlier stored vector). A single 1-D query is one query."""
    queries, database = np.asarray(queries), np.asarray(database)
    if queries.ndim == 1:
        queries = queries[None]
    if queries.ndim != 2 or database.ndim != 2 or queries.shape[1] != database.shape[1]:
        raise ValueError(f"queries {queries.shape} and database {database.shape} must be (N, D) and (M, D)")
    if len(paths) != len(database):
        raise ValueError(f"{len(paths)} paths for {len(database)} stored vectors")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a whole number >= 1, got {k!r}")
    q, db = normalize(queries), normalize(database)
    k = min(k, len(db))
    out = []
    for start in range(0, len(q), BLOCK):
        sims = q[start:start + BLOCK] @ db.T
        for row in sims:
            order = np.argsort(-row, kind="stable")[:k]
            out.append([Match(i + 1, paths[j], min(1.0, float(row[j]))) for i, j in enumerate(order)])
    return out


def duplicates(database: np.ndarray, paths: list[str], threshold: float = 0.95) -> list[tuple[str, str, float]]:
    """Every pair ``(a, b, similarity)`` with cosine similarity >= ``threshold``, most similar first
    (``a`` stored before ``b``)."""
    if len(paths) != len(database):
        raise ValueError(f"{len(paths)} paths for {len(database)} stored vectors")
    db = normalize(database)
    pairs = []
    for start in range(0, len(db), BLOCK):
        sims = db[start:start + BLOCK] @ db.T
        # float32 rounding puts identical vectors at 0.9999996, not 1: a threshold counts within 1e-5
        rows, cols = np.nonzero(sims >= threshold - 1e-5)
        for r, c in zip(rows, cols):
            i = start + int(r)
            if int(c) > i:
                pairs.append((paths[i], paths[int(c)], min(1.0, float(sims[r, c]))))
    pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    return pairs
