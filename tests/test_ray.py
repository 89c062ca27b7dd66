"""`predict --ray` on a local Ray (2 CPUs) and S3 end to end against a real S3 server on 127.0.0.1."""

import json
import os
import shutil
import socket

import pytest
from click.testing import CliRunner

from xception_cli.cli import cli

ray = pytest.importorskip("ray")
pytest.importorskip("moto.server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on 127.0.0.1, with the usual AWS variables pointing at it (set before Ray starts,
    so its workers see them)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield f"http://127.0.0.1:{port}"
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture(scope="module")
def local_ray(s3_server):
    if ray.is_initialized():
        ray.shutdown()
    from xception_cli.scale import init_ray

    init_ray(None)  # what the CLI does without an address: a local Ray (this machine's 2 CPUs)
    yield ray
    ray.shutdown()


@pytest.fixture
def messy(tmp_path, samples):
    d = tmp_path / "messy"
    d.mkdir()
    for p in samples:
        shutil.copy(p, d / p.name)
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("not an image")
    (d / "sub").mkdir()
    shutil.copy(samples[0], d / "sub" / "UPPER.JPG")
    return d


def records(text):
    return [json.loads(line) for line in text.splitlines()]


def assert_same_records(a, b):
    assert [r["path"] for r in a] == [r["path"] for r in b]
    for x, y in zip(a, b):
        assert set(x) == set(y)
        if "error" in x:
            assert x["error"] == y["error"]
        else:
            assert [p["index"] for p in x["predictions"]] == [p["index"] for p in y["predictions"]]
            diffs = [abs(p["probability"] - q["probability"]) for p, q in zip(x["predictions"], y["predictions"])]
            assert max(diffs) < 1e-5


def test_records_equal_the_local_pipeline(local_ray, messy, weights_file, tmp_path):
    args = [str(messy), str(tmp_path / "gone.jpg"), "--weights", str(weights_file), "-f", "jsonl"]
    local = CliRunner().invoke(cli, ["predict", *args])
    on_ray = CliRunner().invoke(cli, ["predict", *args, "--ray"])
    assert local.exit_code == on_ray.exit_code == 1, on_ray.output
    assert_same_records(records(on_ray.stdout), records(local.stdout))
    assert "on Ray (1 actor(s) on 1 node(s)" in on_ray.stderr
    assert "classified 5, failed 3" in on_ray.stderr


def test_local_output_file_and_resume(local_ray, messy, weights_file, tmp_path):
    out = tmp_path / "labels.jsonl"
    r = CliRunner().invoke(cli, ["predict", str(messy), "--ray", "-o", str(out), "--weights", str(weights_file)])
    assert r.exit_code == 1
    (messy / "text.jpg").unlink()
    r = CliRunner().invoke(cli, ["predict", str(messy), "--ray", "-o", str(out), "--weights", str(weights_file),
                                 "--resume"])
    assert r.exit_code == 1 and "5 already classified" in r.stderr and "1 to go" in r.stderr
    assert sorted(x["path"] for x in records(out.read_text())) == sorted(str(p) for p in messy.rglob("*.*")
                                                                         if p.is_file())


def test_s3_in_and_shards_out_with_a_rerun(local_ray, s3_server, samples, weights_file):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="photos")
    for p in samples:
        s3.put_object(Bucket="photos", Key=f"in/{p.name}", Body=p.read_bytes())
    s3.put_object(Bucket="photos", Key="in/deep/cat.jpg", Body=samples[1].read_bytes())
    s3.put_object(Bucket="photos", Key="in/not-an-image.jpg", Body=b"hello")
    s3.put_object(Bucket="photos", Key="in/empty.png", Body=b"")
    s3.put_object(Bucket="photos", Key="in/notes.txt", Body=b"skipped: not an image name")

    def run(*extra):
        return CliRunner().invoke(cli, ["predict", "s3://photos/in", "--ray", "-o", "s3://photos/out/",
                                        "--weights", str(weights_file), *extra])

    r = run()
    assert r.exit_code == 1, r.output
    assert "classified 5, failed 2" in r.stderr

    def shard_records():
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="photos", Prefix="out/")["Contents"]
                if not o["Key"].endswith("/")]  # the folder marker Ray's writer creates
        assert keys and all(k.endswith(".jsonl") for k in keys)
        out = []
        for k in keys:
            out += records(s3.get_object(Bucket="photos", Key=k)["Body"].read().decode())
        return sorted(out, key=lambda x: x["path"])

    got = shard_records()
    assert [x["path"] for x in got] == sorted(f"s3://photos/in/{n}" for n in
                                              ["astronaut.jpg", "cat.jpg", "coffee.jpg", "rocket.jpg", "deep/cat.jpg",
                                               "not-an-image.jpg", "empty.png"])
    errors = {x["path"]: x["error"] for x in got if "error" in x}
    assert errors == {"s3://photos/in/not-an-image.jpg": "not a recognised image format (is the extension wrong?)",
                      "s3://photos/in/empty.png": "empty file (0 bytes)"}
    # Local classification of the same photo gives the same record.
    local = records(CliRunner().invoke(cli, ["predict", str(samples[1]), "--weights", str(weights_file),
                                             "-f", "jsonl"]).stdout)[0]
    (cat,) = [x for x in got if x["path"] == "s3://photos/in/cat.jpg"]
    assert [p["index"] for p in cat["predictions"]] == [p["index"] for p in local["predictions"]]

    # A rerun skips what is recorded and retries the failures (now one is fixed).
    s3.put_object(Bucket="photos", Key="in/empty.png", Body=samples[2].read_bytes())
    r = run()
    assert "5 already recorded in s3://photos/out/, 2 to go" in r.stderr
    again = shard_records()
    assert len(again) == 7 and len({x["path"] for x in again}) == 7
    assert [{k: v for k, v in x.items() if k != "file_id"} for x in again if "error" in x] == [
        {"path": "s3://photos/in/not-an-image.jpg", "error": errors["s3://photos/in/not-an-image.jpg"]}]


def test_a_vanished_object_is_an_error_record(local_ray, s3_server):
    from xception_cli.scale import decode_batch

    out = decode_batch({"path": ["s3://photos/in/never-there.jpg"], "missing": [False]})
    assert out["error"][0] == "object not found (it may have been moved or deleted)"


def test_predictor_in_a_users_own_dataset(local_ray, samples, weights_file, tmp_path):
    import ray.data

    from xception_cli.heads import Classify
    from xception_cli.scale import XceptionPredictor

    d = tmp_path / "own"
    d.mkdir()
    for p in samples:
        shutil.copy(p, d / p.name)
    ds = ray.data.read_images(str(d), include_paths=True, mode="RGB")
    out = ds.map_batches(XceptionPredictor, fn_constructor_kwargs={"weights": str(weights_file), "head": Classify(3)},
                         batch_size=2, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1)
    rows = sorted(out.take_all(), key=lambda r: r["path"])
    assert len(rows) == 4 and all(r["ok"] for r in rows)
    assert all(len(json.loads(r["record"])["predictions"]) == 3 for r in rows)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_embed_shards_feed_similar(local_ray, messy, weights_file, tmp_path, samples, fmt):
    """`embed --ray -o DIR/` then `similar --embeddings DIR`: messy/sub/UPPER.JPG is a copy of a sample."""
    out = tmp_path / "vectors"
    r = CliRunner().invoke(cli, ["embed", str(messy), "--ray", "-o", f"{out}/", "-f", fmt, "--weights",
                                 str(weights_file)])
    assert r.exit_code == 1, r.output  # the empty and the text file
    r = CliRunner().invoke(cli, ["similar", "--duplicates", "--threshold", "0.999", "--embeddings", str(out),
                                 "-f", "jsonl"])
    assert r.exit_code == 0, r.output
    pairs = records(r.stdout)
    assert [{os.path.basename(p["a"]), os.path.basename(p["b"])} for p in pairs] == [{samples[0].name, "UPPER.JPG"}]


def test_predict_parquet_shards(local_ray, messy, weights_file, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "labels"
    args = ["predict", str(messy), "--ray", "-o", f"{out}/", "-f", "parquet", "--weights", str(weights_file)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1, r.output
    rows = [row for f in sorted(out.glob("*.parquet")) for row in pq.read_table(f).to_pylist()]
    assert sorted(row["path"] for row in rows) == sorted(str(p) for p in messy.rglob("*.*") if p.is_file())
    bad = {os.path.basename(row["path"]) for row in rows if row["error"]}
    assert bad == {"empty.jpg", "text.jpg"}
    good = [row for row in rows if not row["error"]]
    assert all(len(row["predictions"]) == 5 and row["predictions"][0]["rank"] == 1 for row in good)
    r = CliRunner().invoke(cli, args)  # a rerun retries only the failures
    assert r.exit_code == 1 and "5 already recorded" in r.stderr and "2 to go" in r.stderr


def test_parquet_is_only_for_shards(tmp_path, messy):
    r = CliRunner().invoke(cli, ["predict", str(messy), "-o", str(tmp_path / "x.parquet")])
    assert r.exit_code == 2 and "not parquet (only as Ray shards" in r.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_a_shard_folder_keeps_other_files_and_any_format_counts(local_ray, messy, weights_file, tmp_path):
    """Rerunning into a folder (even a user's own, with -f switched) touches only this task's shards."""
    out = tmp_path / "mine"
    out.mkdir()
    mine = {"notes.jsonl": '{"name": "my notes"}\n', "data.csv": "a,b\n1,2\n"}
    for name, text in mine.items():
        (out / name).write_text(text)
    base = ["predict", str(messy), "--ray", "-o", str(out), "--weights", str(weights_file)]
    r = CliRunner().invoke(cli, [*base, "-f", "csv"])
    assert r.exit_code == 1, r.output
    (shard,) = [p for p in out.iterdir() if p.name.startswith("xception-predict-")]
    assert shard.suffix == ".csv"
    (messy / "text.jpg").unlink()
    r = CliRunner().invoke(cli, [*base, "-f", "jsonl"])
    assert r.exit_code == 1 and "5 already recorded" in r.stderr and "1 to go" in r.stderr  # only empty.jpg
    r = CliRunner().invoke(cli, ["embed", str(messy), "--ray", "-o", str(out), "--weights", str(weights_file)])
    assert r.exit_code == 1 and "already recorded" not in r.stderr  # predict shards are not embeddings
    for name, text in mine.items():
        assert (out / name).read_text() == text
    names = sorted(p.name.split("-")[1] for p in out.iterdir() if p.name.startswith("xception-"))
    assert names == ["embed", "predict", "predict"]
