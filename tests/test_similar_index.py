"""``similar`` at library speed gives the answers of the plain computation: a full stable sort of
every similarity for ``nearest``, every pair of a full similarity matrix for duplicates; Parquet's
fixed-size list columns read back exactly, failures included."""

from __future__ import annotations

import numpy as np
import pytest

from xception_cli import similar
from xception_cli.heads import normalize


def library(n=600, d=16, seed=0):
    rng = np.random.default_rng(seed)
    db = rng.integers(-2, 3, (n, d)).astype(np.float32)  # small integers: many exact ties
    db[50:60] = db[10]  # exact copies, tied with each other
    return db, [f"p{i:04d}.jpg" for i in range(n)]


def plain_nearest(queries, db, k):
    sims = normalize(queries) @ normalize(db).T
    return [np.argsort(-row, kind="stable")[:k].tolist() for row in sims]


@pytest.mark.parametrize("k", [1, 5, 37, 600, 1000])
def test_nearest_equals_a_full_stable_sort(k):
    db, paths = library()
    queries = np.concatenate([db[[10, 3, 77]], np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)])
    got = similar.SimilarityIndex(db, paths).nearest(queries, k)
    for matches, expected in zip(got, plain_nearest(queries, db, k)):
        assert [m.path for m in matches] == [paths[j] for j in expected]
        assert [m.rank for m in matches] == list(range(1, len(expected) + 1))
    assert [[m.path for m in ms] for ms in similar.nearest(queries, db, paths, k)] == \
        [[m.path for m in ms] for ms in got]


def test_an_index_normalises_its_library_once():
    db, paths = library()
    index = similar.SimilarityIndex(db, paths)
    assert np.allclose(np.linalg.norm(index.vectors[np.any(db != 0, axis=1)], axis=1), 1, atol=1e-6)
    assert similar.SimilarityIndex(db, paths).nearest(db[0], 3)[0][0].path == paths[0]


@pytest.mark.parametrize("max_pairs", [None, 1, 7, 100000])
def test_duplicates_from_one_triangle_equal_every_pair(max_pairs, monkeypatch):
    monkeypatch.setattr(similar, "BLOCK", 64)  # several blocks, so the triangle is cut into pieces...
    monkeypatch.setattr(similar, "BLOCK_BYTES", 4 * 300 * 37)  # ...of 37 rows, the byte bound biting
    monkeypatch.setattr(similar, "CANDIDATES", 1000)
    db, paths = library(n=300)
    threshold = 0.8
    sims = normalize(db) @ normalize(db).T
    rows, cols = np.nonzero(np.triu(sims >= threshold - 1e-5, k=1))
    expected = sorted(((paths[i], paths[j], float(min(1.0, sims[i, j]))) for i, j in zip(rows, cols)),
                      key=lambda t: (-t[2], t[0], t[1]))
    pairs, found = similar.top_pairs(db, paths, threshold, max_pairs)
    assert found == len(expected) > 20
    assert [(a, b) for a, b, _ in pairs] == [(a, b) for a, b, _ in expected][:max_pairs]
    assert np.allclose([v for *_, v in pairs], [v for *_, v in expected][:max_pairs], atol=1e-6)


def test_shard_parquet_keeps_vectors_and_failures_in_place():
    from xception_cli.output.arrays import read_parquet, records_parquet
    from xception_cli.pipeline import Record

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5, 8)).astype(np.float32)
    records = [Record(path=f"a{i}.jpg", embedding=None if i in (1, 4) else vectors[i],
                      error="cannot identify image file" if i in (1, 4) else None) for i in range(5)]
    entries = read_parquet(records_parquet(records, {"pooling": "avg"}), "embedding", strict=True)
    assert [e.path for e in entries] == [f"a{i}.jpg" for i in range(5)]
    assert [e.ok for e in entries] == [True, False, True, True, False]
    for i, e in enumerate(entries):
        if e.ok:
            assert e.vector.dtype == np.float32 and np.array_equal(e.vector, vectors[i])
        else:
            assert e.vector is None and e.error == "cannot identify image file"


@pytest.mark.parametrize("stored", [1, 10, 4096, 65_536, 200_000, 5_000_000])
def test_a_block_of_similarities_stays_under_its_byte_bound(stored):
    rows = similar.block_rows(stored)
    assert 1 <= rows <= similar.BLOCK
    assert rows * stored * 4 <= max(similar.BLOCK_BYTES, stored * 4)  # one row at least, whatever it costs


def test_queries_against_a_library_of_other_embeddings_fail_before_any_weights(tmp_path, samples):
    """An embeddings file of 4-value vectors: refused in one line before weights are looked for
    (with no weights in the cache, looking would have started a download)."""
    from click.testing import CliRunner

    from xception_cli.cli import cli

    lib = tmp_path / "four.npz"
    np.savez(lib, embeddings=np.ones((3, 4), np.float32), paths=np.array(["a", "b", "c"]), meta=np.array("{}"))
    r = CliRunner().invoke(cli, ["similar", str(samples[0]), "--embeddings", str(lib)],
                           env={"KERAS_HOME": str(tmp_path / "empty"), "XCEPTION_WEIGHTS": ""})
    assert r.exit_code == 2, r.output
    assert "holds 4-value embeddings" in r.stderr and "2048" in r.stderr
    assert "embedding the queries with" not in r.stderr and "download" not in r.stderr.lower()
