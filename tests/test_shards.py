"""Shard folders (`--ray -o DIR/`): the writer and the rerun reader (``output.shards``), without starting Ray."""

import json
import os

import numpy as np
import pytest

from xception_cli.labels import Prediction
from xception_cli.output.resume import Expect
from xception_cli.output.shards import SHARD_ROWS, ShardOutput
from xception_cli.pipeline import Record

pytest.importorskip("pyarrow")

ODD = ["plain.jpg", "a,b.jpg", 'say "hi".jpg', "two\nlines.jpg", os.fsdecode(b"caf\xe9.jpg")]


class ShardFolderWriter:
    """Shards written as a run writes them (``ShardOutput(...).writer``)."""

    def __init__(self, folder, fmt, key, rows=SHARD_ROWS, labels=3):
        out = ShardOutput(str(folder), fmt, Expect(key, labels=labels if key == "predictions" else None))
        self.w = out.writer()
        self.w.rows = rows

    def write(self, records):
        self.w.write(records)

    def close(self):
        self.w.close()


def recorded_in_shards(folder, key, warn=None, labels=3):
    """What a rerun into ``folder`` skips (``name in done``)."""
    return ShardOutput(str(folder), "jsonl", Expect(key, labels=labels if key == "predictions" else None),
                       warn=warn).done


def predictions(i):
    return [Prediction(r, i + r, f"n{i + r:08d}", f"label {i + r}", 0.5 / r) for r in (1, 2, 3)]


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    paths = []
    for name in ODD + ["broken.jpg"]:
        p = os.path.join(os.fsencode(d), os.fsencode(name))
        open(p, "wb").close()
        paths.append(os.fsdecode(p))
    return paths


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_written_in_shards_and_found_again(fmt, inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    foreign = {"notes.jsonl": b'{"mine": 1}\n', "data.csv": b"a,b\n1,2\n", "table.parquet": b"PAR1 not ours",
               "xception-embed-20260101T000000-abcdef-00000.jsonl": b'{"path": "x.jpg", "error": "e"}\n'}
    for name, data in foreign.items():
        (out / name).write_bytes(data)
    records = [Record(p, predictions=predictions(i)) for i, p in enumerate(inputs[:-1])]
    records.insert(2, Record(inputs[-1], error="not a recognised image format"))
    writer = ShardFolderWriter(str(out), fmt, "predictions", rows=4)
    writer.write(records[:3])
    assert not [n for n in os.listdir(out) if n.startswith("xception-predict-")]  # 3 < 4 rows: pending
    writer.write(records[3:])
    writer.close()
    ours = sorted(n for n in os.listdir(out) if n.startswith("xception-predict-"))
    assert len(ours) == 2 and all(n.endswith("." + fmt) for n in ours)  # 4 + 2 records
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]

    warned = []
    done = recorded_in_shards(str(out), "predictions", warn=warned.append)
    assert all(p in done for p in inputs[:-1]) and inputs[-1] not in done
    assert not warned
    for name, data in foreign.items():  # never read, never touched
        assert (out / name).read_bytes() == data
    # the error record is gone from its shard (the input is retried), the rest stays
    again = recorded_in_shards(str(out), "predictions")
    assert again.ids == done.ids and sorted(n for n in os.listdir(out) if n.startswith("xception-predict-")) == ours
    text = b"".join((out / n).read_bytes() for n in ours)
    assert b"not a recognised" not in text


def test_a_shard_of_only_failures_is_removed_and_a_broken_one_left_alone(tmp_path):
    out = tmp_path / "out"
    w = ShardFolderWriter(str(out), "jsonl", "predictions")
    w.write([Record(str(tmp_path / "x.jpg"), error="empty file (0 bytes)")])
    w.close()
    broken = out / "xception-predict-20260101T000000-abcdef-00000.parquet"
    broken.write_bytes(b"PAR1 truncated")
    warned = []
    assert len(recorded_in_shards(str(out), "predictions", warn=warned.append)) == 0
    assert os.listdir(out) == [broken.name] and broken.read_bytes() == b"PAR1 truncated"
    assert len(warned) == 1 and broken.name in warned[0] and "left as it is" in warned[0]


def test_embeddings_in_shards(tmp_path):
    out = tmp_path / "out"
    vecs = np.random.default_rng(0).random((3, 8), np.float32)
    w = ShardFolderWriter(str(out), "parquet", "embedding")
    w.write([Record(str(tmp_path / f"{i}.jpg"), embedding=v) for i, v in enumerate(vecs)])
    w.close()
    (name,) = os.listdir(out)
    assert name.startswith("xception-embed-")
    from xception_cli.output import load_embeddings

    table = load_embeddings(str(out))
    np.testing.assert_array_equal(table.embeddings, vecs)
    done = recorded_in_shards(str(out), "embedding")
    assert len(done) == 3 and all(str(tmp_path / f"{i}.jpg") in done for i in range(3))
    assert len(recorded_in_shards(str(out), "predictions")) == 0  # another task's shards


def test_a_shard_that_is_not_clean_is_never_deleted_or_rewritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    junk = out / "xception-predict-20200101T000000-aaaaaa-00000.jsonl"
    junk.write_bytes(os.urandom(3000))
    excel = out / "xception-predict-20200101T000000-cccccc-00000.csv"  # saved again by a spreadsheet: a BOM
    text = "\ufeffpath,rank,index,wnid,label,probability,error\n/x/ok.jpg,1,950,n07747607,orange,0.7,\n" \
           "/x/bad.jpg,,,,,,empty file (0 bytes)\n"
    excel.write_text(text, encoding="utf-8")
    mixed = out / "xception-predict-20200101T000000-dddddd-00000.jsonl"
    mixed.write_text('{"path": "/x/a.jpg", "predictions": []}\n{"name": "not a record"}\n')
    warned = []
    done = recorded_in_shards(str(out), "predictions", warn=warned.append, labels=1)
    assert "/x/ok.jpg" in done and "/x/bad.jpg" not in done
    assert junk.exists() and mixed.read_text().endswith('{"name": "not a record"}\n')
    assert sorted(w.split(":")[0] for w in warned) == sorted([str(junk), str(mixed)])
    assert "bad.jpg" not in excel.read_text(encoding="utf-8")  # its error record dropped, the rest kept
    assert "ok.jpg" in excel.read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_literal_backslash_name_is_not_a_byte_name(fmt, tmp_path):
    literal = str(tmp_path / "lit\\xe9.jpg")
    raw = os.fsdecode(os.fsencode(str(tmp_path)) + b"/lit\xe9.jpg")
    out = tmp_path / "out"
    w = ShardFolderWriter(str(out), fmt, "predictions")
    w.write([Record(literal, predictions=predictions(0))])
    w.close()
    done = recorded_in_shards(str(out), "predictions")
    assert literal in done and raw not in done
    w = ShardFolderWriter(str(out), fmt, "predictions")
    w.write([Record(raw, predictions=predictions(1))])
    w.close()
    assert raw in recorded_in_shards(str(out), "predictions")


def test_a_file_is_recognised_by_what_it_is_not_by_its_relative_name(tmp_path, monkeypatch):
    for d in ("A", "B"):
        (tmp_path / d / "photos").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "A")
    w = ShardFolderWriter(tmp_path / "out", "jsonl", "predictions")
    w.write([Record("photos/a.jpg", predictions=predictions(0))])
    w.close()
    monkeypatch.chdir("/")
    assert str(tmp_path / "A" / "photos" / "a.jpg") in recorded_in_shards(tmp_path / "out", "predictions")
    monkeypatch.chdir(tmp_path / "B")  # the same relative name, another file
    assert "photos/a.jpg" not in recorded_in_shards(tmp_path / "out", "predictions")


def test_a_folder_written_with_another_k_is_refused(tmp_path):
    from xception_cli.errors import OutputError

    w = ShardFolderWriter(tmp_path / "out", "jsonl", "predictions", labels=3)
    w.write([Record(str(tmp_path / "a.jpg"), predictions=predictions(0))])
    w.close()
    with pytest.raises(OutputError, match="holds 3 label\\(s\\) per image; this run gives 5"):
        recorded_in_shards(tmp_path / "out", "predictions", labels=5)


def test_similar_on_shards_prints_text_and_counts_a_byte_name_once(tmp_path):
    from click.testing import CliRunner

    from xception_cli.cli import cli

    raw = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.jpg")
    other = str(tmp_path / "other.jpg")
    v = np.ones(8, np.float32)
    for fmt in ("jsonl", "parquet"):  # the same image in a shard of each format
        w = ShardFolderWriter(str(tmp_path / "out"), fmt, "embedding")
        w.write([Record(raw, embedding=v), Record(other, embedding=v * 2)])
        w.close()
    r = CliRunner().invoke(cli, ["similar", "--duplicates", "--threshold", "0.99", "--embeddings",
                                 str(tmp_path / "out"), "-f", "jsonl"])
    assert r.exit_code == 0, r.output
    (pair,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert {pair["a"], pair["b"]} == {other, str(tmp_path) + "/caf\\xe9.jpg"}


def test_shard_mistakes_are_found_before_ray_starts(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import xception_cli.scale.executor as executor
    from xception_cli.cli import cli

    def no_ray(*a, **k):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(executor, "init_ray", no_ray)
    img = tmp_path / "a.jpg"
    img.write_bytes(b"x")
    r = CliRunner().invoke(cli, ["embed", str(img), "--ray", "-o", f"{tmp_path}/e/", "-f", "npz"])
    assert r.exit_code == 2 and "embed writes shards jsonl or parquet, not npz" in r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = CliRunner().invoke(cli, ["predict", str(img), "--ray", "-o", f"{blocker}/sub/"])
    assert r.exit_code == 2 and "cannot write shards there" in r.stderr


def test_ray_processes_left_as_children_are_stopped():
    """After a Ctrl-C during Ray's start-up, its agents end up as our (adopted) children."""
    import subprocess
    import sys

    from xception_cli.scale.cluster import kill_adopted_ray_processes, ray_children

    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "ray::DashboardAgent"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert fake.pid in ray_children() and other.pid not in ray_children()
        kill_adopted_ray_processes(wait_s=2)
        assert fake.wait(timeout=5) == -9 and other.poll() is None
    finally:
        other.kill()
        fake.kill()
