"""Shard folders (`--ray -o DIR/`): the writer and the rerun reader, without starting Ray."""

import os

import numpy as np
import pytest

from xception_cli.labels import Prediction
from xception_cli.pipeline import Record
from xception_cli.scale import ShardFolderWriter, record_key, recorded_in_shards

pytest.importorskip("pyarrow")

ODD = ["plain.jpg", "a,b.jpg", 'say "hi".jpg', "two\nlines.jpg", os.fsdecode(b"caf\xe9.jpg")]


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
    assert done >= {record_key(p) for p in inputs[:-1]} and record_key(inputs[-1]) not in done
    assert not warned
    for name, data in foreign.items():  # never read, never touched
        assert (out / name).read_bytes() == data
    # the error record is gone from its shard (the input is retried), the rest stays
    again = recorded_in_shards(str(out), "predictions")
    assert again == done and sorted(n for n in os.listdir(out) if n.startswith("xception-predict-")) == ours
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
    assert recorded_in_shards(str(out), "predictions", warn=warned.append) == set()
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
    assert recorded_in_shards(str(out), "embedding") == {record_key(str(tmp_path / f"{i}.jpg")) for i in range(3)}
    assert recorded_in_shards(str(out), "predictions") == set()  # another task's shards
