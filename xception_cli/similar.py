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

BLOCK = 4096  # rows compared at once: a BLOCK x N block of similarities at a time...
BLOCK_BYTES = 256 << 20  # ...or fewer rows, so that a block of float32 similarities stays under this
CANDIDATES = 1 << 22  # similarities looked at together when gathering duplicate pairs


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


class SimilarityIndex:
    """Stored vectors normalised once, for many queries: ``SimilarityIndex(vectors, paths).nearest(q, k)``.

    ``nearest(queries, database, paths, k)`` is the one-off form; a program asking query after
    query keeps a ``SimilarityIndex`` so the library is not normalised again for each."""

    def __init__(self, database: np.ndarray, paths: list[str]):
        database = np.asarray(database)
        if database.ndim != 2:
            raise ValueError(f"database must be (M, D), got {database.shape}")
        if len(paths) != len(database):
            raise ValueError(f"{len(paths)} paths for {len(database)} stored vectors")
        self.vectors, self.paths = normalize(database), list(paths)

    def nearest(self, queries: np.ndarray, k: int = 5) -> list[list[Match]]:
        """The ``k`` most similar stored vectors for each query (cosine similarity, best first; ties
        by the earlier stored vector). A single 1-D query is one query."""
        queries = np.asarray(queries)
        if queries.ndim == 1:
            queries = queries[None]
        if queries.ndim != 2 or queries.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"queries {queries.shape} and database {self.vectors.shape} must be (N, D) and (M, D)")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a whole number >= 1, got {k!r}")
        q, db = normalize(queries), self.vectors
        k = min(int(k), len(db))
        out = []
        rows = block_rows(len(db))
        for start in range(0, len(q), rows):
            sims = q[start:start + rows] @ db.T
            for row in sims:
                order = top_k(row, k)
                out.append([Match(i + 1, self.paths[j], min(1.0, float(row[j]))) for i, j in enumerate(order)])
        return out


def block_rows(stored: int) -> int:
    """Rows per block of similarities against ``stored`` vectors: at most ``BLOCK``, and a block
    of at most ``BLOCK_BYTES`` (a library of 200,000 vectors: 335 rows, 256 MiB, not 3.3 GB)."""
    return max(1, min(BLOCK, BLOCK_BYTES // (4 * max(1, stored))))


def top_k(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values, largest first, ties by the lower index: a partition,
    then a sort of the few candidates (every value tied with the k-th included, so the order is
    that of a full stable sort)."""
    if k >= len(row):
        return np.argsort(-row, kind="stable")
    kth = np.partition(row, len(row) - k)[len(row) - k]
    candidates = np.flatnonzero(row >= kth)
    return candidates[np.lexsort((candidates, -row[candidates]))][:k]


def nearest(queries: np.ndarray, database: np.ndarray, paths: list[str], k: int = 5) -> list[list[Match]]:
    """The ``k`` most similar stored vectors for each query (cosine similarity, best first; ties
    by the earlier stored vector). A single 1-D query is one query. For many calls over the same
    vectors, build a ``SimilarityIndex`` once."""
    queries, database = np.asarray(queries), np.asarray(database)
    if queries.ndim == 2 and database.ndim == 2 and queries.shape[1] != database.shape[1]:
        raise ValueError(f"queries {queries.shape} and database {database.shape} must be (N, D) and (M, D)")
    return SimilarityIndex(database, paths).nearest(queries, k)


def duplicates(database: np.ndarray, paths: list[str], threshold: float = 0.95) -> list[tuple[str, str, float]]:
    """Every pair ``(a, b, similarity)`` with cosine similarity >= ``threshold``, most similar first
    (``a`` stored before ``b``; ties by path). Quadratic in memory for a folder of look-alikes:
    ``top_pairs`` keeps only the most similar."""
    return top_pairs(database, paths, threshold)[0]


def top_pairs(database: np.ndarray, paths: list[str], threshold: float = 0.95,
              max_pairs: int | None = None) -> tuple[list[tuple[str, str, float]], int]:
    """``(pairs, found)``: the ``max_pairs`` most similar pairs at or above ``threshold`` (all when
    ``None``), in ``duplicates``' order, and how many pairs there are in all. Candidates are
    looked at a slice of rows at a time and only the best ``max_pairs`` are kept, so memory stays
    bounded by ``max_pairs`` whatever the number of pairs (3,000 identical images make 4.5 M)."""
    if len(paths) != len(database):
        raise ValueError(f"{len(paths)} paths for {len(database)} stored vectors")
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be at least 1, got {max_pairs!r}")
    db = normalize(database)
    rank = np.empty(len(paths), np.int64)  # ties are broken by path, as strings compare
    rank[sorted(range(len(paths)), key=paths.__getitem__)] = np.arange(len(paths))
    best = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    found = 0
    step = max(1, CANDIDATES // max(1, len(db)))  # rows whose candidates are gathered at once
    block = block_rows(len(db))
    for start in range(0, len(db), block):
        sims = db[start:start + block] @ db[start:].T  # one triangle: columns from this block on
        for sub in range(0, len(sims), step):
            # float32 rounding puts identical vectors at 0.9999996, not 1: a threshold counts within 1e-5
            rows, cols = np.nonzero(sims[sub:sub + step] >= threshold - 1e-5)
            values = sims[rows + sub, cols]
            rows, cols = rows + start + sub, cols + start
            above = cols > rows
            rows, cols, values = rows[above], cols[above], np.minimum(values[above], np.float32(1.0))
            found += len(rows)
            best = tuple(np.concatenate(pair) for pair in zip(best, (rows, cols, values)))
            if max_pairs is not None and len(best[0]) > 2 * max_pairs:  # pruned now and then, not per slice
                best = _best(*best, rank, max_pairs)
    rows, cols, values = _best(*best, rank, max_pairs)
    return [(paths[i], paths[j], float(v)) for i, j, v in zip(rows.tolist(), cols.tolist(), values.tolist())], found


def _best(rows, cols, values, rank, max_pairs):
    """The pairs in order (most similar, then by paths), the first ``max_pairs`` of them."""
    order = np.lexsort((rank[cols], rank[rows], -values))[:max_pairs]
    return rows[order], cols[order], values[order]
