"""`xception embed` and `xception similar`: the reference's features, every format, resume, search."""

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from xception_cli.cli import cli
from xception_cli.output import load_embeddings
from xception_cli.preprocess import preprocess_image


@pytest.fixture(scope="module")
def notop_weights(tmp_path_factory, samples):
    """The same seeded, calibrated network as `weights_file`, written without its top."""
    from xception_cli.synthetic import make_weights_file

    return make_weights_file(tmp_path_factory.mktemp("notop") / "xception_notop.h5", samples, seed=0,
                             include_top=False)


@pytest.fixture
def photos(tmp_path, samples):
    d = tmp_path / "photos"
    d.mkdir()
    for p in samples:
        shutil.copy(p, d / p.name)
    return d


def embed(*args):
    return CliRunner().invoke(cli, ["embed", *map(str, args)])


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_embed_equals_the_reference(pooling, notop_weights, samples, tmp_path):
    import keras

    reference = keras.applications.Xception(include_top=False, weights=str(notop_weights), pooling=pooling)
    x = np.stack([preprocess_image(p) for p in samples])
    expected = np.asarray(reference.predict(x, verbose=0))
    out = tmp_path / "e.npz"
    r = embed(*samples, "-o", out, "--pooling", pooling, "--weights", notop_weights)
    assert r.exit_code == 0, r.output
    table = load_embeddings(out)
    assert table.paths == [str(p) for p in samples]
    got = table.embeddings
    assert got.shape == expected.shape == (4, 2048)
    rel = np.abs(got - expected).max(axis=1) / np.linalg.norm(expected, axis=1)
    assert rel.max() < 1e-4
    assert table.meta["pooling"] == pooling and table.meta["dimensions"] == 2048


def test_a_weights_file_with_the_top_embeds_the_same(notop_weights, weights_file, samples):
    from xception_cli import Embedder

    a = Embedder(weights=str(weights_file)).embed(samples)
    b = Embedder(weights=str(notop_weights)).embed(samples)
    assert np.abs(a - b).max() / np.abs(b).max() < 1e-5


@pytest.mark.parametrize("ext", ["npz", "jsonl", "parquet"])
def test_every_format_round_trips_with_failures(ext, photos, weights_file, tmp_path):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    out = tmp_path / f"e.{ext}"
    r = embed(photos, "-o", out, "--weights", weights_file, "--normalize")
    assert r.exit_code == 1, r.output  # one bad file: exit 1, the rest embedded
    assert "broken.jpg" in r.stderr and "embedded 4, failed 1" in r.stderr
    table = load_embeddings(out)
    assert sorted(table.paths) == sorted(str(p) for p in photos.iterdir() if p.name != "broken.jpg")
    assert [p for p, _ in table.failed] == [str(photos / "broken.jpg")]
    assert np.allclose(np.linalg.norm(table.embeddings, axis=1), 1.0, atol=1e-5)
    npz = tmp_path / "ref.npz"
    embed(photos, "-o", npz, "--weights", weights_file, "--normalize")
    assert np.abs(load_embeddings(npz).embeddings - table.embeddings).max() < 1e-6


def test_jsonl_to_stdout(photos, weights_file):
    r = embed(photos / "cat.jpg", "--weights", weights_file)
    assert r.exit_code == 0
    (rec,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert rec["path"] == str(photos / "cat.jpg") and len(rec["embedding"]) == 2048
    r = embed(photos, "-f", "npz", "--weights", weights_file)
    assert r.exit_code == 2 and "npz output needs -o FILE" in r.stderr


@pytest.mark.parametrize("ext", ["npz", "jsonl"])
def test_resume_skips_what_is_done_and_retries_failures(ext, photos, weights_file, tmp_path, samples):
    out = tmp_path / f"e.{ext}"
    (photos / "late.jpg").write_bytes(b"not yet")
    assert embed(photos, "-o", out, "--weights", weights_file).exit_code == 1
    shutil.copy(samples[0], photos / "late.jpg")  # now readable
    r = embed(photos, "-o", out, "--weights", weights_file, "--resume")
    assert r.exit_code == 0, r.output
    assert "4 already embedded" in r.stderr and "1 to go" in r.stderr
    table = load_embeddings(out)
    assert sorted(table.paths) == sorted(str(p) for p in photos.iterdir()) and not table.failed
    r = embed(photos, "-o", out, "--weights", weights_file, "--resume")
    assert "5 already embedded" in r.stderr and "0 to go" in r.stderr


@pytest.mark.parametrize("ext", ["npz", "jsonl"])
def test_resume_with_other_options_is_refused(ext, photos, weights_file, tmp_path):
    out = tmp_path / f"e.{ext}"
    assert embed(photos, "-o", out, "--weights", weights_file).exit_code == 0
    before = out.read_bytes()
    (photos / "new.jpg").write_bytes((photos / "cat.jpg").read_bytes())
    r = embed(photos, "-o", out, "--weights", weights_file, "--resume", "--pooling", "max")
    assert r.exit_code == 2 and "pooling=avg (now max)" in r.stderr
    assert "embedded" not in r.stderr  # refused before the model loads
    assert out.read_bytes() == before


def test_jsonl_embeddings_record_their_options(photos, weights_file, tmp_path):
    out = tmp_path / "e.jsonl"
    assert embed(photos, "-o", out, "--weights", weights_file, "--normalize").exit_code == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    from xception_cli.weights import md5sum

    assert all(r["options"] == {"pooling": "avg", "normalize": True, "weights": weights_file.name,
                                "weights_md5": md5sum(weights_file), "resize": "center-crop",
                                "precision": "float32"} for r in recs)
    assert load_embeddings(str(out)).meta["normalize"] is True  # similar embeds its queries the same way


def test_resuming_a_junk_npz_names_the_format(photos, weights_file, tmp_path):
    out = tmp_path / "e.npz"
    out.write_text("junk\n")
    r = embed(photos, "-o", out, "--weights", weights_file, "--resume")
    assert r.exit_code == 2 and "not an npz file (an earlier xception embed output)" in r.stderr
    assert out.read_text() == "junk\n"


def test_predict_will_not_resume_into_embeddings(photos, weights_file, tmp_path):
    out = tmp_path / "e.npz"
    assert embed(photos, "-o", out, "--weights", weights_file).exit_code == 0
    r = CliRunner().invoke(cli, ["predict", str(photos), "-o", str(out), "--resume", "--weights", str(weights_file)])
    assert r.exit_code == 2 and "predict writes jsonl, csv, json or html, not npz" in r.stderr


@pytest.fixture
def library(photos, weights_file, tmp_path, samples):
    """The sample photos plus an exact copy and a resized, re-encoded copy of the cat, embedded."""
    cat = photos / "cat.jpg"
    shutil.copy(cat, photos / "cat-copy.jpg")
    im = Image.open(cat)
    im.resize((im.width * 2 // 3, im.height * 2 // 3), Image.Resampling.BICUBIC).save(photos / "cat-small.jpg",
                                                                                      quality=85)
    out = tmp_path / "library.npz"
    assert embed(photos, "-o", out, "--weights", weights_file).exit_code == 0
    return out


def test_similar_finds_the_copies_first(library, photos, weights_file):
    r = CliRunner().invoke(cli, ["similar", str(photos / "cat.jpg"), "--embeddings", str(library), "-k", "3",
                                 "--weights", str(weights_file), "-f", "jsonl"])
    assert r.exit_code == 0, r.output
    (rec,) = [json.loads(line) for line in r.stdout.splitlines()]
    names = [n["path"].rsplit("/", 1)[1] for n in rec["neighbors"]]
    assert set(names) == {"cat.jpg", "cat-copy.jpg", "cat-small.jpg"}  # itself and its two copies
    sims = [n["similarity"] for n in rec["neighbors"]]
    assert sims[0] == pytest.approx(1.0, abs=1e-5) and sims == sorted(sims, reverse=True)


def test_similar_duplicates(library):
    r = CliRunner().invoke(cli, ["similar", "--duplicates", "--threshold", "0.97", "--embeddings", str(library),
                                 "-f", "jsonl"])
    assert r.exit_code == 0, r.output
    pairs = [json.loads(line) for line in r.stdout.splitlines()]
    named = [{p["a"].rsplit("/", 1)[1], p["b"].rsplit("/", 1)[1]} for p in pairs]
    assert named[0] == {"cat.jpg", "cat-copy.jpg"} and pairs[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert {"cat.jpg", "cat-small.jpg"} in named and {"cat-copy.jpg", "cat-small.jpg"} in named


def test_similar_usage_and_bad_files(library, tmp_path):
    r = CliRunner().invoke(cli, ["similar", "--embeddings", str(library)])
    assert r.exit_code == 2 and "give QUERY images, or --duplicates" in r.stderr
    (tmp_path / "nothing.jsonl").write_text("hello\n")
    r = CliRunner().invoke(cli, ["similar", "--duplicates", "--embeddings", str(tmp_path / "nothing.jsonl")])
    assert r.exit_code == 2 and "holds no embeddings" in r.stderr


def test_nearest_and_duplicates_in_numpy():
    from xception_cli.similar import duplicates, nearest

    db = np.array([[1, 0], [0, 1], [1, 1], [1, 0.01]], np.float32)
    paths = ["x", "y", "xy", "x2"]
    (m,) = nearest(np.array([[2, 0]], np.float32), db, paths, k=2)
    assert [a.path for a in m] == ["x", "x2"] and m[0].similarity == pytest.approx(1.0)
    assert [(a, b) for a, b, _ in duplicates(db, paths, 0.99)] == [("x", "x2")]


# which weights and inputs: similar never writes over its inputs; embed refuses mixed weights ----------

def test_similar_never_writes_over_its_inputs(library, photos, weights_file, tmp_path):
    before = library.read_bytes()
    r = CliRunner().invoke(cli, ["similar", "--duplicates", "--embeddings", str(library), "-o", str(library)])
    assert r.exit_code == 2 and "is one of the inputs" in r.stderr
    assert library.read_bytes() == before
    mine = tmp_path / "mine.h5"
    shutil.copy(weights_file, mine)
    r = CliRunner().invoke(cli, ["similar", str(photos / "cat.jpg"), "--embeddings", str(library), "--weights",
                                 str(mine), "-o", str(mine)])
    assert r.exit_code == 2 and mine.stat().st_size == weights_file.stat().st_size


def test_similar_uses_the_files_weights_and_says_when_queries_fail(library, photos, weights_file):
    (photos / "junk.jpg").write_bytes(b"junk")
    r = CliRunner().invoke(cli, ["similar", str(photos / "cat.jpg"), "--embeddings", str(library)])
    assert r.exit_code == 2 and "pass that file with --weights" in r.stderr  # never loaded because a file names it
    r = CliRunner().invoke(cli, ["similar", str(photos / "cat.jpg"), str(photos / "junk.jpg"), "--embeddings",
                                 str(library), "-k", "1", "-f", "jsonl", "--weights", str(weights_file)])
    assert r.exit_code == 1 and "junk.jpg" in r.stderr
    (rec,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert rec["neighbors"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_exact_duplicates_at_threshold_one(library):
    r = CliRunner().invoke(cli, ["similar", "--duplicates", "--threshold", "1", "--embeddings", str(library),
                                 "-f", "jsonl"])
    pairs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [{p["a"].rsplit("/", 1)[1], p["b"].rsplit("/", 1)[1]} for p in pairs] == [{"cat.jpg", "cat-copy.jpg"}]
    assert pairs[0]["similarity"] == 1.0


def test_embed_refuses_an_ir_and_mixed_weights_on_resume(photos, weights_file, tmp_path):
    ir = tmp_path / "x.xml"
    assert CliRunner().invoke(cli, ["export", "openvino", "-o", str(ir), "--weights", str(weights_file)]).exit_code == 0
    r = embed(photos, "-o", tmp_path / "v.npz", "--weights", ir)
    assert r.exit_code == 2 and "cannot give embeddings" in r.stderr
    out = tmp_path / "e.npz"
    assert embed(photos, "-o", out, "--weights", weights_file).exit_code == 0
    shutil.copy(photos / "cat.jpg", photos / "cat2.jpg")
    r = embed(photos, "-o", out, "--weights", "none", "--resume")
    assert r.exit_code == 2 and "made with other options weights=" in r.stderr


# shard folders and stdin ------------------------------------------------------------------------

def test_similar_reads_a_folder_of_shards(library, tmp_path):
    """What `embed --ray -o DIR/` leaves: jsonl and parquet shards in no input order, one of them
    holding only failures (Ray writes no embedding column then); merged, in path order."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = load_embeddings(str(library))
    shards = tmp_path / "shards"
    shards.mkdir()
    half = len(table.paths) // 2
    with open(shards / "xception-embed-b-00000.jsonl", "w") as f:
        for p, v in zip(table.paths[:half], table.vectors[:half]):
            f.write(json.dumps({"path": p, "embedding": v.tolist()}) + "\n")
    pq.write_table(pa.table({"path": table.paths[half:], "embedding": pa.array(
        [v.tolist() for v in table.vectors[half:]], pa.list_(pa.float32()))}),
        shards / "xception-embed-a-00000.parquet")
    pq.write_table(pa.table({"path": ["bad.jpg"], "error": ["not an image"]}),
                   shards / "xception-embed-c-00000.parquet")
    (shards / ".hidden.jsonl").write_text("junk\n")
    (shards / "mine.jsonl").write_text("not read\n")
    (shards / "xception-predict-x-00000.jsonl").write_text('{"path": "a.jpg", "predictions": []}\n')
    with open(shards / "xception-embed-d-00000.jsonl", "w") as f:  # a rerun's copy of one image: listed once
        f.write(json.dumps({"path": table.paths[0], "embedding": table.vectors[0].tolist()}) + "\n")
    merged = load_embeddings(str(shards))
    assert merged.paths == sorted(table.paths) and merged.failed == [("bad.jpg", "not an image")]
    order = [table.paths.index(p) for p in merged.paths]
    np.testing.assert_array_equal(merged.embeddings, table.embeddings[order])
    r = CliRunner().invoke(cli, ["similar", "--duplicates", "--threshold", "0.97", "--embeddings", str(shards),
                                 "-f", "jsonl"])
    assert r.exit_code == 0, r.output
    named = [{p["a"].rsplit("/", 1)[1], p["b"].rsplit("/", 1)[1]} for p in map(json.loads, r.stdout.splitlines())]
    assert named[0] == {"cat.jpg", "cat-copy.jpg"}


def test_a_folder_that_holds_no_embeddings_is_one_line(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(cli, ["similar", "--duplicates", "--embeddings", str(empty)])
    assert r.exit_code == 2 and "without xception-embed-*.jsonl or .parquet shards" in r.stderr
    labels = tmp_path / "labels"
    labels.mkdir()
    pq.write_table(pa.table({"path": ["a.jpg"], "predictions": ["[]"]}), labels / "xception-embed-x.parquet")
    r = CliRunner().invoke(cli, ["similar", "--duplicates", "--embeddings", str(labels)])
    assert r.exit_code == 2 and "holds predict output (labels), not embeddings" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_similar_reads_query_paths_from_stdin(library, photos, weights_file):
    r = CliRunner().invoke(cli, ["similar", "-", "--embeddings", str(library), "-k", "1", "-f", "jsonl",
                                 "--weights", str(weights_file)],
                           input=f"{photos / 'cat.jpg'}\n{photos / 'missing.jpg'}\n")
    assert r.exit_code == 1 and "missing.jpg" in r.stderr
    (rec,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert rec["path"].endswith("cat.jpg") and rec["neighbors"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_an_unexpected_error_is_one_line_and_exit_2(library, monkeypatch):
    import xception_cli.similar

    def boom(*a, **k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(xception_cli.similar, "top_pairs", boom)
    r = CliRunner().invoke(cli, ["similar", "--duplicates", "--embeddings", str(library)])
    assert r.exit_code == 2  # 1 would mean "some inputs failed"
    assert r.stderr.strip() == "Error: unexpected RuntimeError: boom (set XCEPTION_DEBUG=1 for details)"


def test_a_library_where_every_image_failed(photos, weights_file, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("no")
    assert embed(bad, "-o", tmp_path / "bad.npz", "--weights", weights_file).exit_code == 1
    r = CliRunner().invoke(cli, ["similar", "--duplicates", "--embeddings", str(tmp_path / "bad.npz")])
    assert r.exit_code == 2 and "every image in it failed (2 error record(s))" in r.stderr


# resume across commands and names; parquet; file names of another format ------------------------

def test_resume_into_the_other_commands_jsonl_is_refused(photos, weights_file, tmp_path):
    labels, vectors = tmp_path / "labels.jsonl", tmp_path / "vectors.jsonl"
    assert CliRunner().invoke(cli, ["predict", str(photos), "-o", str(labels), "--weights",
                                    str(weights_file)]).exit_code == 0
    assert embed(photos, "-o", vectors, "--weights", weights_file).exit_code == 0
    saved = labels.read_bytes(), vectors.read_bytes()
    r = embed(photos, "-o", labels, "--weights", weights_file, "--resume")
    assert r.exit_code == 2 and "holds predict output, not embed output" in r.stderr
    r = CliRunner().invoke(cli, ["predict", str(photos), "-o", str(vectors), "--resume", "--weights",
                                 str(weights_file)])
    assert r.exit_code == 2 and "holds embed output, not predict output" in r.stderr
    assert (labels.read_bytes(), vectors.read_bytes()) == saved
    r = CliRunner().invoke(cli, ["similar", "--duplicates", "--embeddings", str(labels)])
    assert r.exit_code == 2 and "holds predict output (labels), not embeddings" in r.stderr


@pytest.mark.parametrize("ext", ["npz", "parquet"])
def test_a_name_that_is_not_utf8_resumes_once(ext, photos, weights_file, tmp_path):
    if ext == "parquet":
        pytest.importorskip("pyarrow")
    odd = os.path.join(os.fsencode(photos), b"caf\xe9.jpg")
    shutil.copy(photos / "cat.jpg", odd)
    out = tmp_path / f"e.{ext}"
    assert embed(photos, "-o", out, "--weights", weights_file).exit_code == 0
    r = embed(photos, "-o", out, "--weights", weights_file, "--resume")
    assert r.exit_code == 0 and "5 already embedded" in r.stderr and "0 to go" in r.stderr
    table = load_embeddings(str(out))
    assert len(table.paths) == 5 and os.fsdecode(odd) in table.paths  # the exact name, back


def test_parquet_embeddings_read_and_exit_cleanly(photos, weights_file, tmp_path):
    """pyarrow's threaded read aborted the interpreter at exit about one run in three (exit 134)."""
    import subprocess
    import sys

    pytest.importorskip("pyarrow")
    out = tmp_path / "e.parquet"
    assert embed(photos, "-o", out, "--weights", weights_file).exit_code == 0
    code = f"from xception_cli.output import load_embeddings; load_embeddings({str(out)!r})"
    codes = [subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).returncode
             for _ in range(8)]
    assert codes == [0] * 8


def test_similar_knows_the_same_weights_by_another_spelling(library, photos, weights_file):
    other = os.path.join(os.path.dirname(weights_file), "..", os.path.basename(os.path.dirname(weights_file)),
                         os.path.basename(weights_file))
    r = CliRunner().invoke(cli, ["similar", str(photos / "cat.jpg"), "--embeddings", str(library), "--weights",
                                 other, "-k", "1", "-f", "jsonl"])
    assert r.exit_code == 0 and "warning" not in r.stderr


def test_embed_refuses_a_file_name_of_another_format(photos, weights_file, tmp_path):
    r = embed(photos, "-o", tmp_path / "e.csv", "--weights", weights_file)
    assert r.exit_code == 2 and "embed writes jsonl, npz or parquet, not csv" in r.stderr
    assert not (tmp_path / "e.csv").exists()
